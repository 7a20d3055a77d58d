"""Opening storage that cannot work: a SQLite file that cannot be opened leaves no worker
thread behind, malformed server URLs are ConfigErrors when the backend is built (no server
needed), and ``migrate`` names a new database as such."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipsca.errors import ConfigError, StorageError
from sipsca.storage import MemoryStorage, SqliteStorage, open_storage
from sipsca.storage.base import SCHEMA_VERSION


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


class _SlowStop(logging.Filter):
    """Delays aiosqlite's worker thread when it runs the stop that aiosqlite queues after a
    failed connect: the race in which the thread outlived the event loop (now and then, in
    production) happens every time."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "executing %s" and "close_and_stop" in repr(record.args):
            time.sleep(0.3)
        return True


@pytest.fixture
def slow_worker_stop() -> Iterator[None]:
    aiosqlite_log = logging.getLogger("aiosqlite")
    slow = _SlowStop()
    level = aiosqlite_log.level
    aiosqlite_log.setLevel(logging.DEBUG)
    aiosqlite_log.addFilter(slow)
    try:
        yield
    finally:
        aiosqlite_log.removeFilter(slow)
        aiosqlite_log.setLevel(level)
        for thread in _workers():
            thread.join(5)


@pytest.mark.usefixtures("slow_worker_stop")
async def test_a_failed_open_ends_the_worker_thread_before_it_returns(tmp_path: Path) -> None:
    before = set(_workers())
    storage = SqliteStorage(tmp_path)  # a directory: sqlite3 cannot open it
    with pytest.raises(StorageError, match="cannot open"):
        await storage.open()
    # The caller may close the event loop right away (start-up error): the thread that
    # would report to it must be gone by now.
    assert [t for t in _workers() if t not in before] == []


URLS = [
    ("postgresql://u:pw@[bad/x", "malformed PostgreSQL URL"),
    ("postgresql://u:pw@[::1/x", "malformed PostgreSQL URL"),
    ("postgresql://u:pw@127.0.0.1:99999/x", "the port must be a number 1-65535"),
    ("postgresql://u:pw@127.0.0.1:0/x", "the port must be a number 1-65535"),
    ("postgres://u:pw@db.example:54x/x", "the port must be a number 1-65535"),
    ("postgresql://u:pw@h1:5432,h2:99999/x", "the port must be a number 1-65535"),
    ("postgresql://u:pw@db.example/x?sslmode", "the query is not name=value"),
    ("mysql://u:pw@[bad/x", "malformed MySQL URL"),
    ("mysql://u:pw@127.0.0.1:99999/x", "the port must be a number 1-65535"),
]


@pytest.mark.parametrize(("url", "needle"), URLS)
def test_malformed_server_urls_are_config_errors(url: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_storage(url)
    message = str(info.value)
    assert message.startswith("db_url: ") and needle in message, message
    assert "pw" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@127.0.0.1:5432/x",
        "postgres://u:p%40w@[::1]:5432/x?sslmode=disable",
        "postgresql://u:pw@h1:5432,h2/x",  # asyncpg's host list, h2 on the default port
        "postgresql:///x?host=/run/postgresql",  # a Unix socket
        "postgresql://u:pw@db.example/x",
        "mysql://u:pw@[::1]:3306/x",
    ],
)
def test_wellformed_server_urls_are_accepted(url: str) -> None:
    open_storage(url)  # builds, connects nothing


def test_migrate_names_a_new_database() -> None:
    from sipsca.storage.base import schema_step

    assert schema_step(None) == f"set sipsca schema version {SCHEMA_VERSION} (new database)"
    assert schema_step(0) == f"set sipsca schema version 0 -> {SCHEMA_VERSION}"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_migrate_of_a_new_database_reports_it(backend: str, tmp_path: Path) -> None:
    storage = MemoryStorage() if backend == "memory" else SqliteStorage(tmp_path / "x.sqlite")
    await storage.open()
    try:
        steps = await storage.migrate()
        assert steps[-1] == f"set sipsca schema version {SCHEMA_VERSION} (new database)"
        assert await storage.migrate() == []
    finally:
        await storage.close()
