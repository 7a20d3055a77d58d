"""The management HTTP server: JSON-RPC, Prometheus metrics and a health check.

One aiohttp application on the SIP server's own event loop (through ``AppRunner``/``TCPSite``),
so RPC handlers run between SIP events and can call the SCA engine without locks.

Routes:
    ``POST /RPC`` (and ``POST /``)  JSON-RPC 2.0, Kamailio jsonrpcs shapes
    ``GET /metrics``                Prometheus exposition of the given registry
    ``GET /health``                 ``{"status": "ok"}`` for load balancers and probes

With a token every route needs ``Authorization: Bearer <token>``; the RPC can seize lines and
cut subscriptions, and metrics reveal who is calling whom, so nothing is exempt.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sipsca.rpc.api import ManagementBackend
from sipsca.rpc.jsonrpc import JsonRpcServer, dumps, error_response
from sipsca.rpc.listen import check_rpc_listen, format_hostport
from sipsca.rpc.methods import MethodTable

__all__ = [
    "MAX_BODY",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "bound_port",
    "check_rpc_listen",
    "make_app",
    "start_rpc_server",
]

logger = logging.getLogger(__name__)

MAX_BODY: Final = 1 << 20
"""Largest accepted request body (1 MiB): far more than any batch of sca commands needs."""

UNAUTHORIZED: Final = 401
TOO_LARGE: Final = 413

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_response(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=body,
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An HTTP-level refusal in JSON-RPC form, so JSON-RPC clients can show it uniformly."""
    return _json_response(dumps(error_response(status, message)), status, headers)


def _auth_middleware(token: str) -> Middleware:
    """Require ``Authorization: Bearer <token>`` (scheme case-insensitive, RFC 6750).

    ``hmac.compare_digest`` so response timing does not leak how much of a guess was right.
    """
    expected = token.strip().encode()

    @web.middleware
    async def auth(request: web.Request, handler: _Handler) -> web.StreamResponse:
        scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode(), expected
        ):
            logger.warning(
                "rpc: unauthorized %s %s from %s", request.method, request.path, request.remote
            )
            return _error(
                UNAUTHORIZED,
                "Unauthorized: missing or wrong bearer token",
                {"WWW-Authenticate": 'Bearer realm="sipsca"'},
            )
        return await handler(request)

    return auth


class _Routes:
    """The request handlers, bound to one backend and registry."""

    def __init__(self, rpc: JsonRpcServer, registry: CollectorRegistry, max_body: int) -> None:
        self._rpc = rpc
        self._registry = registry
        self._max_body = max_body

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > self._max_body:
            return self._too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        answer = self._rpc.handle_body(body)
        if answer is None:  # notifications only: JSON-RPC says send nothing at all
            return web.Response(status=204)
        return _json_response(answer)

    def _too_large(self) -> web.Response:
        return _error(TOO_LARGE, f"Request body too large (limit {self._max_body} bytes)")

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def health(self, request: web.Request) -> web.StreamResponse:
        return _json_response(dumps({"status": "ok"}))


def make_app(
    backend: ManagementBackend,
    registry: CollectorRegistry,
    *,
    token: str = "",
    max_body: int = MAX_BODY,
) -> web.Application:
    """Build the management application (not started; see :func:`start_rpc_server`).

    ``token`` empty means no authentication: only safe on loopback, which the caller enforces
    with :func:`check_rpc_listen` before binding.
    """
    routes = _Routes(JsonRpcServer(MethodTable(backend).call), registry, max_body)
    middlewares = [_auth_middleware(token)] if token.strip() else []
    # client_max_size: aiohttp stops reading a chunked body once it passes the limit.
    app = web.Application(client_max_size=max_body, middlewares=middlewares)
    app.router.add_post("/RPC", routes.rpc)
    app.router.add_post("/", routes.rpc)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/health", routes.health)
    return app


async def start_rpc_server(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> web.AppRunner:
    """Bind and serve ``app``; returns the runner, whose ``cleanup()`` stops it.

    Port 0 picks a free port (see :func:`bound_port`). Signals stay with the SIP server,
    which owns the process lifecycle.

    Raises:
        OSError: the address cannot be bound (the runner is cleaned up first).
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=logging.getLogger("sipsca.rpc.access"),
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    logger.info("rpc: listening on %s", ", ".join(map(_address, runner.addresses)))
    return runner


def _address(address: object) -> str:
    """A bound address as an operator writes it (``127.0.0.1:5080``), not a socket tuple."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_hostport(str(address[0]), int(address[1]))
    return str(address)


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (useful after asking for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("rpc server is not listening")
