"""A failed hold or resume re-INVITE leaves the appearance as it was (decisions.md 41).

RFC 3261 14.1: when a re-INVITE fails the session is unchanged. The state a re-INVITE
from the line announces on its request (held, or active for a resume) is put back when
its final response is a failure - also 401/407, whose retry with credentials passes
through again - and the group is told only when that changes what it saw. Kamailio
releases the whole appearance instead (compat row 26); sipsca used to keep the
re-INVITE's state, so a hold that failed was shown held and could be "retrieved".
"""

from __future__ import annotations

import pytest

from sipsca.sca import Appearance, AppearanceState
from sipsca.sip import SipRequest

from .factory import AOR, BOB, CAROL, PREFIX, WILDCARD, A, B, Call, Party, sdp
from .harness import Harness, Notify

S = AppearanceState
BOB_URI = r"\"Bob\" <sip:bob@example.com>"
PRIVATE = f"{PREFIX};appearance-index=1;appearance-state=held-private"


def idx(index: int) -> str:
    return f"{PREFIX};appearance-index={index}"


def shown(state: str, uri: str = BOB_URI) -> str:
    """The call-info value of a line whose appearance 1 is ``state``."""
    return f'{idx(1)};appearance-state={state};appearance-uri="{uri}",{WILDCARD}'


def values(notifies: list[Notify]) -> list[str]:
    """The Call-Info of each call-info NOTIFY (B and A get the same broadcast)."""
    return [n.call_info for n in notifies if n.event == "call-info"]


def fields(appearance: Appearance) -> tuple[object, ...]:
    """Everything a failed re-INVITE must leave as it was."""
    a = appearance
    return (a.state, a.owner, a.private_owner, a.call_id, a.from_tag, a.to_tag, a.uri, a.callee)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.call_info_line(A, B)
    return harness


def reinvite(
    h: Harness, call: Call, direction: str | None, *, by: str = "caller", call_info: str = ""
) -> SipRequest:
    """A re-INVITE through the engine (``direction`` None: no SDP); returns the copy its
    responses answer."""
    request = h.f.invite(
        call, by=by, body=sdp(direction) if direction else "", call_info=call_info or None
    )
    original = request.copy()
    h.request(request)
    return original


def fail(h: Harness, original: SipRequest, status: int) -> None:
    h.relay(h.f.response(original, status), original)


def succeed(h: Harness, call: Call, original: SipRequest, *, by: str = "caller") -> None:
    h.relay(h.f.response(original, 200, contact=BOB.contact, body=sdp()), original)
    h.ack(h.f.ack(call, by=by))


def held_call(h: Harness, *, call_info: str = "") -> Call:
    """A's active call to Bob on appearance 1, put on hold by a re-INVITE that succeeded."""
    call, _ = h.outgoing(A, BOB)
    succeed(h, call, reinvite(h, call, "sendonly", call_info=call_info or idx(1)))
    h.drain()
    return call


@pytest.mark.parametrize("status", [302, 401, 407, 408, 487, 488, 491, 500, 603])
def test_failed_hold_leaves_the_call_active(h: Harness, status: int) -> None:
    call, _ = h.outgoing(A, BOB)
    h.drain()
    [before] = h.engine.appearances(AOR)
    original = reinvite(h, call, "sendonly", call_info=idx(1))
    assert values(h.notifies()) == [shown("held")] * 2  # announced on the request (§5.3)
    fail(h, original, status)
    assert values(h.notifies()) == [shown("active")] * 2
    [after] = h.engine.appearances(AOR)
    assert fields(after) == fields(before)


def test_failed_resume_keeps_the_call_held(h: Harness) -> None:
    call = held_call(h)
    [before] = h.engine.appearances(AOR)
    original = reinvite(h, call, "sendrecv", call_info=idx(1))
    assert values(h.notifies()) == [shown("active")] * 2
    fail(h, original, 491)
    assert values(h.notifies()) == [shown("held")] * 2
    [after] = h.engine.appearances(AOR)
    assert fields(after) == fields(before)


def test_failed_resume_of_a_private_hold_keeps_it_private(h: Harness) -> None:
    call = held_call(h, call_info=PRIVATE)
    assert h.states() == {1: "held-private"}
    fail(h, reinvite(h, call, "sendrecv", call_info=idx(1)), 488)
    [after] = h.engine.appearances(AOR)
    assert (after.state, after.private_owner) == (S.HELD_PRIVATE, A.contact)
    retrieve = h.f.new_call(B, Party("line", AOR, BOB.contact), ruri=AOR)
    outcome = h.request(h.f.invite(retrieve, call_info=idx(1)))
    assert outcome.reject is not None and outcome.reject.status == 403  # decision #4 holds


def test_failed_hold_is_no_held_call_to_retrieve(h: Harness) -> None:
    """The harm of the old behaviour: B's INVITE for index 1 took over A's active call."""
    call, _ = h.outgoing(A, BOB)
    fail(h, reinvite(h, call, "sendonly", call_info=idx(1)), 488)
    retrieve = h.f.new_call(B, Party("line", AOR, BOB.contact), ruri=AOR)
    invite = h.f.invite(retrieve, call_info=idx(1))
    outcome = h.request(invite)
    assert outcome.retrieval_target is None
    assert invite.headers.get("replaces") is None


def test_challenged_hold_is_undone_and_its_retry_holds_again(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    fail(h, reinvite(h, call, "sendonly", call_info=idx(1)), 407)
    assert h.states() == {1: "active"}
    retry = reinvite(h, call, "sendonly", call_info=idx(1))  # with credentials, next CSeq
    assert h.states() == {1: "held"}
    fail(h, retry, 488)  # the retry's own failure goes back to before the first try
    assert h.states() == {1: "active"}
    succeed(h, call, reinvite(h, call, "sendonly", call_info=idx(1)))
    assert h.states() == {1: "held"}


def test_failed_moh_reinvite_keeps_the_hold(h: Harness) -> None:
    """Polycom's music-on-hold re-INVITE has no SDP (the hold comes in its ACK): the
    request shows ``active``; when it fails the call is still held."""
    call = held_call(h)
    fail(h, reinvite(h, call, None, call_info=idx(1)), 491)
    assert h.states() == {1: "held"}


def test_hold_in_the_ack_still_holds(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    original = reinvite(h, call, None, call_info=idx(1))
    h.relay(h.f.response(original, 200, contact=BOB.contact, body=sdp()), original)
    h.ack(h.f.ack(call, body=sdp("sendonly")))
    assert h.states() == {1: "held"}


def test_failure_that_changes_nothing_sends_nothing(h: Harness) -> None:
    call, _ = h.outgoing(A, BOB)
    h.drain()
    original = reinvite(h, call, "sendrecv", call_info=idx(1))  # a session refresh
    assert values(h.notifies()) == [shown("active")] * 2  # Kamailio's INVITE broadcast
    fail(h, original, 488)
    assert h.notifies() == []
    assert h.states() == {1: "active"}


def test_failed_hold_of_an_answered_call(h: Harness) -> None:
    """The member that answered Carol's call holds it (its re-INVITE has the tags the
    other way round); the failure puts back the dialog as stored, and a later hold still
    finds the call."""
    call = h.f.new_call(CAROL, Party("line", AOR, A.contact))
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    call.answerer = A.contact
    h.relay(h.f.response(original, 200, call=call, contact=A.contact, body=sdp()), original)
    h.ack(h.f.ack(call))
    [before] = h.engine.appearances(AOR)
    fail(h, reinvite(h, call, "inactive", by="callee"), 491)
    [after] = h.engine.appearances(AOR)
    assert fields(after) == fields(before)
    succeed(h, call, reinvite(h, call, "inactive", by="callee"), by="callee")
    assert h.states() == {1: "held"}


def test_failed_reinvite_from_the_far_end_changes_nothing(h: Harness) -> None:
    """Bob holding A is not A's hold: his re-INVITE changes no appearance, nor does its
    failure."""
    call, _ = h.outgoing(A, BOB)
    h.drain()
    original = reinvite(h, call, "sendonly", by="callee")
    assert h.states() == {1: "active"}
    fail(h, original, 491)
    assert h.states() == {1: "active"}
    assert h.notifies() == []
