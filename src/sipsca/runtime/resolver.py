"""Next-hop resolution: URI -> transport flow (RFC 3263, simplified).

Static routes from the config win; IP literals are used as is; host names go through
DNS SRV then A/AAAA with dnspython. Results for names are cached for their TTL-less
lifetime of 60 s (a proxy must not block on DNS per request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.uri import SipUri

__all__ = ["Resolver"]

logger = logging.getLogger(__name__)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


_LITERAL_CACHE = 65536
"""IP-literal next hops remembered; the cache is emptied when it is full."""


class Resolver:
    """Turns a next-hop URI into a Flow; ``resolve_now`` never blocks."""

    def __init__(self, static_routes: tuple[tuple[str, str], ...] = ()) -> None:
        self.static = {domain.lower(): parse_flow(flow) for domain, flow in static_routes}
        self._cache: dict[tuple[str, str], tuple[float, Flow | None]] = {}
        self._literals: dict[tuple[str, str, int | None], Flow] = {}
        """IP-literal next hops: checked once, then one shared Flow per address (every
        NOTIFY and forwarded request resolves one, and its transaction keeps it)."""

    @staticmethod
    def transport_of(uri: SipUri) -> str:
        value = (uri.param("transport") or "").lower()
        if uri.scheme == "sips":
            return "tls"
        return value if value in ("udp", "tcp", "tls") else "udp"

    def resolve_now(self, uri: SipUri) -> Flow | None:
        """Resolve without I/O: static routes, IP literals, or a cached DNS answer."""
        host = (uri.param("maddr") or uri.host).strip("[]")
        transport = self.transport_of(uri)
        static = self.static.get(host.lower())
        if static is not None:
            return static
        literal = (transport, host, uri.port)
        flow = self._literals.get(literal)
        if flow is not None:
            return flow
        if _is_ip(host):
            default = 5061 if transport == "tls" else 5060
            if len(self._literals) >= _LITERAL_CACHE:
                self._literals.clear()
            flow = self._literals[literal] = Flow(transport, host, uri.port or default)
            return flow
        hit = self._cache.get((host.lower(), transport))
        if hit is not None and hit[0] > time.monotonic():
            flow = hit[1]
            if flow is not None and uri.port:
                return Flow(flow.transport, flow.host, uri.port)
            return flow
        return None

    async def resolve(self, uri: SipUri) -> Flow | None:
        """Resolve, querying DNS (SRV, then A) when needed."""
        flow = self.resolve_now(uri)
        if flow is not None:
            return flow
        host = uri.host.lower()
        transport = self.transport_of(uri)
        result = await asyncio.to_thread(self._lookup, host, transport, uri.port)
        self._cache[(host, transport)] = (time.monotonic() + 60.0, result)
        return result

    @staticmethod
    def _lookup(host: str, transport: str, port: int | None) -> Flow | None:
        import dns.exception
        import dns.resolver

        default = 5061 if transport == "tls" else 5060
        try:
            if port is None:
                service = "_sips._tcp" if transport == "tls" else f"_sip._{transport}"
                try:
                    answers = dns.resolver.resolve(f"{service}.{host}", "SRV", lifetime=2.0)
                    best = sorted(answers, key=lambda r: (r.priority, -r.weight))[0]
                    target = str(best.target).rstrip(".")
                    a = dns.resolver.resolve(target, "A", lifetime=2.0)
                    return Flow(transport, str(a[0]), int(best.port))
                except dns.exception.DNSException:
                    pass
            a = dns.resolver.resolve(host, "A", lifetime=2.0)
            return Flow(transport, str(a[0]), port or default)
        except dns.exception.DNSException as exc:
            logger.info("DNS lookup of %s failed: %s", host, exc)
            return None
