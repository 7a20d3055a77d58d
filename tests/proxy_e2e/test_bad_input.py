"""Malformed and hostile input (REQINIT, RFC 3261 8.2/16.3/18.3): every bad message gets
its error reply (or is dropped when no reply is possible), stream connections carrying
garbage are closed, and in every case the server keeps serving: a probe right after each
attempt succeeds and the process is alive.

``server.max_message_size`` is lowered to 4000 bytes so "too large" fits in a datagram.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from support import (
    ProxyServer,
    RawUdp,
    StreamClient,
    alive,
    build_request,
    probe_options,
    probe_register,
    rand,
)

SERVER_CONFIG = {"server": {"max_message_size": 4000}}


async def still_serving(server: ProxyServer) -> None:
    """The process is alive and answers both a stateless OPTIONS to itself and a stateful
    REGISTER (transaction layer + registrar)."""
    assert alive(server), server.log_text()[-2000:]
    assert (await probe_options(server)).status == 200
    assert (await probe_register(server)).status == 200
    assert alive(server)


def options_text(
    server: ProxyServer,
    udp: RawUdp,
    call_id: str,
    drop: str = "",
    extra: str = "",
    max_forwards: str = "70",
) -> bytes:
    lines = [
        f"OPTIONS sip:someone@{server.domain} SIP/2.0",
        f"Via: {udp.via}",
        f"Max-Forwards: {max_forwards}",
        f"From: <sip:x@{server.domain}>;tag={rand(8)}",
        f"To: <sip:someone@{server.domain}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
    ]
    lines = [ln for ln in lines if not (drop and ln.startswith(drop + ":"))]
    if extra:
        lines.append(extra)
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


@pytest.mark.parametrize("header", ["To", "From", "CSeq"])
async def test_missing_mandatory_header_400(server: ProxyServer, header: str) -> None:
    """A request without To/From/CSeq: ``400`` whose reason names the missing header."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"miss-{rand(10)}"
        udp.send(options_text(server, udp, cid, drop=header))
        resp = await udp.response(cid)
    assert resp.status == 400, resp
    assert header.lower() in resp.reason.lower(), resp.reason
    await still_serving(server)


async def test_missing_call_id_and_via(server: ProxyServer) -> None:
    """Without Call-ID the 400 cannot be matched by Call-ID but still arrives (it names the
    header); without Via nothing is sent back (a response without Via matches nothing,
    RFC 3261 8.2.6.2 / 17.1.3; it used to be a headerless 400). The server survives."""
    async with RawUdp(server.sip_addr) as udp:
        udp.send(options_text(server, udp, "unused", drop="Call-ID"))
        resp = await udp.wait(lambda m: getattr(m, "status", 0) >= 200, what="400")
        assert resp.status == 400 and "call-id" in resp.reason.lower(), resp  # type: ignore[attr-defined]
        udp.messages.clear()
        udp.send(options_text(server, udp, "noVia", drop="Via"))
        udp.send(b"\x00\x01hello world\r\n\r\n")
        got = await udp.silence(0.5)
        assert got == [], got
    await still_serving(server)


@pytest.mark.parametrize(
    "broken",
    [b"CSeq: x OPTIONS", b"CSeq: 1 INVITE", b"Content-Length: 5000", b"X-Bytes: \xff\xfe"],
)
async def test_unparsable_request_reply_fills_rport_and_received(
    server: ProxyServer, broken: bytes
) -> None:
    """The stateless 400 to a request too broken to parse (bad CSeq, CSeq method mismatch,
    Content-Length past the datagram, a header that is not UTF-8) fills the top Via's
    empty ``rport`` and adds ``received`` (RFC 3581 4), as every other reply does; the
    Via used to be copied verbatim."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"rport-{rand(10)}"
        data = options_text(server, udp, cid)
        if broken.startswith(b"X-"):
            data = data.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 OPTIONS\r\n" + broken)
        else:
            name = broken.split(b":")[0]
            data = data.replace(
                b"CSeq: 1 OPTIONS" if name == b"CSeq" else b"Content-Length: 0", broken
            )
        assert b";rport" in data
        udp.send(data)
        resp = await udp.response(cid)
    assert resp.status == 400, resp
    via = resp.headers.values("via")[0]
    assert f";rport={udp.port}" in via and ";received=127.0.0.1" in via, via
    await still_serving(server)


@pytest.mark.parametrize(
    ("cseq", "word"),
    [("abc OPTIONS", "cseq"), ("1 INVITE", "cseq"), ("2147483648 OPTIONS", "")],
)
async def test_bad_cseq_400(server: ProxyServer, cseq: str, word: str) -> None:
    """Non-numeric CSeq, CSeq method not matching the request, CSeq >= 2**31: 400."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"cseq-{rand(10)}"
        data = options_text(server, udp, cid).replace(b"CSeq: 1 OPTIONS", f"CSeq: {cseq}".encode())
        udp.send(data)
        resp = await udp.response(cid)
    assert resp.status == 400, resp
    assert word in resp.reason.lower(), resp.reason
    await still_serving(server)


@pytest.mark.parametrize("to_server", [False, True], ids=["to-user", "to-server-itself"])
async def test_max_forwards_zero_483(server: ProxyServer, to_server: bool) -> None:
    """REQINIT: ``Max-Forwards: 0`` -> ``483 Too Many Hops``, also for an OPTIONS addressed to
    the server itself (the sample's REQINIT runs before anything else; the stateless
    keep-alive answer must not bypass it)."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"mf0-{rand(10)}"
        data = options_text(server, udp, cid, max_forwards="0")
        if to_server:
            data = data.replace(
                f"OPTIONS sip:someone@{server.domain} ".encode(),
                f"OPTIONS sip:{server.host}:{server.port} ".encode(),
            )
        udp.send(data)
        resp = await udp.response(cid)
    assert (resp.status, resp.reason) == (483, "Too Many Hops")
    await still_serving(server)


@pytest.mark.parametrize(
    ("extra", "mf", "word"),
    [
        ("", "abc", "max-forwards"),
        ("", "300", "max-forwards"),
        ("Contact: <sip:broken@", "70", "contact"),
        ("Expires: soon", "70", "expires"),
    ],
)
async def test_malformed_header_reason_names_it(
    server: ProxyServer, extra: str, mf: str, word: str
) -> None:
    """Malformed Max-Forwards (not a number, above 255), Contact or Expires: 400 with a
    reason phrase naming the header."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"mal-{rand(10)}"
        udp.send(options_text(server, udp, cid, extra=extra, max_forwards=mf))
        resp = await udp.response(cid)
    assert resp.status == 400, resp
    assert word in resp.reason.lower(), resp.reason
    await still_serving(server)


async def test_oversize_datagram(server: ProxyServer) -> None:
    """A 6000-byte request (limit 4000): ``513 Message Too Large`` or silently dropped, never
    processed."""
    async with RawUdp(server.sip_addr) as udp:
        cid = f"big-{rand(10)}"
        udp.send(options_text(server, udp, cid, extra="X-Padding: " + "a" * 6000))
        got = await udp.silence(0.6)
    assert all(d.startswith(b"SIP/2.0 513") for d in got), got
    await still_serving(server)


async def test_garbage_datagrams(server: ProxyServer) -> None:
    """Random bytes, a lone CRLF keep-alive, a start line only, a response out of nowhere:
    no reply but (for the request-looking one) a 400, and the server keeps serving."""
    async with RawUdp(server.sip_addr) as udp:
        for data in (
            os.urandom(700),
            b"\r\n\r\n",
            b"\x00\x01\x02 SIP/2.0\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n",
        ):
            udp.send(data)
        got = await udp.silence(0.6)
    assert all(d.startswith(b"SIP/2.0 4") for d in got), got
    await still_serving(server)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GARBAGE GARBAGE\r\n\r\n", id="no-content-length"),
        pytest.param(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -5\r\n\r\n", id="negative-cl"),
        pytest.param(
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 1000000\r\n\r\n", id="oversize-body"
        ),
        pytest.param(b"OPTIONS sip:x SIP/2.0\r\nX-Long: " + b"a" * 5000, id="oversize-head"),
    ],
)
async def test_tcp_garbage_closes_connection(server: ProxyServer, data: bytes) -> None:
    """Unframeable or oversize data on a TCP connection: the server closes that connection
    (the stream cannot be resynchronised); other connections and UDP keep working."""
    async with StreamClient(server.sip_addr) as bystander, StreamClient(server.sip_addr) as bad:
        bad.send(data)
        assert await bad.wait_closed(5), "the server kept a desynchronised connection open"
        # The bystander connection is unaffected: an OPTIONS on it is answered.
        req = build_request(
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=bystander.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
            headers=[("Content-Length", "0")],
        )
        bystander.send(req)
        assert (await bystander.response(req.call_id)).status == 200
        assert not bystander.closed.is_set()
    await still_serving(server)


@pytest.mark.parametrize(
    ("tail", "status", "word"),
    [
        pytest.param("Content-Length: -5\r\n\r\n", 400, "content-length", id="negative-cl"),
        pytest.param("\r\n", 400, "content-length", id="missing-cl"),
        pytest.param("Content-Length: 1000000\r\n\r\n", 513, "too large", id="oversize-body"),
        pytest.param("X-Long: " + "a" * 5000, 513, "too large", id="oversize-head"),
    ],
)
async def test_tcp_framing_error_is_answered_before_close(
    server: ProxyServer, tail: str, status: int, word: str
) -> None:
    """A request whose framing is broken gets its 400/513 (RFC 3261 18.3, 21.5.14) with the
    reason, matched by Call-ID, before the server closes the connection; the phone learns
    why instead of seeing a bare close."""
    async with StreamClient(server.sip_addr) as bad:
        req = build_request(
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=bad.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
        )
        head = req.to_bytes().split(b"\r\n\r\n", 1)[0].decode()
        head = "\r\n".join(
            line for line in head.split("\r\n") if not line.lower().startswith("content-length")
        )
        bad.send((head + "\r\n" + tail).encode())
        resp = await bad.response(req.call_id)
        assert resp.status == status, resp
        assert word in resp.reason.lower(), resp.reason
        assert resp.headers.get("cseq") == req.headers.get("cseq")
        assert await bad.wait_closed(5), "the server kept a desynchronised connection open"
    await still_serving(server)


async def test_tcp_bad_ack_framing_is_not_answered(server: ProxyServer) -> None:
    """An ACK is never answered, even when its framing is broken (RFC 3261 17.2.1)."""
    async with StreamClient(server.sip_addr) as bad:
        bad.send(
            f"ACK sip:127.0.0.1:{server.port} SIP/2.0\r\nVia: {bad.via}\r\n"
            f"Call-ID: ack-{rand(8)}\r\nCSeq: 1 ACK\r\nContent-Length: -1\r\n\r\n".encode()
        )
        assert await bad.wait_closed(5)
        assert bad.raw == []
    await still_serving(server)


async def test_tcp_valid_after_bad_message_on_same_connection(server: ProxyServer) -> None:
    """A well-framed but malformed request (bad CSeq) on TCP gets its 400 and the connection
    stays usable: the next request on it is answered."""
    async with StreamClient(server.sip_addr) as conn:
        cid = f"tcp-{rand(10)}"
        req = build_request(
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=conn.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
            call_id=cid,
        )
        conn.send(req.to_bytes().replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"))
        assert (await conn.response(cid)).status == 400
        good = build_request(
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=conn.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
        )
        conn.send(good)
        assert (await conn.response(good.call_id)).status == 200


async def test_flood_of_bad_datagrams_then_call(server: ProxyServer, phones: Any) -> None:
    """200 malformed datagrams in a burst, then a normal REGISTER and call work."""
    async with RawUdp(server.sip_addr) as udp:
        for i in range(200):
            udp.send(options_text(server, udp, f"flood-{i}", drop="From"))
        await asyncio.sleep(0.3)
    b = await phones(server, "bob", f"bob-{rand(5)}", uas="answer", answer_delay=0.05)
    a = await phones(server, "alice", f"alice-{rand(5)}")
    assert (await b.register()).status == 200
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200
    assert (await a.bye(call)).status == 200
    await still_serving(server)
