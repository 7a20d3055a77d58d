"""An INVITE whose credentials are still being looked up when its CANCEL arrives.

The CANCEL gets the INVITE its 487 at once; when the lookup answers later, the INVITE
must not be routed or answered again (its transaction is completed), and nothing may
fail inside the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from ops.support import loopback_udp
from sipsca.auth.model import Subscriber
from sipsca.config import AuthConfig, ServerConfig, SipscaConfig
from sipsca.runtime.app import SipApplication
from sipsca.storage.memory import MemoryStorage

HOST = "127.0.0.1"


class SlowUsers(MemoryStorage):
    """Subscriber lookups wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def get_subscriber(self, username: str, domain: str) -> Subscriber | None:
        self.asked.set()
        await self.release.wait()
        return await super().get_subscriber(username, domain)


@pytest.fixture
async def slow_auth_app() -> AsyncIterator[tuple[SipApplication, SlowUsers]]:
    storage = SlowUsers()
    await storage.open()
    config = SipscaConfig(
        server=ServerConfig(domains=(HOST,)), auth=AuthConfig(mode="digest", realm=HOST)
    )
    app = SipApplication(config, storage)
    await app.start((f"udp:{HOST}:0",))
    try:
        yield app, storage
    finally:
        storage.release.set()
        await app.stop()
        await storage.close()


def _invite(method: str, port: int, server_port: int) -> bytes:
    credentials = (
        'Proxy-Authorization: Digest username="alice", realm="127.0.0.1", nonce="n", '
        f'uri="sip:bob@{HOST}", response="00000000000000000000000000000000"\r\n'
    )
    return (
        f"{method} sip:bob@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK-race;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{HOST}>;tag=a1\r\n"
        f"To: <sip:bob@{HOST}>\r\n"
        f"Call-ID: race@{HOST}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:alice@{HOST}:{port}>\r\n"
        + (credentials if method == "INVITE" else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_cancel_during_the_credentials_lookup(
    slow_auth_app: tuple[SipApplication, SlowUsers], caplog: pytest.LogCaptureFixture
) -> None:
    app, storage = slow_auth_app
    caplog.set_level("INFO")
    server_port = app.transports.listeners[0].port
    phone = loopback_udp()
    port = phone.getsockname()[1]
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []

    async def collect(seconds: float) -> None:
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                replies.append(await asyncio.wait_for(loop.sock_recv(phone, 65535), left))
            except TimeoutError:
                return

    try:
        phone.sendto(_invite("INVITE", port, server_port), (HOST, server_port))
        await asyncio.wait_for(storage.asked.wait(), 2.0)
        phone.sendto(_invite("CANCEL", port, server_port), (HOST, server_port))
        await collect(0.3)
        storage.release.set()
        await collect(0.5)
    finally:
        phone.close()
    starts = [r.split(b"\r\n", 1)[0] for r in replies]
    invite_finals = [
        s for s, r in zip(starts, replies, strict=True) if b"INVITE\r\n" in r and s[8:11] >= b"200"
    ]
    # the 487 (and its timer G retransmissions: nobody ACKs here), never a 407 after it
    assert set(invite_finals) == {b"SIP/2.0 487 Request Terminated"}, starts
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
