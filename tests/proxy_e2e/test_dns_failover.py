"""DNS failover (RFC 3263 4.3, RFC 3261 16.7 / 8.1.2): a branch whose next hop resolves to
several targets (SRV records in priority/weight order, then every address of a target)
tries the next one when the current one fails with a transport error, times out before
any response or answers 503. The caller sees a final response only when every target
failed (or the call was cancelled, or timer C fired).

Everything runs in process against a fake name server; every target is on 127.0.0.0/8.
On loopback a UDP datagram to a port nothing listens on is dropped without any error the
server can see (Linux reports ICMP port unreachable only on *connected* UDP sockets), so a
dead UDP target is found by timer B/F; a dead TCP target refuses the connection at once.
"""

# ruff: noqa: ASYNC109  (bounded ``timeout=`` arguments, as in ``support``)
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import dns.resolver
import dns.rrset
import pytest
from support import RawUdp, build_request, rand

from sipsca.config import ServerConfig, SipscaConfig, TransactionConfig
from sipsca.runtime.app import SipApplication
from sipsca.runtime.resolver import Resolver
from sipsca.sip import SipMessage, SipRequest, SipResponse, StreamFramer, make_response
from sipsca.sip.address import Flow
from sipsca.sip.parser import parse_message
from sipsca.storage.memory import MemoryStorage

WAIT = 5.0


@pytest.fixture(autouse=True)
def _no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach a real name server: dnspython's own resolver is refused."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a real DNS resolver was created")

    monkeypatch.setattr(dns.resolver, "Resolver", refuse)


class ZoneDns:
    """A name server answering at once from ``{(absolute name, rdtype): [record, ...]}``.

    A name absent from every key does not exist (NXDOMAIN); a present name without the
    type has no answer (NoAnswer). Every query is recorded.
    """

    def __init__(self, zone: dict[tuple[str, str], list[str]]) -> None:
        self.zone = zone
        self.queries: list[tuple[str, str]] = []

    def resolve(
        self, qname: str, rdtype: str, *, lifetime: float | None = None, search: bool | None = None
    ) -> Any:
        self.queries.append((qname, rdtype))
        records = self.zone.get((qname, rdtype))
        if records is None:
            if any(name == qname for name, _ in self.zone):
                raise dns.resolver.NoAnswer()
            raise dns.resolver.NXDOMAIN()
        return SimpleNamespace(rrset=dns.rrset.from_text(qname, 60, "IN", rdtype, *records))


def _no_hosts(host: str, *args: Any, **kwargs: Any) -> list[Any]:
    raise OSError(f"{host}: not in the hosts file")


def _srv_zone(domain: str, transport: str, ports: list[int]) -> dict[tuple[str, str], list[str]]:
    """``domain`` exists (a TXT record, no NAPTR); its SRV lists one target per port, in
    priority order, every target at 127.0.0.1."""
    prefix = {"udp": "_sip._udp", "tcp": "_sip._tcp"}[transport]
    zone: dict[tuple[str, str], list[str]] = {(f"{domain}.", "TXT"): ['"failover test"']}
    records = []
    for number, port in enumerate(ports, 1):
        target = f"t{number}.{domain}."
        records.append(f"{number * 10} 0 {port} {target}")
        zone[(target, "A")] = ["127.0.0.1"]
    zone[(f"{prefix}.{domain}.", "SRV")] = records
    return zone


@contextlib.asynccontextmanager
async def _app(
    zone: dict[tuple[str, str], list[str]], *, t1: float = 0.02, timer_c: float = 185.0
) -> AsyncIterator[SipApplication]:
    """A SipApplication on UDP and TCP 127.0.0.1 whose resolver asks a :class:`ZoneDns`.

    ``t1`` 20 ms makes timer B/F (64*T1) 1.28 s.
    """
    storage = MemoryStorage()
    await storage.open()
    config = SipscaConfig(
        server=ServerConfig(domains=("127.0.0.1",)),
        transaction=TransactionConfig(t1=t1, t2=4.0, t4=5.0, timer_c=timer_c),
    )
    application = SipApplication(config, storage)
    application.resolver = Resolver(dns_client=ZoneDns(zone), getaddrinfo=_no_hosts)
    await application.start(("udp:127.0.0.1:0", "tcp:127.0.0.1:0"))
    try:
        yield application
    finally:
        await application.stop()
        await storage.close()


@contextlib.asynccontextmanager
async def _lab(
    domain: str, targets: int, **app_options: float
) -> AsyncIterator[tuple[SipApplication, RawUdp, tuple[RawUdp, ...]]]:
    """``targets`` UDP peers on 127.0.0.1 as the SRV targets of ``domain``, in priority
    order, a server resolving it (:func:`_app`) and a UDP caller: (app, caller, targets)."""
    async with contextlib.AsyncExitStack() as stack:
        peers = tuple(
            [await stack.enter_async_context(RawUdp(("127.0.0.1", 9))) for _ in range(targets)]
        )
        zone = _srv_zone(domain, "udp", [peer.port for peer in peers])
        app = await stack.enter_async_context(_app(zone, **app_options))
        caller = await stack.enter_async_context(RawUdp(_server(app)))
        yield app, caller, peers


def _server(app: SipApplication) -> tuple[str, int]:
    listener = app.transports.listener_for("udp")
    assert listener is not None
    return ("127.0.0.1", listener.port)


def _dead_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _from() -> str:
    return f"<sip:alice@127.0.0.1>;tag={rand(8)}"


def _request(method: str, udp: RawUdp, ruri: str) -> SipRequest:
    """An INVITE (with Contact and SDP) or a MESSAGE (a text body) from ``udp`` to ``ruri``."""
    invite = method == "INVITE"
    return build_request(
        method,
        ruri,
        via=udp.via,
        from_=_from(),
        to=f"<{ruri}>",
        headers=[("Contact", f"<sip:alice@127.0.0.1:{udp.port}>")] if invite else [],
        body=b"v=0\r\n" if invite else b"hello",
        content_type="application/sdp" if invite else "text/plain",
    )


def _cancel(invite: SipRequest) -> SipRequest:
    return build_request(
        "CANCEL",
        invite.uri,
        via=invite.headers.values("via")[0],
        from_=invite.headers.get("from") or "",
        to=invite.headers.get("to") or "",
        call_id=invite.call_id,
        cseq=invite.cseq.number,
    )


def _finals(udp: RawUdp, call_id: str) -> list[int]:
    """The distinct final statuses received for ``call_id``, in order (the server
    retransmits a non-2xx final until it is ACKed)."""
    statuses = [
        m.status
        for m in udp.messages
        if isinstance(m, SipResponse) and m.headers.get("call-id") == call_id and m.status >= 200
    ]
    return list(dict.fromkeys(statuses))


def _cancels(peer: RawUdp) -> list[SipMessage]:
    return [m for m in peer.messages if isinstance(m, SipRequest) and m.method == "CANCEL"]


def _same_request_new_branch(first: SipRequest, second: SipRequest) -> None:
    """RFC 3263 4.3: the same request, in a new client transaction (new Via branch)."""
    assert second.uri == first.uri
    assert second.call_id == first.call_id
    assert second.cseq == first.cseq
    assert second.headers.get("from") == first.headers.get("from")
    assert second.headers.get("to") == first.headers.get("to")
    assert second.body == first.body
    assert second.headers.values("via")[1:] == first.headers.values("via")[1:]
    assert second.top_via.branch != first.top_via.branch
    assert (second.top_via.branch or "").startswith("z9hG4bK")


async def _until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------ TCP peer
class TcpPeer:
    """A SIP UAS on TCP 127.0.0.1: collects the requests of every connection and answers
    them on the connection they came on."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[SipRequest] = []
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._server: asyncio.Server | None = None
        self._event = asyncio.Event()

    async def __aenter__(self) -> TcpPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers.values():
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for raw in framer.feed(data):
                msg = parse_message(raw, stream=True)
                if isinstance(msg, SipRequest):
                    self._writers[id(msg)] = writer
                    self.requests.append(msg)
                    self._event.set()
                    self._event = asyncio.Event()

    async def request(self, method: str, timeout: float = WAIT) -> SipRequest:
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.requests:
                if msg.method == method:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"tcp :{self.port}: no {method} within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(left, 0.2))

    def answer(self, request: SipRequest, status: int) -> None:
        response = make_response(request, status, to_tag=rand(8))
        self._writers[id(request)].write(response.to_bytes())


# ------------------------------------------------------------------------------ UDP, 503
async def test_a_503_fails_over_to_the_next_srv_target_and_is_never_seen() -> None:
    """SRV gives two targets; the first answers 503: the same INVITE goes to the second in
    a new client transaction, whose 200 reaches the caller. The caller never sees the 503
    (nor the 500 it would become): it is not passed upstream while a target remains."""
    async with _lab("fo.example", 2) as (app, udp, (t1, t2)):
        invite = _request("INVITE", udp, "sip:bob@fo.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        t1.answer(first, 503, to=_server(app))
        second = await t2.request("INVITE")
        _same_request_new_branch(first, second)
        t2.answer(
            second, 200, extra=[("Contact", f"<sip:bob@127.0.0.1:{t2.port}>")], to=_server(app)
        )
        ok = await udp.response(invite.call_id)
        assert ok.status == 200, ok
        assert _finals(udp, invite.call_id) == [200]
        # the first target's 503 was ACKed by its client transaction (RFC 3261 17.1.1.3)
        ack = await t1.request("ACK")
        assert ack.top_via.branch == first.top_via.branch


# ------------------------------------------------------------------------------ UDP, timeout
async def test_a_dead_udp_target_times_out_then_the_next_one_answers() -> None:
    """Nothing listens on the first target's port: the datagrams vanish (no ICMP error
    reaches an unconnected UDP socket), timer B fires with no response, and the INVITE goes
    to the next SRV target, whose 200 reaches the caller (it was 408 Request Timeout)."""
    async with RawUdp(("127.0.0.1", 9)) as t2:
        zone = _srv_zone("slow.example", "udp", [_dead_port(), t2.port])
        async with _app(zone) as app, RawUdp(_server(app)) as udp:
            invite = _request("INVITE", udp, "sip:bob@slow.example")
            udp.send(invite)
            second = await t2.request("INVITE")
            assert second.call_id == invite.call_id
            t2.answer(
                second, 200, extra=[("Contact", f"<sip:bob@127.0.0.1:{t2.port}>")], to=_server(app)
            )
            ok = await udp.response(invite.call_id)
            assert ok.status == 200, ok
            assert _finals(udp, invite.call_id) == [200]


async def test_every_target_silent_gives_408_after_trying_each() -> None:
    """Both targets receive the INVITE (one after the other, each in its own client
    transaction) and never answer: the caller gets 408, as for one silent target."""
    async with _lab("mute.example", 2) as (app, udp, (t1, t2)):
        invite = _request("INVITE", udp, "sip:bob@mute.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        second = await t2.request("INVITE")
        _same_request_new_branch(first, second)
        final = await udp.response(invite.call_id)
        assert final.status == 408, final
        assert app.proxy.forwarded == {}


# ------------------------------------------------------------------------------ TCP
async def test_connection_refused_fails_over_to_the_next_address() -> None:
    """A name with two A records on TCP: nothing listens at the first address (connection
    refused, a transport error at once), the MESSAGE goes to the second address on the
    same port and its 202 reaches the caller (it was 503 at once)."""
    async with TcpPeer() as peer:
        zone = {("multi.example.", "A"): ["127.0.0.2", "127.0.0.1"]}
        async with _app(zone) as app, RawUdp(_server(app)) as udp:
            ruri = f"sip:bob@multi.example:{peer.port};transport=tcp"
            req = build_request(
                "MESSAGE",
                ruri,
                via=udp.via,
                from_=_from(),
                to=f"<{ruri}>",
                body=b"hello",
                content_type="text/plain",
            )
            udp.send(req)
            got = await peer.request("MESSAGE")
            assert got.uri == ruri and got.body == b"hello"
            assert got.top_via.transport.upper() == "TCP"
            peer.answer(got, 202)
            resp = await udp.response(req.call_id)
            assert resp.status == 202, resp
            assert _finals(udp, req.call_id) == [202]


async def test_every_target_refusing_gives_503_after_trying_each() -> None:
    """Two SRV targets on TCP, both refusing: each is tried once, then the caller gets our
    503 (a transport error, RFC 3261 16.9), as for one unreachable target."""
    refused: list[Flow] = []
    ports = [_dead_port(socket.SOCK_STREAM), _dead_port(socket.SOCK_STREAM)]
    zone = _srv_zone("down.example", "tcp", ports)
    async with _app(zone) as app, RawUdp(_server(app)) as udp:
        report = app.transports.on_send_error

        def record(flow: Flow, status: int, reason: str) -> None:
            refused.append(flow)
            report(flow, status, reason)

        app.transports.on_send_error = record
        ruri = "sip:bob@down.example;transport=tcp"
        req = build_request("MESSAGE", ruri, via=udp.via, from_=_from(), to=f"<{ruri}>")
        udp.send(req)
        resp = await udp.response(req.call_id)
        assert resp.status == 503, resp
        assert sorted(flow.port for flow in refused) == sorted(ports)
        assert _finals(udp, req.call_id) == [503]


# ------------------------------------------------------------------------------ CANCEL, timer C
async def test_cancel_during_failover_reaches_the_current_target_and_gives_487() -> None:
    """The first target answers 100 then 503; the INVITE goes to the second. The caller
    CANCELs before the second has answered anything: no CANCEL may be sent yet (RFC 3261
    9.1); once it sends 180 the CANCEL goes to it, on its own branch. Its 487 reaches the
    caller; the first target gets no CANCEL and the third target nothing at all."""
    async with _lab("ring.example", 3) as (app, udp, (t1, t2, t3)):
        server = _server(app)
        invite = _request("INVITE", udp, "sip:bob@ring.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        t1.answer(first, 100, to=server)
        t1.answer(first, 503, to=server)
        second = await t2.request("INVITE")
        udp.send(_cancel(invite))
        ok = await udp.response(invite.call_id, method="CANCEL")
        assert ok.status == 200
        await t2.silence(0.2)
        assert _cancels(t2) == []  # 9.1: not before a provisional response
        tag = rand(8)
        t2.answer(second, 180, to_tag=tag, to=server)
        cancel = await t2.request("CANCEL")
        assert cancel.top_via.branch == second.top_via.branch
        assert cancel.uri == second.uri and cancel.cseq.number == second.cseq.number
        t2.answer(cancel, 200, to=server)
        t2.answer(second, 487, to_tag=tag, to=server)
        final = await udp.response(invite.call_id, method="INVITE")
        assert final.status == 487, final
        assert _finals(udp, invite.call_id) == [200, 487]  # CANCEL's 200, INVITE's 487
        assert _cancels(t1) == []
        assert await t3.silence(0.3) == [] and t3.datagrams == []


async def test_cancel_stops_further_attempts() -> None:
    """A CANCELled INVITE never goes to another target: the second target, cancelled,
    answers 503 instead of 487, and the third target still gets nothing."""
    async with _lab("stop.example", 3) as (app, udp, (t1, t2, t3)):
        server = _server(app)
        invite = _request("INVITE", udp, "sip:bob@stop.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        t1.answer(first, 503, to=server)
        second = await t2.request("INVITE")
        t2.answer(second, 100, to=server)
        udp.send(_cancel(invite))
        cancel = await t2.request("CANCEL")
        assert cancel.top_via.branch == second.top_via.branch
        t2.answer(cancel, 200, to=server)
        t2.answer(second, 503, to=server)
        final = await udp.response(invite.call_id, method="INVITE")
        assert final.status == 500, final  # a downstream 503 is not ours (16.7 step 6)
        assert await t3.silence(0.3) == [] and t3.datagrams == []
        assert app.proxy.forwarded == {}


async def test_timer_c_during_failover_gives_408_and_stops() -> None:
    """The first target answers 503, the second never answers: timer C (not restarted by
    the failover) answers the caller 408, and when the second's timer B fires later no
    third target is tried."""
    # timer B 3.2 s (T1 50 ms) is well after timer C
    async with _lab("late.example", 3, t1=0.05, timer_c=1.5) as (app, udp, (t1, t2, t3)):
        invite = _request("INVITE", udp, "sip:bob@late.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        t1.answer(first, 503, to=_server(app))
        second = await t2.request("INVITE")
        final = await udp.response(invite.call_id)
        assert final.status == 408, final
        dest = Flow("udp", "127.0.0.1", t2.port)
        await _until(lambda: dest not in app.keys_by_flow, "the second target's timer B")
        await asyncio.sleep(0.1)
        assert t3.datagrams == []
        assert _finals(udp, invite.call_id) == [408]
        assert second.call_id == invite.call_id


def _fire_timer_c(app: SipApplication) -> None:
    """Timer C of the one INVITE being proxied fires now (by hand: no waiting for it)."""
    (key,) = app.proxy.forwarded
    app.proxy.forwarded[key].stop_timer_c()
    app.proxy._on_timer_c(key)


@pytest.mark.parametrize("caller_cancel", [False, True], ids=["timer-c", "cancel-then-timer-c"])
async def test_an_attempt_silent_when_the_caller_got_its_final_is_cancelled_later(
    caller_cancel: bool,
) -> None:
    """The first target answers 100 then 503; the INVITE goes to the second, and timer C
    fires (after a CANCEL of the caller, in the second case) before the second has answered
    anything: the caller gets its final at once, but that attempt cannot be CANCELled yet
    (RFC 3261 9.1). Once it sends 180 it is (16.8, 16.10), with the caller's Reason if it
    gave one; neither its 180 nor its 487 reaches the caller, who got its final already."""
    # timer B 6.4 s: the second attempt is still running when it answers
    async with _lab("gone.example", 3, t1=0.1) as (app, udp, (t1, t2, t3)):
        server = _server(app)
        invite = _request("INVITE", udp, "sip:bob@gone.example")
        udp.send(invite)
        first = await t1.request("INVITE")
        t1.answer(first, 100, to=server)
        t1.answer(first, 503, to=server)
        second = await t2.request("INVITE")
        reason = 'SIP;cause=200;text="Call completed elsewhere"'
        if caller_cancel:
            cancel = _cancel(invite)
            cancel.headers.add("Reason", reason)
            udp.send(cancel)
            ok = await udp.response(invite.call_id, method="CANCEL")
            assert ok.status == 200
        _fire_timer_c(app)
        final = await udp.response(invite.call_id, method="INVITE")
        assert final.status == 408, final
        assert app.proxy.forwarded == {}
        assert _cancels(t2) == []  # 9.1: not before a provisional response
        tag = rand(8)
        t2.answer(second, 180, to_tag=tag, to=server)
        late = await t2.request("CANCEL")
        assert late.top_via.branch == second.top_via.branch
        assert late.uri == second.uri and late.cseq.number == second.cseq.number
        assert late.headers.get("reason") == (reason if caller_cancel else None)
        assert app.proxy.late_cancel == {}
        t2.answer(late, 200, to=server)
        t2.answer(second, 487, to_tag=tag, to=server)
        ack = await t2.request("ACK")  # the client transaction's ACK of the 487
        assert ack.top_via.branch == second.top_via.branch
        await udp.silence(0.2)
        statuses = [
            m.status
            for m in udp.messages
            if isinstance(m, SipResponse) and (m.headers.get("cseq") or "").endswith("INVITE")
        ]
        assert 180 not in statuses and 487 not in statuses
        assert _cancels(t1) == [] and t3.datagrams == []


# ------------------------------------------------------------------------------ non-INVITE
async def test_a_non_invite_never_fails_over_after_a_time_out() -> None:
    """A MESSAGE's first target never answers: its timer F (64*T1) has run, so has the
    caller's own, which no longer waits. No other target is tried (the server transaction
    would outlive the caller by up to a timer F per target); there is no answer at all
    (RFC 4320 4.2: no 408 to a non-INVITE request), and a retransmission of the MESSAGE
    after that is absorbed, not relayed again."""
    async with _lab("quiet.example", 2) as (app, udp, (t1, t2)):
        req = _request("MESSAGE", udp, "sip:bob@quiet.example")
        udp.send(req)
        await t1.request("MESSAGE")
        for _ in range(200):  # timer F is 64 * T1 = 1.28 s here (bounded: 10 s)
            if not app.proxy.forwarded:
                break
            await asyncio.sleep(0.05)
        assert app.proxy.forwarded == {}
        udp.send(req)  # a late retransmission: absorbed by the abandoned transaction
        await udp.silence(0.3)
        assert _finals(udp, req.call_id) == []
        assert t2.datagrams == [] and len(t1.datagrams) <= 11  # its own retransmissions only


@pytest.mark.parametrize("expired", [False, True], ids=["in-time", "after-64-t1"])
async def test_a_non_invite_fails_over_after_a_503_only_while_the_caller_waits(
    expired: bool,
) -> None:
    """A MESSAGE's first target answers 503: within 64*T1 of its arrival the second target
    gets it (and its 202 reaches the caller); once 64*T1 has passed (the clock moved by
    hand) the caller's timer F has run, nothing more is sent and the 503 goes up as 500."""
    async with _lab("busy.example", 2, t1=0.5) as (app, udp, (t1, t2)):
        server = _server(app)
        req = _request("MESSAGE", udp, "sip:bob@busy.example")
        udp.send(req)
        first = await t1.request("MESSAGE")
        if expired:
            (fwd,) = app.proxy.forwarded.values()
            fwd.arrived -= 64 * app.config.transaction.t1
        t1.answer(first, 503, to=server)
        if expired:
            final = await udp.response(req.call_id)
            assert final.status == 500, final
            assert await t2.silence(0.2) == [] and t2.datagrams == []
            return
        second = await t2.request("MESSAGE")
        _same_request_new_branch(first, second)
        t2.answer(second, 202, to=server)
        final = await udp.response(req.call_id)
        assert final.status == 202, final
        assert _finals(udp, req.call_id) == [202]
