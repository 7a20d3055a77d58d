"""PRACK (RFC 3262) and REFER (RFC 3515) through sipsca on calls of the shared line.

sca-behaviour.md 5.1 and 5.11: INVITE, CANCEL, BYE, PRACK and REFER requests and their
replies are routed through the call tracking; the PRACK and REFER handlers change no
appearance state, but every SCA ``Call-Info`` is still removed from them (requests and
replies, decisions.md 6: only SCA values), and they follow the dialog's route set like any
in-dialog request. After a REFER-based transfer the state follows from the INVITEs and
BYEs it leads to.

Expected NOTIFYs, from section 9 and 5.13 of the spec:

* outgoing call (A seized index 1): INVITE -> ``1 seized``; first 18x (here reliable) ->
  ``1 progressing`` and A's line-seize ``terminated;reason=noresource``; PRACK and its 200
  -> nothing; 200 -> ``1 active;appearance-uri=...``; ACK -> nothing (bob is no line);
  BYE (either side) -> wildcard only (scenarios 25-30);
* incoming call answered by B: [R] decisions.md 8 / compat 33 ``1 alerting`` while it
  rings, ``1 active`` at the answer; PRACK and REFER -> nothing; BYE -> wildcard
  (decisions.md 2 / compat 22: found whichever side sends it);
* CANCEL after a reliable 180 whose PRACK is still unanswered -> wildcard; the 487 and the
  PRACK's late 200 change nothing (scenario 30);
* transfer to the line itself: the transferee's new INVITE is an ordinary incoming call
  (``2 alerting``, ``2 active``), A's BYE frees index 1.

Every test also checks that sipsca logged no exception or error.
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.phone import Call, IncomingCall, Phone, call_info_of, make_sdp
from helpers.sca import BOB_URI, WILDCARD, Line, appearances, ci, established, full, sub_state
from sipsca.sip import SipMessage, SipRequest

AOR = "sip:1000@127.0.0.1"
CAROL = "sip:carol@carrier.invalid"
CAROL_URI = '\\"Carol\\" <sip:carol@carrier.invalid>'
TRANSFER_TARGET = "sip:carol@127.0.0.1"
SIPFRAG = b"SIP/2.0 200 OK\r\n"


def assert_clean_log(line: Line) -> None:
    """No exception and no error in the server's log."""
    text = line.server.log_text()
    assert "Traceback" not in text, text[-4000:]
    assert " ERROR " not in text and '"level": "ERROR"' not in text, text[-4000:]


def through_proxy(msg: SipMessage, line: Line) -> None:
    """``msg`` was relayed by sipsca (its Via is on top of the sender's), with the Route
    naming sipsca consumed."""
    vias = msg.headers.values("via")
    assert len(vias) == 2, vias
    assert f":{line.server.sip_addr[1]};" in vias[0], vias
    assert not msg.headers.values("route"), msg.headers.values("route")


def received(p: Phone, method: str) -> SipRequest:
    found = [r for r in p.requests if r.method == method]
    assert len(found) == 1, [r.method for r in p.requests]
    return found[0]


async def refer_notify(p: Phone, call: Call | IncomingCall) -> None:
    """The transferee reports the transfer's outcome (RFC 3515 2.4.5): an in-dialog
    ``NOTIFY`` with ``Event: refer`` and a sipfrag body, answered 200 through sipsca."""
    r = await p.request(
        "NOTIFY",
        dialog=call.dialog,
        headers=[("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")],
        body=SIPFRAG,
        content_type="message/sipfrag;version=2.0",
    )
    assert r.status == 200, r


async def outgoing_setup(
    make_line: Any, a_transport: str = "udp"
) -> tuple[Line, Phone, Phone, Any]:
    """A and B on the line, bob driven by the test, A has seized index 1."""
    line: Line = await make_line()
    a = await line.member("A", transport=a_transport)
    await line.member("B")
    bob = await line.callee(uas="manual")
    seize, _ = await line.seize(a, 1)
    return line, a, bob, seize


async def place_call(
    line: Line, a: Phone, bob: Phone, rel: str = "Supported"
) -> tuple[Call, IncomingCall]:
    """A calls bob on index 1 offering (``rel="Supported"``) or requiring (``"Require"``)
    100rel; bob gets the INVITE with it and without Call-Info; the group sees
    ``1 seized``."""
    call = await a.invite(
        "bob",
        call_info=line.seize_ci % 1,
        to_display='"Bob"',
        headers=[(rel, "100rel")],
        wait=False,
    )
    inc = await bob.wait_incoming()
    assert call_info_of(inc.invite) is None
    assert (inc.invite.headers.get(rel) or "").strip() == "100rel"
    await line.broadcast(full(ci(1, "seized")))
    return call, inc


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_reliable_183_prack_answer_bye(make_line: Any, transport: str) -> None:
    """Outgoing call, bob sends a reliable 183 with SDP: ``1 progressing``; A's PRACK
    (carrying an SCA Call-Info) follows the 183's Record-Route through sipsca and reaches
    bob without Call-Info; bob's 200 to it (also with an SCA Call-Info) reaches A without
    it; neither sends a NOTIFY. Then 200/ACK -> ``1 active``, BYE -> idle. With A on TCP
    (bob on UDP) the route set holds sipsca twice (one Record-Route per transport)."""
    line, a, bob, seize = await outgoing_setup(make_line, transport)
    bob.reply_headers["PRACK"] = [("Call-Info", ci(1))]
    call, inc = await place_call(line, a, bob)

    await bob.provisional(inc, 183, "Session Progress", reliable=True, body=make_sdp())
    p183 = await call.wait_status(183)
    assert (p183.headers.get("require") or "").strip() == "100rel"
    assert (p183.headers.get("rseq") or "").strip() == "1"
    rr = p183.headers.values("record-route")
    assert len(rr) == (1 if transport == "udp" else 2), rr
    await line.broadcast(full(ci(1, "progressing")))
    n = await a.expect_notify("line-seize", call_id=seize.call_id)
    assert sub_state(n) == ("terminated;reason=noresource", None)

    tx = await a.prack(call, p183, headers=[("Call-Info", line.seize_ci % 1)])
    assert tx.request.headers.values("route") == list(reversed(rr))
    assert call_info_of(tx.request) == line.seize_ci % 1
    ok = await a.wait_tx(tx)
    assert ok.status == 200, ok
    assert call_info_of(ok) is None
    prack = received(bob, "PRACK")
    through_proxy(prack, line)
    assert prack.uri == bob.contact_uri
    assert call_info_of(prack) is None
    assert (prack.headers.get("rack") or "").strip() == f"1 {call.invite.cseq.number} INVITE"
    await line.no_notify()

    await bob.answer(inc)
    final = await a.finish_invite(call)
    assert final.status == 200
    assert (final.headers.get("p-asserted-identity") or "").strip() == '"Bob" <sip:bob@127.0.0.1>'
    await line.broadcast(full(ci(1, "active", BOB_URI)))
    await line.no_notify()  # the ACK changes nothing
    assert await appearances(line) == [(1, "active")]

    assert (await a.bye(call)).status == 200
    assert call_info_of(received(bob, "BYE")) is None
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []
    assert_clean_log(line)


async def talking(
    make_line: Any, a_transport: str = "udp"
) -> tuple[Line, Phone, Phone, Call, IncomingCall]:
    """:func:`established`, with bob's side of the call: (line, a, bob, call, incoming)."""
    line, a, _, bob, call = await established(make_line, a_transport=a_transport)
    return line, a, bob, call, bob.incoming[0]


@pytest.mark.parametrize(("hangup", "transport"), [("line", "udp"), ("remote", "tcp")])
async def test_blind_transfer_by_the_line(make_line: Any, hangup: str, transport: str) -> None:
    """During A's active call to bob, A REFERs bob to carol (with an SCA Call-Info, which is
    removed); bob answers 202 (its SCA Call-Info removed too) and reports with an in-dialog
    ``NOTIFY`` (Event: refer, sipfrag) that reaches A through sipsca. The REFER sends no
    call-info NOTIFY (5.11); the BYE that ends the transferred call - A's or bob's - makes
    index 1 idle with its broadcast. A on TCP: sipsca is twice in the route set."""
    line, a, bob, call, inc = await talking(make_line, transport)
    bob.reply_headers["REFER"] = [("Call-Info", ci(1, "active"))]

    r = await a.refer(call, TRANSFER_TARGET, headers=[("Call-Info", line.seize_ci % 1)])
    assert r.status == 202, r
    assert call_info_of(r) is None
    refer = received(bob, "REFER")
    through_proxy(refer, line)
    assert refer.uri == bob.contact_uri
    assert call_info_of(refer) is None
    assert (refer.headers.get("refer-to") or "").strip() == f"<{TRANSFER_TARGET}>"

    await refer_notify(bob, inc)
    n = await a.expect_notify("refer", call_id=call.dialog.call_id)
    through_proxy(n, line)
    assert n.body == SIPFRAG
    await line.no_notify()
    assert await appearances(line) == [(1, "active")]

    if hangup == "line":
        assert (await a.bye(call)).status == 200
    else:
        assert (await bob.bye(inc)).status == 200
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []
    assert_clean_log(line)


@pytest.mark.parametrize("hangup", ["line", "remote"])
async def test_incoming_call_prack_and_transfer_by_the_member(make_line: Any, hangup: str) -> None:
    """Carol calls the line; B (callee side) sends a reliable 180 carrying an SCA Call-Info:
    Carol gets it without, her PRACK reaches B through sipsca, nothing is notified (still
    ``alerting``). B answers -> ``1 active``. B REFERs Carol (Call-Info removed), Carol
    answers 202 and reports by NOTIFY through sipsca: no call-info NOTIFY. Only the BYE -
    B's or Carol's - makes index 1 idle."""
    line: Line = await make_line()
    a = await line.member("A", uas="ring")
    b = await line.member("B", uas="manual")
    carol = await line.phone("carol", "carol")

    call = await carol.invite(
        AOR, from_uri=CAROL, from_display='"Carol"', headers=[("Supported", "100rel")], wait=False
    )
    inc_b = await b.wait_incoming()
    await a.wait_incoming()
    await line.broadcast(full(ci(1, "alerting", CAROL_URI)))

    b.reply_headers["PRACK"] = [("Call-Info", ci(1))]
    await b.provisional(inc_b, 180, reliable=True, headers=[("Call-Info", ci(1))])
    p180 = await carol.wait_for(
        lambda: next((r for r in call.responses if r.headers.get("rseq")), None),
        what="the reliable 180",
    )
    assert call_info_of(p180) is None
    tx = await carol.prack(call, p180, headers=[("Call-Info", ci(1))])
    ok = await carol.wait_tx(tx)
    assert ok.status == 200, ok
    assert call_info_of(ok) is None
    prack = received(b, "PRACK")
    through_proxy(prack, line)
    assert call_info_of(prack) is None
    await line.no_notify()
    assert await appearances(line) == [(1, "alerting")]

    await b.answer(inc_b)
    assert (await carol.finish_invite(call)).status == 200
    await line.broadcast(full(ci(1, "active", CAROL_URI)))
    await line.no_notify()

    carol.reply_headers["REFER"] = [("Call-Info", ci(1))]
    r = await b.refer(inc_b, TRANSFER_TARGET, headers=[("Call-Info", line.seize_ci % 1)])
    assert r.status == 202, r
    assert call_info_of(r) is None
    refer = received(carol, "REFER")
    through_proxy(refer, line)
    assert call_info_of(refer) is None
    await refer_notify(carol, call)
    n = await b.expect_notify("refer", call_id=call.dialog.call_id)
    through_proxy(n, line)
    await line.no_notify()
    assert await appearances(line) == [(1, "active")]

    if hangup == "line":
        assert (await b.bye(inc_b)).status == 200
    else:
        assert (await carol.bye(call)).status == 200
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []
    assert_clean_log(line)


async def test_cancel_while_prack_is_pending(make_line: Any) -> None:
    """A's INVITE requires 100rel (a proxy relays it, RFC 3261 16.3); bob sends a reliable
    180 (``1 progressing``); A PRACKs it but bob holds the PRACK unanswered; A's CANCEL
    still gets 200, the INVITE 487, and the group the wildcard. bob's late 200 to the PRACK
    reaches A and changes nothing (scenario 30)."""
    line, a, bob, seize = await outgoing_setup(make_line)
    bob.manual_replies.add("PRACK")
    call, inc = await place_call(line, a, bob, rel="Require")

    await bob.provisional(inc, 180, reliable=True)
    p180 = await call.wait_status(180)
    await line.broadcast(full(ci(1, "progressing")))
    n = await a.expect_notify("line-seize", call_id=seize.call_id)
    assert sub_state(n) == ("terminated;reason=noresource", None)

    tx = await a.prack(call, p180, headers=[("Call-Info", line.seize_ci % 1)], wait=False)
    prack = await bob.wait_for(
        lambda: next((r for r, _, _ in bob.unanswered if r.method == "PRACK"), None),
        what="the PRACK",
    )
    assert call_info_of(prack) is None

    assert (await a.cancel(call)).status == 200
    assert (await call.wait_final()).status == 487
    assert tx.final is not None and not tx.final.done(), "the PRACK is still unanswered"
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []

    await bob.respond(prack, 200)
    assert (await a.wait_tx(tx)).status == 200
    await line.no_notify()
    assert await appearances(line) == []
    assert_clean_log(line)


async def test_transfer_to_the_line_follows_the_new_invite(make_line: Any) -> None:
    """5.11: "after a REFER-based transfer the state follows from the resulting
    BYE/INVITEs". A (index 1, talking to bob) REFERs bob to the line itself; the REFER
    changes nothing; bob's new INVITE to the line is an incoming call (index 2 ``alerting``,
    decisions.md 8), B answers it (``2 active``), bob reports ``200 OK`` by NOTIFY, A's BYE
    frees index 1 and bob's BYE to B index 2."""
    line: Line = await make_line()
    a = await line.member("A", uas="ring")
    b = await line.member("B", uas="manual")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1, to_display='"Bob"')
    assert call.final is not None and call.final.status == 200
    first = ci(1, "active", BOB_URI)
    await line.broadcast(full(first), strict=False)
    await line.settle()
    line.drain()
    inc = bob.incoming[0]

    r = await a.refer(call, AOR, headers=[("Call-Info", line.seize_ci % 1)])
    assert r.status == 202, r
    assert call_info_of(received(bob, "REFER")) is None
    await line.no_notify()

    new = await bob.invite(AOR, wait=False)
    inc_b = await b.wait_incoming()
    assert call_info_of(inc_b.invite) == ci(2)
    alerting = await line.broadcast(lambda v: v.startswith(f"{first},{ci(2, 'alerting')};"))
    assert alerting.endswith(WILDCARD), alerting
    await b.answer(inc_b)
    assert (await bob.finish_invite(new)).status == 200
    second = ci(2, "active", "<sip:bob@127.0.0.1>")
    await line.broadcast(full(first, second))
    await refer_notify(bob, inc)
    assert (await a.expect_notify("refer", call_id=call.dialog.call_id)).body == SIPFRAG
    await line.no_notify(event="call-info")

    assert (await a.bye(call)).status == 200
    await line.broadcast(full(second))
    assert (await bob.bye(new)).status == 200
    await line.broadcast(WILDCARD)
    await line.no_notify(event="call-info")
    assert await appearances(line) == []
    assert_clean_log(line)
