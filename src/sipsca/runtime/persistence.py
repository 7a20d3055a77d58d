"""Write-back of subscriptions, appearances and bindings to storage.

Changes are coalesced per key in memory and written every ``db_update_interval`` seconds
(Kamailio's semantics) or at once when it is 0 (write-through). A failing database never
stops SIP service: changes stay queued, the writer retries with exponential backoff, and
everything is written once the database is back. ``flush()`` is called at graceful stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sipsca.errors import StorageError
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, Subscription
from sipsca.storage.base import AppearanceKey, BindingKey, Storage, SubscriptionKey

__all__ = ["WriteBack"]

logger = logging.getLogger(__name__)


class WriteBack:
    """Coalescing, retrying writer in front of a :class:`Storage`."""

    def __init__(
        self,
        storage: Storage,
        *,
        interval: float,
        on_error: Callable[[str], None] | None = None,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.storage = storage
        self.interval = interval
        self.subs: dict[SubscriptionKey, Subscription | None] = {}
        self.apps: dict[AppearanceKey, Appearance | None] = {}
        self.binds: dict[BindingKey, Binding | None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._on_error = on_error
        self._observe = observe
        self.failures = 0
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
        self._changed()

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

    def _changed(self) -> None:
        if self.interval == 0:
            self._wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if self.interval == 0 or not self.healthy:
                try:
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=backoff if not self.healthy else None
                    )
                except TimeoutError:
                    pass
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.5
            except StorageError:
                backoff = min(backoff * 2, 30.0)

    async def flush(self) -> None:
        """Write everything queued; on failure the queue is kept (and merged with newer changes)."""
        async with self._lock:
            if not self.pending:
                return
            subs, apps, binds = self.subs, self.apps, self.binds
            self.subs, self.apps, self.binds = {}, {}, {}
            start = time.perf_counter()
            try:
                if subs:
                    await self.storage.save_subscriptions(
                        [s for s in subs.values() if s is not None]
                    )
                    await self.storage.delete_subscriptions(
                        [k for k, s in subs.items() if s is None]
                    )
                if apps:
                    await self.storage.save_appearances([a for a in apps.values() if a is not None])
                    await self.storage.delete_appearances([k for k, a in apps.items() if a is None])
                if binds:
                    await self.storage.save_bindings([b for b in binds.values() if b is not None])
                    await self.storage.delete_bindings([k for k, b in binds.items() if b is None])
            except StorageError as exc:
                # Newer changes win over the failed batch.
                subs.update(self.subs)
                apps.update(self.apps)
                binds.update(self.binds)
                self.subs, self.apps, self.binds = subs, apps, binds
                self.failures += 1
                if self.healthy:
                    logger.error("database write failed, serving from memory and retrying: %s", exc)
                self.healthy = False
                if self._on_error is not None:
                    self._on_error("write")
                raise
            if not self.healthy:
                logger.warning(
                    "database is back: wrote %d queued changes", len(subs) + len(apps) + len(binds)
                )
            self.healthy = True
            if self._observe is not None:
                self._observe("flush", time.perf_counter() - start)

    async def close(self) -> None:
        """Stop the writer after a last flush attempt."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await self.flush()
        except StorageError:
            logger.error("final flush failed: %d changes lost", self.pending)
