"""A subscription that has ended stays ended (decisions.md 42, docs/compat.md row 57).

Over real sockets: after the NOTIFY ``terminated`` an in-dialog SUBSCRIBE gets ``481 Call
Leg/Transaction Does Not Exist`` (Kamailio brings the subscription back, traces/02), also
after the purge; a retransmission of the SUBSCRIBE that ended it still gets its 2xx from
the transaction layer; a new out-of-dialog SUBSCRIBE from the same phone works as ever.
"""

from __future__ import annotations

from helpers.phone import Dialog, Phone
from helpers.sca import Line, sub_state
from sipsca.sip import SipRequest, SipResponse

NO_DIALOG = (481, "Call Leg/Transaction Does Not Exist")


def listed(subs: list[str], phone: Phone, event: str) -> list[str]:
    """The ``sca.all_subscriptions`` lines of ``phone``'s ``event`` subscription."""
    return [s for s in subs if f"127.0.0.1:{phone.port} {event} " in s]


async def terminated(p: Phone, d: Dialog, event: str) -> SipRequest:
    return await p.expect_notify(
        event,
        call_id=d.call_id,
        predicate=lambda n: sub_state(n)[0].startswith("terminated"),
    )


async def test_used_up_line_seize_is_481_in_dialog(line: Line) -> None:
    """A's seize of index 1 ends with its call's 180 (``noresource``); refreshing it in
    its dialog gets 481 and no NOTIFY, also once the purge (1 s) forgot it; a new
    out-of-dialog line-seize gets index 2."""
    a = line["A"]
    seize, _ = await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 200
    n = await terminated(a, seize, "line-seize")
    assert sub_state(n) == ("terminated;reason=noresource", None)
    _, r = await a.subscribe(
        "line-seize", 15, aor=line.aor, call_info=line.seize_ci % 1, dialog=seize
    )
    assert (r.status, r.reason) == NO_DIALOG
    await line.no_notify([a], event="line-seize")
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(s.endswith(" active") for s in listed(subs, a, "line-seize")), subs
    await line.settle(1.5)
    _, r = await a.subscribe(
        "line-seize", 15, aor=line.aor, call_info=line.seize_ci % 1, dialog=seize
    )
    assert (r.status, r.reason) == NO_DIALOG
    line.drain()
    again, granted = await line.seize(a, 0)
    assert granted == 2 and again.call_id != seize.call_id


async def test_unsubscribed_call_info_is_481_in_dialog(line: Line) -> None:
    """A unsubscribes in its dialog (202 + NOTIFY ``terminated``); the retransmitted
    unsubscribe is answered 202 again (server transaction); a refresh in that dialog gets
    481 and no NOTIFY; A's new out-of-dialog SUBSCRIBE is a live subscription that gets
    the broadcasts."""
    a, b = line["A"], line["B"]
    d = line.subs.pop("A")
    d.local_cseq += 1
    unsubscribe = a._in_dialog("SUBSCRIBE", d, headers=[("Event", "call-info"), ("Expires", "0")])
    first = await a.send_request(unsubscribe, dialog=d)
    assert first.status == 202, first
    assert sub_state(await terminated(a, d, "call-info")) == ("terminated", None)

    branch = unsubscribe.top_via.branch
    await a.send_raw(unsubscribe.to_bytes())  # a UDP retransmission: same branch and CSeq

    def answers() -> list[SipResponse]:
        return [m for m in a.received if isinstance(m, SipResponse) and m.top_via.branch == branch]

    await a.wait_for(lambda: len(answers()) == 2, what="the retransmission's answer")
    again = answers()[1]
    assert (again.status, again.to_tag) == (202, first.to_tag)

    _, r = await a.subscribe("call-info", 3600, aor=line.aor, dialog=d)
    assert (r.status, r.reason) == NO_DIALOG
    await line.no_notify([a])
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(s.endswith(" active") for s in listed(subs, a, "call-info")), subs

    fresh = await line.subscribe(a)
    assert fresh.call_id != d.call_id
    subs = await line.server.arpc("sca.all_subscriptions")
    assert [s.split()[-1] for s in listed(subs, a, "call-info")] == ["active"]
    await line.seize(b, 1)  # its broadcast reaches A in the new dialog, nothing the old one
    await line.no_notify([a])
