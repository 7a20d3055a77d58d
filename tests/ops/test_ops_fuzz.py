"""Robustness of a real ``sipsca serve`` against malformed and hostile input (bounded fuzzing).

A seeded, bounded replay of what a fuzzing session found: the RFC 4475 torture messages,
mutated (line duplication/removal/reordering, line-end variants, bogus Content-Length,
out-of-range numbers, ASCII byte flips, truncation) and sent over UDP and TCP (split and
merged segments), must leave the server healthy: no ``ERROR``/traceback in its log, OPTIONS
still answered on UDP and TCP within a second, and server transactions drained once their
timers ran (short RFC 3261 timers here: T1 = 50 ms).

The other tests pin the defects the same session found and fixed (minimal inputs).

Network: everything is on 127.0.0.1. The fuzzed messages have every host rewritten to
127.0.0.1 (port 9, the discard port, where a message would leave the server) and the server
runs with a ``sitecustomize`` that keeps it off the network: no DNS look-ups (names fail as
unresolvable) and no TCP connection to a name (redirected to 127.0.0.1:9).
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
BAD_LOG = re.compile(r"ERROR|CRITICAL|Traceback")
WRITER_ERROR = "unexpected error in the database writer"

SANDBOX = '''\
"""Loaded by the fuzzed sipsca (tests/ops/test_ops_fuzz.py): keep it off the network."""
import ipaddress

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


_resolver.Resolver._lookup = _no_lookup
_transport.TransportManager._connect = _loopback_connect
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


def _answers_options(srv: SipscaProcess) -> tuple[bool, bool]:
    """(UDP, TCP): an OPTIONS to the server answered 200 within 1 s."""
    with _udp() as sock:
        sock.sendto(_options(sock.getsockname()[1]), srv.sip_addr)
        ready = select.select([sock], [], [], 1.0)[0]
        udp = bool(ready) and sock.recv(65535).startswith(b"SIP/2.0 200")
    with socket.create_connection(srv.sip_addr, timeout=1.0) as conn:
        conn.sendall(_options(conn.getsockname()[1], "TCP"))
        data = b""
        end = time.monotonic() + 1.0
        while b"\r\n\r\n" not in data and (left := end - time.monotonic()) > 0:
            if not select.select([conn], [], [], left)[0]:
                break
            chunk = conn.recv(65535)
            if not chunk:
                break
            data += chunk
        tcp = data.startswith(b"SIP/2.0 200")
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


def test_unroutable_via_does_not_stall_other_transactions(server: SipscaProcess) -> None:
    # Last of the shared-server tests: the attacker's 404 keeps failing for 3.2 s (timer H).
    log = Log(server)
    with _udp() as victim, _udp() as attacker:
        bad = _request(
            "INVITE", f"sip:nobody@{HOST}", 9, call_id="fz-v6", via_params=";received=::1"
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
