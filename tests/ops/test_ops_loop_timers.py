"""The event-loop timers behind the transaction layer: a grid, so deadlines share callbacks.

Under load thousands of transactions start each second, each with its own retransmission
and end deadlines. One loop callback per deadline (and a spin when the millisecond loop
clock fires a callback just before its deadline) cost a wake-up per transaction; on the
10 ms grid a burst of transactions shares a few callbacks and none is lost or sent early.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsca.config import ServerConfig, SipscaConfig, TransactionConfig
from sipsca.runtime.app import TIMER_TICK, SipApplication, timer_tick_after
from sipsca.storage.memory import MemoryStorage

HOST = "127.0.0.1"
T1 = 0.05
LINES = 100


@given(st.floats(min_value=0.0, max_value=1e7, allow_nan=False))
def test_tick_is_the_first_grid_point_at_or_after_the_deadline(deadline: float) -> None:
    tick = timer_tick_after(deadline)
    assert tick >= deadline
    assert tick - deadline < TIMER_TICK + 1e-6
    assert abs(tick / TIMER_TICK - round(tick / TIMER_TICK)) < 1e-6


@pytest.fixture
async def app() -> AsyncIterator[SipApplication]:
    storage = MemoryStorage()
    await storage.open()
    config = SipscaConfig(
        server=ServerConfig(domains=(HOST,)),
        transaction=TransactionConfig(t1=T1, t2=4.0, t4=5.0),
    )
    application = SipApplication(config, storage)
    await application.start((f"udp:{HOST}:0",))
    try:
        yield application
    finally:
        await application.stop()
        await storage.close()


def _subscribe(line: int, port: int) -> bytes:
    return (
        f"SUBSCRIBE sip:line{line}@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK-grid-{line};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:line{line}@{HOST}>;tag=grid{line}\r\n"
        f"To: <sip:line{line}@{HOST}>\r\n"
        f"Call-ID: grid-{line}@{HOST}\r\n"
        "CSeq: 1 SUBSCRIBE\r\n"
        f"Contact: <sip:line{line}@{HOST}:{port}>\r\n"
        "Event: call-info\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_a_burst_of_transactions_shares_timer_callbacks(app: SipApplication) -> None:
    """100 NOTIFYs nobody answers: every one is retransmitted (after T1, then 2*T1), yet the
    loop timer runs a few times per retransmission round, not once per transaction."""
    fired = 0
    handler = app._on_tl_timer

    def counting() -> None:
        nonlocal fired
        fired += 1
        handler()

    app._on_tl_timer = counting  # type: ignore[method-assign]
    server_port = app.transports.listeners[0].port
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    phone.setblocking(False)
    port = phone.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        for line in range(LINES):
            phone.sendto(_subscribe(line, port), (HOST, server_port))
        notifies: dict[str, list[float]] = {}
        deadline = time.monotonic() + 12 * T1  # first NOTIFY, +T1, +2*T1 (+ slack)
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(loop.sock_recv(phone, 65535), 0.05)
            except TimeoutError:
                continue
            if data.startswith(b"NOTIFY "):
                call_id = data.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
                notifies.setdefault(call_id, []).append(time.monotonic())
    finally:
        phone.close()
    assert len(notifies) == LINES
    for call_id, times in notifies.items():
        # RFC 3261 17.1.2.2 timer E: the NOTIFY, then retransmissions after T1 and 2*T1
        assert len(times) >= 3, (call_id, times)
    # 2 x 100 retransmission deadlines came due: on the 10 ms grid they share a few
    # callbacks per round (7-10 here); one per deadline ran about 70 times
    assert fired <= LINES // 4, fired
