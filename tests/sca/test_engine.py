"""Engine behaviour beyond the §9 scenarios: sipsca's own rules and the runtime contract."""

from __future__ import annotations

import logging

import pytest

from sipsca.config import LineConfig, ScaConfig
from sipsca.sca import (
    Appearance,
    AppearanceChanged,
    AppearanceState,
    DeleteAppearance,
    DeleteSubscription,
    PersistSubscription,
    ScaEvent,
    SendNotify,
    Subscription,
    SubscriptionState,
)
from sipsca.sca import purge as purge_module
from sipsca.sca.engine import CSEQ_RESTORE_GAP

from .factory import AOR, BOB, CAROL, PREFIX, WILDCARD, A, B, C, Party, sdp
from .harness import NOW, Harness

S = AppearanceState


def idx(index: int) -> str:
    return f"{PREFIX};appearance-index={index}"


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.call_info_line(A, B)
    return harness


# --------------------------------------------------------------------------- seizing


def test_simultaneous_seizes_of_one_index_have_one_winner(h: Harness) -> None:
    # decisions.md #10
    phones = [Party(f"P{i}", AOR, f"sip:1000@192.0.2.{100 + i}:5060") for i in range(8)]
    requests = [h.f.line_seize(h.f.new_sub(p, "line-seize"), 1) for p in phones]
    statuses = [h.send_subscribe(r).status for r in requests]
    assert statuses.count(200) == 1 and statuses.count(480) == 7
    anys = [h.f.line_seize(h.f.new_sub(p, "line-seize"), 0) for p in phones[1:4]]
    assert [h.send_subscribe(r).status for r in anys] == [200, 200, 200]
    assert sorted(h.states()) == [1, 2, 3, 4]


def test_max_appearances_bounds_seizes() -> None:
    # decisions.md #9
    h = Harness(ScaConfig(max_appearances=2))
    h.call_info_line(A, B, C)
    assert h.seize(h.f.new_sub(A, "line-seize"), 0).status == 200
    assert h.seize(h.f.new_sub(B, "line-seize"), 0).status == 200
    full = h.seize(h.f.new_sub(C, "line-seize"), 0)
    assert (full.status, full.headers.get("retry-after")) == (480, "1")
    beyond = h.seize(h.f.new_sub(C, "line-seize"), 3)
    assert beyond.status == 480


def test_same_phone_asking_again_for_its_seized_index_gets_it(h: Harness) -> None:
    first = h.f.new_sub(A, "line-seize")
    assert h.seize(first, 1).status == 200
    again = h.f.new_sub(A, "line-seize")  # new dialog, same Contact ([K]: 480)
    assert h.seize(again, 1).status == 200
    assert h.seize(h.f.new_sub(A, "line-seize"), 0).status == 200  # "any": the same one
    assert h.states() == {1: "seized"}
    [ls] = [s for s in h.engine.subscriptions() if s.event is ScaEvent.LINE_SEIZE]
    assert ls.index == 1


def test_failed_seize_leaves_the_subscription_alone(h: Harness) -> None:
    b_sub = h.f.new_sub(B, "line-seize")
    h.seize(b_sub, 2)
    a_sub = h.f.new_sub(A, "line-seize")
    h.seize(a_sub, 1)
    before = [s for s in h.engine.subscriptions() if s.subscriber == A.contact and s.index]
    assert h.seize(h.f.new_sub(A, "line-seize"), 2).status == 480
    after = [s for s in h.engine.subscriptions() if s.subscriber == A.contact and s.index]
    assert [(s.call_id, s.index) for s in after] == [(s.call_id, s.index) for s in before]


def test_line_seize_unsubscribe_never_releases_a_call(h: Harness) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    reply = h.seize(ls, 1, expires=0)  # late: the answer used the seize up (noresource)
    assert reply.status == 481  # decisions.md 42: the ended subscription is gone
    other = h.f.new_sub(B, "line-seize")
    assert h.seize(other, 2).status == 200
    reply = h.seize(other, 1, expires=0)  # a live seize whose unsubscribe names the call
    assert reply.status == 200
    assert h.states() == {1: "active", 2: "seized"}


def test_answer_without_18x_ends_the_line_seize(h: Harness) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.drain()
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    states = [(n.event, n.state) for n in h.notifies()]
    assert ("line-seize", "terminated;reason=noresource") in states


@pytest.mark.parametrize("status", [180, 200, 486])
def test_a_call_on_another_index_leaves_the_line_seize_alone(h: Harness, status: int) -> None:
    """The seize of index 2 is not used up by a call on index 1 ([K] ends whatever
    line-seize the Contact has, and index 2 then stays seized until its TTL)."""
    ls = h.f.new_sub(A, "line-seize")
    assert h.seize(ls, 2).status == 200
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.drain()
    body = sdp() if status == 200 else None
    h.relay(h.f.response(original, status, call=call, contact=BOB.contact, body=body), original)
    assert "terminated;reason=noresource" not in [n.state for n in h.notifies()]
    assert h.engine.rpc_subscription_count("line-seize") == ["1 line-seize"]
    seized = h.engine.rpc_show_appearance(AOR, 2)
    assert "seized" in " ".join(seized), seized


def test_a_retransmitted_answer_gets_the_edits_of_the_first(h: Harness) -> None:
    """decision #6 / §5.1: every copy of the 2xx toward the caller loses its SCA Call-Info
    and carries P-Asserted-Identity, not only the first ([K] runs each through its reply
    route); the copy changes no state and sends no NOTIFY."""
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.drain()
    answer = h.f.response(
        original, 200, call=call, contact=BOB.contact, body=sdp(), call_info=idx(2)
    )
    again = answer.copy()
    h.relay(answer, original)
    h.drain()
    h.engine.on_repeated_answer(again)
    assert h.drain() == []
    assert again.headers.values("call-info") == [] == answer.headers.values("call-info")
    pai = answer.headers.values("p-asserted-identity")
    assert pai and again.headers.values("p-asserted-identity") == pai
    # toward a caller that is no line: stripped, no PAI
    plain = h.f.response(
        h.f.invite(h.f.new_call(CAROL, BOB)), 200, contact=BOB.contact, call_info=idx(2)
    )
    h.engine.on_repeated_answer(plain)
    assert plain.headers.values("call-info") == []
    assert plain.headers.values("p-asserted-identity") == []


# --------------------------------------------------------------------------- membership


def test_members_only_line() -> None:
    config = ScaConfig(lines=(LineConfig(aor=AOR, members=("sip:alice@example.com",)),))
    h = Harness(config)
    request = h.f.subscribe(h.f.new_sub(A))
    assert h.engine.handle_subscribe(request, now=h.now).status == 403  # From is the line
    ok = h.engine.handle_subscribe(
        h.f.subscribe(h.f.new_sub(A)), now=h.now, authenticated="sip:alice@example.com"
    )
    assert ok.status == 202
    denied = h.engine.handle_subscribe(
        h.f.subscribe(h.f.new_sub(B)), now=h.now, authenticated="sip:mallory@example.com"
    )
    assert (denied.status, denied.reason) == (403, "Forbidden")


# --------------------------------------------------------------------------- calls


def test_incoming_call_to_an_alias(h: Harness) -> None:
    config = ScaConfig(lines=(LineConfig(aor=AOR, aliases=("+15551234",)),))
    h = Harness(config)
    h.call_info_line(A, B)
    did = Party("did", "sip:+15551234@gw.example.net", A.contact)
    call = h.f.new_call(CAROL, did, ruri=AOR)
    outcome = h.request(h.f.invite(call))
    assert outcome.member_call_info == idx(1)
    assert h.states() == {1: "alerting"}


def test_incoming_call_alerting_can_be_switched_off() -> None:
    h = Harness(ScaConfig(incoming_alerting=False))
    h.call_info_line(A, B)
    call = h.f.new_call(CAROL, Party("line", AOR, B.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    outcome = h.request(invite)
    assert outcome.member_call_info is None and h.notifies() == []
    call.answerer = B.contact
    h.relay(h.f.response(original, 200, call=call, contact=B.contact, body=sdp()), original)
    assert h.states() == {1: "active-pending"}
    h.ack(h.f.ack(call))
    assert h.states() == {1: "active"}


def test_two_members_answer_first_one_wins(h: Harness) -> None:
    call = h.f.new_call(CAROL, Party("line", AOR, A.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 200, call=call, to_tag="ta", contact=A.contact), original)
    h.relay(h.f.response(original, 200, call=call, to_tag="tb", contact=B.contact), original)
    [appearance] = h.engine.appearances(AOR)
    assert (appearance.owner, appearance.to_tag) == (A.contact, "ta")


def test_cancel_after_answer_keeps_the_call(h: Harness) -> None:
    call = h.f.new_call(CAROL, Party("line", AOR, A.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 200, call=call, contact=A.contact, body=sdp()), original)
    h.request(h.f.cancel(call, original))
    assert h.states() == {1: "active-pending"}


def test_unanswered_incoming_call_is_released(h: Harness) -> None:
    for final in (486, 603, 302, 408):
        call = h.f.new_call(CAROL, Party("line", AOR, A.contact))
        invite = h.f.invite(call)
        original = invite.copy()
        h.request(invite)
        assert h.states() == {1: "alerting"}
        h.relay(h.f.response(original, final, call=call), original)
        assert h.states() == {}, final


def test_failed_reinvite_keeps_the_call(h: Harness) -> None:
    # decisions.md #3: [K] releases an established call on 491/488/408; the failed hold
    # is undone too (decisions.md 41): the call is still active.
    call, _ = h.outgoing(A, BOB)
    reinvite = h.f.invite(call, body=sdp("sendonly"))
    original = reinvite.copy()
    h.request(reinvite)
    assert h.states() == {1: "held"}
    for status in (491, 488, 408):
        h.relay(h.f.response(original, status), original)
    assert h.states() == {1: "active"}


def test_challenge_then_retry_reuses_the_appearance(h: Harness) -> None:
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 407, call=call), original)
    retry = h.f.invite(call)  # same Call-ID and From-tag, CSeq 2
    h.request(retry)
    [appearance] = h.engine.appearances(AOR)
    assert appearance.index == 1 and appearance.call_id == call.call_id


def test_failed_retrieval_puts_the_call_back_on_hold(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    h.request(h.f.invite(call, body=sdp("sendonly"), call_info=idx(1)))
    held = h.engine.appearances(AOR)[0]
    retrieve = h.f.new_call(B, Party("line", AOR, BOB.contact), ruri=AOR)
    invite = h.f.invite(retrieve, call_info=idx(1))
    original = invite.copy()
    assert h.request(invite).retrieval_target == BOB.contact
    h.drain()
    h.relay(h.f.response(original, 481, call=retrieve), original)
    [restored] = h.engine.appearances(AOR)
    assert (restored.state, restored.owner, restored.call_id, restored.to_tag) == (
        S.HELD,
        A.contact,
        held.call_id,
        held.to_tag,
    )
    first = h.notifies()[0]
    assert first.call_info.startswith(f"{idx(1)};appearance-state=held")


def test_owner_may_pick_up_its_own_private_hold(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    private = f"{idx(1)};appearance-state=held-private"
    h.request(h.f.invite(call, body=sdp("sendonly"), call_info=private))
    own = h.f.new_call(A, Party("line", AOR, BOB.contact), ruri=AOR)
    outcome = h.request(h.f.invite(own, call_info=idx(1)))
    assert outcome.reject is None and outcome.retrieval_target == BOB.contact


def test_bye_from_answering_member_without_call_info(h: Harness) -> None:
    # decisions.md #2: issue #341 - the tags are reversed for an answered call.
    call = h.f.new_call(CAROL, Party("line", AOR, B.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    call.answerer = B.contact
    h.relay(h.f.response(original, 200, call=call, contact=B.contact, body=sdp()), original)
    h.ack(h.f.ack(call))
    h.drain()
    h.request(h.f.bye(call, by="callee"))
    assert h.states() == {}
    assert [n.call_info for n in h.notifies()] == [WILDCARD, WILDCARD]


def test_bye_answered_logs_nothing_about_the_released_appearance(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The 200 to a BYE runs the BYE lookup again (for a BYE whose request found nothing);
    after an ordinary hang-up that lookup finds nothing and must not log "not active",
    the line operators grep for Kamailio's stuck appearances (#341). A BYE for no call
    still says so, once."""
    caplog.set_level(logging.INFO, logger="sipsca.sca")
    call, _ = h.outgoing(A, BOB)
    bye = h.f.bye(call)
    original = bye.copy()
    h.request(bye)
    h.relay(h.f.response(original, 200, call=call), original)
    assert h.states() == {}
    assert not [r for r in caplog.records if "is not active" in r.getMessage()]
    stray = h.f.bye(h.f.new_call(A, BOB))
    h.request(stray)
    h.relay(h.f.response(stray.copy(), 481), stray)
    assert len([r for r in caplog.records if "is not active" in r.getMessage()]) == 1


def test_answered_call_whose_ack_we_never_see_is_promoted_not_purged(h: Harness) -> None:
    call = h.f.new_call(CAROL, Party("line", AOR, B.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 200, call=call, contact=B.contact, body=sdp()), original)
    h.drain()
    h.advance(120)
    h.engine.handle_timer(h.now)
    assert h.states() == {1: "active"}
    assert h.notifies() == []  # same wire state: nothing to tell


@pytest.mark.parametrize("state", [S.PROGRESSING, S.ALERTING])
def test_ringing_appearance_restored_without_its_invite_is_released(state: S) -> None:
    """A call rang when the server restarted: its INVITE transaction is gone, its final
    response will never be tracked, so the key must not blink forever."""
    h = Harness()
    ringing = Appearance(
        aor=AOR, index=1, state=state, owner=A.contact, call_id="c", from_tag="f", changed_at=NOW
    )
    h.engine.restore([], [ringing], now=NOW)
    h.engine.handle_timer(NOW)  # schedules the purges: every 120 s
    h.engine.handle_timer(NOW + 240)  # younger than ringing_ttl (300 s)
    assert h.states() == {1: state.value}
    h.drain()
    h.engine.handle_timer(NOW + 360)
    assert h.states() == {}
    assert [e for e in h.drain() if isinstance(e, DeleteAppearance)] == [
        DeleteAppearance(aor=AOR, index=1)
    ]


def test_a_call_that_keeps_ringing_is_not_released(h: Harness) -> None:
    """Every 18x restarts timer C, so a call may ring past ringing_ttl: while its INVITE is
    pending its appearance stays."""
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    h.relay(h.f.response(original, 180, call=call, contact=BOB.contact), original)
    h.drain()
    assert h.states() == {1: "progressing"}
    h.advance(400)
    h.engine.handle_timer(h.now)
    assert h.states() == {1: "progressing"}
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    assert h.states() == {1: "active"}


def test_stale_pending_without_dialog_is_purged() -> None:
    h = Harness()
    pending = Appearance(aor=AOR, index=2, state=S.ACTIVE_PENDING, changed_at=NOW - 100)
    h.engine.restore([], [pending], now=NOW)
    h.engine.handle_timer(NOW)
    assert h.states() == {}


def test_hold_in_ack_and_resume(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    h.ack(h.f.ack(call, body=sdp("inactive")))
    assert h.states() == {1: "held"}
    h.ack(h.f.ack(call, body=sdp("sendrecv")))
    assert h.states() == {1: "active"}


def test_non_tracked_messages_and_garbage(h: Harness) -> None:
    request = h.f.request("OPTIONS", h.f.new_call(A, BOB))
    assert h.request(request).reject is None
    broken = h.f.invite(h.f.new_call(A, BOB))
    broken.headers.set("From", "<<<")
    assert h.request(broken).reject is None
    assert h.drain() == []


# --------------------------------------------------------------------------- NOTIFY details


def test_strict_router_route_set() -> None:
    h = Harness()
    sub = h.f.new_sub(A)
    h.subscribe(sub, record_route=("<sip:p2.example.com>", "<sip:p1.example.com;lr>"))
    [notify] = h.notifies()
    assert notify.target == "sip:p2.example.com"
    assert notify.request.headers.get("route") == f"<sip:p1.example.com;lr>, <{A.contact}>"
    # RFC 3261 8.1.2: sent to the strict router (the Request-URI), not the first Route left
    assert notify.effect.next_hop == "sip:p2.example.com"


@pytest.mark.parametrize(
    ("record_route", "hop"),
    [
        ((), A.contact),
        (("<sip:p1.example.com;lr>", "<sip:p0.example.com;lr>"), "sip:p1.example.com;lr"),
    ],
    ids=["none", "loose"],
)
def test_notify_next_hop(record_route: tuple[str, ...], hop: str) -> None:
    h = Harness()
    h.subscribe(h.f.new_sub(A), record_route=record_route)
    [notify] = h.notifies()
    assert notify.effect.next_hop == hop
    assert notify.target == A.contact


def test_flow_is_remembered_and_refreshed() -> None:
    h = Harness()
    sub = h.f.new_sub(A)
    h.engine.handle_subscribe(h.f.subscribe(sub), now=h.now, flow="tcp:192.0.2.10:40000")
    sub.to_tag = "T1"
    [first] = [e for e in h.drain() if isinstance(e, SendNotify)]
    assert first.flow == "tcp:192.0.2.10:40000"
    h.engine.handle_subscribe(h.f.subscribe(sub), now=h.now, flow="tcp:192.0.2.10:40001")
    [second] = [e for e in h.drain() if isinstance(e, SendNotify)]
    assert second.flow == "tcp:192.0.2.10:40001"


def test_cseq_keeps_growing_when_the_dialog_is_replaced(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    before = [n.cseq for n in h.notifies() if n.target == A.contact]
    h.subscribe(h.f.new_sub(A))  # reboot: new dialog
    after = [n.cseq for n in h.notifies() if n.target == A.contact]
    assert min(after) > max(before)


def test_notify_result_handling(h: Harness) -> None:
    key = (AOR, ScaEvent.CALL_INFO, A.contact)
    h.engine.on_notify_result(key, 1, 200, now=h.now)
    h.engine.on_notify_result(key, 1, 503, now=h.now)
    assert h.drain() == [] and h.engine.stats()["notifies_failed"] == 1
    h.engine.rpc_seize_appearance(AOR, B.contact, now=h.now)
    [old] = [n for n in h.notifies() if n.target == A.contact]
    old_dialog = (old.call_id, old.request.from_tag or "")
    h.subscribe(h.f.new_sub(A))  # the phone re-subscribes with a new dialog
    [new] = [n for n in h.notifies() if n.target == A.contact]
    h.engine.on_notify_result(key, 1, 481, now=h.now, dialog=old_dialog)  # late, old dialog
    assert h.drain() == []
    h.engine.on_notify_result(key, 0, None, now=h.now)  # dialog unknown
    assert h.drain() == [DeleteSubscription(key=key)]
    h.engine.on_notify_result(key, 0, None, now=h.now)  # already gone
    assert h.drain() == []
    assert new.call_id != old.call_id


def test_a_subscription_removed_by_a_failed_notify_is_logged_with_its_fields(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The removal is a subscription state change like the others: one line naming the
    AoR, with the structured fields JSON logs carry (it used to be a free-form line)."""
    key = (AOR, ScaEvent.CALL_INFO, A.contact)
    with caplog.at_level(logging.INFO, logger="sipsca.sca"):
        h.engine.on_notify_result(key, 7, None, now=h.now)
    [record] = [r for r in caplog.records if "removed" in r.getMessage()]
    assert AOR in record.getMessage() and A.contact in record.getMessage()
    fields = record.sca  # type: ignore[attr-defined]
    assert fields["kind"] == "subscription" and fields["aor"] == AOR
    assert fields["change"] == "removed: NOTIFY 7 timed out"


def test_late_notify_failure_of_an_ended_subscription_spares_its_successor(h: Harness) -> None:
    """A subscription ends and the same phone subscribes again (same key, new dialog)
    while a NOTIFY of the old one is still timing out (up to 32 s): its failure must not
    remove the new subscription."""
    key = (AOR, ScaEvent.CALL_INFO, C.contact)
    sub = h.f.new_sub(C)
    h.subscribe(sub)
    [old] = [n for n in h.notifies() if n.target == C.contact]
    h.subscribe(sub, expires=0)
    h.advance(200)
    h.engine.handle_timer(h.now)  # purged: the key is free
    h.drain()
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]
    h.subscribe(h.f.new_sub(C))
    h.drain()
    assert h.engine.rpc_subscription_count("call-info") == ["3 call-info"]
    h.engine.on_notify_result(
        key, old.cseq + 5, None, now=h.now, dialog=(old.call_id, old.request.from_tag or "")
    )
    assert h.drain() == []
    assert h.engine.rpc_subscription_count("call-info") == ["3 call-info"]


# --------------------------------------------------------------------------- restore, timers, stats


def _sub(contact: str, **kw: object) -> Subscription:
    values: dict[str, object] = {
        "subscriber": contact,
        "aor": AOR,
        "event": ScaEvent.CALL_INFO,
        "expires_at": int(NOW) + 600,
        "state": SubscriptionState.ACTIVE,
        "call_id": f"cid-{contact}",
        "from_tag": "ft",
        "to_tag": "tt",
        "notify_cseq": 7,
    }
    values.update(kw)
    return Subscription(**values)  # type: ignore[arg-type]


def test_restore() -> None:
    h = Harness()
    assert h.engine.get_timer() is None
    stored = [
        _sub(A.contact),
        _sub(B.contact, expires_at=int(NOW) - 1),
        _sub(C.contact, state=SubscriptionState.TERMINATED),
    ]
    h.engine.restore(stored, [], now=NOW)
    effects = h.drain()
    assert DeleteSubscription(key=(AOR, ScaEvent.CALL_INFO, B.contact)) in effects
    assert DeleteSubscription(key=(AOR, ScaEvent.CALL_INFO, C.contact)) in effects
    [persisted] = [e.subscription for e in effects if isinstance(e, PersistSubscription)]
    assert persisted.notify_cseq == 7 + CSEQ_RESTORE_GAP
    assert stored[0].notify_cseq == 7  # the caller's objects are not touched
    assert h.engine.is_line(AOR)
    assert h.engine.get_timer() == NOW  # purge due at once after a restart


def test_timer_schedule() -> None:
    h = Harness()
    h.subscribe(h.f.new_sub(A))
    assert h.engine.get_timer() == NOW + 120
    h.engine.handle_timer(NOW + 60)  # not due: nothing
    assert h.engine.get_timer() == NOW + 120
    h.engine.handle_timer(NOW + 130)
    assert h.engine.get_timer() == NOW + 250


def test_a_mass_expiry_is_purged_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """More expired subscriptions than PURGE_BATCH: each run ends a slice and the next run
    is due at once; every subscriber still gets its timeout NOTIFY, then the period resumes."""
    monkeypatch.setattr(purge_module, "PURGE_BATCH", 2)
    h = Harness()
    for phone in (A, B, C):
        h.subscribe(h.f.new_sub(phone))
    h.notifies()
    later = NOW + 4000  # past the 3600 s expiry
    ended = []
    for _ in range(2):
        assert h.engine.get_timer() is not None and h.engine.get_timer() <= later
        h.engine.handle_timer(later)
        ended.append([n.target for n in h.notifies() if "timeout" in n.state])
    assert [len(batch) for batch in ended] == [2, 1]
    assert sorted(ended[0] + ended[1]) == sorted({p.contact for p in (A, B, C)})
    assert h.engine.get_timer() == later + 120
    assert h.engine.stats()["subscriptions_call_info"] == 0


def test_stats(h: Harness) -> None:
    h.seize(h.f.new_sub(A, "line-seize"), 0)
    stats = h.engine.stats()
    assert stats["subscriptions_call_info"] == 2
    assert stats["subscriptions_line_seize"] == 1
    assert stats["appearances_seized"] == 1 and stats["appearances_active"] == 0
    assert stats["notifies_sent"] == 2 + 1 + 2


def test_every_state_change_is_one_log_line_and_one_effect(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipsca.sca")
    call, _ = h.outgoing(A, BOB)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("appearance ")]
    assert lines == [
        f"appearance {AOR} index 1 idle -> seized owner={A.contact} call-id={call.call_id}",
        f"appearance {AOR} index 1 seized -> progressing owner={A.contact} call-id={call.call_id}",
        f"appearance {AOR} index 1 progressing -> active owner={A.contact} call-id={call.call_id}",
    ]
    changes = [(e.old, e.new) for e in h.drain() if isinstance(e, AppearanceChanged)]
    assert changes == [(S.IDLE, S.SEIZED), (S.SEIZED, S.PROGRESSING), (S.PROGRESSING, S.ACTIVE)]


def test_ringing_after_retrieval_keeps_the_appearance_active(h: Harness) -> None:
    # Kamailio shows the retrieved call "progressing" on the remote party's 180 (trace 13).
    call, _ = h.outgoing(A, BOB)
    h.request(h.f.invite(call, body=sdp("sendonly"), call_info=idx(1)))
    retrieve = h.f.new_call(B, Party("line", AOR, BOB.contact), ruri=AOR)
    invite = h.f.invite(retrieve, call_info=idx(1))
    original = invite.copy()
    h.request(invite)
    h.drain()
    h.relay(h.f.response(original, 180, call=retrieve, contact=BOB.contact), original)
    assert h.states() == {1: "active"} and h.notifies() == []


def test_reinvite_answer_keeps_the_caller_id_of_an_answered_call(h: Harness) -> None:
    call = h.f.new_call(CAROL, Party("line", AOR, B.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    call.answerer = B.contact
    h.relay(h.f.response(original, 200, call=call, contact=B.contact, body=sdp()), original)
    h.ack(h.f.ack(call))
    reinvite = h.f.invite(call, by="callee", body=sdp("sendonly"))
    original = reinvite.copy()
    h.request(reinvite)
    h.relay(h.f.response(original, 200, contact="sip:c0ffee@203.0.113.9", body=sdp()), original)
    [appearance] = h.engine.appearances(AOR)
    assert appearance.uri == r"\"Carol\" <sip:carol@carrier.net>"
    assert appearance.state is S.HELD


def test_deactivate_all_skips_terminated_subscriptions(h: Harness) -> None:
    h.subscribe(h.f.new_sub(A), expires=0)  # out-of-dialog unsubscribe (reboot rule)
    h.drain()
    assert h.engine.rpc_deactivate_all_subscriptions(now=h.now) == [
        f"Deactivating call-info subscription from {B.contact}"
    ]


def test_expired_but_unpurged_subscriptions_get_no_broadcast() -> None:
    h = Harness()
    h.subscribe(h.f.new_sub(A), expires=30)
    h.subscribe(h.f.new_sub(B))
    h.drain()
    h.advance(60)  # A expired, the purge has not run yet
    h.engine.rpc_seize_appearance(AOR, B.contact, now=h.now)
    assert [n.target for n in h.notifies()] == [B.contact]


def test_event_name_is_case_insensitive(h: Harness) -> None:
    reply = h.subscribe(h.f.new_sub(C), event="Call-Info")
    assert reply.status == 202 and reply.headers.get("event") == "call-info"


def test_line_seize_unsubscribe_without_index_releases_the_stored_one(h: Harness) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 2)
    h.drain()
    assert h.seize(ls, 0, expires=0).status == 200
    assert h.states() == {}
    assert h.notifies()[0].call_info == idx(2)


def test_ack_matching_no_appearance_sends_nothing(h: Harness) -> None:
    # Kamailio broadcasts for a called line on every ACK.
    stray = h.f.new_call(CAROL, Party("line", AOR, B.contact))
    stray.to_tag = "unknown"
    h.ack(h.f.ack(stray))
    assert h.drain() == []


# --------------------------------------------------------------------------- logging


def test_every_state_change_is_one_structured_log_line(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Appearance and subscription changes each log one line whose fields (``record.sca``)
    the JSON log format writes out: AoR, index, old -> new, owner, Call-ID."""
    caplog.set_level("INFO", logger="sipsca.sca")
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    sub = h.f.new_sub(C)
    h.subscribe(sub)
    h.subscribe(sub, expires=0)
    h.engine.rpc_deactivate_all_subscriptions(now=h.now)
    fields = [r.sca for r in caplog.records if hasattr(r, "sca")]  # type: ignore[attr-defined]
    assert fields[0] == {
        "kind": "appearance",
        "aor": AOR,
        "index": 1,
        "old": "idle",
        "new": "seized",
        "owner": A.contact,
        "call_id": "",
        "from_tag": "",
        "to_tag": "",
    }
    changes = [(f["subscriber"], f["change"]) for f in fields if f["kind"] == "subscription"]
    assert changes == [
        (C.contact, "created"),
        (C.contact, "unsubscribed"),
        (B.contact, "terminated;reason=deactivated"),
        (A.contact, "terminated;reason=deactivated"),
    ]
