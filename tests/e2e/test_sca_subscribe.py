"""sca-behaviour.md section 9, scenarios 1-13: call-info SUBSCRIBE, end to end over real sockets.

AoR ``sip:1000@127.0.0.1`` (the spec's ``sip:1000@example.com`` moved to loopback), phones A
and B are user 1000 on their own ports. Where decisions.md rules against Kamailio ([R]) the
ruling is asserted and named in the docstring.
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.phone import Dialog, call_info_of
from helpers.sca import WILDCARD, Line, ci, sub_state

AOR = "sip:1000@127.0.0.1"


def assert_2xx_headers(r: Any, event: str, expires: int, status: int = 202) -> None:
    assert r.status == status, r
    assert r.reason == ("Accepted" if status == 202 else "OK")
    assert r.headers.get("event") == event
    assert r.headers.get("contact") == AOR
    assert r.headers.get("allow-events") == "call-info, line-seize"
    assert r.headers.get("expires") == str(expires)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_scenario_01_call_info_subscribe(make_line: Any, transport: str) -> None:
    """202 + exactly one NOTIFY in the SUBSCRIBE's dialog with the route set, full state, and
    [R] decisions.md 1: ``Subscription-State: active;expires=3600`` (Kamailio omits expires)."""
    line: Line = await make_line()
    a = await line.phone("A", transport=transport)
    assert (await a.register()).status == 200
    tp = ";transport=tcp" if transport == "tcp" else ""
    rr = f"<sip:127.0.0.1:{a.port};lr{tp}>"
    d, r = await a.subscribe("call-info", 7200, headers=[("Record-Route", rr)])
    assert_2xx_headers(r, "call-info", 3600)
    to_tag = r.to_tag
    assert to_tag
    n = await a.expect_notify("call-info", call_id=d.call_id)
    assert n.uri == a.contact_uri
    assert str(n.cseq) == "1 NOTIFY"
    assert n.to.uri_text == AOR and n.to.tag == d.local_tag
    assert n.from_.uri_text == AOR and n.from_.tag == to_tag
    assert n.headers.values("route") == [rr]
    assert n.headers.get("contact") == AOR
    assert call_info_of(n) == WILDCARD
    assert n.headers.get("event") == "call-info"
    state, expires = sub_state(n)
    assert state == "active" and expires is not None and 3598 <= expires <= 3600
    assert n.body == b"" and n.headers.get("content-type") is None
    line.subs["A"] = d
    await line.no_notify([a])


async def test_scenario_02_server_address(make_line: Any) -> None:
    """``sca.server_address`` is used verbatim as Contact in the 202 and in every NOTIFY."""
    line: Line = await make_line({"sca": {"server_address": "sip:127.0.0.9:5060"}})
    a = await line.phone("A")
    await a.register()
    d, r = await a.subscribe("call-info", 3600)
    assert r.status == 202 and r.headers.get("contact") == "sip:127.0.0.9:5060"
    n = await a.expect_notify("call-info", call_id=d.call_id)
    assert n.headers.get("contact") == "sip:127.0.0.9:5060"
    line.subs["A"] = d
    d2, r = await a.subscribe("line-seize", 15, call_info=line.seize_ci % 1)
    assert r.status == 200 and r.headers.get("contact") == "sip:127.0.0.9:5060"
    n = await a.expect_notify("line-seize", call_id=d2.call_id)
    assert n.headers.get("contact") == "sip:127.0.0.9:5060"
    n = await a.expect_notify("call-info", call_id=d.call_id)
    assert n.headers.get("contact") == "sip:127.0.0.9:5060"


async def test_scenario_03_bad_event(line: Line) -> None:
    """[R] decisions.md 7: no Event -> 489 Bad Event (with Allow-Events when the SCA engine
    answers; a SUBSCRIBE routed to the registered phones gets their 489); another package is
    routed like any request (relayed to A and B, who answer 489; 404 for an unknown user);
    ``Event: call-info;id=7`` is accepted (202). No NOTIFY for the refused ones."""
    a = line["A"]
    _, r = await a.subscribe(None, 3600)
    assert r.status == 489, r
    _, r = await a.subscribe("presence", 3600)
    assert r.status == 489, r
    _, r = await a.subscribe("presence", 3600, aor="sip:999@127.0.0.1")
    assert r.status == 404, r
    await line.no_notify()
    d, r = await a.subscribe("call-info", 3600, event_header="call-info;id=7")
    assert r.status == 202, r
    n = await a.expect_notify(predicate=lambda n: n.call_id == d.call_id)
    assert (n.headers.get("event") or "").split(";")[0] == "call-info"


async def test_scenario_04_bad_expires(line: Line) -> None:
    """``Expires: abc`` -> 400 Bad Shared Call Appearance Request, no NOTIFY."""
    r = await line["A"].request(
        "SUBSCRIBE", AOR, headers=[("Event", "call-info"), ("Expires", "abc")]
    )
    assert (r.status, r.reason) == (400, "Bad Shared Call Appearance Request")
    await line.no_notify()


async def test_scenario_05_from_without_tag(line: Line) -> None:
    """From without tag -> 400 Bad Shared Call Appearance Request."""
    r = await line["A"].request(
        "SUBSCRIBE", AOR, from_=f"<{AOR}>", headers=[("Event", "call-info"), ("Expires", "3600")]
    )
    assert (r.status, r.reason) == (400, "Bad Shared Call Appearance Request")
    await line.no_notify()


@pytest.mark.parametrize("contact", ["<sip:1000@127.0.0.1:7001>, <sip:1000@127.0.0.1:7002>", "*"])
async def test_scenario_06_bad_contact(line: Line, contact: str) -> None:
    """Two Contacts, or ``Contact: *`` -> 400 Bad Shared Call Appearance Request."""
    r = await line["A"].request(
        "SUBSCRIBE", AOR, contact=contact, headers=[("Event", "call-info"), ("Expires", "3600")]
    )
    assert (r.status, r.reason) == (400, "Bad Shared Call Appearance Request")
    await line.no_notify()


async def test_scenario_07_no_expires_header(make_line: Any) -> None:
    """[R] decisions.md 12: no Expires -> the package default (call_info_max_expires = 3600),
    an active subscription listed by RPC (Kamailio treats it as Expires: 0)."""
    line: Line = await make_line()
    a = await line.phone("A")
    await a.register()
    d, r = await a.subscribe("call-info", None)
    assert r.status == 202 and r.headers.get("expires") == "3600"
    n = await a.expect_notify("call-info", call_id=d.call_id)
    state, expires = sub_state(n)
    assert state == "active" and expires is not None and expires > 3590
    subs = await line.server.arpc("sca.all_subscriptions")
    assert any(f"127.0.0.1:{a.port} call-info" in s and s.endswith("active") for s in subs), subs


async def test_scenario_08_unknown_dialog(line: Line) -> None:
    """In-dialog SUBSCRIBE (To-tag) that matches no subscription, from a Contact that never
    subscribed -> 481 Call Leg/Transaction Does Not Exist."""
    c = await line.phone("C")
    fake = Dialog("bogus-dialog", AOR, AOR, "ftag", remote_tag="nosuchtag", remote_target=AOR)
    _, r = await c.subscribe("call-info", 3600, dialog=fake)
    assert r.status == 481, r
    assert r.reason == "Call Leg/Transaction Does Not Exist"


async def test_scenario_09_refresh(line: Line) -> None:
    """In-dialog refresh -> 202 Expires 3600; one NOTIFY to A, CSeq above every earlier one,
    full state, active (with expires, decisions.md 1); B gets nothing."""
    a = line["A"]
    d = line.subs["A"]
    before = max(n.cseq.number for n in a.notifies if n.call_id == d.call_id)
    _, r = await a.subscribe("call-info", 3600, dialog=d)
    assert_2xx_headers(r, "call-info", 3600)
    n = await a.expect_notify("call-info", call_id=d.call_id)
    assert n.cseq.number > before
    assert call_info_of(n) == WILDCARD
    assert sub_state(n)[0] == "active" and sub_state(n)[1] is not None
    await line.no_notify()


async def test_scenario_10_unsubscribe(line: Line) -> None:
    """In-dialog Expires 0 -> 202 Expires 0, NOTIFY terminated with the full state. Then
    (sca-behaviour.md 3.7 [R], RFC 6665) A gets no further NOTIFY, and the record is gone from
    RPC after the next purge (1 s)."""
    a, b = line["A"], line["B"]
    d = line.subs["A"]
    _, r = await a.subscribe("call-info", 0, dialog=d)
    assert_2xx_headers(r, "call-info", 0)
    n = await a.expect_notify("call-info", call_id=d.call_id)
    assert sub_state(n) == ("terminated", None)
    assert call_info_of(n) == WILDCARD
    del line.subs["A"]
    await line.seize(b, 1)
    await line.no_notify([a])
    await line.settle(2.5)
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(f"127.0.0.1:{a.port} call-info" in s for s in subs), subs
    await line.no_notify([a], within=0.1)


async def test_scenario_11_resubscribe_releases_owned_appearances(line: Line) -> None:
    """A owns appearance 1 (active call) and re-SUBSCRIBEs out of dialog (reboot): 202, the
    appearance is removed, NOTIFY to A in the new dialog (wildcard only), then a broadcast to A
    and B without index 1."""
    a, bob = line["A"], line["bob"]
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final and call.final.status == 200
    await line.broadcast(lambda v: ci(1, "active") in v, strict=False)
    line.drain()
    d, r = await a.subscribe("call-info", 3600)
    assert r.status == 202
    line.subs["A"] = d
    assert await line.next_ci(a) == WILDCARD
    await line.broadcast(WILDCARD)
    assert not await line.server.arpc("sca.all_appearances")
    assert bob.incoming, "bob never got the call"


async def test_scenario_12_resubscribe_owning_nothing(line: Line) -> None:
    """Same as 11 but A owns nothing: only the NOTIFY to A in the new dialog."""
    a = line["A"]
    d, r = await a.subscribe("call-info", 3600)
    assert r.status == 202
    line.subs["A"] = d
    assert await line.next_ci(a) == WILDCARD
    await line.no_notify()


async def test_scenario_13_to_uri_differs_from_aor(line: Line) -> None:
    """In-dialog SUBSCRIBE whose To URI is ``<sip:1000@127.0.0.1;user=phone>`` while the AoR is
    stored as ``sip:1000@127.0.0.1`` -> 481."""
    a = line["A"]
    d = line.subs["A"]
    d.remote_uri = AOR + ";user=phone"
    _, r = await a.subscribe("call-info", 3600, dialog=d)
    assert r.status == 481, r
