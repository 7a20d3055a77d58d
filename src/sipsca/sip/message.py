"""SIP requests and responses (RFC 3261 7).

Messages are mutable because a proxy edits them in place (Via, Route, Max-Forwards);
typed accessors parse lazily and cache per raw header value, so forwarding a message
never parses headers nobody reads.

Accessors raise :class:`RemoteProtocolError` when the header they read is missing or
malformed. On a request its ``status_hint`` is the answer to send (400); on a response it is
0, because a broken response is dropped, never answered (RFC 3261 17.1.3 / 18.1.2).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from sipsca.errors import RemoteProtocolError
from sipsca.sip.fields import (
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_date,
    parse_name_addr,
    parse_uint,
    parse_via,
    split_values,
)
from sipsca.sip.headers import Headers, canonical_key
from sipsca.sip.status import reason_phrase
from sipsca.sip.uri import SipUri, parse_uri

__all__ = ["SipMessage", "SipRequest", "SipResponse", "make_response", "response_bytes"]

_T = TypeVar("_T")

_STAR = NameAddr(display="", uri_text="*", bracketed=False)


def _parse_from(value: str) -> NameAddr:
    return parse_name_addr(value, "From")


def _parse_to(value: str) -> NameAddr:
    return parse_name_addr(value, "To")


def _parse_max_forwards(value: str) -> int:
    # RFC 3261 20.22: Max-Forwards = 1*DIGIT, 0-255 (RFC 4475 3.1.2.4 sends 300).
    return parse_uint(value, 255, "Max-Forwards")


def _parse_expires(value: str) -> int:
    # RFC 3261 20.19: delta-seconds, at most 2**32-1 (RFC 4475 3.1.2.4 sends 10**100).
    return parse_uint(value, 2**32 - 1, "Expires")


def _parse_contacts(values: list[str]) -> list[NameAddr]:
    out = []
    for value in values:
        if value == "*":
            out.append(_STAR)
        else:
            out.append(parse_name_addr(value, "Contact"))
    return out


class SipMessage:
    """Fields shared by requests and responses."""

    __slots__ = ("_cache", "body", "headers")

    #: status_hint of the RemoteProtocolError raised by accessors (0 = drop, responses).
    _error_hint = 400

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cache: dict[str, tuple[Any, ...]] = {}

    def _typed(self, name: str, parse: Callable[[str], _T]) -> _T | None:
        """Parse the first ``name`` field (``name``: a lookup key, e.g. ``"cseq"``), cached."""
        headers = self.headers
        keys = headers._keys
        if name not in keys:
            return None
        raw = headers._fields[keys.index(name)][1]
        hit = self._cache.get(name)
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[no-any-return]
        try:
            value = parse(raw)
        except RemoteProtocolError as exc:
            raise self._error(exc) from None
        self._cache[name] = (raw, value)
        return value

    def _missing(self, header: str) -> NoReturn:
        """Raise for a missing mandatory header: ``self._typed(...) or self._missing(...)``
        (parsed values are dataclass instances, always true)."""
        raise RemoteProtocolError(f"Missing {header} header", status_hint=self._error_hint)

    def _typed_list(self, name: str, parse: Callable[[list[str]], _T]) -> _T:
        raws = tuple(self.headers.get_all(name))
        key = "*" + name
        hit = self._cache.get(key)
        if hit is not None and hit[0] == raws:
            return hit[1]  # type: ignore[no-any-return]
        values: list[str] = []
        for raw in raws:
            values.extend(split_values(raw))
        try:
            value = parse(values)
        except RemoteProtocolError as exc:
            raise self._error(exc) from None
        self._cache[key] = (raws, value)
        return value

    def _error(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        if self._error_hint == 0 and exc.status_hint != 0:
            return RemoteProtocolError(exc.reason, status_hint=0)
        return exc

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 20.8), white space stripped."""
        value = (self.headers.get("call-id") or "").strip(" \t")
        if not value:
            raise RemoteProtocolError("Missing Call-ID header", status_hint=self._error_hint)
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq (RFC 3261 20.16); number below 2**31."""
        return self._typed("cseq", parse_cseq) or self._missing("CSeq")

    @property
    def from_(self) -> NameAddr:
        """The From header (RFC 3261 20.20)."""
        return self._typed("from", _parse_from) or self._missing("From")

    @property
    def to(self) -> NameAddr:
        """The To header (RFC 3261 20.39)."""
        return self._typed("to", _parse_to) or self._missing("To")

    @property
    def from_tag(self) -> str | None:
        """The From tag, None for RFC 2543 peers that send none (RFC 4475 3.4.1)."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag; None outside a dialog."""
        return self.to.tag

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first, across all Via field lines."""
        return list(self._typed_list("via", self._parse_vias))

    def _parse_vias(self, values: list[str]) -> list[Via]:
        # The top value is usually parsed already (transaction matching, received/rport
        # stamping): its Via is reused rather than the same text parsed again.
        top = self._cache.get("_top_via")
        vias: list[Via] = []
        for value in values:
            if not vias and top is not None and value == top[2]:
                vias.append(top[1])
            else:
                vias.append(parse_via(value))
        return vias

    @property
    def top_via(self) -> Via:
        """The topmost Via (RFC 3261 8.2.6.2, 17.2.3 transaction matching)."""
        raw = self.headers.get("via")
        if raw is None:
            raise RemoteProtocolError("Missing Via header", status_hint=self._error_hint)
        hit = self._cache.get("_top_via")
        if hit is not None and hit[0] is raw:
            return hit[1]  # type: ignore[no-any-return]
        first = split_values(raw)
        if not first:
            raise RemoteProtocolError("Empty Via header", status_hint=self._error_hint)
        try:
            via = parse_via(first[0])
        except RemoteProtocolError as exc:
            raise self._error(exc) from None
        self._cache["_top_via"] = (raw, via, first[0])  # field, its top Via, the Via's text
        return via

    def replace_top_via(self, via: Via) -> None:
        """Replace the topmost Via value by ``via`` (``received``/``rport`` stamped on receipt,
        RFC 3261 18.2.1); :attr:`top_via` then returns ``via`` without parsing it again."""
        value = str(via)
        self.headers.pop_first_value("via")
        self.headers.prepend("Via", value)
        self._cache["_top_via"] = (value, via, value)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; a ``*`` contact is returned as a NameAddr with uri_text ``*``."""
        return list(self._typed_list("contact", _parse_contacts))

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255), None when absent (RFC 2543 peers, RFC 4475 3.4.1)."""
        return self._typed("max-forwards", _parse_max_forwards)

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds, None when absent."""
        return self._typed("expires", _parse_expires)

    @property
    def date(self) -> datetime | None:
        """The Date header as an aware UTC datetime, None when absent (RFC 3261 20.17)."""
        return self._typed("date", parse_date)

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower-cased; ``''`` when absent."""
        return (self.headers.get("content-type") or "").split(";")[0].strip(" \t").lower()

    @property
    def event(self) -> str | None:
        """Event package name without parameters (RFC 6665 7.2.1), lower-cased."""
        value = self.headers.get("event")
        return None if value is None else value.split(";")[0].strip(" \t").lower()

    def route_set(self, name: str = "record-route") -> list[str]:
        """Raw values of ``name`` (Record-Route by default, or Route), in order."""
        return self.headers.values(name)

    def _start_line(self) -> str:
        raise NotImplementedError

    def copy(self) -> SipMessage:
        """An independent copy (headers copied; body bytes shared, they are immutable)."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise with a Content-Length that matches the body.

        Fields that were not changed since parsing are written exactly as received.
        """
        length = str(len(self.body))
        headers = self.headers
        if headers.get("content-length") != length:
            headers.set("Content-Length", length)
        lines = [self._start_line()]
        lines += headers.lines()
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class SipRequest(SipMessage):
    """A request; ``uri`` is the Request-URI text, :attr:`ruri` its parsed form."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @classmethod
    def _parsed(cls, method: str, uri: str, headers: Headers, body: bytes) -> SipRequest:
        """The parser's fast path: fields are already checked, skip ``__init__``."""
        self = cls.__new__(cls)
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self._cache = {}
        return self

    @property
    def ruri(self) -> SipUri:
        """The parsed Request-URI (RemoteProtocolError 400 when malformed)."""
        hit = self._cache.get("_ruri")
        if hit is not None and hit[0] is self.uri:
            return hit[1]  # type: ignore[no-any-return]
        value = parse_uri(self.uri)
        self._cache["_ruri"] = (self.uri, value)
        return value

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def copy(self) -> SipRequest:
        """An independent copy (headers copied; body bytes shared, they are immutable)."""
        copy = SipRequest._parsed(self.method, self.uri, self.headers.copy(), self.body)
        copy._cache = dict(self._cache)  # entries are checked against the raw text they came from
        return copy

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A response; ``status`` 100-699."""

    __slots__ = ("reason", "status")

    _error_hint = 0

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason

    @classmethod
    def _parsed(cls, status: int, reason: str, headers: Headers, body: bytes) -> SipResponse:
        """The parser's fast path: fields are already checked, skip ``__init__``."""
        self = cls.__new__(cls)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self._cache = {}
        return self

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> SipResponse:
        """An independent copy (headers copied; body bytes shared, they are immutable)."""
        copy = SipResponse._parsed(self.status, self.reason, self.headers.copy(), self.body)
        copy._cache = dict(self._cache)  # entries are checked against the raw text they came from
        return copy

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


_RESPONSE_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))
# RFC 3261 12.1.1: a UAS copies Record-Route into a dialog-creating 18x/2xx; Kamailio's
# replies copy it into every 180-299 (build_res_buf_from_sip_req), so do we.
_DIALOG_RESPONSE_COPIED = _RESPONSE_COPIED | {"record-route"}


def _copied(status: int) -> frozenset[str]:
    return _DIALOG_RESPONSE_COPIED if 180 <= status < 300 else _RESPONSE_COPIED


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 8.2.6.2): Via/From/To/Call-ID/CSeq copied,
    and Record-Route too for 180-299 (12.1.1).

    ``to_tag`` is added to To when the request had none (never for 100 Trying). The copied
    fields keep their received text, so Via values go back byte for byte (17.1.3 matching).
    """
    src = request.headers
    copied = _copied(status)
    keys: list[str] = []
    fields = []
    for key, fld in zip(src._keys, src._fields, strict=True):
        if key in copied:
            if (
                key == "to"
                and to_tag
                and status > 100
                and ";tag=" not in fld[1].replace(" ", "").lower()
            ):
                fld = (fld[0], fld[1].rstrip() + f";tag={to_tag}", None)
            keys.append(key)
            fields.append(fld)
    headers = Headers._parsed(keys, fields)
    for name, value in extra or ():
        headers.add(name, value)
    return SipResponse(status, reason, headers, body)


def response_bytes(
    request: SipRequest, status: int, reason: str, *, to_tag: str | None, tail: str = ""
) -> bytes:
    """The wire bytes of :func:`make_response` without building a response object.

    For the stateless fast paths (OPTIONS pings, overload 503s), which never look at the
    response again: Via/From/To/Call-ID/CSeq (and Record-Route for 180-299) exactly as
    received (To gets ``to_tag`` when it has none), then ``tail`` (complete
    ``"Name: value\r\n"`` lines) and an empty body.
    """
    out = [f"SIP/2.0 {status} {reason}\r\n"]
    src = request.headers
    copied = _copied(status)
    for key, (name, value, raw) in zip(src._keys, src._fields, strict=True):
        if key in copied:
            if (
                key == "to"
                and to_tag
                and status > 100
                and ";tag=" not in value.replace(" ", "").lower()
            ):
                out.append(f"{name}: {value.rstrip()};tag={to_tag}\r\n")
            else:
                out.append((raw if raw is not None else f"{name}: {value}") + "\r\n")
    out.append(tail)
    out.append("Content-Length: 0\r\n\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def header_key(name: str) -> str:
    """Lookup key of a header name (kept for callers of the first API)."""
    return canonical_key(name)
