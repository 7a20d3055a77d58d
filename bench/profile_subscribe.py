"""In-process profile of the call-info SUBSCRIBE path (no sockets).

Feeds N SUBSCRIBE datagrams for distinct lines into a SipApplication whose transport send
is captured, answers every NOTIFY with 200, and prints cycles/s. With ``--profile`` it
prints the top functions by cumulative time. Bounded by ``--count``.

    .venv/bin/python bench/profile_subscribe.py --count 5000 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import time

from sipsca.config import ServerConfig, SipscaConfig
from sipsca.runtime.app import SipApplication
from sipsca.sip.address import Flow
from sipsca.sip.parser import parse_message
from sipsca.storage.memory import MemoryStorage

TEMPLATE = (
    "SUBSCRIBE sip:{u}@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:15082;branch=z9hG4bK{u}x;rport\r\n"
    "From: <sip:{u}@127.0.0.1>;tag=a{u}\r\n"
    "To: <sip:{u}@127.0.0.1>\r\n"
    "Call-ID: sub{u}\r\n"
    "CSeq: 1 SUBSCRIBE\r\n"
    "Contact: <sip:{u}@127.0.0.1:15082>\r\n"
    "Event: call-info\r\n"
    "Expires: 3600\r\n"
    "Max-Forwards: 70\r\n"
    "User-Agent: SIPp benchmark phone 3.7\r\n"
    "Accept: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _ok(notify: bytes) -> bytes:
    msg = parse_message(notify)
    h = msg.headers
    return (
        f"SIP/2.0 200 OK\r\nVia: {h.get('via')}\r\nFrom: {h.get('from')}\r\nTo: {h.get('to')}\r\n"
        f"Call-ID: {h.get('call-id')}\r\nCSeq: {h.get('cseq')}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def run(count: int, profile: bool) -> None:
    storage = MemoryStorage()
    await storage.open()
    app = SipApplication(SipscaConfig(server=ServerConfig(domains=("127.0.0.1",))), storage)
    await app.start(("udp:127.0.0.1:0",))
    sent: list[bytes] = []
    app.transports.send = lambda data, flow: sent.append(data)  # type: ignore[method-assign]
    source = Flow("udp", "127.0.0.1", 15082)
    messages = [TEMPLATE.format(u=100000 + i).encode() for i in range(count)]
    profiler = cProfile.Profile()
    start = time.perf_counter()
    if profile:
        profiler.enable()
    for message in messages:
        app.on_bytes(message, source)
        replies = [_ok(d) for d in sent if d.startswith(b"NOTIFY")]
        sent.clear()
        for reply in replies:
            app.on_bytes(reply, source)
        sent.clear()
    if profile:
        profiler.disable()
    elapsed = time.perf_counter() - start
    print(f"{count / elapsed:,.0f} SUBSCRIBE+202+NOTIFY+200 cycles/s ({elapsed / count * 1e6:.0f} us each)")
    if profile:
        pstats.Stats(profiler).sort_stats("cumtime").print_stats(40)
    await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(min(args.count, 200_000), args.profile))


if __name__ == "__main__":
    main()
