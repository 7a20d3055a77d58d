"""Write-back of subscriptions, appearances and bindings to storage, and the cached
subscriber lookup of digest authentication.

Changes are coalesced per key in memory and written in batches (:class:`WriteBack`):

* ``db_update_interval`` > 0 (Kamailio's semantics): a change reaches the database at most
  ``interval`` seconds after it happened. The batch is started a little before that deadline
  (by twice the duration of recent writes, at most half the interval), so "acknowledged more
  than ``db_update_interval`` seconds ago" means "committed", also across a ``kill -9``.
* ``0``: write-through, every change is written at once (changes arriving during a write go
  into the next one).
* Deleting a subscription (unsubscribe, expiry, RPC deactivation) is written at once whatever
  the interval, so a finished subscription cannot come back after a crash. Only the deletes
  go out early: the other queued changes keep their deadline, so a steady stream of
  unsubscribes does not turn the write-back into write-through.

A failing database never stops SIP service: SIP handling never waits for a write, the failed
batch stays queued (merged with newer changes, newest wins), the writer retries with
exponential backoff (0.5 s doubling to :data:`MAX_BACKOFF`), every failure is logged once per
outage and counted (``sipsca_db_errors_total{op="write"}``), and everything is written once
the database is back (writes are idempotent upserts). Each attempt is bounded by
``op_timeout`` so a hung database cannot wedge the writer; while there is nothing to write the
database is pinged every ``probe_interval`` so an outage shows before a change needs writing.
:meth:`WriteBack.close` (graceful stop) lets a write in progress finish, then writes everything,
retrying for a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from sipsca.auth.model import Subscriber
from sipsca.errors import StorageError
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, Subscription
from sipsca.storage.base import AppearanceKey, BindingKey, Storage, SubscriptionKey

__all__ = ["MAX_BACKOFF", "MIN_BACKOFF", "SubscriberCache", "WriteBack"]

logger = logging.getLogger(__name__)

MIN_BACKOFF = 0.5
"""Seconds before the first retry of a failed write."""
MAX_BACKOFF = 5.0
"""Longest pause between two retries during a database outage."""
OP_TIMEOUT = 20.0
"""Seconds one batch may take before it counts as failed (a hung database)."""
PROBE_INTERVAL = 30.0
"""Seconds without anything to write after which the database is pinged."""
STOP_TIMEOUT = 5.0
"""Seconds a graceful stop may spend on the final write, retries included."""
WRITE_CHUNK = 2000
"""Rows per storage call (one transaction each). The rows of a call are built on the event
loop, about 2.5 us each: 20,000 at once stalled it for 50 ms, 2,000 take 5 ms."""

_T = TypeVar("_T")


async def _in_chunks(write: Callable[[list[_T]], Awaitable[None]], items: list[_T]) -> None:
    for start in range(0, len(items), WRITE_CHUNK):
        await write(items[start : start + WRITE_CHUNK])


class WriteBack:
    """Coalescing, retrying writer in front of a :class:`Storage`."""

    def __init__(
        self,
        storage: Storage,
        *,
        interval: float,
        on_error: Callable[[str], None] | None = None,
        observe: Callable[[str, float], None] | None = None,
        op_timeout: float = OP_TIMEOUT,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.storage = storage
        self.probe_interval = probe_interval
        self.interval = max(0.0, float(interval))
        self.op_timeout = op_timeout
        self.subs: dict[SubscriptionKey, Subscription | None] = {}
        self.apps: dict[AppearanceKey, Appearance | None] = {}
        self.binds: dict[BindingKey, Binding | None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._on_error = on_error
        self._observe = observe
        self._oldest: float | None = None
        """Monotonic time of the oldest change not written yet (None: nothing queued)."""
        self._urgent: set[SubscriptionKey] = set()
        """Subscription deletes queued to be written at once."""
        self._slowest = 0.0
        """Recent write duration (decaying maximum): how early a batch must start."""
        self._warned = -math.inf
        self.backoff = MIN_BACKOFF
        self.failures = 0
        self.writes = 0
        self.healthy = True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sipsca-writeback")

    @property
    def pending(self) -> int:
        return len(self.subs) + len(self.apps) + len(self.binds)

    def save_subscription(self, sub: Subscription) -> None:
        self.subs[sub.key] = sub
        self._changed()

    def delete_subscription(self, key: SubscriptionKey) -> None:
        self.subs[key] = None
        self._urgent.add(key)
        self._changed(urgent=True)

    def save_appearance(self, app: Appearance) -> None:
        self.apps[(app.aor, app.index)] = app
        self._changed()

    def delete_appearance(self, key: AppearanceKey) -> None:
        self.apps[key] = None
        self._changed()

    def save_binding(self, binding: Binding) -> None:
        self.binds[(binding.aor, binding.contact)] = binding
        self._changed()

    def delete_binding(self, key: BindingKey) -> None:
        self.binds[key] = None
        self._changed()

    def _changed(self, *, urgent: bool = False) -> None:
        first = self._oldest is None
        if first:
            self._oldest = time.monotonic()
        if first or urgent or self.interval == 0:
            self._wake.set()

    def due(self) -> float | None:
        """Monotonic time the next batch must start (None: nothing queued)."""
        if self._oldest is None or not self.pending:
            return None
        if self.interval == 0 or self._urgent:
            return self._oldest
        return self._deadline()

    def _deadline(self) -> float:
        assert self._oldest is not None
        lead = min(self.interval / 2, 2 * self._slowest + 0.1)
        return self._oldest + self.interval - lead

    async def _wait_due(self) -> bool:
        """Wait until a batch is due (True), or ``probe_interval`` idle seconds (False)."""
        idle_until = time.monotonic() + self.probe_interval
        while True:
            self._wake.clear()
            due = self.due()
            now = time.monotonic()
            if due is not None and due <= now:
                return True
            if due is None and now >= idle_until:
                return False
            timeout = (due if due is not None else idle_until) - now
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the event fires (a change in the same turn as the stop), and the
            # stop then waited out its time-out and reported the changes lost.
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _run(self) -> None:
        while True:
            if self.healthy:
                due = await self._wait_due()
            else:
                # During an outage, changes do not trigger attempts: only the backoff does.
                await asyncio.sleep(self.backoff)
                due = True
            try:
                if self.pending:
                    early = bool(self._urgent) and self.interval > 0
                    await self.flush(urgent_only=early and time.monotonic() < self._deadline())
                elif not due or not self.healthy:
                    await self.probe()
                self.backoff = MIN_BACKOFF
            except StorageError:
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            except Exception:  # a bug must not kill the writer: the queue is kept
                logger.exception("unexpected error in the database writer")
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)
                await asyncio.sleep(self.backoff)  # never a hot loop, even while "healthy"

    async def probe(self) -> None:
        """Ping the database while idle, so an outage shows (log, counter, ``healthy``) before
        a change has to be written."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.op_timeout):
                    await self.storage.ping()
            except TimeoutError:
                error = StorageError(f"database ping timed out after {self.op_timeout:g} s")
                self._failed(error, "ping")
            except StorageError as exc:
                self._failed(exc, "ping")
            if not self.healthy:
                logger.warning("database is back: nothing was queued")
            self.healthy = True

    def _failed(self, exc: StorageError, op: str = "write") -> NoReturn:
        """Count and log (once per outage) a failed attempt, then raise it."""
        self.failures += 1
        if self.healthy:
            logger.error("database %s failed, serving from memory and retrying: %s", op, exc)
        else:
            logger.debug("database %s failed again: %s", op, exc)
        self.healthy = False
        if self._on_error is not None:
            self._on_error(op)
        raise exc

    async def flush(self, *, urgent_only: bool = False) -> None:
        """Write everything queued (or only the subscription deletes due at once); on failure
        the queue is kept (and merged with newer changes)."""
        async with self._lock:
            if not self.pending:
                self._oldest = None
                self._urgent.clear()
                return
            oldest = self._oldest
            if urgent_only:
                subs = {k: self.subs.pop(k) for k in self._urgent if k in self.subs}
                apps: dict[AppearanceKey, Appearance | None] = {}
                binds: dict[BindingKey, Binding | None] = {}
                if not self.pending:
                    self._oldest = None
            else:
                subs, apps, binds = self.subs, self.apps, self.binds
                self.subs, self.apps, self.binds = {}, {}, {}
                self._oldest = None
            self._urgent.clear()
            start = time.perf_counter()
            try:
                async with asyncio.timeout(self.op_timeout):
                    await self._write(subs, apps, binds)
            except BaseException as exc:
                # Newer changes win over the failed batch; nothing is lost, also when the
                # task is cancelled (graceful stop) in the middle of a write.
                subs.update(self.subs)
                apps.update(self.apps)
                binds.update(self.binds)
                self.subs, self.apps, self.binds = subs, apps, binds
                self._urgent.update(k for k, v in subs.items() if v is None)
                self._oldest = min(
                    oldest if oldest is not None else math.inf,
                    self._oldest if self._oldest is not None else math.inf,
                )
                if isinstance(exc, TimeoutError):
                    exc = StorageError(f"database write timed out after {self.op_timeout:g} s")
                if not isinstance(exc, Exception):
                    raise  # cancelled: requeued, not a database failure
                if not isinstance(exc, StorageError):
                    raise  # a bug, not an outage: logged by the writer loop, queue kept
                self._failed(exc)
            duration = time.perf_counter() - start
            self._slowest = max(duration, self._slowest * 0.9)
            if 0 < self.interval < 2 * duration and time.monotonic() > self._warned + 60:
                self._warned = time.monotonic()
                logger.warning(
                    "database write of %d changes took %.3f s, more than half of"
                    " db_update_interval (%g s): changes may reach the database later than"
                    " the interval; raise db_update_interval or speed up the database",
                    len(subs) + len(apps) + len(binds),
                    duration,
                    self.interval,
                )
            self.writes += 1
            if not self.healthy:
                logger.warning(
                    "database is back: wrote %d queued changes", len(subs) + len(apps) + len(binds)
                )
            self.healthy = True
            if self._observe is not None:
                self._observe("write", duration)

    async def _write(
        self,
        subs: dict[SubscriptionKey, Subscription | None],
        apps: dict[AppearanceKey, Appearance | None],
        binds: dict[BindingKey, Binding | None],
    ) -> None:
        storage = self.storage
        if subs:
            saved = [s for s in subs.values() if s is not None]
            deleted = [k for k, s in subs.items() if s is None]
            await _in_chunks(storage.save_subscriptions, saved)
            await _in_chunks(storage.delete_subscriptions, deleted)
        if apps:
            saved_apps = [a for a in apps.values() if a is not None]
            deleted_apps = [k for k, a in apps.items() if a is None]
            await _in_chunks(storage.save_appearances, saved_apps)
            await _in_chunks(storage.delete_appearances, deleted_apps)
        if binds:
            saved_binds = [b for b in binds.values() if b is not None]
            deleted_binds = [k for k, b in binds.items() if b is None]
            await _in_chunks(storage.save_bindings, saved_binds)
            await _in_chunks(storage.delete_bindings, deleted_binds)

    async def close(self, stop_timeout: float = STOP_TIMEOUT) -> None:
        """Stop the writer and write everything queued, retrying for up to ``stop_timeout`` s.

        A write in progress is allowed to finish first (cancelling a driver in the middle of
        a statement can spoil its connection); the whole stop is bounded by ``stop_timeout``.
        """
        delay = 0.2
        error: BaseException | None = None
        task, self._task = self._task, None
        try:
            async with asyncio.timeout(stop_timeout):
                if task is not None:
                    async with self._lock:  # waits for a write in progress
                        task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                while True:
                    try:
                        await self.flush()
                        return
                    except StorageError as exc:
                        error = exc
                    except Exception as exc:  # a bug must not keep the process from stopping
                        logger.exception("unexpected error in the final database write")
                        error = exc
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        except TimeoutError:
            error = error or StorageError(f"timed out after {stop_timeout:g} s")
        finally:
            if task is not None and not task.done():
                task.cancel()
        logger.error("final database write failed, %d changes lost: %s", self.pending, error)


class SubscriberCache:
    """Digest users looked up in storage, cached briefly, bounded in time.

    A found user is reused for ``ttl`` seconds without a database round trip; an unknown one
    for ``negative_ttl``. When the database fails (or takes longer than ``timeout``) a cached
    entry up to ``stale_ttl`` old is used instead, so phones that authenticated recently keep
    working through a database outage; otherwise :class:`StorageError` is raised and the
    caller answers 503 with Retry-After. After a failure the database is not asked again for
    ``retry_after`` seconds (fail fast instead of piling up waiting requests).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        stale_ttl: float = 600.0,
        timeout: float = 2.0,
        retry_after: float = 1.0,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.stale_ttl = stale_ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.max_entries = max_entries
        self._on_error = on_error
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, Subscriber | None]] = {}
        self._down_until = 0.0

    async def get(self, username: str, domain: str) -> Subscriber | None:
        """The user, None when unknown; StorageError when the database cannot tell."""
        key = (username, domain)
        now = self._clock()
        cached = self._entries.get(key)
        if cached is not None:
            age = now - cached[0]
            if age < (self.ttl if cached[1] is not None else self.negative_ttl):
                return cached[1]
        try:
            if now < self._down_until:
                raise StorageError("database unavailable (recent failure)")
            try:
                async with asyncio.timeout(self.timeout):
                    subscriber = await self.storage.get_subscriber(username, domain)
            except TimeoutError:
                raise StorageError(f"subscriber lookup timed out after {self.timeout:g} s")
        except StorageError:
            if now >= self._down_until:
                self._down_until = now + self.retry_after
                if self._on_error is not None:
                    self._on_error("auth")
            if cached is not None and cached[1] is not None and now - cached[0] < self.stale_ttl:
                return cached[1]
            raise
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (self._clock(), subscriber)
        return subscriber
