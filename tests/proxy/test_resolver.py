"""Next-hop resolution without I/O (``runtime.resolver.Resolver.resolve_now``)."""

from __future__ import annotations

from sipsca.runtime.resolver import Resolver
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
