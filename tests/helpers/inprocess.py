"""Shared test builders that run sipsca in the test's own process: the CLI as a child
process (``run``), an application whose sends are captured (``captured_app``) and the JSON
log output (``json_logs``)."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sipsca.cli import logs
from sipsca.config import ServerConfig, SipscaConfig
from sipsca.runtime.app import SipApplication
from sipsca.storage.memory import MemoryStorage

__all__ = ["captured_app", "json_logs", "run"]


def run(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m sipsca ARGS`` (bounded; a TimeoutExpired, the child killed, fails the
    test); never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "sipsca", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def captured_app() -> AsyncIterator[tuple[SipApplication, list[bytes]]]:
    """A started SipApplication (domain 127.0.0.1, memory storage, UDP on an ephemeral
    port) whose every send is appended to the list instead of going out."""
    storage = MemoryStorage()
    await storage.open()
    application = SipApplication(SipscaConfig(server=ServerConfig(domains=("127.0.0.1",))), storage)
    await application.start(("udp:127.0.0.1:0",))
    sent: list[bytes] = []
    application.transports.send = lambda data, flow: sent.append(data)  # type: ignore[method-assign]
    try:
        yield application, sent
    finally:
        await application.stop()
        await storage.close()


@contextlib.contextmanager
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What ``[log] format = "json"`` at INFO writes to stderr meanwhile; the root logger's
    handlers and level, and the third-party loggers' levels, are put back afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.setup_logging("info", "json")
        yield stream
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in logs.THIRD_PARTY:
            logging.getLogger(name).setLevel(logging.NOTSET)
