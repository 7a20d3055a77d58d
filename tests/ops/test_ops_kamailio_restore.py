"""Restoring from an ``sca_subscriptions`` table written by the real Kamailio 5.6.

The reference Kamailio (``db_update_interval`` 1 s via ``SCA_DBUPD``) serves two phones of a
shared line; once its write-back has stored them it is stopped, and sipsca is started on that
very SQLite file. The subscriptions are restored, and NOTIFYs continue in the dialogs Kamailio
created (same Call-ID and tags) with CSeqs above every CSeq Kamailio used.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.phone import Ladder, call_info_of
from helpers.sca import Line, ci, full
from helpers.server import KamailioProcess, kamailio_available
from ops.support import Database, OpsServer, cli, result, wait_until

AOR = "sip:1000@127.0.0.1"


class KamailioWithWriteBack(KamailioProcess):
    """The lab Kamailio with ``SCA_DBUPD`` (its ``db_update_interval``) set."""

    def __init__(self, workdir: Path, db_update_interval: int) -> None:
        super().__init__(workdir, purge=10)
        self.db_update_interval = db_update_interval

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["SCA_DBUPD"] = str(self.db_update_interval)
        return env

    @property
    def db_path(self) -> Path:
        return self.run_dir / "db" / "kamailio.sqlite"


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(
            "SELECT subscriber, aor, event, call_id, from_tag, to_tag, notify_cseq"
            " FROM sca_subscriptions"
        ).fetchall()
    finally:
        con.close()


@pytest.fixture
def kamailio(tmp_path: Path) -> KamailioWithWriteBack:
    if not kamailio_available():
        if os.environ.get("CI"):
            pytest.fail("kamailio/kamcmd not installed (CI must run .ci/kamailio.sh first)")
        pytest.skip("kamailio not installed (run .ci/kamailio.sh); CI=1 makes this fail")
    kam = KamailioWithWriteBack(tmp_path / "kamailio", db_update_interval=1)
    yield kam  # type: ignore[misc]
    kam.cleanup()


async def test_restore_from_a_table_written_by_kamailio(
    kamailio: KamailioWithWriteBack,
    ops_server: Callable[..., OpsServer],
    tmp_path: Path,
    ladder: Ladder,
) -> None:
    await asyncio.to_thread(kamailio.start)
    line = Line(kamailio, ladder)
    try:
        a = await line.member("A")
        b = await line.member("B")
        await line.seize(a, 1)  # more NOTIFYs: Kamailio's stored notify_cseq moves on
        sent = {
            p.name: max(n.cseq.number for n in p.notifies if n.call_id == line.subs[p.name].call_id)
            for p in (a, b)
        }

        def written() -> bool:
            rows = stored_rows(kamailio.db_path)
            by_subscriber = {r[0]: r for r in rows}
            return all(
                p.contact_uri in by_subscriber
                and int(by_subscriber[p.contact_uri][6]) >= sent[p.name]  # type: ignore[call-overload]
                for p in (a, b)
            )

        await wait_until(written, 10, "Kamailio's write-back of both subscriptions")
        await asyncio.to_thread(kamailio.stop)
        rows = {r[0]: r for r in stored_rows(kamailio.db_path)}
        for p in (a, b):
            _, aor, event, call_id, from_tag, to_tag, _ = rows[p.contact_uri]
            assert (aor, event, call_id) == (AOR, 1, line.subs[p.name].call_id)
            assert (from_tag, to_tag) == (line.subs[p.name].local_tag, line.subs[p.name].remote_tag)

        # sipsca on Kamailio's file (a copy, so the evidence stays in kamailio's run dir).
        db_file = tmp_path / "restored" / "kamailio.sqlite"
        db_file.parent.mkdir()
        shutil.copy(kamailio.db_path, db_file)
        p = cli("db", "migrate", "--db-url", f"sqlite:///{db_file}")
        assert p.returncode == 0, p.stderr
        assert "created table sipsca_appearances" in p.stdout
        srv = ops_server(
            Database("sqlite", f"sqlite:///{db_file}", None, sqlite_path=db_file),
            {"db": {"db_update_interval": 1}},
        )
        subs = result(srv, "sca.all_subscriptions")
        assert sorted(s.split()[1] for s in subs) == sorted(f"127.0.0.1:{p.port}" for p in (a, b))
        assert all(s.split()[2] == "call-info" for s in subs), subs

        line.drain()
        assert result(srv, "sca.seize_appearance", AOR, b.contact_uri)
        for p in (a, b):
            dialog = line.subs[p.name]
            n = await p.expect_notify("call-info", call_id=dialog.call_id, timeout=5)
            assert n.cseq.number > sent[p.name], (n.cseq.number, sent[p.name])
            assert f"tag={dialog.local_tag}" in (n.headers.get("to") or "")
            assert f"tag={dialog.remote_tag}" in (n.headers.get("from") or "")
            assert call_info_of(n) == full(ci(1, "seized"))
    finally:
        await line.close()
