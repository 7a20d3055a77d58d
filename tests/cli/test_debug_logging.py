"""``--log-level debug`` shows sipsca's SIP message trace, not the libraries' internals; the
trace follows the log level changed at run time (``log.set_level``); the warning about
authentication being off appears only with a non-loopback listener."""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.inprocess import captured_app
from helpers.server import SipscaProcess
from sipsca.cli import logs
from sipsca.cli.main import cli
from sipsca.runtime.app import SipApplication
from sipsca.sip.address import Flow

PHONE = Flow("udp", "127.0.0.1", 5062)


def options(cseq: int, *, to_user: str = "bob") -> bytes:
    return (
        f"OPTIONS sip:{to_user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKopt{cseq};rport\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: <sip:{to_user}@127.0.0.1>\r\n"
        "Call-ID: trace-1\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def logging_setup() -> Iterator[io.StringIO]:
    """Puts the root logger and the third-party levels back after the test; the buffer is
    what :func:`setup` makes the handler write to."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield io.StringIO()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in ("aiosqlite", "asyncio", "asyncpg", "aiomysql", "aiohttp", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def setup(level: str, stream: io.StringIO) -> None:
    """``setup_logging(level)``, its handler writing to ``stream`` (pytest swaps sys.stderr
    between the phases of a test, so a patched stderr would not last)."""
    logs.setup_logging(level)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def test_libraries_never_log_below_info(logging_setup: io.StringIO) -> None:
    setup("debug", logging_setup)
    for name in ("aiosqlite", "asyncio", "asyncpg", "aiomysql", "aiohttp.web"):
        logging.getLogger(name).debug("internals of %s", name)
        logging.getLogger(name).info("news from %s", name)
    logging.getLogger("sipsca.trace").debug("recv udp:127.0.0.1:5062 OPTIONS")
    logging.getLogger("aiosqlitex").debug("not a library of ours")
    text = logging_setup.getvalue()
    assert "internals of" not in text
    for name in ("aiosqlite", "asyncio", "asyncpg", "aiomysql", "aiohttp.web"):
        assert f"news from {name}" in text
    assert "recv udp:127.0.0.1:5062 OPTIONS" in text and "not a library of ours" in text


def test_the_root_level_still_applies_to_the_libraries(logging_setup: io.StringIO) -> None:
    """Their own level is INFO, but at WARNING (set at run time too) their INFO is hidden."""
    setup("debug", logging_setup)
    logging.getLogger().setLevel(logging.WARNING)  # what log.set_level WARNING does
    logging.getLogger("aiosqlite").info("hidden")
    logging.getLogger("aiosqlite").warning("shown")
    assert "hidden" not in logging_setup.getvalue() and "shown" in logging_setup.getvalue()
    logging.getLogger().setLevel(logging.ERROR)  # --log-level error: their warnings too
    logging.getLogger("asyncio").warning("quiet warning")
    logging.getLogger("asyncio").error("loud error")
    assert "quiet warning" not in logging_setup.getvalue()
    assert "loud error" in logging_setup.getvalue()


@pytest.mark.parametrize(
    ("data", "summary"),
    [
        (options(1), "OPTIONS sip:bob@127.0.0.1 call-id=trace-1 cseq=1 OPTIONS"),
        (
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h\r\ni: c-9\r\nCSeq:  7   INVITE\r\n\r\nv=0",
            "180 Ringing call-id=c-9 cseq=7 INVITE",
        ),
        (b"\x00\x01\x00\x00garbage", "11 bytes, not SIP: '\\x00\\x01\\x00\\x00garbage'"),
        (b"INVITE sip:x SIP/2.0\r\n", "INVITE sip:x call-id=- cseq=-"),
    ],
)
def test_describe(data: bytes, summary: str) -> None:
    from sipsca.runtime.trace import describe

    assert describe(data) == summary


@pytest.fixture
async def app() -> AsyncIterator[tuple[SipApplication, list[bytes]]]:
    async with captured_app() as captured:
        yield captured


async def test_every_message_in_and_out_is_traced_while_debug_is_on(
    app: tuple[SipApplication, list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    application, sent = app
    trace = logging.getLogger("sipsca.trace")
    caplog.set_level(logging.INFO)  # as a running server at INFO: no trace
    application.on_bytes(options(1, to_user="nobody"), PHONE)  # 404 through a transaction
    assert sent and not [r for r in caplog.records if r.name == "sipsca.trace"]
    caplog.set_level(logging.DEBUG)  # log.set_level DEBUG at run time: the trace follows
    assert trace.isEnabledFor(logging.DEBUG)
    application.on_bytes(options(2, to_user="nobody"), PHONE)
    lines = [r.getMessage() for r in caplog.records if r.name == "sipsca.trace"]
    assert lines == [
        f"recv {PHONE} OPTIONS sip:nobody@127.0.0.1 call-id=trace-1 cseq=2 OPTIONS",
        f"send {PHONE} 404 Not Found call-id=trace-1 cseq=2 OPTIONS",
    ]


def test_serve_at_debug_shows_sip_not_sqlite(tmp_path: Path) -> None:
    """A real server at DEBUG: one line per message, not a line of aiosqlite."""
    srv = SipscaProcess(tmp_path / "srv", log_level="DEBUG")
    srv.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            port = sock.getsockname()[1]
            register = (
                f"REGISTER sip:127.0.0.1:{srv.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKdbg1;rport\r\n"
                "From: <sip:alice@127.0.0.1>;tag=d1\r\n"
                "To: <sip:alice@127.0.0.1>\r\n"
                "Call-ID: debug-trace-1\r\n"
                "CSeq: 1 REGISTER\r\n"
                f"Contact: <sip:alice@127.0.0.1:{port}>\r\n"
                "Expires: 300\r\n"
                "Max-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(register.encode(), srv.sip_addr)
            assert sock.recvfrom(65535)[0].startswith(b"SIP/2.0 200")
        deadline = time.monotonic() + 5
        while "send udp:" not in srv.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        srv.stop()
        srv.cleanup()
    text = srv.log_text()
    assert "aiosqlite" not in text, [line for line in text.splitlines() if "aiosqlite" in line][:5]
    flow = f"udp:127.0.0.1:{port}"
    assert (
        f"recv {flow} REGISTER sip:127.0.0.1:{srv.port} call-id=debug-trace-1 cseq=1 REGISTER"
        in text
    )
    assert f"send {flow} 200 OK call-id=debug-trace-1 cseq=1 REGISTER" in text
    assert f"registration sip:alice@127.0.0.1 contact sip:alice@127.0.0.1:{port} added" in text


# --- item 5: the warning about authentication being off -----------------------------------------


@pytest.mark.parametrize(
    ("listen", "warned"),
    [
        (["udp:127.0.0.1:5060", "tcp:[::1]:5060"], False),
        (["udp:127.0.0.1:5060", "udp:0.0.0.0:5060"], True),
    ],
)
def test_auth_off_warning_only_for_a_non_loopback_listener(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logging_setup: io.StringIO,  # restores the logging the command sets up
    listen: list[str],
    warned: bool,
) -> None:
    import sipsca.service

    monkeypatch.setattr(sipsca.service, "run_server", lambda config: 0)  # no sockets
    config = tmp_path / "sipsca.toml"
    quoted = ", ".join(f'"{item}"' for item in listen)
    config.write_text(
        f'[server]\nlisten = [{quoted}]\nadvertised_address = "sip.example.com"\n'
        '[auth]\nmode = "none"\nallow_unauthenticated = true\n'
    )
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    text = result.stderr  # the log handler writes to the stderr CliRunner gives the command
    assert ("authentication is OFF" in text) is warned, text
    if warned:
        assert "non-loopback address 0.0.0.0" in text


async def test_stateless_fast_path_replies_are_traced(
    app: tuple[SipApplication, list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    """The 200 to an OPTIONS keep-alive sent to the server itself goes out without a
    transaction (runtime/stateless_replies.py): it is traced like every other reply."""
    application, sent = app
    caplog.set_level(logging.DEBUG)
    ping = options(3).replace(b"OPTIONS sip:bob@127.0.0.1 ", b"OPTIONS sip:127.0.0.1 ", 1)
    application.on_bytes(ping, PHONE)
    assert sent and sent[-1].startswith(b"SIP/2.0 200")
    lines = [r.getMessage() for r in caplog.records if r.name == "sipsca.trace"]
    assert lines == [
        f"recv {PHONE} OPTIONS sip:127.0.0.1 call-id=trace-1 cseq=3 OPTIONS",
        f"send {PHONE} 200 OK call-id=trace-1 cseq=3 OPTIONS",
    ]
