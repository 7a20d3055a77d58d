"""``service.serve`` closes the storage on every start-up failure.

An open SQLite storage has two aiosqlite worker threads (not daemons): a start-up error that
left them running made ``sipsca serve`` print its error and then hang forever. The configs
here skip the file validation on purpose (they are built as objects), to reach the checks
inside ``SipApplication`` and whatever else may fail after the database is open.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from helpers.server import free_port
from sipsca.config import AuthConfig, DbConfig, ProxyConfig, RpcConfig, ServerConfig, SipscaConfig
from sipsca.errors import ConfigError
from sipsca.service import serve


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


def _still_running(timeout: float = 2.0) -> list[threading.Thread]:
    """The worker threads alive after ``timeout`` (a closed connection's thread ends a moment
    after ``close()`` returns: it resolves the close future, then leaves its loop)."""
    for thread in _workers():
        thread.join(timeout)
    return _workers()


@pytest.fixture
def no_leaked_connections() -> Iterator[None]:
    """Fails a test that leaves aiosqlite threads behind, after stopping them (so that a
    regression fails the test instead of hanging the test run at exit)."""
    before = set(_workers())
    yield
    leaked = [t for t in _still_running() if t not in before]
    if leaked:
        for obj in gc.get_objects():
            if isinstance(obj, aiosqlite.Connection) and obj._connection is not None:
                obj.stop()
        for thread in leaked:
            thread.join(5)
        pytest.fail(f"{len(leaked)} aiosqlite worker thread(s) left running")


def _config(tmp_path: Path, **sections: object) -> SipscaConfig:
    base = SipscaConfig(
        server=ServerConfig(listen=(f"udp:127.0.0.1:{free_port()}",)),
        db=DbConfig(db_url=f"sqlite:///{tmp_path}/db.sqlite"),
        rpc=RpcConfig(enabled=False),
    )
    import dataclasses

    return dataclasses.replace(base, **sections)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_leaked_connections")
async def test_a_constructor_error_closes_the_storage(tmp_path: Path) -> None:
    config = _config(tmp_path, auth=AuthConfig(mode="digest", secret="short"))
    with pytest.raises(ConfigError, match="secret"):
        await serve(config)
    assert not _still_running()


@pytest.mark.usefixtures("no_leaked_connections")
async def test_any_start_up_exception_is_a_config_error(tmp_path: Path) -> None:
    """Not only ConfigError: the resolver's RemoteProtocolError for a bad static route used
    to escape as a traceback (exit 1), after which the process hung."""
    config = _config(tmp_path, proxy=ProxyConfig(static_routes=(("example.net", "bogus"),)))
    with pytest.raises(ConfigError, match="cannot start: RemoteProtocolError: Malformed flow"):
        await serve(config)
    assert not _still_running()


@pytest.mark.usefixtures("no_leaked_connections")
async def test_a_port_in_use_closes_the_storage(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        config = _config(tmp_path, server=ServerConfig(listen=(f"udp:127.0.0.1:{port}",)))
        with pytest.raises(ConfigError, match=r"server\.listen: cannot listen"):
            await serve(config)
    assert not _still_running()
