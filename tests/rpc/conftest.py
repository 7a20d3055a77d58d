"""Fixtures: the fake backend served by the real aiohttp app on 127.0.0.1, ephemeral port.

Async tests use a server on the test's own loop; the CLI tests (CliRunner and a subprocess
block while they wait for the answer) use :class:`ThreadedServer`, which runs the same app on
a loop in a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sipsca.rpc.app import bound_port, make_app, start_rpc_server
from sipsca.runtime.metrics import Metrics

from .fakes import FakeBackend

TOKEN = "s3cret-token"


@dataclass
class Server:
    url: str
    backend: FakeBackend
    metrics: Metrics
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return self.url.removesuffix("/RPC")

    async def post(self, payload: Any, *, token: str | None = None) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.session.post(self.url, json=payload, headers=headers)

    async def call(self, method: str, *params: Any, token: str | None = None) -> dict[str, Any]:
        """One request with id 1; returns the decoded response object."""
        response = await self.post(
            {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}, token=token
        )
        assert response.status == 200
        assert response.content_type == "application/json"
        body: dict[str, Any] = await response.json()
        assert body["jsonrpc"] == "2.0"
        assert body["id"] == 1
        return body

    async def result(self, method: str, *params: Any) -> Any:
        body = await self.call(method, *params)
        assert "error" not in body, body
        return body["result"]

    async def fault(self, method: str, *params: Any) -> tuple[int, str]:
        body = await self.call(method, *params)
        assert "result" not in body, body
        return body["error"]["code"], body["error"]["message"]


async def _serve(backend: FakeBackend, metrics: Metrics, token: str) -> tuple[web.AppRunner, str]:
    runner = await start_rpc_server(
        make_app(backend, metrics.registry, token=token), "127.0.0.1", 0
    )
    return runner, f"http://127.0.0.1:{bound_port(runner)}/RPC"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend.seeded()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_metrics=False)


@pytest.fixture
async def server(backend: FakeBackend, metrics: Metrics) -> AsyncIterator[Server]:
    runner, url = await _serve(backend, metrics, "")
    async with aiohttp.ClientSession() as session:
        yield Server(url, backend, metrics, session)
    await runner.cleanup()


@pytest.fixture
async def secured(backend: FakeBackend, metrics: Metrics) -> AsyncIterator[Server]:
    runner, url = await _serve(backend, metrics, TOKEN)
    async with aiohttp.ClientSession() as session:
        yield Server(url, backend, metrics, session)
    await runner.cleanup()


class ThreadedServer:
    """The app on its own loop in a thread, for callers that block (CliRunner, subprocess)."""

    def __init__(self, backend: FakeBackend, token: str = "") -> None:
        self.backend = backend
        self._token = token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._runner, self.url = asyncio.run_coroutine_threadsafe(
            _serve(self.backend, Metrics(process_metrics=False), self._token), self._loop
        ).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def threaded(backend: FakeBackend) -> Iterator[ThreadedServer]:
    with ThreadedServer(backend) as server:
        yield server


@pytest.fixture
def threaded_secured(backend: FakeBackend) -> Iterator[ThreadedServer]:
    with ThreadedServer(backend, TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_rpc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SIPSCA_RPC_* must not leak into the CLI tests."""
    for name in ("SIPSCA_RPC_URL", "SIPSCA_RPC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
