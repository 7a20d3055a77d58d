"""``sipsca db init`` / ``sipsca db migrate`` and ``sipsca user`` on every backend, the
Kamailio table version check, and clean errors (no password) when the database is unreachable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ops.support import Database, cli


async def test_db_init_and_migrate(database: Database) -> None:
    url = database.url
    p = cli("db", "migrate", "--db-url", url)  # an empty database: migrate creates everything
    assert p.returncode == 0, p.stderr
    steps = p.stdout.splitlines()
    assert steps[-1] == "database is up to date"
    assert "created table sca_subscriptions with its 3 indexes" in steps
    assert "recorded sca_subscriptions table version 2" in steps
    assert "set sipsca schema version 1 (new database)" in steps
    for table in ("sipsca_appearances", "sipsca_location", "sipsca_subscriber"):
        assert f"created table {table}" in steps
    p = cli("db", "migrate", "--db-url", url)
    assert (p.returncode, p.stdout) == (0, "database is up to date\n")
    p = cli("db", "init", "--db-url", url)
    assert (p.returncode, p.stdout) == (0, "database initialised\n")
    rows = await database.fetch("SELECT table_name, table_version FROM version")
    assert ("sca_subscriptions", 2) in [(str(r[0]), int(r[1])) for r in rows]
    assert await database.fetch("SELECT version FROM sipsca_schema") == [(1,)]

    # Kamailio refuses a sca_subscriptions table of another version; so does sipsca.
    from sipsca.storage import open_storage
    from sipsca.storage._sql import SqlStorage

    storage = open_storage(url)
    assert isinstance(storage, SqlStorage)
    await storage.open()
    sql = "UPDATE version SET table_version = 1 WHERE table_name = 'sca_subscriptions'"
    await storage._transaction([(sql, [()])])
    await storage.close()
    p = cli("db", "migrate", "--db-url", url)
    assert p.returncode == 2
    assert p.stderr.startswith("sipsca: error: table sca_subscriptions has version 1")


def test_users_on_every_backend(database: Database, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    p = cli("user", "add", "215@example.com", "--password-file", str(pw), "--db-url", database.url)
    assert (p.returncode, p.stdout) == (0, "added 215@example.com\n"), p.stderr
    p = cli(
        "user", "add", "alice@example.com", "--password-file", str(pw), "--db-url", database.url
    )
    assert p.returncode == 0
    p = cli("user", "list", "--db-url", database.url)
    assert p.stdout.splitlines() == ["215@example.com", "alice@example.com"]
    p = cli("user", "del", "215@example.com", "--db-url", database.url)
    assert (p.returncode, p.stdout) == (0, "deleted 215@example.com\n")
    p = cli("user", "del", "215@example.com", "--db-url", database.url)
    assert p.returncode == 1 and "no user 215@example.com" in p.stderr


def test_unreachable_database_is_a_clean_error(backend: str, tmp_path: Path) -> None:
    url = {
        "sqlite": f"sqlite:///{tmp_path}/file-not-dir/x.sqlite",
        "postgresql": "postgresql://sipsca:hunter2@127.0.0.1:1/sipsca",
        "mysql": "mysql://sipsca:hunter2@127.0.0.1:1/sipsca",
    }[backend]
    (tmp_path / "file-not-dir").write_text("")
    for args in (["db", "migrate"], ["user", "list"]):
        p = cli(*args, "--db-url", url)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.startswith("sipsca: error: ") and p.stderr.count("\n") == 1, p.stderr
        assert "hunter2" not in p.stderr and "Traceback" not in p.stderr


def test_serve_refuses_an_unusable_database_with_one_line(
    backend: str, tmp_path: Path, make_database: Callable[[str], Database]
) -> None:
    url = {
        "sqlite": f"sqlite:///{tmp_path}/file-not-dir/x.sqlite",
        "postgresql": "postgresql://sipsca:hunter2@127.0.0.1:1/sipsca",
        "mysql": "mysql://sipsca:hunter2@127.0.0.1:1/sipsca",
    }[backend]
    (tmp_path / "file-not-dir").write_text("")
    p = cli(
        "serve",
        "--db-url",
        url,
        "--listen",
        "udp:127.0.0.1:0",
        "--rpc-listen",
        "127.0.0.1:0",
        timeout=30,
    )
    assert p.returncode == 2
    errors = [x for x in p.stderr.splitlines() if x.startswith("sipsca: error: ")]
    assert len(errors) == 1 and "cannot use database" in errors[0], p.stderr
    assert "hunter2" not in p.stderr + p.stdout and "Traceback" not in p.stderr
    if backend != "sqlite":
        assert "sipsca:***@127.0.0.1:1" in errors[0]
