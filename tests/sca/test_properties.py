"""Stateful property test: N phones on one shared line, random call/subscription traffic.

Hypothesis interleaves seizes (specific / any index), releases, outgoing calls
(INVITE/18x/200/ACK/BYE/CANCEL/486/407/302), incoming calls answered by any phone,
holds and resumes, retrievals by another phone, NOTIFY failures, re-subscriptions and
clock jumps followed by ``handle_timer``. After every step:

* no line has two appearances with one index, every index is >= 1 (and within
  ``max_appearances`` when bounded);
* no SEIZED appearance is older than ``seized_ttl`` + ``purge_expired_interval``
  (the clock only moves in the ``tick`` rule, which always runs the timer);
* every active, unexpired call-info subscriber's *last* NOTIFY carries exactly the
  rendering of the current appearance table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sipsca.config import ScaConfig
from sipsca.sca import ScaEvent, SendNotify, SubscriptionState
from sipsca.sca.call_info import render_full_state
from sipsca.sip import SipRequest

from .factory import AOR, BOB, CAROL, PREFIX, A, B, C, Call, Party, SubDialog, sdp
from .harness import Harness

PHONES = (A, B, C)
phone_st = st.sampled_from(PHONES)
index_st = st.integers(min_value=0, max_value=4)


@dataclass
class Tracked:
    call: Call
    invite: SipRequest
    kind: str  # "out" (line calls Bob) or "in" (Carol calls the line)
    status: str = "trying"  # trying, ringing, up, done


class ScaMachine(RuleBasedStateMachine):
    config = ScaConfig()

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(self.config)
        self.last: dict[tuple[str, ScaEvent, str], str] = {}
        self.calls: list[Tracked] = []
        self.ls: dict[str, SubDialog] = {}
        self.ci: dict[str, SubDialog] = {}
        for phone in PHONES:
            self._subscribe_new(phone)

    # -- plumbing --------------------------------------------------------------------

    def _pump(self) -> None:
        for effect in self.h.drain():
            if isinstance(effect, SendNotify) and effect.key[1] is ScaEvent.CALL_INFO:
                self.last[effect.key] = effect.request.headers.get("call-info") or ""

    def _subscribe_new(self, phone: Party) -> None:
        sub = self.h.f.new_sub(phone)
        assert self.h.subscribe(sub).status == 202
        self.ci[phone.name] = sub
        self._pump()

    def _open(self, *states: str) -> list[Tracked]:
        return [t for t in self.calls if t.status in states]

    def _pick(self, n: int, *states: str) -> Tracked | None:
        calls = self._open(*states)
        return calls[n % len(calls)] if calls else None

    def _relay(self, t: Tracked, status: int, **kw: object) -> None:
        response = self.h.f.response(t.invite, status, call=t.call, **kw)  # type: ignore[arg-type]
        self.h.relay(response, t.invite)

    def _known(self) -> bool:
        return self.h.engine.is_line(AOR)

    def _appearance_of(self, t: Tracked) -> int:
        for appearance in self.h.engine.appearances(AOR):
            if appearance.call_id == t.call.call_id:
                return appearance.index
        return 0

    # -- subscriptions -----------------------------------------------------------------

    @rule(phone=phone_st, in_dialog=st.booleans())
    def subscribe(self, phone: Party, in_dialog: bool) -> None:
        sub = self.ci.get(phone.name)
        if in_dialog and sub is not None and sub.to_tag:
            self.h.subscribe(sub)
            self._pump()
        else:
            self._subscribe_new(phone)

    @rule(phone=phone_st, index=index_st)
    def seize(self, phone: Party, index: int) -> None:
        sub = self.h.f.new_sub(phone, "line-seize")
        reply = self.h.seize(sub, index)
        # 500: every subscription expired, the line is forgotten (Kamailio's rule).
        assert reply.status in (200, 480) or (reply.status == 500 and not self._known())
        if reply.status == 200:
            self.ls[phone.name] = sub
        self._pump()

    @rule(phone=phone_st, index=index_st)
    def release(self, phone: Party, index: int) -> None:
        sub = self.ls.get(phone.name)
        if sub is None:
            return
        reply = self.h.seize(sub, index, expires=0)
        assert reply.status in (200, 481, 500)  # 481: purged meanwhile
        self._pump()

    @rule(phone=phone_st, status=st.sampled_from([481, None, 500, 408]))
    def notify_fails(self, phone: Party, status: int | None) -> None:
        key = (AOR, ScaEvent.CALL_INFO, phone.contact)
        self.h.engine.on_notify_result(key, 0, status, now=self.h.now)
        self._pump()

    # -- outgoing calls ---------------------------------------------------------------

    @rule(phone=phone_st, index=index_st)
    def invite(self, phone: Party, index: int) -> None:
        call = self.h.f.new_call(phone, BOB)
        call_info = f"{PREFIX};appearance-index={index}" if index else None
        invite = self.h.f.invite(call, call_info=call_info)
        original = invite.copy()
        outcome = self.h.request(invite)
        assert outcome.reject is None
        self.calls.append(Tracked(call, original, "out"))
        self._pump()

    @rule(n=st.integers(0, 9), code=st.sampled_from([180, 183, 181, 182]))
    def progress(self, n: int, code: int) -> None:
        t = self._pick(n, "trying", "ringing")
        if t is None:
            return
        contact = BOB.contact if t.kind == "out" else A.contact
        self._relay(t, code, contact=contact)
        t.status = "ringing"
        self._pump()

    @rule(n=st.integers(0, 9))
    def answer(self, n: int) -> None:
        t = self._pick(n, "trying", "ringing")
        if t is None or t.kind != "out":
            return
        self._relay(t, 200, contact=BOB.contact, body=sdp())
        self.h.ack(self.h.f.ack(t.call))
        t.status = "up"
        self._pump()

    @rule(n=st.integers(0, 9), code=st.sampled_from([486, 404, 407, 302, 603, 408]))
    def fail(self, n: int, code: int) -> None:
        t = self._pick(n, "trying", "ringing")
        if t is None:
            return
        self._relay(t, code)
        t.status = "done"
        self._pump()

    @rule(n=st.integers(0, 9))
    def cancel(self, n: int) -> None:
        t = self._pick(n, "trying", "ringing")
        if t is None:
            return
        self.h.request(self.h.f.cancel(t.call, t.invite))
        self._relay(t, 487)
        t.status = "done"
        self._pump()

    @rule(n=st.integers(0, 9), by=st.sampled_from(["caller", "callee"]))
    def bye(self, n: int, by: str) -> None:
        t = self._pick(n, "up")
        if t is None:
            return
        bye = self.h.f.bye(t.call, by=by)
        self.h.request(bye)
        self.h.relay(self.h.f.response(bye, 200), bye)
        t.status = "done"
        self._pump()

    @rule(
        n=st.integers(0, 9),
        direction=st.sampled_from(["sendonly", "inactive", "sendrecv", "none", "zero"]),
        private=st.booleans(),
        with_call_info=st.booleans(),
    )
    def hold_or_resume(self, n: int, direction: str, private: bool, with_call_info: bool) -> None:
        t = self._pick(n, "up")
        if t is None:
            return
        line_side = "caller" if t.kind == "out" else "callee"
        index = self._appearance_of(t)
        call_info = None
        if with_call_info and index:
            state = ";appearance-state=held-private" if private else ""
            call_info = f"{PREFIX};appearance-index={index}{state}"
        body = {"none": "", "zero": sdp("sendrecv", zero=True)}.get(direction, sdp(direction))
        request = self.h.f.invite(t.call, by=line_side, body=body, call_info=call_info)
        original = request.copy()
        self.h.request(request)
        self.h.relay(self.h.f.response(original, 200, contact=BOB.contact, body=sdp()), original)
        ack_body = sdp("sendonly") if direction == "none" and private else None
        self.h.ack(self.h.f.ack(t.call, by=line_side, body=ack_body))
        self._pump()

    @rule(n=st.integers(0, 9), phone=phone_st)
    def retrieve(self, n: int, phone: Party) -> None:
        t = self._pick(n, "up")
        if t is None:
            return
        index = self._appearance_of(t) or 1
        remote = BOB if t.kind == "out" else CAROL
        call = self.h.f.new_call(phone, Party("line", AOR, remote.contact), ruri=AOR)
        invite = self.h.f.invite(call, call_info=f"{PREFIX};appearance-index={index}")
        original = invite.copy()
        outcome = self.h.request(invite)
        if outcome.reject is not None:
            assert outcome.reject.status == 403
            self._pump()
            return
        tracked = Tracked(call, original, "out")
        self.calls.append(tracked)
        if outcome.retrieval_target is not None:
            assert invite.headers.get("replaces")
            self._relay(tracked, 200, contact=remote.contact, body=sdp())
            self.h.ack(self.h.f.ack(call))
            tracked.status = "up"
            t.status = "done"  # replaced: the remote party ends the old dialog
            bye = self.h.f.bye(t.call, by="callee" if t.kind == "out" else "caller")
            self.h.request(bye)
        self._pump()

    # -- incoming calls ---------------------------------------------------------------

    @rule()
    def incoming(self) -> None:
        call = self.h.f.new_call(CAROL, Party("line", AOR, A.contact), ruri=AOR)
        invite = self.h.f.invite(call)
        original = invite.copy()
        self.h.request(invite)
        self.calls.append(Tracked(call, original, "in"))
        self._pump()

    @rule(n=st.integers(0, 9), phone=phone_st, index=index_st)
    def answer_incoming(self, n: int, phone: Party, index: int) -> None:
        t = self._pick(n, "trying", "ringing")
        if t is None or t.kind != "in":
            return
        t.call.answerer = phone.contact
        call_info = f"{PREFIX};appearance-index={index}" if index else None
        self._relay(
            t, 200, to_tag=f"t{phone.name}", contact=phone.contact, body=sdp(), call_info=call_info
        )
        self.h.ack(self.h.f.ack(t.call))
        t.status = "up"
        self._pump()

    # -- RPC and time -----------------------------------------------------------------

    @rule(phone=phone_st)
    def rpc_seize(self, phone: Party) -> None:
        try:
            self.h.engine.rpc_seize_appearance(AOR, phone.contact, now=self.h.now)
        except Exception as exc:  # only the documented fault when the line is full
            assert getattr(exc, "message", "") == "Failed to seize line"
        self._pump()

    @rule(seconds=st.sampled_from([0, 1, 15, 35, 60, 119, 120, 121, 400, 3700]))
    def tick(self, seconds: int) -> None:
        self.h.advance(seconds)
        self.h.engine.handle_timer(self.h.now)
        self._pump()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def one_owner_per_index(self) -> None:
        indexes = [line.split()[1] for line in self.h.engine.rpc_all_appearances()]
        assert len(indexes) == len(set(indexes))
        limit = self.config.max_appearances
        for appearance in self.h.engine.appearances(AOR):
            assert appearance.index >= 1
            assert not limit or appearance.index <= limit

    @invariant()
    def no_stale_seize(self) -> None:
        config = self.config
        ttl = config.seized_ttl + config.purge_expired_interval
        for appearance in self.h.engine.appearances(AOR):
            if appearance.state.value == "seized":
                assert self.h.now - appearance.changed_at < ttl, appearance

    @invariant()
    def subscribers_see_the_table(self) -> None:
        expected = render_full_state(AOR, self.h.engine.appearances(AOR))
        for subscription in self.h.engine.subscriptions():
            if subscription.event is not ScaEvent.CALL_INFO:
                continue
            if subscription.state is not SubscriptionState.ACTIVE:
                continue
            if subscription.expires_at <= self.h.now:
                continue
            assert self.last.get(subscription.key) == expected, subscription.subscriber

    @precondition(lambda self: True)
    @invariant()
    def stats_agree(self) -> None:
        stats = self.h.engine.stats()
        total = sum(v for k, v in stats.items() if k.startswith("appearances_"))
        assert total == len(self.h.engine.appearances(AOR))


class BoundedScaMachine(ScaMachine):
    """The same with ``max_appearances = 2`` (decisions.md #9)."""

    config = ScaConfig(max_appearances=2)


_settings = settings(
    max_examples=int(os.environ.get("SCA_PROPERTY_EXAMPLES", "150")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScaMachine = ScaMachine.TestCase
TestScaMachine.settings = _settings
TestBoundedScaMachine = BoundedScaMachine.TestCase
TestBoundedScaMachine.settings = _settings
