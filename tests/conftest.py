"""Shared fixtures: real servers (sipsca, reference Kamailio) and emulated phones."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))  # makes tests/helpers importable

from helpers.phone import Ladder, Phone
from helpers.server import KamailioProcess, SipscaProcess, kamailio_available


@pytest.fixture
def sipsca_factory(tmp_path: Path) -> Iterator[Callable[..., SipscaProcess]]:
    """``start(config=None, **kw) -> SipscaProcess``; every server is stopped with SIGTERM at
    teardown and must exit 0."""
    started: list[SipscaProcess] = []

    def start(config: dict[str, Any] | None = None, **kw: Any) -> SipscaProcess:
        srv = SipscaProcess(tmp_path / f"sipsca{len(started)}", config, **kw)
        started.append(srv)
        return srv.start()

    yield start
    errors = []
    for srv in started:
        try:
            srv.stop()
        except AssertionError as exc:
            errors.append(str(exc))
        finally:
            srv.cleanup()
    assert not errors, "\n".join(errors)


@pytest.fixture
def sipsca_server(sipsca_factory: Callable[..., SipscaProcess]) -> SipscaProcess:
    return sipsca_factory()


def _require_kamailio() -> None:
    if not kamailio_available():
        if os.environ.get("CI"):
            pytest.fail("kamailio/kamcmd not installed (CI must run .ci/kamailio.sh first)")
        pytest.skip(
            "kamailio binary not installed (run .ci/kamailio.sh); set CI=1 to make this fail"
        )


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., KamailioProcess]]:
    """``start(purge=10, ...) -> KamailioProcess`` on 127.0.0.1:5070 (one at a time)."""
    _require_kamailio()
    started: list[KamailioProcess] = []

    def start(**kw: Any) -> KamailioProcess:
        for old in started:
            old.stop()
        k = KamailioProcess(tmp_path / f"kamailio{len(started)}", **kw)
        started.append(k)
        return k.start()

    yield start
    for k in started:
        k.cleanup()


@pytest.fixture
def kamailio_server(kamailio_factory: Callable[..., KamailioProcess]) -> KamailioProcess:
    return kamailio_factory()


@pytest.fixture
def ladder() -> Iterator[Ladder]:
    """The message ladder of all phones of a test, printed at teardown (shown on failure)."""
    lad = Ladder()
    yield lad
    print("\n--- ladder ---\n" + lad.dump())


@pytest_asyncio.fixture
async def phones(ladder: Ladder) -> AsyncIterator[Callable[..., Any]]:
    """``await make(server, name, user, **kw) -> Phone`` (started); all closed at teardown."""
    made: list[Phone] = []

    async def make(server: Any, name: str, user: str, **kw: Any) -> Phone:
        kw.setdefault("domain", server.domain)
        p = Phone(name, user, server=server.sip_addr, ladder=ladder, **kw)
        made.append(p)
        return await p.start()

    yield make
    for p in made:
        await p.close()
