"""Parser and serialiser micro-benchmark for sipsca.sip (single core, no I/O).

Usage::

    .venv/bin/python bench/bench_parse.py --seconds 2

For each sample message it prints:

* ``parse/s``: ``parse_message(data)`` alone (start line, header split, Content-Length);
* ``parse+read/s``: parse, then the accessors every request pays for in the server
  (Call-ID, CSeq, top Via, From/To tags) plus ``validate_request`` / ``validate_response``;
* ``serialise/s``: ``to_bytes()`` of an unchanged parsed message (a proxy forwarding it);
* ``edit+ser/s``: prepend a Via, decrement Max-Forwards, then ``to_bytes()``.

Each message is cycled through ``--variants`` copies that differ in their Via branches, tags
and Call-ID, as consecutive requests do, so the memo caches of URI, name-addr and Via parsing
only help where a real server's would (the To AOR, hosts, unchanged URIs). Every loop is
bounded by both ``--seconds`` and ``--max-iterations``; results are the best of ``--repeat``
runs. No assertion is made here: the numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import re
import sys
import time
from collections.abc import Callable

from sipsca.sip import SipRequest, parse_message, validate_request, validate_response

SUBSCRIBE = (
    b"SUBSCRIBE sip:1000@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;transport=udp>;"
    b'+sip.instance="<urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3>"\r\n'
    b"To: <sip:1000@example.com>\r\n"
    b'From: "Alice" <sip:1001@example.com>;tag=8f7e6d5c\r\n'
    b"Call-ID: 4b6f2a1c9d8e7f60@192.0.2.10\r\n"
    b"CSeq: 2 SUBSCRIBE\r\n"
    b"Expires: 3600\r\n"
    b"Event: call-info\r\n"
    b"Accept: application/x-broadworks-call-info\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, SUBSCRIBE\r\n"
    b"User-Agent: PolycomVVX-VVX_411-UA/5.9.5.0614\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10:49152;branch=z9hG4bK-reg-77a1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@example.com>;tag=reg1001\r\n"
    b"To: <sip:1001@example.com>\r\n"
    b"Call-ID: reg-1001-3b2c1d@192.0.2.10\r\n"
    b"CSeq: 42 REGISTER\r\n"
    b"Contact: <sip:1001@192.0.2.10:49152;transport=tcp;ob>;reg-id=1;"
    b'+sip.instance="<urn:uuid:6f1d0b2a-1c2d-4e5f-8a9b-0004f2a1b2c3>"\r\n'
    b"Expires: 600\r\n"
    b"Supported: path, gruu, outbound\r\n"
    b"User-Agent: PolycomVVX-VVX_411-UA/5.9.5.0614\r\n"
    b'Authorization: Digest username="1001", realm="example.com", nonce="6a1b2c3d4e5f", '
    b'uri="sip:example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5, '
    b'qop=auth, nc=00000001, cnonce="ab12"\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)

NOTIFY = (
    b"NOTIFY sip:1001@192.0.2.10:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-notify-19\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1000@example.com>;tag=sca-77\r\n"
    b"To: <sip:1001@example.com>;tag=8f7e6d5c\r\n"
    b"Call-ID: 4b6f2a1c9d8e7f60@192.0.2.10\r\n"
    b"CSeq: 5 NOTIFY\r\n"
    b"Contact: <sip:198.51.100.1:5060>\r\n"
    b"Event: call-info\r\n"
    b"Subscription-State: active;expires=3547\r\n"
    b"Call-Info: <sip:example.com>;appearance-index=1;appearance-state=active;"
    b'appearance-uri="\\"Bob\\" <sip:1002@example.com>",<sip:example.com>;appearance-index=2;'
    b"appearance-state=held,<sip:example.com>;appearance-index=*;appearance-state=idle\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SDP = (
    "v=0\r\n"
    "o=1001 1700000000 1700000000 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 16384 RTP/AVP 9 0 8 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)
INVITE = (
    "INVITE sip:1002@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv-5;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:1001@example.com>;tag=inv1001\r\n'
    "To: <sip:1002@example.com>\r\n"
    "Call-ID: inv-9d8e7f6a5b4c@192.0.2.10\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.10:5060>\r\n"
    "Call-Info: <sip:example.com>;appearance-index=2\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, UPDATE\r\n"
    "Supported: replaces, timer\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n" + SDP
).encode()

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-p-1;received=198.51.100.1\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv-5;rport=5060;received=192.0.2.10\r\n"
    b"Record-Route: <sip:198.51.100.1;lr>\r\n"
    b'From: "Alice" <sip:1001@example.com>;tag=inv1001\r\n'
    b"To: <sip:1002@example.com>;tag=b0b-2\r\n"
    b"Call-ID: inv-9d8e7f6a5b4c@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1002@192.0.2.20:5060>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

MESSAGES: dict[str, bytes] = {
    "REGISTER": REGISTER,
    "SUBSCRIBE call-info": SUBSCRIBE,
    "NOTIFY Call-Info": NOTIFY,
    "INVITE + SDP": INVITE,
    "200 OK": OK,
}


_UNIQUE_RE = re.compile(rb"(branch=z9hG4bK|tag=|Call-ID: )")


def variants(data: bytes, count: int) -> list[bytes]:
    """``count`` copies of ``data`` with distinct branches, tags and Call-IDs."""
    return [_UNIQUE_RE.sub(rb"\g<1>v%d-" % i, data) for i in range(count)]


def rate(action: Callable[[], object], seconds: float, max_iterations: int, repeat: int) -> float:
    """Best operations per second over ``repeat`` runs of at most ``seconds`` each."""
    best = 0.0
    for _ in range(repeat):
        done = 0
        batch = 200
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds and done < max_iterations:
            for _ in range(batch):
                action()
            done += batch
            elapsed = time.perf_counter() - start
        best = max(best, done / elapsed)
    return best


def read(data: bytes) -> None:
    msg = parse_message(data)
    _ = (msg.call_id, msg.cseq, msg.top_via.branch, msg.from_tag, msg.to_tag)
    if isinstance(msg, SipRequest):
        validate_request(msg)
    else:
        validate_response(msg)  # type: ignore[arg-type]


def edit_and_serialise(data: bytes) -> bytes:
    msg = parse_message(data)
    msg.headers.prepend("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-proxy-1")
    if isinstance(msg, SipRequest) and msg.max_forwards is not None:
        msg.headers.set("Max-Forwards", str(msg.max_forwards - 1))
    return msg.to_bytes()


def measure(data: bytes, args: argparse.Namespace) -> list[float]:
    """parse/s, parse+read/s, serialise/s and edit+ser/s of ``data`` (and its variants)."""
    pool = variants(data, args.variants)
    parsed = [parse_message(v) for v in pool]
    nxt = itertools.cycle(pool).__next__
    nxt_msg = itertools.cycle(parsed).__next__
    # The pools are long-lived setup data: keep the cyclic GC from rescanning them on every
    # collection, as it would not in a server where messages are short-lived.
    gc.collect()
    gc.freeze()
    try:
        limits = (args.seconds, args.max_iterations, args.repeat)
        return [
            rate(lambda: parse_message(nxt()), *limits),
            rate(lambda: read(nxt()), *limits),
            rate(lambda: nxt_msg().to_bytes(), *limits),
            rate(lambda: edit_and_serialise(nxt()), *limits),
        ]
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per message."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="time per measurement (default 1)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement, best kept (default 3)"
    )
    parser.add_argument(
        "--max-iterations", type=int, default=5_000_000, help="upper bound of operations per run"
    )
    parser.add_argument(
        "--variants",
        type=int,
        default=20_000,
        help="distinct copies of each message (default 20000)",
    )
    args = parser.parse_args(argv)

    impl = platform.python_implementation()
    print(f"Python {platform.python_version()} ({impl}) on {platform.machine()}")
    print(
        f"{'message':<22}{'bytes':>6}{'parse/s':>11}{'parse+read/s':>14}{'serialise/s':>13}{'edit+ser/s':>12}"
    )
    for name, data in MESSAGES.items():
        assert parse_message(data).to_bytes() == data, name  # the samples are canonical
        results = measure(data, args)
        cells = "".join(f"{r:>{w},.0f}" for r, w in zip(results, (11, 14, 13, 12), strict=True))
        print(f"{name:<22}{len(data):>6}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
