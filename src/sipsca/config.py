"""Typed configuration, passed into every layer (no global config, no file reading here).

``sipsca.cli.settings`` is the only place that reads TOML or the environment; keys of the
``[sca]`` section keep the names of Kamailio's ``sca`` module parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AuthConfig",
    "DbConfig",
    "LineConfig",
    "LogConfig",
    "ProxyConfig",
    "RegistrarConfig",
    "RpcConfig",
    "ScaConfig",
    "ServerConfig",
    "SipscaConfig",
    "TransactionConfig",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[str, ...] = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
    """Listeners as ``transport:host:port`` (transport udp, tcp or tls)."""
    domains: tuple[str, ...] = ()
    """Served domains/aliases besides the listen addresses ("myself")."""
    advertised_address: str = ""
    """Host[:port] put in Via/Record-Route instead of the listen address (NAT, 0.0.0.0)."""
    tls_cert: str = ""
    tls_key: str = ""
    user_agent: str = "sipsca"
    max_message_size: int = 65535
    tcp_idle_timeout: float = 600.0
    """Seconds an idle TCP/TLS connection is kept open."""
    max_connections: int = 4096
    overload_queue: int = 20000
    """Requests waiting beyond this are shed with 503 + Retry-After."""


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """RFC 3261 17 timer values in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_c: float = 180.0
    """Proxy INVITE timer C (RFC 3261 16.6 step 11), > 3 minutes recommended."""


@dataclass(frozen=True, slots=True)
class LineConfig:
    """A shared line (AoR) with optional explicit membership and aliases."""

    aor: str
    members: tuple[str, ...] = ()
    """AoRs/usernames allowed to subscribe (empty = anybody allowed to reach the line)."""
    aliases: tuple[str, ...] = ()
    """Other URIs (DIDs, E.164 numbers) that mean this line."""


@dataclass(frozen=True, slots=True)
class ScaConfig:
    """The ``sca`` module parameters (Kamailio names and defaults) plus sipsca's own."""

    hash_table_size: int = -1
    """Accepted for compatibility; Python dicts need no sizing (ignored)."""
    call_info_max_expires: int = 3600
    line_seize_max_expires: int = 15
    purge_expired_interval: int = 120
    server_address: str = ""
    """Used verbatim as Contact of SUBSCRIBE 2xx replies and NOTIFYs when set."""
    onhold_bflag: int = -1
    """Kamailio branch flag forcing hold; in sipsca: -1 off, >=0 means 'treat every
    re-INVITE from a line as hold' is NOT implied - see docs/compat.md."""
    contact_fallback: str = ""
    max_appearances: int = 0
    """Appearances per line; 0 = unbounded (Kamailio)."""
    seized_ttl: int = 120
    pending_ttl: int = 35
    call_info_uri: str = "domain"
    """``domain`` renders ``<sip:DOMAIN>`` (Kamailio); ``aor`` renders the full AoR."""
    line_identification: tuple[str, ...] = ("request_uri", "to", "from", "alias")
    lines: tuple[LineConfig, ...] = ()
    incoming_alerting: bool = True
    """Show incoming calls to a line as ``alerting`` and add Call-Info to forked INVITEs."""
    outgoing_auto_appearance: bool = True
    """Give outgoing calls without a prior line-seize the lowest free appearance."""


@dataclass(frozen=True, slots=True)
class DbConfig:
    db_url: str = "sqlite://var/sipsca.sqlite"
    """Kamailio style: ``sqlite://`` + path (``sqlite://var/x.sqlite`` is relative,
    ``sqlite:///var/lib/x.sqlite`` absolute)."""
    subs_table: str = "sca_subscriptions"
    db_update_interval: int = 300
    """Seconds between write-backs; 0 = write-through."""
    server_id: int = 0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    mode: str = "none"
    """``digest`` or ``none``."""
    realm: str = ""
    """Defaults to the From/To domain of the request when empty."""
    allow_unauthenticated: bool = False
    nonce_ttl: int = 300
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    secret: str = ""
    """Nonce signing key; random per start when empty."""


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 0
    """0 = unlimited."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    record_route: bool = True
    static_routes: tuple[tuple[str, str], ...] = ()
    """(domain, ``transport:host:port``) next hops for non-local domains."""
    unknown_user_status: int = 404
    """Reply for a local user with no binding (404, or 480 for a known subscriber)."""


@dataclass(frozen=True, slots=True)
class RpcConfig:
    listen: str = "127.0.0.1:5080"
    token: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"
    """``text`` or ``json``."""


@dataclass(frozen=True, slots=True)
class SipscaConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    transaction: TransactionConfig = field(default_factory=TransactionConfig)
    sca: ScaConfig = field(default_factory=ScaConfig)
    db: DbConfig = field(default_factory=DbConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    log: LogConfig = field(default_factory=LogConfig)
