"""JSON-RPC 2.0 envelope handling, independent of HTTP and of the method table.

Kept apart from :mod:`sipsca.rpc.methods` so the protocol rules (parse errors, invalid request
objects, batches, notifications, error shapes) are written and tested once, whatever methods
exist. Responses use Kamailio's jsonrpcs shapes: ``{"jsonrpc": "2.0", "result": ..., "id": ...}``
and ``{"jsonrpc": "2.0", "error": {"code": ..., "message": ...}, "id": ...}``.

A response never carries a traceback: unexpected exceptions are logged here and answered with
-32603 ``Internal error``, because a stack trace tells an attacker more than it helps an operator
who has the log anyway.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Final, NotRequired, TypedDict

from sipsca.rpc.api import RpcFault, fault_of

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Call",
    "ErrorObject",
    "InvalidParams",
    "JsonRpcServer",
    "MethodNotFound",
    "RequestId",
    "Response",
    "dumps",
    "error_response",
    "to_json_value",
]

logger = logging.getLogger(__name__)

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

RequestId = str | int | float | None
"""What JSON-RPC 2.0 allows as ``id`` (a String, Number or Null)."""


class ErrorObject(TypedDict):
    code: int
    message: str


class Response(TypedDict):
    """One JSON-RPC response; exactly one of ``result`` / ``error`` is present."""

    jsonrpc: str
    result: NotRequired[object]
    error: NotRequired[ErrorObject]
    id: RequestId


class MethodNotFound(RpcFault):
    """-32601: no such method (Kamailio itself says ``command X not found``)."""

    def __init__(self, method: str) -> None:
        super().__init__(METHOD_NOT_FOUND, "Method not found")
        self.method = method


class InvalidParams(RpcFault):
    """-32602: the params are structurally wrong (sca.* use Kamailio's usage faults instead)."""

    def __init__(self, detail: str) -> None:
        super().__init__(INVALID_PARAMS, f"Invalid params: {detail}")


_MISSING: Final = object()


def error_response(code: int, message: str, request_id: RequestId = None) -> Response:
    """Build an error response (``id`` null when the request's id could not be read)."""
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


def to_json_value(value: object) -> object:
    """Turn a method's result into plain JSON types.

    Backends return dataclass-free but not always JSON-clean values (tuples, enums, ``inf``);
    converting here means serialisation can never fail half-way through a response.
    Non-finite floats become null because JSON has no spelling for them.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return str(value)


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, strict (no NaN), as every response is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name: str) -> object:
    """``json.loads`` hook: NaN/Infinity are not JSON, so treat them as a parse error."""
    raise ValueError(f"invalid JSON constant {name}")


Call = Callable[[str, object], object]
"""``call(method, params)``: returns the result or raises a fault-shaped exception."""


class JsonRpcServer:
    """Turns a request body into a response body by calling ``call`` per request.

    Synchronous on purpose: every method is a quick in-memory operation on the event loop
    thread, and the SCA engine is not thread-safe, so there is nothing to gain from awaiting.
    """

    def __init__(self, call: Call) -> None:
        self._call = call

    def handle_body(self, body: bytes) -> bytes | None:
        """Answer a raw body; None means "send nothing" (only notifications were received)."""
        try:
            data = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError too
            return dumps(error_response(PARSE_ERROR, "Parse error"))
        if isinstance(data, list):
            if not data:
                return dumps(error_response(INVALID_REQUEST, "Invalid Request"))
            responses = [r for r in (self.handle_request(item) for item in data) if r is not None]
            return dumps(responses) if responses else None
        response = self.handle_request(data)
        return None if response is None else dumps(response)

    def handle_request(self, request: object) -> Response | None:
        """Answer one decoded request object; None for a valid notification."""
        if not isinstance(request, dict):
            return error_response(INVALID_REQUEST, "Invalid Request")
        raw_id = request.get("id", _MISSING)
        is_notification = raw_id is _MISSING
        request_id: RequestId = None
        if not is_notification:
            if raw_id is not None and (
                isinstance(raw_id, bool) or not isinstance(raw_id, str | int | float)
            ):
                return error_response(INVALID_REQUEST, "Invalid Request")
            request_id = raw_id
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            # An invalid request is answered even without an id (JSON-RPC 2.0 section 5).
            return error_response(INVALID_REQUEST, "Invalid Request", request_id)
        params = request.get("params")
        try:
            result = to_json_value(self._call(method, params))
        except Exception as exc:
            fault = fault_of(exc)
            if fault is None:
                logger.exception("rpc %s failed", method)
                fault = (INTERNAL_ERROR, "Internal error")
            elif is_notification:
                logger.info("rpc notification %s faulted: %s %s", method, *fault)
            if is_notification:
                return None
            return error_response(fault[0], fault[1], request_id)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": request_id}
