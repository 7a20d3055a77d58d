"""The write-back (``runtime.persistence.WriteBack``) and the cached digest-user lookup
(``SubscriberCache``) against a storage that can be switched off: timing of
``db_update_interval``, write-through, outage (serve from memory, count, back off, write
once back), hung database, graceful-stop flush."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from sipsca.auth.model import Subscriber
from sipsca.errors import StorageError
from sipsca.runtime import persistence
from sipsca.runtime.persistence import MAX_BACKOFF, SubscriberCache, WriteBack
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.storage import MemoryStorage
from sipsca.storage.base import SubscriptionKey

AOR = "sip:1000@example.com"


def sub(n: int, cseq: int = 1) -> Subscription:
    return Subscription(
        subscriber=f"sip:1000@192.0.2.1:{5000 + n}",
        aor=AOR,
        event=ScaEvent.CALL_INFO,
        expires_at=int(time.time()) + 3600,
        state=SubscriptionState.ACTIVE,
        call_id=f"cid-{n}",
        from_tag=f"f{n}",
        to_tag=f"t{n}",
        notify_cseq=cseq,
    )


class FlakyStorage(MemoryStorage):
    """MemoryStorage that fails (or hangs) on demand and counts what it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self._open = True
        self.down = False
        self.hang = 0.0
        self.delay = 0.0
        self.attempts: list[float] = []
        self.saved: Counter[SubscriptionKey] = Counter()
        self.lookups = 0

    async def _gate(self) -> None:
        self.attempts.append(time.monotonic())
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise StorageError("test: database is down")

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        await self._gate()
        await super().save_subscriptions(subscriptions)
        self.saved.update(s.key for s in subscriptions)

    async def delete_subscriptions(self, keys: Sequence[SubscriptionKey]) -> None:
        await self._gate()
        await super().delete_subscriptions(keys)

    async def save_appearances(self, appearances: Sequence[Appearance]) -> None:
        await self._gate()
        await super().save_appearances(appearances)

    async def ping(self) -> None:
        await self._gate()

    async def get_subscriber(self, username: str, domain: str) -> Subscriber | None:
        self.lookups += 1
        await self._gate()
        return await super().get_subscriber(username, domain)


async def stored(storage: MemoryStorage) -> dict[SubscriptionKey, Subscription]:
    return {s.key: s for s in await storage.load_subscriptions()}


async def test_interval_writes_within_the_interval_not_at_once() -> None:
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=1.0)
    wb.start()
    try:
        t0 = time.monotonic()
        wb.save_subscription(sub(1))
        await asyncio.sleep(0.4)
        assert await stored(storage) == {}, "written before the interval"
        while not await stored(storage):
            assert time.monotonic() - t0 < 1.0, "not written within db_update_interval"
            await asyncio.sleep(0.01)
        assert wb.pending == 0 and wb.healthy
    finally:
        await wb.close()


async def test_changes_during_a_write_are_written_within_the_interval() -> None:
    """A change queued while a slow batch is being written still reaches the database within
    ``interval`` (the next batch starts early by the recent write duration)."""
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=1.0)
    wb.start()
    try:
        storage.delay = 0.15
        wb.save_subscription(sub(1))
        while not storage.attempts:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        changed = time.monotonic()  # the first batch is being written now
        wb.save_subscription(sub(2))
        while sub(2).key not in await stored(storage):
            assert time.monotonic() - changed < 1.0, "change older than the interval not stored"
            await asyncio.sleep(0.01)
    finally:
        await wb.close()


async def test_write_through_and_coalescing() -> None:
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=0)
    wb.start()
    try:
        wb.save_subscription(sub(1, cseq=1))
        await asyncio.sleep(0.05)
        assert (await stored(storage))[sub(1).key].notify_cseq == 1
        storage.delay = 0.2
        for cseq in range(2, 30):  # one write in flight, the rest coalesced into one batch
            wb.save_subscription(sub(1, cseq=cseq))
            await asyncio.sleep(0.01)
        storage.delay = 0
        await asyncio.sleep(0.5)
        assert (await stored(storage))[sub(1).key].notify_cseq == 29
        assert storage.saved[sub(1).key] <= 4
    finally:
        await wb.close()


async def test_unsubscribe_is_written_at_once_whatever_the_interval() -> None:
    """A finished subscription must not come back after a crash: deletes do not wait."""
    storage = FlakyStorage()
    await storage.save_subscriptions([sub(1)])
    wb = WriteBack(storage, interval=300)
    wb.start()
    try:
        wb.delete_subscription(sub(1).key)
        await asyncio.sleep(0.2)
        assert await stored(storage) == {}
    finally:
        await wb.close()


async def test_unsubscribes_do_not_drag_other_changes_forward() -> None:
    """Only the deletes go out at once: saves queued beside them keep their deadline, also
    after a delete that failed and was retried."""
    storage = FlakyStorage()
    await storage.save_subscriptions([sub(1)])
    wb = WriteBack(storage, interval=1.0)
    wb.start()
    try:
        t0 = time.monotonic()
        wb.save_subscription(sub(2))
        wb.save_appearance(Appearance(aor=AOR, index=1, state=AppearanceState.SEIZED, owner="x"))
        wb.delete_subscription(sub(1).key)
        await asyncio.sleep(0.2)
        assert await stored(storage) == {}, "the delete waited or a save went out with it"
        assert await storage.load_appearances() == [], "a save went out with the delete"
        storage.down = True
        wb.delete_subscription(sub(2).key)
        wb.save_subscription(sub(3))
        await asyncio.sleep(0.2)
        storage.down = False
        while sub(3).key not in await stored(storage):
            assert time.monotonic() - t0 < 2.5, "the save was not written after the outage"
            await asyncio.sleep(0.01)
        assert set(await stored(storage)) == {sub(3).key}
        assert len(await storage.load_appearances()) == 1
        assert wb.pending == 0
    finally:
        await wb.close()


async def test_a_large_batch_is_written_in_chunks_each_its_own_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows are built on the event loop: a big batch goes out WRITE_CHUNK at a time (the
    loop gets a turn between chunks) and still arrives whole; a chunk that fails puts the
    whole batch back, and rewriting the chunks that were committed is harmless."""
    monkeypatch.setattr(persistence, "WRITE_CHUNK", 4)
    storage = FlakyStorage()
    sizes: list[int] = []
    save = storage.save_subscriptions

    async def recording(subscriptions: Sequence[Subscription]) -> None:
        sizes.append(len(subscriptions))
        if len(sizes) == 2:
            raise StorageError("test: second chunk fails")
        await save(subscriptions)

    storage.save_subscriptions = recording  # type: ignore[method-assign]
    wb = WriteBack(storage, interval=60)
    for n in range(10):
        wb.save_subscription(sub(n))
    with pytest.raises(StorageError):
        await wb.flush()
    assert sizes == [4, 4] and wb.pending == 10  # the whole batch is queued again
    await wb.flush()
    assert sizes == [4, 4, 4, 4, 2]
    assert set(await stored(storage)) == {sub(n).key for n in range(10)}


async def test_outage_serves_from_memory_backs_off_and_writes_everything_once_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[str] = []
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=0, on_error=errors.append)
    wb.start()
    caplog.set_level(logging.DEBUG, logger="sipsca.runtime.persistence")
    try:
        storage.down = True
        start = time.monotonic()
        for n in range(200):  # every change wakes a write-through writer... but not in an outage
            wb.save_subscription(sub(n % 5, cseq=n))
            wb.save_appearance(Appearance(aor=AOR, index=1, state=AppearanceState.SEIZED))
            await asyncio.sleep(0.01)
        assert time.monotonic() - start < 4, "queueing a change must never wait for storage"
        assert not wb.healthy and wb.failures >= 2 and errors[:1] == ["write"]
        assert len(storage.attempts) <= 6, f"no backoff: {len(storage.attempts)} attempts"
        gaps = [b - a for a, b in itertools.pairwise(storage.attempts)]
        assert all(b >= a * 1.5 for a, b in itertools.pairwise(gaps)), gaps
        assert (
            sum("database write failed, serving from memory" in r.message for r in caplog.records)
            == 1
        )
        assert wb.pending == 6
        storage.down = False
        deadline = time.monotonic() + MAX_BACKOFF + 1
        while wb.pending or not wb.healthy:
            assert time.monotonic() < deadline, "not written after the database came back"
            await asyncio.sleep(0.05)
        got = await stored(storage)
        assert {k: s.notify_cseq for k, s in got.items()} == {
            sub(n).key: 195 + n for n in range(5)
        }, "newest change wins"
        assert all(storage.saved[sub(n).key] == 1 for n in range(5)), storage.saved
        assert await storage.load_appearances()
        assert any("database is back" in r.message for r in caplog.records)
    finally:
        await wb.close()


async def test_idle_writer_notices_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing to write: the database is pinged every ``probe_interval``, so an outage is
    logged, counted and visible (``healthy``) before a change needs writing."""
    storage = FlakyStorage()
    errors: list[str] = []
    wb = WriteBack(storage, interval=300, on_error=errors.append, probe_interval=0.2)
    wb.start()
    try:
        await asyncio.sleep(0.3)
        assert wb.healthy and storage.attempts, "no probe while idle"
        storage.down = True
        deadline = time.monotonic() + 3
        while wb.healthy:
            assert time.monotonic() < deadline, "outage not noticed"
            await asyncio.sleep(0.05)
        assert errors[0] == "ping"
        assert any("database ping failed, serving from memory" in r.message for r in caplog.records)
        storage.down = False
        deadline = time.monotonic() + MAX_BACKOFF + 1
        while not wb.healthy:
            assert time.monotonic() < deadline, "recovery not noticed"
            await asyncio.sleep(0.05)
        assert any("database is back" in r.message for r in caplog.records)
    finally:
        await wb.close()


def test_backoff_is_capped() -> None:
    assert 1 <= MAX_BACKOFF <= 30


async def test_hung_database_times_out_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persistence, "MIN_BACKOFF", 0.05)
    storage = FlakyStorage()
    errors: list[str] = []
    wb = WriteBack(storage, interval=0, on_error=errors.append, op_timeout=0.2)
    wb.backoff = 0.05
    wb.start()
    try:
        storage.hang = 3600
        wb.save_subscription(sub(1))
        await asyncio.sleep(0.4)
        assert errors and not wb.healthy
        storage.hang = 0
        deadline = time.monotonic() + MAX_BACKOFF + 1
        while not wb.healthy:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert sub(1).key in await stored(storage)
    finally:
        await wb.close()


async def test_graceful_stop_flushes_also_a_batch_cut_off_mid_write() -> None:
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=0)
    wb.start()
    storage.delay = 0.3
    wb.save_subscription(sub(1))
    await asyncio.sleep(0.1)  # the write of sub 1 is in flight
    wb.save_subscription(sub(2))
    storage.delay = 0
    await wb.close()  # cancels the writer mid-write: the batch must be requeued and written
    assert set(await stored(storage)) == {sub(1).key, sub(2).key}
    assert wb.pending == 0


async def test_graceful_stop_with_the_database_down_gives_up_in_bounded_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=300)
    wb.start()
    wb.save_subscription(sub(1))
    storage.down = True
    start = time.monotonic()
    await wb.close(stop_timeout=0.8)
    assert time.monotonic() - start < 2
    assert any("final database write failed, 1 changes lost" in r.message for r in caplog.records)


# -- digest users ----------------------------------------------------------------------------

ALICE = Subscriber("alice", "example.com", "a" * 32, "b" * 64)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_subscriber_cache_hits_expiry_and_negative_entries() -> None:
    storage = FlakyStorage()
    await storage.add_subscriber(ALICE)
    clock = Clock()
    cache = SubscriberCache(storage, ttl=30, negative_ttl=5, clock=clock)
    assert await cache.get("alice", "example.com") == ALICE
    assert await cache.get("alice", "example.com") == ALICE
    assert storage.lookups == 1
    clock.now += 31
    assert await cache.get("alice", "example.com") == ALICE
    assert storage.lookups == 2
    assert await cache.get("bob", "example.com") is None
    assert await cache.get("bob", "example.com") is None
    assert storage.lookups == 3
    clock.now += 6
    assert await cache.get("bob", "example.com") is None
    assert storage.lookups == 4


async def test_subscriber_cache_during_an_outage() -> None:
    storage = FlakyStorage()
    await storage.add_subscriber(ALICE)
    clock = Clock()
    errors: list[str] = []
    cache = SubscriberCache(
        storage, ttl=30, stale_ttl=600, retry_after=1, clock=clock, on_error=errors.append
    )
    assert await cache.get("alice", "example.com") == ALICE
    storage.down = True
    clock.now += 60  # entry stale: the database is asked, fails, the stale entry is used
    assert await cache.get("alice", "example.com") == ALICE
    assert errors == ["auth"]
    with pytest.raises(StorageError):  # unknown user: cannot tell -> caller answers 503
        await cache.get("carol", "example.com")
    lookups = storage.lookups
    with pytest.raises(StorageError):  # within retry_after: fail fast, no database call
        await cache.get("carol", "example.com")
    assert storage.lookups == lookups
    clock.now += 700  # too stale to trust
    with pytest.raises(StorageError):
        await cache.get("alice", "example.com")
    storage.down = False
    clock.now += 2  # after retry_after the database is asked again
    assert await cache.get("alice", "example.com") == ALICE


async def test_subscriber_lookup_is_bounded_in_time() -> None:
    storage = FlakyStorage()
    storage.hang = 3600
    cache = SubscriberCache(storage, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(StorageError, match="timed out"):
        await cache.get("alice", "example.com")
    assert time.monotonic() - start < 1


async def test_a_change_in_the_same_turn_as_the_stop_neither_delays_nor_loses_it() -> None:
    """A change wakes the idle writer and the stop cancels it in the same loop turn: the
    stop must still end at once with everything written. ``asyncio.wait_for`` (Python
    3.11) swallowed a cancel that arrived as the awaited event fired, so the writer went on
    waiting and the stop ran into its time-out (5 s) and reported the changes lost."""
    storage = FlakyStorage()
    wb = WriteBack(storage, interval=60)
    wb.start()
    await asyncio.sleep(0.05)  # the writer waits, idle
    wb.save_subscription(sub(1))  # first change: sets the wake event
    started = time.monotonic()
    await wb.close(stop_timeout=3.0)  # cancels the writer in this same turn
    assert time.monotonic() - started < 1.0
    assert set(await stored(storage)) == {sub(1).key}
    assert wb.pending == 0
