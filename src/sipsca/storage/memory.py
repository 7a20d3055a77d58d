"""In-process storage: the reference behaviour of the contract, and the backend for tests.

It mirrors the SQL backends exactly where callers can tell the difference: records are
deep-copied in and out (no aliasing), ``Subscription.flow``/``extra`` are not kept, the
Kamailio unique dialog key evicts a stale duplicate, and operations on a closed store raise
StorageError. Unlike SQL it needs no ``init_schema`` before use; data survives close/open.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

from sipsca.auth.model import Subscriber
from sipsca.errors import StorageError
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, ScaEvent, Subscription
from sipsca.storage._sql import check_identifier
from sipsca.storage.base import (
    SCHEMA_VERSION,
    AppearanceKey,
    BindingKey,
    SubscriptionKey,
    schema_step,
)

__all__ = ["MemoryStorage"]

_StoredKey = tuple[int, str, ScaEvent, str]


def _dialog(sub: Subscription) -> tuple[str, str, str, str]:
    return (sub.subscriber, sub.call_id, sub.from_tag, sub.to_tag)


"""(server_id, aor, event, subscriber)"""


class MemoryStorage:
    """Dict-backed Storage."""

    def __init__(self, *, subs_table: str = "sca_subscriptions", server_id: int = 0) -> None:
        self.subs_table = check_identifier(subs_table)
        self.server_id = server_id
        self._open = False
        self._version: int | None = None
        self._subscriptions: dict[_StoredKey, Subscription] = {}
        self._by_dialog: dict[tuple[str, str, str, str], _StoredKey] = {}
        """Kamailio's unique (subscriber, call_id, from_tag, to_tag) -> stored key."""
        self._appearances: dict[AppearanceKey, Appearance] = {}
        self._bindings: dict[BindingKey, Binding] = {}
        self._subscribers: dict[tuple[str, str], Subscriber] = {}

    def _check(self) -> None:
        if not self._open:
            raise StorageError("memory: storage is not open")

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._check()

    async def schema_version(self) -> int | None:
        self._check()
        return self._version

    async def init_schema(self) -> None:
        await self.migrate()

    async def migrate(self) -> list[str]:
        self._check()
        if self._version is not None and self._version > SCHEMA_VERSION:
            raise StorageError(f"schema {self._version} is newer than sipsca's {SCHEMA_VERSION}")
        if self._version == SCHEMA_VERSION:
            return []
        steps = [schema_step(self._version)]
        self._version = SCHEMA_VERSION
        return steps

    # subscriptions ------------------------------------------------------------------------

    async def load_subscriptions(self, *, server_id: int = 0) -> list[Subscription]:
        self._check()
        return [copy.deepcopy(s) for s in self._subscriptions.values() if s.server_id == server_id]

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        self._check()
        for sub in subscriptions:
            # Kamailio's unique dialog key: a stale row of the same dialog is replaced
            stale = self._by_dialog.get(_dialog(sub))
            if stale is not None:
                self._forget(stale)
            key: _StoredKey = (sub.server_id, *sub.key)
            self._forget(key)
            self._subscriptions[key] = replace(copy.deepcopy(sub), flow="", extra={})
            self._by_dialog[_dialog(sub)] = key

    async def delete_subscriptions(self, keys: Sequence[SubscriptionKey]) -> None:
        self._check()
        for key in keys:
            self._forget((self.server_id, *key))

    def _forget(self, key: _StoredKey) -> None:
        old = self._subscriptions.pop(key, None)
        if old is not None:
            del self._by_dialog[_dialog(old)]

    # appearances --------------------------------------------------------------------------

    async def load_appearances(self) -> list[Appearance]:
        self._check()
        return copy.deepcopy(list(self._appearances.values()))

    async def save_appearances(self, appearances: Sequence[Appearance]) -> None:
        self._check()
        for a in appearances:
            self._appearances[(a.aor, a.index)] = copy.deepcopy(a)

    async def delete_appearances(self, keys: Sequence[AppearanceKey]) -> None:
        self._check()
        for key in keys:
            self._appearances.pop(key, None)

    # bindings -----------------------------------------------------------------------------

    async def load_bindings(self) -> list[Binding]:
        self._check()
        return copy.deepcopy(list(self._bindings.values()))

    async def save_bindings(self, bindings: Sequence[Binding]) -> None:
        self._check()
        for b in bindings:
            self._bindings[(b.aor, b.contact)] = copy.deepcopy(b)

    async def delete_bindings(self, keys: Sequence[BindingKey]) -> None:
        self._check()
        for key in keys:
            self._bindings.pop(key, None)

    # subscribers (frozen dataclasses: nothing to copy) ------------------------------------

    async def add_subscriber(self, subscriber: Subscriber) -> None:
        self._check()
        self._subscribers[(subscriber.username, subscriber.domain)] = subscriber

    async def delete_subscriber(self, username: str, domain: str) -> bool:
        self._check()
        return self._subscribers.pop((username, domain), None) is not None

    async def get_subscriber(self, username: str, domain: str) -> Subscriber | None:
        self._check()
        return self._subscribers.get((username, domain))

    async def list_subscribers(self) -> list[Subscriber]:
        self._check()
        return sorted(self._subscribers.values(), key=lambda s: (s.domain, s.username))
