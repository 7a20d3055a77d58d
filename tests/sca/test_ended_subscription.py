"""A subscription that has ended stays ended (decisions.md 42, compat row 57).

Once the NOTIFY with ``Subscription-State: terminated`` is sent the dialog usage is over
(RFC 6665 4.4.1, RFC 3261 12.2.2): an in-dialog SUBSCRIBE on it gets ``481 Call
Leg/Transaction Does Not Exist`` for as long as the record waits for the purge and after
it, and the phone subscribes again out of dialog, which is a new subscription (not the
"rebooted phone" rule of a live one). Kamailio brings the subscription back (traces/02).
"""

from __future__ import annotations

import pytest

from sipsca.sca import ScaEvent, SubscriptionState

from .factory import AOR, BOB, PREFIX, WILDCARD, A, SubDialog, sdp
from .harness import Harness

NO_DIALOG = (481, "Call Leg/Transaction Does Not Exist")


def idx(index: int) -> str:
    return f"{PREFIX};appearance-index={index}"


def refused(h: Harness, sub: SubDialog, **kw: object) -> bool:
    """The in-dialog SUBSCRIBE gets 481 and sends nothing."""
    reply = h.subscribe(sub, **kw)
    return (reply.status, reply.reason) == NO_DIALOG and h.notifies() == []


def state_of(h: Harness, event: ScaEvent, contact: str = A.contact) -> SubscriptionState:
    [subscription] = [
        s for s in h.engine.subscriptions() if (s.event, s.subscriber) == (event, contact)
    ]
    return subscription.state


@pytest.mark.parametrize("expires", [3600, 0])
def test_unsubscribed_call_info_dialog_is_481(
    h: Harness, line: dict[str, SubDialog], expires: int
) -> None:
    assert h.subscribe(line["A"], expires=0).status == 202
    h.drain()
    assert refused(h, line["A"], expires=expires)
    assert state_of(h, ScaEvent.CALL_INFO) is SubscriptionState.TERMINATED
    assert h.engine.rpc_subscription_count("call-info") == ["1 call-info"]


def test_used_up_line_seize_dialog_is_481(h: Harness, line: dict[str, SubDialog]) -> None:
    """The seize ended with the call's 180 (``noresource``); refreshing it is refused."""
    seize = h.f.new_sub(A, "line-seize")
    assert h.seize(seize, 1).status == 200
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 180, call=call, contact=BOB.contact), original)
    assert ("line-seize", "terminated;reason=noresource") in [
        (n.event, n.state) for n in h.notifies()
    ]
    for expires in (15, 0):
        assert refused(h, seize, call_info=idx(1), expires=expires)
    assert state_of(h, ScaEvent.LINE_SEIZE) is SubscriptionState.TERMINATED_NORESOURCE
    assert h.states() == {1: "progressing"}


def test_ended_dialog_stays_481_until_the_purge_and_after(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    h.subscribe(line["A"], expires=0)
    h.drain()
    h.advance(60)  # waiting for the purge
    assert refused(h, line["A"])
    h.advance(120)
    h.engine.handle_timer(h.now)  # the purge forgets the record
    h.drain()
    assert refused(h, line["A"])


def test_deactivated_dialog_is_481_and_the_phone_subscribes_again(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    h.engine.rpc_deactivate_subscription(AOR, "call-info", A.contact, now=h.now)
    h.drain()
    assert refused(h, line["A"])
    fresh = h.f.new_sub(A)
    assert h.subscribe(fresh).status == 202
    [notify] = h.notifies()
    assert (notify.call_id, notify.state) == (fresh.call_id, "active;expires=3600")


def test_out_of_dialog_subscribe_after_the_end_is_a_new_subscription(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    """A's call stays shown: the "rebooted phone" rule (scenario 11) is for a Contact whose
    subscription is live, and A's had ended (Kamailio released A's call here until the
    purge, and not after it)."""
    call, _ = h.outgoing(A, BOB)
    h.subscribe(line["A"], expires=0)
    h.drain()
    fresh = h.f.new_sub(A)
    reply = h.subscribe(fresh)
    assert reply.status == 202 and reply.to.tag
    [notify] = h.notifies()
    assert notify.call_id == fresh.call_id and notify.state == "active;expires=3600"
    assert notify.call_info.startswith(f"{idx(1)};appearance-state=active")
    assert notify.call_info.endswith(WILDCARD)
    assert h.states() == {1: "active"}
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]
    # The new dialog gets the broadcasts; the ended one is still refused.
    h.request(h.f.bye(call))
    assert {n.call_id for n in h.notifies() if n.target == A.contact} == {fresh.call_id}
    assert refused(h, line["A"])


def test_line_seize_after_the_used_up_one_is_a_new_subscription(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    seize = h.f.new_sub(A, "line-seize")
    h.seize(seize, 1)
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    h.drain()
    again = h.f.new_sub(A, "line-seize")
    assert h.seize(again, 0).status == 200
    assert h.states() == {1: "active", 2: "seized"}
    assert state_of(h, ScaEvent.LINE_SEIZE) is SubscriptionState.ACTIVE
