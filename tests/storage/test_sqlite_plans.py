"""SQLite picks an index for every per-row statement of the write-back (no statistics there).

A statement that scans the table once per row makes a write-back quadratic: with the
subscription-key DELETE on the ``(server_id, expires)`` index, writing 20,000 changed
subscriptions ran past the 20 s write timeout again and again, so nothing was ever stored.
The plans are checked on the real schema with the WHERE clauses the storage code uses, so
they cannot drift from what the server runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sipsca.storage import SqliteStorage
from sipsca.storage._sql import (
    _BY_APPEARANCE_KEY,
    _BY_BINDING_KEY,
    _BY_SUBSCRIPTION_DIALOG,
    _BY_SUBSCRIPTION_KEY,
)

STATEMENTS = {
    "subscription by key": (
        f"DELETE FROM sca_subscriptions WHERE {_BY_SUBSCRIPTION_KEY}",
        ("sip:p@h", 1, "sip:line@h", 0),
        ("subscriber=?", "event=?"),
    ),
    "subscription by dialog": (
        f"DELETE FROM sca_subscriptions WHERE {_BY_SUBSCRIPTION_DIALOG}",
        ("sip:p@h", "c", "f", "t"),
        ("subscriber=?", "call_id=?", "from_tag=?", "to_tag=?"),
    ),
    "appearance": (
        f"DELETE FROM sipsca_appearances WHERE {_BY_APPEARANCE_KEY}",
        ("sip:line@h", 1),
        ("aor=?", "idx=?"),
    ),
    "binding": (
        f"DELETE FROM sipsca_location WHERE {_BY_BINDING_KEY}",
        ("sip:a@h", "sip:a@1.2.3.4"),
        ("aor=?", "contact=?"),
    ),
}


@pytest.fixture
async def schema(tmp_path: Path) -> Path:
    path = tmp_path / "plans.sqlite"
    storage = SqliteStorage(str(path))
    await storage.open()
    try:
        await storage.init_schema()
    finally:
        await storage.close()
    return path


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_write_back_statements_search_by_their_key(schema: Path, name: str) -> None:
    sql, params, columns = STATEMENTS[name]
    with sqlite3.connect(schema) as conn:
        plan = " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert plan.startswith("SEARCH "), plan
    assert "expires" not in plan, plan
    for column in columns:
        assert column in plan, plan
