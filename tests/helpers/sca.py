"""SCA test vocabulary: the shared line, its member phones and Call-Info expectations.

The common setup of sca-behaviour.md section 9 on loopback: AoR ``sip:1000@127.0.0.1``,
phones A and B (both user 1000) with active call-info subscriptions, and ``bob``, a plain
UAS that answers calls. Call-Info URIs are ``<sip:127.0.0.1>`` (the AoR's domain).
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait is this harness's API)
from __future__ import annotations

import asyncio
import re
from typing import Any

from helpers.phone import Call, Dialog, Ladder, Phone, call_info_of, parse_call_info
from sipsca.sip import SipRequest

__all__ = ["Line", "ci", "full", "sub_state"]

DOMAIN = "127.0.0.1"
DOM = f"<sip:{DOMAIN}>"
WILDCARD = f"{DOM};appearance-index=*;appearance-state=idle"


def ci(index: int | str, state: str | None = None, uri: str | None = None) -> str:
    """One rendered appearance:
    ``<sip:DOMAIN>;appearance-index=I[;appearance-state=S][;appearance-uri="U"]``."""
    out = f"{DOM};appearance-index={index}"
    if state:
        out += f";appearance-state={state}"
    if uri is not None:
        out += f';appearance-uri="{uri}"'
    return out


def full(*appearances: str) -> str:
    """A call-info NOTIFY's Call-Info: the given appearances then the idle wildcard."""
    return ",".join([*appearances, WILDCARD])


def sub_state(n: SipRequest) -> tuple[str, int | None]:
    """(Subscription-State without parameters except reason, expires or None)."""
    raw = (n.headers.get("subscription-state") or "").replace(" ", "")
    m = re.search(r";expires=(\d+)", raw)
    base = re.sub(r";expires=\d+", "", raw)
    return base, int(m.group(1)) if m else None


class Line:
    """A shared line with member phones on one server."""

    def __init__(self, server: Any, ladder: Ladder, user: str = "1000") -> None:
        self.server = server
        self.ladder = ladder
        self.user = user
        self.aor = f"sip:{user}@{DOMAIN}"
        self.phones: list[Phone] = []
        self.subs: dict[str, Dialog] = {}

    def __getitem__(self, name: str) -> Phone:
        return next(p for p in self.phones if p.name == name)

    @property
    def seize_ci(self) -> str:
        return f"<{self.aor}>;appearance-index=%s"

    async def phone(self, name: str, user: str | None = None, **kw: Any) -> Phone:
        p = Phone(
            name,
            user or self.user,
            server=self.server.sip_addr,
            ladder=self.ladder,
            domain=DOMAIN,
            **kw,
        )
        self.phones.append(p)
        return await p.start()

    async def member(
        self,
        name: str,
        *,
        register: bool = True,
        subscribe: bool = True,
        expires: int = 3600,
        **kw: Any,
    ) -> Phone:
        """A phone of the line (user 1000), registered and with a call-info subscription whose
        first NOTIFY has been consumed."""
        p = await self.phone(name, **kw)
        if register:
            r = await p.register()
            assert r.status == 200, r
        if subscribe:
            await self.subscribe(p, expires)
        return p

    async def subscribe(self, p: Phone, expires: int = 3600) -> Dialog:
        d, r = await p.subscribe("call-info", expires, aor=self.aor)
        assert r.status == 202, r
        await p.expect_notify("call-info", call_id=d.call_id)
        self.subs[p.name] = d
        return d

    async def callee(
        self, name: str = "bob", user: str = "bob", uas: str | int | None = "answer", **kw: Any
    ) -> Phone:
        p = await self.phone(name, user, uas=uas, **kw)
        r = await p.register()
        assert r.status == 200, r
        return p

    async def seize(self, p: Phone, index: int = 1, expires: int = 15) -> tuple[Dialog, int]:
        """line-seize ``index`` (0 = any); returns (dialog, granted index) after consuming the
        line-seize NOTIFY and the seized broadcast on every member."""
        d, r = await p.subscribe(
            "line-seize", expires, aor=self.aor, call_info=self.seize_ci % index
        )
        assert r.status == 200, r
        n = await p.expect_notify("line-seize", call_id=d.call_id)
        granted = int(parse_call_info(call_info_of(n))[0]["appearance-index"])
        await self.broadcast(lambda v: ci(granted, "seized") in v)
        return d, granted

    def members(self) -> list[Phone]:
        return [p for p in self.phones if p.name in self.subs]

    async def next_ci(self, p: Phone, timeout: float = 5.0) -> str:
        """Call-Info of the next call-info NOTIFY in ``p``'s subscription dialog."""
        d = self.subs[p.name]
        n = await p.expect_notify("call-info", call_id=d.call_id, timeout=timeout)
        return call_info_of(n) or ""

    async def broadcast(
        self,
        match: Any = None,
        *,
        strict: bool = True,
        timeout: float = 5.0,
        phones: list[Phone] | None = None,
    ) -> str:
        """The next call-info NOTIFY of every member (``phones``), which must all agree.

        ``match``: a string (equal), a callable (predicate) or None (anything). ``strict``:
        the very next NOTIFY of the dialog must match; otherwise NOTIFYs are skipped until
        one matches.
        """
        values = []
        for p in phones or self.members():
            d = self.subs[p.name]

            def ok(v: str) -> bool:
                if match is None:
                    return True
                return v == match if isinstance(match, str) else bool(match(v))

            if strict:
                n = await p.expect_notify("call-info", call_id=d.call_id, timeout=timeout)
                v = call_info_of(n) or ""
                assert ok(v), f"{p.name}: unexpected call-info NOTIFY {v!r} (wanted {match!r})"
            else:
                n = await p.expect_notify(
                    "call-info",
                    call_id=d.call_id,
                    timeout=timeout,
                    predicate=lambda n: ok(call_info_of(n) or ""),
                )
                p.consume_through(n)
            values.append(call_info_of(n) or "")
        assert len(set(values)) <= 1, values
        return values[0] if values else ""

    async def no_notify(
        self, phones: list[Phone] | None = None, within: float = 0.6, event: str | None = None
    ) -> None:
        """Assert no unconsumed NOTIFY arrives on ``phones`` within ``within`` seconds."""
        await asyncio.sleep(within)
        for p in phones or self.members():
            pending = p.pending_notifies(event)
            assert not pending, f"{p.name} got unexpected NOTIFYs: " + "; ".join(
                f"{n.headers.get('event')} {n.headers.get('subscription-state')} {call_info_of(n)}"
                for n in pending
            )

    def drain(self) -> None:
        for p in self.phones:
            p.consume_all()

    async def settle(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        for p in self.phones:
            await p.close()


BOB_URI = '\\"Bob\\" <sip:bob@127.0.0.1>'
"""The appearance-uri of a call answered by the ``bob`` callee (To ``"Bob"``)."""


async def appearances(line: Line) -> list[tuple[int, str]]:
    """``sca.all_appearances`` reduced to sorted (index, state)."""
    rows = await line.server.arpc("sca.all_appearances")
    return sorted((int(r.split()[1]), r.split()[2]) for r in rows)


async def established(
    make_line: Any, config: dict[str, Any] | None = None, *, a_transport: str = "udp"
) -> tuple[Line, Phone, Phone, Phone, Call]:
    """Scenario 28's state: members A (index 1, over ``a_transport``) and B, A talking to
    the ``bob`` callee; every NOTIFY so far consumed. Returns (line, a, b, bob, call)."""
    line: Line = await make_line(config)
    a = await line.member("A", transport=a_transport)
    b = await line.member("B")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1, to_display='"Bob"')
    assert call.final is not None and call.final.status == 200
    await line.broadcast(full(ci(1, "active", BOB_URI)), strict=False)
    await line.settle()
    line.drain()
    return line, a, b, bob, call
