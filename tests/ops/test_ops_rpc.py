"""The management RPC against a real running server: every command over HTTP (JSON-RPC 2.0
``POST /RPC``) and through ``sipsca rpc`` (table for people, ``--json``), Kamailio's outputs and
fault texts, NOTIFYs caused by seize/update/release/deactivate, malformed requests, the bearer
token, the loopback-only default and the CLI without a server."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from helpers.phone import Ladder, call_info_of
from helpers.sca import WILDCARD, Line, ci, full, sub_state
from helpers.server import SipscaProcess, free_port
from ops.support import (
    Database,
    OpsServer,
    cli,
    http_get,
    http_post,
    http_rpc,
    rpc_url,
    write_config,
)

AOR = "sip:1000@127.0.0.1"
BOB = "<sip:bob@127.0.0.1>"
SCA_COMMANDS = {
    "sca.all_subscriptions",
    "sca.subscription_count",
    "sca.show_subscription",
    "sca.subscribers",
    "sca.deactivate_all_subscriptions",
    "sca.deactivate_subscription",
    "sca.all_appearances",
    "sca.show_appearance",
    "sca.seize_appearance",
    "sca.update_appearance",
    "sca.release_appearance",
}
OTHER_COMMANDS = {
    "core.version",
    "core.uptime",
    "ul.dump",
    "registrar.bindings",
    "stats",
    "stats.get_statistics",
    "log.level",
    "log.set_level",
    "system.listMethods",
    "system.methodHelp",
}
TRACEBACK_MARKERS = ("Traceback", 'File "', "Error:", "sipsca/")


def rpc_cli(
    server: SipscaProcess, method: str, *args: Any, as_json: bool = False, token: str = ""
) -> subprocess.CompletedProcess[str]:
    opts = ["--url", rpc_url(server)]
    if token:
        opts += ["--token", token]
    if as_json:
        opts.append("--json")
    return cli("rpc", *opts, method, *map(str, args))


def http_result(server: SipscaProcess, method: str, *params: Any) -> Any:
    answer = http_rpc(server, method, *params)
    assert answer["_http_status"] == 200 and "error" not in answer, answer
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 7
    return answer["result"]


def cli_result(server: SipscaProcess, method: str, *args: Any) -> Any:
    p = rpc_cli(server, method, *args, as_json=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def cli_lines(server: SipscaProcess, method: str, *args: Any) -> list[str]:
    p = rpc_cli(server, method, *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def fault_both_ways(server: SipscaProcess, method: str, *params: Any) -> tuple[int, str]:
    """The fault over HTTP; the CLI must exit 1 with ``error: CODE - MESSAGE``."""
    answer = http_rpc(server, method, *params)
    assert "result" not in answer, answer
    code, message = answer["error"]["code"], answer["error"]["message"]
    p = rpc_cli(server, method, *params)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip() == f"error: {code} - {message}"
    return code, message


@pytest.fixture
async def line(
    make_database: Callable[[str], Database], ops_server: Callable[..., OpsServer], ladder: Ladder
) -> Any:
    """Server with members A and B (call-info), C (not subscribed, registered), bob."""
    srv = ops_server(make_database("sqlite"), {"sca": {"purge_expired_interval": 1}})
    ln = Line(srv, ladder)
    await ln.member("A")
    await ln.member("B")
    await ln.callee()
    yield ln
    await ln.close()


async def test_read_commands_over_http_and_cli(line: Line) -> None:
    srv = line.server
    a, b = line["A"], line["B"]
    await asyncio.to_thread(http_result, srv, "sca.seize_appearance", AOR, a.contact_uri)
    await line.broadcast(full(ci(1, "seized")))
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("sca.all_subscriptions", ()),
        ("sca.subscription_count", ("call-info",)),
        ("sca.subscription_count", ("line-seize",)),
        ("sca.show_subscription", (AOR, "call-info")),
        ("sca.show_subscription", (AOR, "call-info", a.contact_uri)),
        ("sca.subscribers", ()),
        ("sca.all_appearances", ()),
        ("sca.show_appearance", (AOR,)),
        ("sca.show_appearance", (AOR, 1)),
        ("core.version", ()),
        ("ul.dump", ()),
        ("registrar.bindings", ()),
        ("stats", ("sca",)),
        ("log.level", ()),
        ("system.listMethods", ()),
        ("system.methodHelp", ("sca.seize_appearance",)),
    ]
    for method, params in calls:
        over_http = await asyncio.to_thread(http_result, srv, method, *params)
        over_cli = await asyncio.to_thread(cli_result, srv, method, *params)
        table = await asyncio.to_thread(cli_lines, srv, method, *params)
        if method in ("ul.dump", "registrar.bindings"):  # seconds left may tick
            for row in over_http + over_cli:
                row.pop("expires")
        if method == "sca.all_subscriptions":
            over_http, over_cli, table = (
                [" ".join(x.split()[:3] + x.split()[4:]) for x in v]
                for v in (over_http, over_cli, table)
            )
        assert over_cli == over_http, method
        if isinstance(over_http, list) and over_http and isinstance(over_http[0], dict):
            assert table[0].split()[:3] == ["AOR", "CONTACT", "EXPIRES"]
            assert len(table) == len(over_http) + 1
        elif isinstance(over_http, dict):
            assert [x.split(":")[0] for x in table] == list(over_http)
        elif isinstance(over_http, list):
            assert table == [x.rstrip() for x in over_http] or table == over_http
        else:
            assert table == [str(over_http)]

    subs = [s.split() for s in http_result(srv, "sca.all_subscriptions")]
    assert sorted(s[:3] + s[4:] for s in subs) == sorted(
        ["1000", f"127.0.0.1:{p.port}", "call-info", "active"] for p in (a, b)
    )
    assert all(3500 < int(s[3]) <= 3600 for s in subs)
    assert http_result(srv, "sca.subscription_count", "call-info") == ["2 call-info"]
    assert http_result(srv, "sca.subscription_count", "line-seize") == ["0 line-seize"]
    shown = http_result(srv, "sca.show_subscription", AOR, "call-info", a.contact_uri)
    assert [s.split()[:3] for s in shown] == [[AOR, "call-info", a.contact_uri]]
    apps = http_result(srv, "sca.all_appearances")
    assert [x.split()[:3] + x.split()[4:5] for x in apps] == [[AOR, "1", "seized", a.contact_uri]]
    assert http_result(srv, "core.version").startswith("sipsca ")
    methods = set(http_result(srv, "system.listMethods"))
    assert methods >= SCA_COMMANDS | OTHER_COMMANDS
    dump = http_result(srv, "ul.dump")
    assert {(x["aor"], x["contact"]) for x in dump} == {
        (p.aor, p.contact_uri) for p in (a, b, line["bob"])
    }
    assert all(0 < x["expires"] <= 3600 for x in dump)
    stats = http_result(srv, "stats", "sca")
    assert stats["sca.subscriptions_call_info"] == 2 and stats["sca.appearances_seized"] == 1

    everything = http_result(srv, "stats.get_statistics", "all")
    assert {"db.healthy", "db.pending_writes", "registrar.bindings"} <= set(everything)
    assert set(cli_result(srv, "stats.get_statistics", "all")) == set(everything)
    for result in (http_result(srv, "core.uptime"), cli_result(srv, "core.uptime")):
        assert set(result) == {"now", "up_since", "uptime"} and result["uptime"] >= 0
    assert cli_lines(srv, "core.uptime")[2].startswith("uptime:")


async def test_state_changing_commands_notify_like_phones(line: Line) -> None:
    """seize/update/release/deactivate through HTTP and through the CLI send the NOTIFYs a
    phone's own action would: the same Call-Info broadcast to every member."""
    srv = line.server
    a, b = line["A"], line["B"]
    # What a phone causes: A seizes appearance 1 with a line-seize subscription.
    await line.seize(a, 1)
    by_phone = next(n for n in reversed(b.notifies) if n.call_id == line.subs["B"].call_id)
    assert call_info_of(by_phone) == full(ci(1, "seized"))

    async def broadcast_of(action: Callable[[], Any], expected: str) -> None:
        line.drain()
        await asyncio.to_thread(action)
        value = await line.broadcast(expected)
        for p in (a, b):
            n = next(n for n in reversed(p.notifies) if n.call_id == line.subs[p.name].call_id)
            assert sub_state(n)[0] == "active"
            assert n.headers.get("event") == "call-info"
            assert n.headers.get("content-type") == by_phone.headers.get("content-type")
        assert value == expected

    # release: HTTP, then the phone-equivalent seize again through the CLI
    await broadcast_of(lambda: http_result(srv, "sca.release_appearance", AOR, 1), WILDCARD)
    await broadcast_of(
        lambda: cli_lines(srv, "sca.seize_appearance", AOR, a.contact_uri),
        call_info_of(by_phone) or "",
    )
    assert http_result(srv, "sca.all_appearances")[0].split()[4] == a.contact_uri
    # seize over HTTP (index 2) and its output
    out: list[str] = []
    await broadcast_of(
        lambda: out.extend(http_result(srv, "sca.seize_appearance", AOR, b.contact_uri)),
        full(ci(1, "seized"), ci(2, "seized")),
    )
    assert out == [f"Seized {AOR} appearance-index 2 for {b.contact_uri}"]
    # update over HTTP and CLI (no output on success), with and without appearance-uri
    await broadcast_of(
        lambda: http_result(srv, "sca.update_appearance", AOR, 1, "held"),
        full(ci(1, "held"), ci(2, "seized")),
    )
    await broadcast_of(
        lambda: cli_lines(srv, "sca.update_appearance", AOR, 2, "active", "sip:bob@127.0.0.1"),
        full(ci(1, "held"), ci(2, "active", BOB)),
    )
    assert cli_lines(srv, "sca.update_appearance", AOR, 1, "held") == []
    await line.broadcast(full(ci(1, "held"), ci(2, "active", BOB)))
    # release through the CLI
    await broadcast_of(
        lambda: cli_lines(srv, "sca.release_appearance", AOR, 2), full(ci(1, "held"))
    )
    await broadcast_of(lambda: http_result(srv, "sca.release_appearance", AOR, 1), WILDCARD)

    # deactivate one subscription through the CLI, the rest over HTTP
    line.drain()
    assert cli_lines(srv, "sca.deactivate_subscription", AOR, "call-info", b.contact_uri) == [
        f"Deactivating call-info subscription from {b.contact_uri}"
    ]
    n = await b.expect_notify("call-info", call_id=line.subs["B"].call_id)
    assert sub_state(n) == ("terminated;reason=deactivated", None)
    assert sorted(http_result(srv, "sca.deactivate_all_subscriptions")) == [
        f"Deactivating {event} subscription from {a.contact_uri}"
        for event in ("call-info", "line-seize")  # A's line-seize lives 15 s
    ]
    n = await a.expect_notify("call-info", call_id=line.subs["A"].call_id)
    assert sub_state(n) == ("terminated;reason=deactivated", None)
    # and once more through the CLI: nothing left to deactivate
    await line.member("C")
    c = line["C"]
    assert cli_lines(srv, "sca.deactivate_all_subscriptions") == [
        f"Deactivating call-info subscription from {c.contact_uri}"
    ]
    n = await c.expect_notify("call-info", call_id=line.subs["C"].call_id)
    assert sub_state(n) == ("terminated;reason=deactivated", None)
    d = await line.member("D")
    assert http_result(srv, "sca.deactivate_subscription", AOR, "call-info", d.contact_uri) == [
        f"Deactivating call-info subscription from {d.contact_uri}"
    ]
    n = await d.expect_notify("call-info", call_id=line.subs["D"].call_id)
    assert sub_state(n) == ("terminated;reason=deactivated", None)
    assert fault_both_ways(srv, "sca.deactivate_subscription", AOR, "call-info", a.contact_uri) == (
        500,
        f"No call-info subscription from {a.contact_uri} to {AOR}",
    )


async def test_kamailio_fault_texts_over_http_and_cli(line: Line) -> None:
    srv = line.server
    b = line["B"]
    expected = [
        (
            ("sca.subscription_count", "foo"),
            (500, "usage: sca.subscription_count {call-info | line-seize}"),
        ),
        (
            ("sca.subscription_count",),
            (500, "usage: sca.subscription_count {call-info | line-seize}"),
        ),
        (
            ("sca.show_subscription", AOR),
            (
                500,
                "usage: sca.show_subscription sip:user@domain {call-info | line-seize} "
                "[sip:user@IP]",
            ),
        ),
        (("sca.seize_appearance", AOR), (500, "usage: sca.seize_appearance sip:user@domain")),
        (
            ("sca.update_appearance", AOR, 1),
            (
                500,
                "Usage: sca.update_appearance sip:user@domain appearance-index appearance-state "
                "[appearance-uri]",
            ),
        ),
        (("sca.update_appearance", AOR, 1, "busy"), (500, "busy: invalid state")),
        (
            ("sca.update_appearance", AOR, 9, "held"),
            (500, f"Failed to update {AOR} appearance-index 9"),
        ),
        (("sca.release_appearance", AOR, 0), (500, "appearance-index must be > 0")),
        (("sca.release_appearance", AOR, 5), (500, f"{AOR} appearance index 5 is not in use")),
        (
            ("sca.release_appearance", AOR),
            (500, "usage: sca.release_appearance user@domain appearance-index"),
        ),
        (("sca.show_appearance", AOR, 0), (500, "appearance-index must be > 0")),
        (
            ("sca.deactivate_subscription", AOR, "foo", b.contact_uri),
            (
                500,
                "usage: sca.deactivate_subscription sip:user@domain {call-info | line-seize} "
                "sip:user@IP",
            ),
        ),
        (("no.such.method",), (-32601, "Method not found")),
    ]
    for (method, *params), fault in expected:
        assert await asyncio.to_thread(fault_both_ways, srv, method, *params) == fault, method
    code, message = fault_both_ways(srv, "log.set_level", "LOUD")
    assert code == -32602 and "LOUD" in message
    code, message = fault_both_ways(
        srv, "sca.deactivate_subscription", AOR, "call-info", "sip:nobody@127.0.0.1:9"
    )
    assert code == 500, message
    await line.no_notify(within=0.2)


async def test_runtime_log_level(line: Line) -> None:
    """``log.set_level`` changes what the running server logs (INFO lines stop at WARNING)."""
    srv: Any = line.server
    assert http_result(srv, "log.level") == "INFO"
    assert http_result(srv, "log.set_level", "debug") == "DEBUG"
    assert cli_lines(srv, "log.level") == ["DEBUG"]
    assert cli_lines(srv, "log.set_level", "WARNING") == ["WARNING"]
    offset = srv.log_size()
    await line.member("C")  # would log "call-info subscription ... created" at INFO
    http_result(srv, "core.version")  # would log an access line at INFO
    await asyncio.sleep(0.2)
    assert srv.log_text(offset) == ""
    assert http_result(srv, "log.set_level", "INFO") == "INFO"
    offset = srv.log_size()
    await line.member("D")
    await asyncio.sleep(0.2)
    assert "call-info subscription" in srv.log_text(offset)


async def test_malformed_requests_get_error_objects_never_tracebacks(line: Line) -> None:
    srv = line.server
    url = rpc_url(srv)
    cases: list[tuple[bytes, int | None]] = [
        (b"{not json", -32700),
        (b"\xff\xfe\x00garbage", -32700),
        (b"", -32700),
        (b"[]", -32600),
        (b"42", -32600),
        (b'{"jsonrpc": "1.0", "method": "core.version", "id": 1}', -32600),
        (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
        (b'{"jsonrpc": "2.0", "method": "core.version", "id": {"x": 1}}', -32600),
        (b'{"jsonrpc": "2.0", "method": "core.version", "params": 7, "id": 1}', -32602),
        (
            b'{"jsonrpc": "2.0", "method": "sca.seize_appearance", "params": {"x": 1}, "id": 1}',
            -32602,
        ),
        (b'{"jsonrpc": "2.0", "method": "core.version", "params": [1, 2], "id": 1}', -32602),
        (b'{"jsonrpc": "2.0", "method": "NaN", "params": [NaN], "id": 1}', -32700),
        (b"[" * 100_000, -32700),
    ]
    for body, code in cases:
        status, headers, data = await asyncio.to_thread(http_post, url, body)
        text = data.decode(errors="replace")
        assert not any(m in text for m in TRACEBACK_MARKERS), text[:500]
        answer = json.loads(data)
        assert answer["jsonrpc"] == "2.0" and "result" not in answer, answer
        assert answer["error"]["code"] == code, (body[:60], answer)
        assert status in (200, 400), status
        assert headers.get("Content-Type", "").startswith("application/json")
    # a batch: answers for the calls, none for the notification
    batch = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "core.version", "id": "a"},
            {"jsonrpc": "2.0", "method": "log.level"},
            {"jsonrpc": "2.0", "method": "nope", "id": "b"},
            17,
        ]
    ).encode()
    _, _, data = http_post(url, batch)
    answers = json.loads(data)
    assert [x.get("id") for x in answers] == ["a", "b", None]
    assert answers[0]["result"].startswith("sipsca ")
    assert answers[1]["error"]["code"] == -32601 and answers[2]["error"]["code"] == -32600
    status, _, data = http_post(url, b'{"jsonrpc": "2.0", "method": "core.version"}')
    assert (status, data) == (204, b"")
    status, _, data = http_post(url, b" " * (2 << 20))
    assert status == 413 and json.loads(data)["error"]["code"] == 413
    status, _ = http_get(url)
    assert status == 405
    assert "Traceback" not in srv.log_text()


async def test_bearer_token(
    make_database: Callable[[str], Database], ops_server: Callable[..., OpsServer], tmp_path: Any
) -> None:
    token = "t0ken-" + "x" * 20
    srv = ops_server(make_database("sqlite"), {"rpc": {"token": token}})
    url = rpc_url(srv)
    body = b'{"jsonrpc": "2.0", "method": "core.version", "id": 1}'
    for bad in (None, "wrong", token + "x", ""):
        status, headers, data = http_post(url, body, token=bad)
        assert status == 401, (bad, status)
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert json.loads(data)["error"] == {
            "code": 401,
            "message": "Unauthorized: missing or wrong bearer token",
        }
    status, _, data = http_post(url, body, token=token)
    assert status == 200 and json.loads(data)["result"].startswith("sipsca ")
    assert http_get(url.replace("/RPC", "/metrics"))[0] == 401
    assert http_get(url.replace("/RPC", "/metrics"), token=token)[0] == 200

    p = rpc_cli(srv, "core.version")
    assert p.returncode == 1
    assert p.stderr.strip() == "error: 401 - Unauthorized: missing or wrong bearer token"
    p = rpc_cli(srv, "core.version", token=token)
    assert p.returncode == 0 and p.stdout.startswith("sipsca ")
    # URL and token taken from the server's own config file
    p = cli("rpc", "--config", str(srv.config_path), "core.version")
    assert p.returncode == 1  # the file has no [rpc] listen: default URL, nobody there
    config = write_config(
        tmp_path / "client.toml", {"rpc": {"listen": f"127.0.0.1:{srv.rpc_port}", "token": token}}
    )
    p = cli("rpc", "--config", str(config), "--json", "core.version")
    assert p.returncode == 0 and json.loads(p.stdout).startswith("sipsca ")


def test_non_loopback_rpc_needs_a_token(
    make_database: Callable[[str], Database], ops_server: Callable[..., OpsServer]
) -> None:
    """Nothing is bound on a non-loopback address: the start is refused first."""
    srv = ops_server(make_database("sqlite"), start=False)
    port = free_port(socket.SOCK_STREAM, None)
    srv.command = (
        lambda: [  # type: ignore[method-assign]
            *OpsServer.command(srv)[:-6],
            "--rpc-listen",
            f"0.0.0.0:{port}",
            "--log-level",
            "INFO",
            "--config",
            str(srv.config_path),
        ]
    )
    with pytest.raises(RuntimeError, match="exited with 2") as exc:
        srv.start(timeout=10)
    srv.proc = None  # exited as it should; nothing to stop at teardown
    assert f"rpc.listen 0.0.0.0:{port} is not loopback: set rpc.token" in str(exc.value)


def test_cli_without_a_server() -> None:
    port = free_port(socket.SOCK_STREAM, None)
    for extra in ([], ["--json"]):
        start = time.monotonic()
        p = cli("rpc", "--url", f"http://127.0.0.1:{port}/RPC", *extra, "sca.all_appearances")
        assert time.monotonic() - start < 10
        assert p.returncode == 1 and p.stdout == ""
        assert p.stderr.startswith(f"error: cannot reach sipsca RPC at http://127.0.0.1:{port}/RPC")
        assert "Traceback" not in p.stderr
