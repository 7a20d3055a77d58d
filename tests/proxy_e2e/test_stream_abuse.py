"""Abusive TCP/TLS peers (what Kamailio's ``tcp_msg_read_timeout``, ``tcp_max_connections``,
TLS handshake time-outs and write-queue limits protect against) cannot hurt a running server.

Each case is followed by :func:`still_served`: UDP, a TCP connection opened before the abuse
and a new TCP connection all get their OPTIONS answered, and the server's log holds no
traceback. The protections are configured small here (seconds instead of the defaults), so
every wait is for an outcome and bounded; nothing asserts how long a step took.

1. slowloris: a request trickled one byte at a time, and a head that never completes, are
   closed after ``server.tcp_message_timeout``;
2. connection flood: connections above ``server.max_connections`` are closed at once, with
   one warning per burst; idle connections close after ``server.tcp_idle_timeout``, and one
   that never delivers a message after ``server.tcp_message_timeout``; a flood of accepted
   connections leaves the server room for its own outgoing connections (and an outgoing one
   refused at the limit fails what is sent to it at once);
3. TLS: no handshake, plaintext, a random ClientHello, garbage after the handshake: each
   closed within ``server.tls_handshake_timeout`` / ``tcp_message_timeout``, quietly;
4. pipelining: 500 requests in one write, and 60 kB of messages cut at awkward places, are
   all answered, in order;
5. a peer that never reads: the server stops reading from it, keeps at most about 1 MB of
   output for it and closes it, and its memory stays bounded.
"""

# ruff: noqa: ASYNC109  (bounded `timeout=` arguments of the helpers)
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from support import (
    HOST,
    ProxyServer,
    RawUdp,
    StreamClient,
    alive,
    build_request,
    probe_options,
    rand,
)

from sipsca.config import SipscaConfig
from sipsca.errors import ConfigError
from sipsca.runtime.transport import TransportManager
from sipsca.service import check_startup
from sipsca.sip import SipResponse, StreamFramer, parse_message
from sipsca.sip.address import Flow
from sipsca.sip.parser import ParserLimits

T = TypeVar("T")
NOISE = ("Traceback", "Exception in callback", "Fatal error", " ERROR ", " CRITICAL ")


def options(server: ProxyServer, via: str, cseq: int = 1, call_id: str | None = None) -> bytes:
    """An OPTIONS to the server itself (answered 200 statelessly)."""
    return build_request(
        "OPTIONS",
        f"sip:{server.host}:{server.port}",
        via=via,
        from_=f"<sip:abuse@{server.domain}>;tag={rand(8)}",
        to=f"<sip:{server.host}:{server.port}>",
        call_id=call_id,
        cseq=cseq,
        headers=[("Content-Length", "0")],
    ).to_bytes()


async def ask(conn: StreamClient, server: ProxyServer) -> SipResponse:
    data = options(server, conn.via)
    conn.send(data)
    return await conn.response(parse_message(data).call_id)


def quiet(server: ProxyServer) -> None:
    """No traceback and no asyncio/ERROR noise in the server's log."""
    text = server.log_text()
    noisy = [line for line in text.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, "\n".join(noisy[:20])


async def still_served(server: ProxyServer, existing: StreamClient) -> None:
    """UDP, the existing TCP connection and a new one are answered; the log is clean."""
    assert alive(server), server.log_text()[-3000:]
    assert (await probe_options(server)).status == 200
    assert not existing.closed.is_set(), "the bystander connection was closed"
    assert (await ask(existing, server)).status == 200
    async with StreamClient(server.sip_addr) as fresh:
        assert (await ask(fresh, server)).status == 200
    quiet(server)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (bounded, polling) until ``predicate()``; fail naming ``what``."""
    for _ in range(int(timeout / 0.05) + 1):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def read_to_end(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read ``sock`` (blocking, in a thread) until the peer closes it, at most ``timeout``
    seconds in all; (closed, bytes read)."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(262144)
        except TimeoutError:
            break
        except OSError:  # reset: closed as well
            return True, bytes(got)
        if not chunk:
            return True, bytes(got)
        got += chunk
    return False, bytes(got)


async def meanwhile(
    server: ProxyServer, conn: StreamClient, blocking: Callable[..., T], *args: Any
) -> T:
    """Run ``blocking(*args)`` in a thread while ``conn`` keeps being served (an OPTIONS
    every 0.2 s, at most 30 s)."""
    work = asyncio.ensure_future(asyncio.to_thread(blocking, *args))
    for _ in range(150):
        if work.done():
            break
        assert (await ask(conn, server)).status == 200
        await asyncio.sleep(0.2)
    return await asyncio.wait_for(work, 5)


def rss_kb(server: ProxyServer) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def dropped_total(srv: Any, reason: str) -> float:
    """``sipsca_connections_dropped_total{reason}`` from the server's ``/metrics``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{srv.host}:{srv.rpc_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sipsca_connections_dropped_total" and (
                sample.labels.get("reason") == reason
            ):
                return float(sample.value)
    return 0.0


# ------------------------------------------------------------------------------ 1 slowloris
async def test_slowloris_and_stalled_head_are_closed(make_server: Any) -> None:
    """A request sent one byte every 0.2 s, and a head that stops half-way, are closed once
    ``tcp_message_timeout`` (1 s here) has passed since their first byte, although the
    idle timeout (600 s) would keep them; meanwhile the rest of the server is served."""
    srv = make_server({"server": {"tcp_message_timeout": 1.0}})
    async with (
        StreamClient(srv.sip_addr) as bystander,
        StreamClient(srv.sip_addr) as drip,
        StreamClient(srv.sip_addr) as stalled,
    ):
        assert (await ask(bystander, srv)).status == 200
        stalled.send(options(srv, stalled.via)[:60])
        data = options(srv, drip.via)
        for i in range(50):  # 10 s at most; the whole request would take some 50 s
            if drip.closed.is_set():
                break
            drip.send(data[i : i + 1])
            if i == 2:
                await still_served(srv, bystander)  # served while the drip goes on
            await asyncio.sleep(0.2)
        assert drip.closed.is_set(), "a request trickled byte by byte kept its connection"
        assert await stalled.wait_closed(5), "a stalled request head kept its connection"
        assert drip.raw == [] and stalled.raw == []
        await still_served(srv, bystander)
    assert "did not complete within" in srv.log_text()
    assert await asyncio.to_thread(dropped_total, srv, "message_timeout") == 2


async def test_slow_but_steady_pipeline_is_not_cut(make_server: Any) -> None:
    """The deadline is per message: a connection sending one complete request every
    0.3 s for longer than the timeout, each in three pieces, is served to the end."""
    srv = make_server({"server": {"tcp_message_timeout": 1.0}})
    async with StreamClient(srv.sip_addr) as conn:
        ids = []
        for n in range(8):
            data = options(srv, conn.via, cseq=n + 1)
            ids.append(parse_message(data).call_id)
            for part in (data[:10], data[10:100], data[100:]):
                conn.send(part)
                await asyncio.sleep(0.1)
        for cid in ids:
            assert (await conn.response(cid)).status == 200
        await still_served(srv, conn)


async def open_connections(
    srv: Any, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await open_one(srv) for _ in range(count)]


async def open_one(
    srv: Any, port: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the server's SIP port, or ``port`` (nothing sent)."""
    return await asyncio.wait_for(asyncio.open_connection(HOST, port or srv.port), 5)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes (or resets) this connection within 3 s."""
    try:
        return await asyncio.wait_for(reader.read(1), 3) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


# ------------------------------------------------------------------------------ 2 flood
async def test_connection_flood_is_refused_with_one_warning(make_server: Any) -> None:
    """``max_connections = 20``: of 40 more connections the ones above the limit are closed
    by the server, one warning is logged for the burst; once the flood goes, new
    connections are served again."""
    srv = make_server({"server": {"max_connections": 20}})
    async with StreamClient(srv.sip_addr) as bystander:
        assert (await ask(bystander, srv)).status == 200
        flood = await open_connections(srv, 40)

        closed = await asyncio.gather(*(closed_by_server(r) for r, _ in flood))
        assert sum(closed) == 21, closed  # 40 + the bystander - 20
        warnings = [ln for ln in srv.log_text().splitlines() if "connection limit" in ln]
        assert len(warnings) == 1, warnings
        assert " WARNING " in warnings[0]
        assert await asyncio.to_thread(dropped_total, srv, "limit") == 21
        # at the limit: UDP and the bystander are served, a new connection is not
        assert (await probe_options(srv)).status == 200
        assert (await ask(bystander, srv)).status == 200
        late_reader, late = await open_one(srv)
        assert await closed_by_server(late_reader), "a connection above the limit was kept"
        late.close()
        for _, writer in flood:
            writer.close()
        for _, writer in flood:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.wait_closed(), 2)
        for _ in range(50):  # until the server has seen the flood go (bounded)
            async with StreamClient(srv.sip_addr) as fresh:
                with contextlib.suppress(TimeoutError):
                    if (await ask(fresh, srv)).status == 200:
                        break
            await asyncio.sleep(0.1)
        await still_served(srv, bystander)
    warnings = [ln for ln in srv.log_text().splitlines() if "connection limit" in ln]
    assert len(warnings) == 1, warnings


async def test_tls_handshakes_in_flight_hold_slots(make_server: Any) -> None:
    """``max_connections = 3`` TCP connections to the TLS port that never start their
    handshake fill the limit: a real TLS client is refused until the handshake time-out
    (2 s) has closed them, then served. Handshakes in flight used to count for nothing,
    so any number of them could hold descriptors."""
    srv = make_server({"server": {"max_connections": 3, "tls_handshake_timeout": 2.0}}, tls=True)
    tls_port = srv.tls_addr[1]
    silent = [await open_one(srv, tls_port) for _ in range(3)]
    await asyncio.sleep(0.2)  # all three accepted before the client below
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        async with StreamClient(srv.tls_addr, tls=True) as refused:
            await ask(refused, srv)
    closed = await asyncio.gather(*(closed_by_server(r) for r, _ in silent))
    assert all(closed), "a TLS connection without a handshake outlived the time-out"
    refused_more = 0
    for _ in range(20):  # the slots come free just after the aborts (bounded: 2 s)
        try:
            async with StreamClient(srv.tls_addr, tls=True) as good:
                assert (await ask(good, srv)).status == 200
            break
        except (ConnectionError, ssl.SSLError):
            refused_more += 1
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the slots of the timed-out handshakes never came free")
    for _, writer in silent:
        writer.close()
    assert await asyncio.to_thread(dropped_total, srv, "limit") == 1 + refused_more
    assert await asyncio.to_thread(dropped_total, srv, "tls_handshake") == 3


async def test_idle_connections_are_closed(make_server: Any) -> None:
    """``tcp_idle_timeout`` closes a connection that never sent anything and one that went
    quiet after a request; a connection kept busy stays open."""
    srv = make_server({"server": {"tcp_idle_timeout": 1.0}})
    async with (
        StreamClient(srv.sip_addr) as busy,
        StreamClient(srv.sip_addr) as silent,
        StreamClient(srv.sip_addr) as quieted,
    ):
        assert (await ask(quieted, srv)).status == 200
        for _ in range(100):  # 10 s at most
            if silent.closed.is_set() and quieted.closed.is_set():
                break
            assert (await ask(busy, srv)).status == 200
            await asyncio.sleep(0.1)
        assert silent.closed.is_set() and quieted.closed.is_set()
        await still_served(srv, busy)


async def test_connection_without_a_message_is_closed(make_server: Any) -> None:
    """An accepted connection that sends nothing, and one that only sends CRLF CRLF
    keep-alives, are closed ``tcp_message_timeout`` (1 s here) after being accepted, although
    the idle timeout (600 s) would keep them; one that sent a request first is not."""
    srv = make_server({"server": {"tcp_message_timeout": 1.0}})
    async with (
        StreamClient(srv.sip_addr) as talker,
        StreamClient(srv.sip_addr) as silent,
        StreamClient(srv.sip_addr) as pinger,
    ):
        assert (await ask(talker, srv)).status == 200
        for _ in range(50):  # 10 s at most
            if silent.closed.is_set() and pinger.closed.is_set():
                break
            if not pinger.closed.is_set():
                pinger.send(b"\r\n\r\n")
            await asyncio.sleep(0.2)
        assert silent.closed.is_set(), "a connection that never sent anything was kept"
        assert pinger.closed.is_set(), "a connection sending only keep-alives was kept"
        assert silent.raw == [] and pinger.raw == []
        # talker was accepted before them: its first-message deadline has passed too
        await still_served(srv, talker)
    assert await asyncio.to_thread(dropped_total, srv, "message_timeout") == 2


async def _tcp_peer(received: list[bytes]) -> asyncio.Server:
    """A TCP next hop that records the first read of each connection."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.read(65535))
        finally:
            writer.close()

    return await asyncio.start_server(accept, HOST, 0)


async def test_accepted_flood_leaves_room_for_outgoing_connections(make_server: Any) -> None:
    """``max_connections = 4`` accepted connections sit idle (and a fifth is refused): a
    MESSAGE relayed to a TCP next hop (static route) still gets its own connection there;
    it used to be refused with 503 "connection limit reached"."""
    received: list[bytes] = []
    peer = await _tcp_peer(received)
    port = peer.sockets[0].getsockname()[1]
    try:
        srv = make_server(
            {
                "server": {"max_connections": 4, "tcp_message_timeout": 60.0},
                "proxy": {"static_routes": [["tcppeer.test", f"tcp:{HOST}:{port}"]]},
            }
        )
        flood = await open_connections(srv, 5)

        closed = await asyncio.gather(*(closed_by_server(r) for r, _ in flood))
        assert sum(closed) == 1, closed  # the accepted connections are at the limit
        async with RawUdp(srv.sip_addr) as caller:
            req = build_request(
                "MESSAGE",
                "sip:dan@tcppeer.test",
                via=caller.via,
                from_=f"<sip:eve@{srv.domain}>;tag={rand(8)}",
                to="<sip:dan@tcppeer.test>",
                body=b"hi",
                content_type="text/plain",
            )
            caller.send(req)
            finals: list[Any] = []
            for _ in range(100):  # 10 s at most
                finals = [m for m in caller.messages if getattr(m, "status", 0) >= 200]
                if any(received) or finals:
                    break
                await asyncio.sleep(0.1)
            got = [data for data in received if data]  # b"": a connection closed at once
            assert got, f"the next hop got nothing (caller got {finals})"
            assert got[0].startswith(b"MESSAGE sip:dan@tcppeer.test SIP/2.0\r\n")
        for _, writer in flood:
            writer.close()
        quiet(srv)
    finally:
        peer.close()
        await peer.wait_closed()


async def test_send_while_a_refused_connection_reports_fails_at_once() -> None:
    """An outgoing connection refused at ``max_connections`` reports its requests failed;
    a send to the same flow made while that error is handled (the core answers and sends
    on, re-entrantly) must fail too, not be written to the connection being aborted (its
    transaction would time out instead of failing at once)."""
    errors: list[tuple[Flow, int]] = []
    holders: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holders.append(writer)

    servers = [await asyncio.start_server(hold, HOST, 0) for _ in range(2)]
    first, second = (Flow("tcp", HOST, s.sockets[0].getsockname()[1]) for s in servers)

    def on_send_error(flow: Flow, status: int, reason: str) -> None:
        errors.append((flow, status))
        if len(errors) == 1:
            manager.send(b"OPTIONS again\r\n", flow)  # re-entrant, as the core does

    manager = TransportManager(
        lambda data, flow: None,
        on_send_error=on_send_error,
        limits=ParserLimits(),
        max_connections=1,
    )
    try:
        manager.send(b"OPTIONS one\r\n", first)
        await until(lambda: manager.has_connection(first), 5, "the first connection")
        manager.send(b"OPTIONS two\r\n", second)  # over the limit: refused
        await until(lambda: len(errors) >= 2, 5, "both sends to the refused flow failed")
        assert errors == [(second, 503), (second, 503)]
        assert manager.has_connection(first) and not manager.has_connection(second)
    finally:
        await manager.close()
        for writer in holders:
            writer.close()
        for server in servers:
            server.close()
            await server.wait_closed()


# ------------------------------------------------------------------------------ 3 TLS
def _tls_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _tls_abuse(addr: tuple[str, int], kind: str, sip: bytes) -> bool:
    """One hostile TLS client (blocking); True when the server closed it within 5 s."""
    with socket.create_connection(addr, timeout=5) as sock:
        if kind == "plaintext":
            sock.sendall(sip)
        elif kind == "random-hello":
            sock.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(512))
        elif kind in ("record-garbage", "app-garbage"):
            tls = _tls_client_context().wrap_socket(sock)
            sock.detach()  # `tls` owns the descriptor now
            with tls:
                if kind == "app-garbage":  # inside TLS: no SIP framing at all
                    tls.sendall(os.urandom(3000).replace(b"\r\n", b"xx"))
                    return read_to_end(tls, 5)[0]
                raw = socket.socket(fileno=os.dup(tls.fileno()))
                with raw:  # not TLS records at all, on the established session
                    raw.sendall(os.urandom(600))
                    return read_to_end(raw, 5)[0]
        return read_to_end(sock, 5)[0]


@pytest.mark.parametrize(
    "kind", ["no-handshake", "plaintext", "random-hello", "record-garbage", "app-garbage"]
)
async def test_tls_garbage_is_closed_quietly(make_server: Any, kind: str) -> None:
    """Hostile TLS clients are closed within a bounded time (the handshake time-out is 1 s
    here, asyncio's default would be 60 s), nothing is logged above INFO, and the TLS
    listener still serves a good client."""
    srv = make_server(
        {"server": {"tls_handshake_timeout": 1.0, "tcp_message_timeout": 1.0}}, tls=True
    )
    async with StreamClient(srv.sip_addr) as bystander:
        assert (await ask(bystander, srv)).status == 200  # else its first-message deadline
        sip = options(srv, f"SIP/2.0/TLS {HOST}:9;branch=z9hG4bK{rand(12)}")
        assert await asyncio.to_thread(_tls_abuse, srv.tls_addr, kind, sip), kind
        async with StreamClient(srv.tls_addr, tls=True) as good:
            assert (await ask(good, srv)).status == 200
        await still_served(srv, bystander)
    # each is counted under its reason (app-garbage: a framing error, closed with a 400)
    reason = {"record-garbage": "tls_error", "app-garbage": None}.get(kind, "tls_handshake")
    if reason is not None:
        assert await asyncio.to_thread(dropped_total, srv, reason) == 1


def _close_notify_then_eof(addr: tuple[str, int], sip: bytes) -> bool:
    """A TLS client sends a request, reads its answer, then sends close_notify (no TCP
    FIN): True when the server answers with its own close_notify and closes within 3 s."""
    with socket.create_connection(addr, timeout=3) as sock:
        tls = _tls_client_context().wrap_socket(sock)
        sock.detach()
        tls.settimeout(3)
        tls.sendall(sip)
        if not tls.recv(65535).startswith(b"SIP/2.0 200"):
            return False
        try:
            raw = tls.unwrap()  # waits for the server's close_notify
        except (TimeoutError, ssl.SSLError, OSError):
            tls.close()
            return False
        with raw:
            return read_to_end(raw, 3)[0]


async def test_tls_close_notify_closes_the_connection(make_server: Any) -> None:
    """A peer's close_notify gets ours and the connection closes (RFC 8446 6.1; asyncio's
    SSL transport did this): it used to keep its slot until the idle time-out (600 s)."""
    srv = make_server(tls=True)
    sip = options(srv, f"SIP/2.0/TLS {HOST}:9;branch=z9hG4bK{rand(12)}")
    assert await asyncio.to_thread(_close_notify_then_eof, srv.tls_addr, sip)
    async with StreamClient(srv.tls_addr, tls=True) as good:
        assert (await ask(good, srv)).status == 200


# ------------------------------------------------------------------------------ 4 pipelining
async def test_pipelined_burst_answered_in_order(make_server: Any) -> None:
    """500 OPTIONS in one write on one connection: 500 answers, in the order sent."""
    srv = make_server()
    async with StreamClient(srv.sip_addr) as conn:
        burst = [options(srv, conn.via, cseq=n + 1) for n in range(500)]
        conn.send(b"".join(burst))
        await until(lambda: len(conn.messages) >= 500 or conn.closed.is_set(), 15, "500 answers")
        got = [m for m in conn.messages if isinstance(m, SipResponse)]
        assert [m.status for m in got] == [200] * 500
        assert [m.call_id for m in got] == [parse_message(b).call_id for b in burst]
        await still_served(srv, conn)


async def test_awkwardly_split_stream_answered_in_order(make_server: Any) -> None:
    """60 kB of requests with bodies and keep-alive CRLFs between them, written in pieces cut
    inside CRLFs, header names, the Content-Length value and bodies: all answered in order."""
    srv = make_server()
    async with StreamClient(srv.sip_addr) as conn:
        sent: list[str] = []
        stream = bytearray()
        n = 0
        while len(stream) < 60000:
            n += 1
            body = (b"v=0 " * (n % 40))[: n * 7 % 151]
            req = build_request(
                "OPTIONS",
                f"sip:{srv.host}:{srv.port}",
                via=conn.via,
                from_=f"<sip:abuse@{srv.domain}>;tag={rand(8)}",
                to=f"<sip:{srv.host}:{srv.port}>",
                cseq=n,
                body=body,
                content_type="text/plain" if body else None,
            )
            sent.append(req.call_id)
            stream += req.to_bytes()
            if n % 7 == 0:
                stream += b"\r\n"  # a lone CRLF between messages (RFC 3261 7.5)
        data = bytes(stream)
        cuts = {0, len(data)}
        for needle in (b"\r\n\r\n", b"Content-Length: ", b"\r\nCa", b"v=0 v"):
            at = data.find(needle, 1000)
            for _ in range(40):
                if at < 0:
                    break
                cuts.update((at + 1, at + len(needle) // 2 + 1, at + len(needle) + 1))
                at = data.find(needle, at + 1500)
        points = sorted(cuts)
        for a, b in itertools.pairwise(points):
            conn.send(data[a:b])
            await asyncio.sleep(0.002)
        want = len(sent)
        await until(lambda: len(conn.messages) >= want or conn.closed.is_set(), 15, "answers")
        got = [m for m in conn.messages if isinstance(m, SipResponse)]
        assert [m.call_id for m in got] == sent
        assert all(m.status == 200 for m in got)
        await still_served(srv, conn)


# ------------------------------------------------------------------------------ 5 no reader
def _flood_without_reading(addr: tuple[str, int], payload: bytes, total: int) -> socket.socket:
    """Connect with a small receive window and send ``payload`` up to ``total`` bytes,
    never reading; stop when the server stops taking input for 2 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(addr)
    sock.settimeout(2)
    sent = 0
    with contextlib.suppress(OSError):  # TimeoutError: the server stopped reading
        while sent < total:
            sock.sendall(payload)
            sent += len(payload)
    return sock


async def test_peer_that_never_reads_is_bounded_and_closed(make_server: Any) -> None:
    """A peer sends 40 MB of OPTIONS whose big Vias come back in every answer, and never
    reads: the server stops reading from it, its memory grows far less than the 40 MB it
    would have queued, other traffic is served, and the connection is closed (idle
    timeout of 2 s with output stuck) before all answers went out."""
    srv = make_server({"server": {"tcp_idle_timeout": 2.0}})
    async with StreamClient(srv.sip_addr) as bystander:
        assert (await ask(bystander, srv)).status == 200
        before = rss_kb(srv)
        vias = [f"SIP/2.0/TCP {HOST}:9;branch=z9hG4bK{rand(12)};x={'a' * 7900}" for _ in range(7)]
        one = build_request(
            "OPTIONS",
            f"sip:{srv.host}:{srv.port}",
            via=f"SIP/2.0/TCP {HOST}:9;branch=z9hG4bK{rand(12)}",
            from_=f"<sip:abuse@{srv.domain}>;tag={rand(8)}",
            to=f"<sip:{srv.host}:{srv.port}>",
            headers=[("Via", v) for v in vias] + [("Content-Length", "0")],
        ).to_bytes()
        count = 40_000_000 // len(one)
        sock = await meanwhile(
            srv, bystander, _flood_without_reading, srv.sip_addr, one, count * len(one)
        )
        with sock:
            grown = rss_kb(srv) - before
            await still_served(srv, bystander)
            assert grown < 16_000, f"server memory grew by {grown} kB"
            closed, data = await meanwhile(srv, bystander, read_to_end, sock, 10)
        assert closed, "the server kept a connection whose peer does not read"
        answers = StreamFramer().feed(data) if data.endswith(b"\r\n\r\n") else []
        assert len(answers) < count
        await still_served(srv, bystander)
    assert "not reading" in srv.log_text()


async def test_output_to_a_stuck_peer_is_capped(make_server: Any) -> None:
    """A phone registered over TCP stops reading; requests forwarded to it by others pile
    up: once more than 1 MB waits unsent, the server drops the connection instead of
    buffering without bound, and keeps serving."""
    srv = make_server()
    async with StreamClient(srv.sip_addr) as bystander:
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with stuck:
            await asyncio.to_thread(stuck.connect, srv.sip_addr)
            port = stuck.getsockname()[1]
            user = f"stuck-{rand(5)}"
            reg = build_request(
                "REGISTER",
                f"sip:{srv.domain}",
                via=f"SIP/2.0/TCP {HOST}:{port};branch=z9hG4bK{rand(12)};rport",
                from_=f"<sip:{user}@{srv.domain}>;tag={rand(8)}",
                to=f"<sip:{user}@{srv.domain}>",
                headers=[("Contact", f"<sip:{user}@{HOST}:{port};transport=tcp>")],
            )
            stuck.sendall(reg.to_bytes())
            stuck.settimeout(5)
            assert (await asyncio.to_thread(stuck.recv, 4096)).startswith(b"SIP/2.0 200")
            async with RawUdp(srv.sip_addr) as sender:
                body = b"x" * 50000
                for n in range(240):  # 12 MB toward a peer that reads nothing
                    if "not reading" in srv.log_text():
                        break
                    sender.send(
                        build_request(
                            "MESSAGE",
                            f"sip:{user}@{srv.domain}",
                            via=sender.via,
                            from_=f"<sip:sender@{srv.domain}>;tag={rand(8)}",
                            to=f"<sip:{user}@{srv.domain}>",
                            cseq=n + 1,
                            body=body,
                            content_type="text/plain",
                        )
                    )
                    await asyncio.sleep(0.005)
                await until(lambda: "not reading" in srv.log_text(), 5, "the cap closes it")
            closed, _ = await meanwhile(srv, bystander, read_to_end, stuck, 10)
            assert closed
        cap = [ln for ln in srv.log_text().splitlines() if "not reading" in ln]
        assert len(cap) == 1 and int(cap[0].split("(")[-1].split()[0]) > 1024 * 1024, cap
        await still_served(srv, bystander)


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tcp_message_timeout", 0.0),
        ("tls_handshake_timeout", -1.0),
        ("tcp_idle_timeout", 0.0),
        ("max_connections", 0),
    ],
)
def test_protections_cannot_be_switched_off(key: str, value: float) -> None:
    """A zero time-out or connection limit is a start-up error, not an unprotected server."""
    config = SipscaConfig()
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **{key: value}))
    with pytest.raises(ConfigError, match=f"server.{key}"):
        check_startup(config)
