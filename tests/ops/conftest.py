"""Operations fixtures: the three database backends and sipsca servers using them.

``backend`` is parametrized over sqlite, postgresql and mysql. The latter two need
``SIPSCA_TEST_PG_URL`` / ``SIPSCA_TEST_MYSQL_URL`` (``eval "$(bash .ci/db.sh start)"``): without
them the tests skip, unless ``CI`` is set, in which case they fail. The servers used are
private instances (see :mod:`ops.support`), one per session and backend, with a fresh database
per test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.support import Database, OpsServer, PrivateMariadb, PrivatePostgres
from sipsca.config import ServerConfig, SipscaConfig, TransactionConfig
from sipsca.runtime.app import SipApplication
from sipsca.storage.memory import MemoryStorage

ENV = {"postgresql": "SIPSCA_TEST_PG_URL", "mysql": "SIPSCA_TEST_MYSQL_URL"}

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=pytest.mark.db),
    pytest.param("mysql", marks=pytest.mark.db),
]


def require_backend(backend: str) -> None:
    """Skip (or, with ``CI`` set, fail) a server backend whose env URL is unset."""
    var = ENV.get(backend)
    if var is None or os.environ.get(var):
        return
    reason = f'{var} not set (eval "$(bash .ci/db.sh start)")'
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: the {backend} backend must be tested")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def private_servers() -> Iterator[dict[str, Any]]:
    """Lazily started private PostgreSQL / MariaDB servers, destroyed at session end."""
    servers: dict[str, Any] = {}
    yield servers
    for server in servers.values():
        server.destroy()


def _server(servers: dict[str, Any], backend: str) -> PrivatePostgres | PrivateMariadb:
    server = servers.get(backend)
    if server is None:
        server = PrivatePostgres() if backend == "postgresql" else PrivateMariadb()
        servers[backend] = server
    if not server.running():  # a previous outage test may have left it down
        server.start()
    return server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    require_backend(name)
    return name


@pytest.fixture
def make_database(
    tmp_path: Path, private_servers: dict[str, Any]
) -> Iterator[Callable[[str], Database]]:
    """``make(backend) -> Database``: an empty database of that backend for this test."""
    made: list[Database] = []

    def make(backend: str) -> Database:
        require_backend(backend)
        if backend == "sqlite":
            path = tmp_path / f"db{len(made)}" / "sipsca.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            db = Database("sqlite", f"sqlite:///{path}", None, sqlite_path=path)
        else:
            server = _server(private_servers, backend)
            db = Database(backend, server.new_database(), server)
        made.append(db)
        return db

    yield make
    for db in made:
        db.up()  # never leave a server down or a SQLite file locked


@pytest.fixture
def database(backend: str, make_database: Callable[[str], Database]) -> Database:
    return make_database(backend)


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[Callable[..., OpsServer]]:
    """``make(db, config=None, start=True) -> OpsServer``; stopped (SIGTERM, exit 0 checked
    unless the test killed it) and cleaned up at teardown."""
    made: list[OpsServer] = []

    def make(
        db: Database, config: dict[str, Any] | None = None, *, start: bool = True, **kw: Any
    ) -> OpsServer:
        srv = OpsServer(tmp_path / f"sipsca{len(made)}", config, db_url=db.url, **kw)
        made.append(srv)
        return srv.start() if start else srv  # type: ignore[return-value]

    yield make
    errors = []
    for srv in made:
        try:
            srv.stop()
        except AssertionError as exc:
            errors.append(str(exc))
        finally:
            srv.cleanup()
    assert not errors, "\n".join(errors)


INPROCESS_T1 = 0.05
"""T1 of :func:`inprocess_app` (short, so retransmissions come within a test)."""


@pytest.fixture
async def inprocess_app() -> AsyncIterator[SipApplication]:
    """A SipApplication on a UDP socket at 127.0.0.1 (ephemeral port), memory storage, in
    this process: for tests that look at its transactions and timers."""
    storage = MemoryStorage()
    await storage.open()
    config = SipscaConfig(
        server=ServerConfig(domains=("127.0.0.1",)),
        transaction=TransactionConfig(t1=INPROCESS_T1, t2=4.0, t4=5.0),
    )
    application = SipApplication(config, storage)
    await application.start(("udp:127.0.0.1:0",))
    try:
        yield application
    finally:
        await application.stop()
        await storage.close()
