"""Next-hop resolution: URI -> transport flow (RFC 3263 client side).

Static routes from the config win; IP literals are used as is. A host name goes through
RFC 3263 with dnspython: NAPTR (only when the URI gives neither transport nor port), then
SRV (priority, then weight: RFC 2782), then A/AAAA. Addresses DNS does not know come from
``socket.getaddrinfo`` (``/etc/hosts``, nsswitch); ``localhost`` names are never sent to DNS
(RFC 6761 6.3). Answers, positive and negative, are cached for their TTL.

:meth:`Resolver.resolve_now` never does I/O (the per-request fast path);
:meth:`Resolver.resolve` runs the DNS procedure in a small thread pool of its own, so the
event loop never waits for DNS and a slow name server cannot hold up the threads the rest
of the server uses. Concurrent look-ups of the same name share one query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.uri import SipUri

if TYPE_CHECKING:
    import dns.rdtypes.IN.SRV
    import dns.rrset

__all__ = ["DnsClient", "Resolver"]

logger = logging.getLogger(__name__)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _is_localhost(name: str) -> bool:
    """RFC 6761 6.3: ``localhost`` and names under it are loopback and never asked of DNS."""
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


_LITERAL_CACHE = 65536
"""IP-literal next hops remembered; the cache is emptied when it is full."""
NAME_CACHE = 16384
"""DNS answers remembered (names come from requests: the cache must be bounded)."""
MAX_PENDING = 256
"""Look-ups queued or running at once; more fail at once (a flood of random names must not
queue work without bound)."""
DNS_THREADS = 4
"""Threads of the resolver's own pool (a look-up mostly waits for the network)."""
QUERY_LIFETIME = 2.0
"""Seconds one DNS query may take, retries included."""
MIN_TTL = 1.0
MAX_TTL = 3600.0
"""Bounds of how long a positive DNS answer is used (its TTL, clipped)."""
NEGATIVE_TTL = 30.0
"""A name DNS says does not exist (or has no address), when the answer gives no SOA."""
MAX_NEGATIVE_TTL = 60.0
"""A negative answer is remembered at most this long, whatever its SOA says."""
FAILURE_TTL = 5.0
"""No answer at all (time-out, SERVFAIL, no name server): retried after this long."""
HOSTS_TTL = 60.0
"""An address found by ``getaddrinfo`` (hosts file) carries no TTL: used this long."""

_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
"""RFC 3263 4.1 NAPTR services, by transport (SCTP and WebSocket are not supported)."""
_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_SRV_ORDER = ("udp", "tcp", "tls")
"""Transports tried by SRV when a domain has no NAPTR records (RFC 3263 4.1)."""


class DnsClient(Protocol):
    """What :class:`Resolver` needs of ``dns.resolver.Resolver`` (a seam for tests)."""

    def resolve(
        self, qname: str, rdtype: str, *, lifetime: float | None = ..., search: bool | None = ...
    ) -> Any: ...


LookupKey = tuple[str, str | None, int | None, bool]
"""(target host in lower case, explicit transport or None, port or None, SIPS URI)."""


def _default_port(transport: str) -> int:
    return 5061 if transport == "tls" else 5060


class _Lookup:
    """One run of the RFC 3263 procedure (in a resolver thread): queries and the TTL."""

    def __init__(
        self,
        dns_client: DnsClient | None,
        getaddrinfo: Callable[..., list[Any]],
        rng: random.Random,
        tls: bool = True,
    ) -> None:
        self.dns = dns_client
        self.tls = tls
        """TLS may be chosen for a ``sip:`` URI (the server can make TLS connections)."""
        self.getaddrinfo = getaddrinfo
        self.rng = rng
        self.ttl = MAX_TTL
        self.negative_ttl: float | None = None
        """The SOA's negative TTL (RFC 2308 5) of the negative answers met, if any."""
        self.failed = dns_client is None
        """DNS gave no answer at all (time-out, SERVFAIL): ask nothing more of it."""
        self.missing: set[str] = set()
        """Names DNS says do not exist: no query for them or names under them (RFC 8020)."""

    # ------------------------------------------------------------------ queries
    def query(self, name: str, rdtype: str) -> dns.rrset.RRset | None:
        """The records, or None (no such name or records, or DNS unavailable)."""
        import dns.exception
        import dns.resolver

        name = name if name.endswith(".") else name + "."  # absolute: no search list
        if self.failed or self.dns is None or self._under_missing(name.lower()):
            return None
        try:
            answer = self.dns.resolve(name, rdtype, lifetime=QUERY_LIFETIME, search=False)
        except dns.resolver.NXDOMAIN as exc:
            self.missing.add(name.lower())
            self._negative(exc)
            return None
        except dns.resolver.NoAnswer as exc:
            self._negative(exc)
            return None
        except dns.exception.DNSException as exc:  # time-out, SERVFAIL, no name servers
            logger.info("DNS %s query for %s failed: %s", rdtype, name, exc)
            self.failed = True
            return None
        rrset: dns.rrset.RRset | None = answer.rrset
        if rrset is None or len(rrset) == 0:
            return None
        self.ttl = min(self.ttl, float(rrset.ttl))
        return rrset

    def _under_missing(self, name: str) -> bool:
        return any(name == gone or name.endswith("." + gone) for gone in self.missing)

    def _negative(self, exc: Exception) -> None:
        """Note the negative TTL: the SOA's (RFC 2308 5), when the answer has one."""
        import dns.rdatatype

        ttl = NEGATIVE_TTL
        try:
            kwargs: dict[str, Any] = getattr(exc, "kwargs", {})
            messages = list((kwargs.get("responses") or {}).values())
            if kwargs.get("response") is not None:
                messages.append(kwargs["response"])
            for message in messages:
                for rrset in message.authority:
                    if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                        ttl = min(float(rrset.ttl), float(next(iter(rrset)).minimum))
        except Exception:  # a malformed answer: keep the default
            ttl = NEGATIVE_TTL
        self.negative_ttl = ttl if self.negative_ttl is None else min(self.negative_ttl, ttl)

    # ------------------------------------------------------------------ RFC 3263 steps
    def run(self, host: str, transport: str | None, port: int | None, secure: bool) -> Flow | None:
        """RFC 3263 4.1 (transport) and 4.2 (address and port) for one URI target."""
        if port is not None or _is_localhost(host):
            chosen = transport or ("tls" if secure else "udp")
            return self.address(host, chosen, port or _default_port(chosen))
        if transport is not None:
            # 4.2: an explicit transport: SRV for it, else A/AAAA on the default port.
            found, flow = self.srv(f"{_SRV_PREFIX[transport]}.{host}", transport)
            if found:
                return flow
            return self.address(host, transport, _default_port(transport))
        first_naptr: str | None = None
        for chosen, name in self.naptr(host, secure):
            first_naptr = first_naptr or chosen
            _, flow = self.srv(name, chosen)
            if flow is not None:
                return flow
        if first_naptr is not None:  # NAPTR chose a transport but no SRV record is usable
            return self.address(host, first_naptr, _default_port(first_naptr))
        # 4.1: no NAPTR records: SRV for every transport supported, in our order.
        any_srv = False
        for chosen in ("tls",) if secure else _SRV_ORDER[: 3 if self.tls else 2]:
            found, flow = self.srv(f"{_SRV_PREFIX[chosen]}.{host}", chosen)
            if flow is not None:
                return flow
            any_srv = any_srv or found
        if any_srv:  # SRV records exist, none with a usable target: no A fallback
            return None
        chosen = "tls" if secure else "udp"
        return self.address(host, chosen, _default_port(chosen))

    def naptr(self, host: str, secure: bool) -> list[tuple[str, str]]:
        """(transport, SRV name) of the usable NAPTR records, by order and preference."""
        import dns.rdtypes.IN.NAPTR

        rrset = self.query(host, "NAPTR")
        if rrset is None:
            return []
        usable: list[tuple[int, int, str, str]] = []
        for record in rrset:
            if not isinstance(record, dns.rdtypes.IN.NAPTR.NAPTR):
                continue
            service = record.service.decode("ascii", "replace").upper()
            transport = _SERVICES.get(service)
            if record.flags.lower() != b"s" or transport is None:
                continue
            if secure and transport != "tls":
                continue  # a SIPS URI only over TLS
            if transport == "tls" and not (secure or self.tls):
                continue
            usable.append((record.order, record.preference, transport, str(record.replacement)))
        usable.sort(key=lambda item: (item[0], item[1]))
        return [(transport, name) for _, _, transport, name in usable]

    def srv(self, name: str, transport: str) -> tuple[bool, Flow | None]:
        """(records found, flow of the first usable target in RFC 2782 order)."""
        import dns.rdtypes.IN.SRV

        rrset = self.query(name, "SRV")
        if rrset is None:
            return False, None
        records = [r for r in rrset if isinstance(r, dns.rdtypes.IN.SRV.SRV)]
        for record in self.srv_order(records):
            target = str(record.target)
            if target == ".":
                continue  # "the service is decidedly not available at this domain"
            flow = self.address(target, transport, int(record.port))
            if flow is not None:
                return True, flow
        return True, None

    def srv_order(self, records: list[dns.rdtypes.IN.SRV.SRV]) -> list[dns.rdtypes.IN.SRV.SRV]:
        """RFC 2782: lowest priority first; within a priority, weighted random order."""
        out: list[dns.rdtypes.IN.SRV.SRV] = []
        for priority in sorted({r.priority for r in records}):
            group = [r for r in records if r.priority == priority]
            group.sort(key=lambda r: r.weight != 0)  # weight 0 first, as the RFC says
            while group:
                total = sum(r.weight for r in group)
                point = self.rng.randint(0, total)
                running = 0
                for index, record in enumerate(group):
                    running += record.weight
                    if running >= point:
                        out.append(group.pop(index))
                        break
        return out

    def address(self, host: str, transport: str, port: int) -> Flow | None:
        """A, then AAAA; then ``getaddrinfo`` (hosts file) for what DNS does not know."""
        import dns.rdtypes.IN.A
        import dns.rdtypes.IN.AAAA

        if not _is_localhost(host):
            for rdtype in ("A", "AAAA"):
                rrset = self.query(host, rdtype)
                for record in rrset or ():
                    if isinstance(record, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
                        return Flow(transport, str(record.address), port)
        found = self.system_address(host.rstrip("."))
        if found is None:
            return None
        self.ttl = min(self.ttl, HOSTS_TTL)
        return Flow(transport, found, port)

    def system_address(self, host: str) -> str | None:
        """The first address ``getaddrinfo`` gives (IPv4 preferred), or None."""
        try:
            infos = self.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            logger.info("no address for %s: %s", host, exc)
            return None
        addresses = [(info[0], str(info[4][0])) for info in infos]
        for family, address in addresses:
            if family == socket.AF_INET:
                return address
        for _, address in addresses:
            return address.partition("%")[0]  # an IPv6 scope is no part of a SIP host
        return None

    def result_ttl(self, flow: Flow | None) -> float:
        if flow is not None:
            return max(MIN_TTL, min(self.ttl, MAX_TTL))
        if self.failed and self.dns is not None:
            return FAILURE_TTL
        negative = NEGATIVE_TTL if self.negative_ttl is None else self.negative_ttl
        return max(MIN_TTL, min(negative, MAX_NEGATIVE_TTL))


class Resolver:
    """Turns a next-hop URI into a Flow; ``resolve_now`` never blocks."""

    def __init__(
        self,
        static_routes: tuple[tuple[str, str], ...] = (),
        *,
        dns_client: DnsClient | None = None,
        getaddrinfo: Callable[..., list[Any]] | None = None,
        rng: random.Random | None = None,
        tls: bool = True,
    ) -> None:
        """``tls``: whether DNS may choose TLS for a ``sip:`` URI (NAPTR ``SIPS+D2T``, SRV
        ``_sips._tcp``); False when the server has no TLS listener (and no TLS client)."""
        self.static = {domain.lower(): parse_flow(flow) for domain, flow in static_routes}
        self._cache: dict[LookupKey, tuple[float, Flow | None]] = {}
        self._literals: dict[tuple[str, str, int | None], Flow] = {}
        """IP-literal next hops: checked once, then one shared Flow per address (every
        NOTIFY and forwarded request resolves one, and its transaction keeps it)."""
        self._dns: DnsClient | None = dns_client
        self._dns_ready = dns_client is not None
        self._getaddrinfo = getaddrinfo or socket.getaddrinfo
        self._rng = rng or random.Random()
        self._pending: dict[LookupKey, asyncio.Future[Flow | None]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._tls = tls

    @staticmethod
    def transport_of(uri: SipUri) -> str:
        value = (uri.param("transport") or "").lower()
        if uri.scheme == "sips":
            return "tls"
        return value if value in ("udp", "tcp", "tls") else "udp"

    @staticmethod
    def lookup_key(uri: SipUri) -> LookupKey:
        """What a DNS answer for ``uri`` depends on (RFC 3263: target, transport, port)."""
        host = (uri.param("maddr") or uri.host).strip("[]").rstrip(".").lower()
        secure = uri.scheme == "sips"
        value = uri.param("transport")
        transport: str | None = None
        if value is not None and not secure:
            value = value.lower()
            transport = value if value in ("udp", "tcp", "tls") else "udp"
        return (host, transport, uri.port, secure)

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
        hit = self._cache.get(self.lookup_key(uri))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def must_query(self, uri: SipUri) -> bool:
        """``resolve_now`` gave None and only DNS can tell: call :meth:`resolve`.

        False for a name whose failure is cached (or a URI without a host): it fails now.
        """
        key = self.lookup_key(uri)
        if not key[0] or _is_ip(key[0]) or self.static.get(key[0]) is not None:
            return False
        hit = self._cache.get(key)
        return hit is None or hit[0] <= time.monotonic()

    async def resolve(self, uri: SipUri) -> Flow | None:
        """Resolve, running RFC 3263 (NAPTR, SRV, A/AAAA) when the answer is not cached."""
        flow = self.resolve_now(uri)
        if flow is not None or not self.must_query(uri):
            return flow
        key = self.lookup_key(uri)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= MAX_PENDING:
                logger.warning("%d DNS look-ups pending: %s not resolved", MAX_PENDING, key[0])
                return None
            pending = asyncio.ensure_future(self._query(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # shield: a waiter cancelled (its request gone) does not cancel the shared look-up
        return await asyncio.shield(pending)

    async def _query(self, key: LookupKey) -> Flow | None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="sipsca-dns")
        try:
            flow, ttl = await loop.run_in_executor(self._executor, self._lookup, *key)
        except Exception:
            logger.exception("DNS look-up of %s failed", key[0])
            flow, ttl = None, FAILURE_TTL
        if len(self._cache) >= NAME_CACHE:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= NAME_CACHE:
                self._cache.clear()
        self._cache[key] = (time.monotonic() + ttl, flow)
        if flow is None:
            logger.info("cannot resolve %s (cached for %.0f s)", key[0], ttl)
        else:
            logger.debug("resolved %s to %s (cached for %.0f s)", key[0], flow, ttl)
        return flow

    def _lookup(
        self, host: str, transport: str | None, port: int | None, secure: bool
    ) -> tuple[Flow | None, float]:
        """RFC 3263 for one target, blocking (runs in a resolver thread): flow and TTL."""
        lookup = _Lookup(self._dns_client(), self._getaddrinfo, self._rng, self._tls)
        flow = lookup.run(host, transport, port, secure)
        return flow, lookup.result_ttl(flow)

    def _dns_client(self) -> DnsClient | None:
        """dnspython's resolver on the system's name servers, made on first use."""
        if not self._dns_ready:
            import dns.resolver

            self._dns_ready = True
            try:
                self._dns = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                logger.warning("no DNS name servers (%s): only the hosts file is used", exc)
                self._dns = None
        return self._dns

    def close(self) -> None:
        """Stop the resolver threads (a look-up still running finishes in the background)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
