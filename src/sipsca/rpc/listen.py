"""Where the RPC server listens, and whether that is safe without a token.

Separate from :mod:`sipsca.rpc.app` so the ``sipsca rpc`` client can turn ``[rpc] listen`` into
a URL without importing aiohttp.

The management API can seize and release lines and cut every subscription, so anyone who can
reach it controls the service: it is bound to loopback unless a bearer token is configured.
"""

from __future__ import annotations

import ipaddress

from sipsca.errors import ConfigError

__all__ = ["check_rpc_listen", "client_url", "format_hostport", "is_loopback_host", "parse_listen"]


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped loopback) and the name ``localhost``."""
    host = _strip_brackets(host.strip())
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name may resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_rpc_listen(host: str, token: str) -> None:
    """Refuse a non-loopback listen address without a token (start-up calls this).

    Raises:
        ConfigError: ``host`` is reachable from other machines and ``token`` is empty.
    """
    if not token.strip() and not is_loopback_host(host):
        raise ConfigError(
            f"rpc listen address {host!r} is not loopback: "
            "a non-loopback rpc listen address needs [rpc] token"
        )


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` (the ``[rpc] listen`` format) into host and port.

    Raises:
        ConfigError: not in that format or the port is out of range.
    """
    text = listen.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"rpc.listen: {listen!r} is not host:port")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(f"rpc.listen: {listen!r}: write IPv6 addresses as [addr]:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"rpc.listen: {listen!r}: port {port} out of range (0-65535)")
    return _strip_brackets(host), port


def format_hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets: the form ``parse_listen`` reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_url(listen: str) -> str:
    """The URL a local client uses to reach a server configured with ``listen``.

    A wildcard bind address is reached through loopback.
    """
    host, port = parse_listen(listen)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{format_hostport(host, port)}/RPC"
