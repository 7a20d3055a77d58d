"""The asyncio shell around the sans-I/O cores: bytes in, core calls, effects out.

After every input (datagram, stream message, timer, finished storage call) the
application drains the transaction layer and the SCA engine (``pump``) and re-arms one
``loop.call_at`` per core from its ``get_timer()``, as aioquic's ``transmit()`` does.
Core methods never await; storage is awaited here, outside them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import TYPE_CHECKING

from sipsca.config import SipscaConfig
from sipsca.errors import RemoteProtocolError
from sipsca.registrar.model import Binding
from sipsca.runtime.addressing import split_hostport
from sipsca.runtime.clock import Clock, SystemClock
from sipsca.runtime.loop_timer import GridTimer
from sipsca.runtime.metrics import Metrics
from sipsca.runtime.overload import OverloadGuard
from sipsca.runtime.persistence import WriteBack
from sipsca.runtime.resolver import Resolver
from sipsca.runtime.stateless import error_reply_bytes, stamped_via
from sipsca.runtime.stateless_relay import relay_stray_2xx
from sipsca.runtime.trace import describe, trace, tracing
from sipsca.runtime.transport import Listener, TransportManager
from sipsca.sca.effects import (
    AppearanceChanged,
    DeleteAppearance,
    DeleteSubscription,
    PersistAppearance,
    PersistSubscription,
    SendNotify,
)
from sipsca.sca.engine import ScaEngine
from sipsca.sca.model import AppearanceState, ScaEvent
from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.message import SipRequest, SipResponse
from sipsca.sip.parser import ParserLimits, parse_message
from sipsca.sip.uri import SipUri, parse_uri
from sipsca.storage.base import Storage
from sipsca.transaction import (
    CancelReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    reply_via_problem,
)

if TYPE_CHECKING:
    from sipsca.runtime.forwarding import ProxyCore
    from sipsca.runtime.routing import RequestRouter

__all__ = ["SipApplication", "stamp_via", "tune_gc"]

logger = logging.getLogger(__name__)

PUMP_BATCH = 10_000
"""Steps (events, effects, sends) per pump call before the loop gets a turn."""
DRAIN_BATCHES = 100
"""Batches a start-up or shutdown drain may run (a bound, should the work ever feed itself)."""


SubscriptionKey = tuple[str, ScaEvent, str]


class _TokenSource:
    """Random 64-bit tokens in hex (To tags, Via branches), like ``secrets.token_hex(8)``
    but reading ``os.urandom`` 4 KiB at a time: one system call per 512 tokens instead of
    one per token (two tokens per SUBSCRIBE)."""

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos + 8 > len(self._pool):
            self._pool = os.urandom(4096)
            pos = 0
        self._pos = pos + 8
        return self._pool[pos : pos + 8].hex()


new_token = _TokenSource()


def stamp_via(request: SipRequest, source: Flow) -> None:
    """Add ``received`` (RFC 3261 18.2.1) and fill ``rport`` (RFC 3581 4) in the top Via.

    Only the receiver writes these: a ``received`` or ``rport`` value the sender put there
    itself is replaced by the packet's source (else the replies would go wherever the
    sender named). A top Via no reply can be routed to (``reply_via_problem``) raises.

    Raises:
        RemoteProtocolError: the top Via is missing, malformed or unusable (400).
    """
    via = request.top_via
    if request.method != "ACK":  # an ACK is never answered
        problem = reply_via_problem(via, source)
        if problem is not None:
            raise RemoteProtocolError(problem)
    stamped = stamped_via(via, source)
    if stamped is not None:
        request.replace_top_via(stamped)


def tune_gc() -> None:
    """Tune the cyclic garbage collector for a long-running server; call once after start-up.

    Every live transaction, subscription and cached parse result is a container the
    collector scans, at roughly 0.5 us each (the objects are scattered in memory): timer J
    alone keeps each non-INVITE server transaction 32 s over UDP, so at 7,000 SUBSCRIBE/s
    some 500,000 objects are alive. By default CPython 3.11 runs a full collection each
    time the old generation has grown by a quarter: a pause of a quarter of a second every
    few seconds under that load. Two changes:

    * ``gc.freeze()`` moves everything allocated so far (modules, classes, configuration:
      tens of thousands of objects that live as long as the process) to the permanent
      generation, so no collection scans them again;
    * a full collection waits for 100 (instead of 10) collections of the middle
      generation, i.e. at least 700,000 net allocations: in a simulated steady state of
      SUBSCRIBEs this halves the time spent in the collector (about 50 -> 22 us per
      SUBSCRIBE cycle). Cycles in young objects are still collected as often as before;
      only garbage cycles that survived two younger collections wait longer.

    The young thresholds stay at CPython's defaults: larger ones collect less often but
    scan objects that have left the CPU caches, costing as much in total with longer pauses.
    """
    gc.collect()
    gc.freeze()
    threshold0, threshold1, _ = gc.get_threshold()
    gc.set_threshold(threshold0, threshold1, GC_THRESHOLD2)


GC_THRESHOLD2 = 100
"""Old-generation threshold set by :func:`tune_gc` (CPython's default is 10)."""


class SipApplication:
    """One running sipsca server: transports, transaction layer, SCA engine, proxy, registrar."""

    def __init__(
        self,
        config: SipscaConfig,
        storage: Storage,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        from sipsca.runtime.forwarding import ProxyCore
        from sipsca.runtime.routing import RequestRouter

        self.config = config
        self.storage = storage
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.limits = ParserLimits(max_message_size=config.server.max_message_size)
        self.tl = TransactionLayer(config.transaction, branch_factory=new_token)
        self.sca = ScaEngine(
            config.sca,
            tag_factory=new_token,
            server_id=config.db.server_id,
            user_agent=config.server.user_agent,
        )
        self.resolver = Resolver(
            config.proxy.static_routes,
            tls=any(item.lower().startswith("tls:") for item in config.server.listen),
        )
        self.transports = TransportManager(
            self.on_bytes,
            on_send_error=self.on_send_error,
            limits=self.limits,
            idle_timeout=config.server.tcp_idle_timeout,
            message_timeout=config.server.tcp_message_timeout,
            handshake_timeout=config.server.tls_handshake_timeout,
            max_connections=config.server.max_connections,
        )
        self.transports.stream_error_hook = self.on_stream_error
        self.transports.drop_hook = self.metrics.connection_dropped
        self.writeback = WriteBack(
            storage,
            interval=float(config.db.db_update_interval),
            on_error=self.metrics.db_error,
            observe=self.metrics.db_observe,
        )
        self.bindings: dict[str, dict[str, Binding]] = {}
        self.notifies: dict[str, tuple[SubscriptionKey, int, str, str | None]] = {}
        self.local_hosts: set[tuple[str, int | None]] = set()
        self.router: RequestRouter = RequestRouter(self)
        self.proxy: ProxyCore = ProxyCore(self)
        self._tl_timer = GridTimer()
        self._sca_timer = GridTimer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump_pending = False
        self._stopping = False
        self.started_at = self.clock.time()
        self.overload = OverloadGuard(config.server.overload_queue * 1024)
        self._overload_logged = (-1e9, 0)
        self.keys_by_flow: dict[Flow, set[str]] = {}
        self.flow_of_key: dict[str, Flow] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics.set_state_source(self.state_snapshot)

    # ------------------------------------------------------------------ start/stop
    async def start(self, listen: tuple[str, ...]) -> list[Listener]:
        from sipsca.cli.settings import parse_listen

        self._loop = asyncio.get_running_loop()
        listeners = []
        for item in listen:
            transport, host, port = parse_listen(item)
            try:
                listeners.append(await self.transports.listen(transport, host, port))
            except OSError as exc:
                # uvloop wraps the errno in __cause__ ("could not bind to local_addr").
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                reason = cause.strerror or str(cause)
                raise OSError(cause.errno, f"{item}: {reason}") from exc
        for listener in listeners:
            self.local_hosts.add((listener.host, listener.port))
            if listener.host in ("127.0.0.1", "::1"):
                self.local_hosts.add(("localhost", listener.port))
            if listener.port in (5060, 5061):
                self.local_hosts.add((listener.host, None))
        adv = self.config.server.advertised_address
        ports = {listener.port for listener in listeners}
        for item in (adv, *self.config.server.domains):
            if item:
                # A domain without a port is ours on the default port and on every listener.
                host, number = split_hostport(item)
                name = host.lower()
                if number is not None:
                    self.local_hosts.add((name, number))
                else:
                    self.local_hosts.add((name, None))
                    self.local_hosts.update((name, port) for port in ports)
        self.router.configure()
        self.writeback.start()
        self.pump()
        return listeners

    async def restore(self) -> None:
        """Load subscriptions, appearances and bindings from storage (expired ones dropped)."""
        now = self.clock.time()
        subs = await self.storage.load_subscriptions(server_id=self.config.db.server_id)
        apps = await self.storage.load_appearances()
        self.sca.restore(subs, apps, now=now)
        for binding in await self.storage.load_bindings():
            if binding.expires_at > now:
                self.bindings.setdefault(binding.aor, {})[binding.contact] = binding
            else:
                self.writeback.delete_binding((binding.aor, binding.contact))
        logger.info(
            "loaded %d stored subscriptions and %d appearances; restored %d bindings",
            len(subs),
            len(apps),
            sum(len(b) for b in self.bindings.values()),
        )
        self._drain()
        self._arm_timers()
        # Write the raised NOTIFY CSeqs (and the deletions of what expired) before serving:
        # otherwise a crash within db_update_interval of this start would restore the old
        # values again and the next NOTIFYs could repeat CSeqs already sent.
        await self.writeback.flush()

    async def stop(self) -> None:
        self._stopping = True  # no more loop timers or pump continuations
        self._tl_timer.cancel()
        self._sca_timer.cancel()
        self._drain()
        await self.writeback.close()
        await self.transports.close()
        self.resolver.close()

    # ------------------------------------------------------------------ input
    @property
    def overloaded(self) -> bool:
        return self.overload.active

    def on_bytes(self, data: bytes, flow: Flow) -> None:
        if tracing(logging.DEBUG):
            trace.debug("recv %s %s", flow, describe(data))
        if flow.transport == "udp":
            self.overload.observe_backlog(self.transports.udp_backlog, self.clock.monotonic())
        try:
            msg = parse_message(data, self.limits, stream=flow.reliable)
        except RemoteProtocolError as exc:
            self.metrics.parse_error(flow.transport)
            self._reject_unparsable(data, flow, exc)
            return
        try:
            if isinstance(msg, SipRequest):
                self.metrics.message_in("request", msg.method)
                stamp_via(msg, flow)
                if self.overload.active and self.router.stateless.shed(msg, flow):
                    self._log_overload()
                    self.pump()
                    return
                if self.router.stateless.answer_statelessly(msg, flow):
                    self.pump()
                    return
                self.tl.receive_request(msg, source=flow, now=self.clock.monotonic())
            else:
                assert isinstance(msg, SipResponse)
                cseq = (msg.headers.get("cseq") or "").split()
                self.metrics.message_in("response", cseq[-1] if cseq else "", msg.status)
                self.tl.receive_response(msg, source=flow, now=self.clock.monotonic())
        except RemoteProtocolError as exc:
            self.metrics.parse_error(flow.transport)
            if isinstance(msg, SipRequest) and msg.method != "ACK":  # ACKs are never answered
                self._reject_unparsable(data, flow, exc)
        self.pump()

    def _log_overload(self) -> None:
        """One line per 10 s while shedding, not one per shed request."""
        now = self.clock.monotonic()
        last, shed_then = self._overload_logged
        if now - last >= 10.0:
            logger.warning(
                "overload: shedding new requests with 503 (%d shed since the last report, "
                "UDP receive backlog %d kB, event loop %s)",
                self.overload.shed - shed_then,
                self.transports.udp_backlog // 1024,
                "lagging" if self.overload.lagging else "keeping up",
            )
            self._overload_logged = (now, self.overload.shed)

    def _reject_unparsable(self, data: bytes, flow: Flow, exc: RemoteProtocolError) -> None:
        logger.info("malformed message from %s: %s", flow, exc.reason)
        if exc.status_hint <= 0:
            return  # nothing to answer
        reply = error_reply_bytes(data, exc.status_hint, exc.reason, flow)
        if reply is not None:
            if tracing(logging.DEBUG):
                trace.debug("send %s %s", flow, describe(reply))
            self.transports.send(reply, flow)

    def on_stream_error(self, flow: Flow, status: int, reason: str) -> None:
        self.metrics.parse_error(flow.transport)

    def on_send_error(self, flow: Flow, status: int, reason: str) -> None:
        logger.info("cannot send to %s: %s", flow, reason)
        now = self.clock.monotonic()
        for key in list(self.keys_by_flow.pop(flow, ())):
            self.tl.transport_failed(key, now=now)
        self.pump()

    # ------------------------------------------------------------------ pump
    def pump(self) -> None:
        """Drain every core, then re-arm the timers.

        One call does at most :data:`PUMP_BATCH` steps; what is left (a purge or an RPC that
        ended 100,000 subscriptions at once) continues in a callback of its own, after the
        loop has served the sockets in between, instead of waiting for the next datagram.
        """
        drained = self._pump_batch()
        loop = self._loop
        if not (drained or loop is None or self._pump_pending or self._stopping):
            self._pump_pending = True
            loop.call_soon(self._pump_rest)
        self._arm_timers()

    def _pump_rest(self) -> None:
        self._pump_pending = False
        if not self._stopping:
            self.pump()

    def _drain(self) -> None:
        """Pump to the end without giving the loop a turn (start-up and shutdown)."""
        for _ in range(DRAIN_BATCHES):
            if self._pump_batch():
                return
        logger.warning("work still queued after %d steps; left undone", DRAIN_BATCHES * PUMP_BATCH)

    def _pump_batch(self) -> bool:
        """Up to PUMP_BATCH steps; True when nothing is left to do."""
        for _ in range(PUMP_BATCH):
            event = self.tl.next_event()
            if event is not None:
                self._dispatch(event)
            effect = self.sca.next_effect()
            if effect is not None:
                self._apply_effect(effect)
            out = self.tl.messages_to_send()
            for item in out:
                try:
                    self._send(item)
                except Exception:  # one bad destination must not drop the rest of the batch
                    logger.exception("cannot send to %s", item.destination)
            if event is None and effect is None and not out:
                return True
        return False

    def _send(self, item: Outgoing) -> None:
        msg = item.message
        if msg is None:
            # A retransmission: transactions keep only the bytes of what they resend, and
            # retransmissions are rare enough to parse them again for the labels.
            try:
                msg = parse_message(item.data)
            except RemoteProtocolError:
                msg = None
        if isinstance(msg, SipRequest):
            self.metrics.message_out("request", msg.method)
        elif isinstance(msg, SipResponse):
            cseq = (msg.headers.get("cseq") or "").split()
            self.metrics.message_out("response", cseq[-1] if cseq else "", msg.status)
        if tracing(logging.DEBUG):
            again = " (retransmission)" if item.message is None else ""
            trace.debug("send %s %s%s", item.destination, describe(item.data), again)
        self.transports.send(item.data, item.destination)

    def _dispatch(self, event: object) -> None:
        try:
            if isinstance(event, RequestReceived):
                self.router.on_request(event.request, event.source, event.key)
            elif isinstance(event, CancelReceived):
                self.proxy.on_cancel(event.request, event.source, event.key, event.invite_key)
            elif isinstance(event, ResponseReceived):
                if event.key in self.notifies:
                    self._notify_result(event.key, event.response.status)
                else:
                    self.proxy.on_response(event.response, event.key)
            elif isinstance(event, StrayResponseReceived):
                relay_stray_2xx(self, event.response)
            elif isinstance(event, TransactionTimedOut):
                if event.key in self.notifies:
                    self._notify_result(event.key, None)
                elif not event.server:
                    self.proxy.on_branch_failure(event.key, timeout=True)
            elif isinstance(event, TransportFailed):
                if event.key in self.notifies:
                    self._notify_result(event.key, None)
                else:
                    self.proxy.on_branch_failure(event.key, timeout=False)
            elif isinstance(event, TransactionTerminated):
                self.notifies.pop(event.key, None)
                flow = self.flow_of_key.pop(event.key, None)
                if flow is not None:
                    keys = self.keys_by_flow.get(flow)
                    if keys is not None:
                        keys.discard(event.key)
                        if not keys:
                            del self.keys_by_flow[flow]
                self.proxy.on_terminated(event.key)
        except RemoteProtocolError as exc:
            logger.info("dropping message: %s", exc.reason)
            if isinstance(event, RequestReceived) and event.key is not None:
                self.router.reply(event.request, event.key, exc.status_hint or 400, exc.reason)
        except Exception:
            logger.exception("internal error while handling %s", type(event).__name__)
            if isinstance(event, RequestReceived) and event.key is not None:
                try:
                    self.router.reply(event.request, event.key, 500, "Server Internal Error")
                except Exception:
                    logger.exception("cannot send 500")

    # ------------------------------------------------------------------ SCA effects
    def _apply_effect(self, effect: object) -> None:
        if isinstance(effect, SendNotify):
            self.send_notify(effect)
        elif isinstance(effect, PersistSubscription):
            self.writeback.save_subscription(effect.subscription)
        elif isinstance(effect, DeleteSubscription):
            self.writeback.delete_subscription(effect.key)
        elif isinstance(effect, PersistAppearance):
            self.writeback.save_appearance(effect.appearance)
        elif isinstance(effect, DeleteAppearance):
            self.writeback.delete_appearance((effect.aor, effect.index))
        elif isinstance(effect, AppearanceChanged):
            self.metrics.appearance_changed(effect.old.wire_name, effect.new.wire_name)

    def send_notify(self, effect: SendNotify) -> None:
        request = effect.request
        routed = request.headers.get("route") is not None
        dest: Flow | None = None
        # A UDP flow is never reused (only open TCP/TLS connections are): skip parsing it.
        if effect.flow and not routed and not effect.flow.startswith("udp:"):
            try:
                flow = parse_flow(effect.flow)
            except RemoteProtocolError:
                flow = None
            if flow is not None and flow.reliable and self.transports.has_connection(flow):
                dest = flow
        if dest is None:
            try:
                hop = effect.next_hop
                uri = request.ruri if hop == request.uri else parse_uri(hop)
            except RemoteProtocolError:
                self._notify_unresolved(effect)
                return
            dest = self.resolver.resolve_now(uri)
            if dest is None:
                if self._loop is not None and self.resolver.must_query(uri):
                    self.spawn(self._resolve_and_notify(effect, uri))  # a host name: DNS
                else:
                    self._notify_unresolved(effect)
                return
        self._send_notify_to(effect, dest)

    async def _resolve_and_notify(self, effect: SendNotify, uri: SipUri) -> None:
        dest = await self.resolver.resolve(uri)
        if dest is None:
            self._notify_unresolved(effect)
        else:
            self._send_notify_to(effect, dest)

    def _notify_unresolved(self, effect: SendNotify) -> None:
        request = effect.request
        logger.warning("cannot resolve NOTIFY destination %s", effect.next_hop)
        self.sca.on_notify_result(
            effect.key,
            request.cseq.number,
            None,
            now=self.clock.time(),
            dialog=(request.call_id, request.from_tag or ""),
        )

    def _send_notify_to(self, effect: SendNotify, dest: Flow) -> None:
        request = effect.request
        request.headers.prepend(
            "Via", self.router.addresses.via_value(dest, "z9hG4bK" + new_token())
        )
        key = self.send_request(request, dest)
        self.notifies[key] = (effect.key, request.cseq.number, request.call_id, request.from_tag)

    def _notify_result(self, key: str, status: int | None) -> None:
        if status is not None and status < 200:
            return
        sub_key, cseq, call_id, tag = self.notifies.pop(key)
        if status is None or status >= 300:
            self.metrics.notify_failed("timeout" if status is None else str(status))
        self.sca.on_notify_result(
            sub_key, cseq, status, now=self.clock.time(), dialog=(call_id, tag or "")
        )

    # ------------------------------------------------------------------ timers
    def _arm_timers(self) -> None:
        loop = self._loop
        if loop is None or self._stopping:
            return
        deadline = self.tl.get_timer()
        if deadline is not None:
            # TransactionLayer deadlines are monotonic, like loop.time() on Linux.
            self._tl_timer.arm(loop, deadline, self.clock.monotonic(), self._on_tl_timer)
        sca_deadline = self.sca.get_timer()
        if sca_deadline is not None:
            self._sca_timer.arm(loop, sca_deadline, self.clock.time(), self._on_sca_timer)

    # The loop clock has millisecond granularity, so a timer may run a little before its
    # grid point; it is handled as of that point, or it would find nothing due and re-arm
    # for the same instant again and again until the clock caught up.
    def _on_tl_timer(self) -> None:
        tick = self._tl_timer.fired()
        self.tl.handle_timer(max(self.clock.monotonic(), tick))
        self.pump()

    def _on_sca_timer(self) -> None:
        tick = self._sca_timer.fired()
        now = max(self.clock.time(), tick)
        self.sca.handle_timer(now)
        self.router.registration.purge_bindings(now)
        self.pump()

    # ------------------------------------------------------------------ helpers
    def state_snapshot(self) -> dict[str, object]:
        """Gauges for /metrics, read at scrape time."""
        stats = self.sca.stats()
        appearances = {
            state.wire_name: 0.0 for state in AppearanceState if state is not AppearanceState.IDLE
        }
        for state in AppearanceState:
            if state is not AppearanceState.IDLE:
                appearances[state.wire_name] += stats.get(f"appearances_{state.name.lower()}", 0)
        return {
            "subscriptions": {
                "call-info": stats.get("subscriptions_call_info", 0),
                "line-seize": stats.get("subscriptions_line_seize", 0),
            },
            "appearances": appearances,
            "transactions": self.tl.counts,
            "registrations": sum(len(table) for table in self.bindings.values()),
        }

    def send_request(self, request: SipRequest, dest: Flow) -> str:
        """Start a client transaction, remembering its flow for transport-failure reports."""
        key = self.tl.send_request(request, destination=dest, now=self.clock.monotonic())
        self.flow_of_key[key] = dest
        self.keys_by_flow.setdefault(dest, set()).add(key)
        return key

    def spawn(self, coro: object) -> None:
        """Run a coroutine of request handling (auth lookups) and pump afterwards."""
        assert self._loop is not None
        task = self._loop.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except Exception:
            logger.exception("request handling failed")
        finally:
            self.pump()
