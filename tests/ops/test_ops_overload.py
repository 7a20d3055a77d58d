"""Overload control over real UDP: a backlog the server cannot serve in time is shed with
stateless 503 + Retry-After, everything accepted completes, nothing goes unanswered, and the
server serves normally once the backlog is gone.

The backlog is made deterministic by stopping the server (SIGSTOP) while a burst is sent,
so the burst waits in the server's receive buffer exactly as under a real overload.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable

from helpers.server import SipscaProcess

BURST = 300


def _subscribe(i: int, port: int, local: tuple[str, int], call_id: str | None = None) -> bytes:
    host, lport = local
    cid = call_id or f"ovl-{i}@test"
    return (
        f"SUBSCRIBE sip:{3000 + i}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bK-ovl-{cid}-{time.monotonic_ns()}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{3000 + i}@127.0.0.1>;tag=ovl{i}\r\n"
        f"To: <sip:{3000 + i}@127.0.0.1>\r\n"
        f"Call-ID: {cid}\r\n"
        "CSeq: 1 SUBSCRIBE\r\n"
        f"Contact: <sip:phone{i}@{host}:{lport}>\r\n"
        "Event: call-info\r\n"
        "Expires: 300\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _ok_to(request: bytes) -> bytes:
    """200 to a NOTIFY (headers copied, To-tag already there)."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    keep = [
        line
        for line in head.split("\r\n")[1:]
        if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")
    ]
    return ("\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0", "", ""])).encode()


def _header(msg: str, name: str) -> str | None:
    m = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    return m.group(1).strip() if m else None


def _collect(sock: socket.socket, seconds: float, finals: dict[str, list[str]]) -> int:
    """Read for ``seconds``; answer NOTIFYs 200; record final replies by Call-ID."""
    notifies = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            break
        text = data.decode(errors="replace")
        if text.startswith("NOTIFY "):
            notifies += 1
            sock.sendto(_ok_to(data), addr)
        elif text.startswith("SIP/2.0 ") and int(text.split()[1]) >= 200:
            finals.setdefault(_header(text, "Call-ID") or "", []).append(text)
    return notifies


def test_burst_is_shed_with_503_and_the_rest_served(
    sipsca_factory: Callable[..., SipscaProcess],
) -> None:
    srv = sipsca_factory({"server": {"overload_queue": 16}})
    assert srv.proc is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    local = sock.getsockname()
    finals: dict[str, list[str]] = {}
    try:
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            for i in range(BURST):
                sock.sendto(_subscribe(i, srv.port, local), srv.sip_addr)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        notifies = _collect(sock, 4.0, finals)

        # Every SUBSCRIBE got exactly one final answer: served (202) or shed (503).
        assert set(finals) == {f"ovl-{i}@test" for i in range(BURST)}
        statuses = {cid: {int(t.split()[1]) for t in texts} for cid, texts in finals.items()}
        assert all(len(s) == 1 and s <= {202, 503} for s in statuses.values()), statuses
        shed = [cid for cid, s in statuses.items() if s == {503}]
        served = [cid for cid, s in statuses.items() if s == {202}]
        assert shed and served, (len(shed), len(served))
        for cid in shed:
            text = finals[cid][0]
            assert _header(text, "Retry-After") == "5"
            assert ";tag=" in (_header(text, "To") or "")
        assert notifies >= len(served)  # each accepted subscription got its NOTIFY

        # The shed ones were not stored; the served ones were.
        subs = srv.rpc("sca.all_subscriptions")
        stored = "\n".join(subs)
        assert stored.count("call-info") == len(served)

        # Counted and reported once (not one log line per shed request).
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{srv.rpc_port}/metrics", timeout=5)
        text = metrics.read().decode()
        count = re.search(r"^sipsca_overload_rejections_total (\S+)$", text, re.M)
        assert count is not None and float(count.group(1)) == len(shed)
        assert srv.log_text().count("overload: shedding new requests with 503") == 1

        # The backlog is gone: a shed phone that comes back is served.
        i = int(shed[0].split("-")[1].split("@")[0])
        finals.clear()
        sock.sendto(_subscribe(i, srv.port, local, call_id="ovl-retry@test"), srv.sip_addr)
        _collect(sock, 1.0, finals)
        assert [int(t.split()[1]) for t in finals["ovl-retry@test"]] == [202]
    finally:
        sock.close()


def test_guard_sheds_a_growing_queue_not_a_draining_one() -> None:
    from sipsca.runtime.overload import OverloadGuard

    guard = OverloadGuard(high_bytes=1000)
    assert guard.low == 500
    assert not guard.observe_backlog(200, now=1.0)
    assert not guard.observe_backlog(1100, now=1.15)  # above high after one rising window
    assert guard.observe_backlog(1500, now=1.3)  # still rising: shed
    assert guard.observe_backlog(600, now=1.35)  # draining, still above low: keep shedding
    assert not guard.observe_backlog(500, now=1.5)  # down to low: serve again

    # A queue left behind by a pause (it grew once, then shrinks) drains by itself.
    paused = OverloadGuard(high_bytes=1000)
    assert not paused.observe_backlog(100, now=1.0)
    assert not paused.observe_backlog(3500, now=1.15)  # the pause: one rising window
    assert not paused.observe_backlog(3000, now=1.3)  # shrinking
    assert not paused.observe_backlog(2000, now=1.45)
    assert not paused.observe_backlog(2600, now=1.6)  # rising once more: not yet
    assert paused.observe_backlog(3200, now=1.75)  # twice in a row above high: overload

    capped = OverloadGuard(high_bytes=1000)
    assert capped.observe_backlog(4200, now=0.05)  # above 4 x high: shed whatever the trend

    lag = OverloadGuard(high_bytes=1000)
    lag.lagging = True
    assert lag.active and lag.observe_backlog(0, now=0.6)
    lag.lagging = False
    assert not lag.active

    off = OverloadGuard(high_bytes=0)
    assert not off.observe_backlog(10**9, now=1.0) and not off.active


async def test_backlog_probe_sees_the_queue_and_releases_the_port() -> None:
    """The probe reads the real receive queue, and closing the transports frees the port
    (the probe holds a duplicate descriptor of the socket)."""
    import asyncio

    from sipsca.runtime.transport import TransportManager
    from sipsca.sip.parser import ParserLimits

    received: list[int] = []
    manager = TransportManager(
        lambda data, flow: received.append(manager.udp_backlog),
        on_send_error=lambda flow, status, reason: None,
        limits=ParserLimits(),
    )
    listener = await manager.listen("udp", "127.0.0.1", 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(64):  # queued before the loop reads any of them
            sender.sendto(
                b"OPTIONS sip:x SIP/2.0\r\n\r\n" + b"x" * 500, ("127.0.0.1", listener.port)
            )
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(received) == 64:
                break
        assert len(received) == 64
        assert max(received) > 0  # something was still queued behind an early datagram
        assert received[-1] == 0  # and the last one saw an empty queue
    finally:
        sender.close()
        await manager.close()
    await asyncio.sleep(0.05)
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    again.bind(("127.0.0.1", listener.port))
    again.close()


def test_shed_invite_gets_503_and_its_ack_goes_nowhere(
    sipsca_factory: Callable[..., SipscaProcess],
) -> None:
    """An INVITE shed with the stateless 503 is not relayed, and the ACK for that 503 is
    recognised by its To-tag and absorbed, not forwarded toward the callee's domain."""
    carrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    carrier.bind(("127.0.0.1", 0))
    carrier_port = carrier.getsockname()[1]
    srv = sipsca_factory(
        {
            "server": {"overload_queue": 16},
            "proxy": {"static_routes": [["carrier.example", f"udp:127.0.0.1:{carrier_port}"]]},
        }
    )
    assert srv.proc is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    host, lport = sock.getsockname()
    via = f"SIP/2.0/UDP {host}:{lport};branch=z9hG4bK-ovl-invite"
    common = (
        "From: <sip:alice@127.0.0.1>;tag=ovl-a\r\n"
        "Call-ID: ovl-invite@test\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
    )
    invite = (
        "INVITE sip:bob@carrier.example SIP/2.0\r\n" + common + "To: <sip:bob@carrier.example>\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@{host}:{lport}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    try:
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            for i in range(BURST):
                sock.sendto(_subscribe(i, srv.port, (host, lport)), srv.sip_addr)
                if i == 20:
                    sock.sendto(invite, srv.sip_addr)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        finals: dict[str, list[str]] = {}
        _collect(sock, 4.0, finals)
        (answer,) = finals["ovl-invite@test"]
        assert answer.startswith("SIP/2.0 503 "), answer
        assert _header(answer, "Retry-After") == "5"
        to = _header(answer, "To") or ""
        ack = (
            "ACK sip:bob@carrier.example SIP/2.0\r\n" + common + f"To: {to}\r\n"
            "CSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(ack, srv.sip_addr)
        carrier.settimeout(1.0)
        try:
            got = carrier.recvfrom(65535)[0]
        except TimeoutError:
            got = b""
        assert got == b"", got[:200]
    finally:
        sock.close()
        carrier.close()
