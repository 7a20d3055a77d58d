"""Where call-info NOTIFYs go, end to end: the stored route set after a phone reboot, the
SUBSCRIBE's own TCP connection, and what an unanswered NOTIFY does to its subscription.

Two subscribers here are bare sockets (:class:`RawSubscriber`) rather than emulated phones:
one has no listener at its Contact address, the other never answers a NOTIFY, and the
phone emulator always listens on its Contact and always answers.
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait, as in the helpers)
from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from helpers.phone import Ladder, call_info_of
from helpers.sca import WILDCARD, Line, ci, full
from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)

AOR = "sip:1000@127.0.0.1"


def _token() -> str:
    return secrets.token_hex(6)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sink(data)


class RawSubscriber:
    """A bare call-info subscriber on one socket toward the server (UDP, or one outbound TCP
    connection with no listener anywhere): it sends SUBSCRIBEs with any ``contact``, records
    what it receives and answers NOTIFYs with 200 only when ``answer_notifies``."""

    def __init__(
        self,
        name: str,
        server: tuple[str, int],
        ladder: Ladder,
        transport: str,
        *,
        answer_notifies: bool = True,
    ) -> None:
        assert server[0].startswith("127.")
        self.name = name
        self.server = server
        self.ladder = ladder
        self.transport = transport
        self.answer_notifies = answer_notifies
        self.port = 0
        self.responses: list[SipResponse] = []
        self.notifies: list[SipRequest] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.connection_closed = False
        self._changed = asyncio.Event()

    async def start(self) -> RawSubscriber:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._on_data), local_addr=("127.0.0.1", 0)
            )
            self.port = self._udp.get_extra_info("sockname")[1]
        else:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(*self.server, local_addr=("127.0.0.1", 0)), 5
            )
            self.port = self._writer.get_extra_info("sockname")[1]
            self._reader_task = asyncio.ensure_future(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        while chunk := await reader.read(65536):
            for raw in framer.feed(chunk):
                self._on_data(raw)
        self.connection_closed = True
        self.ladder.note(f"{self.name}: the server closed the TCP connection")

    def _send(self, msg: SipMessage) -> None:
        self.ladder.add(self.name, "->", msg)
        data = msg.to_bytes()
        if self._udp is not None:
            self._udp.sendto(data, self.server)
        else:
            assert self._writer is not None
            self._writer.write(data)

    def _on_data(self, data: bytes) -> None:
        if not data.strip():
            return
        try:
            msg = parse_message(data, stream=self.transport == "tcp")
        except RemoteProtocolError:
            self.ladder.add(self.name, "<-", data)
            raise
        self.ladder.add(self.name, "<-", msg)
        if isinstance(msg, SipResponse):
            self.responses.append(msg)
        elif isinstance(msg, SipRequest) and msg.method == "NOTIFY":
            self.notifies.append(msg)
            if self.answer_notifies:
                self._send(make_response(msg, 200, "OK"))
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.name}: no {what} within {timeout}s\n{self.ladder.dump()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
        return value

    async def subscribe(self, contact: str, expires: int = 3600) -> tuple[SipRequest, SipResponse]:
        """An initial call-info SUBSCRIBE to the line; returns (request, final response).
        Over UDP it is resent every 0.5 s until answered."""
        branch = f"z9hG4bK{_token()}"
        tp = self.transport.upper()
        req = SipRequest(
            "SUBSCRIBE",
            AOR,
            Headers.from_pairs(
                [
                    ("Via", f"SIP/2.0/{tp} 127.0.0.1:{self.port};branch={branch};rport"),
                    ("Max-Forwards", "70"),
                    ("From", f"<{AOR}>;tag={_token()}"),
                    ("To", f"<{AOR}>"),
                    ("Call-ID", f"raw-{self.name}-{_token()}"),
                    ("CSeq", "1 SUBSCRIBE"),
                    ("Contact", f"<{contact}>"),
                    ("Event", "call-info"),
                    ("Expires", str(expires)),
                ]
            ),
        )

        def final() -> SipResponse | None:
            return next(
                (
                    r
                    for r in self.responses
                    if r.status >= 200
                    and r.top_via.branch == branch
                    and r.cseq.method == "SUBSCRIBE"
                ),
                None,
            )

        for _ in range(10):
            self._send(req)
            with contextlib.suppress(TimeoutError):
                return req, await self.wait_for(final, 0.5, "final response to SUBSCRIBE")
            if self.transport == "tcp":
                break
        return req, await self.wait_for(final, 5, "final response to SUBSCRIBE")

    def notifies_of(self, call_id: str) -> list[SipRequest]:
        return [n for n in self.notifies if n.call_id == call_id]

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


def listed(subs: list[str], port: int) -> bool:
    """Whether ``sca.all_subscriptions`` lists a call-info subscription from 127.0.0.1:port."""
    return any(f"127.0.0.1:{port} call-info" in s for s in subs)


# --------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_reboot_resubscribe_replaces_record_route(make_line: Any, transport: str) -> None:
    """A phone that reboots behind a new edge-proxy path re-SUBSCRIBEs out of dialog with a new
    Record-Route: later NOTIFYs must follow the new route (§2.4 update rules, Kamailio
    PR #3571), not the stale one the phone can no longer be reached through."""
    line: Line = await make_line()
    a = await line.phone("A", transport=transport)
    assert (await a.register()).status == 200
    b = await line.member("B")
    tp = ";transport=tcp" if transport == "tcp" else ""
    r1 = f"<sip:127.0.0.1:{a.port};lr{tp}>"
    r2 = f"<sip:127.0.0.1:{a.port};lr{tp};x=2>"

    d1, r = await a.subscribe("call-info", 3600, aor=AOR, headers=[("Record-Route", r1)])
    assert r.status == 202, r
    n = await a.expect_notify("call-info", call_id=d1.call_id)
    assert n.headers.values("route") == [r1]

    # Reboot: new Call-ID and tags, same Contact, a different Record-Route.
    d2, r = await a.subscribe("call-info", 3600, aor=AOR, headers=[("Record-Route", r2)])
    assert r.status == 202, r
    assert d2.call_id != d1.call_id
    line.subs["A"] = d2
    n = await a.expect_notify("call-info", call_id=d2.call_id)
    assert n.uri == a.contact_uri
    assert n.headers.values("route") == [r2], n.headers.values("route")
    assert call_info_of(n) == WILDCARD

    # A state change after the reboot: B seizes index 1, the broadcast reaches A by R2.
    await line.seize(b, 1)
    n = [x for x in a.notifies if x.call_id == d2.call_id][-1]
    assert call_info_of(n) == full(ci(1, "seized"))
    assert n.headers.values("route") == [r2], n.headers.values("route")
    assert len([x for x in a.notifies if x.call_id == d1.call_id]) == 1  # old dialog left alone
    await line.no_notify()


async def test_notify_reuses_subscribe_tcp_connection(make_line: Any, ladder: Ladder) -> None:
    """A phone behind NAT can only be reached over the TCP connection it subscribed on
    (RFC 3261 18.2.2, RFC 5626): with nothing listening at its Contact, the first NOTIFY
    and a later broadcast must both arrive over that same connection."""
    line: Line = await make_line()
    a = await line.member("A")
    # A bound but never listening socket: a connection to the Contact is refused for
    # the whole test, so a NOTIFY sent anywhere but the open connection is lost.
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))
    contact = f"sip:1000@127.0.0.1:{dead.getsockname()[1]};transport=tcp"
    c = await RawSubscriber("C(raw)", line.server.sip_addr, ladder, "tcp").start()
    try:
        req, r = await c.subscribe(contact)
        assert r.status == 202, r
        first = await c.wait_for(
            lambda: c.notifies_of(req.call_id), 5, "NOTIFY over the SUBSCRIBE's connection"
        )
        assert first[0].uri == contact
        assert call_info_of(first[0]) == WILDCARD

        await line.seize(a, 1)  # a state change: broadcast to A and to C
        later = await c.wait_for(
            lambda: [n for n in c.notifies_of(req.call_id) if n is not first[0]],
            5,
            "broadcast NOTIFY over the SUBSCRIBE's connection",
        )
        assert call_info_of(later[0]) == full(ci(1, "seized"))
        assert later[0].cseq.number > first[0].cseq.number
        assert not c.connection_closed
        subs = await line.server.arpc("sca.all_subscriptions")
        assert any(f"127.0.0.1:{dead.getsockname()[1]} call-info" in s for s in subs), subs
    finally:
        await c.close()
        dead.close()


async def test_notify_timeout_removes_subscription(make_line: Any, ladder: Ladder) -> None:
    """A subscriber that never answers NOTIFYs is gone (RFC 6665 4.2.2): when the NOTIFY
    transaction times out (timer F = 64*T1 = 3.2 s with T1 = 50 ms) the subscription is
    removed, and the line's other subscribers keep getting their NOTIFYs."""
    line: Line = await make_line({"transaction": {"t1": 0.05}})
    a = await line.member("A")
    b = await line.member("B")
    c = await RawSubscriber(
        "C(silent)", line.server.sip_addr, ladder, "udp", answer_notifies=False
    ).start()
    try:
        req, r = await c.subscribe(f"sip:1000@127.0.0.1:{c.port}")
        t0 = time.monotonic()
        assert r.status == 202, r
        assert listed(await line.server.arpc("sca.all_subscriptions"), c.port)
        assert await line.server.arpc("sca.subscription_count", "call-info") == ["3 call-info"]
        # Unanswered over UDP, the first NOTIFY is retransmitted (timer E)...
        await c.wait_for(lambda: len(c.notifies_of(req.call_id)) >= 2, 3, "NOTIFY retransmission")
        assert {n.cseq.number for n in c.notifies_of(req.call_id)} == {1}

        # ...until timer F: then the subscription is removed.
        subs: list[str] = []
        while time.monotonic() - t0 < 12:
            subs = await line.server.arpc("sca.all_subscriptions")
            if not listed(subs, c.port):
                break
            await asyncio.sleep(0.2)
        gone_after = time.monotonic() - t0
        assert not listed(subs, c.port), subs
        assert gone_after >= 3.0, f"removed after {gone_after:.2f}s, before timer F (3.2 s)"
        assert listed(subs, a.port) and listed(subs, b.port), subs
        assert await line.server.arpc("sca.subscription_count", "call-info") == ["2 call-info"]

        await asyncio.sleep(0.3)  # a last retransmission in flight, if any
        seen = len(c.notifies)
        await line.seize(a, 1)  # A and B get the seized broadcast (asserted inside)
        await line.no_notify()
        assert len(c.notifies) == seen, "the removed subscription was notified again"
    finally:
        await c.close()
