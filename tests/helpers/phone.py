"""An asyncio SIP phone emulator for real-peer tests (UDP or TCP, loopback only).

A :class:`Phone` owns one socket (UDP) or one listening socket plus an outbound
connection (TCP) on 127.0.0.0/8 and talks to one server (the proxy under test, used as
outbound proxy for every request). It is a small but honest user agent:

* UAC: REGISTER (with digest answers to 401/407, MD5 or SHA-256), SUBSCRIBE (initial or
  in-dialog), INVITE / re-INVITE with SDP, ACK (2xx end-to-end, non-2xx hop-by-hop), BYE,
  CANCEL, PRACK for a reliable provisional (RFC 3262, in its early dialog), REFER
  (RFC 3515) and any other request; UDP requests are retransmitted (timers A/E) until
  answered; a retransmitted 2xx to an INVITE is answered with the same ACK again.
* UAS: NOTIFY is answered at once (200 by default) and recorded; INVITE is answered
  according to ``uas`` (``"answer"``: 180 then 200, ``"ring"``: 180 only, ``"busy"``: 486,
  an int: that final status, ``None``: 480); re-INVITE gets 200 with a mirrored SDP;
  BYE/CANCEL/OPTIONS/PRACK/INFO/UPDATE/MESSAGE get 200 (CANCEL also ends the INVITE with
  487), REFER gets 202; ``reply_headers`` adds headers to these automatic replies per
  method, and requests of a method in ``manual_replies`` are recorded unanswered until
  :meth:`Phone.respond`; a provisional may be sent reliably (``Require: 100rel`` + ``RSeq``,
  not retransmitted); retransmitted requests get the same response again; a 2xx to an
  INVITE is retransmitted (timer G) until the ACK arrives.
* It keeps per-dialog state (tags, CSeq, remote target, route set from Record-Route).

Every wait is bounded (default 5 s) and raises :class:`TimeoutError` with a readable ladder.
Messages are parsed and built with :mod:`sipsca.sip`.
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait is this harness's API)
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
    parse_name_addr,
    split_values,
)

__all__ = [
    "Call",
    "ClientTransaction",
    "Dialog",
    "IncomingCall",
    "Ladder",
    "Phone",
    "call_info_of",
    "make_sdp",
    "notify_summary",
    "strip_expires",
]

DEFAULT_TIMEOUT = 5.0
T1 = 0.5
T2 = 4.0


def _rand(n: int = 8) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


def _check_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError(f"refusing a non-loopback address: {host!r}")


def make_sdp(
    direction: str | None = "sendrecv",
    *,
    version: int = 1,
    port: int = 40000,
    conn: str = "127.0.0.1",
    session_direction: str | None = None,
    session_conn: bool = True,
) -> bytes:
    """A one-stream audio SDP offer/answer.

    ``direction``: media-level attribute (``None`` = none); ``session_direction``: a
    session-level attribute before the first ``m=``; ``conn``: the connection address
    (``"0.0.0.0"`` = RFC 2543 hold); ``session_conn``: session-level ``c=`` (else media-level).
    """
    lines = ["v=0", f"o=- 1 {version} IN IP4 127.0.0.1", "s=-"]
    if session_conn:
        lines.append(f"c=IN IP4 {conn}")
    lines.append("t=0 0")
    if session_direction:
        lines.append(f"a={session_direction}")
    lines.append(f"m=audio {port} RTP/AVP 0")
    if not session_conn:
        lines.append(f"c=IN IP4 {conn}")
    lines.append("a=rtpmap:0 PCMU/8000")
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def _sdp_direction(body: bytes) -> str:
    text = body.decode(errors="replace")
    if "c=IN IP4 0.0.0.0" in text:
        return "hold"
    for d in ("sendonly", "inactive", "recvonly", "sendrecv"):
        if f"a={d}" in text:
            return d
    return "sendrecv"


_MIRROR = {
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
    "hold": "recvonly",
}


def strip_expires(sub_state: str | None) -> str | None:
    """``active;expires=12`` -> ``active`` (other parameters kept)."""
    if sub_state is None:
        return None
    parts = [p.strip() for p in sub_state.split(";")]
    return ";".join(p for p in parts if not p.lower().startswith("expires="))


def call_info_of(msg: SipMessage) -> str | None:
    """All Call-Info header fields of ``msg`` joined by ``,`` (None when absent)."""
    values = msg.headers.get_all("call-info")
    return ",".join(v.strip() for v in values) if values else None


def notify_summary(msg: SipMessage) -> tuple[str | None, str | None, str | None]:
    """(Event, Subscription-State without ``;expires=``, Call-Info) of a NOTIFY."""
    return (
        (msg.headers.get("event") or "").strip() or None,
        strip_expires(msg.headers.get("subscription-state")),
        call_info_of(msg),
    )


# --------------------------------------------------------------------------- ladder
class Ladder:
    """A shared, timestamped one-line-per-message log for several phones (printed on failure)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def add(self, who: str, arrow: str, msg: SipMessage | bytes | str) -> None:
        t = time.monotonic() - self.t0
        self.lines.append(f"[{t:8.3f}] {who:<10} {arrow} {_one_line(msg)}")

    def note(self, text: str) -> None:
        t = time.monotonic() - self.t0
        self.lines.append(f"[{t:8.3f}] ---- {text}")

    def dump(self) -> str:
        return "\n".join(self.lines)


def _one_line(msg: SipMessage | bytes | str) -> str:
    if isinstance(msg, bytes | str):
        raw = msg.decode(errors="replace") if isinstance(msg, bytes) else msg
        return raw.split("\r\n", 1)[0] + " (raw)"
    if isinstance(msg, SipRequest):
        head = f"{msg.method} {msg.uri}"
    else:
        assert isinstance(msg, SipResponse)
        head = f"{msg.status} {msg.reason} ({msg.headers.get('cseq')})"
    extra = []
    for name in ("event", "expires", "subscription-state", "call-info"):
        for v in msg.headers.get_all(name):
            extra.append(f"{name}: {v}")
    return head + ("  |  " + "  |  ".join(extra) if extra else "")


# --------------------------------------------------------------------------- state
@dataclass
class Dialog:
    """One dialog (or a dialog being set up) as seen by this phone."""

    call_id: str
    local_uri: str
    remote_uri: str
    local_tag: str
    remote_tag: str | None = None
    remote_target: str = ""
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None
    local_display: str = ""
    remote_display: str = ""
    event: str | None = None
    sdp_version: int = 1
    early: bool = False  # set up by a reliable provisional (PRACK): the 2xx replaces it

    def from_value(self) -> str:
        d = f"{self.local_display} " if self.local_display else ""
        return f"{d}<{self.local_uri}>;tag={self.local_tag}"

    def to_value(self) -> str:
        d = f"{self.remote_display} " if self.remote_display else ""
        tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        return f"{d}<{self.remote_uri}>{tag}"


@dataclass
class ClientTransaction:
    method: str
    branch: str
    request: SipRequest
    data: bytes
    dest: tuple[str, int]
    responses: list[SipResponse] = field(default_factory=list)
    final: asyncio.Future[SipResponse] | None = None
    provisional: asyncio.Event = field(default_factory=asyncio.Event)
    retransmit: asyncio.Task[None] | None = None
    ack_data: bytes | None = None  # ACK sent for a 2xx (resent on a 2xx retransmission)


@dataclass
class Call:
    """An outgoing INVITE and the dialog it creates."""

    phone: Phone
    dialog: Dialog
    invite: SipRequest
    tx: ClientTransaction
    final: SipResponse | None = None

    @property
    def responses(self) -> list[SipResponse]:
        return self.tx.responses

    def statuses(self) -> list[int]:
        return [r.status for r in self.tx.responses]

    async def wait_status(self, status: int, timeout: float = DEFAULT_TIMEOUT) -> SipResponse:
        return await self.phone.wait_for(
            lambda: next((r for r in self.tx.responses if r.status == status), None),
            timeout,
            f"{status} to INVITE {self.dialog.call_id}",
        )

    async def wait_final(self, timeout: float = DEFAULT_TIMEOUT) -> SipResponse:
        assert self.tx.final is not None
        try:
            resp = await asyncio.wait_for(asyncio.shield(self.tx.final), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.phone.name}: no final response to INVITE {self.dialog.call_id}\n"
                + self.phone.ladder.dump()
            ) from None
        self.final = resp
        return resp


@dataclass
class IncomingCall:
    """An INVITE received by this phone (UAS side) and its dialog."""

    dialog: Dialog
    invite: SipRequest
    reply_to: Any
    to_tag: str
    final_status: int | None = None
    acked: bool = False
    cancelled: bool = False
    last_final: bytes | None = None
    rseq: int = 0  # RSeq of the last reliable provisional sent (RFC 3262)


# --------------------------------------------------------------------------- transports
class _UdpProto(asyncio.DatagramProtocol):
    def __init__(self, phone: Phone) -> None:
        self.phone = phone

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.phone._on_data(data, ("udp", addr))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        self.phone.errors.append(exc)


class Phone:
    """A SIP phone on 127.0.0.1 talking to ``server`` (used as outbound proxy).

    ``uas``: how an initial INVITE is answered (see module doc). ``answer_delay``: seconds
    between 180 and 200 in ``"answer"`` mode. ``credentials``: (username, password) for
    digest challenges. ``domain``: the host part of this phone's AoR and of target URIs.
    """

    def __init__(
        self,
        name: str,
        user: str,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: str = "udp",
        server: tuple[str, int] = ("127.0.0.1", 5070),
        *,
        domain: str = "127.0.0.1",
        uas: str | int | None = None,
        answer_delay: float = 0.2,
        credentials: tuple[str, str] | None = None,
        ladder: Ladder | None = None,
        display: str = "",
        retransmit: bool = True,
        contact_user: str | None = None,
    ) -> None:
        _check_loopback(host)
        _check_loopback(server[0])
        if transport not in ("udp", "tcp"):
            raise ValueError(transport)
        self.name = name
        self.user = user
        self.host = host
        self.port = port
        self.transport = transport
        self.server = server
        self.domain = domain
        self.uas = uas
        self.answer_delay = answer_delay
        self.credentials = credentials
        self.ladder = ladder or Ladder()
        self.display = display
        self.retransmit = retransmit
        self.contact_user = contact_user if contact_user is not None else user
        self.notify_reply: tuple[int, str] = (200, "OK")
        self.reinvite_reply: tuple[int, str] | None = None
        """Answer every re-INVITE with this (status, reason) instead of accepting it."""
        self.reply_headers: dict[str, list[tuple[str, str]]] = {}
        self.manual_replies: set[str] = set()
        self.unanswered: list[tuple[SipRequest, Any, tuple[str, str, str]]] = []
        self.received: list[SipMessage] = []
        self.notifies: list[SipRequest] = []
        self.requests: list[SipRequest] = []  # every non-retransmitted request received
        self.incoming: list[IncomingCall] = []
        self.errors: list[BaseException] = []
        self.retransmissions_received = 0
        self._consumed: set[int] = set()
        self._ctx: dict[tuple[str, str], ClientTransaction] = {}
        self._stx: dict[tuple[str, str, str], bytes] = {}
        self._uas_calls: dict[tuple[str, str], IncomingCall] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._conns: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._out_conn: asyncio.StreamWriter | None = None
        self._closed = False
        self.reg_call_id = f"reg-{name}-{_rand(10)}"
        self.reg_cseq = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Phone:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProto(self), local_addr=(self.host, self.port)
            )
            self._udp = transport
            self.port = transport.get_extra_info("sockname")[1]
        else:
            self._tcp_server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = self._tcp_server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> Phone:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for tx in self._ctx.values():
            if tx.retransmit:
                tx.retransmit.cancel()
            if tx.final and not tx.final.done():
                tx.final.cancel()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._udp:
            self._udp.close()
            await asyncio.sleep(0)  # let the transport really close the socket (port reuse)
        writers = list(self._conns.values())
        if self._out_conn:
            writers.append(self._out_conn)
        for w in writers:
            w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1)
        if self._tcp_server:
            self._tcp_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp_server.wait_closed(), 1)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ identity
    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def contact_uri(self) -> str:
        tp = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.contact_user}@{self.host}:{self.port}{tp}"

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    def __repr__(self) -> str:
        return f"<Phone {self.name} {self.contact_uri}>"

    # ------------------------------------------------------------------ sending
    async def _tcp_out(self) -> asyncio.StreamWriter:
        if self._out_conn is None or self._out_conn.is_closing():
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.server[0], self.server[1]), DEFAULT_TIMEOUT
            )
            self._out_conn = writer
            self._spawn(self._read_stream(reader, writer))
        return self._out_conn

    def _send_now(self, data: bytes, via: Any = None) -> None:
        """Send on ``via`` (("udp", addr) or ("tcp", writer)) or to the server."""
        if via is not None and via[0] == "tcp":
            via[1].write(data)
            return
        if via is not None and via[0] == "udp":
            _check_loopback(via[1][0])
            assert self._udp is not None
            self._udp.sendto(data, via[1])
            return
        if self.transport == "udp":
            assert self._udp is not None
            self._udp.sendto(data, self.server)
        else:
            assert self._out_conn is not None
            self._out_conn.write(data)

    async def send_raw(self, data: bytes | str, log: bool = True) -> None:
        """Send bytes to the server as they are (malformed-message tests)."""
        raw = data.encode() if isinstance(data, str) else data
        if self.transport == "tcp":
            await self._tcp_out()
        if log:
            self.ladder.add(self.name, "->", raw)
        self._send_now(raw)

    async def _send_msg(self, msg: SipMessage, via: Any = None) -> bytes:
        data = msg.to_bytes()
        if self.transport == "tcp" and via is None:
            await self._tcp_out()
        self.ladder.add(self.name, "->", msg)
        self._send_now(data, via)
        return data

    # ------------------------------------------------------------------ receiving
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._conns[(peer[0], peer[1])] = writer
        await self._read_stream(reader, writer)

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = StreamFramer()
        try:
            while not self._closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                for raw in framer.feed(chunk):
                    self._on_data(raw, ("tcp", writer), stream=True)
        except (ConnectionError, RemoteProtocolError) as exc:
            self.errors.append(exc)
        finally:
            writer.close()

    def _on_data(self, data: bytes, via: Any, stream: bool = False) -> None:
        if self._closed:
            return
        if not data.strip():
            return  # keep-alive
        try:
            msg = parse_message(data, stream=stream)
        except RemoteProtocolError as exc:
            self.errors.append(exc)
            self.ladder.add(self.name, "<-", data)
            return
        self.ladder.add(self.name, "<-", msg)
        try:
            if isinstance(msg, SipResponse):
                self._on_response(msg)
            else:
                assert isinstance(msg, SipRequest)
                self._on_request(msg, via)
        except Exception as exc:  # a bug in the emulator: keep it visible, never silent
            self.errors.append(exc)
            self.ladder.note(f"{self.name} EMULATOR ERROR {exc!r}")
            raise
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_response(self, resp: SipResponse) -> None:
        self.received.append(resp)
        try:
            branch = resp.top_via.branch or ""
            method = resp.cseq.method
        except RemoteProtocolError as exc:
            self.errors.append(exc)
            return
        tx = self._ctx.get((branch, method))
        if tx is None:
            return
        tx.responses.append(resp)
        if resp.status < 200:
            tx.provisional.set()
            return
        if tx.final is not None and tx.final.done():
            # retransmitted final response
            if method == "INVITE":
                if 200 <= resp.status < 300 and tx.ack_data is not None:
                    self._send_now(tx.ack_data)
                elif resp.status >= 300:
                    self._spawn(self._send_non2xx_ack(tx, resp))
            return
        if tx.retransmit:
            tx.retransmit.cancel()
        if method == "INVITE" and resp.status >= 300:
            self._spawn(self._send_non2xx_ack(tx, resp))
        if tx.final is not None:
            tx.final.set_result(resp)

    def _on_request(self, req: SipRequest, via: Any) -> None:
        try:
            branch = req.top_via.branch or ""
            call_id = req.call_id
            cseq = req.cseq
        except RemoteProtocolError as exc:
            self.errors.append(exc)
            return
        if req.method == "ACK":
            self.received.append(req)
            self.requests.append(req)
            inc = self._uas_calls.get((call_id, req.to_tag or ""))
            if inc is not None:
                inc.acked = True
            return
        key = (branch, req.method, call_id + str(cseq.number))
        if key in self._stx:
            self.retransmissions_received += 1
            if self._stx[key]:
                self.ladder.add(self.name, "->", b"(resend) " + self._stx[key].split(b"\r\n", 1)[0])
                self._send_now(self._stx[key], via)
            return
        self._stx[key] = b""
        self.received.append(req)
        self.requests.append(req)
        m = req.method
        if m == "NOTIFY":
            self.notifies.append(req)
            code, reason = self.notify_reply
            self._reply(req, via, code, reason, key=key)
        elif m == "INVITE":
            self._uas_invite(req, via, key)
        elif m == "CANCEL":
            self._reply(req, via, 200, "OK", key=key)
            for inc in self.incoming:
                if inc.dialog.call_id == call_id and inc.final_status is None:
                    inc.cancelled = True
                    self._uas_final(inc, 487, "Request Terminated")
        elif m == "SUBSCRIBE":
            self._reply(
                req,
                via,
                489,
                "Bad Event",
                key=key,
                extra=[("Allow-Events", "call-info, line-seize")],
            )
        elif m == "BYE":
            ok = any(i.dialog.call_id == call_id for i in self.incoming) or any(
                tx.request.call_id == call_id for tx in self._ctx.values()
            )
            self._reply(
                req,
                via,
                200 if ok else 481,
                "OK" if ok else "Call/Transaction Does Not Exist",
                key=key,
            )
        elif m in self.manual_replies:
            self.unanswered.append((req, via, key))
        elif m == "REFER":
            extra = self.reply_headers.get(m, [])
            self._reply(req, via, 202, "Accepted", key=key, contact=True, extra=extra)
        else:
            self._reply(req, via, 200, "OK", key=key, extra=self.reply_headers.get(m, []))

    async def respond(self, req: SipRequest, status: int, reason: str | None = None) -> None:
        """Answer a request held back by ``manual_replies``."""
        entry = next(e for e in self.unanswered if e[0] is req)
        self.unanswered.remove(entry)
        extra = self.reply_headers.get(req.method, [])
        self._reply(req, entry[1], status, reason or _reason(status), key=entry[2], extra=extra)

    def _reply(
        self,
        req: SipRequest,
        via: Any,
        status: int,
        reason: str,
        *,
        key: tuple[str, str, str] | None = None,
        to_tag: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        contact: bool = False,
    ) -> bytes:
        hdrs: list[tuple[str, str]] = []
        if 100 < status < 180 and req.method in ("INVITE", "SUBSCRIBE", "NOTIFY"):
            # make_response copies Record-Route into 180-299 itself (RFC 3261 12.1.1)
            hdrs += [("Record-Route", rr) for rr in req.headers.get_all("record-route")]
        if contact:
            hdrs.append(("Contact", f"<{self.contact_uri}>"))
        hdrs += list(extra)
        if body:
            hdrs.append(("Content-Type", "application/sdp"))
        resp = make_response(req, status, reason, to_tag=to_tag or _rand(8), extra=hdrs, body=body)
        data = resp.to_bytes()
        self.ladder.add(self.name, "->", resp)
        self._send_now(data, via)
        if key is not None and status >= 200:
            self._stx[key] = data
        return data

    # ------------------------------------------------------------------ UAS INVITE
    def _uas_invite(self, req: SipRequest, via: Any, key: tuple[str, str, str]) -> None:
        if req.to_tag and self.reinvite_reply is not None:
            self._reply(req, via, *self.reinvite_reply, key=key)
            return
        if req.to_tag:
            inc = self._uas_calls.get((req.call_id, req.to_tag))
            call = next((c for c in self._ctx.values() if c.request.call_id == req.call_id), None)
            if inc is None and call is None:
                self._reply(req, via, 481, "Call/Transaction Does Not Exist", key=key)
                return
            if inc is not None:
                inc.dialog.remote_cseq = req.cseq.number
                inc.dialog.sdp_version += 1
                ver = inc.dialog.sdp_version
            else:
                ver = 2
            direction = (
                _MIRROR.get(_sdp_direction(req.body), "sendrecv") if req.body else "sendrecv"
            )
            data = self._reply(
                req,
                via,
                200,
                "OK",
                key=key,
                contact=True,
                body=make_sdp(direction, version=ver, port=41000),
            )
            if inc is not None:
                inc.acked = False
                inc.last_final = data
                self._spawn(self._retransmit_2xx(inc, via))
            return
        to_tag = _rand(8)
        frm = req.from_
        dialog = Dialog(
            call_id=req.call_id,
            local_uri=req.to.uri_text,
            remote_uri=frm.uri_text,
            local_tag=to_tag,
            remote_tag=frm.tag,
            remote_target=req.contacts[0].uri_text if req.contacts else frm.uri_text,
            route_set=list(req.headers.values("record-route")),
            local_cseq=100,
            remote_cseq=req.cseq.number,
            local_display=req.to.display,
            remote_display=frm.display,
        )
        inc = IncomingCall(dialog=dialog, invite=req, reply_to=via, to_tag=to_tag)
        self.incoming.append(inc)
        self._uas_calls[(req.call_id, to_tag)] = inc
        self._stx[key] = b""
        inc_key = key
        mode = self.uas
        if mode is None:
            self._uas_final(inc, 480, "Temporarily Unavailable", key=inc_key)
        elif mode == "busy":
            self._uas_final(inc, 486, "Busy Here", key=inc_key)
        elif isinstance(mode, int):
            self._uas_final(inc, mode, None, key=inc_key)
        elif mode == "manual":
            pass  # the test sends provisional/final responses itself
        else:
            self._reply(req, via, 180, "Ringing", to_tag=to_tag, contact=True)
            if mode == "answer":
                self._spawn(self._answer_later(inc, self.answer_delay))

    def _uas_final(
        self,
        inc: IncomingCall,
        status: int,
        reason: str | None,
        key: tuple[str, str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if inc.final_status is not None:
            return
        inc.final_status = status
        req = inc.invite
        if key is None:
            key = (req.top_via.branch or "", "INVITE", req.call_id + str(req.cseq.number))
        body = make_sdp("sendrecv", port=41000) if status < 300 else b""
        extra = list(headers)
        if 300 <= status < 400 and not any(k.lower() == "contact" for k, _ in extra):
            extra.append(("Contact", f"<sip:redirected@{self.domain}>"))
        data = self._reply(
            req,
            inc.reply_to,
            status,
            reason or _reason(status),
            key=key,
            to_tag=inc.to_tag,
            contact=status < 300,
            body=body,
            extra=extra,
        )
        inc.last_final = data
        if 200 <= status < 300:
            self._spawn(self._retransmit_2xx(inc, inc.reply_to))

    async def _answer_later(self, inc: IncomingCall, delay: float) -> None:
        await asyncio.sleep(delay)
        if inc.final_status is None and not self._closed:
            self._uas_final(inc, 200, "OK")
            self._changed.set()

    async def _retransmit_2xx(self, inc: IncomingCall, via: Any) -> None:
        if via is not None and via[0] == "tcp":
            return
        interval = T1
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            if inc.acked or self._closed or inc.last_final is None:
                return
            self.ladder.add(
                self.name, "->", b"(2xx retransmission) " + inc.last_final.split(b"\r\n", 1)[0]
            )
            self._send_now(inc.last_final, via)
            interval = min(interval * 2, T2)

    async def answer(
        self,
        inc: IncomingCall,
        status: int = 200,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send a final response to a ringing incoming INVITE (``"ring"``/``"manual"`` mode)."""
        self._uas_final(inc, status, reason, headers=headers)

    async def provisional(
        self,
        inc: IncomingCall,
        status: int = 180,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        contact: bool = True,
        reliable: bool = False,
        body: bytes = b"",
    ) -> None:
        """Send a provisional response (180, 181, 183...) to an incoming INVITE;
        ``reliable``: RFC 3262 (``Require: 100rel``, the next ``RSeq``), to be PRACKed."""
        extra = list(headers)
        if reliable:
            inc.rseq += 1
            extra += [("Require", "100rel"), ("RSeq", str(inc.rseq))]
        self._reply(
            inc.invite,
            inc.reply_to,
            status,
            reason or _reason(status),
            to_tag=inc.to_tag,
            contact=contact,
            extra=extra,
            body=body,
        )

    async def wait_incoming(self, timeout: float = DEFAULT_TIMEOUT) -> IncomingCall:
        return await self.wait_for(
            lambda: self.incoming[0] if self.incoming else None, timeout, "incoming INVITE"
        )

    async def resend_final(self, inc: IncomingCall, times: int = 1) -> None:
        """Retransmit the last final response of an incoming call (duplicate-200 tests)."""
        assert inc.last_final is not None
        for _ in range(times):
            self.ladder.add(
                self.name, "->", b"(forced retransmission) " + inc.last_final.split(b"\r\n", 1)[0]
            )
            self._send_now(inc.last_final, inc.reply_to)

    # ------------------------------------------------------------------ UAC core
    def _build(
        self,
        method: str,
        ruri: str,
        *,
        from_: str,
        to: str,
        call_id: str,
        cseq: int,
        route_set: Iterable[str] = (),
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str = "application/sdp",
        contact: bool | str = True,
        branch: str | None = None,
    ) -> SipRequest:
        branch = branch or f"z9hG4bK{_rand(14)}"
        tp = "UDP" if self.transport == "udp" else "TCP"
        pairs: list[tuple[str, str]] = [
            ("Via", f"SIP/2.0/{tp} {self.host}:{self.port};branch={branch};rport"),
            ("Max-Forwards", "70"),
        ]
        pairs += [("Route", r) for r in route_set]
        pairs += [("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", f"{cseq} {method}")]
        if contact is True:
            pairs.append(("Contact", f"<{self.contact_uri}>"))
        elif isinstance(contact, str):
            pairs.append(("Contact", contact))
        pairs.append(("User-Agent", f"sipsca-test-phone {self.name}"))
        pairs += list(headers)
        if body:
            pairs.append(("Content-Type", content_type))
        return SipRequest(method, ruri, Headers.from_pairs(pairs), body)

    def _in_dialog(
        self, method: str, d: Dialog, *, cseq: int | None = None, **options: Any
    ) -> SipRequest:
        """``method`` in dialog ``d``: to its remote target over its route set, with its
        tags and Call-ID; CSeq ``cseq`` or the dialog's current local CSeq."""
        return self._build(
            method,
            d.remote_target,
            from_=d.from_value(),
            to=d.to_value(),
            call_id=d.call_id,
            cseq=d.local_cseq if cseq is None else cseq,
            route_set=d.route_set,
            **options,
        )

    async def _start_tx(self, req: SipRequest) -> ClientTransaction:
        branch = req.top_via.branch or ""
        loop = asyncio.get_running_loop()
        data = await self._send_msg(req)
        tx = ClientTransaction(
            req.method, branch, req, data, self.server, final=loop.create_future()
        )
        self._ctx[(branch, req.method)] = tx
        if self.retransmit and self.transport == "udp" and req.method != "ACK":
            tx.retransmit = self._spawn(self._retransmit_request(tx))
        return tx

    async def _retransmit_request(self, tx: ClientTransaction) -> None:
        interval = T1
        deadline = time.monotonic() + 32 * T1
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            assert tx.final is not None
            if tx.final.done() or (tx.method == "INVITE" and tx.provisional.is_set()):
                return
            self.ladder.add(self.name, "->", b"(retransmission) " + tx.data.split(b"\r\n", 1)[0])
            self._send_now(tx.data)
            interval = interval * 2 if tx.method == "INVITE" else min(interval * 2, T2)

    async def _send_non2xx_ack(self, tx: ClientTransaction, resp: SipResponse) -> None:
        req = tx.request
        pairs = [
            ("Via", req.headers.values("via")[0]),
            ("Max-Forwards", "70"),
        ]
        pairs += [("Route", r) for r in req.headers.values("route")]
        pairs += [
            ("From", req.headers.get("from") or ""),
            ("To", resp.headers.get("to") or ""),
            ("Call-ID", req.call_id),
            ("CSeq", f"{req.cseq.number} ACK"),
        ]
        ack = SipRequest("ACK", req.uri, Headers.from_pairs(pairs))
        await self._send_msg(ack)

    async def _final(self, tx: ClientTransaction, timeout: float) -> SipResponse:
        assert tx.final is not None
        try:
            return await asyncio.wait_for(asyncio.shield(tx.final), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no final response to {tx.method} ({tx.request.call_id}) "
                f"within {timeout}s\n{self.ladder.dump()}"
            ) from None

    async def send_request(
        self,
        req: SipRequest,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        dialog: Dialog | None = None,
        authenticate: bool = True,
    ) -> SipResponse:
        """Send ``req`` as a new client transaction; returns the final response.

        A 401/407 is answered once with credentials (CSeq+1, new branch) when the phone has any.
        """
        tx = await self._start_tx(req)
        resp = await self._final(tx, timeout)
        if (
            resp.status in (401, 407)
            and authenticate
            and self.credentials
            and req.method not in ("ACK", "CANCEL")
        ):
            again = self._authorized(req, resp)
            if again is not None:
                if dialog is not None:
                    dialog.local_cseq = again.cseq.number
                tx = await self._start_tx(again)
                resp = await self._final(tx, timeout)
        return resp

    def _authorized(self, req: SipRequest, resp: SipResponse) -> SipRequest | None:
        assert self.credentials is not None
        hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        challenges = [parse_challenge(v) for v in resp.headers.get_all(hname)]
        challenges = [c for c in challenges if c]
        if not challenges:
            return None
        order = {"SHA-256": 0, "SHA-256-SESS": 1, "MD5": 2, "MD5-SESS": 3}
        challenges.sort(key=lambda c: order.get(c.get("algorithm", "MD5").upper(), 9))
        ch = challenges[0]
        user, password = self.credentials
        value = digest_authorization(ch, req.method, req.uri, user, password)
        new = req.copy()
        new.headers.remove("authorization")
        new.headers.remove("proxy-authorization")
        new.headers.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        new.headers.set("CSeq", f"{req.cseq.number + 1} {req.method}")
        via = new.headers.values("via")[0]
        new.headers.set("Via", re.sub(r"branch=[^;,\s]+", f"branch=z9hG4bK{_rand(14)}", via))
        return new

    async def request(
        self,
        method: str,
        ruri: str | None = None,
        *,
        to: str | None = None,
        from_: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str = "application/sdp",
        contact: bool | str = True,
        dialog: Dialog | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SipResponse:
        """Send any request (out of dialog, or in ``dialog``) and return its final response."""
        if dialog is not None:
            dialog.local_cseq += 1
            req = self._in_dialog(
                method,
                dialog,
                headers=headers,
                body=body,
                content_type=content_type,
                contact=contact,
            )
            return await self.send_request(req, timeout, dialog=dialog)
        ruri = ruri or self.aor
        req = self._build(
            method,
            ruri,
            from_=from_ or f"<{self.aor}>;tag={_rand(8)}",
            to=to or f"<{ruri}>",
            call_id=call_id or f"{method.lower()}-{self.name}-{_rand(10)}",
            cseq=cseq,
            headers=headers,
            body=body,
            content_type=content_type,
            contact=contact,
        )
        return await self.send_request(req, timeout)

    # ------------------------------------------------------------------ REGISTER
    async def register(
        self, expires: int = 3600, *, aor_user: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> SipResponse:
        aor = f"sip:{aor_user or self.user}@{self.domain}"
        self.reg_cseq += 1
        req = self._build(
            "REGISTER",
            f"sip:{self.domain}",
            from_=f"<{aor}>;tag={_rand(8)}",
            to=f"<{aor}>",
            call_id=self.reg_call_id,
            cseq=self.reg_cseq,
            contact=f"<{self.contact_uri}>;expires={expires}",
        )
        resp = await self.send_request(req, timeout)
        self.reg_cseq = max(self.reg_cseq, int((resp.headers.get("cseq") or "0").split()[0] or 0))
        return resp

    # ------------------------------------------------------------------ SUBSCRIBE
    async def subscribe(
        self,
        event: str | None,
        expires: int | None = 3600,
        *,
        aor: str | None = None,
        call_info: str | None = None,
        dialog: Dialog | None = None,
        headers: Iterable[tuple[str, str]] = (),
        event_header: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[Dialog, SipResponse]:
        """SUBSCRIBE (initial when ``dialog`` is None, else in-dialog). Returns (dialog, final).

        ``event=None`` omits the Event header (unless ``event_header`` gives its raw value);
        ``expires=None`` omits Expires.
        """
        aor = aor or self.aor
        hdrs: list[tuple[str, str]] = []
        if event_header is not None:
            hdrs.append(("Event", event_header))
        elif event is not None:
            hdrs.append(("Event", event))
        if expires is not None:
            hdrs.append(("Expires", str(expires)))
        if call_info is not None:
            hdrs.append(("Call-Info", call_info))
        hdrs += list(headers)
        if dialog is None:
            dialog = Dialog(
                call_id=f"{(event or 'noevent')}-{self.name}-{_rand(10)}",
                local_uri=aor,
                remote_uri=aor,
                local_tag=_rand(8),
                remote_target=aor,
                event=event,
            )
        else:
            dialog.local_cseq += 1
        req = self._in_dialog(
            "SUBSCRIBE",
            dialog,
            headers=hdrs,
        )
        resp = await self.send_request(req, timeout, dialog=dialog)
        if 200 <= resp.status < 300 and dialog.remote_tag is None:
            dialog.remote_tag = resp.to_tag
            contacts = resp.contacts
            if contacts:
                dialog.remote_target = contacts[0].uri_text
            dialog.route_set = list(reversed(resp.headers.values("record-route")))
        return dialog, resp

    # ------------------------------------------------------------------ INVITE
    async def invite(
        self,
        target: str,
        *,
        call_info: str | None = None,
        sdp: bytes | None = None,
        headers: Iterable[tuple[str, str]] = (),
        from_uri: str | None = None,
        from_display: str | None = None,
        to_uri: str | None = None,
        to_display: str = "",
        wait: bool = True,
        auto_ack: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Call:
        """Initial INVITE to ``target`` (a user name or a full URI).

        With ``wait`` the final response is awaited (and a 2xx ACKed when ``auto_ack``).
        """
        ruri = target if ":" in target else self.uri(target)
        dialog = Dialog(
            call_id=f"inv-{self.name}-{_rand(10)}",
            local_uri=from_uri or self.aor,
            remote_uri=to_uri or ruri,
            local_tag=_rand(8),
            remote_target=ruri,
            local_display=from_display if from_display is not None else self.display,
            remote_display=to_display,
        )
        hdrs = []
        if call_info is not None:
            hdrs.append(("Call-Info", call_info))
        hdrs += list(headers)
        body = make_sdp("sendrecv") if sdp is None else sdp
        req = self._build(
            "INVITE",
            ruri,
            from_=dialog.from_value(),
            to=dialog.to_value(),
            call_id=dialog.call_id,
            cseq=dialog.local_cseq,
            headers=hdrs,
            body=body,
        )
        tx = await self._start_tx(req)
        call = Call(self, dialog, req, tx)
        assert tx.final is not None
        tx.final.add_done_callback(lambda f: self._on_invite_final(call, f))
        if wait:
            await self.finish_invite(call, timeout=timeout, auto_ack=auto_ack)
        return call

    def _on_invite_final(self, call: Call, fut: asyncio.Future[SipResponse]) -> None:
        if fut.cancelled():
            return
        resp = fut.result()
        call.final = resp
        if 200 <= resp.status < 300:
            d = call.dialog
            if d.remote_tag is None or d.early:
                d.early = False
                d.remote_tag = resp.to_tag
                d.remote_display = resp.to.display
                if resp.contacts:
                    d.remote_target = resp.contacts[0].uri_text
                d.route_set = list(reversed(resp.headers.values("record-route")))

    async def finish_invite(
        self,
        call: Call,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        auto_ack: bool = True,
        ack_body: bytes = b"",
    ) -> SipResponse:
        resp = await self._final(call.tx, timeout)
        call.final = resp
        if resp.status in (401, 407) and self.credentials and not call.dialog.remote_tag:
            again = self._authorized(call.tx.request, resp)
            if again is not None:
                call.dialog.local_cseq = again.cseq.number
                call.tx = await self._start_tx(again)
                call.invite = again
                assert call.tx.final is not None
                call.tx.final.add_done_callback(lambda f: self._on_invite_final(call, f))
                resp = await self._final(call.tx, timeout)
                call.final = resp
        if 200 <= resp.status < 300 and auto_ack:
            self._on_invite_final(call, call.tx.final)  # type: ignore[arg-type]
            await self.ack(call, body=ack_body)
        return resp

    async def ack(self, call: Call, *, body: bytes = b"") -> None:
        """End-to-end ACK for the 2xx of the call's latest INVITE transaction."""
        d = call.dialog
        cseq = call.tx.request.cseq.number
        req = self._in_dialog(
            "ACK",
            d,
            cseq=cseq,
            body=body,
            contact=False,
        )
        call.tx.ack_data = await self._send_msg(req)

    async def prack(
        self,
        call: Call,
        provisional: SipResponse | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ClientTransaction:
        """PRACK a reliable provisional (default: the latest one with an ``RSeq``) in the
        early dialog it creates (RFC 3262 7.2: remote tag, Contact and reversed Record-Route
        of the provisional). With ``wait`` the PRACK's final response is awaited (see
        :meth:`wait_tx`); the transaction is returned either way."""
        if provisional is None:
            provisional = next(r for r in reversed(call.responses) if r.headers.get("rseq"))
        d = call.dialog
        if d.remote_tag is None or d.early:
            d.early = True
            d.remote_tag = provisional.to_tag
            if provisional.contacts:
                d.remote_target = provisional.contacts[0].uri_text
            d.route_set = list(reversed(provisional.headers.values("record-route")))
        invite_cseq = call.invite.cseq.number
        rack = f"{(provisional.headers.get('rseq') or '').strip()} {invite_cseq} INVITE"
        d.local_cseq += 1
        req = self._in_dialog(
            "PRACK",
            d,
            headers=[("RAck", rack), *headers],
            contact=False,
        )
        tx = await self._start_tx(req)
        if wait:
            await self._final(tx, timeout)
        return tx

    async def wait_tx(self, tx: ClientTransaction, timeout: float = DEFAULT_TIMEOUT) -> SipResponse:
        """The final response of a client transaction (bounded wait)."""
        return await self._final(tx, timeout)

    async def refer(
        self,
        call: Call | IncomingCall,
        refer_to: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SipResponse:
        """REFER in the call's dialog (RFC 3515: ``Refer-To``, a Contact); its final response."""
        return await self.request(
            "REFER",
            dialog=call.dialog,
            headers=[("Refer-To", f"<{refer_to}>"), *headers],
            timeout=timeout,
        )

    async def reinvite(
        self,
        call: Call | IncomingCall,
        direction: str | None = "sendrecv",
        *,
        sdp: bytes | None = None,
        call_info: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        ack_body: bytes = b"",
        auto_ack: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SipResponse:
        """re-INVITE in the call's dialog. ``sdp=b""`` sends no body (Polycom MOH style)."""
        d = call.dialog
        d.local_cseq += 1
        d.sdp_version += 1
        body = make_sdp(direction, version=d.sdp_version) if sdp is None else sdp
        hdrs = [("Call-Info", call_info)] if call_info else []
        hdrs += list(headers)
        req = self._in_dialog(
            "INVITE",
            d,
            headers=hdrs,
            body=body,
        )
        tx = await self._start_tx(req)
        resp = await self._final(tx, timeout)
        if 200 <= resp.status < 300 and auto_ack:
            ack = self._in_dialog(
                "ACK",
                d,
                body=ack_body,
                contact=False,
            )
            tx.ack_data = await self._send_msg(ack)
        if isinstance(call, Call):
            call.tx = tx
        return resp

    async def bye(
        self,
        call: Call | IncomingCall,
        *,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SipResponse:
        return await self.request(
            "BYE", dialog=call.dialog, headers=headers, contact=False, timeout=timeout
        )

    async def cancel(
        self, call: Call, timeout: float = DEFAULT_TIMEOUT, *, reason: str | None = None
    ) -> SipResponse:
        """CANCEL the call's INVITE (with an RFC 3326 ``reason`` if given); returns the
        CANCEL's final response (the INVITE's own final response, normally 487, is then
        available through ``call.wait_final()``)."""
        inv = call.tx.request
        pairs = [("Via", inv.headers.values("via")[0]), ("Max-Forwards", "70")]
        pairs += [("Route", r) for r in inv.headers.values("route")]
        pairs += [
            ("From", inv.headers.get("from") or ""),
            ("To", inv.headers.get("to") or ""),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq.number} CANCEL"),
        ]
        if reason is not None:
            pairs.append(("Reason", reason))
        req = SipRequest("CANCEL", inv.uri, Headers.from_pairs(pairs))
        tx = await self._start_tx(req)
        return await self._final(tx, timeout)

    # ------------------------------------------------------------------ waiting
    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "condition",
    ) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every received message)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.name}: timeout ({timeout}s) waiting for {what}\n" + self.ladder.dump()
                )
            evt = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(evt.wait(), min(left, 0.25))

    async def expect_notify(
        self,
        event: str | None = None,
        *,
        call_id: str | None = None,
        predicate: Callable[[SipRequest], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SipRequest:
        """The oldest not-yet-consumed NOTIFY matching the filters (consumed by this call)."""

        def find() -> SipRequest | None:
            for n in self.notifies:
                if id(n) in self._consumed:
                    continue
                if event is not None and (n.headers.get("event") or "").strip() != event:
                    continue
                if call_id is not None and n.call_id != call_id:
                    continue
                if predicate is not None and not predicate(n):
                    continue
                self._consumed.add(id(n))
                return n
            return None

        return await self.wait_for(find, timeout, f"NOTIFY event={event} call_id={call_id}")  # type: ignore[no-any-return]

    def pending_notifies(self, event: str | None = None) -> list[SipRequest]:
        """NOTIFYs not consumed yet (optionally of one event), without consuming them."""
        return [
            n
            for n in self.notifies
            if id(n) not in self._consumed
            and (event is None or (n.headers.get("event") or "").strip() == event)
        ]

    def consume_all(self) -> None:
        self._consumed.update(id(n) for n in self.notifies)

    def consume_through(self, notify: SipRequest) -> None:
        """Mark every NOTIFY of ``notify``'s dialog received up to it as consumed."""
        for n in self.notifies:
            if n.call_id == notify.call_id:
                self._consumed.add(id(n))
            if n is notify:
                return

    async def quiet(self, seconds: float = 0.3) -> None:
        """Let in-flight messages arrive (a short, bounded settle)."""
        await asyncio.sleep(min(seconds, 3.0))


# --------------------------------------------------------------------------- digest
def _reason(status: int) -> str:
    from sipsca.sip import reason_phrase

    return reason_phrase(status)


_CHALLENGE_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')


def parse_challenge(value: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", ...`` -> {"realm": "x", ...} (empty if not Digest)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    out = {}
    for k, v in _CHALLENGE_RE.findall(rest):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"')
        out[k.lower()] = v
    return out


def _hash(algorithm: str, text: str) -> str:
    algo = algorithm.upper().removesuffix("-SESS")
    fn = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}.get(algo)
    if fn is None:
        raise ValueError(f"unsupported digest algorithm {algorithm}")
    return fn(text.encode()).hexdigest()


def digest_authorization(
    ch: dict[str, str],
    method: str,
    uri: str,
    user: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> str:
    """The Authorization value answering challenge ``ch`` (RFC 2617 / RFC 8760)."""
    algorithm = ch.get("algorithm", "MD5")
    realm, nonce = ch.get("realm", ""), ch.get("nonce", "")
    cnonce = cnonce or _rand(16)
    ha1 = _hash(algorithm, f"{user}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    qops = [q.strip() for q in ch.get("qop", "").split(",") if q.strip()]
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        ncs = f"{nc:08x}"
        response = _hash(algorithm, f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', "qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        response = _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
        parts.append(f'response="{response}"')
    parts.append(f"algorithm={algorithm}")
    if "opaque" in ch:
        parts.append(f'opaque="{ch["opaque"]}"')
    return "Digest " + ", ".join(parts)


def parse_call_info(value: str | None) -> list[dict[str, str]]:
    """Split a (joined) call-info Call-Info value into per-appearance dicts
    ({"uri":..., "appearance-index":..., "appearance-state":..., "appearance-uri":...})."""
    if not value:
        return []
    out = []
    for item in split_values(value):
        na = parse_name_addr(item, "Call-Info")
        d = {"uri": na.uri_text}
        for k, v in na.params:
            d[k.lower()] = "" if v is None else v
        out.append(d)
    return out
