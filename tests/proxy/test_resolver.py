"""Next-hop resolution: without I/O (``Resolver.resolve_now``), and RFC 3263 look-ups
(NAPTR, SRV, A/AAAA, getaddrinfo) against a fake name server: no network is used. A look-up
gives the ordered list of targets a branch fails over along (RFC 3263 4.3)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

import dns.resolver
import dns.rrset

from sipsca.runtime.resolver import (
    ADDRESSES_PER_SRV_TARGET,
    FAILURE_TTL,
    MAX_TARGETS,
    Resolver,
    srv_order,
)
from sipsca.sip.address import Flow
from sipsca.sip.uri import parse_uri


def test_ip_literals_static_routes_and_unknown_names() -> None:
    resolver = Resolver(static_routes=(("carrier.example", "tcp:192.0.2.9:5070"),))
    assert resolver.resolve_now(parse_uri("sip:a@192.0.2.1")) == Flow("udp", "192.0.2.1", 5060)
    assert resolver.resolve_now(parse_uri("sips:a@192.0.2.1")) == Flow("tls", "192.0.2.1", 5061)
    assert resolver.resolve_now(parse_uri("sip:a@[2001:db8::1]:5080;transport=tcp")) == Flow(
        "tcp", "2001:db8::1", 5080
    )
    assert resolver.resolve_now(parse_uri("sip:a@x;maddr=192.0.2.7")) == Flow(
        "udp", "192.0.2.7", 5060
    )
    assert resolver.resolve_now(parse_uri("sip:b@carrier.example")) == Flow(
        "tcp", "192.0.2.9", 5070
    )
    assert resolver.resolve_now(parse_uri("sip:b@unknown.example")) is None


def test_a_literal_next_hop_is_one_shared_flow() -> None:
    """Every NOTIFY and forwarded request resolves its next hop and its transaction keeps the
    Flow for seconds: one object per address, not one per message."""
    resolver = Resolver()
    first = resolver.resolve_now(parse_uri("sip:a@192.0.2.1:5062"))
    again = resolver.resolve_now(parse_uri("sip:other@192.0.2.1:5062;lr"))
    assert first is not None and first is again
    assert resolver.resolve_now(parse_uri("sip:a@192.0.2.1:5063")) is not first


# --- RFC 3263 look-ups (``Resolver._lookup``) against a fake name server ---------------------

NAPTR = "NAPTR"


class FakeDns:
    """A name server from a dict ``{(absolute name, rdtype): [record text, ...]}``.

    A name absent from every key does not exist (NXDOMAIN), a present name without the type
    has no answer; names in ``timeouts`` time out. Every query is recorded, in order.
    """

    def __init__(
        self,
        zone: dict[tuple[str, str], list[str]],
        *,
        ttl: int = 300,
        ttls: dict[tuple[str, str], int] | None = None,
        timeouts: tuple[str, ...] = (),
    ) -> None:
        self.zone = zone
        self.ttl = ttl
        self.ttls = ttls or {}
        self.timeouts = timeouts
        self.queries: list[tuple[str, str]] = []

    def resolve(
        self, qname: str, rdtype: str, *, lifetime: float | None = None, search: bool | None = None
    ) -> Any:
        assert qname.endswith("."), qname  # absolute: no search list
        assert search is False and lifetime is not None
        self.queries.append((qname, rdtype))
        if qname in self.timeouts:
            raise dns.resolver.LifetimeTimeout(timeout=2.0, errors=[])
        records = self.zone.get((qname, rdtype))
        if records is None:
            if any(name == qname for name, _ in self.zone):
                raise dns.resolver.NoAnswer()
            raise dns.resolver.NXDOMAIN()
        ttl = self.ttls.get((qname, rdtype), self.ttl)
        return SimpleNamespace(rrset=dns.rrset.from_text(qname, ttl, "IN", rdtype, *records))


class FixedRandom(random.Random):
    """``randint`` answers from a list (RFC 2782 weighted selection made predictable)."""

    def __init__(self, *points: int) -> None:
        super().__init__(0)
        self.points = list(points)

    def randint(self, a: int, b: int) -> int:
        point = self.points.pop(0) if self.points else a
        assert a <= point <= b
        return point


def no_getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
    raise AssertionError(f"getaddrinfo{args} must not be called")


def hosts_file(table: dict[str, list[str]]) -> Any:
    """A ``getaddrinfo`` answering from ``{name: [address, ...]}`` (like /etc/hosts)."""
    calls: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for address in table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, 0, 0, 0) if family == socket.AF_INET6 else (address, 0)
            out.append((family, socket.SOCK_DGRAM, 17, "", sockaddr))
        return out

    getaddrinfo.calls = calls  # type: ignore[attr-defined]
    return getaddrinfo


def lookup_all(
    fake: FakeDns, uri: str, *, rng: random.Random | None = None, getaddrinfo: Any = None
) -> tuple[tuple[Flow, ...], float]:
    """Every target of ``uri``, in the order a branch tries them, and the TTL."""
    resolver = Resolver(dns_client=fake, getaddrinfo=getaddrinfo or no_getaddrinfo, rng=rng)
    return resolver._lookup(*Resolver.lookup_key(parse_uri(uri)))


def lookup(
    fake: FakeDns, uri: str, *, rng: random.Random | None = None, getaddrinfo: Any = None
) -> tuple[Flow | None, float]:
    """The first target of ``uri`` (the one a request goes to first), and the TTL."""
    flows, ttl = lookup_all(fake, uri, rng=rng, getaddrinfo=getaddrinfo)
    return (flows[0] if flows else None), ttl


EXAMPLE = {
    ("example.com.", NAPTR): [
        '20 10 "s" "SIP+D2U" "" _sip._udp.example.com.',
        '10 20 "s" "SIPS+D2T" "" _sips._tcp.example.com.',
        '10 10 "s" "SIP+D2T" "" _sip._tcp.example.com.',
        '5 10 "s" "SIP+D2S" "" _sip._sctp.example.com.',  # SCTP: not supported
        '5 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" .',  # ENUM: not a SIP service
    ],
    ("_sip._tcp.example.com.", "SRV"): ["10 60 5070 sip1.example.com."],
    ("_sips._tcp.example.com.", "SRV"): ["10 60 5071 sip1.example.com."],
    ("_sip._udp.example.com.", "SRV"): ["10 60 5072 sip1.example.com."],
    ("sip1.example.com.", "A"): ["192.0.2.10"],
}


def test_naptr_then_srv_then_a() -> None:
    """No transport nor port: NAPTR picks the service (lowest order, then preference, among
    SIP+D2U / SIP+D2T / SIPS+D2T), its SRV gives the port, A the address (RFC 3263 4)."""
    fake = FakeDns(EXAMPLE)
    flow, _ = lookup(fake, "sip:bob@example.com")
    assert flow == Flow("tcp", "192.0.2.10", 5070)
    assert fake.queries == [
        ("example.com.", "NAPTR"),
        ("_sip._tcp.example.com.", "SRV"),
        ("sip1.example.com.", "A"),
    ]


def test_naptr_for_a_sips_uri_takes_only_sips_over_tls() -> None:
    fake = FakeDns(EXAMPLE)
    flow, _ = lookup(fake, "sips:bob@example.com")
    assert flow == Flow("tls", "192.0.2.10", 5071)
    assert fake.queries[1] == ("_sips._tcp.example.com.", "SRV")


def test_without_tls_dns_never_chooses_tls_for_a_sip_uri() -> None:
    """A server without TLS listener (and so without TLS client) skips ``SIPS+D2T`` and
    ``_sips._tcp`` for a ``sip:`` URI."""
    zone = dict(EXAMPLE)
    zone[("example.com.", NAPTR)] = ['10 10 "s" "SIPS+D2T" "" _sips._tcp.example.com.']
    zone[("example.com.", "A")] = ["192.0.2.1"]
    with_tls = Resolver(dns_client=FakeDns(zone), getaddrinfo=no_getaddrinfo)
    without = Resolver(dns_client=FakeDns(zone), getaddrinfo=no_getaddrinfo, tls=False)
    key = Resolver.lookup_key(parse_uri("sip:bob@example.com"))
    assert with_tls._lookup(*key)[0] == (Flow("tls", "192.0.2.10", 5071),)
    assert without._lookup(*key)[0] == (Flow("udp", "192.0.2.10", 5072),)  # SRV, no NAPTR left


def test_naptr_service_without_srv_records_tries_the_next_one() -> None:
    zone = {k: v for k, v in EXAMPLE.items() if k[0] != "_sip._tcp.example.com."}
    zone[("_sips._tcp.example.com.", "SRV")] = ["10 0 5061 ."]  # "decidedly not available"
    fake = FakeDns(zone)
    flow, _ = lookup(fake, "sip:bob@example.com")
    assert flow == Flow("udp", "192.0.2.10", 5072)  # order 20: the last usable service


def test_without_naptr_srv_is_asked_for_udp_then_tcp_then_tls() -> None:
    fake = FakeDns(
        {
            ("example.net.", "A"): ["192.0.2.99"],
            ("_sip._tcp.example.net.", "SRV"): ["10 0 5080 pbx.example.net."],
            ("pbx.example.net.", "A"): ["192.0.2.20"],
        }
    )
    flow, _ = lookup(fake, "sip:bob@example.net")
    assert flow == Flow("tcp", "192.0.2.20", 5080)
    assert fake.queries == [
        ("example.net.", "NAPTR"),
        ("_sip._udp.example.net.", "SRV"),
        ("_sip._tcp.example.net.", "SRV"),
        ("pbx.example.net.", "A"),
    ]


def test_without_naptr_and_srv_a_record_on_the_default_port() -> None:
    fake = FakeDns({("example.net.", "A"): ["192.0.2.99"]})
    assert lookup(fake, "sip:bob@example.net")[0] == Flow("udp", "192.0.2.99", 5060)
    assert lookup(fake, "sips:bob@example.net")[0] == Flow("tls", "192.0.2.99", 5061)


def test_aaaa_when_there_is_no_a_record() -> None:
    fake = FakeDns({("v6.example.net.", "AAAA"): ["2001:db8::5"]})
    assert lookup(fake, "sip:bob@v6.example.net:5090")[0] == Flow("udp", "2001:db8::5", 5090)
    assert fake.queries == [("v6.example.net.", "A"), ("v6.example.net.", "AAAA")]


def test_explicit_transport_skips_naptr_and_asks_srv_of_that_transport() -> None:
    fake = FakeDns(EXAMPLE)
    flow, _ = lookup(fake, "sip:bob@example.com;transport=udp")
    assert flow == Flow("udp", "192.0.2.10", 5072)
    assert fake.queries[0] == ("_sip._udp.example.com.", "SRV")
    fake = FakeDns({("example.org.", "A"): ["192.0.2.30"]})
    assert lookup(fake, "sip:bob@example.org;transport=TCP")[0] == Flow("tcp", "192.0.2.30", 5060)
    assert fake.queries == [("_sip._tcp.example.org.", "SRV"), ("example.org.", "A")]


def test_explicit_port_asks_only_for_addresses() -> None:
    """A port in the URI: no NAPTR nor SRV (RFC 3263 4.2); UDP for sip:, TLS for sips:."""
    fake = FakeDns(EXAMPLE | {("example.com.", "A"): ["192.0.2.1"]})
    assert lookup(fake, "sip:bob@example.com:5099")[0] == Flow("udp", "192.0.2.1", 5099)
    assert lookup(fake, "sips:bob@example.com:5099")[0] == Flow("tls", "192.0.2.1", 5099)
    assert lookup(fake, "sip:bob@x;maddr=example.com;transport=tcp")[0] == Flow(
        "tcp", "192.0.2.10", 5070
    )
    assert {rdtype for _, rdtype in fake.queries[:2]} == {"A"}


def test_srv_lowest_priority_first_whatever_the_weights() -> None:
    fake = FakeDns(
        {
            ("_sip._udp.example.com.", "SRV"): [
                "20 1000 5062 backup.example.com.",
                "10 0 5061 primary.example.com.",
            ],
            ("primary.example.com.", "A"): ["192.0.2.1"],
            ("backup.example.com.", "A"): ["192.0.2.2"],
        }
    )
    flow, _ = lookup(fake, "sip:bob@example.com;transport=udp")
    assert flow == Flow("udp", "192.0.2.1", 5061)


def test_srv_weights_choose_within_a_priority() -> None:
    """RFC 2782: weight-0 records first in the running sum, then the first record whose
    running sum reaches a random number in 0..sum."""
    zone = {
        ("_sip._udp.example.com.", "SRV"): [
            "10 0 5060 zero.example.com.",
            "10 10 5060 light.example.com.",
            "10 90 5060 heavy.example.com.",
        ],
        ("zero.example.com.", "A"): ["192.0.2.1"],
        ("light.example.com.", "A"): ["192.0.2.2"],
        ("heavy.example.com.", "A"): ["192.0.2.3"],
    }
    chosen = {}
    for point in (0, 1, 10, 11, 100):
        flow, _ = lookup(FakeDns(zone), "sip:b@example.com;transport=udp", rng=FixedRandom(point))
        assert flow is not None
        chosen[point] = flow.host
    assert chosen == {
        0: "192.0.2.1",
        1: "192.0.2.2",
        10: "192.0.2.2",
        11: "192.0.2.3",
        100: "192.0.2.3",
    }


class Srv(NamedTuple):
    priority: int
    weight: int
    name: str


def test_srv_order_lowest_priority_first_then_by_weight() -> None:
    """``srv_order`` (pure, RFC 2782): priorities in ascending order whatever the weights;
    within one, weight 0 first in the running sum, then the first record whose running sum
    reaches the number drawn, again and again over the records left."""
    records = [
        Srv(20, 0, "backup"),
        Srv(10, 10, "light"),
        Srv(10, 0, "zero"),
        Srv(10, 90, "heavy"),
    ]
    # draw 50 of 0..100 -> heavy (0, 10, 100); draw 0 of 0..10 -> zero; light; backup
    order = srv_order(records, FixedRandom(50, 0, 0, 0).randint)
    assert [r.name for r in order] == ["heavy", "zero", "light", "backup"]
    # draw 0 -> zero; then 5 of 0..100 -> light (10); heavy
    order = srv_order(records, FixedRandom(0, 5).randint)
    assert [r.name for r in order] == ["zero", "light", "heavy", "backup"]
    assert srv_order([], FixedRandom().randint) == []


def test_srv_order_keeps_the_order_of_zero_weights() -> None:
    records = [Srv(10, 0, "a"), Srv(10, 0, "b"), Srv(5, 0, "c"), Srv(10, 0, "d")]
    assert [r.name for r in srv_order(records, FixedRandom().randint)] == ["c", "a", "b", "d"]


def test_srv_order_draws_from_zero_to_the_sum_inclusive() -> None:
    """RFC 2782 as written: the number is drawn in 0..sum (inclusive) and the first record
    whose running sum reaches it is taken, so with weights 1 and 3 the draws 0 and 1 pick
    the first record, 2-4 the second."""
    records = [Srv(10, 1, "one"), Srv(10, 3, "three")]
    asked: list[tuple[int, int]] = []

    def draw(point: int) -> str:
        def randint(a: int, b: int) -> int:
            asked.append((a, b))
            return point if (a, b) == (0, 4) else a

        return srv_order(records, randint)[0].name

    assert [draw(point) for point in range(5)] == ["one", "one", "three", "three", "three"]
    assert asked[0] == (0, 4)


def test_every_srv_target_with_every_address_in_order() -> None:
    """The failover list (RFC 3263 4.3): SRV targets in RFC 2782 order, each with all its
    addresses (A, else AAAA); a target without address or ``.`` is left out."""
    fake = FakeDns(
        {
            ("_sip._udp.example.com.", "SRV"): [
                "20 0 5063 c.example.com.",
                "10 0 5061 a.example.com.",
                "10 0 5062 b.example.com.",
                "15 0 5064 gone.example.com.",
                "30 0 5060 .",
            ],
            ("a.example.com.", "A"): ["192.0.2.1", "192.0.2.2"],
            ("b.example.com.", "AAAA"): ["2001:db8::1"],
            ("c.example.com.", "A"): ["192.0.2.3"],
            ("c.example.com.", "AAAA"): ["2001:db8::3"],
        }
    )
    flows, _ = lookup_all(fake, "sip:bob@example.com;transport=udp", getaddrinfo=hosts_file({}))
    assert flows == (
        Flow("udp", "192.0.2.1", 5061),
        Flow("udp", "192.0.2.2", 5061),
        Flow("udp", "2001:db8::1", 5062),
        Flow("udp", "192.0.2.3", 5063),
    )
    assert ("c.example.com.", "AAAA") not in fake.queries  # A found: IPv4 only


def test_the_target_list_is_bounded() -> None:
    """At most MAX_TARGETS targets, and no address is asked for the SRV records past them."""
    srv = [f"10 0 {5060 + n} t{n}.example.com." for n in range(16)]
    zone = {("_sip._tcp.example.com.", "SRV"): srv}
    zone |= {(f"t{n}.example.com.", "A"): [f"192.0.2.{n + 1}"] for n in range(16)}
    fake = FakeDns(zone)
    flows, _ = lookup_all(fake, "sip:bob@example.com;transport=tcp")
    assert MAX_TARGETS == 12
    assert flows == tuple(Flow("tcp", f"192.0.2.{n + 1}", 5060 + n) for n in range(12))
    assert len([q for q in fake.queries if q[1] == "A"]) == 12
    many = FakeDns({("many.example.com.", "A"): [f"192.0.2.{n}" for n in range(1, 20)]})
    assert len(lookup_all(many, "sip:bob@many.example.com:5060")[0]) == MAX_TARGETS


def test_an_srv_target_with_many_addresses_leaves_room_for_the_backups() -> None:
    """A priority-10 target behind a pool of addresses (more than MAX_TARGETS) gives only
    its first ADDRESSES_PER_SRV_TARGET: the priority-20 and -30 backups are still tried.
    A name without SRV keeps every address up to MAX_TARGETS."""
    pool = [f"192.0.2.{n}" for n in range(1, 21)]
    fake = FakeDns(
        {
            ("_sip._udp.example.com.", "SRV"): [
                "10 0 5061 pool.example.com.",
                "20 0 5062 backup.example.com.",
                "30 0 5063 last.example.com.",
            ],
            ("pool.example.com.", "A"): pool,
            ("backup.example.com.", "A"): ["198.51.100.1", "198.51.100.2"],
            ("last.example.com.", "A"): ["203.0.113.1"],
        }
    )
    flows, _ = lookup_all(fake, "sip:bob@example.com;transport=udp")
    assert ADDRESSES_PER_SRV_TARGET == 3
    first = [flow for flow in flows if flow.port == 5061]
    assert len(first) == ADDRESSES_PER_SRV_TARGET
    assert {flow.host for flow in first} <= set(pool)
    assert flows[len(first) :] == (
        Flow("udp", "198.51.100.1", 5062),
        Flow("udp", "198.51.100.2", 5062),
        Flow("udp", "203.0.113.1", 5063),
    )
    plain = FakeDns({("pool.example.com.", "A"): pool})
    flows, _ = lookup_all(plain, "sip:bob@pool.example.com:5060")
    assert len(flows) == MAX_TARGETS


def test_a_name_server_failing_midway_keeps_the_targets_found_briefly() -> None:
    """DNS times out on the second target's address: the list keeps the first target (the
    request can go), asks nothing more (neither DNS nor the hosts file, which could wait
    for the same name servers), and is cached like a failure, for a few seconds."""
    fake = FakeDns(
        {
            ("_sip._udp.example.com.", "SRV"): [
                "10 0 5061 a.example.com.",
                "20 0 5062 b.example.com.",
                "30 0 5063 c.example.com.",
            ],
            ("a.example.com.", "A"): ["192.0.2.1"],
            ("c.example.com.", "A"): ["192.0.2.3"],
        },
        timeouts=("b.example.com.",),
    )
    flows, ttl = lookup_all(fake, "sip:bob@example.com;transport=udp")  # no getaddrinfo
    assert flows == (Flow("udp", "192.0.2.1", 5061),)
    assert ttl == FAILURE_TTL
    assert ("c.example.com.", "A") not in fake.queries


def test_getaddrinfo_gives_every_ipv4_address_else_every_ipv6_one() -> None:
    hosts = hosts_file(
        {
            "pbx.lan": ["2001:db8::9", "10.1.2.3", "10.1.2.4", "10.1.2.3"],
            "v6.lan": ["fe80::1%eth0", "2001:db8::8"],
        }
    )
    flows, _ = lookup_all(FakeDns({}), "sip:bob@pbx.lan:5070", getaddrinfo=hosts)
    assert flows == (Flow("udp", "10.1.2.3", 5070), Flow("udp", "10.1.2.4", 5070))
    flows, _ = lookup_all(FakeDns({}), "sip:bob@v6.lan:5070", getaddrinfo=hosts)
    assert flows == (Flow("udp", "fe80::1", 5070), Flow("udp", "2001:db8::8", 5070))


def test_srv_target_without_address_falls_to_the_next_record() -> None:
    fake = FakeDns(
        {
            ("_sip._udp.example.com.", "SRV"): ["10 0 5061 gone.example.com.", "20 0 5062 up.x."],
            ("up.x.", "A"): ["192.0.2.7"],
        }
    )
    flow, _ = lookup(fake, "sip:bob@example.com;transport=udp", getaddrinfo=hosts_file({}))
    assert flow == Flow("udp", "192.0.2.7", 5062)


def test_ttl_is_the_smallest_of_the_chain_and_bounded() -> None:
    fake = FakeDns(EXAMPLE, ttl=900, ttls={("_sip._tcp.example.com.", "SRV"): 120})
    assert lookup(fake, "sip:bob@example.com")[1] == 120.0
    fake = FakeDns(EXAMPLE, ttl=0)
    assert lookup(fake, "sip:bob@example.com")[1] == 1.0  # never cached for no time at all
    fake = FakeDns(EXAMPLE, ttl=7 * 86400)
    assert lookup(fake, "sip:bob@example.com")[1] == 3600.0


def test_localhost_never_goes_to_dns() -> None:
    """RFC 6761 6.3: ``localhost`` is loopback; its address comes from getaddrinfo (the
    hosts file), the name servers are not asked. IPv4 is preferred."""
    fake = FakeDns({})
    hosts = hosts_file({"localhost": ["::1", "127.0.0.1"]})
    flow, ttl = lookup(fake, "sip:bob@localhost:5099", getaddrinfo=hosts)
    assert flow == Flow("udp", "127.0.0.1", 5099)
    flow, _ = lookup(fake, "sip:bob@localhost", getaddrinfo=hosts)
    assert flow == Flow("udp", "127.0.0.1", 5060)
    assert fake.queries == []
    assert ttl == 60.0


def test_localhost_with_the_real_getaddrinfo() -> None:
    """The system's own ``getaddrinfo`` resolves ``localhost`` (the end-to-end tests rely
    on it) without any name server."""
    resolver = Resolver(dns_client=FakeDns({}))
    flows, _ = resolver._lookup(
        *Resolver.lookup_key(parse_uri("sip:x@localhost:5099;transport=tcp"))
    )
    assert flows, "localhost has an address"
    for flow in flows:
        assert flow.port == 5099 and flow.transport == "tcp"
        assert ipaddress.ip_address(flow.host).is_loopback


def test_names_dns_does_not_know_come_from_getaddrinfo() -> None:
    """dnspython does not read /etc/hosts: an NXDOMAIN name is looked up by getaddrinfo,
    once (no SRV asked under a name that does not exist, RFC 8020)."""
    fake = FakeDns({})
    hosts = hosts_file({"pbx.lan": ["10.1.2.3"]})
    flow, ttl = lookup(fake, "sip:bob@pbx.lan", getaddrinfo=hosts)
    assert flow == Flow("udp", "10.1.2.3", 5060)
    assert ttl == 60.0
    assert fake.queries == [("pbx.lan.", "NAPTR")]
    assert hosts.calls == ["pbx.lan"]


def test_unknown_everywhere_is_a_bounded_negative_answer() -> None:
    flow, ttl = lookup(FakeDns({}), "sip:bob@nowhere.invalid", getaddrinfo=hosts_file({}))
    assert flow is None
    assert 0 < ttl <= 60.0


def test_dns_timeout_stops_asking_dns() -> None:
    """A name server that does not answer is not asked again in the same look-up (each
    query would wait its lifetime); getaddrinfo still may know the name; a failure is
    retried after a few seconds."""
    fake = FakeDns({}, timeouts=("slow.example.", "_sip._udp.slow.example."))
    hosts = hosts_file({"slow.example": ["192.0.2.40"]})
    assert lookup(fake, "sip:bob@slow.example", getaddrinfo=hosts)[0] == Flow(
        "udp", "192.0.2.40", 5060
    )
    assert fake.queries == [("slow.example.", "NAPTR")]
    flow, ttl = lookup(
        FakeDns({}, timeouts=("slow.example.",)),
        "sip:bob@slow.example:5070",
        getaddrinfo=hosts_file({}),
    )
    assert flow is None and ttl == 5.0


def test_without_name_servers_only_getaddrinfo_is_used() -> None:
    resolver = Resolver(getaddrinfo=hosts_file({"pbx.lan": ["10.1.2.3"]}))
    resolver._dns_ready = True  # as when /etc/resolv.conf lists no name server
    flows, _ = resolver._lookup(*Resolver.lookup_key(parse_uri("sip:bob@pbx.lan:5070")))
    assert flows == (Flow("udp", "10.1.2.3", 5070),)


# --- asynchronous resolution and the cache ----------------------------------------------------


async def test_resolve_caches_answers_and_shares_concurrent_lookups() -> None:
    fake = FakeDns({("pbx.example.", "A"): ["192.0.2.50"]}, ttl=120)
    resolver = Resolver(dns_client=fake, getaddrinfo=hosts_file({}))
    uri = parse_uri("sip:bob@pbx.example:5070")
    assert resolver.resolve_now(uri) is None and resolver.must_query(uri)
    first, second = await asyncio.gather(resolver.resolve(uri), resolver.resolve(uri))
    assert first == second == Flow("udp", "192.0.2.50", 5070)
    assert fake.queries == [("pbx.example.", "A")]  # one look-up for both
    assert resolver.resolve_now(uri) == first  # now on the fast path
    assert not resolver.must_query(uri)
    assert resolver.resolve_now(parse_uri("sip:carol@PBX.example.:5070")) == first
    assert resolver.resolve_now(parse_uri("sip:bob@pbx.example:5071")) is None  # other port
    expires, _ = resolver._cache[Resolver.lookup_key(uri)]
    assert 118 < expires - time.monotonic() <= 120


async def test_resolve_targets_caches_the_whole_list() -> None:
    """``resolve_targets`` gives every target, ``targets_now`` then gives them without I/O;
    ``resolve`` / ``resolve_now`` give the first. A static route or an IP literal is one
    target."""
    fake = FakeDns({("pbx.example.", "A"): ["192.0.2.50", "192.0.2.51"]})
    resolver = Resolver(
        static_routes=(("carrier.example", "udp:192.0.2.9:5070"),),
        dns_client=fake,
        getaddrinfo=hosts_file({}),
    )
    uri = parse_uri("sip:bob@pbx.example:5070")
    assert resolver.targets_now(uri) == ()
    both = (Flow("udp", "192.0.2.50", 5070), Flow("udp", "192.0.2.51", 5070))
    assert await resolver.resolve_targets(uri) == both
    assert resolver.targets_now(uri) == both
    assert resolver.resolve_now(uri) == both[0]
    assert await resolver.resolve(uri) == both[0]
    assert fake.queries == [("pbx.example.", "A")]
    assert resolver.targets_now(parse_uri("sip:b@carrier.example")) == (
        Flow("udp", "192.0.2.9", 5070),
    )
    assert resolver.targets_now(parse_uri("sip:b@192.0.2.1")) == (Flow("udp", "192.0.2.1", 5060),)
    resolver.close()


async def test_negative_answers_are_cached_too() -> None:
    fake = FakeDns({})
    resolver = Resolver(dns_client=fake, getaddrinfo=hosts_file({}))
    uri = parse_uri("sip:bob@nowhere.invalid:5070")
    assert await resolver.resolve(uri) is None
    queries = len(fake.queries)
    assert not resolver.must_query(uri)  # fails at once from now on
    assert await resolver.resolve(uri) is None
    assert len(fake.queries) == queries
    expires, flows = resolver._cache[Resolver.lookup_key(uri)]
    assert flows == () and expires - time.monotonic() <= 60.0
    resolver.close()


def test_static_routes_and_literals_need_no_query() -> None:
    resolver = Resolver(static_routes=(("carrier.example", "udp:192.0.2.9:5070"),))
    assert not resolver.must_query(parse_uri("sip:b@carrier.example"))
    assert not resolver.must_query(parse_uri("sip:b@192.0.2.1"))
    assert resolver.must_query(parse_uri("sip:b@other.example"))
