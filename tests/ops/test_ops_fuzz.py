"""Robustness of a real ``sipsca serve`` against malformed and hostile input (bounded fuzzing).

A seeded, bounded replay of what a fuzzing session found: the RFC 4475 torture messages,
mutated (line duplication/removal/reordering, line-end variants, bogus Content-Length,
out-of-range numbers, ASCII byte flips, truncation) and sent over UDP and TCP (split and
merged segments), must leave the server healthy: no ``ERROR``/traceback in its log, OPTIONS
still answered on UDP and TCP within a second, and server transactions drained once their
timers ran (short RFC 3261 timers here: T1 = 50 ms).

The corpus mutator leaves the Via lines alone so the replies come back; the Via tests
mutate them on purpose (parameters, sent-by, sent-protocol, layout; seeded), knowing where
RFC 3261 18.2.2 / RFC 3581 send each reply (to the sender, to a sink on 127.0.0.3 for
``maddr``, nowhere the test can see) or that it is a 400 at the packet's source, and send
hostile Vias in responses to the server's own forwarded INVITE and NOTIFY.

The other tests pin the defects the same sessions found and fixed (minimal inputs).

Network: everything is on 127.0.0.0/8. The fuzzed messages have every host rewritten to
127.0.0.1 (port 9, the discard port, where a message would leave the server) and the server
runs with a ``sitecustomize`` that keeps it off the network: no DNS look-ups (names fail as
unresolvable), no TCP connection to a name (redirected to 127.0.0.1:9), and no datagram
off loopback or to a port outside 1-65535 (diverted to 127.0.0.1:9 and logged as
"blocked", which fails the test).
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.server import SipscaProcess
from ops.support import result

HOST = "127.0.0.1"
DATA_DIR = Path(__file__).resolve().parents[1] / "sip" / "data" / "rfc4475"
SEED = 4475
MUTATIONS = 300
TCP_MESSAGES = 40
CONFIG: dict[str, dict[str, Any]] = {
    "transaction": {"t1": 0.05, "t2": 0.2, "t4": 0.25},
    "db": {"db_update_interval": 0},
}
BAD_LOG = re.compile(r"ERROR|CRITICAL|Traceback|sandbox: blocked")
WRITER_ERROR = "unexpected error in the database writer"

SANDBOX = '''\
"""Loaded by the fuzzed sipsca (tests/ops/test_ops_fuzz.py): keep it off the network."""
import ipaddress
import logging

from sipsca.runtime import resolver as _resolver
from sipsca.runtime import transport as _transport


def _no_lookup(self, host, transport, port, secure):
    return None, 30.0  # every name is unresolvable: no DNS, no hosts file


_connect = _transport.TransportManager._connect


def _loopback_connect(self, flow):
    try:
        ipaddress.ip_address(flow.host)
    except ValueError:
        flow = _transport.Flow(flow.transport, "127.0.0.1", 9)  # a name: refused at once
    return _connect(self, flow)


_send = _transport.TransportManager.send
_log = logging.getLogger("sandbox")


def _confined_send(self, data, flow):
    """Log (and divert to the discard port) what would leave loopback or use no port."""
    try:
        off_loopback = not ipaddress.ip_address(flow.host).is_loopback
    except ValueError:
        off_loopback = False  # a name: UDP refuses it (no look-up), TCP is diverted above
    if off_loopback or not 0 < flow.port < 65536:
        _log.warning("blocked send to %s: %r", flow, bytes(data[:40]))
        flow = _transport.Flow(flow.transport, "127.0.0.1", 9)
    return _send(self, data, flow)


_resolver.Resolver._lookup = _no_lookup
_transport.TransportManager._connect = _loopback_connect
_transport.TransportManager.send = _confined_send
'''


# ------------------------------------------------------------------------------ helpers
def _start(workdir: Path, sandbox: Path) -> SipscaProcess:
    srv = SipscaProcess(workdir, CONFIG)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(sandbox), old) if p)
    try:
        return srv.start()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox")
    (path / "sitecustomize.py").write_text(SANDBOX)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sandbox: Path) -> Iterator[SipscaProcess]:
    """One server shared by the tests that cannot spoil it."""
    srv = _start(tmp_path_factory.mktemp("fuzz"), sandbox)
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def fresh_server(tmp_path: Path, sandbox: Path) -> Iterator[Callable[[], SipscaProcess]]:
    """Private servers for tests that may wreck them (killed at teardown, no stop check)."""
    started: list[SipscaProcess] = []

    def start() -> SipscaProcess:
        srv = _start(tmp_path / f"srv{len(started)}", sandbox)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.cleanup()


class Log:
    """The server's log from the moment this object was made."""

    def __init__(self, srv: SipscaProcess) -> None:
        self.srv = srv
        self.offset = srv.log_path.stat().st_size

    def text(self) -> str:
        return self.srv.log_text(self.offset)

    def bad(self) -> list[str]:
        return [line for line in self.text().splitlines() if BAD_LOG.search(line)]


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    return sock


def _recv_all(sock: socket.socket, quiet: float) -> list[bytes]:
    """Every datagram until ``quiet`` seconds pass without one."""
    out = []
    while select.select([sock], [], [], quiet)[0]:
        out.append(sock.recv(65535))
    return out


def _recv_for(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram arriving within ``seconds`` (NOTIFY retransmissions never go quiet)."""
    end = time.monotonic() + seconds
    out = []
    while (left := end - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            out.append(sock.recv(65535))
    return out


def _count_for(sock: socket.socket, seconds: float, prefix: bytes) -> int:
    end = time.monotonic() + seconds
    n = 0
    while (left := end - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0] and sock.recv(65535).startswith(prefix):
            n += 1
    return n


def _request(
    method: str,
    ruri: str,
    port: int,
    *,
    call_id: str,
    extra: str = "",
    via_params: str = ";rport",
    cseq: int = 1,
    to_tag: str = "",
) -> bytes:
    branch = "z9hG4bK-" + re.sub(r"[^A-Za-z0-9]", "-", call_id)
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch={branch}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:fz@{HOST}>;tag=fz1\r\n"
        f"To: <{ruri}>{to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


def _options(port: int, transport: str = "UDP") -> bytes:
    tag = os.urandom(4).hex()
    return (
        f"OPTIONS sip:{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{port};branch=z9hG4bK-ping-{tag};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:ping@{HOST}>;tag={tag}\r\nTo: <sip:{HOST}>\r\n"
        f"Call-ID: ping-{tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _first_head(conn: socket.socket, timeout: float = 1.0) -> bytes:
    """What ``conn`` receives until a blank line (a reply's head), at most ``timeout`` s."""
    data = b""
    end = time.monotonic() + timeout
    while b"\r\n\r\n" not in data and (left := end - time.monotonic()) > 0:
        if not select.select([conn], [], [], left)[0]:
            break
        chunk = conn.recv(65535)
        if not chunk:
            break
        data += chunk
    return data


def _answers_options(srv: SipscaProcess) -> tuple[bool, bool]:
    """(UDP, TCP): an OPTIONS to the server answered 200 within 1 s."""
    with _udp() as sock:
        sock.sendto(_options(sock.getsockname()[1]), srv.sip_addr)
        ready = select.select([sock], [], [], 1.0)[0]
        udp = bool(ready) and sock.recv(65535).startswith(b"SIP/2.0 200")
    with socket.create_connection(srv.sip_addr, timeout=1.0) as conn:
        conn.sendall(_options(conn.getsockname()[1], "TCP"))
        tcp = _first_head(conn).startswith(b"SIP/2.0 200")
    return udp, tcp


def _server_transactions(srv: SipscaProcess) -> int:
    stats = result(srv, "stats", "transactions")
    return int(stats["transactions.server_invite"]) + int(stats["transactions.server_non_invite"])


# ------------------------------------------------------------------------------ corpus
_VIA_SENT_BY = re.compile(
    rb"(?im)^((?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*\S+[ \t]+)[^;,\r\n]+"
)
_HOST_AFTER_AT = re.compile(rb"@[A-Za-z0-9.\-]+(?::[0-9]+)?")
_HOST_AFTER_SCHEME = re.compile(rb"(sips?:)(?![^\s<>;,]*@)[A-Za-z0-9.\-]+(?::[0-9]+)?")
_SELF_PARAMS = re.compile(rb";[ \t]*(?:received|maddr)[ \t]*=[ \t]*[^;,\s>]*", re.IGNORECASE)


def _confine(message: bytes) -> bytes:
    """Every host to 127.0.0.1: the Request-URI's (ours, so handled here), the others :9."""
    head, sep, body = message.partition(b"\r\n\r\n")
    first, nl, rest = head.partition(b"\r\n")
    first = _HOST_AFTER_AT.sub(b"@127.0.0.1", first)
    first = _HOST_AFTER_SCHEME.sub(rb"\g<1>127.0.0.1", first)
    rest = _SELF_PARAMS.sub(b"", rest)
    rest = _VIA_SENT_BY.sub(rb"\g<1>127.0.0.1:9", rest)
    rest = _HOST_AFTER_AT.sub(b"@127.0.0.1:9", rest)
    rest = _HOST_AFTER_SCHEME.sub(rb"\g<1>127.0.0.1:9", rest)
    return first + nl + rest + sep + body


def _corpus() -> list[bytes]:
    out = []
    for path in sorted(DATA_DIR.glob("*.dat")):
        data = path.read_bytes()
        if path.name == "baddn.dat":
            data += b"\r\n"  # the archive's copy ends without the blank line (see README)
        out.append(_confine(data))
    return out


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def _join(lines: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _is_via(line: bytes) -> bool:
    return re.match(rb"(?i)(via|v)[ \t]*:", line) is not None


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three structural mutations; the Via lines' text is never altered, so the
    replies come back to the test's socket (an unroutable Via has its own test)."""
    for _ in range(rng.randint(1, 3)):
        lines, body = _lines(data)
        kind = rng.randrange(8)
        if kind == 0 and len(lines) > 1:  # duplicate a line 1..200 times
            i = rng.randrange(1, len(lines))
            lines[i:i] = [lines[i]] * rng.choice([1, 2, 5, 200])
        elif kind == 1 and len(lines) > 1:  # remove a line
            del lines[rng.randrange(1, len(lines))]
        elif kind == 2:  # reorder the header lines
            rest = lines[1:]
            rng.shuffle(rest)
            lines = lines[:1] + rest
        elif kind == 3:  # bogus or repeated Content-Length
            lines = [x for x in lines if not re.match(rb"(?i)(content-length|l)[ \t]*:", x)]
            value = rng.choice(
                [
                    b"-1",
                    b"0",
                    b"1",
                    b"99999999999",
                    b"abc",
                    b"",
                    b"65536",
                    str(len(body) + 1).encode(),
                    b"0000000000000000000001",
                ]
            )
            for _ in range(rng.choice([1, 1, 2])):
                lines.insert(rng.randrange(1, len(lines) + 1), b"Content-Length: " + value)
        elif kind == 4:  # out-of-range numbers
            idx = [i for i, x in enumerate(lines) if i and not _is_via(x) and re.search(rb"\d", x)]
            if idx:
                i = rng.choice(idx)
                number = rng.choice([b"0", b"4294967296", b"2147483648", b"256", b"9" * 400])
                lines[i] = re.sub(rb"\d+", number, lines[i], count=1)
        elif kind == 5:  # flip ASCII bytes outside the Via lines
            idx = [i for i, x in enumerate(lines) if x and not _is_via(x)]
            for _ in range(rng.randint(1, 4)):
                i = rng.choice(idx)
                line = bytearray(lines[i])
                line[rng.randrange(len(line))] = rng.choice(b'\x00\t ;,<>":@%=?*')
                lines[i] = bytes(line)
        elif kind == 6:  # line ends: bare LF, a folded blank line, leading CRLFs
            joined = _join(lines, body)
            return rng.choice(
                [
                    joined.replace(b"\r\n", b"\n"),
                    b"\r\n\r\n" + joined,
                    joined.replace(b"\r\n\r\n", b"\r\n \r\n", 1),
                ]
            )
        else:  # truncate
            joined = _join(lines, body)
            return joined[: rng.randrange(1, len(joined))]
        data = _join(lines, body)
    return data


def _inputs() -> list[bytes]:
    rng = random.Random(SEED)
    corpus = _corpus()
    out = list(corpus)
    while len(out) < len(corpus) + MUTATIONS:
        data = _mutate(rng, rng.choice(corpus))
        try:
            data.partition(b"\r\n\r\n")[0].decode("utf-8")
        except UnicodeDecodeError:
            continue  # truncated inside a UTF-8 sequence: see the non-UTF-8 Call-ID test
        out.append(data)
    return out


# ------------------------------------------------------------------------------ Via mutations
VIA_SEED = SEED + 2
VIA_COMBINATIONS = 600
VIA_TCP_CASES = 60
VIA_GROUP = 40
"""UDP cases in flight at once (each from its own socket, so replies cannot be confused)."""
SINK = "127.0.0.3"
"""Bound at the port of each case's sender: a reply lands there only for maddr=127.0.0.3."""

# What happens to the reply, by kind of mutation (over UDP; over TCP every reply comes back
# over the connection, so only "bad" matters there):
#   ok        the reply comes back to the sender (received/rport are the server's to write)
#   bad       a syntax error in the Via: 400, sent to the packet's source
#   udpbad    no reply can follow the Via (maddr not an IP address): 400 at the source
#   sink      maddr=127.0.0.3: the reply goes there, at the sent-by port (RFC 3261 18.2.2)
#   self      maddr=127.0.0.1: back to the sender, when sent-by names its port
#   portless  sent-by without a port: back to the sender only with rport (else 5060)
#   lost      the reply goes where nothing listens (IPv6 maddr, IPv4 socket): a probe follows
_VIA_FAMILIES: dict[str, list[tuple[str, str]]] = {
    "protocol": [
        ("SIP/2.0/UDP", "ok"),
        ("SIP/2.0/udp", "ok"),
        ("sip/2.0/Udp", "ok"),
        ("SIP / 2.0 / UDP", "ok"),
        ("SIP/2.0/XYZ", "ok"),
        ("SIP/2.0/TCP", "ok"),
        ("SIP/2.0/TLS", "ok"),
        ("SIP/2.0/SCTP", "ok"),
        ("SIP/3.0/UDP", "bad"),
        ("SIP/2.0", "bad"),
        ("SIP/2.0/", "bad"),
    ],
    "sent_by": [
        ("127.0.0.1:{p}", "ok"),
        ("127.0.0.1", "portless"),
        ("127.0.0.1:0{p}", "ok"),
        ("127.0.0.1 : {p}", "ok"),
        ("[::1]:{p}", "ok"),
        ("[::ffff:127.0.0.1]:{p}", "ok"),
        ("localhost:{p}", "ok"),
        ("sent-by.example.com:{p}", "ok"),
        ("10.1.2.3:{p}", "ok"),
        ("127.0.0.1:0", "bad"),
        ("[::1]:0", "bad"),
        ("127.0.0.1:70000", "bad"),
        ("127.0.0.1:-1", "bad"),
        ("127.0.0.1:{p}:{p}", "bad"),
        ("[::1", "bad"),
        ("::1:{p}", "bad"),
    ],
    "branch": [
        (";branch=z9hG4bK-{b}", "ok"),
        ("", "ok"),
        (";branch=", "ok"),
        (";branch", "ok"),
        (";branch=z9hG4bK", "ok"),
        (";branch=rfc2543-{b}", "ok"),
        (";branch=z9hG4bK-{b}" + "x" * 2000, "ok"),
        (";branch=z9hG4bK-{b};BRANCH=z9hG4bK-dup", "ok"),
        (';branch=z9hG4bK"{b}"', "bad"),
        (";branch=z9hG4bK<{b}>", "bad"),
    ],
    "rport": [
        ("", "ok"),
        (";rport", "ok"),
        (";RPORT", "ok"),
        (";rport=5", "ok"),
        (";rport=99999", "ok"),
        (";rport=abc", "ok"),
        (";rport;rport=7", "ok"),
        (";rport=\u00b2", "bad"),
    ],
    "received": [
        ("", "ok"),
        (";received=garbage", "ok"),
        (";received=127.0.0.3", "ok"),
        (";received=10.1.2.3", "ok"),
        (";received=::1", "ok"),
        (";received=[::1]", "ok"),
        (";received=", "ok"),
    ],
    "maddr": [
        ("", "ok"),
        (";maddr=127.0.0.3", "sink"),
        (";maddr=127.0.0.1", "self"),
        (";maddr=maddr.example.com", "udpbad"),
        (";maddr=not_a_host", "udpbad"),
        (";maddr=", "udpbad"),
        (";maddr", "udpbad"),
        (";maddr=[::1]", "udpbad"),  # another address family than the IPv4 socket
    ],
    "ttl": [("", "ok"), (";ttl=1", "ok"), (";ttl=999", "ok"), (";ttl=-1", "ok"), (";ttl=", "ok")],
    "other": [
        ("", "ok"),
        (";foo=bar", "ok"),
        (";x", "ok"),
        (';foo="a;b=c"', "ok"),
        (";hidden;alias;keep", "ok"),
        (" ; ext = 1", "ok"),
        (";b@d=1", "bad"),
        (";=x", "bad"),
        (";;", "bad"),
        (";foo=<x>", "bad"),
    ],
    # where the mutated Via is: alone, compact, folded, first of two (comma or line), or
    # below a Via of somebody else on a loopback port with no SIP listener
    "layout": [
        ("plain", "ok"),
        ("compact", "ok"),
        ("folded", "ok"),
        ("comma-after", "ok"),
        ("line-after", "ok"),
        ("many-after", "ok"),
        ("name-case", "ok"),
        ("line-above", "below"),
        ("comma-above", "below"),
    ],
}
_VIA_METHODS = ("OPTIONS", "MESSAGE", "INVITE", "REGISTER", "BYE")
_PARAM_FAMILIES = ("branch", "rport", "received", "maddr", "ttl", "other")


class ViaCase:
    """One request whose own Via is mutated; ``expect(udp)`` says what must come back."""

    def __init__(self, n: int, method: str, parts: dict[str, tuple[str, str]]) -> None:
        self.n = n
        self.method = method
        self.parts = parts
        self.call_id = f"fz-via-{n}"

    def __repr__(self) -> str:
        return f"{self.method} {self.via_value('PORT')!r} ({self.parts['layout'][0]})"

    def via_value(self, port: int | str) -> str:
        text = {k: v[0].format(p=port, b=self.call_id) for k, v in self.parts.items()}
        params = "".join(text[k] for k in _PARAM_FAMILIES)
        return f"{text['protocol']} {text['sent_by']}{params}"

    def expect(self, udp: bool) -> str:
        """What must come back: "reply", "400", "sink" or "lost" (see _VIA_FAMILIES)."""
        kinds = {kind for _, kind in self.parts.values()}
        below = "below" in kinds
        if "bad" in kinds:
            return "lost" if udp and below else "400"
        if not udp:
            return "reply"
        if below:
            return "lost"  # the reply goes to the Via above (RFC 3261 18.2.2)
        if "udpbad" in kinds:
            return "400"
        portless = self.parts["sent_by"][1] == "portless"
        maddr = self.parts["maddr"][1]
        if maddr == "lost" or (maddr in ("sink", "self") and portless):
            return "lost"
        if maddr == "sink":
            return "sink"
        if portless and not self.parts["rport"][0]:
            return "lost"
        return "reply"

    def data(self, port: int) -> bytes:
        layout = self.parts["layout"][0]
        value = self.via_value(port)
        other = f"SIP/2.0/UDP {HOST}:9;branch=z9hG4bK-other-{self.call_id}"
        proto, _, rest = value.partition(" ")
        via = {
            "plain": f"Via: {value}",
            "compact": f"v: {value}",
            "folded": f"Via: {proto}\r\n {rest}",
            "comma-after": f"Via: {value} , {other}",
            "line-after": f"Via: {value}\r\nVia: {other}",
            "many-after": f"Via: {value}" + f"\r\nVia: {other}, {other}" * 40,
            "name-case": f"VIA  :{value}",
            "line-above": f"Via: {other.replace(':9;', ':1;')}\r\nVia: {value}",
            "comma-above": f"Via: {other},{value}",
        }[layout]
        method = self.method
        ruri = f"sip:{HOST}" if method in ("OPTIONS", "REGISTER") else f"sip:nobody@{HOST}"
        to_tag = ";tag=gone" if method == "BYE" else ""  # 404 Not here (stateless)
        return (
            f"{method} {ruri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:fz@{HOST}>;tag=fz1\r\nTo: <{ruri}>{to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ).encode()


def _via_cases() -> list[ViaCase]:
    """Every mutation once on an otherwise normal Via (rport flag, the sender's port),
    then seeded combinations of one to four mutated parts."""
    rng = random.Random(VIA_SEED)
    normal = {family: options[0] for family, options in _VIA_FAMILIES.items()}
    normal["rport"] = (";rport", "ok")
    cases: list[ViaCase] = []
    for family, options in _VIA_FAMILIES.items():
        for option in options[1:]:
            method = _VIA_METHODS[len(cases) % len(_VIA_METHODS)]
            cases.append(ViaCase(len(cases), method, {**normal, family: option}))
    for _ in range(VIA_COMBINATIONS):
        parts = dict(normal)
        for family in rng.sample(sorted(_VIA_FAMILIES), rng.randint(1, 4)):
            parts[family] = rng.choice(_VIA_FAMILIES[family])
        cases.append(ViaCase(len(cases), rng.choice(_VIA_METHODS), parts))
    return cases


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    """A sender on 127.0.0.1 and a sink on 127.0.0.3 at the same port."""
    for _ in range(20):
        sender = _udp()
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sink.bind((SINK, sender.getsockname()[1]))
        except OSError:
            sender.close()
            sink.close()
            continue
        return sender, sink
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.3")


def _check_via_case(case: ViaCase, at_sender: list[bytes], at_sink: list[bytes]) -> str | None:
    """What is wrong with the replies to ``case`` over UDP, or None."""
    expect = case.expect(udp=True)
    first = at_sender[0].split(b"\r\n", 1)[0] if at_sender else b""
    if expect == "reply" and not (
        first.startswith(b"SIP/2.0 ") and first[8:11] not in (b"400", b"500") and not at_sink
    ):
        return f"{case}: wanted a reply at the sender, got {first!r}, sink {len(at_sink)}"
    if expect == "400" and not (first.startswith(b"SIP/2.0 400 ") and not at_sink):
        return f"{case}: wanted 400 at the sender, got {first!r}, sink {len(at_sink)}"
    if expect == "sink" and not (at_sink and not at_sender):
        return f"{case}: wanted the reply at maddr, got {first!r}, sink {len(at_sink)}"
    if expect == "lost" and (at_sender or at_sink):
        return f"{case}: wanted no reply (it belongs elsewhere), got {first!r}, sink {len(at_sink)}"
    return None


def _run_udp_via_cases(srv: SipscaProcess, cases: list[ViaCase]) -> list[str]:
    """Send ``cases`` in groups; wait (bounded) for every expected reply, then probe."""
    failures: list[str] = []
    for start in range(0, len(cases), VIA_GROUP):
        group = cases[start : start + VIA_GROUP]
        pairs = [_udp_pair() for _ in group]
        try:
            # Only datagrams with the case's Call-ID count: a port of an earlier group may
            # be reused, and that group's retransmissions still arrive there.
            marks = {
                sock: f"Call-ID: {case.call_id}\r\n".encode()
                for case, pair in zip(group, pairs, strict=True)
                for sock in pair
            }
            got: dict[socket.socket, list[bytes]] = {sock: [] for sock in marks}
            for case, (sender, _) in zip(group, pairs, strict=True):
                sender.sendto(case.data(sender.getsockname()[1]), srv.sip_addr)
            waiting = {
                pair[1] if case.expect(udp=True) == "sink" else pair[0]
                for case, pair in zip(group, pairs, strict=True)
                if case.expect(udp=True) != "lost"
            }
            deadline = time.monotonic() + 2.0
            settle: float | None = None
            while (now := time.monotonic()) < (settle or deadline):
                if not waiting and settle is None:
                    settle = now + 0.1  # then a moment for replies that should not come
                ready = select.select(list(got), [], [], max(0.0, (settle or deadline) - now))
                for sock in ready[0]:
                    data = sock.recv(65535)
                    if marks[sock] in data:
                        got[sock].append(data)
                        waiting.discard(sock)
            for case, (sender, sink) in zip(group, pairs, strict=True):
                problem = _check_via_case(case, got[sender], got[sink])
                if problem is not None:
                    failures.append(problem)
        finally:
            for pair in pairs:
                for sock in pair:
                    sock.close()
        if _answers_options(srv) != (True, True) or not _answers_register(srv):
            failures.append(f"probe unanswered after cases {start}-{start + len(group) - 1}")
            break
    return failures


def _answers_register(srv: SipscaProcess) -> bool:
    """A REGISTER query (no Contact) answered 200 within 1 s: the stateful path is alive."""
    with _udp() as sock:
        port = sock.getsockname()[1]
        call_id = f"fz-probe-{os.urandom(4).hex()}"
        sock.sendto(_request("REGISTER", f"sip:{HOST}", port, call_id=call_id), srv.sip_addr)
        end = time.monotonic() + 1.0
        while (left := end - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                data = sock.recv(65535)
                if call_id.encode() in data:
                    return data.startswith(b"SIP/2.0 200")
    return False


def _tcp_exchange(srv: SipscaProcess, case: ViaCase) -> bytes:
    """``case`` over its own TCP connection; the first reply (its head), or b""."""
    with socket.create_connection(srv.sip_addr, timeout=1.0) as conn:
        conn.sendall(case.data(conn.getsockname()[1]))
        return _first_head(conn)


# ------------------------------------------------------------------------------ tests
def test_mutated_torture_messages_leave_the_server_healthy(server: SipscaProcess) -> None:
    log = Log(server)
    rng = random.Random(SEED + 1)
    inputs = _inputs()
    with _udp() as sock:
        for data in inputs:
            sock.sendto(data, server.sip_addr)
            time.sleep(0.002)
            _recv_all(sock, 0)
    for data in rng.sample(inputs, TCP_MESSAGES):
        cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        if rng.random() < 0.3:
            pieces = [b"\r\n\r\n" + b"".join(pieces) + rng.choice(inputs)]  # merged
        with socket.create_connection(server.sip_addr, timeout=2) as conn:
            for piece in pieces:
                try:
                    conn.sendall(piece)
                except OSError:
                    break  # closed by the server after a framing error
    assert _answers_options(server) == (True, True)
    deadline = time.monotonic() + 8.0  # timers H and J: 64*T1 = 3.2 s
    while _server_transactions(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _server_transactions(server) == 0
    assert log.bad() == []


def test_malformed_ack_is_never_answered(server: SipscaProcess) -> None:
    with _udp() as sock:
        port = sock.getsockname()[1]
        ack = _request(
            "ACK",
            f"sip:nobody@{HOST}",
            port,
            call_id="fz-ack",
            to_tag=";tag=x",
            extra="Broken header line\r\n",
        )
        sock.sendto(ack, server.sip_addr)
        assert _recv_all(sock, 0.3) == []


def _call_info_subscribe(
    sock: socket.socket, server: tuple[str, int], line: str, call_id: str
) -> None:
    """A call-info SUBSCRIBE to ``line`` from ``sock`` (it makes the line known)."""
    port = sock.getsockname()[1]
    contact = f"Contact: <sip:fz@{HOST}:{port}>\r\n"
    extra = f"Event: call-info\r\n{contact}Expires: 60\r\n"
    sock.sendto(_request("SUBSCRIBE", line, port, call_id=call_id, extra=extra), server)


def test_non_ascii_appearance_index_is_a_client_error(server: SipscaProcess) -> None:
    log = Log(server)
    line = f"sip:fz-line@{HOST}"
    with _udp() as sock:
        port = sock.getsockname()[1]
        contact = f"Contact: <sip:fz@{HOST}:{port}>\r\n"
        _call_info_subscribe(sock, server.sip_addr, line, "fz-ci")
        _recv_for(sock, 0.2)
        seize = _request(
            "SUBSCRIBE",
            line,
            port,
            call_id="fz-ls",
            extra=(
                f"Event: line-seize\r\n{contact}Call-Info: <sip:{HOST}>;appearance-index=\u00b2\r\n"
            ),
        )
        sock.sendto(seize, server.sip_addr)
        replies = [r for r in _recv_for(sock, 0.3) if r.startswith(b"SIP/")]
    assert replies and replies[0].startswith(b"SIP/2.0 4")
    assert log.bad() == []


def test_tcp_message_before_a_framing_error_is_still_served(server: SipscaProcess) -> None:
    with socket.create_connection(server.sip_addr, timeout=2) as conn:
        port = conn.getsockname()[1]
        good = _options(port, "TCP")
        bad = _options(port, "TCP").replace(b"Content-Length: 0", b"Content-Length: -1")
        conn.sendall(good + bad)
        data = b""
        end = time.monotonic() + 0.5
        while (left := end - time.monotonic()) > 0 and select.select([conn], [], [], left)[0]:
            chunk = conn.recv(65535)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"SIP/2.0 200")


def test_stateless_400_does_not_echo_a_bare_cr(server: SipscaProcess) -> None:
    with _udp() as sock:
        port = sock.getsockname()[1]
        data = _request("OPTIONS", f"sip:{HOST}", port, call_id="fz-cr")
        data = data.replace(
            b"CSeq: 1 OPTIONS\r\n", b"CSeq: 1 OPTIONS\rContact: <sip:x@127.0.0.1:9>\r\n"
        )
        sock.sendto(data, server.sip_addr)
        replies = _recv_all(sock, 0.3)
    assert replies and replies[0].startswith(b"SIP/2.0 400")
    assert re.search(rb"\r(?!\n)", replies[0]) is None


def test_mutated_vias_are_answered_where_they_say_or_refused(server: SipscaProcess) -> None:
    """Via parameters, sent-by, sent-protocol and layout mutated (seeded): each request is
    answered where RFC 3261 18.2.2 / RFC 3581 send the reply (never where the sender
    merely claims to be: received/rport are the server's to write), a Via that is
    malformed or names no usable reply address gets 400 at the packet's source, and a
    reply that belongs elsewhere does not come back. Over TCP every request is answered on
    its connection. Probes after each group; nothing leaves loopback, no traceback."""
    log = Log(server)
    cases = _via_cases()
    failures = _run_udp_via_cases(server, cases)
    rng = random.Random(VIA_SEED + 1)
    for sample in rng.sample(cases, VIA_TCP_CASES):
        # a Call-ID and branch of its own: else it is a retransmission of the UDP request
        case = ViaCase(sample.n + len(cases), sample.method, sample.parts)
        first = _tcp_exchange(server, case).split(b"\r\n", 1)[0]
        wanted = case.expect(udp=False)
        ok = (
            first.startswith(b"SIP/2.0 400 ")
            if wanted == "400"
            else (first.startswith(b"SIP/2.0 ") and first[8:11] not in (b"400", b"500"))
        )
        if not ok:
            failures.append(f"TCP {case}: wanted {wanted}, got {first!r}")
    assert failures == [], "\n".join(failures)
    assert server.proc is not None and server.proc.poll() is None
    assert log.bad() == []


def _via_lines(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    return [line for line in head.split("\r\n") if re.match(r"(?i)(via|v)[ \t]*:", line)]


def _response(
    request: bytes, status: int, vias: list[str], to_tag: str = ";tag=fz-callee"
) -> bytes:
    """A response to ``request`` (its From/To/Call-ID/CSeq) with the Via lines ``vias``."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    copied = [
        line + (to_tag if line.lower().startswith("to:") and ";tag=" not in line else "")
        for line in head.split("\r\n")[1:]
        if re.match(r"(?i)(from|to|call-id|cseq)[ \t]*:", line)
    ]
    return (
        "\r\n".join([f"SIP/2.0 {status} Fuzz", *vias, *copied, "Content-Length: 0", "", ""])
    ).encode()


def _first(sock: socket.socket, prefix: bytes, seconds: float = 1.0) -> bytes:
    """The first datagram starting with ``prefix`` within ``seconds`` (others dropped)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            data = sock.recv(65535)
            if data.startswith(prefix):
                return data
    raise AssertionError(f"nothing starting with {prefix!r} within {seconds} s")


def test_hostile_vias_in_responses_to_the_server(server: SipscaProcess) -> None:
    """Responses to the server's own requests (a forwarded INVITE, a NOTIFY) with hostile
    Vias: top branch matching with another sent-by, a Via of somebody else above ours, no
    Via, only ours; stray 2xx whose next Via names an absurd port, a transport the server
    has not got, a maddr or received that is no address. None may raise, stall or send
    anything off loopback, and the subscription the NOTIFY belongs to survives."""
    log = Log(server)
    with _udp() as ua, _udp() as caller:
        up, cp = ua.getsockname()[1], caller.getsockname()[1]
        contact = f"Contact: <sip:fz@{HOST}:{up}>\r\n"
        ua.sendto(
            _request(
                "REGISTER",
                f"sip:fz-via-ua@{HOST}",
                up,
                call_id="fz-via-reg",
                extra=f"{contact}Expires: 60\r\n",
            ),
            server.sip_addr,
        )
        _first(ua, b"SIP/2.0 200")
        caller.sendto(
            _request("INVITE", f"sip:fz-via-ua@{HOST}", cp, call_id="fz-via-inv"), server.sip_addr
        )
        invite = _first(ua, b"INVITE ")
        ours, callers = _via_lines(invite)[:2]
        other_sent_by = re.sub(r"(SIP/2\.0/UDP )[^;]+", r"\g<1>127.0.0.1:9", ours)
        somebody = f"Via: SIP/2.0/UDP {HOST}:9;branch=z9hG4bK-somebody"
        # 17.1.3 matches on branch and method: another sent-by still reaches the caller
        ua.sendto(_response(invite, 180, [other_sent_by, callers]), server.sip_addr)
        assert _first(caller, b"SIP/2.0 180")
        for vias in ([somebody, ours, callers], [], [ours]):  # not ours / none / only ours
            ua.sendto(_response(invite, 183, vias), server.sip_addr)
        # stray 2xx (no such branch, our sent-by): forwarded to the next Via (16.7) only
        # when that one is usable
        stray = re.sub(r"branch=[^;]+", "branch=z9hG4bK-no-such-branch", ours)
        next_vias = [
            re.sub(r"rport=\d+", "rport=99999", callers),
            re.sub(r"rport=\d+", "rport=0", callers),
            re.sub(r";rport=\d+", "", callers).replace(f":{cp};", ":0;"),
            callers.replace("SIP/2.0/UDP", "SIP/2.0/XYZ"),
            callers.replace("SIP/2.0/UDP", "SIP/2.0/SCTP"),
            callers + ";maddr=not_a_host",
            re.sub(r"received=[^;]+", "received=garbage", callers),
        ]
        for via in next_vias:
            ua.sendto(_response(invite, 200, [stray, via]), server.sip_addr)
        # the caller's own branch, as if the server's transaction were the client one
        ua.sendto(
            _response(invite, 200, [callers.replace(f":{cp};", ":9;"), callers]), server.sip_addr
        )
        ua.sendto(_response(invite, 200, [stray, callers]), server.sip_addr)
        assert _first(caller, b"SIP/2.0 200")  # the well-formed stray 2xx, no other
        ua.sendto(_response(invite, 486, [ours, callers]), server.sip_addr)
        assert _first(caller, b"SIP/2.0 486")

        line = f"sip:fz-via-line@{HOST}"
        _call_info_subscribe(ua, server.sip_addr, line, "fz-via-sub")
        notify = _first(ua, b"NOTIFY ")
        (mine,) = _via_lines(notify)
        for status, vias in ((481, []), (481, [somebody, mine]), (481, [somebody])):
            ua.sendto(_response(notify, status, vias, to_tag=""), server.sip_addr)
        moved = re.sub(r"(SIP/2\.0/UDP )[^;]+", r"\g<1>127.0.0.1:9", mine)
        ua.sendto(_response(notify, 200, [moved, somebody], to_tag=""), server.sip_addr)
        _recv_for(ua, 0.3)  # NOTIFY retransmissions until the 200, if any
    # a Via transport the server has not got is no reason to open a TCP connection
    assert re.search(r"(?i)\b(xyz|sctp):127", log.text()) is None
    subscriptions = result(server, "sca.all_subscriptions")
    assert "fz-via-line" in str(subscriptions), subscriptions
    assert _answers_options(server) == (True, True)
    assert server.proc is not None and server.proc.poll() is None
    assert log.bad() == []


def test_unroutable_via_does_not_stall_other_transactions(server: SipscaProcess) -> None:
    # Last of the shared-server tests: the attacker's 404 keeps failing for 3.2 s (timer H).
    log = Log(server)
    with _udp() as victim, _udp() as attacker:
        # an IPv6 maddr the IPv4 socket cannot send to: refused with a 400 at the source
        # now (it used to make every reply and retransmission fail); either way the other
        # transaction's retransmissions must go on
        bad = _request(
            "INVITE", f"sip:nobody@{HOST}", 9, call_id="fz-v6", via_params=";maddr=[::1]"
        )
        attacker.sendto(bad, server.sip_addr)
        invite = _request(
            "INVITE", f"sip:nobody@{HOST}", victim.getsockname()[1], call_id="fz-victim"
        )
        victim.sendto(invite, server.sip_addr)
        # Unacknowledged, the victim's 404 comes again at 0.05, 0.15, 0.35, 0.55 s... (timer G)
        copies = _count_for(victim, 2.0, b"SIP/2.0 404")
    assert copies >= 5
    assert log.bad() == []


def test_huge_appearance_index_does_not_break_persistence(
    fresh_server: Callable[[], SipscaProcess],
) -> None:
    srv = fresh_server()
    log = Log(srv)
    line = f"sip:fz-big@{HOST}"
    with _udp() as sock:
        port = sock.getsockname()[1]
        contact = f"Contact: <sip:fz@{HOST}:{port}>\r\n"
        _call_info_subscribe(sock, srv.sip_addr, line, "fz-big-ci")
        _recv_for(sock, 0.2)
        sock.sendto(
            _request(
                "SUBSCRIBE",
                line,
                port,
                call_id="fz-big-ls",
                extra=(
                    f"Event: line-seize\r\n{contact}"
                    f"Call-Info: <sip:{HOST}>;appearance-index=9223372036854775808\r\n"
                ),
            ),
            srv.sip_addr,
        )
        _recv_for(sock, 0.5)
    assert WRITER_ERROR not in log.text()


def test_non_utf8_call_id_does_not_break_persistence_or_stop(
    fresh_server: Callable[[], SipscaProcess],
) -> None:
    srv = fresh_server()
    log = Log(srv)
    with _udp() as sock:
        port = sock.getsockname()[1]
        register = _request(
            "REGISTER",
            f"sip:fz@{HOST}",
            port,
            call_id="fz-\udcff",
            extra=f"Contact: <sip:fz@{HOST}:{port}>\r\nExpires: 60\r\n",
        )
        assert b"Call-ID: fz-\xff\r\n" in register
        sock.sendto(register, srv.sip_addr)
        _recv_for(sock, 0.5)
    assert WRITER_ERROR not in log.text()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    try:
        assert srv.proc.wait(4.0) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("sipsca did not stop within 4 s of SIGTERM")
