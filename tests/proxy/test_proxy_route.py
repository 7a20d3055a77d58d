"""Route processing (RFC 3261 16.4, 16.6, 16.12.1.2), Via removal (16.7) and CANCEL (9.1)."""

from __future__ import annotations

import pytest
from proxy_factory import PROXY_IP, UA_VIA, is_myself, request

from sipsca.errors import LocalProtocolError
from sipsca.proxy.context import ResponseContext
from sipsca.proxy.route import (
    branch_needs_tls,
    build_via,
    is_myself_factory,
    is_sips_uri,
    make_cancel,
    needs_tls,
    next_hop,
    prepare_forward,
    preprocess_routes,
    record_route_values,
    secure_transport,
    sips_not_allowed_warning,
    sips_record_route,
    sips_required_warning,
    strip_own_via,
    tls_capable_binding,
)
from sipsca.sip.message import SipRequest, make_response
from sipsca.sip.parser import parse_message
from sipsca.sip.uri import parse_uri

OUR_VIA = f"SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKour.0;rport"


# --------------------------------------------------------------------------- myself
@pytest.mark.parametrize(
    ("uri", "mine"),
    [
        ("sip:10.0.0.10", True),
        ("sip:10.0.0.10:5060", True),
        ("sip:10.0.0.10:5061;transport=tls", True),
        ("sips:10.0.0.10", True),  # default port 5061
        ("sip:10.0.0.10:5080", False),
        ("sip:bob@EXAMPLE.com", True),
        ("sip:bob@example.com.", True),
        ("sip:bob@example.com:5061", True),  # alias without port: 5060/5061
        ("sip:bob@example.com:5080", False),
        ("sip:bob@other.example.net", False),
        ("tel:+15551234", False),
    ],
)
def test_is_myself(uri: str, mine: bool) -> None:
    assert is_myself(parse_uri(uri)) is mine


def test_is_myself_port_rules() -> None:
    only_5080 = is_myself_factory([("10.0.0.10", 5080)])
    assert only_5080(parse_uri("sip:10.0.0.10:5080"))
    assert not only_5080(parse_uri("sip:10.0.0.10"))  # means 5060
    tls = is_myself_factory([("10.0.0.10", 5061)])
    assert tls(parse_uri("sip:10.0.0.10;transport=tls"))
    assert not tls(parse_uri("sip:10.0.0.10;transport=tcp"))


def test_is_myself_ipv6_compares_addresses() -> None:
    mine = is_myself_factory([("2001:db8::1", 5060)])
    assert mine(parse_uri("sip:[2001:DB8:0::1]:5060"))
    assert mine(parse_uri("sip:[2001:db8::1]"))
    assert not mine(parse_uri("sip:[2001:db8::2]"))


def test_is_myself_keeps_unparsable_colon_hosts_as_text() -> None:
    odd = is_myself_factory([("Not:An:Address", None)])
    assert not odd(parse_uri("sip:[2001:db8::1]"))


def test_is_myself_with_no_hosts_is_never_true() -> None:
    assert not is_myself_factory(())(parse_uri("sip:10.0.0.10"))


# --------------------------------------------------------------------------- 16.4
def test_top_route_of_ours_is_removed() -> None:
    req = request(
        "BYE",
        to="<sip:bob@example.com>;tag=b",
        extra=[("Route", "<sip:10.0.0.10;lr>, <sip:p9.example.net;lr>")],
    )
    assert preprocess_routes(req, is_myself) is True
    assert req.headers.values("route") == ["<sip:p9.example.net;lr>"]
    assert req.uri == "sip:bob@example.com"


def test_foreign_top_route_is_left_alone() -> None:
    req = request(extra=[("Route", "<sip:p9.example.net;lr>")])
    before = req.to_bytes()
    assert preprocess_routes(req, is_myself) is False
    assert req.to_bytes() == before


def test_no_route_is_not_consumed() -> None:
    req = request()
    assert preprocess_routes(req, is_myself) is False


def test_double_record_route_pops_both_of_our_values() -> None:
    # RFC 5658: we record-routed on UDP (caller side) and TCP (callee side).
    req = request(
        "BYE",
        extra=[
            ("Route", "<sip:10.0.0.10:5060;transport=tcp;lr>"),
            ("Route", "<sip:10.0.0.10:5060;lr>"),
            ("Route", "<sip:p9.example.net;lr>"),
        ],
    )
    assert preprocess_routes(req, is_myself) is True
    assert req.headers.values("route") == ["<sip:p9.example.net;lr>"]


def test_identical_second_route_of_ours_is_a_spiral_and_stays() -> None:
    req = request("BYE", extra=[("Route", "<sip:10.0.0.10;lr>, <sip:10.0.0.10;lr>")])
    assert preprocess_routes(req, is_myself) is True
    assert req.headers.values("route") == ["<sip:10.0.0.10;lr>"]


def test_only_route_of_ours_removes_the_header() -> None:
    req = request("ACK", extra=[("Route", "<sip:10.0.0.10;lr>")])
    assert preprocess_routes(req, is_myself) is True
    assert "route" not in req.headers


def test_strict_router_rewrite_is_repaired_rfc3261_16_12_1_2() -> None:
    # P2's view in RFC 3261 16.12.1.2: P3 (strict) put P2's Record-Route URI in the R-URI.
    p2 = is_myself_factory([("p2.example.com", None)])
    req = request(
        "BYE",
        uri="sip:p2.example.com;lr",
        extra=[("Route", "<sip:p1.example.com;lr>"), ("Route", "<sip:caller@u1.example.com>")],
    )
    assert preprocess_routes(req, p2) is True
    assert req.uri == "sip:caller@u1.example.com"
    assert req.headers.values("route") == ["<sip:p1.example.com;lr>"]
    assert str(next_hop(req)) == "sip:p1.example.com;lr"


def test_strict_repair_with_only_the_target_left() -> None:
    req = request("BYE", uri="sip:10.0.0.10;lr", extra=[("Route", "<sip:caller@u1.example.com>")])
    assert preprocess_routes(req, is_myself) is True
    assert req.uri == "sip:caller@u1.example.com"
    assert "route" not in req.headers


def test_strict_repair_then_pops_our_double_route() -> None:
    req = request(
        "BYE",
        uri="sip:10.0.0.10:5060;transport=tcp;lr",
        extra=[
            ("Route", "<sip:10.0.0.10;lr>, <sip:p1.example.com;lr>, <sip:caller@u1.example.com>")
        ],
    )
    assert preprocess_routes(req, is_myself) is True
    assert req.uri == "sip:caller@u1.example.com"
    assert req.headers.values("route") == ["<sip:p1.example.com;lr>"]


def test_request_to_our_domain_is_not_mistaken_for_a_strict_rewrite() -> None:
    # No user part but no lr either: a request for the domain, with a pre-loaded Route.
    req = request("OPTIONS", uri="sip:example.com", extra=[("Route", "<sip:p9.example.net;lr>")])
    assert preprocess_routes(req, is_myself) is False
    assert req.uri == "sip:example.com"


# --------------------------------------------------------------------------- Record-Route
def test_record_route_single_value() -> None:
    assert record_route_values(local_uri_in="sip:10.0.0.10:5060") == ["<sip:10.0.0.10:5060;lr>"]
    assert record_route_values(
        local_uri_in="<sip:10.0.0.10;lr>", local_uri_out="sip:10.0.0.10;lr"
    ) == ["<sip:10.0.0.10;lr>"]


def test_record_route_accepts_flows() -> None:
    assert record_route_values(local_uri_in="tcp:10.0.0.10:5060") == [
        "<sip:10.0.0.10:5060;transport=tcp;lr>"
    ]
    assert record_route_values(local_uri_in="udp:[2001:db8::1]:5060") == [
        "<sip:[2001:db8::1]:5060;transport=udp;lr>"
    ]


def test_double_record_route_outbound_first() -> None:
    values = record_route_values(
        local_uri_in="udp:10.0.0.10:5060", local_uri_out="tls:10.0.0.10:5061"
    )
    assert values == [
        "<sip:10.0.0.10:5061;transport=tls;lr>",
        "<sip:10.0.0.10:5060;transport=udp;lr>",
    ]


def test_double_record_route_round_trip() -> None:
    """The callee's in-dialog request carries both values first; we consume both."""
    rr = record_route_values(local_uri_in="udp:10.0.0.10:5060", local_uri_out="tcp:10.0.0.10:5060")
    fwd = prepare_forward(
        request(extra=[("Record-Route", "<sip:p0.example.net;lr>")]),
        target="sip:bob@192.0.2.9",
        via=OUR_VIA,
        record_route=rr,
    )
    route_set = fwd.headers.values("record-route")
    assert route_set == [*rr, "<sip:p0.example.net;lr>"]
    # Callee (UAS) route set = Record-Route in order: we are its first hop.
    bye = request("BYE", uri="sip:alice@192.0.2.1", extra=[("Route", ", ".join(route_set))])
    assert preprocess_routes(bye, is_myself) is True
    assert bye.headers.values("route") == ["<sip:p0.example.net;lr>"]
    # The caller reverses it; p0 pops its own value, then we get [inbound, outbound].
    bye = request("BYE", uri="sip:bob@192.0.2.9", extra=[("Route", ", ".join(reversed(rr)))])
    assert preprocess_routes(bye, is_myself) is True
    assert "route" not in bye.headers


# --------------------------------------------------------------------------- 16.6
RAW_INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua1;rport=5060;received=198.51.100.7\r\n"
    b"Max-Forwards: 70\r\n"
    b"Record-Route: <sip:p0.example.net;lr>\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b'f: "Alice" <sip:alice@example.com>;tag=a1\r\n'
    b"i: abc@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"X-Weird-Header:   odd   spacing ;x=1\r\n"
    b"Call-Info: <sip:example.com>;appearance-index=1\r\n"
    b"c: application/sdp\r\n"
    b"l: 22\r\n"
    b"\r\n"
    b"v=0\r\no=- 1 1 IN IP4 \x00\xff"
)


def _lines(req: SipRequest) -> list[str]:
    head = req.to_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    return head.split("\r\n")


def test_prepare_forward_keeps_everything_else_byte_for_byte() -> None:
    req = parse_message(RAW_INVITE)
    assert isinstance(req, SipRequest)
    original = _lines(req)
    fwd = prepare_forward(
        req,
        target="sip:bob@192.0.2.9:5062;transport=tcp",
        via=OUR_VIA,
        record_route=["<sip:10.0.0.10;lr>"],
    )
    lines = _lines(fwd)
    assert lines[0] == "INVITE sip:bob@192.0.2.9:5062;transport=tcp SIP/2.0"
    assert lines[1] == f"Via: {OUR_VIA}"
    assert "Max-Forwards: 69" in lines
    assert lines.index("Record-Route: <sip:10.0.0.10;lr>") < lines.index(
        "Record-Route: <sip:p0.example.net;lr>"
    )
    kept = [line for line in original[1:] if not line.startswith("Max-Forwards")]
    new = [
        line
        for line in lines[1:]
        if line not in (f"Via: {OUR_VIA}", "Max-Forwards: 69", "Record-Route: <sip:10.0.0.10;lr>")
    ]
    assert new == kept  # same lines, same order, same spelling (compact forms too)
    assert fwd.body == req.body
    assert fwd.to_bytes().endswith(b"\r\n\r\nv=0\r\no=- 1 1 IN IP4 \x00\xff")
    # The received request itself is not modified.
    assert _lines(req) == original


def test_upstream_via_branch_rport_received_preserved() -> None:
    req = parse_message(RAW_INVITE)
    assert isinstance(req, SipRequest)
    fwd = prepare_forward(req, target="sip:bob@192.0.2.9", via=OUR_VIA, record_route=[])
    vias = fwd.vias
    assert [v.branch for v in vias] == ["z9hG4bKour.0", "z9hG4bKua1"]
    assert vias[0].has_param("rport") and vias[0].param("rport") == ""
    assert vias[1].param("rport") == "5060" and vias[1].param("received") == "198.51.100.7"


def test_missing_max_forwards_is_added_as_70() -> None:
    fwd = prepare_forward(
        request(max_forwards=None), target="sip:b@h", via=OUR_VIA, record_route=[]
    )
    assert fwd.max_forwards == 70


def test_max_forwards_zero_cannot_be_forwarded() -> None:
    with pytest.raises(LocalProtocolError):
        prepare_forward(request(max_forwards=0), target="sip:b@h", via=OUR_VIA, record_route=[])


def test_path_becomes_route_before_existing_routes() -> None:
    req = request(extra=[("Route", "<sip:p9.example.net;lr>")])
    fwd = prepare_forward(
        req,
        target="sip:bob@192.0.2.9",
        via=OUR_VIA,
        record_route=[],
        path=["<sip:edge1.example.net;lr>", "sip:edge2.example.net;lr"],
    )
    assert fwd.headers.values("route") == [
        "<sip:edge1.example.net;lr>",
        "<sip:edge2.example.net;lr>",
        "<sip:p9.example.net;lr>",
    ]
    assert fwd.uri == "sip:bob@192.0.2.9"
    assert str(next_hop(fwd)) == "sip:edge1.example.net;lr"


def test_next_hop_is_request_uri_without_routes() -> None:
    fwd = prepare_forward(request(), target="sip:bob@192.0.2.9:5070", via=OUR_VIA, record_route=[])
    assert str(next_hop(fwd)) == "sip:bob@192.0.2.9:5070"


def test_strict_next_hop_rewrite_rfc3261_16_12_1_2() -> None:
    """P4's view: after popping its own Route, the next one (P3) is a strict router."""
    p4 = is_myself_factory([("p4.domain.com", None)])
    bye = request(
        "BYE",
        uri="sip:caller@u1.example.com",
        extra=[
            ("Route", "<sip:p4.domain.com;lr>"),
            ("Route", "<sip:p3.middle.com>"),
            ("Route", "<sip:p2.example.com;lr>"),
            ("Route", "<sip:p1.example.com;lr>"),
        ],
    )
    assert preprocess_routes(bye, p4) is True
    fwd = prepare_forward(bye, target=bye.uri, via=OUR_VIA, record_route=[])
    assert fwd.uri == "sip:p3.middle.com"
    assert fwd.headers.values("route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
        "<sip:caller@u1.example.com>",
    ]
    assert str(next_hop(fwd)) == "sip:p3.middle.com"
    # P3 (strict) then sends "BYE sip:p2.example.com;lr" to P2, which repairs it.
    p3_out = request(
        "BYE",
        uri="sip:p2.example.com;lr",
        extra=[("Route", "<sip:p1.example.com;lr>"), ("Route", "<sip:caller@u1.example.com>")],
    )
    assert preprocess_routes(p3_out, is_myself_factory([("p2.example.com", None)]))
    assert p3_out.uri == "sip:caller@u1.example.com"


def test_strict_rewrite_with_a_single_route() -> None:
    req = request(extra=[("Route", "<sip:strict.example.net>")])
    fwd = prepare_forward(req, target="sip:bob@192.0.2.9", via=OUR_VIA, record_route=[])
    assert fwd.uri == "sip:strict.example.net"
    assert fwd.headers.values("route") == ["<sip:bob@192.0.2.9>"]
    assert str(next_hop(fwd)) == "sip:strict.example.net"


def test_next_hop_before_prepare_is_the_first_route_even_strict() -> None:
    req = request(extra=[("Route", "<sip:strict.example.net>, <sip:p1.example.com;lr>")])
    assert str(next_hop(req)) == "sip:strict.example.net"


def test_build_via() -> None:
    assert build_via(transport="tcp", host="10.0.0.10", port=5060, branch="z9hG4bKx") == (
        "SIP/2.0/TCP 10.0.0.10:5060;branch=z9hG4bKx;rport"
    )
    assert build_via(
        transport="udp", host="2001:db8::1", port=None, branch="z9hG4bKy", rport=False
    ) == ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKy")


# --------------------------------------------------------------------------- 16.7 step 3
def test_strip_own_via() -> None:
    fwd = prepare_forward(request(), target="sip:bob@192.0.2.9", via=OUR_VIA, record_route=[])
    resp = make_response(fwd, 180, to_tag="b1")
    assert strip_own_via(resp, is_myself=is_myself) is True
    assert resp.headers.values("via") == [UA_VIA]


def test_strip_own_via_without_check() -> None:
    fwd = prepare_forward(request(), target="sip:bob@192.0.2.9", via=OUR_VIA, record_route=[])
    resp = make_response(fwd, 200, to_tag="b1")
    assert strip_own_via(resp) is True
    assert resp.headers.values("via") == [UA_VIA]


def test_strip_own_via_refuses_a_foreign_top_via() -> None:
    resp = make_response(request(), 200, to_tag="b1")
    assert strip_own_via(resp, is_myself=is_myself) is False
    assert resp.headers.values("via") == [UA_VIA]  # untouched


def test_response_to_our_own_request_is_not_forwarded() -> None:
    notify = request("NOTIFY", vias=[OUR_VIA])
    resp = make_response(notify, 200)
    assert strip_own_via(resp) is False
    assert "via" not in resp.headers


def test_response_without_via_is_dropped() -> None:
    resp = make_response(request(vias=[]), 200)
    assert strip_own_via(resp) is False


# --------------------------------------------------------------------------- 9.1
def test_make_cancel_fields() -> None:
    req = request(
        extra=[
            ("Route", "<sip:edge1.example.net;lr>"),
            ("Proxy-Require", "foo"),
            ("Contact", "<sip:a@h>"),
        ],
        body=b"v=0\r\n",
    )
    sent = prepare_forward(
        req,
        target="sip:bob@192.0.2.9",
        via=OUR_VIA,
        record_route=["<sip:10.0.0.10;lr>"],
        path=["<sip:edge0.example.net;lr>"],
    )
    cancel = make_cancel(sent)
    assert cancel.method == "CANCEL"
    assert cancel.uri == "sip:bob@192.0.2.9"
    assert cancel.headers.values("via") == [OUR_VIA]
    assert cancel.headers.values("route") == [
        "<sip:edge0.example.net;lr>",
        "<sip:edge1.example.net;lr>",
    ]
    for name in ("from", "to", "call-id"):
        assert cancel.headers.get(name) == sent.headers.get(name)
    assert cancel.to_tag is None
    assert str(cancel.cseq) == "1 CANCEL"
    assert cancel.max_forwards == 70
    assert cancel.body == b""
    for absent in ("record-route", "proxy-require", "contact", "content-type"):
        assert absent not in cancel.headers
    assert b"Content-Length: 0\r\n" in cancel.to_bytes()


def test_make_cancel_of_a_reinvite_keeps_the_to_tag_and_adds_reason() -> None:
    sent = prepare_forward(
        request(to="<sip:bob@example.com>;tag=dlg", cseq=7),
        target="sip:bob@192.0.2.9",
        via=OUR_VIA,
        record_route=[],
    )
    reason = 'SIP;cause=200;text="Call completed elsewhere"'
    cancel = make_cancel(sent, reason=reason)
    assert cancel.to_tag == "dlg"
    assert str(cancel.cseq) == "7 CANCEL"
    assert cancel.headers.get("reason") == reason


def test_make_cancel_only_for_invite() -> None:
    with pytest.raises(LocalProtocolError):
        make_cancel(request("SUBSCRIBE"))
    with pytest.raises(LocalProtocolError):
        make_cancel(request(vias=[]))


# --------------------------------------------------------------------------- SIPS
@pytest.mark.parametrize(
    ("uri", "routes", "tls"),
    [
        ("sips:bob@example.com", [], True),
        ("SIPS:bob@example.com", [], True),
        ("sip:bob@example.com", [], False),
        ("sip:bob@example.com;transport=tls", [], False),  # TLS by choice, not a SIPS target
        ("sip:bob@192.0.2.4", ["<sips:p1.example.net;lr>", "<sip:p2.example.net;lr>"], True),
        ("sip:bob@192.0.2.4", ['"Edge" <sips:p1.example.net;lr>'], True),
        ("sip:bob@192.0.2.4", ["<sip:p1.example.net;lr>", "<sips:p2.example.net;lr>"], False),
        ("tel:+15551234", [], False),
    ],
)
def test_needs_tls_request_uri_or_first_route(uri: str, routes: list[str], tls: bool) -> None:
    """RFC 3261 16.6 step 4: a SIPS Request-URI or first Route value makes the request
    TLS-only (RFC 5630 4: every hop) and record-routed with a SIPS URI."""
    req = request("INVITE", uri, extra=[("Route", r) for r in routes])
    assert needs_tls(req) is tls


def test_needs_tls_after_our_sips_route_is_consumed() -> None:
    """In a dialog the caller's first Route is our own ``sips:`` Record-Route: once
    preprocess_routes() removed it, the Request-URI and the next Route decide."""
    mine = sips_record_route(PROXY_IP, 5061)
    req = request(
        "BYE", "sip:bob@192.0.2.4;transport=tls", to="<sip:bob@x>;tag=b", extra=[("Route", mine)]
    )
    assert needs_tls(req)
    assert preprocess_routes(req, is_myself)
    assert not needs_tls(req)
    req = request("BYE", "sips:bob@192.0.2.4", to="<sip:bob@x>;tag=b", extra=[("Route", mine)])
    assert preprocess_routes(req, is_myself) and needs_tls(req)


def test_branch_needs_tls_request_target_or_path() -> None:
    sip_req = request("INVITE", "sip:bob@example.com")
    sips_req = request("INVITE", "sips:bob@example.com")
    assert branch_needs_tls(sips_req, "sip:bob@192.0.2.4:5070;transport=tls")
    assert branch_needs_tls(sip_req, "sips:bob@192.0.2.4:5071")
    assert branch_needs_tls(sip_req, "sip:bob@192.0.2.4", ["<sips:edge.example.net;lr>"])
    assert not branch_needs_tls(sip_req, "sip:bob@192.0.2.4", ["<sip:edge.example.net;lr>"])
    assert not branch_needs_tls(sip_req, "sip:bob@192.0.2.4:5061;transport=tls")


@pytest.mark.parametrize(
    ("transport", "ok"),
    [("tls", True), ("TLS", True), ("wss", True), ("udp", False), ("tcp", False), ("ws", False)],
)
def test_secure_transport(transport: str, ok: bool) -> None:
    assert secure_transport(transport) is ok


@pytest.mark.parametrize(
    ("contact", "received", "ok"),
    [
        ("sips:bob@192.0.2.4:5071", "udp:192.0.2.4:5070", True),  # a SIPS contact: TLS
        ("sips:bob@192.0.2.4:5071", "", True),
        ("sip:bob@192.0.2.4:5070;transport=tls", "tls:192.0.2.4:40001", True),
        ("sip:bob@192.0.2.4:5070", "tls:[2001:db8::4]:40001", True),
        ("sip:bob@192.0.2.4:5070", "udp:192.0.2.4:5070", False),
        ("sip:bob@192.0.2.4:5070;transport=tls", "tcp:192.0.2.4:40001", False),
        ("sip:bob@192.0.2.4:5070", "", False),
    ],
)
def test_tls_capable_binding(contact: str, received: str, ok: bool) -> None:
    """Which bindings a request for a ``sips:`` AoR may be forked to (RFC 5630 5.3)."""
    assert tls_capable_binding(contact, received) is ok


def test_sips_warnings_rfc5630_9() -> None:
    assert sips_not_allowed_warning("10.0.0.10:5061") == '380 10.0.0.10:5061 "SIPS Not Allowed"'
    assert sips_required_warning("10.0.0.10") == '381 10.0.0.10 "SIPS Required"'


@pytest.mark.parametrize(
    ("text", "sips"),
    [("sips:bob@h", True), (" SIPS:h", True), ("sip:bob@h;transport=tls", False), ("tel:1", False)],
)
def test_is_sips_uri(text: str, sips: bool) -> None:
    assert is_sips_uri(text) is sips


def test_sips_record_route_is_ours_and_loose() -> None:
    """Our ``sips:`` Record-Route: TLS port, ``lr``, no ``transport=tls`` (RFC 5630 3.1.4);
    loose_route() knows it as ours by the TLS port, IPv6 bracketed."""
    value = sips_record_route(PROXY_IP, 5061)
    assert value == "<sips:10.0.0.10:5061;lr>"
    assert sips_record_route("2001:db8::10", 5061) == "<sips:[2001:db8::10]:5061;lr>"
    assert sips_record_route("proxy.example.com", None) == "<sips:proxy.example.com;lr>"
    assert record_route_values(local_uri_in=value) == [value]
    req = request(
        "BYE",
        "sips:alice@192.0.2.1:5071",
        to="<sips:bob@example.com>;tag=b",
        extra=[("Route", value)],
    )
    assert preprocess_routes(req, is_myself) is True
    assert req.headers.values("route") == []
    # the TLS port is ours, a sips: value on another port is not
    other = request(
        "BYE",
        "sips:alice@192.0.2.1",
        to="<sip:b@x>;tag=b",
        extra=[("Route", sips_record_route(PROXY_IP, 5081))],
    )
    assert preprocess_routes(other, is_myself) is False


def test_context_refused_branch_answers_480_with_warning() -> None:
    """A SIPS branch the runtime refused to send without TLS (RFC 5630 5.3) completes as
    a synthesised 480 carrying the 380 Warning; a really received 4xx wins over it."""
    warning = sips_not_allowed_warning("10.0.0.10:5061")
    req = request("INVITE", "sips:bob@example.com")
    alone = ResponseContext(req, invite=True)
    alone.add_branch("insecure-1", req, "sip:bob@192.0.2.4")
    action = alone.on_branch_refused("insecure-1", 480, warning=warning)
    assert action.forward_upstream is not None and action.done
    assert action.forward_upstream.status == 480
    assert action.forward_upstream.headers.get("warning") == warning
    assert alone.finished

    mixed = ResponseContext(req, invite=True)
    mixed.add_branch("insecure-1", req, "sip:bob@192.0.2.4")
    mixed.add_branch("tls-2", req, "sips:bob@192.0.2.5")
    assert mixed.on_branch_refused("insecure-1", 480, warning=warning).forward_upstream is None
    busy = make_response(req, 486, to_tag="b2")
    assert mixed.on_response("tls-2", busy).forward_upstream is busy
