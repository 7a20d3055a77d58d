"""UDP, TCP and TLS transports over asyncio (RFC 3261 18).

Transports only move bytes: every complete message goes to ``on_message(data, flow)``
and the core decides what to do. Stream connections are indexed by their remote flow so
replies and later requests to that peer reuse the open connection (18.2.2, RFC 5626).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sipsca.errors import RemoteProtocolError
from sipsca.runtime.stateless import error_reply_bytes
from sipsca.runtime.stun import binding_response, is_stun
from sipsca.runtime.tls import StreamTransport, TlsServerTransport
from sipsca.sip.address import Flow
from sipsca.sip.parser import ParserLimits, StreamFramer

__all__ = ["Listener", "TransportManager"]

logger = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, Flow], None]
ErrorHandler = Callable[[Flow, int, str], None]

_FLOW_CACHE = 65536
"""Peers whose Flow objects are reused; the cache is emptied when it is full."""
_MAX_UNSENT = 1024 * 1024
"""Bytes of output a stream connection may have waiting for its peer to read them; past
this the connection is dropped (Kamailio's ``tcp_conn_wq_max``). Reading from a peer stops
already when its output passes asyncio's high-water mark (64 kB), so what grows past this
is output other peers caused (requests and NOTIFYs forwarded to it)."""
_PARTIAL = 4
"""Bytes a stream may hold between messages without a message deadline: a keep-alive
(CRLF CRLF) still arriving."""
_LIMIT_LOG_INTERVAL = 10.0
"""Seconds between two warnings about connections refused at ``max_connections``."""
_SOL_SOCKET = 1
_SO_MEMINFO = 55
"""Linux getsockopt: u32 array whose first entry is the bytes queued for reading (rmem_alloc)."""


def _backlog_probe(sock: object) -> tuple[Callable[[], int], Callable[[], None]] | None:
    """A cheap reader of the bytes waiting in ``sock``'s receive buffer (Linux), and the
    function that releases it; None where the kernel cannot tell.

    The receive queue is where a UDP server that cannot keep up hides its backlog: requests
    wait there for seconds and time out at the client. Reading its size lets the core shed
    new work with 503 before the queue delay grows (overload control). The reader uses its
    own socket object on a duplicate of the descriptor (same kernel socket): uvloop's
    socket stand-in costs 2.4 us per ``getsockopt``, a real socket object 0.5 us.
    """
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    try:
        own = socket.socket(fileno=os.dup(fileno()))
    except (OSError, TypeError, ValueError):
        return None
    getsockopt = own.getsockopt

    def probe() -> int:
        return int.from_bytes(getsockopt(_SOL_SOCKET, _SO_MEMINFO, 4), "little")

    try:
        probe()
    except OSError:
        own.close()
        return None
    return probe, own.close


@dataclass(frozen=True, slots=True)
class Listener:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, manager: TransportManager, listener: Listener) -> None:
        self.manager = manager
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None
        self._backlog: Callable[[], int] | None = None
        self._release: Callable[[], None] | None = None
        self._count = 0
        self._flows: dict[tuple[str, int], Flow] = {}
        """One Flow per peer address, shared by every message and transaction of that peer
        (a transaction keeps its flow for up to 32 s: one object instead of thousands)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        probe = _backlog_probe(transport.get_extra_info("socket"))
        if probe is not None:
            self._backlog, self._release = probe

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_probe()

    def release_probe(self) -> None:
        """Close the probe's duplicate descriptor (else the port stays bound after close)."""
        if self._release is not None:
            self._release()
            self._backlog = self._release = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) <= 4 and not data.strip():
            return  # RFC 5626 4.4.1 keep-alive (CRLF) on UDP: ignore
        if data[0] < 0x40 and is_stun(data):  # a SIP message starts with a letter
            reply = binding_response(data, addr)  # RFC 5626 keep-alive of an outbound flow
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        self._count += 1
        # Every datagram while anything is queued (so the end of a backlog is seen at once),
        # every 8th while the queue is empty.
        if self._backlog is not None and (self.manager.udp_backlog or not self._count & 7):
            self.manager.udp_backlog = self._backlog()
        flow = self._flows.get(addr)
        if flow is None:
            if len(self._flows) >= _FLOW_CACHE:
                self._flows.clear()
            flow = self._flows[addr] = Flow("udp", addr[0], addr[1])
        self.manager.on_message(data, flow)

    def error_received(self, exc: Exception) -> None:
        logger.debug("udp error on %s: %s", self.listener, exc)


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: Content-Length framing, CRLF keep-alives, idle timeout.

    Guards against abusive peers (docs/decisions.md 39): a message must be complete within
    ``message_timeout`` of the read that began it (slowloris), and an accepted connection
    must deliver its first message within ``message_timeout`` of being accepted (a silent
    connection cannot hold a slot until the idle timeout); reading stops while the
    output waiting for the peer is above asyncio's high-water mark (a peer that sends but
    never reads cannot make the server queue its answers); more than ``_MAX_UNSENT`` bytes
    unsent, or output still stuck when the idle timeout fires, drops the connection.
    """

    def __init__(
        self,
        manager: TransportManager,
        transport_name: str,
        *,
        outgoing: bool = False,
        tls_server: ssl.SSLContext | None = None,
    ) -> None:
        self.manager = manager
        self.name = transport_name
        self.outgoing = outgoing
        """Opened by sipsca (counted apart from accepted ones against ``max_connections``)."""
        self._tls_context = tls_server
        """Accepted on a TLS listener: the protocol runs the TLS session itself, so the
        connection counts from its accept, handshake included (runtime/tls.py)."""
        self._tls: TlsServerTransport | None = None
        self.registered = False
        """Counted in the manager's open connections (until ``connection_lost``)."""
        self.framer = StreamFramer(manager.limits)
        self.transport: StreamTransport | None = None
        """Where SIP is written: the TCP transport, or the TLS session once established."""
        self.flow: Flow | None = None
        self.pending: list[bytes] = []
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._dropped = False
        self._first = not outgoing
        """Accepted and no complete message received yet: the deadline runs from the
        accept, and CRLF keep-alives do not stop it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = raw
        requested = self.flow  # an outgoing connection's key in the manager's connecting map
        peer = transport.get_extra_info("peername")
        self.flow = Flow(self.name, str(peer[0]), int(peer[1]))
        if not self.manager.register_connection(self.flow, self):
            # Dead before the error is reported: a send to this flow made while it is
            # (re-entrantly) handled must open a new connection, not write to this one.
            unsent = bool(self.pending)
            self.pending.clear()
            self._dropped = True
            if requested is not None:
                self.manager.forget_connecting(requested, self)
            self.transport.abort()
            if unsent:  # an outgoing connection: its requests cannot go
                self.manager.on_send_error(requested or self.flow, 503, "connection limit reached")
            return
        if self._tls_context is not None:  # counted from now; SIP flows after the handshake
            self._tls = TlsServerTransport(raw, self._tls_context)
            self.transport = None  # what is sent to this flow waits in pending
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.manager.handshake_timeout, self._on_handshake)
            return
        self._start()

    def _start(self) -> None:
        """The connection carries SIP from now on: flush what waited, arm its timers."""
        assert self.transport is not None
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()
        self._touch()
        if self._first:  # accepted: a first message within message_timeout, or closed
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.manager.message_timeout, self._on_deadline)

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.manager.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle = None
        if self.transport is not None and self.transport.get_write_buffer_size():
            unsent = self.transport.get_write_buffer_size()
            self._drop("not_reading", f"peer not reading ({unsent} bytes unsent)")
            return
        logger.debug("closing idle connection %s", self.flow)
        self.close()

    def _on_handshake(self) -> None:
        self._deadline = None
        timeout = self.manager.handshake_timeout
        self._drop("tls_handshake", f"TLS handshake not done within {timeout:g} s")

    def _on_deadline(self) -> None:
        self._deadline = None
        self._drop(
            "message_timeout",
            f"a message did not complete within {self.manager.message_timeout:g} s "
            f"({self.framer.buffered} bytes received)",
        )

    def _drop(self, reason: str, why: str) -> None:
        """Close an abusive or dead peer's connection at once, unsent output discarded;
        ``reason`` is the metric label (``sipsca_connections_dropped_total``)."""
        logger.info("closing %s: %s", self.flow, why)
        self.manager.dropped(reason)
        self._dropped = True
        if self.transport is not None:
            self.transport.abort()
        elif self._tls is not None:  # in its handshake
            self._tls.abort()

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            try:
                data = self._tls.receive(data)
            except ssl.SSLError as exc:
                if self.transport is None:
                    self._drop("tls_handshake", f"TLS handshake failed: {exc.reason or exc}")
                else:
                    self._drop("tls_error", f"TLS error: {exc.reason or exc}")
                return
            if self.transport is None:
                if not self._tls.established:
                    return
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None
                self.transport = self._tls
                self._start()
            if self._tls.peer_closed:  # close_notify: serve what came with it, then close
                if data:
                    self._receive(data)
                self.close()
                return
            if not data:
                return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """SIP bytes from the peer (decrypted, for TLS): frame them and hand them up."""
        self._touch()
        assert self.flow is not None
        pings = self.framer.pings
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        if messages:
            self._first = False  # from now on the idle timeout governs its silences
        if self.framer.buffered > _PARTIAL:  # a message begun: it has message_timeout to end
            if self._deadline is None or messages:
                if self._deadline is not None:
                    self._deadline.cancel()
                loop = asyncio.get_running_loop()
                self._deadline = loop.call_later(self.manager.message_timeout, self._on_deadline)
        elif self._deadline is not None and not self._first:
            self._deadline.cancel()
            self._deadline = None
        if self.framer.pings != pings and self.transport is not None:
            self.transport.write(b"\r\n")  # RFC 5626 3.5.1 pong
        for message in messages:
            if self._dropped:  # its output passed the limit: the rest goes unanswered
                return
            self.manager.on_message(message, self.flow)
        failed = self.framer.failed
        if failed is not None:  # the messages before the bad one were served
            self._fail(failed)

    def _fail(self, exc: RemoteProtocolError) -> None:
        """Answer the request that broke the framing (400/513, RFC 3261 18.3), then close:
        the stream cannot be resynchronised, but the phone learns why."""
        assert self.flow is not None
        self.manager.on_stream_error(self.flow, exc.status_hint, exc.reason)
        if exc.status_hint >= 400 and self.transport is not None:
            head = self.framer.unframed_head()
            reply = error_reply_bytes(head, exc.status_hint, exc.reason, self.flow)
            if reply is not None:
                self.transport.write(reply)
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
            return
        if self._dropped:
            return  # aborted: what was for it is lost, as if the peer had gone
        transport = self.transport
        transport.write(data)
        unsent = transport.get_write_buffer_size()
        if not unsent:
            self._touch()  # only output the peer takes keeps the connection alive
        elif unsent > _MAX_UNSENT:
            self._drop("not_reading", f"peer not reading ({unsent} bytes unsent)")

    def pause_writing(self) -> None:
        """The peer does not read what we send: stop reading what it sends, so its requests
        cannot pile up answers here (asyncio calls this above the 64 kB high-water mark)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif self._tls is not None:  # in its handshake
            self._tls.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
        if self.flow is not None:
            self.manager.unregister_connection(self.flow, self)


class TransportManager:
    """Owns the listening sockets and the open stream connections."""

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        on_send_error: ErrorHandler,
        limits: ParserLimits,
        idle_timeout: float = 600.0,
        message_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        max_connections: int = 4096,
    ) -> None:
        self.on_message = on_message
        self.on_send_error = on_send_error
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.handshake_timeout = handshake_timeout
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.max_connections = max_connections
        self.listeners: list[Listener] = []
        self._udp: dict[Listener, _UdpProtocol] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: dict[Flow, _StreamProtocol] = {}
        self._connecting: dict[Flow, _StreamProtocol] = {}
        self._open = {False: 0, True: 0}
        """Open connections, accepted (False) and outgoing (True): each kind is limited to
        ``max_connections`` on its own, so peers cannot take the slots of sipsca's own
        connections (docs/decisions.md 39)."""
        self.stream_error_hook: ErrorHandler | None = None
        self.udp_backlog = 0
        """Bytes still queued in the receive buffer of the UDP socket read last."""
        self.refused = 0
        """Connections refused at ``max_connections`` since the start."""
        self.drop_hook: Callable[[str], None] | None = None
        """Told the reason of every connection refused or dropped (the metrics)."""
        self._refused_logged = (-_LIMIT_LOG_INTERVAL, 0)

    async def listen(self, transport: str, host: str, port: int) -> Listener:
        loop = asyncio.get_running_loop()
        if transport == "udp":
            udp_transport, proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, Listener("udp", host, port)), local_addr=(host, port)
            )
            sock = udp_transport.get_extra_info("socket")
            for opt, size in ((8, 4 * 1024 * 1024), (7, 4 * 1024 * 1024)):  # SO_RCVBUF/SO_SNDBUF
                try:
                    sock.setsockopt(1, opt, size)
                except OSError:
                    pass
            actual = udp_transport.get_extra_info("sockname")
            listener = Listener("udp", host, int(actual[1]))
            proto.listener = listener
            self._udp[listener] = proto
        else:
            # A TLS listener accepts TCP; each connection runs its TLS session itself.
            server = await loop.create_server(
                lambda: self._accepting(transport), host, port, reuse_address=True
            )
            actual = server.sockets[0].getsockname()
            listener = Listener(transport, host, int(actual[1]))
            self._servers.append(server)
        self.listeners.append(listener)
        return listener

    def _accepting(self, transport: str) -> _StreamProtocol:
        tls = self.ssl_server if transport == "tls" else None
        return _StreamProtocol(self, transport, tls_server=tls)

    def dropped(self, reason: str) -> None:
        if self.drop_hook is not None:
            self.drop_hook(reason)

    def register_connection(self, flow: Flow, proto: _StreamProtocol) -> bool:
        """Index a new connection; False (the caller closes it) when ``max_connections`` of
        its kind (accepted, or opened by sipsca) are open."""
        if self._open[proto.outgoing] < self.max_connections:
            self._open[proto.outgoing] += 1
            proto.registered = True
            self._connections[flow] = proto
            return True
        self.refused += 1
        self.dropped("limit")
        now = asyncio.get_running_loop().time()
        last, refused_then = self._refused_logged
        if now - last >= _LIMIT_LOG_INTERVAL:  # one line per burst, not one per connection
            self._refused_logged = (now, self.refused)
            logger.warning(
                "connection limit %d reached: refusing new TCP/TLS connections (%s; %d "
                "refused since the last report)",
                self.max_connections,
                flow,
                self.refused - refused_then,
            )
        return False

    def unregister_connection(self, flow: Flow, proto: _StreamProtocol) -> None:
        if proto.registered:
            proto.registered = False
            self._open[proto.outgoing] -= 1
        if self._connections.get(flow) is proto:
            del self._connections[flow]

    def forget_connecting(self, flow: Flow, proto: _StreamProtocol) -> None:
        """``proto`` is no longer the connection being opened to ``flow`` (open or failed)."""
        if self._connecting.get(flow) is proto:
            del self._connecting[flow]

    def on_stream_error(self, flow: Flow, status: int, reason: str) -> None:
        logger.info("closing %s after a framing error: %s", flow, reason)
        if self.stream_error_hook is not None:
            self.stream_error_hook(flow, status, reason)

    def has_connection(self, flow: Flow) -> bool:
        return flow in self._connections

    def listener_for(self, transport: str) -> Listener | None:
        for listener in self.listeners:
            if listener.transport == transport:
                return listener
        return None

    def send(self, data: bytes, flow: Flow) -> None:
        """Send bytes to ``flow``; stream connections are opened on demand."""
        if flow.transport == "udp":
            proto = next(iter(self._udp.values()), None)
            if proto is None or proto.transport is None:
                self.on_send_error(flow, 503, "no UDP listener")
                return
            try:
                proto.transport.sendto(data, (flow.host, flow.port))
            except (OSError, ValueError) as exc:
                # ValueError: an address the socket cannot take (a name, or IPv6 on the
                # IPv4 socket) from a peer's Via received/maddr: that send fails, the rest
                # of the batch and the timers go on
                self.on_send_error(flow, 503, str(exc))
            return
        conn = self._connections.get(flow) or self._connecting.get(flow)
        if conn is not None:
            conn.write(data)
            return
        self._connect(flow).write(data)

    def _connect(self, flow: Flow) -> _StreamProtocol:
        loop = asyncio.get_running_loop()
        proto = _StreamProtocol(self, flow.transport, outgoing=True)
        proto.flow = flow
        self._connecting[flow] = proto
        ctx = self.ssl_client if flow.transport == "tls" else None

        async def connect() -> None:
            try:
                if flow.transport == "tls" and ctx is None:
                    raise ssl.SSLError("no TLS client context")  # never plain TCP instead
                await asyncio.wait_for(
                    loop.create_connection(lambda: proto, flow.host, flow.port, ssl=ctx),
                    timeout=5.0,
                )
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                logger.info("cannot connect to %s: %s", flow, exc)
                self.on_send_error(flow, 503, f"cannot connect: {exc}")
            finally:
                self.forget_connecting(flow, proto)

        task = loop.create_task(connect())
        task.add_done_callback(lambda t: None)
        return proto

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for proto in list(self._connections.values()):
            proto.close()
        for udp in self._udp.values():
            udp.release_probe()
            if udp.transport is not None:
                udp.transport.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=2.0)
            except TimeoutError:
                pass
