"""End-to-end fixtures: a real ``sipsca serve`` with fast timers, and the shared line.

``SIPSCA_E2E_AGAINST=kamailio`` runs the same tests against the reference Kamailio instead
(a debugging aid for the tests themselves: every [R] ruling and config-specific test is
expected to fail there).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from helpers.phone import Ladder
from helpers.sca import Line
from helpers.server import KamailioProcess, SipscaProcess, kamailio_available

# Fast timers: purge every second (a line-seize of 15 s never expires inside a test).
FAST = {"sca": {"purge_expired_interval": 1}}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, {}).update(v)
    return out


@pytest.fixture
def sca_server(
    tmp_path: Path, sipsca_factory: Callable[..., SipscaProcess]
) -> Iterator[Callable[..., Any]]:
    """``start(config=None) -> server`` with FAST timers merged under ``config``."""
    against = os.environ.get("SIPSCA_E2E_AGAINST", "sipsca")
    kams: list[KamailioProcess] = []

    def start(config: dict[str, Any] | None = None, **kw: Any) -> Any:
        cfg = _merge(FAST, config or {})
        if against == "kamailio":
            if not kamailio_available():
                pytest.skip("kamailio not installed")
            k = KamailioProcess(
                tmp_path / f"kam{len(kams)}", purge=int(cfg["sca"].get("purge_expired_interval", 1))
            )
            kams.append(k)
            return k.start()
        return sipsca_factory(cfg, **kw)

    yield start
    for k in kams:
        k.cleanup()


@pytest_asyncio.fixture
async def make_line(
    sca_server: Callable[..., Any], ladder: Ladder
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_line(config=None) -> Line`` on a fresh server; phones closed at teardown."""
    lines: list[Line] = []

    async def make(config: dict[str, Any] | None = None, user: str = "1000") -> Line:
        line = Line(sca_server(config), ladder, user=user)
        lines.append(line)
        return line

    yield make
    for line in lines:
        await line.close()


@pytest_asyncio.fixture
async def line(make_line: Callable[..., Any]) -> Line:
    """The common setup: members A and B subscribed to call-info (3600 s), bob answers calls."""
    ln = await make_line()
    await ln.member("A")
    await ln.member("B")
    await ln.callee()
    return ln
