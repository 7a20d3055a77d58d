"""Shared pieces of the in-process profiles (``bench/profile_*.py``): no sockets, no SIPp.

A :class:`Harness` runs a real :class:`~sipsca.runtime.app.SipApplication` whose transport
``send`` is captured; fake phones (:class:`Phone`) answer what the server sends them. The
phones' own work (cutting the server's messages apart, building their answers) is timed
separately, so the figures printed are the *server's* cost per cycle, with the phone cost
shown next to it. Times are CPU time of this process (``time.process_time``), which is far
less disturbed than wall time when other work shares the machine; still, compare runs made
in the same minute.

Common options: ``--count``, ``--repeat`` (fresh server each time, best kept),
``--profile`` (cProfile), ``--log-level`` (INFO writes the server's INFO lines to /dev/null,
as in production), ``--no-gc`` (cyclic GC off while measuring), ``--default-gc`` (do not
call ``tune_gc()`` after start-up, as the server does). The time spent in each GC
generation is printed per cycle.

By default the event loop does not run while messages are fed, so no timer fires: every
transaction stays alive for the whole run. ``--rate R`` simulates R cycles per second
instead: the clock advances and due timers fire, so finished transactions end and the live
set reaches its steady state (R x 32 s for timer J); ``--timer-scale 0.1`` shortens T1, T2
and T4 (timer J 3.2 s) to get there in a short run. That is the mode in which GC costs
are representative:

    .venv/bin/python bench/profile_subscribe.py --count 60000 --rate 7000 --timer-scale 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import pstats
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sipsca.config import ServerConfig, SipscaConfig, TransactionConfig
from sipsca.runtime.app import SipApplication
from sipsca.sca.model import Subscription
from sipsca.sip.address import Flow
from sipsca.storage.memory import MemoryStorage

HOST = "127.0.0.1"

Head = tuple[str, dict[str, list[str]], bytes]
"""A message as the fake phones see it: start line, ``{lower-case name: [raw lines]}``, body."""

TUNE_GC = True
"""Call ``sipsca.runtime.app.tune_gc()`` after start-up, as the server does."""

PHONE_CLOCK = time.process_time
"""Times the phones; perf_counter under cProfile (process_time is a system call, and the
profiler charges each one heavily)."""

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
}


def split_message(data: bytes) -> Head:
    """Cut a message into start line, raw header lines by lower-case name, and body (cheap)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name = line[: line.index(":")].strip().lower()
        fields.setdefault(_COMPACT.get(name, name), []).append(line)
    return lines[0], fields, body


def value(line: str) -> str:
    """The value of a raw header line."""
    return line.partition(":")[2].strip()


def response_to(
    msg: Head, status: str, *, to_tag: str = "", extra: str = "", body: str = ""
) -> bytes:
    """A phone's response to a request it received (Via, Record-Route... copied)."""
    _, h, _ = msg
    to = h["to"][0]
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status}", *h["via"], *h.get("record-route", ()), *h["from"], to]
    lines += [*h["call-id"], *h["cseq"]]
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class Phone:
    """A UA at ``udp:127.0.0.1:port``; ``on_message`` returns the datagrams it sends back."""

    def __init__(self, user: str, port: int) -> None:
        self.user = user
        self.port = port
        self.flow = Flow("udp", HOST, port)
        self.received: list[Head] = []
        self.keep = False
        """Keep every message received in :attr:`received` (for scripts that read them)."""

    def on_message(self, msg: Head) -> list[bytes]:
        start = msg[0]
        if start.startswith("NOTIFY "):
            return [response_to(msg, "200 OK")]
        if self.keep:
            self.received.append(msg)
        return []


class SimulatedClock:
    """Time that moves only when told: ``--rate`` runs advance it by 1/rate s per cycle."""

    def __init__(self) -> None:
        self.mono = time.monotonic()
        self.wall = time.time()

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall


RATE = 0.0
"""Cycles per simulated second (``--rate``); 0: time stands still, no timer ever fires."""

TIMER_SCALE = 1.0
"""Factor applied to T1, T2 and T4 (``--timer-scale``): with 0.1, timer J lasts 3.2 s."""


class Harness:
    """A SipApplication on a captured transport plus the phones it talks to."""

    def __init__(self, app: SipApplication) -> None:
        self.app = app
        self._ticks = 0
        self.phones: dict[int, Phone] = {}
        self._sent: list[tuple[bytes, Flow]] = []
        app.transports.send = self._capture  # type: ignore[method-assign]
        self.phone_seconds = 0.0
        self.messages_in = 0
        self.messages_out = 0

    def _capture(self, data: bytes, flow: Flow) -> None:
        self._sent.append((data, flow))

    def tick(self) -> None:
        """One cycle done: with ``--rate``, advance the clock and every 100 cycles fire the
        timers that are due, as the event loop would (finished transactions then end, so
        the number alive reaches the steady state of that rate: rate x 32 s for timer J)."""
        clock = self.app.clock
        if not RATE or not isinstance(clock, SimulatedClock):
            return
        clock.mono += 1.0 / RATE
        clock.wall += 1.0 / RATE
        self._ticks += 1
        if self._ticks % 100 == 0:
            app = self.app
            app.tl.handle_timer(clock.mono)
            app.sca.handle_timer(clock.wall)
            sent = len(self._sent)
            app.pump()
            del self._sent[sent:]  # timer retransmissions: nobody listens

    def add(self, phone: Phone) -> Phone:
        self.phones[phone.port] = phone
        return phone

    def send(self, phone: Phone, data: bytes) -> None:
        """``phone`` sends ``data`` to the server; everything that follows is delivered
        (the phones' answers too) until the server has nothing more to send."""
        app = self.app
        queue = [(data, phone.flow)]
        sent = self._sent
        clock = PHONE_CLOCK
        while queue:
            for data, flow in queue:
                self.messages_in += 1
                app.on_bytes(data, flow)
            queue = []
            if not sent:
                break
            out = sent[:]
            sent.clear()
            self.messages_out += len(out)
            start = clock()
            for data, flow in out:
                target = self.phones.get(flow.port)
                if target is None:
                    continue
                for reply in target.on_message(split_message(data)):
                    queue.append((reply, target.flow))
            self.phone_seconds += clock() - start


class _BenchStorage(MemoryStorage):
    """MemoryStorage that forgets subscription writes: the write-back at stop would store
    every subscription of the run, and MemoryStorage does that in quadratic time."""

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        self._check()


async def start_app(config: SipscaConfig | None = None) -> SipApplication:
    storage = _BenchStorage()
    await storage.open()
    if config is None:
        t = TransactionConfig()
        config = SipscaConfig(
            server=ServerConfig(domains=(HOST,)),
            transaction=TransactionConfig(
                t1=t.t1 * TIMER_SCALE, t2=t.t2 * TIMER_SCALE, t4=t.t4 * TIMER_SCALE
            ),
        )
    app = SipApplication(config, storage, clock=SimulatedClock() if RATE else None)
    await app.start((f"udp:{HOST}:0",))
    if TUNE_GC:
        from sipsca.runtime import app as app_module

        tune = getattr(app_module, "tune_gc", None)  # absent in older trees
        if tune is not None:
            tune()
    return app


def arguments(doc: str | None, default_count: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=default_count)
    parser.add_argument("--repeat", type=int, default=1, help="fresh server per run, best kept")
    parser.add_argument("--profile", action="store_true", help="cProfile, top 40 by cumulative")
    parser.add_argument("--sort", default="cumtime", help="pstats sort key with --profile")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="root log level; INFO writes the server's INFO lines to /dev/null as in production",
    )
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the cyclic GC while measuring"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="simulate this many cycles per second: timers fire, transactions end (steady state)",
    )
    parser.add_argument("--timer-scale", type=float, default=1.0, help="multiply T1, T2, T4")
    parser.add_argument(
        "--default-gc", action="store_true", help="keep CPython's GC settings (no tune_gc())"
    )
    args = parser.parse_args()
    args.count = max(1, min(args.count, 200_000))
    global PHONE_CLOCK, TUNE_GC, RATE, TIMER_SCALE
    RATE = args.rate
    TIMER_SCALE = args.timer_scale
    if args.profile:
        PHONE_CLOCK = time.perf_counter
    TUNE_GC = not args.default_gc
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives until exit)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    return args


class GcTimer:
    """Counts cyclic-GC runs per generation and the time they take (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info["generation"]
            self.runs[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._start

    def summary(self, count: int) -> str:
        return ", ".join(
            f"gen{g} x{self.runs[g]} {self.seconds[g] / count * 1e6:.1f} us/cycle" for g in range(3)
        )


def measure(
    args: argparse.Namespace,
    label: str,
    setup: Callable[[], Coroutine[Any, Any, Any]],
    body: Callable[[Any], None],
    teardown: Callable[[Any], Coroutine[Any, Any, None]],
    *,
    phone_seconds: Callable[[Any], float],
) -> None:
    """Run ``body(state)`` ``args.repeat`` times on fresh state; print server us per cycle."""

    async def main() -> None:
        results = []
        for _ in range(args.repeat):
            state = await setup()
            profiler = cProfile.Profile() if args.profile else None
            gc.collect()
            if args.no_gc:
                gc.disable()
            with GcTimer() as gc_timer:
                start = time.process_time()
                if profiler is not None:
                    profiler.enable()
                body(state)
                if profiler is not None:
                    profiler.disable()
                elapsed = time.process_time() - start
            gc.enable()
            phone = phone_seconds(state)
            server = elapsed - phone
            results.append((server, phone))
            print(
                f"{label}: {args.count / server:,.0f}/s server side, "
                f"{server / args.count * 1e6:.1f} us each "
                f"(+ {phone / args.count * 1e6:.1f} us fake phones)\n"
                f"  GC: {gc_timer.summary(args.count)}"
            )
            if profiler is not None:
                pstats.Stats(profiler).sort_stats(args.sort).print_stats(40)
            await teardown(state)
        if args.repeat > 1:
            best = min(results)
            print(f"{label}: best {best[0] / args.count * 1e6:.1f} us server side per cycle")

    asyncio.run(main())


def measure_replies(
    args: argparse.Namespace,
    label: str,
    phone: Phone,
    build: Callable[[Harness], list[bytes]],
) -> None:
    """``measure`` for requests answered by exactly one response each (OPTIONS, REGISTER):
    ``build`` makes the request datagrams, every one must get its reply, the last a 200."""

    async def setup() -> tuple[Harness, list[bytes]]:
        harness = Harness(await start_app())
        harness.add(phone)
        return harness, build(harness)

    def body(state: tuple[Harness, list[bytes]]) -> None:
        harness, messages = state
        app, flow = harness.app, phone.flow
        for message in messages:
            app.on_bytes(message, flow)
            harness.tick()
        assert len(harness._sent) == len(messages), len(harness._sent)
        assert harness._sent[-1][0].startswith(b"SIP/2.0 200 OK\r\n")

    async def teardown(state: tuple[Harness, list[bytes]]) -> None:
        await state[0].app.stop()

    measure(args, label, setup, body, teardown, phone_seconds=lambda state: 0.0)
