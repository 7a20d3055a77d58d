"""sipsca.storage: persistent state behind one async Protocol, four interchangeable backends.

Use :func:`open_storage` with a ``db_url``; the concrete classes are exported for tests and
embedding.
"""

from __future__ import annotations

from sipsca.storage.base import (
    SCHEMA_VERSION,
    AppearanceKey,
    BindingKey,
    Storage,
    SubscriptionKey,
)
from sipsca.storage.memory import MemoryStorage
from sipsca.storage.mysql import MysqlStorage
from sipsca.storage.postgres import PostgresStorage
from sipsca.storage.registry import open_storage
from sipsca.storage.sqlite import SqliteStorage

__all__ = [
    "SCHEMA_VERSION",
    "AppearanceKey",
    "BindingKey",
    "MemoryStorage",
    "MysqlStorage",
    "PostgresStorage",
    "SqliteStorage",
    "Storage",
    "SubscriptionKey",
    "open_storage",
]
