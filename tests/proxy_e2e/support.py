"""Helpers of the proxy/registrar/auth end-to-end tests (``tests/proxy_e2e``).

Built on the shared harness (``tests/helpers``), which this folder does not modify:

* :class:`ProxyServer`: ``SipscaProcess`` plus an optional TLS listener and a config that can
  refer to the server's own ports before it starts (static routes to itself).
* :func:`rpc_json`: JSON-RPC returning the structured result (``ul.dump`` rows as dicts).
* :func:`add_user`: ``sipsca user add`` through the real CLI.
* :class:`RawUdp` / :class:`StreamClient`: byte-level UDP and TCP/TLS peers for malformed input,
  TLS and hand-built requests; every wait is bounded.
* :func:`self_signed_cert`: a throw-away certificate for 127.0.0.1 made with ``cryptography``.

Everything binds to and talks to 127.0.0.1 only.
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait is this helper's API)
from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from helpers.phone import digest_authorization, parse_challenge
from helpers.server import REPO, SipscaProcess, free_port
from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)

__all__ = [
    "ProxyServer",
    "RawUdp",
    "StreamClient",
    "add_user",
    "alive",
    "authorize",
    "build_request",
    "probe_options",
    "probe_register",
    "rand",
    "rpc_json",
    "self_signed_cert",
]

HOST = "127.0.0.1"
WAIT = 5.0


def rand(n: int = 10) -> str:
    return secrets.token_hex(n)[:n]


# ------------------------------------------------------------------------------ server
class ProxyServer(SipscaProcess):
    """``sipsca serve`` with UDP+TCP listeners on one port, plus TLS when ``tls_port`` is set.

    ``config`` may be a callable ``(server) -> sections`` so it can name the server's own
    ports (e.g. a static route that loops back to it).
    """

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Mapping[str, Any]]
        | Callable[[ProxyServer], Mapping[str, Mapping[str, Any]]]
        | None = None,
        *,
        tls: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(workdir, None, **kw)
        self.tls_port: int | None = None
        extra: dict[str, Any] = {}
        if tls:
            self.tls_port = free_port(socket.SOCK_STREAM, None)
            cert, key = self_signed_cert(self.workdir)
            extra["server"] = {"tls_cert": str(cert), "tls_key": str(key)}
        sections = config(self) if callable(config) else (config or {})
        for name, values in list(extra.items()) + list(sections.items()):
            self.config.setdefault(name, {})
            self.config[name] = {**self.config[name], **values}

    @property
    def tls_addr(self) -> tuple[str, int]:
        assert self.tls_port is not None
        return (self.host, self.tls_port)

    def command(self) -> list[str]:
        cmd = super().command()
        if self.tls_port is not None:
            cmd[cmd.index("--db-url") : cmd.index("--db-url")] = [
                "--listen",
                f"tls:{self.host}:{self.tls_port}",
            ]
        return cmd

    def start(self, timeout: float = 20.0) -> ProxyServer:
        super().start(timeout)
        if self.tls_port is not None:
            deadline = time.monotonic() + timeout
            want = f"listening tls:{self.host}:{self.tls_port}"
            while want not in self.log_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert want in self.log_text(), self.log_text()[-3000:]
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def rpc_json(server: SipscaProcess, method: str, *params: Any, timeout: float = 5.0) -> Any:
    """JSON-RPC 2.0 call returning the raw ``result`` (raises AssertionError on a fault)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(
        f"http://{server.host}:{server.rpc_port}/RPC",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = json.loads(r.read().decode())
    assert data.get("error") is None, data
    return data.get("result")


async def arpc_json(server: SipscaProcess, method: str, *params: Any) -> Any:
    return await asyncio.to_thread(rpc_json, server, method, *params)


async def bindings(server: SipscaProcess, aor: str | None = None) -> list[dict[str, Any]]:
    """``ul.dump`` rows (optionally of one AoR), sorted by contact."""
    rows = await arpc_json(server, "ul.dump")
    assert isinstance(rows, list), rows
    out = [r for r in rows if aor is None or r["aor"] == aor]
    return sorted(out, key=lambda r: str(r["contact"]))


def add_user(server: SipscaProcess, user: str, domain: str, password: str) -> None:
    """``sipsca user add USER@DOMAIN --password-file F --db-url URL`` (the real CLI)."""
    pw = server.workdir / f"pw-{user}-{rand(6)}"
    pw.write_text(password + "\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "sipsca",
            "user",
            "add",
            f"{user}@{domain}",
            "--password-file",
            str(pw),
            "--db-url",
            f"sqlite:///{server.db_path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=server.workdir,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def alive(server: SipscaProcess) -> bool:
    return server.proc is not None and server.proc.poll() is None


# ------------------------------------------------------------------------------ TLS
def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate for CN/SAN 127.0.0.1, valid for one day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------------------------ messages
def build_request(
    method: str,
    ruri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str | None = None,
    cseq: int = 1,
    max_forwards: str | None = "70",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    pairs: list[tuple[str, str]] = [("Via", via)]
    if max_forwards is not None:
        pairs.append(("Max-Forwards", max_forwards))
    pairs += [
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id or f"raw-{rand(12)}"),
        ("CSeq", f"{cseq} {method}"),
    ]
    pairs += list(headers)
    if body and content_type:
        pairs.append(("Content-Type", content_type))
    return SipRequest(method, ruri, Headers.from_pairs(pairs), body)


def authorize(
    request: SipRequest,
    challenge_response: SipResponse,
    user: str,
    password: str,
    *,
    algorithm: str = "SHA-256",
    nc: int = 1,
    cnonce: str | None = None,
) -> SipRequest:
    """A copy of ``request`` answering the ``algorithm`` challenge of a 401/407 (new branch,
    CSeq + 1)."""
    name = "www-authenticate" if challenge_response.status == 401 else "proxy-authenticate"
    challenges = [parse_challenge(v) for v in challenge_response.headers.get_all(name)]
    chosen = [c for c in challenges if c.get("algorithm", "MD5").upper() == algorithm.upper()]
    assert chosen, f"no {algorithm} challenge in {challenges}"
    value = digest_authorization(
        chosen[0], request.method, request.uri, user, password, cnonce=cnonce, nc=nc
    )
    new = request.copy()
    new.headers.remove("authorization")
    new.headers.remove("proxy-authorization")
    new.headers.add(
        "Authorization" if challenge_response.status == 401 else "Proxy-Authorization", value
    )
    new.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
    via = new.headers.values("via")[0]
    branch = via.split("branch=")[1].split(";")[0]
    new.headers.set("Via", via.replace(branch, f"z9hG4bK{rand(14)}"))
    return new


# ------------------------------------------------------------------------------ raw UDP
class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: RawUdp) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._on(data, addr)


class RawUdp:
    """A UDP socket on 127.0.0.1 that sends bytes to ``server`` and collects what comes back."""

    def __init__(self, server: tuple[str, int], port: int = 0) -> None:
        assert server[0].startswith("127."), server
        self.server = server
        self.port = port
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []
        self.messages: list[SipMessage] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._event = asyncio.Event()

    async def __aenter__(self) -> RawUdp:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), local_addr=(HOST, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)

    @property
    def via(self) -> str:
        return f"SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{rand(14)};rport"

    def _on(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append((data, addr))
        with contextlib.suppress(RemoteProtocolError):
            if data.strip():
                self.messages.append(parse_message(data))
        self._event.set()
        self._event = asyncio.Event()

    def send(self, data: bytes | SipMessage, to: tuple[str, int] | None = None) -> None:
        assert self._transport is not None
        raw = data.to_bytes() if isinstance(data, SipMessage) else data
        dest = to or self.server
        assert dest[0].startswith("127."), dest
        self._transport.sendto(raw, dest)

    async def wait(
        self, predicate: Callable[[SipMessage], bool], timeout: float = WAIT, what: str = ""
    ) -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if predicate(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"raw udp :{self.port}: nothing matching {what} within {timeout}s; got "
                    + repr([_first_line(d) for d, _ in self.datagrams])
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(left, 0.2))

    async def response(
        self, call_id: str, *, final: bool = True, timeout: float = WAIT, method: str | None = None
    ) -> SipResponse:
        """The first (final, by default) response with this Call-ID."""

        def match(m: SipMessage) -> bool:
            if not isinstance(m, SipResponse) or m.headers.get("call-id") != call_id:
                return False
            if method is not None and not (m.headers.get("cseq") or "").endswith(method):
                return False
            return m.status >= 200 or not final

        msg = await self.wait(match, timeout, f"response to {call_id}")
        assert isinstance(msg, SipResponse)
        return msg

    async def request(
        self, method: str, timeout: float = WAIT, call_id: str | None = None
    ) -> SipRequest:
        def match(m: SipMessage) -> bool:
            return (
                isinstance(m, SipRequest)
                and m.method == method
                and (call_id is None or m.headers.get("call-id") == call_id)
            )

        msg = await self.wait(match, timeout, f"{method} request")
        assert isinstance(msg, SipRequest)
        return msg

    async def silence(self, seconds: float) -> list[bytes]:
        """Wait ``seconds`` (bounded) and return the datagrams received meanwhile."""
        start = len(self.datagrams)
        await asyncio.sleep(min(seconds, 5.0))
        return [d for d, _ in self.datagrams[start:]]

    def answer(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        to: tuple[str, int] | None = None,
    ) -> SipResponse:
        """Send a response to ``request`` back to the server (or ``to``)."""
        resp = make_response(request, status, reason, to_tag=to_tag or rand(8), extra=extra)
        self.send(resp, to)
        return resp


def _first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


async def probe_options(server: SipscaProcess, timeout: float = WAIT) -> SipResponse:
    """An OPTIONS to the server itself from a fresh UDP socket: the server still answers."""
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "OPTIONS",
            f"sip:{server.host}:{server.port}",
            via=udp.via,
            from_=f"<sip:probe@{server.host}>;tag={rand(8)}",
            to=f"<sip:{server.host}:{server.port}>",
        )
        udp.send(req)
        return await udp.response(req.call_id, timeout=timeout)


async def probe_register(server: SipscaProcess, timeout: float = WAIT) -> SipResponse:
    """A REGISTER (stateful: transaction layer + registrar) from a fresh UDP socket."""
    async with RawUdp(server.sip_addr) as udp:
        user = f"probe-{rand(6)}"
        aor = f"sip:{user}@{server.domain}"
        req = build_request(
            "REGISTER",
            f"sip:{server.domain}",
            via=udp.via,
            from_=f"<{aor}>;tag={rand(8)}",
            to=f"<{aor}>",
            headers=[("Contact", f"<sip:{user}@127.0.0.1:{udp.port}>;expires=60")],
        )
        udp.send(req)
        return await udp.response(req.call_id, timeout=timeout)


# ------------------------------------------------------------------------------ TCP / TLS
class StreamClient:
    """One TCP or TLS connection to the server; framed messages are collected in order."""

    def __init__(self, server: tuple[str, int], *, tls: bool = False) -> None:
        assert server[0].startswith("127."), server
        self.server = server
        self.tls = tls
        self.messages: list[SipMessage] = []
        self.raw: list[bytes] = []
        self.closed = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._event = asyncio.Event()
        self.local: tuple[str, int] = ("", 0)

    async def __aenter__(self) -> StreamClient:
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.server[0], self.server[1], ssl=ctx), WAIT
        )
        self.local = self._writer.get_extra_info("sockname")[:2]
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    @property
    def transport_name(self) -> str:
        return "TLS" if self.tls else "TCP"

    @property
    def via(self) -> str:
        return (
            f"SIP/2.0/{self.transport_name} {self.local[0]}:{self.local[1]}"
            f";branch=z9hG4bK{rand(14)};rport"
        )

    @property
    def contact(self) -> str:
        return (
            f"sip:tcpuser@{self.local[0]}:{self.local[1]};transport={self.transport_name.lower()}"
        )

    async def _read(self) -> None:
        assert self._reader is not None
        framer = StreamFramer()
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                for raw in framer.feed(chunk):
                    self.raw.append(raw)
                    with contextlib.suppress(RemoteProtocolError):
                        self.messages.append(parse_message(raw, stream=True))
                    self._event.set()
                    self._event = asyncio.Event()
        except (ConnectionError, ssl.SSLError, RemoteProtocolError):
            pass
        finally:
            self.closed.set()
            self._event.set()

    def send(self, data: bytes | SipMessage) -> None:
        assert self._writer is not None
        self._writer.write(data.to_bytes() if isinstance(data, SipMessage) else data)

    async def wait(
        self, predicate: Callable[[SipMessage], bool], timeout: float = WAIT, what: str = ""
    ) -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if predicate(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0 or (self.closed.is_set() and not any(predicate(m) for m in self.messages)):
                raise TimeoutError(
                    f"stream: nothing matching {what} within {timeout}s (closed="
                    f"{self.closed.is_set()}); got {[_first_line(r) for r in self.raw]}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(left, 0.2))

    async def response(
        self, call_id: str, *, final: bool = True, timeout: float = WAIT, status: int | None = None
    ) -> SipResponse:
        def match(m: SipMessage) -> bool:
            if not isinstance(m, SipResponse) or m.headers.get("call-id") != call_id:
                return False
            if status is not None:
                return m.status == status
            return m.status >= 200 or not final

        msg = await self.wait(match, timeout, f"response to {call_id}")
        assert isinstance(msg, SipResponse)
        return msg

    async def request(self, method: str, timeout: float = WAIT) -> SipRequest:
        msg = await self.wait(
            lambda m: isinstance(m, SipRequest) and m.method == method, timeout, method
        )
        assert isinstance(msg, SipRequest)
        return msg

    async def wait_closed(self, timeout: float = WAIT) -> bool:
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            return False
        return True
