"""TOML configuration -> :class:`sipsca.config.SipscaConfig`.

The only module that reads configuration files. Unknown sections or keys, wrong types and
bad values are refused with one :class:`ConfigError` naming ``section.key``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from sipsca.auth.digest import MIN_SECRET_BYTES, DigestAuthenticator
from sipsca.config import (
    AuthConfig,
    DbConfig,
    LineConfig,
    LogConfig,
    ProxyConfig,
    RegistrarConfig,
    RpcConfig,
    ScaConfig,
    ServerConfig,
    SipscaConfig,
    TransactionConfig,
)
from sipsca.errors import ConfigError, RemoteProtocolError
from sipsca.rpc.listen import is_loopback_host
from sipsca.rpc.listen import parse_listen as parse_rpc_listen
from sipsca.runtime.addressing import split_hostport
from sipsca.sip.address import parse_flow
from sipsca.sip.uri import is_valid_host, parse_uri
from sipsca.transaction import TimerValues

__all__ = ["load_config", "config_from_dict", "parse_listen", "public_listeners"]

logger = logging.getLogger(__name__)

_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "transaction": TransactionConfig,
    "sca": ScaConfig,
    "db": DbConfig,
    "auth": AuthConfig,
    "registrar": RegistrarConfig,
    "proxy": ProxyConfig,
    "rpc": RpcConfig,
    "log": LogConfig,
}

# Kamailio sca parameters that have no meaning in sipsca: accepted and logged as ignored.
_IGNORED_SCA = {"outbound_proxy", "state_table", "from_uri_avp", "to_uri_avp"}
# Kamailio puts db_url / subs_table / db_update_interval in the sca module; accept them there.
_SCA_DB_KEYS = {"db_url", "subs_table", "db_update_interval"}


def load_config(path: str | Path) -> SipscaConfig:
    """Read and validate a TOML file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found")
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}")
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any], base: SipscaConfig | None = None) -> SipscaConfig:
    """Build a config from parsed TOML; values not given keep ``base`` (or the defaults)."""
    base = base or SipscaConfig()
    parts: dict[str, Any] = {}
    sca_db: dict[str, Any] = {}
    for section, values in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        if section == "sca":
            values = dict(values)
            for key in list(values):
                if key in _IGNORED_SCA:
                    logger.warning("sca.%s is accepted for Kamailio compatibility and ignored", key)
                    del values[key]
                elif key in _SCA_DB_KEYS:
                    sca_db[key] = values.pop(key)
        parts[section] = _build(section, _SECTIONS[section], values, getattr(base, section))
    _check_sca_db_keys(sca_db, data.get("db", {}))
    if sca_db:
        db = parts.get("db", base.db)
        parts["db"] = _build("sca", DbConfig, sca_db, db)
    config = dataclasses.replace(base, **parts)
    validate(config)
    return config


def _check_sca_db_keys(sca_db: dict[str, Any], db: dict[str, Any]) -> None:
    """Refuse ``[sca]`` and ``[db]`` giving one key two values: neither silently wins.

    The values are not shown: ``db_url`` may hold a password.
    """
    for key, value in sca_db.items():
        if key in db and db[key] != value:
            raise ConfigError(f"sca.{key} and db.{key} are both set, to different values: keep one")


def _build(section: str, cls: type[Any], values: dict[str, Any], current: Any) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return dataclasses.replace(current, **kwargs)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, not {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list")
        item_hint = args[0]
        if item_hint is LineConfig:
            return tuple(_line(name, v) for v in value)
        if typing.get_origin(item_hint) is tuple:  # static routes: [[domain, flow], ...]
            out = []
            for v in value:
                if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)):
                    raise ConfigError(f'{name} entries must be ["domain", "transport:host:port"]')
                out.append((v[0], v[1]))
            return tuple(out)
        return tuple(_coerce(name, item_hint, v) for v in value)
    if origin is types.UnionType:  # pragma: no cover - no optional fields today
        return value
    raise ConfigError(f"{name}: unsupported value {value!r}")


def _line(name: str, value: Any) -> LineConfig:
    if not isinstance(value, dict) or "aor" not in value:
        raise ConfigError(f'{name} entries must be tables with at least aor = "sip:user@domain"')
    unknown = set(value) - {"aor", "members", "aliases"}
    if unknown:
        raise ConfigError(f"unknown key {name}.{sorted(unknown)[0]} (known: aor, members, aliases)")
    aor = _coerce(f"{name}.aor", str, value["aor"])
    try:
        uri = parse_uri(aor)
    except RemoteProtocolError:
        uri = None
    if uri is None or not uri.is_sip or not uri.user:
        raise ConfigError(f'{name}.aor: {aor!r} is not a line address like "sip:215@example.com"')
    return LineConfig(
        aor=aor,
        members=_strings(
            f"{name}.members", "AoRs or user names", value.get("members", []), ["alice"]
        ),
        aliases=_strings(
            f"{name}.aliases", "URIs or numbers", value.get("aliases", []), ["+15551234"]
        ),
    )


def _strings(name: str, what: str, value: Any, example: list[str]) -> tuple[str, ...]:
    """A TOML array of strings; a bare string is refused, not read as its characters
    (``members = "215"`` made the members '2', '1' and '5', so every phone got 403)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{name} must be a list of {what} (e.g. {name.rsplit('.', 1)[-1]} = "
            f"{json.dumps(example)}), not {value!r}"
        )
    return tuple(value)


def parse_listen(text: str) -> tuple[str, str, int]:
    """``udp:127.0.0.1:5060`` -> ("udp", "127.0.0.1", 5060); IPv6 as ``udp:[::1]:5060``."""
    transport, sep, rest = text.partition(":")
    host, sep2, port = rest.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not sep2
        or transport not in ("udp", "tcp", "tls")
        or not host
        or not port.isdigit()
    ):
        raise ConfigError(
            f"server.listen: {text!r} is not transport:host:port (transport udp, tcp or tls)"
        )
    if not 0 <= int(port) < 65536:
        raise ConfigError(f"server.listen: port {port} out of range")
    bare = host.partition("%")[0] if ":" in host else host  # fe80::1%eth0: a scoped address
    if not is_valid_host(f"[{bare}]" if ":" in bare else bare):
        # Only the syntax: a name is resolved when serve binds it (docs/operations.md).
        raise ConfigError(f"server.listen: {text!r}: {host!r} is not a host name or IP address")
    return transport, host, int(port)


def public_listeners(config: SipscaConfig) -> list[str]:
    """The listen hosts that are not loopback (``0.0.0.0`` and names included)."""
    return [h for _, h, _ in map(parse_listen, config.server.listen) if not is_loopback_host(h)]


def _check_hostport(key: str, text: str) -> None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (``server.advertised_address``
    goes into every Via and Record-Route, so a typo would make every reply and in-dialog
    request go astray; ``server.domains`` decide what is "myself")."""
    try:
        host, _ = split_hostport(text)
        bracketed = text.strip().startswith("[")
        valid = is_valid_host(f"[{host}]" if bracketed else host) and (bracketed or ":" not in host)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"server.{key}: {text!r} is not host[:port] (a host name, IPv4 "
            "address or [IPv6] reference, port 1-65535)"
        )


def validate(config: SipscaConfig) -> None:
    """Cross-field checks that a single key cannot express."""
    if not config.server.listen:
        raise ConfigError("server.listen: at least one listener is needed")
    listeners = [parse_listen(item) for item in config.server.listen]
    if any(t == "tls" for t, _, _ in listeners) and not (
        config.server.tls_cert and config.server.tls_key
    ):
        raise ConfigError("server.tls_cert and server.tls_key are needed for a tls listener")
    if config.auth.mode not in ("digest", "none"):
        raise ConfigError(f'auth.mode must be "digest" or "none", not {config.auth.mode!r}')
    if config.auth.mode == "none" and not config.auth.allow_unauthenticated:
        public = public_listeners(config)
        if public:
            raise ConfigError(
                f'auth.mode = "none" on the non-loopback address {public[0]} needs '
                "auth.allow_unauthenticated = true"
            )
    if config.server.advertised_address:
        _check_hostport("advertised_address", config.server.advertised_address)
    for domain in config.server.domains:
        _check_hostport("domains", domain)
    wildcard = [h for _, h, _ in listeners if h.strip("[]") in ("0.0.0.0", "::")]
    if wildcard and not config.server.advertised_address:
        # Via, Record-Route and Contact would name an address nobody can send to
        raise ConfigError(
            f"server.listen on {wildcard[0]} (all interfaces) needs server.advertised_address "
            '(the host[:port] phones reach this server at, e.g. "sip.example.com")'
        )
    _check_auth(config.auth)
    TimerValues.from_config(config.transaction, timer_c=True)  # the proxy runs timer C
    _check_static_routes(config.proxy.static_routes)
    sca = config.sca
    if sca.hash_table_size != -1 and not 1 <= sca.hash_table_size <= 30:
        raise ConfigError(
            "sca.hash_table_size must be -1 (not set: Kamailio's 2^9 slots) or a power-of-2 "
            f"exponent 1..30, not {sca.hash_table_size}"
        )
    for key in ("call_info_max_expires", "line_seize_max_expires", "purge_expired_interval"):
        if getattr(sca, key) <= 0:
            raise ConfigError(f"sca.{key} must be > 0")
    if sca.ringing_ttl <= config.transaction.timer_c:
        raise ConfigError(
            f"sca.ringing_ttl ({sca.ringing_ttl} s) must be longer than transaction.timer_c "
            f"({config.transaction.timer_c:g} s): a call may ring that long"
        )
    if sca.max_appearances < 0:
        raise ConfigError("sca.max_appearances must be >= 0")
    if not -1 <= sca.onhold_bflag <= 31:
        raise ConfigError("sca.onhold_bflag must be -1 (off) or 0..31")
    if sca.call_info_uri not in ("domain", "aor"):
        raise ConfigError('sca.call_info_uri must be "domain" or "aor"')
    for ident in sca.line_identification:
        if ident not in ("request_uri", "to", "from", "alias"):
            raise ConfigError(f"sca.line_identification: unknown method {ident!r}")
    if config.db.db_update_interval < 0:
        raise ConfigError("db.db_update_interval must be >= 0")
    reg = config.registrar
    if not 0 < reg.min_expires <= reg.default_expires <= reg.max_expires:
        raise ConfigError("registrar: need 0 < min_expires <= default_expires <= max_expires")
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"log.level: unknown level {config.log.level!r}")
    if config.log.format not in ("text", "json"):
        raise ConfigError('log.format must be "text" or "json"')
    if config.proxy.unknown_user_status not in (404, 480):
        raise ConfigError("proxy.unknown_user_status must be 404 or 480")
    if config.rpc.enabled:
        _check_rpc(config.rpc)


def _check_auth(auth: AuthConfig) -> None:
    """What the digest authenticator refuses at start-up, checked by building one (the
    settings only matter, and are only checked, with ``mode = "digest"``)."""
    if auth.mode == "digest":
        secret = auth.secret.encode() if auth.secret else bytes(MIN_SECRET_BYTES)
        DigestAuthenticator(secret=secret, nonce_ttl=auth.nonce_ttl, algorithms=auth.algorithms)


def _check_static_routes(routes: tuple[tuple[str, str], ...]) -> None:
    """Each route: a domain and a ``transport:host:port`` flow the resolver can use."""
    for domain, flow in routes:
        if not is_valid_host(f"[{domain}]" if ":" in domain else domain):
            raise ConfigError(f"proxy.static_routes: {domain!r} is not a domain name or address")
        try:
            parsed = parse_flow(flow)
        except RemoteProtocolError:
            parsed = None
        if (
            parsed is None
            or parsed.transport not in ("udp", "tcp", "tls")
            or not 1 <= parsed.port <= 65535
            or not is_valid_host(f"[{parsed.host}]" if ":" in parsed.host else parsed.host)
        ):
            raise ConfigError(
                f"proxy.static_routes: the route for {domain!r}, {flow!r}, is not "
                "transport:host:port (transport udp, tcp or tls, port 1-65535)"
            )


def _check_rpc(rpc: RpcConfig) -> None:
    """The parser and loopback test ``serve`` binds with, so check-config agrees with it."""
    host, _ = parse_rpc_listen(rpc.listen)
    if not is_loopback_host(host) and not rpc.token.strip():
        raise ConfigError(f"rpc.listen {rpc.listen} is not loopback: set rpc.token")
