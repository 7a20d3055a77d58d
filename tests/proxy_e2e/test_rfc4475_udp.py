"""RFC 4475 torture messages over UDP against the running server (``/work/shared/testdata``).

Each of the 49 messages is sent as one datagram from its own socket and the reply status is
checked against the table below. Setup: ``example.com`` is a served domain, a sink phone is
registered as ``sip:user@example.com`` (answers INVITE 486, an INVITE with an unknown To-tag
481, everything else 200), and the other domains the messages name are static routes to the
same sink, so every forwarded request stays on 127.0.0.1 and its final response shows that
it was forwarded.

Only one byte range of each request is changed: the sent-by (host[:port]) of the top Via
becomes the test socket, because RFC 3261 18.2.2 sends UDP responses to the sent-by port
(5060 when absent), where the test cannot listen. Everything else, including the Via's
odd spacing, transport token and parameters, is sent as is. Responses (``SIP/2.0 ...``) are
sent unmodified and must never be answered.

REGISTER messages run after the others, one at a time in RFC order (``cparam02`` replaces
``cparam01``'s binding, and ``regescrt`` adds a contact to ``sip:user@example.com``).

=============== ========== ===========================================================
file            reply      why (RFC 4475 section 3 expectation -> sipsca)
=============== ========== ===========================================================
wsinv           481        valid; in-dialog (To-tag) INVITE loose-routed via its Route to
                           the sink, which knows no such dialog. Unknown headers intact.
intmeth         404        valid; unknown method to a local user without binding
esc01           486        valid; forwarded to example.net, R-URI escapes untouched
escnull         200        valid; registers two distinct contacts (%00 not truncating)
esc02           200        valid; RE%47IST%45R is not REGISTER: relayed to its domain
lwsdisp         200        valid; forwarded to the sink
longreq         486        valid; forwarded to the sink
dblreq          200        valid; REGISTER handled, trailing INVITE octets ignored
semiuri         404        valid; user "user;par=u@example.net" has no binding
transports      200        valid; unknown Via transports below the top are fine
mpart01         200        valid; MESSAGE forwarded, binary body byte for byte
unreason        none       valid response (stray 2xx, top Via not ours): never answered
noreason        none       valid response (stray 100): never answered
badinv01        400        invalid Via parameters
clerr           400        Content-Length larger than the datagram
ncl             400        negative Content-Length
scalar02        400        CSeq out of range
scalarlg        none       response with overlarge scalars: dropped silently
quotbal         400        unterminated quoted display name
ltgtruri        400        <> around the Request-URI
lwsruri         400        LWS inside the Request-URI
lwsstart        400        several SP in the request line (strict choice)
trws            400        trailing SP in the request line (strict choice)
escruri         400        escaped headers in the Request-URI
baddate         486        Date not used by a proxy: forwarded (ignored)
regbadct        400        unbracketed Contact URI with parameters
badaspec        400        spaces inside an addr-spec
baddn           400        unquoted non-token display name
badvers         505        SIP/7.0
mismatch01      400        CSeq method differs from the request method
mismatch02      400        same, unknown method (501 or 400 allowed)
bigcode         none       response with status code > 699: dropped
badbranch       200        branch "z9hG4bK" only: RFC 2543 matching fallback, forwarded
insuf           400        no To, From, Call-ID
unkscm          416        unknown Request-URI scheme
novelsc         416        soap.beep Request-URI
unksm2          400        REGISTER with a non-SIP To AoR
bext01          420        Unsupported lists exactly the Proxy-Require tags
invut           486        unknown Content-Type is the UAS's business: forwarded
regaut01        200        unknown Authorization scheme ignored (auth off)
multi01         400        several To/From/Call-ID/CSeq values
mcl01           400        several Content-Length headers
bcast           none       stray 200 whose next Via is 255.255.255.255: dropped
zeromf          483        Max-Forwards 0 at a proxy
cparam01        200        contact-param "unknownparam" not stored in the URI
cparam02        200        URI parameter "unknownparam" kept in the binding
regescrt        200        escaped Route header kept in the bound contact
sdp01           486        Accept is the UAS's business: forwarded
inv2543         404        RFC 2543 INVITE accepted; UserB has no binding
=============== ========== ===========================================================
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import ProxyServer, RawUdp, bindings, rand

from helpers.phone import Ladder, Phone

DATA = Path("/work/shared/testdata/rfc4475")
EXPECTED: dict[str, int | None] = {
    "wsinv": 481, "intmeth": 404, "esc01": 486, "escnull": 200, "esc02": 200,
    "lwsdisp": 200, "longreq": 486, "dblreq": 200, "semiuri": 404, "transports": 200,
    "mpart01": 200, "unreason": None, "noreason": None,
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": None,
    "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400,
    "escruri": 400, "baddate": 486, "regbadct": 400, "badaspec": 400, "baddn": 400,
    "badvers": 505, "mismatch01": 400, "mismatch02": 400, "bigcode": None,
    "badbranch": 200, "insuf": 400, "unkscm": 416, "novelsc": 416, "unksm2": 400,
    "bext01": 420, "invut": 486, "regaut01": 200, "multi01": 400, "mcl01": 400,
    "bcast": None, "zeromf": 483, "cparam01": 200, "cparam02": 200, "regescrt": 200,
    "sdp01": 486, "inv2543": 404,
}  # fmt: skip
ROUTED = (
    "example.org",
    "example.net",
    "chair-dnrc.example.com",
    "services.example.com",
    "company.com",
    "registrar.example.com",
)
TOP_VIA = re.compile(
    rb"(?im)^(?:via|v)[ \t]*:[ \t]*(?:\r\n[ \t]+)?"
    rb"SIP[ \t\r\n]*/[ \t\r\n]*[0-9.]+[ \t\r\n]*/[ \t\r\n]*[A-Za-z]+(?:[ \t]|\r\n[ \t])+[ \t\r\n]*"
    rb"(?P<sentby>[^;,\s]+)"
)
SILENCE = 1.0


def manifest() -> list[dict[str, Any]]:
    return json.loads((DATA / "manifest.json").read_text())  # type: ignore[no-any-return]


def retarget(data: bytes, port: int) -> bytes:
    """The message with its top Via sent-by replaced by 127.0.0.1:``port`` (requests only)."""
    if data[:4].upper() == b"SIP/":
        return data
    head, sep, body = data.partition(b"\r\n\r\n")
    m = TOP_VIA.search(head)
    assert m is not None, head[:200]
    head = head[: m.start("sentby")] + f"127.0.0.1:{port}".encode() + head[m.end("sentby") :]
    return head + sep + body


class Outcome:
    def __init__(self, name: str, datagrams: list[bytes], udp: RawUdp) -> None:
        self.name = name
        self.datagrams = datagrams
        self.udp = udp

    @property
    def finals(self) -> list[int]:
        out = []
        for d in self.datagrams:
            if d.startswith(b"SIP/2.0 "):
                code = int(d[8:11])
                if code >= 200:
                    out.append(code)
        return out

    @property
    def lines(self) -> list[str]:
        return [d.split(b"\r\n", 1)[0].decode(errors="replace") for d in self.datagrams]

    @property
    def status(self) -> int | None:
        return self.finals[0] if self.finals else None


async def send_one(server: ProxyServer, name: str, expected: int | None, udp: RawUdp) -> Outcome:
    udp.send(retarget((DATA / f"{name}.dat").read_bytes(), udp.port))
    if expected is None:
        await udp.silence(SILENCE)
    else:
        try:
            await udp.wait(lambda m: getattr(m, "status", 0) >= 200, 6.0, f"reply to {name}")
        except TimeoutError:
            pass
    return Outcome(name, [d for d, _ in udp.datagrams], udp)


@pytest.fixture
async def torture(make_server: Any, ladder: Ladder) -> Any:
    sink = Phone("sink", "user", domain="example.com", uas=486, ladder=ladder)
    await sink.start()
    srv: ProxyServer = make_server(
        {
            "server": {"domains": ["127.0.0.1", "example.com"]},
            "proxy": {"static_routes": [[d, f"udp:127.0.0.1:{sink.port}"] for d in ROUTED]},
            "transaction": {"timer_c": 8.0},
        }
    )
    sink.server = srv.sip_addr
    assert (await sink.register()).status == 200
    yield srv, sink
    await sink.close()


async def test_rfc4475_torture_messages(torture: Any) -> None:
    """All 49 messages: the reply status of the table above, the server alive after them,
    plus the content checks each message is about (see the per-file asserts)."""
    server, sink = torture
    names = [m["file"].removesuffix(".dat") for m in manifest()]
    assert sorted(names) == sorted(EXPECTED), "manifest and table disagree"
    register = [n for n in names if (DATA / f"{n}.dat").read_bytes().startswith(b"REGISTER")]
    others = [n for n in names if n not in register]
    sockets = {n: RawUdp(server.sip_addr) for n in names}
    for s in sockets.values():
        await s.__aenter__()
    try:
        results = dict(
            zip(
                others,
                await asyncio.gather(
                    *(send_one(server, n, EXPECTED[n], sockets[n]) for n in others)
                ),
                strict=True,
            )
        )
        for n in register:
            results[n] = await send_one(server, n, EXPECTED[n], sockets[n])

        table = "\n".join(
            f"{n:12} expected {EXPECTED[n]!s:5} got {results[n].status!s:5} {results[n].lines}"
            for n in names
        )
        wrong = [n for n in names if results[n].status != EXPECTED[n]]
        assert not wrong, f"unexpected replies for {wrong}:\n{table}"
        for n in names:
            if EXPECTED[n] is None:
                assert results[n].datagrams == [], (n, results[n].datagrams)
        assert server.alive()

        await check_forwarded_content(sink)
        await check_bindings(server, results)
        await check_escaped_header_contact(server, sockets["regescrt"])
    finally:
        for s in sockets.values():
            await s.__aexit__(None, None, None)


async def check_forwarded_content(sink: Phone) -> None:
    by_call: dict[str, Any] = {}
    for r in sink.requests:
        by_call.setdefault(r.call_id, r)  # the first request of each call (not the ACK)
    # wsinv: unknown headers (folded value, odd punctuation) passed on unchanged.
    ws = by_call["wsinv.ndaksdj@192.0.2.1"]
    assert "newfangled value" in (ws.headers.get("newfangledheader") or "")
    assert "continued newfangled value" in (ws.headers.get("newfangledheader") or "")
    assert ws.headers.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    # esc01: the escaped Request-URI is forwarded as written (never decoded).
    esc = by_call["esc01.239409asdfakjkn23onasd0-3234"]
    assert esc.uri == "sip:sips%3Auser%40example.com@example.net"
    # esc02: the method is RE%47IST%45R, not REGISTER.
    assert by_call["esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf"].method == "RE%47IST%45R"
    # mpart01: the binary multipart body byte for byte.
    raw = (DATA / "mpart01.dat").read_bytes()
    mp = next(r for r in sink.requests if r.method == "MESSAGE")
    assert mp.body == raw.partition(b"\r\n\r\n")[2]
    # dblreq: the INVITE octets after the REGISTER were not a second request.
    assert not any("dblreq.0ha0isnda977644900765" in r.call_id for r in sink.requests)
    # Nothing the proxy must reject or drop reached the sink.
    for bad in ("ltgtruri", "lwsstart", "trws", "escruri", "baddn", "zeromf", "bext01"):
        assert not any(r.call_id.startswith(bad) for r in sink.requests), bad


async def check_bindings(server: ProxyServer, results: dict[str, Outcome]) -> None:
    rows = await bindings(server)
    by_aor: dict[str, list[str]] = {}
    for row in rows:
        by_aor.setdefault(row["aor"], []).append(row["contact"])
    # escnull: two distinct contacts, the AoR not truncated at %00.
    assert sorted(by_aor["sip:null-%00-null@example.com"]) == [
        "sip:%00%00@host5.example.com",
        "sip:%00@host5.example.com",
    ]
    # esc02 was no REGISTER.
    assert "sip:resource@example.com" not in by_aor
    # cparam01: unknownparam was a contact parameter; cparam02: a URI parameter, kept
    # (and, being the same URI by RFC 3261 19.1.4, it replaced cparam01's binding).
    c1 = next(ln for ln in results["cparam01"].datagrams if ln.startswith(b"SIP/2.0 200"))
    assert b"<sip:+19725552222@gw1.example.net>" in c1
    assert by_aor["sip:watson@example.com"] == ["sip:+19725552222@gw1.example.net;unknownparam"]
    # regescrt: the escaped Route header stays in the bound contact.
    assert "sip:user@example.com?Route=%3Csip:sip.example.com%3E" in by_aor["sip:user@example.com"]
    assert by_aor["sip:j.user@example.com"] == ["sip:j.user@host.example.com"]


async def check_escaped_header_contact(server: ProxyServer, regescrt: RawUdp) -> None:
    """After regescrt, a call to sip:user@example.com also forks to that contact (reached at
    the address the REGISTER came from); the Request-URI must not carry the ``?Route=``
    headers (RFC 3261 19.1.1: headers are not allowed in a Request-URI)."""
    regescrt.messages.clear()
    async with RawUdp(server.sip_addr) as caller:
        cid = f"after-regescrt-{rand(8)}"
        caller.send(
            (
                "INVITE sip:user@example.com SIP/2.0\r\n"
                f"Via: {caller.via}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:caller@example.net>;tag={rand(8)}\r\n"
                "To: <sip:user@example.com>\r\n"
                f"Call-ID: {cid}\r\n"
                "CSeq: 1 INVITE\r\n"
                f"Contact: <sip:caller@127.0.0.1:{caller.port}>\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        inv = await regescrt.request("INVITE", call_id=cid)
        assert inv.uri == "sip:user@example.com", inv.uri
        assert "?" not in inv.uri
        regescrt.answer(inv, 486)
        assert (await caller.response(cid)).status == 486
