"""Operations test support: private database servers, a sipsca server on any ``db_url``,
raw JSON-RPC, ``/metrics`` scraping and the ``sipsca`` command line.

Everything listens on 127.0.0.1 only and every wait is bounded. PostgreSQL and MariaDB run as
private instances in a temporary directory (started from the binaries ``.ci/db.sh`` installs),
so the outage tests can stop and start them without disturbing the shared servers, and each
test gets a database of its own (the storage contract tests drop tables in the shared ones).
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait is this module's API)
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from helpers.inprocess import run
from helpers.server import REPO, SipscaProcess, free_port, to_toml

__all__ = [
    "Database",
    "OpsServer",
    "PrivateMariadb",
    "PrivatePostgres",
    "cli",
    "http_rpc",
    "metric_samples",
    "scrape",
    "wait_until",
]

CLI_TIMEOUT = 30.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.pop("PYTHONWARNINGS", None)
    for var in ("SIPSCA_RPC_URL", "SIPSCA_RPC_TOKEN", "http_proxy", "HTTP_PROXY"):
        env.pop(var, None)
    return env


def cli(
    *args: str, timeout: float = CLI_TIMEOUT, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sipsca ARGS`` (bounded) with the tests' clean environment."""
    return run(*args, timeout=timeout, cwd=cwd, env=_env())


async def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate()`` (sync or async) until truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout}s) waiting for {what}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------ HTTP
def http_post(
    url: str, body: bytes, *, token: str | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def http_get(url: str, *, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_rpc(
    server: SipscaProcess, method: str, *params: Any, token: str | None = None
) -> dict[str, Any]:
    """One JSON-RPC 2.0 call; the whole decoded response object."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 7})
    status, _, data = http_post(rpc_url(server), body.encode(), token=token)
    decoded = json.loads(data)
    assert isinstance(decoded, dict), decoded
    decoded["_http_status"] = status
    return decoded


def rpc_url(server: SipscaProcess) -> str:
    return f"http://127.0.0.1:{server.rpc_port}/RPC"


def result(server: SipscaProcess, method: str, *params: Any) -> Any:
    answer = http_rpc(server, method, *params)
    assert "error" not in answer, answer
    return answer["result"]


def scrape(server: SipscaProcess, token: str | None = None) -> str:
    status, body = http_get(f"http://127.0.0.1:{server.rpc_port}/metrics", token=token)
    assert status == 200, (status, body[:300])
    return body.decode()


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a Prometheus text exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for sample_labels, value in metric_samples(text).get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


# ------------------------------------------------------------------------------ sipsca
class OpsServer(SipscaProcess):
    """:class:`SipscaProcess` whose database is any ``db_url`` (the harness pins SQLite)."""

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Mapping[str, Any]] | None,
        *,
        db_url: str,
        **kw: Any,
    ) -> None:
        super().__init__(workdir, config, **kw)
        self.db_url = db_url
        self.config.setdefault("db", {})["db_url"] = db_url

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--db-url") + 1] = self.db_url
        return cmd

    def add_user(self, address: str, password: str, timeout: float = CLI_TIMEOUT) -> None:
        pw = self.workdir / f"pw-{address.replace('@', '_')}"
        pw.write_text(password + "\n")
        p = cli(
            "user",
            "add",
            address,
            "--password-file",
            str(pw),
            "--db-url",
            self.db_url,
            timeout=timeout,
        )
        assert p.returncode == 0, f"sipsca user add failed ({p.returncode}):\n{p.stdout}{p.stderr}"

    def stats(self) -> dict[str, float]:
        return dict(result(self, "stats"))

    def log_since(self, offset: int) -> str:
        return self.log_text(offset)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0


# ------------------------------------------------------------------------------ databases
def _as_owner(owner: str, cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", owner, "--", *cmd]
    return cmd


def _owner(name: str) -> str:
    import pwd

    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    return name


def _chown(path: Path, owner: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, owner)


def _private_dir(prefix: str) -> Path:
    """A temp dir the database's own user can enter (pytest's tmp dirs are 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def pg_bin() -> Path | None:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    dirs = [d for d in dirs if (d / "pg_ctl").exists() and (d / "initdb").exists()]
    return dirs[-1] if dirs else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off)."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        self.bin = bindir
        self.base = _private_dir("sipsca-ops-pg-")
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "pg.log"
        self.owner = _owner("postgres")
        self.port = free_port(socket.SOCK_STREAM, None)
        for d in (self.data, self.sock):
            d.mkdir()
            _chown(d, self.owner)
        self.log.touch()
        _chown(self.log, self.owner)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            60,
        )

    def _run(self, cmd: list[str], timeout: float) -> None:
        p = subprocess.run(
            _as_owner(self.owner, cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"{cmd[0]} failed: {p.stdout}{p.stderr}\n{self.log.read_text()[-2000:]}"
            )

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off"
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "-o",
                opts,
                "start",
            ],
            40,
        )

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash of the database server (no shutdown checkpoint)."""
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"],
            40,
        )

    def running(self) -> bool:
        p = subprocess.run(
            _as_owner(self.owner, [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            timeout=10,
        )
        return p.returncode == 0

    def psql(self, sql: str, db: str = "postgres") -> str:
        p = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {p.stderr}")
        return p.stdout

    def new_database(self) -> str:
        name = "ops_" + secrets.token_hex(4)
        self.psql(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateMariadb:
    """A throwaway MariaDB server on 127.0.0.1 (root without password, over TCP)."""

    def __init__(self) -> None:
        self.mariadbd = shutil.which("mariadbd") or shutil.which("mysqld")
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        self.client = shutil.which("mariadb") or shutil.which("mysql")
        if not (self.mariadbd and install and self.client):
            raise RuntimeError("MariaDB binaries (mariadbd, mariadb-install-db, mariadb) not found")
        self.base = _private_dir("sipsca-ops-my-")
        self.data = self.base / "data"
        self.run_dir = self.base / "run"
        self.owner = _owner("mysql")
        self.port = free_port(socket.SOCK_STREAM, None)
        self.data.mkdir()
        _chown(self.data, self.owner)
        self.proc: subprocess.Popen[bytes] | None = None
        p = subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--user={self.owner}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {p.stdout}{p.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        assert self.mariadbd is not None
        self.run_dir.mkdir(exist_ok=True)
        _chown(self.run_dir, self.owner)
        self.proc = subprocess.Popen(
            [
                self.mariadbd,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--user={self.owner}",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                f"--socket={self.run_dir / 'mysql.sock'}",
                f"--pid-file={self.run_dir / 'mysql.pid'}",
                f"--log-error={self.run_dir / 'mysql.err'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--innodb-flush-log-at-trx-commit=2",
                "--performance-schema=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.error_log()}")
            if self._query("SELECT 1", check=False) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"mariadbd not ready within {timeout}s: {self.error_log()}")

    def error_log(self) -> str:
        try:
            return (self.run_dir / "mysql.err").read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def _query(self, sql: str, db: str = "", *, check: bool = True) -> str | None:
        assert self.client is not None
        cmd = [
            self.client,
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{self.port}",
            "-uroot",
            "-N",
            "-B",
            "-e",
            sql,
        ]
        if db:
            cmd.append(db)
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
        if p.returncode != 0:
            if check:
                raise RuntimeError(f"mariadb {sql!r}: {p.stderr}")
            return None
        return p.stdout

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """SIGKILL is a crash of the database server."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def new_database(self) -> str:
        name = "ops_" + secrets.token_hex(4)
        self._query(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return f"mysql://root@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


class Database:
    """One test's database: its ``db_url``, direct queries, and an outage switch."""

    def __init__(
        self,
        backend: str,
        url: str,
        server: PrivatePostgres | PrivateMariadb | None,
        sqlite_path: Path | None = None,
    ) -> None:
        self.backend = backend
        self.url = url
        self.server = server
        self.sqlite_path = sqlite_path
        self._lock: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"Database({self.backend}, {self.url})"

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a SELECT through sipsca's own driver for this backend (``?`` placeholders)."""
        from sipsca.storage import open_storage
        from sipsca.storage._sql import SqlStorage

        storage = open_storage(self.url)
        assert isinstance(storage, SqlStorage)
        await storage.open()
        try:
            return [tuple(r) for r in await storage._fetch(storage.dialect.sql(sql))]
        finally:
            await storage.close()

    async def subscription_keys(self) -> set[tuple[str, str]]:
        """(subscriber contact, aor) of every stored call-info subscription."""
        rows = await self.fetch("SELECT subscriber, aor FROM sca_subscriptions WHERE event = 1")
        return {(str(r[0]), str(r[1])) for r in rows}

    # outage ----------------------------------------------------------------------------
    def down(self) -> None:
        """Take the database away: PostgreSQL/MariaDB crash (immediate stop / SIGKILL);
        SQLite is locked by another process's exclusive transaction (writes then fail after
        sipsca's busy_timeout, reads keep working as WAL readers)."""
        if isinstance(self.server, PrivatePostgres):
            self.server.stop("immediate")
        elif isinstance(self.server, PrivateMariadb):
            self.server.stop(signal.SIGKILL)
        else:
            assert self.sqlite_path is not None
            conn = sqlite3.connect(self.sqlite_path, timeout=10, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            self._lock = conn

    def up(self) -> None:
        if self.server is not None:
            if not self.server.running():
                self.server.start()
        elif self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            self._lock = None

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.down()
        try:
            yield
        finally:
            self.up()


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    path.write_text(to_toml(sections))
    return path


def loopback_udp() -> socket.socket:
    """A non-blocking UDP socket on an ephemeral port of 127.0.0.1: a phone in a test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock
