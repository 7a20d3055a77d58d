"""Transport addresses (flows): where a message came from or goes to."""

from __future__ import annotations

from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError

__all__ = ["Flow", "parse_flow"]

RELIABLE = frozenset({"tcp", "tls", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Flow:
    """A transport, remote host and port, e.g. ``udp:127.0.0.1:5060``.

    For TCP/TLS a flow names the connection to that peer, so replies and later requests
    to it reuse the open connection (RFC 3261 18.2.2, RFC 5626).
    """

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_flow(text: str) -> Flow:
    """Parse ``transport:host:port`` (IPv6 hosts in brackets)."""
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if (
        transport.lower() not in ("udp", "tcp", "tls", "ws", "wss")
        or not host
        or not (port.isascii() and port.isdigit())
        or len(port) > 5
        or int(port) > 65535
    ):
        raise RemoteProtocolError(f"Malformed flow {text!r}")
    return Flow(transport.lower(), host, int(port))
