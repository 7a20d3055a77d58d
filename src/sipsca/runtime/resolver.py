"""Next-hop resolution: URI -> transport flow (RFC 3263 client side).

Static routes from the config win; IP literals are used as is. A host name goes through
RFC 3263 with dnspython: NAPTR (only when the URI gives neither transport nor port), then
SRV (priority, then weight: RFC 2782), then A/AAAA. Addresses DNS does not know come from
``socket.getaddrinfo`` (``/etc/hosts``, nsswitch); ``localhost`` names are never sent to DNS
(RFC 6761 6.3). Answers, positive and negative, are cached for their TTL.

A look-up gives an ordered list of targets, not one (RFC 3263 4.3): every SRV record of the
chosen transport in RFC 2782 order, each with its addresses (at most
:data:`ADDRESSES_PER_SRV_TARGET` of one target), at most :data:`MAX_TARGETS` in all. The
proxy sends to the first and fails over to the next when a target does not answer, cannot
be reached or answers 503 (``runtime.forwarding``).

:meth:`Resolver.resolve_now` / :meth:`Resolver.targets_now` never do I/O (the per-request
fast path); :meth:`Resolver.resolve` / :meth:`Resolver.resolve_targets` run the DNS
procedure in a small thread pool of its own, so the event loop never waits for DNS and a
slow name server cannot hold up the threads the rest of the server uses. Concurrent
look-ups of the same name share one query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.uri import SipUri

if TYPE_CHECKING:
    import dns.rrset

__all__ = ["ADDRESSES_PER_SRV_TARGET", "MAX_TARGETS", "DnsClient", "Resolver", "srv_order"]

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
MAX_TARGETS = 12
"""Targets one look-up gives at most (SRV targets in order, each with its addresses): the
number of next hops a branch tries before it fails (RFC 3263 4.3 failover)."""
ADDRESSES_PER_SRV_TARGET = 3
"""Addresses taken of one SRV target at most. Without it a first target with many A
records (a pool behind one name) would fill :data:`MAX_TARGETS` and the backup targets of
the next priorities, the reason SRV lists several, would never be tried; with it the
first four targets always fit, and a target tried at three addresses is as good as down."""

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


class SrvRecord(Protocol):
    """What :func:`srv_order` reads of an SRV record (dnspython's, or a test's tuple)."""

    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int: ...


R = TypeVar("R", bound=SrvRecord)


def srv_order(records: Iterable[R], randint: Callable[[int, int], int]) -> list[R]:
    """RFC 2782 order: lowest priority first; within a priority, weighted random order.

    Pure: ``randint(a, b)`` (like :meth:`random.Random.randint`) is the only source of
    chance. Within a priority the records of weight 0 are put first, then repeatedly a
    number is drawn in 0..(sum of the weights left) and the first record whose running sum
    of weights reaches it is taken next. With every weight 0 the order is kept.
    """
    items = list(records)
    out: list[R] = []
    for priority in sorted({r.priority for r in items}):
        group = [r for r in items if r.priority == priority]
        group.sort(key=lambda r: r.weight != 0)  # weight 0 first, as the RFC says
        while group:
            total = sum(r.weight for r in group)
            point = randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= point:
                    out.append(group.pop(index))
                    break
            else:  # a randint out of range: keep going rather than loop for ever
                out.append(group.pop())
    return out


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
        self.partial = False
        """DNS stopped answering after some targets were found: the list may be short."""

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
    def run(self, host: str, transport: str | None, port: int | None, secure: bool) -> list[Flow]:
        """RFC 3263 4.1 (transport) and 4.2 (address and port) for one URI target: the
        targets in the order to try them (4.3), at most :data:`MAX_TARGETS`, all of one
        transport."""
        if port is not None or _is_localhost(host):
            chosen = transport or ("tls" if secure else "udp")
            return self.addresses(host, chosen, port or _default_port(chosen))
        if transport is not None:
            # 4.2: an explicit transport: SRV for it, else A/AAAA on the default port.
            found, flows = self.srv(f"{_SRV_PREFIX[transport]}.{host}", transport)
            if found:
                return flows
            return self.addresses(host, transport, _default_port(transport))
        first_naptr: str | None = None
        for chosen, name in self.naptr(host, secure):
            first_naptr = first_naptr or chosen
            _, flows = self.srv(name, chosen)
            if flows:
                return flows
        if first_naptr is not None:  # NAPTR chose a transport but no SRV record is usable
            return self.addresses(host, first_naptr, _default_port(first_naptr))
        # 4.1: no NAPTR records: SRV for every transport supported, in our order.
        any_srv = False
        for chosen in ("tls",) if secure else _SRV_ORDER[: 3 if self.tls else 2]:
            found, flows = self.srv(f"{_SRV_PREFIX[chosen]}.{host}", chosen)
            if flows:
                return flows
            any_srv = any_srv or found
        if any_srv:  # SRV records exist, none with a usable target: no A fallback
            return []
        chosen = "tls" if secure else "udp"
        return self.addresses(host, chosen, _default_port(chosen))

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

    def srv(self, name: str, transport: str) -> tuple[bool, list[Flow]]:
        """(records found, the usable targets in RFC 2782 order, each with its addresses:
        at most :data:`ADDRESSES_PER_SRV_TARGET` of one target)."""
        import dns.rdtypes.IN.SRV

        rrset = self.query(name, "SRV")
        if rrset is None:
            return False, []
        records = [r for r in rrset if isinstance(r, dns.rdtypes.IN.SRV.SRV)]
        flows: list[Flow] = []
        for record in srv_order(records, self.rng.randint):
            target = str(record.target)
            if target == ".":
                continue  # "the service is decidedly not available at this domain"
            found = self.addresses(target, transport, int(record.port), more=bool(flows))
            for flow in found[:ADDRESSES_PER_SRV_TARGET]:
                if flow not in flows:
                    flows.append(flow)
            if len(flows) >= MAX_TARGETS:
                break
            if self.failed and flows:
                self.partial = True  # the rest would wait for a silent name server
                break
        return True, flows[:MAX_TARGETS]

    def addresses(self, host: str, transport: str, port: int, *, more: bool = False) -> list[Flow]:
        """Every A address, else every AAAA address; else ``getaddrinfo`` (hosts file) for
        what DNS does not know. ``more``: targets were found already, so when DNS has
        stopped answering this one is skipped rather than asked of ``getaddrinfo`` (which
        may wait for the same name servers)."""
        import dns.rdtypes.IN.A
        import dns.rdtypes.IN.AAAA

        if not _is_localhost(host):
            for rdtype in ("A", "AAAA"):
                rrset = self.query(host, rdtype)
                found = [
                    Flow(transport, str(record.address), port)
                    for record in rrset or ()
                    if isinstance(record, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA)
                ]
                if found:
                    return found[:MAX_TARGETS]
            if more and self.failed:
                return []
        system = self.system_addresses(host.rstrip("."))
        if not system:
            return []
        self.ttl = min(self.ttl, HOSTS_TTL)
        return [Flow(transport, address, port) for address in system[:MAX_TARGETS]]

    def system_addresses(self, host: str) -> list[str]:
        """The addresses ``getaddrinfo`` gives: the IPv4 ones, else the IPv6 ones."""
        try:
            infos = self.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            logger.info("no address for %s: %s", host, exc)
            return []
        v4: dict[str, None] = {}
        v6: dict[str, None] = {}
        for info in infos:
            address = str(info[4][0])
            if info[0] == socket.AF_INET:
                v4[address] = None
            else:
                v6[address.partition("%")[0]] = None  # an IPv6 scope is no part of a SIP host
        return list(v4 or v6)

    def result_ttl(self, flows: list[Flow]) -> float:
        if flows:
            ttl = min(self.ttl, FAILURE_TTL) if self.partial else self.ttl
            return max(MIN_TTL, min(ttl, MAX_TTL))
        if self.failed and self.dns is not None:
            return FAILURE_TTL
        negative = NEGATIVE_TTL if self.negative_ttl is None else self.negative_ttl
        return max(MIN_TTL, min(negative, MAX_NEGATIVE_TTL))


class Resolver:
    """Turns a next-hop URI into Flows (targets in the order to try); ``*_now`` never block."""

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
        self._cache: dict[LookupKey, tuple[float, tuple[Flow, ...]]] = {}
        """(expiry, targets) by look-up key; no target: a negative answer."""
        self._literals: dict[tuple[str, str, int | None], Flow] = {}
        """IP-literal next hops: checked once, then one shared Flow per address (every
        NOTIFY and forwarded request resolves one, and its transaction keeps it)."""
        self._dns: DnsClient | None = dns_client
        self._dns_ready = dns_client is not None
        self._getaddrinfo = getaddrinfo or socket.getaddrinfo
        self._rng = rng or random.Random()
        self._pending: dict[LookupKey, asyncio.Future[tuple[Flow, ...]]] = {}
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
        """Resolve without I/O: static routes, IP literals, or a cached DNS answer (its
        first target)."""
        targets = self.targets_now(uri)
        return targets[0] if targets else None

    def targets_now(self, uri: SipUri) -> tuple[Flow, ...]:
        """Every target, without I/O: a static route or an IP literal (one), or a cached DNS
        answer (in the order to try them); () when not known (yet)."""
        flow = self._fixed(uri)
        if flow is not None:
            return (flow,)
        return self._cached(uri) or ()

    def _cached(self, uri: SipUri) -> tuple[Flow, ...] | None:
        hit = self._cache.get(self.lookup_key(uri))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def _fixed(self, uri: SipUri) -> Flow | None:
        """A static route's flow, an IP literal's, or None (a name: DNS)."""
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
        """The first target, running RFC 3263 when the answer is not cached."""
        targets = await self.resolve_targets(uri)
        return targets[0] if targets else None

    async def resolve_targets(self, uri: SipUri) -> tuple[Flow, ...]:
        """Every target in the order to try them (RFC 3263 4.3), running RFC 3263 (NAPTR,
        SRV, A/AAAA) when the answer is not cached; () when there is none."""
        targets = self.targets_now(uri)
        if targets or not self.must_query(uri):
            return targets
        key = self.lookup_key(uri)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= MAX_PENDING:
                logger.warning("%d DNS look-ups pending: %s not resolved", MAX_PENDING, key[0])
                return ()
            pending = asyncio.ensure_future(self._query(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # shield: a waiter cancelled (its request gone) does not cancel the shared look-up
        return await asyncio.shield(pending)

    async def _query(self, key: LookupKey) -> tuple[Flow, ...]:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="sipsca-dns")
        try:
            found, ttl = await loop.run_in_executor(self._executor, self._lookup, *key)
            targets = tuple(found or ())
        except Exception:
            logger.exception("DNS look-up of %s failed", key[0])
            targets, ttl = (), FAILURE_TTL
        if len(self._cache) >= NAME_CACHE:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= NAME_CACHE:
                self._cache.clear()
        self._cache[key] = (time.monotonic() + ttl, targets)
        if not targets:
            logger.info("cannot resolve %s (cached for %.0f s)", key[0], ttl)
        else:
            logger.debug(
                "resolved %s to %s (cached for %.0f s)",
                key[0],
                ", ".join(str(flow) for flow in targets),
                ttl,
            )
        return targets

    def _lookup(
        self, host: str, transport: str | None, port: int | None, secure: bool
    ) -> tuple[tuple[Flow, ...], float]:
        """RFC 3263 for one target, blocking (runs in a resolver thread): the targets in
        the order to try them, and the TTL."""
        lookup = _Lookup(self._dns_client(), self._getaddrinfo, self._rng, self._tls)
        flows = lookup.run(host, transport, port, secure)
        return tuple(flows[:MAX_TARGETS]), lookup.result_ttl(flows)

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
