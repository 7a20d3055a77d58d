"""SIP requests and responses (RFC 3261 7).

Messages are mutable because a proxy edits them in place (Via, Route, Max-Forwards);
typed accessors parse lazily and cache per raw header value, so forwarding a message
never parses headers nobody reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sipsca.errors import RemoteProtocolError
from sipsca.sip.fields import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via, split_values
from sipsca.sip.headers import Headers, canonical_key
from sipsca.sip.status import reason_phrase
from sipsca.sip.uri import SipUri, parse_uri

__all__ = ["SipMessage", "SipRequest", "SipResponse", "make_response"]

_T = TypeVar("_T")


class SipMessage:
    """Fields shared by requests and responses."""

    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cache: dict[str, tuple[str, Any]] = {}

    def _typed(self, name: str, parse: Callable[[str], _T]) -> _T | None:
        raw = self.headers.get(name)
        if raw is None:
            return None
        hit = self._cache.get(name)
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[no-any-return]
        value = parse(raw)
        self._cache[name] = (raw, value)
        return value

    def _required(self, name: str, parse: Callable[[str], _T]) -> _T:
        value = self._typed(name, parse)
        if value is None:
            raise RemoteProtocolError(f"Missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if not value or not value.strip():
            raise RemoteProtocolError("Missing Call-ID header")
        return value.strip()

    @property
    def cseq(self) -> CSeq:
        return self._required("cseq", parse_cseq)

    @property
    def from_(self) -> NameAddr:
        return self._required("from", lambda v: parse_name_addr(v, "From"))

    @property
    def to(self) -> NameAddr:
        return self._required("to", lambda v: parse_name_addr(v, "To"))

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("via")]

    @property
    def top_via(self) -> Via:
        raw = self.headers.get("via")
        if raw is None:
            raise RemoteProtocolError("Missing Via header")
        hit = self._cache.get("_top_via")
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[no-any-return]
        first = split_values(raw)
        if not first:
            raise RemoteProtocolError("Empty Via header")
        via = parse_via(first[0])
        self._cache["_top_via"] = (raw, via)
        return via

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; a ``*`` contact is returned as a NameAddr with uri_text ``*``."""
        out = []
        for value in self.headers.values("contact"):
            if value.strip() == "*":
                out.append(NameAddr(display="", uri_text="*", bracketed=False))
            else:
                out.append(parse_name_addr(value, "Contact"))
        return out

    @property
    def max_forwards(self) -> int | None:
        return self._typed("max-forwards", lambda v: _parse_uint(v, "Max-Forwards", 255))

    @property
    def expires(self) -> int | None:
        return self._typed("expires", lambda v: _parse_uint(v, "Expires", 2**32 - 1))

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    @property
    def event(self) -> str | None:
        """Event package name without parameters (RFC 6665 7.2.1), lower-cased."""
        value = self.headers.get("event")
        return None if value is None else value.split(";")[0].strip().lower()

    def route_set(self, name: str = "record-route") -> list[str]:
        return self.headers.values(name)

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise with a Content-Length that matches the body."""
        length = str(len(self.body))
        if self.headers.get("content-length") != length:
            self.headers.set("Content-Length", length)
        out = [self._start_line()]
        self.headers.encode_into(out)
        out.append("\r\n")
        return "".join(out).encode("utf-8", "surrogateescape") + self.body


class SipRequest(SipMessage):
    """A request; ``uri`` is the Request-URI text, :attr:`ruri` its parsed form."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @property
    def ruri(self) -> SipUri:
        hit = self._cache.get("_ruri")
        if hit is not None and hit[0] is self.uri:
            return hit[1]  # type: ignore[no-any-return]
        value = parse_uri(self.uri)
        self._cache["_ruri"] = (self.uri, value)
        return value

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0\r\n"

    def copy(self) -> SipRequest:
        return SipRequest(self.method, self.uri, self.headers.copy(), self.body)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A response; ``status`` 100-699."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}\r\n"

    def copy(self) -> SipResponse:
        return SipResponse(self.status, self.reason, self.headers.copy(), self.body)

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


_RESPONSE_COPIED = ("via", "from", "to", "call-id", "cseq")


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 8.2.6.2): Via/From/To/Call-ID/CSeq copied.

    ``to_tag`` is added to To when the request had none (never for 100 Trying).
    """
    items: list[list[str]] = []
    for item in request.headers._items:
        if item[0] in _RESPONSE_COPIED:
            items.append(list(item))
            if item[0] == "to" and to_tag and status > 100 and ";tag=" not in item[2].replace(" ", "").lower():
                items[-1][2] = item[2].rstrip() + f";tag={to_tag}"
    headers = Headers(items)
    for name, value in extra or ():
        headers.add(name, value)
    return SipResponse(status, reason, headers, body)


def _parse_uint(value: str, header: str, maximum: int) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) > maximum:
        raise RemoteProtocolError(f"Malformed {header} header")
    return int(text)


def header_key(name: str) -> str:
    return canonical_key(name)
