"""Drives a :class:`ScaEngine` like the runtime would, with an explicit clock.

It plays the proxy around the engine: it hands requests to ``on_request`` before
"forwarding", responses to ``on_response`` before "relaying" them upstream, and keeps
the effects so tests can look at the NOTIFYs exactly as they would go on the wire.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sipsca.config import ScaConfig
from sipsca.sca import (
    Effect,
    RequestOutcome,
    ScaEngine,
    SendNotify,
)
from sipsca.sip import SipRequest, SipResponse

from .factory import AOR, Call, MessageFactory, Party, SubDialog

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Notify:
    """A queued NOTIFY, as seen on the wire (minus the Via the runtime adds)."""

    effect: SendNotify

    @property
    def request(self) -> SipRequest:
        return self.effect.request

    @property
    def target(self) -> str:
        return self.request.uri

    @property
    def event(self) -> str:
        return self.request.headers.get("event") or ""

    @property
    def call_info(self) -> str:
        return self.request.headers.get("call-info") or ""

    @property
    def state(self) -> str:
        return self.request.headers.get("subscription-state") or ""

    @property
    def cseq(self) -> int:
        return self.request.cseq.number

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def header_names(self) -> list[str]:
        return [name for name, _ in self.request.headers]

    def __repr__(self) -> str:
        return f"<NOTIFY {self.target} {self.event} [{self.state}] {self.call_info}>"


class Harness:
    """One engine, one message factory, one clock."""

    def __init__(self, config: ScaConfig | None = None, *, user_agent: str = "") -> None:
        self._tags = itertools.count(1)
        self.engine = ScaEngine(config or ScaConfig(), tag_factory=self._tag, user_agent=user_agent)
        self.f = MessageFactory()
        self.now = NOW
        self.effects: list[Effect] = []

    def _tag(self) -> str:
        return f"T{next(self._tags)}"

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # -- effects -----------------------------------------------------------------------

    def drain(self) -> list[Effect]:
        out: list[Effect] = []
        while (effect := self.engine.next_effect()) is not None:
            out.append(effect)
        self.effects += out
        return out

    def notifies(self) -> list[Notify]:
        """NOTIFYs queued since the last drain, in order."""
        return [Notify(e) for e in self.drain() if isinstance(e, SendNotify)]

    # -- SUBSCRIBE ---------------------------------------------------------------------

    def send_subscribe(self, request: SipRequest, sub: SubDialog | None = None) -> SipResponse:
        reply = self.engine.handle_subscribe(request, now=self.now)
        if sub is not None:
            sub.accept(reply)
        return reply

    def subscribe(self, sub: SubDialog, **kw: object) -> SipResponse:
        return self.send_subscribe(self.f.subscribe(sub, **kw), sub)  # type: ignore[arg-type]

    def seize(self, sub: SubDialog, index: int | str = 0, **kw: object) -> SipResponse:
        return self.send_subscribe(self.f.line_seize(sub, index, **kw), sub)

    def call_info_line(self, *phones: Party) -> dict[str, SubDialog]:
        """Every phone subscribes to call-info for 3600 s; effects are discarded."""
        subs: dict[str, SubDialog] = {}
        for phone in phones:
            sub = self.f.new_sub(phone)
            reply = self.subscribe(sub)
            assert reply.status == 202, reply
            subs[phone.name] = sub
        self.drain()
        return subs

    # -- calls: the harness plays the proxy -------------------------------------------

    def request(self, request: SipRequest) -> RequestOutcome:
        return self.engine.on_request(request, now=self.now)

    def relay(self, response: SipResponse, request: SipRequest) -> SipResponse:
        self.engine.on_response(response, request, now=self.now)
        return response

    def ack(self, ack: SipRequest) -> None:
        self.engine.on_ack(ack, now=self.now)

    def outgoing(
        self,
        phone: Party,
        remote: Party,
        *,
        call_info: str | None = None,
        answer: bool = True,
        ringing: bool = True,
    ) -> tuple[Call, SipRequest]:
        """``phone`` calls ``remote``: INVITE, 180 (optional), 200 + ACK (optional)."""
        call = self.f.new_call(phone, remote)
        invite = self.f.invite(call, call_info=call_info)
        original = invite.copy()
        self.request(invite)
        if ringing:
            self.relay(self.f.response(original, 180, call=call, contact=remote.contact), original)
        if answer:
            self.relay(
                self.f.response(original, 200, call=call, contact=remote.contact, body=_answer()),
                original,
            )
            self.ack(self.f.ack(call))
        return call, original

    def table(self) -> list[str]:
        return self.engine.rpc_all_appearances()

    def states(self, aor: str = AOR) -> dict[int, str]:
        return {a.index: a.state.value for a in self.engine.appearances(aor)}


def _answer() -> str:
    from .factory import sdp

    return sdp()
