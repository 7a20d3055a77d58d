"""Composition root: storage, restore, listeners, RPC, signals, graceful stop.

``run_server`` is what ``sipsca serve`` calls. Start-up problems (port in use, unreadable
certificate, unreachable database schema) raise :class:`ConfigError` with one clear line.
``check_startup`` is the part of those checks that needs no network, which ``sipsca
check-config`` runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable

from aiohttp import web

from sipsca import __version__
from sipsca.config import SipscaConfig
from sipsca.errors import ConfigError, StorageError
from sipsca.rpc.app import check_rpc_listen, make_app, start_rpc_server
from sipsca.rpc.listen import parse_listen
from sipsca.runtime.app import SipApplication, tune_gc
from sipsca.runtime.management import Management
from sipsca.runtime.metrics import Metrics
from sipsca.runtime.transport import Listener
from sipsca.storage.base import Storage
from sipsca.storage.registry import open_storage, redact_url

__all__ = ["build_storage", "check_startup", "run_server", "serve", "tls_contexts"]

logger = logging.getLogger(__name__)


def tls_contexts(config: SipscaConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext]:
    """Server context of the ``tls`` listeners (None without one) and the client context.

    There is always a client context: a next hop with ``transport=tls`` is reached over
    TLS whether or not sipsca listens on TLS itself (it used to get plain TCP).
    """
    server = config.server
    try:
        # ``cafile`` replaces the system CAs: a private CA must not also trust every public one
        client_ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=(server.tls_ca_file or None) if server.tls_verify else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"server.tls_ca_file: cannot load {server.tls_ca_file}: {exc}")
    client_ctx.check_hostname = False  # the Flow holds the resolved address, not the name
    if not server.tls_verify:
        client_ctx.verify_mode = ssl.CERT_NONE
    if not any(item.startswith("tls:") for item in server.listen):
        return None, client_ctx
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        server_ctx.load_cert_chain(server.tls_cert, server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"server.tls_cert/server.tls_key: cannot load {server.tls_cert}: {exc}")
    return server_ctx, client_ctx


def build_storage(config: SipscaConfig) -> Storage:
    """The configured backend, built but not connected; a bad ``[db]`` value is a ConfigError
    naming ``db.db_url`` or ``db.subs_table``."""
    try:
        return open_storage(
            config.db.db_url, subs_table=config.db.subs_table, server_id=config.db.server_id
        )
    except ConfigError as exc:
        raise ConfigError(f"db.{exc}") from None  # the registry names the bare key


def _rpc_address(config: SipscaConfig) -> tuple[str, int] | None:
    """Host and port of the management listener (None when disabled), safe to bind."""
    if not config.rpc.enabled:
        return None
    host, port = parse_listen(config.rpc.listen)
    check_rpc_listen(host, config.rpc.token)
    return host, port


def _check_stream_limits(config: SipscaConfig) -> None:
    """The TCP/TLS protections must be on: a zero or negative time-out would close every
    connection at once (or never), a limit below 1 would refuse them all."""
    server = config.server
    for key in ("tcp_idle_timeout", "tcp_message_timeout", "tls_handshake_timeout"):
        if not getattr(server, key) > 0:
            raise ConfigError(f"server.{key} must be > 0 seconds")
    if server.max_connections < 1:
        raise ConfigError("server.max_connections must be >= 1")


def check_startup(config: SipscaConfig) -> None:
    """What ``serve`` checks before binding or connecting: certificates load, the database
    URL and table name are usable, the RPC address is valid and safe, the TCP/TLS limits
    are usable. ``check-config`` runs it so that it accepts exactly what ``serve`` would
    start with (short of ports in use and an unreachable database)."""
    _check_stream_limits(config)
    tls_contexts(config)
    _rpc_address(config)
    build_storage(config)


async def serve(
    config: SipscaConfig, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), then flush state and return.

    Every start-up failure is a :class:`ConfigError` (one line, exit 2), and the storage is
    closed on every way out: an open SQLite connection has a worker thread that would keep
    the process alive after the error (and report to a closed event loop).
    """
    stop = stop or asyncio.Event()
    # Config problems first, while there is nothing to undo.
    _check_stream_limits(config)
    server_ctx, client_ctx = tls_contexts(config)
    rpc_address = _rpc_address(config)
    storage = build_storage(config)
    try:
        try:
            app, runner, listeners = await _start(
                config, storage, server_ctx, client_ctx, rpc_address
            )
        except ConfigError:
            raise
        except Exception as exc:
            # Anything else the start-up raises (a value only a constructor checks, say) is
            # refused like a config error: one line, exit 2, never a traceback and a hang.
            logger.debug("start-up failed", exc_info=True)
            raise ConfigError(f"cannot start: {type(exc).__name__}: {exc}") from exc
        await _run(config, app, runner, listeners, ready=ready, stop=stop)
    finally:
        await _close_storage(storage)


async def _close_storage(storage: Storage) -> None:
    """Close the storage; a failure is logged, never raised over the error that got us here."""
    try:
        await storage.close()
    except StorageError as exc:
        logger.warning("closing the database failed: %s", exc)


async def _start(
    config: SipscaConfig,
    storage: Storage,
    server_ctx: ssl.SSLContext | None,
    client_ctx: ssl.SSLContext,
    rpc_address: tuple[str, int] | None,
) -> tuple[SipApplication, web.AppRunner | None, list[Listener]]:
    """Open the database, restore, listen, start the RPC server; undo the part already
    done when a step fails (the caller closes the storage)."""
    try:
        await storage.open()
        if await storage.schema_version() is None:
            await storage.init_schema()
        else:
            await storage.migrate()
    except StorageError as exc:
        raise ConfigError(f"db.db_url: cannot use database {redact_url(config.db.db_url)}: {exc}")
    metrics = Metrics()
    app = SipApplication(config, storage, metrics=metrics)
    app.transports.ssl_server = server_ctx
    app.transports.ssl_client = client_ctx
    try:
        await app.restore()
    except StorageError as exc:
        # Starting empty would let stored (maybe since ended) subscriptions come back later.
        url = redact_url(config.db.db_url)
        raise ConfigError(f"db.db_url: cannot restore state from {url}: {exc}")
    try:
        listeners = await app.start(config.server.listen)
    except BaseException as exc:
        await app.transports.close()
        app.resolver.close()
        if isinstance(exc, OSError):
            raise ConfigError(f"server.listen: cannot listen on {exc.strerror or exc}")
        raise
    runner = None
    if rpc_address is not None:
        try:
            rpc_app = make_app(
                Management(app, started=time.time()), metrics.registry, token=config.rpc.token
            )
            runner = await start_rpc_server(rpc_app, *rpc_address)
        except BaseException as exc:
            await app.stop()
            if isinstance(exc, OSError):
                raise ConfigError(
                    f"rpc.listen: cannot listen on {config.rpc.listen}: {exc.strerror or exc}"
                )
            raise
    return app, runner, listeners


async def _run(
    config: SipscaConfig,
    app: SipApplication,
    runner: web.AppRunner | None,
    listeners: list[Listener],
    *,
    ready: asyncio.Event | None,
    stop: asyncio.Event,
) -> None:
    """Serve until ``stop``, then stop the RPC server and the application (state flushed)."""
    tune_gc()  # after restore: the long-lived start-up objects are frozen out of GC scans
    # Signal handlers go in before the ready lines, so a stop right after start is graceful;
    # they stay installed until the process exits (a second SIGTERM during the flush is ignored).
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    for listener in listeners:
        print(f"listening {listener}", flush=True)
    if runner is not None:
        print(f"rpc http://{config.rpc.listen}/RPC", flush=True)
    lag_task = loop.create_task(_watch_loop_lag(app))
    if ready is not None:
        ready.set()
    logger.info("sipsca %s started", __version__)
    try:
        await stop.wait()
    finally:
        logger.info("stopping: flushing state")
        lag_task.cancel()
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            await app.stop()  # the storage is closed by serve(), after this
        logger.info("stopped")


async def _watch_loop_lag(app: SipApplication, period: float = 0.1) -> None:
    """Measure event-loop lag; above 0.5 s new dialogs are shed with 503 (overload control)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(period)
        lag = max(0.0, loop.time() - start - period)
        app.metrics.loop_lag(lag)
        overloaded = lag > 0.5
        if overloaded != app.overload.lagging:
            logger.warning(
                "overload %s (event loop lag %.3f s)", "started" if overloaded else "ended", lag
            )
        app.overload.lagging = overloaded


def run_server(config: SipscaConfig) -> int:
    """Blocking entry point (uvloop when installed); returns the process exit code."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config))
    except ConfigError as exc:
        print(f"sipsca: error: {exc}", file=sys.stderr)
        return 2
    return 0
