"""Write-back of many changed subscriptions: batch time and the worst event-loop gap.

Saves ``--count`` call-info subscriptions through a :class:`WriteBack` ``--rounds`` times
(every round changes each one's NOTIFY CSeq, as a busy minute does), against any backend,
and prints how long each flush took and the longest the event loop went without a turn.

    .venv/bin/python bench/bench_writeback.py --count 20000 --db-url sqlite:////tmp/wb.sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from sipsca.runtime.persistence import WriteBack
from sipsca.sca.model import ScaEvent, Subscription, SubscriptionState
from sipsca.storage.registry import open_storage


def subscriptions(count: int, cseq: int) -> list[Subscription]:
    return [
        Subscription(
            subscriber=f"sip:m{i}@127.0.0.1:{20000 + i % 20000}",
            aor=f"sip:line{i % 10000:05d}@127.0.0.1",
            event=ScaEvent.CALL_INFO,
            expires_at=2_000_000_000,
            state=SubscriptionState.ACTIVE,
            call_id=f"wb-{i}",
            from_tag=f"f{i}",
            to_tag=f"t{i}",
            notify_cseq=cseq,
            subscribe_cseq=1,
        )
        for i in range(count)
    ]


async def timed_with_loop_gap(work: Coroutine[Any, Any, None]) -> tuple[float, float]:
    """Seconds ``work`` took, and the longest the loop went without a turn meanwhile."""
    worst = 0.0
    task = asyncio.ensure_future(work)
    start = last = time.perf_counter()
    while not task.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    await task
    return time.perf_counter() - start, worst


async def main(args: argparse.Namespace) -> None:
    storage = open_storage(args.db_url)
    await storage.open()
    await storage.init_schema()
    writeback = WriteBack(storage, interval=60)
    try:
        for cseq in range(1, args.rounds + 1):
            for sub in subscriptions(args.count, cseq):
                writeback.save_subscription(sub)
            elapsed, worst = await timed_with_loop_gap(writeback.flush())
            print(
                f"round {cseq}: {args.count} subscriptions written in {elapsed * 1000:.0f} ms,"
                f" worst event-loop gap {worst * 1000:.1f} ms"
            )
    finally:
        await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db-url", default="sqlite:////tmp/sipsca-bench-writeback.sqlite")
    asyncio.run(main(parser.parse_args()))
