"""RFC 3261 16.3 request validation: 416, 483, 482 (loop vs spiral), 420."""

from __future__ import annotations

import pytest
from proxy_factory import PROXY_IP, UA_VIA, is_myself, request

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import build_via, compute_branch, prepare_forward
from sipsca.proxy.validate import check_request, is_loop
from sipsca.sip.message import SipRequest, SipResponse

SUPPORTED = frozenset({"path", "outbound"})


def check(
    req: SipRequest,
    *,
    own_via_hosts: list[tuple[str, int | None]] | None = None,
) -> SipResponse | None:
    return check_request(req, supported=SUPPORTED, is_myself=is_myself, own_via_hosts=own_via_hosts)


# --------------------------------------------------------------------------- Max-Forwards
def test_valid_request_passes_untouched() -> None:
    req = request()
    before = req.to_bytes()
    assert check(req) is None
    assert req.to_bytes() == before


def test_missing_max_forwards_is_forwarded_as_70() -> None:
    """RFC 3261 16.6 step 3 (and the issue): a copy without Max-Forwards gets one with 70;
    a request that arrived with 70 leaves with 69."""
    req = request(max_forwards=None)
    assert check(req) is None
    fwd = prepare_forward(req, target="sip:bob@192.0.2.9", via=_our_via(req), record_route=[])
    assert fwd.max_forwards == 70
    with70 = request()
    fwd = prepare_forward(with70, target="sip:bob@192.0.2.9", via=_our_via(with70), record_route=[])
    assert fwd.max_forwards == 69


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "REGISTER", "SUBSCRIBE"])
def test_max_forwards_zero_is_483(method: str) -> None:
    req = request(method, max_forwards=0)
    resp = check(req)
    assert resp is not None
    assert (resp.status, resp.reason) == (483, "Too Many Hops")
    assert resp.headers.get("via") == UA_VIA
    assert resp.headers.get("call-id") == req.call_id
    assert str(resp.cseq) == f"1 {method}"
    assert resp.to_tag


def test_local_reply_tag_is_stable_across_retransmissions() -> None:
    first = check(request(max_forwards=0))
    again = check(request(max_forwards=0))
    assert first is not None and again is not None
    assert first.to_tag == again.to_tag
    other = check(request(max_forwards=0, call_id="other"))
    assert other is not None and other.to_tag != first.to_tag


def test_max_forwards_one_passes() -> None:
    assert check(request(max_forwards=1)) is None


def test_in_dialog_reply_keeps_the_dialog_to_tag() -> None:
    resp = check(request("BYE", to="<sip:bob@example.com>;tag=dlg", max_forwards=0))
    assert resp is not None and resp.to_tag == "dlg"


def test_malformed_max_forwards_raises_400() -> None:
    req = request(max_forwards=None, extra=[("Max-Forwards", "lots")])
    with pytest.raises(RemoteProtocolError) as info:
        check(req)
    assert info.value.status_hint == 400


# --------------------------------------------------------------------------- 416
@pytest.mark.parametrize("uri", ["tel:+15551234", "mailto:bob@example.com"])
def test_non_sip_request_uri_is_416(uri: str) -> None:
    resp = check(request(uri=uri))
    assert resp is not None and resp.status == 416


def test_sips_request_uri_passes() -> None:
    assert check(request(uri="sips:bob@example.com")) is None


def test_416_comes_before_483() -> None:
    resp = check(request(uri="tel:+15551234", max_forwards=0))
    assert resp is not None and resp.status == 416


# --------------------------------------------------------------------------- 420
def test_unsupported_proxy_require_is_420_listing_them() -> None:
    req = request(extra=[("Proxy-Require", "foo, path"), ("Proxy-Require", "bar, foo")])
    resp = check(req)
    assert resp is not None
    assert (resp.status, resp.reason) == (420, "Bad Extension")
    assert resp.headers.get("unsupported") == "foo, bar"


def test_supported_proxy_require_compares_case_insensitively() -> None:
    assert check(request(extra=[("Proxy-Require", "PATH, Outbound")])) is None


def test_require_is_not_the_proxys_business() -> None:
    # RFC 3261 16.3 step 5 only covers Proxy-Require; Require is end to end.
    assert check(request(extra=[("Require", "100rel, foo")])) is None


def test_483_comes_before_420() -> None:
    resp = check(request(max_forwards=0, extra=[("Proxy-Require", "foo")]))
    assert resp is not None and resp.status == 483


# --------------------------------------------------------------------------- 482 / spirals
def _our_via(req: SipRequest, index: int = 0) -> str:
    return build_via(transport="udp", host=PROXY_IP, port=5060, branch=compute_branch(req, index))


def _came_back(fwd: SipRequest, *, uri: str | None = None, hop: str = "p2") -> SipRequest:
    """What the next hop sends back to us: its own Via on top, maybe another R-URI."""
    back = fwd.copy()
    back.headers.prepend("Via", f"SIP/2.0/UDP {hop}.example.net;branch=z9hG4bK{hop}x")
    if uri is not None:
        back.uri = uri
    return back


def test_request_that_comes_back_unchanged_is_a_loop() -> None:
    req = request(uri="sip:bob@other.example.net")
    fwd = prepare_forward(req, target=req.uri, via=_our_via(req), record_route=[])
    resp = check(_came_back(fwd))
    assert resp is not None
    assert (resp.status, resp.reason) == (482, "Loop Detected")


def test_request_that_comes_back_with_another_request_uri_is_a_spiral() -> None:
    req = request(uri="sip:bob@example.com")
    fwd = prepare_forward(req, target=req.uri, via=_our_via(req), record_route=[])
    assert check(_came_back(fwd, uri="sip:bob-mobile@example.com")) is None


def test_loop_is_detected_on_any_fork_branch_index() -> None:
    req = request(uri="sip:bob@other.example.net")
    fwd = prepare_forward(req, target=req.uri, via=_our_via(req, 3), record_route=[])
    assert is_loop(_came_back(fwd), is_myself)


def test_loop_detected_through_several_hops_and_a_spiral_in_between() -> None:
    req = request(uri="sip:bob@other.example.net")
    fwd = prepare_forward(req, target=req.uri, via=_our_via(req), record_route=[])
    back = _came_back(_came_back(fwd, hop="p2"), hop="p3")
    assert is_loop(back, is_myself)


def test_receipt_parameters_on_the_upstream_via_do_not_hide_a_loop() -> None:
    # Our transport adds received/rport to the top Via on receipt (RFC 3581); the branch
    # was computed before, the looped copy shows the Via with the parameters.
    req = request(
        uri="sip:bob@other.example.net", vias=["SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKua1;rport"]
    )
    branch = compute_branch(req)
    req.headers.set(
        "Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKua1;rport=5071;received=198.51.100.7"
    )
    via = build_via(transport="udp", host=PROXY_IP, port=5060, branch=branch)
    fwd = prepare_forward(req, target=req.uri, via=via, record_route=[])
    assert is_loop(_came_back(fwd), is_myself)


def test_a_via_of_ours_with_a_foreign_branch_is_not_a_loop() -> None:
    req = request(
        vias=[
            "SIP/2.0/UDP p2.example.net;branch=z9hG4bKp2",
            f"SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKrandom0123",
            UA_VIA,
        ]
    )
    assert check(req) is None


def test_same_branch_from_another_host_is_not_a_loop() -> None:
    req = request(uri="sip:bob@other.example.net")
    branch = compute_branch(req)
    via = build_via(transport="udp", host="192.0.2.200", port=5060, branch=branch)
    fwd = prepare_forward(req, target=req.uri, via=via, record_route=[])
    assert check(_came_back(fwd)) is None


def test_malformed_lower_vias_are_skipped() -> None:
    req = request(uri="sip:bob@other.example.net")
    fwd = prepare_forward(req, target=req.uri, via=_our_via(req), record_route=[])
    fwd.headers.add("Via", "SIP/2.0/UDP bad host")
    assert is_loop(_came_back(fwd), is_myself)
    broken_below = request(vias=[f"SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKabc.0", "garbage"])
    assert check(broken_below) is None


def test_own_via_at_the_bottom_is_a_request_we_originated() -> None:
    req = request("NOTIFY", vias=[f"SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKsca.0"])
    assert not is_loop(req, is_myself)


def test_own_via_hosts_override_is_myself() -> None:
    req = request(uri="sip:bob@other.example.net")
    branch = compute_branch(req)
    via = build_via(transport="tcp", host="edge.example.org", port=5080, branch=branch)
    back = _came_back(prepare_forward(req, target=req.uri, via=via, record_route=[]))
    assert check(back) is None  # is_myself does not know edge.example.org
    resp = check(back, own_via_hosts=[("edge.example.org", 5080)])
    assert resp is not None and resp.status == 482


def test_483_wins_over_482() -> None:
    req = request(uri="sip:bob@other.example.net")
    back = _came_back(prepare_forward(req, target=req.uri, via=_our_via(req), record_route=[]))
    back.headers.set("Max-Forwards", "0")
    resp = check(back)
    assert resp is not None and resp.status == 483


def test_branch_depends_on_the_request_uri_and_index() -> None:
    a = request(uri="sip:bob@example.com")
    b = request(uri="sip:carol@example.com")
    assert compute_branch(a) != compute_branch(b)
    assert compute_branch(a, 0) != compute_branch(a, 1)
    assert compute_branch(a) == compute_branch(request(uri="sip:bob@example.com"))
    assert compute_branch(a).startswith("z9hG4bK")
