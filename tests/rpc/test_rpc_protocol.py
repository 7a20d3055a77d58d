"""JSON-RPC 2.0 envelope rules, the non-sca methods, HTTP routes and bearer-token security."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sipsca.rpc.api import fault_of
from sipsca.rpc.app import MAX_BODY
from sipsca.rpc.methods import METHODS

from .conftest import TOKEN, Server
from .fakes import NOW

SCA_COMMANDS = {
    "sca.all_subscriptions", "sca.subscription_count", "sca.show_subscription",
    "sca.subscribers", "sca.deactivate_all_subscriptions", "sca.deactivate_subscription",
    "sca.all_appearances", "sca.show_appearance", "sca.seize_appearance",
    "sca.update_appearance", "sca.release_appearance",
}  # fmt: skip


async def raw(server: Server, body: bytes | str) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    response = await server.session.post(
        server.url, data=data, headers={"Content-Type": "application/json"}
    )
    text = await response.text()
    return response.status, json.loads(text) if text else None


# --- methods besides sca.* ----------------------------------------------------------------


async def test_core_version(server: Server) -> None:
    assert await server.result("core.version") == "sipsca 0.1.0"


async def test_core_uptime_kamailio_shape(server: Server) -> None:
    assert await server.result("core.uptime") == {
        "now": time.ctime(NOW),
        "up_since": time.ctime(NOW - 4242.7),
        "uptime": 4242,
    }


async def test_registrar_bindings_and_ul_dump(server: Server) -> None:
    bindings = await server.result("registrar.bindings")
    assert bindings == server.backend.bindings()
    assert await server.result("ul.dump") == bindings


async def test_stats(server: Server) -> None:
    everything = {
        "core:broken": None,  # NaN has no JSON spelling
        "core:load": 0.25,
        "core:rcv_requests": 10,
        "registrar.bindings": 2,
        "sca:appearances": 1,
        "sca:subscriptions": 2,
    }
    assert await server.result("stats") == everything
    assert await server.result("stats.get_statistics", "all") == everything
    assert await server.result("stats.get_statistics", "sca:") == {
        "sca:appearances": 1,
        "sca:subscriptions": 2,
    }
    assert await server.result("stats", "sca") == {"sca:appearances": 1, "sca:subscriptions": 2}
    assert await server.result("stats", "core:load", "nope") == {"core:load": 0.25}
    assert await server.result("stats", "registrar.", "core:load") == {
        "core:load": 0.25,
        "registrar.bindings": 2,
    }
    assert await server.result("stats", "registrar") == {"registrar.bindings": 2}


async def test_log_level(server: Server) -> None:
    assert await server.result("log.level") == "INFO"
    assert await server.result("log.set_level", "debug") == "DEBUG"
    assert await server.result("log.level") == "DEBUG"
    code, message = await server.fault("log.set_level", "LOUD")
    assert code == -32602
    assert "LOUD" in message
    assert (await server.fault("log.set_level"))[0] == -32602


async def test_list_methods_and_help(server: Server) -> None:
    methods = await server.result("system.listMethods")
    assert methods == sorted(methods)
    assert set(methods) >= SCA_COMMANDS
    assert set(methods) >= {
        "core.version", "core.uptime", "ul.dump", "registrar.bindings", "stats",
        "stats.get_statistics", "log.level", "log.set_level", "system.listMethods",
    }  # fmt: skip
    assert set(methods) == set(METHODS)
    assert "appearance" in await server.result("system.methodHelp", "sca.seize_appearance")
    assert (await server.fault("system.methodHelp", "nope"))[0] == -32601


# --- envelope ---------------------------------------------------------------------------


async def test_unknown_method(server: Server) -> None:
    assert await server.fault("sca.show_subscribers") == (-32601, "Method not found")


@pytest.mark.parametrize("body", ['{"jsonrpc": "2.0", "method": ', "not json", "\xff", "NaN", ""])
async def test_parse_error(server: Server, body: str) -> None:
    data = b"\xff\xfe{" if body == "\xff" else body
    assert await raw(server, data) == (
        200,
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    )


@pytest.mark.parametrize(
    ("request_obj", "answer_id"),
    [
        (1, None),
        ("sca.all_appearances", None),
        ({"method": "core.version", "id": 3}, 3),  # no "jsonrpc": "2.0"
        ({"jsonrpc": "1.0", "method": "core.version", "id": 3}, 3),
        ({"jsonrpc": "2.0", "method": 5, "id": "x"}, "x"),
        ({"jsonrpc": "2.0", "id": 4}, 4),
        ({"jsonrpc": "2.0", "method": "core.version", "id": True}, None),
        ({"jsonrpc": "2.0", "method": "core.version", "id": {"a": 1}}, None),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),  # answered despite no id
    ],
)
async def test_invalid_request(server: Server, request_obj: object, answer_id: object) -> None:
    assert await raw(server, json.dumps(request_obj)) == (
        200,
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},
         "id": answer_id},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("core.version", "oops"),
        ("core.version", 3),
        ("core.version", ["extra"]),
        ("sca.subscription_count", {"evnt": "call-info"}),
        ("log.set_level", [1.5]),
    ],
)
async def test_invalid_params(server: Server, method: str, params: object) -> None:
    status, body = await raw(
        server, json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 9})
    )
    assert status == 200
    assert body["id"] == 9
    assert body["error"]["code"] == -32602
    assert body["error"]["message"].startswith("Invalid params")


async def test_ids_are_echoed(server: Server) -> None:
    for request_id in ["abc", 0, -5, None, 2.5]:
        status, body = await raw(
            server, json.dumps({"jsonrpc": "2.0", "method": "core.version", "id": request_id})
        )
        assert status == 200
        assert body == {"jsonrpc": "2.0", "result": "sipsca 0.1.0", "id": request_id}


async def test_notification_gets_no_reply_but_runs(server: Server) -> None:
    response = await server.post(
        {"jsonrpc": "2.0", "method": "sca.seize_appearance",
         "params": ["sip:215@127.0.0.1", "sip:215@127.0.0.1:5081"]}
    )  # fmt: skip
    assert response.status == 204
    assert await response.read() == b""
    assert 1 in server.backend.sca.lines["sip:215@127.0.0.1"]
    assert server.backend.after_change_calls == 1
    # Faulting notifications are not answered either.
    response = await server.post({"jsonrpc": "2.0", "method": "nope"})
    assert response.status == 204


async def test_batch(server: Server) -> None:
    status, body = await raw(
        server,
        json.dumps(
            [
                {"jsonrpc": "2.0", "method": "sca.subscription_count", "params": ["call-info"],
                 "id": 1},
                {"jsonrpc": "2.0", "method": "sca.seize_appearance",
                 "params": ["sip:215@127.0.0.1", "sip:215@127.0.0.1:5081"]},
                {"jsonrpc": "2.0", "method": "sca.release_appearance", "params": ["x"], "id": 2},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "nope", "id": "3"},
                {"jsonrpc": "2.0", "method": "sca.all_appearances", "id": 4},
            ]
        ),
    )  # fmt: skip
    assert status == 200
    assert body == [
        {"jsonrpc": "2.0", "result": ["2 call-info"], "id": 1},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": 500,
         "message": "usage: sca.release_appearance user@domain appearance-index"}},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "3"},
        {"jsonrpc": "2.0", "id": 4, "result": [
            f"sip:215@127.0.0.1 1 seized {int(NOW)} sip:215@127.0.0.1:5081"]},
    ]  # fmt: skip


async def test_batch_edge_cases(server: Server) -> None:
    assert await raw(server, "[]") == (
        200,
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    )
    status, body = await raw(server, "[1, 2]")
    assert status == 200
    assert [b["error"]["code"] for b in body] == [-32600, -32600]
    notifications = json.dumps([{"jsonrpc": "2.0", "method": "core.version"}] * 2)
    assert await raw(server, notifications) == (204, None)


async def test_internal_error_hides_the_exception(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.backend.sca.explode = True
    response = await server.post({"jsonrpc": "2.0", "method": "sca.all_appearances", "id": 1})
    text = await response.text()
    assert json.loads(text) == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": 1,
    }
    assert "secret" not in text
    assert "Traceback" not in text
    assert "secret internal detail" in caplog.text  # but the operator's log has it


async def test_body_too_large(server: Server) -> None:
    big = json.dumps({"jsonrpc": "2.0", "method": "core.version", "id": 1, "pad": "x" * (1 << 20)})
    status, body = await raw(server, big)
    assert status == 413
    assert body["error"]["code"] == 413
    assert "too large" in body["error"]["message"]


async def test_chunked_body_too_large(server: Server) -> None:
    """Without Content-Length the limit is enforced while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0", "method": "core.version", "id": 1, "pad": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = await server.session.post(server.url, data=chunks())
    assert response.status == 413
    assert (await response.json())["error"]["code"] == 413


async def test_body_at_the_limit_is_accepted(server: Server) -> None:
    head = b'{"jsonrpc": "2.0", "method": "core.version", "id": 1, "pad": "'
    body = head + b"x" * (MAX_BODY - len(head) - 2) + b'"}'
    assert len(body) == MAX_BODY
    status, answer = await raw(server, body)
    assert (status, answer["result"]) == (200, "sipsca 0.1.0")


# --- HTTP routes --------------------------------------------------------------------------


async def test_root_alias_health_and_methods(server: Server) -> None:
    response = await server.session.post(
        server.base + "/", json={"jsonrpc": "2.0", "method": "core.version", "id": 1}
    )
    assert (await response.json())["result"] == "sipsca 0.1.0"
    response = await server.session.get(server.base + "/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    response = await server.session.get(server.url)
    assert response.status == 405


# --- security -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", TOKEN])
async def test_token_refused(secured: Server, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [("POST", "/RPC"), ("POST", "/"), ("GET", "/metrics"),
                         ("GET", "/health")]:  # fmt: skip
        response = await secured.session.request(
            method,
            secured.base + path,
            json={"jsonrpc": "2.0", "method": "sca.deactivate_all_subscriptions", "id": 1},
            headers=headers,
        )
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"]["code"] == 401
        assert body["error"]["message"].startswith("Unauthorized")
    assert secured.backend.after_change_calls == 0  # nothing ran


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_token_accepted(secured: Server, scheme: str) -> None:
    response = await secured.session.post(
        secured.url,
        json={"jsonrpc": "2.0", "method": "core.version", "id": 1},
        headers={"Authorization": f"{scheme} {TOKEN}"},
    )
    assert response.status == 200
    assert (await response.json())["result"] == "sipsca 0.1.0"
    response = await secured.session.get(
        secured.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200


def test_the_engines_fault_class_is_recognised() -> None:
    """The contract with ``sipsca.sca.rpc.ScaRpcError`` is its shape (code + message)."""
    sca_rpc = pytest.importorskip("sipsca.sca.rpc")
    assert fault_of(sca_rpc.ScaRpcError(500, "No appearances for x")) == (
        500,
        "No appearances for x",
    )
    assert fault_of(ValueError("plain")) is None
