"""Fixtures of the proxy/registrar/auth end-to-end tests.

``server``: one ``sipsca serve`` per test module, configured by the module's ``SERVER_CONFIG``
(tests there use distinct user names, so they do not see each other's bindings).
``make_server``: a fresh server per call for tests that need their own configuration or
restart it. Every server is stopped with SIGTERM at teardown and must exit 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ProxyServer

# Fast, bounded timers for every server of this folder: T1 stays 0.5 s (the phones use it
# too), the SCA purge runs every second (also purges expired bindings). The database keeps
# its default write-back interval, so state is written at shutdown.
BASE: dict[str, dict[str, Any]] = {
    "sca": {"purge_expired_interval": 1},
}


def _merged(config: Any) -> Any:
    if callable(config):
        return lambda srv: _merge(BASE, config(srv))
    return _merge(BASE, config or {})


def _merge(a: dict[str, Any], b: Any) -> dict[str, Any]:
    out = {k: dict(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, {}).update(v)
    return out


def _stop_all(servers: list[ProxyServer]) -> None:
    errors = []
    for srv in servers:
        # Shown by pytest only when the test failed: the server's side of the story.
        print(f"\n--- sipsca log ({srv.workdir.name}) ---\n{srv.log_text()[-6000:]}")
        try:
            srv.stop()
        except AssertionError as exc:
            errors.append(str(exc))
        finally:
            srv.cleanup()
    assert not errors, "\n".join(errors)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ProxyServer]]:
    """``make_server(config=None, *, tls=False, start=True) -> ProxyServer``."""
    made: list[ProxyServer] = []

    def make(config: Any = None, *, tls: bool = False, start: bool = True) -> ProxyServer:
        srv = ProxyServer(tmp_path / f"srv{len(made)}", _merged(config), tls=tls)
        made.append(srv)
        return srv.start() if start else srv

    yield make
    _stop_all(made)


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyServer]:
    """The module's shared server (``SERVER_CONFIG`` of the test module, plus ``BASE``)."""
    config = getattr(request.module, "SERVER_CONFIG", {})
    tls = getattr(request.module, "SERVER_TLS", False)
    srv = ProxyServer(tmp_path_factory.mktemp("srv"), _merged(config), tls=tls)
    srv.start()
    yield srv
    _stop_all([srv])
