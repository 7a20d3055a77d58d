"""ResponseContext: forwarding, cancelling and best-response selection (RFC 3261 16.7-16.10)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_factory import request, response

from sipsca.errors import LocalProtocolError
from sipsca.proxy.context import COMPLETED_ELSEWHERE, ContextAction, ResponseContext
from sipsca.sip.message import SipRequest


def ctx(*keys: str, method: str = "INVITE") -> tuple[ResponseContext, SipRequest]:
    req = request(method)
    context = ResponseContext(req, invite=method == "INVITE")
    for key in keys:
        branch = req.copy()
        branch.uri = f"sip:bob@{key}.example.net"
        context.add_branch(key, branch, branch.uri)
    return context, req


def status(action: ContextAction) -> int | None:
    return None if action.forward_upstream is None else action.forward_upstream.status


# --------------------------------------------------------------------------- provisional
def test_100_is_not_forwarded_180_is() -> None:
    c, req = ctx("a")
    action = c.on_response("a", response(req, 100, to_tag=None))
    assert action == ContextAction()
    action = c.on_response("a", response(req, 180))
    assert status(action) == 180
    assert action.reset_timer_c and not action.done
    assert c.pending == ("a",)


def test_provisional_to_non_invite_is_forwarded_without_timer_c() -> None:
    c, req = ctx("a", method="SUBSCRIBE")
    action = c.on_response("a", response(req, 183))
    assert status(action) == 183 and not action.reset_timer_c


# --------------------------------------------------------------------------- 2xx
def test_first_2xx_forwarded_and_other_branches_cancelled() -> None:
    c, req = ctx("a", "b", "c")
    c.on_response("a", response(req, 180))
    c.on_response("b", response(req, 100, to_tag=None))
    ok = response(req, 200, to_tag="tb")
    action = c.on_response("b", ok)
    assert action.forward_upstream is ok
    assert action.cancel_branches == ("a",)  # c has no provisional yet: 9.1 forbids a CANCEL
    assert action.cancel_reason == COMPLETED_ELSEWHERE
    assert action.done and c.done
    assert c.pending == ("a", "c")
    # c's first provisional arrives: now it can be cancelled; the 180 is not forwarded.
    action = c.on_response("c", response(req, 180))
    assert action.forward_upstream is None
    assert action.cancel_branches == ("c",) and action.cancel_reason == COMPLETED_ELSEWHERE
    # Cancelled branches answer 487: absorbed.
    assert c.on_response("a", response(req, 487)) == ContextAction(done=True)
    assert c.on_response("c", response(req, 487)) == ContextAction(done=True)
    assert c.finished


def test_later_2xx_of_an_invite_are_forwarded_too() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 180))
    c.on_response("b", response(req, 180))
    first = c.on_response("a", response(req, 200, to_tag="ta"))
    assert first.cancel_branches == ("b",)
    second = c.on_response("b", response(req, 200, to_tag="tb"))
    assert status(second) == 200 and second.cancel_branches == ()
    # A downstream forking proxy may send several 2xx on one branch (RFC 6026).
    third = c.on_response("a", response(req, 200, to_tag="ta2"))
    assert status(third) == 200
    assert c.finished


def test_non_invite_forwards_only_the_first_final() -> None:
    c, req = ctx("a", "b", method="MESSAGE")
    first = c.on_response("a", response(req, 202))
    assert status(first) == 202 and first.done and first.cancel_branches == ()
    assert status(c.on_response("b", response(req, 200))) is None
    assert c.finished


def test_non_invite_6xx_waits_and_cancels_nothing() -> None:
    c, req = ctx("a", "b", method="OPTIONS")
    c.on_response("b", response(req, 180))
    action = c.on_response("a", response(req, 603))
    assert action == ContextAction()
    assert status(c.on_response("b", response(req, 404))) == 603


# --------------------------------------------------------------------------- best response
def test_lowest_code_of_the_lowest_class_wins_whatever_the_order() -> None:
    for order in (("a", 486), ("b", 404)), (("b", 404), ("a", 486)):
        c, req = ctx("a", "b")
        actions = [c.on_response(key, response(req, code)) for key, code in order]
        assert status(actions[0]) is None
        assert status(actions[1]) == 404


def test_lowest_class_wins() -> None:
    c, req = ctx("a", "b", "c")
    c.on_response("a", response(req, 404))
    c.on_response("b", response(req, 302, extra=[("Contact", "<sip:bob@elsewhere>")]))
    action = c.on_response("c", response(req, 500))
    assert status(action) == 302
    assert action.forward_upstream is not None
    assert action.forward_upstream.headers.get("contact") == "<sip:bob@elsewhere>"


def test_resubmission_hints_are_preferred_in_4xx() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 404))
    assert status(c.on_response("b", response(req, 484))) == 484


def test_received_response_beats_a_synthesised_one() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 486))
    action = c.on_branch_timeout("b")  # 408 < 486, but it is ours
    assert status(action) == 486


def test_401_and_407_challenges_are_aggregated() -> None:
    c, req = ctx("a", "b", "c", "d")
    c.on_response("a", response(req, 407, extra=[("Proxy-Authenticate", 'Digest realm="p1"')]))
    c.on_response("b", response(req, 404))
    c.on_response(
        "c",
        response(
            req,
            401,
            extra=[
                ("WWW-Authenticate", 'Digest realm="u1", algorithm=SHA-256'),
                ("WWW-Authenticate", 'Digest realm="u1", algorithm=MD5'),
            ],
        ),
    )
    d = response(req, 401, extra=[("WWW-Authenticate", 'Digest realm="u2"')])
    action = c.on_response("d", d)
    final = action.forward_upstream
    assert final is not None and final.status == 401
    assert final.headers.get_all("www-authenticate") == [
        'Digest realm="u1", algorithm=SHA-256',
        'Digest realm="u1", algorithm=MD5',
        'Digest realm="u2"',
    ]
    assert final.headers.get_all("proxy-authenticate") == ['Digest realm="p1"']
    # The stored branch response is not modified.
    assert d.headers.get_all("proxy-authenticate") == []


def test_lone_503_becomes_500() -> None:
    c, req = ctx("a")
    action = c.on_response("a", response(req, 503, extra=[("Retry-After", "30")]))
    final = action.forward_upstream
    assert final is not None and final.status == 500
    assert "retry-after" not in final.headers
    assert final.headers.get("via") == req.headers.get("via")


def test_other_5xx_is_preferred_to_503() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 503))
    assert status(c.on_response("b", response(req, 504))) == 504


def test_transport_error_is_our_own_503() -> None:
    # The "503 on transport failure": only a *downstream* 503 becomes 500.
    c, _ = ctx("a")
    assert status(c.on_transport_error("a")) == 503


def test_downstream_503_becomes_500() -> None:
    c, req = ctx("a")
    assert status(c.on_response("a", response(req, 503))) == 500


# --------------------------------------------------------------------------- 6xx
def test_6xx_cancels_the_others_and_is_the_final() -> None:
    c, req = ctx("a", "b", "c")
    c.on_response("a", response(req, 180))
    c.on_response("b", response(req, 180))
    action = c.on_response("a", response(req, 603))
    assert action.forward_upstream is None  # 16.7 step 5: not forwarded immediately
    assert action.cancel_branches == ("b",)
    assert action.cancel_reason == 'SIP;cause=603;text="Decline"'
    with pytest.raises(LocalProtocolError):
        c.add_branch("d", req, "sip:d@x")  # "MUST NOT create any new branches"
    assert c.on_response("b", response(req, 487)).forward_upstream is None
    final = c.on_response("c", response(req, 486))
    assert status(final) == 603 and final.done


def test_2xx_after_6xx_still_wins() -> None:
    c, req = ctx("a", "b")
    c.on_response("b", response(req, 180))
    c.on_response("a", response(req, 600))
    action = c.on_response("b", response(req, 200))
    assert status(action) == 200 and action.cancel_branches == ()
    assert c.finished


# --------------------------------------------------------------------------- timeouts
def test_all_branches_time_out_gives_408() -> None:
    c, _ = ctx("a", "b")
    assert status(c.on_branch_timeout("a")) is None
    action = c.on_branch_timeout("b")
    assert status(action) == 408 and action.cancel_branches == ()
    final = action.forward_upstream
    assert final is not None and final.to_tag  # we answer as a UAS would


def test_timer_c_on_a_ringing_branch_cancels_it_and_counts_408() -> None:
    c, req = ctx("a")
    c.on_response("a", response(req, 180))
    action = c.on_branch_timeout("a")
    assert action.cancel_branches == ("a",)
    assert action.cancel_reason is None
    assert status(action) == 408 and action.done
    # The 487 that answers our CANCEL is absorbed; a late 2xx would still go up.
    assert c.on_response("a", response(req, 487)) == ContextAction(done=True)
    assert status(c.on_response("a", response(req, 200))) == 200


def test_timeout_on_a_finished_branch_is_ignored() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 404))
    assert c.on_branch_timeout("a") == ContextAction()
    assert c.on_transport_error("a") == ContextAction()
    assert c.pending == ("b",)


# --------------------------------------------------------------------------- no branches
def test_no_branches_gives_480() -> None:
    c, _ = ctx()
    action = c.on_no_branches()
    final = action.forward_upstream
    assert final is not None and (final.status, final.reason) == (480, "Temporarily Unavailable")
    assert action.done and c.finished
    assert c.on_no_branches() == ContextAction(done=True)


def test_on_no_branches_while_pending_does_nothing() -> None:
    c, _ = ctx("a")
    assert c.on_no_branches() == ContextAction()
    assert c.pending == ("a",)


def test_every_branch_failed_before_on_no_branches() -> None:
    c, _ = ctx("a")
    assert status(c.on_transport_error("a")) == 503
    assert c.on_no_branches() == ContextAction(done=True)


# --------------------------------------------------------------------------- upstream CANCEL
def test_cancel_all_then_487() -> None:
    c, req = ctx("a", "b")
    c.on_response("a", response(req, 180))
    assert c.cancel_all(reason='SIP;cause=480;text="x"') == ("a",)
    with pytest.raises(LocalProtocolError):
        c.add_branch("z", req, "sip:z@x")
    assert c.cancel_all() == ()  # nothing cancelled twice
    deferred = c.on_response("b", response(req, 100, to_tag=None))
    assert deferred.cancel_branches == ("b",)
    assert deferred.cancel_reason == 'SIP;cause=480;text="x"'
    c.on_response("a", response(req, 487))
    assert status(c.on_response("b", response(req, 487))) == 487


def test_cancel_all_after_final_cancels_nothing() -> None:
    c, req = ctx("a")
    c.on_response("a", response(req, 180))
    c.on_response("a", response(req, 200))
    assert c.cancel_all() == ()


def test_cancel_all_of_non_invite_is_empty() -> None:
    c, req = ctx("a", method="SUBSCRIBE")
    c.on_response("a", response(req, 180))
    assert c.cancel_all() == ()


# --------------------------------------------------------------------------- misuse
def test_unknown_and_duplicate_keys() -> None:
    c, req = ctx("a")
    with pytest.raises(LocalProtocolError):
        c.on_response("zz", response(req, 180))
    with pytest.raises(LocalProtocolError):
        c.on_branch_timeout("zz")
    with pytest.raises(LocalProtocolError):
        c.on_transport_error("zz")
    with pytest.raises(LocalProtocolError):
        c.add_branch("a", req, "sip:a@x")


def test_branch_accessors() -> None:
    c, _ = ctx("a")
    sent = c.branch_request("a")
    assert sent is not None and sent.uri == "sip:bob@a.example.net"
    assert c.branch_target("a") == "sip:bob@a.example.net"
    assert c.branch_request("zz") is None and c.branch_target("zz") is None


def test_no_new_branch_after_the_final() -> None:
    c, req = ctx("a")
    c.on_response("a", response(req, 404))
    with pytest.raises(LocalProtocolError):
        c.add_branch("b", req, "sip:b@x")


# --------------------------------------------------------------------------- property
Event = int | str
FINALS = [200, 202, 302, 401, 404, 407, 408, 486, 487, 500, 503, 600, 603]


def run(
    invite: bool, scripts: Sequence[Sequence[Event]], schedule: Sequence[int], *, cancel: bool
) -> tuple[ResponseContext, list[tuple[str, Event, ContextAction]]]:
    """Feed the scripted per-branch events (plus maybe an upstream CANCEL) as scheduled."""
    keys = [f"k{i}" for i in range(len(scripts))]
    c, req = ctx(*keys, method="INVITE" if invite else "MESSAGE")
    queues = [list(script) for script in scripts] + ([["cancel"]] if cancel else [])
    log: list[tuple[str, Event, ContextAction]] = []
    step = 0
    while any(queues):
        live = [i for i, q in enumerate(queues) if q]
        pick = schedule[step] if step < len(schedule) else 0
        step += 1
        i = live[pick % len(live)]
        event = queues[i].pop(0)
        key = keys[i] if i < len(keys) else "*"
        if event == "cancel":
            action = ContextAction(cancel_branches=c.cancel_all())
        elif event == "timeout":
            action = c.on_branch_timeout(key)
        elif event == "error":
            action = c.on_transport_error(key)
        else:
            assert isinstance(event, int)
            tag = None if event == 100 else f"t{i}"
            action = c.on_response(key, response(req, event, to_tag=tag))
        log.append((key, event, action))
    return c, log


branch_script = st.tuples(
    st.lists(st.sampled_from([100, 180, 183]), max_size=3),
    st.sampled_from([*FINALS, "timeout", "error"]),
    st.sampled_from([(), (200,), (487,), (180,)]),
).map(lambda t: [*t[0], t[1], *t[2]])


def _class(code: int) -> int:
    return code // 100


@settings(max_examples=400, deadline=None)
@given(
    invite=st.booleans(),
    scripts=st.lists(branch_script, min_size=1, max_size=4),
    cancel=st.booleans(),
    schedule=st.lists(st.integers(min_value=0, max_value=7), max_size=40),
)
def test_random_branch_responses(
    invite: bool, scripts: list[list[Event]], cancel: bool, schedule: list[int]
) -> None:
    c, log = run(invite, scripts, schedule, cancel=cancel)
    upstream = [a.forward_upstream.status for _, _, a in log if a.forward_upstream is not None]

    # 100 is never forwarded; nothing provisional after a final.
    assert 100 not in upstream
    finals = [s for s in upstream if s >= 200]
    assert finals, "a final response always goes upstream"
    first = upstream.index(finals[0])
    assert all(s >= 200 for s in upstream[first:])
    non_2xx = [s for s in finals if not 200 <= s < 300]
    if invite:
        # Several 2xx may go up, but never a non-2xx final after a 2xx.
        assert len(non_2xx) <= 1
        if non_2xx:
            assert finals[0] == non_2xx[0]
    else:
        assert len(finals) == 1

    # The context ends finished; done is reported from the first final on.
    assert c.finished and c.pending == ()
    first_done = next(n for n, (_, _, a) in enumerate(log) if a.done)
    assert all(a.done for key, _, a in log[first_done:] if key != "*")

    # CANCELs: INVITE only, once per branch, only after a provisional response.
    seen_provisional: set[str] = set()
    cancelled: list[str] = []
    for key, event, action in log:
        if isinstance(event, int) and event < 200:
            seen_provisional.add(key)
        for k in action.cancel_branches:
            assert k in seen_provisional
            cancelled.append(k)
    assert len(cancelled) == len(set(cancelled))
    if not invite:
        assert cancelled == []

    # Best response (16.7 step 6) when no 2xx went up.
    if non_2xx and not any(200 <= s < 300 for s in finals):
        outcome = [
            next(e for e in s if e in ("timeout", "error") or (isinstance(e, int) and e >= 200))
            for s in scripts
        ]
        codes = [408 if e == "timeout" else 503 if e == "error" else int(e) for e in outcome]
        chosen = non_2xx[0]
        if any(code >= 600 for code in codes):
            assert _class(chosen) == 6
        else:
            assert _class(chosen) == min(_class(code) for code in codes)
        # ...and it does not depend on the interleaving.
        _, sequential = run(invite, scripts, [], cancel=cancel)
        again = [
            a.forward_upstream.status for _, _, a in sequential if a.forward_upstream is not None
        ]
        again_non_2xx = [s for s in again if s >= 300]
        if again_non_2xx:
            assert again_non_2xx[0] == chosen
