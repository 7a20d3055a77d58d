"""The storage interface every backend implements (memory, SQLite, PostgreSQL, MySQL/MariaDB).

Methods take and return the core's model dataclasses only. Every method may raise
:class:`sipsca.errors.StorageError` (drivers' exceptions are mapped to it). Writes are
idempotent upserts so the runtime's write-back can simply retry after an outage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sipsca.auth.model import Subscriber
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, ScaEvent, Subscription

__all__ = [
    "AppearanceKey",
    "BindingKey",
    "Storage",
    "SubscriptionKey",
    "SCHEMA_VERSION",
    "schema_step",
]

SubscriptionKey = tuple[str, ScaEvent, str]
"""(aor, event, subscriber contact)"""
AppearanceKey = tuple[str, int]
"""(aor, appearance index)"""
BindingKey = tuple[str, str]
"""(aor, contact)"""

SCHEMA_VERSION = 1
"""Version of sipsca's own tables (``sca_subscriptions`` itself is Kamailio's table version 2)."""


def schema_step(current: int | None) -> str:
    """The step ``migrate`` reports when it records :data:`SCHEMA_VERSION` over ``current``
    (None: a database sipsca had not initialised)."""
    if current is None:
        return f"set sipsca schema version {SCHEMA_VERSION} (new database)"
    return f"set sipsca schema version {current} -> {SCHEMA_VERSION}"


class Storage(Protocol):
    """Persistent state of a sipsca server."""

    async def open(self) -> None:
        """Connect (create the file / pool). Does not create tables."""

    async def close(self) -> None:
        """Release connections; pending writes are the caller's business (flush first)."""

    async def ping(self) -> None:
        """Cheap round trip; raises StorageError when the database is unreachable."""

    async def schema_version(self) -> int | None:
        """sipsca's schema version in the database, None when not initialised."""

    async def init_schema(self) -> None:
        """Create every table at the current version (idempotent)."""

    async def migrate(self) -> list[str]:
        """Bring an older schema up to date; returns the steps applied."""

    async def load_subscriptions(self, *, server_id: int = 0) -> list[Subscription]:
        """All stored subscriptions of this server (expired ones too; the engine drops them)."""

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Insert or update, keyed by (aor, event, subscriber)."""

    async def delete_subscriptions(self, keys: Sequence[SubscriptionKey]) -> None:
        """Delete; unknown keys are ignored."""

    async def load_appearances(self) -> list[Appearance]:
        """Every stored (non-idle) appearance."""

    async def save_appearances(self, appearances: Sequence[Appearance]) -> None:
        """Insert or update, keyed by (aor, index)."""

    async def delete_appearances(self, keys: Sequence[AppearanceKey]) -> None:
        """Delete; unknown keys are ignored."""

    async def load_bindings(self) -> list[Binding]:
        """Every stored registrar binding."""

    async def save_bindings(self, bindings: Sequence[Binding]) -> None:
        """Insert or update, keyed by (aor, contact)."""

    async def delete_bindings(self, keys: Sequence[BindingKey]) -> None:
        """Delete; unknown keys are ignored."""

    async def add_subscriber(self, subscriber: Subscriber) -> None:
        """Insert or replace a user."""

    async def delete_subscriber(self, username: str, domain: str) -> bool:
        """Remove a user; False when it did not exist."""

    async def get_subscriber(self, username: str, domain: str) -> Subscriber | None:
        """Look a user up for digest authentication."""

    async def list_subscribers(self) -> list[Subscriber]:
        """All users, ordered by domain then username."""
