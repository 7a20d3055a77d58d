"""Micro-benchmark: non-INVITE server transactions per second through the transaction layer.

Each transaction is what an OPTIONS/REGISTER costs the layer: ``receive_request`` (new
server transaction, RequestReceived), ``send_response`` with a final (serialise, 18.2.2
destination, Completed, timer J armed), ``get_timer`` as the runtime re-arms after every
input, and finally timer J firing (TransactionTerminated). Requests arrive at a simulated
15,000/s over UDP with the default timers, so J (32 s) fires in one batch at the end, with
the heap holding every transaction, as in steady state.

Three variants: the layer alone (requests parsed and responses built beforehand), plus the
TU's ``make_response``, plus ``parse_message`` of the datagram (the whole per-request core
path of a stateful UDP server, minus the socket). Bounded loops, no assertions::

    .venv/bin/python bench/bench_transactions.py [--n 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from typing import cast

from sipsca.config import TransactionConfig
from sipsca.sip import SipRequest, SipResponse, make_response, parse_message
from sipsca.sip.address import Flow
from sipsca.transaction import RequestReceived, TransactionLayer

SOURCE = Flow("udp", "192.0.2.10", 5060)
RATE = 15_000.0

TEMPLATE = (
    "OPTIONS sip:sipsca.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{n:08d};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.com>;tag=a{n}\r\n"
    "To: <sip:sipsca.example.com>\r\n"
    "Call-ID: bench-{n}@192.0.2.10\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def datagrams(n: int) -> list[bytes]:
    return [TEMPLATE.format(n=i).encode() for i in range(n)]


def new_layer() -> TransactionLayer:
    counter = itertools.count()
    return TransactionLayer(TransactionConfig(), branch_factory=lambda: str(next(counter)))


def run(n: int, variant: str) -> float:
    """Seconds for ``n`` transactions of ``variant`` (``layer``, ``tu`` or ``wire``)."""
    raw = datagrams(n)
    requests: list[SipRequest] = []
    responses: list[SipResponse] = []
    if variant != "wire":
        for data in raw:
            req = parse_message(data)
            assert isinstance(req, SipRequest)
            requests.append(req)
        if variant == "layer":
            responses = [make_response(req, 200, to_tag="b") for req in requests]
    layer = new_layer()
    receive, send, get_timer = layer.receive_request, layer.send_response, layer.get_timer
    next_event, to_send = layer.next_event, layer.messages_to_send
    # The inputs built above are not part of the measurement: keep the cyclic GC from
    # traversing them (the transactions' own objects are still collected as usual).
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    now = 0.0
    step = 1.0 / RATE
    wire, prebuilt = variant == "wire", variant == "layer"
    for i in range(n):
        now += step
        req = cast(SipRequest, parse_message(raw[i])) if wire else requests[i]
        receive(req, source=SOURCE, now=now)
        event = cast(RequestReceived, next_event())
        resp = responses[i] if prebuilt else make_response(req, 200, to_tag="b")
        send(resp, now=now, key=event.key)
        to_send()
        get_timer()
    layer.handle_timer(now + 64 * 0.5 + 1)
    while next_event() is not None:
        pass
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="transactions per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (best is reported)")
    args = parser.parse_args()
    labels = {
        "layer": "layer only (receive + final + timer J)",
        "tu": "layer + make_response",
        "wire": "layer + make_response + parse_message",
    }
    print(f"non-INVITE server transactions, n={args.n}, best of {args.repeat}")
    for variant, label in labels.items():
        best = min(run(args.n, variant) for _ in range(args.repeat))
        rate, micros = args.n / best, best / args.n * 1e6
        print(f"  {label:<42} {rate:>10,.0f} transactions/s  ({micros:.1f} us each)")


if __name__ == "__main__":
    main()
