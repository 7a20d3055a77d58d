"""Bytes to messages: datagram parsing and stream framing (RFC 3261 7, 18.3).

Only :class:`RemoteProtocolError` ever escapes (with the status a server should answer),
whatever the input; hard limits bound memory per message and per connection.

Speed matters here (every datagram goes through it), so the common case runs on C-level
string operations: the head is decoded once, split once on CRLF, and each line is cut with
``str.partition`` and looked up in a cache of known header names. Only messages with
folded lines, bare LFs or unusual names take the slower general path. Header *values* are
not interpreted at all: the typed accessors of :mod:`sipsca.sip.message` do that on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError
from sipsca.sip.headers import _NAME_CACHE, Field, Headers, name_info
from sipsca.sip.message import SipMessage, SipRequest, SipResponse

__all__ = ["DEFAULT_LIMITS", "ParserLimits", "StreamFramer", "parse_message"]

# RFC 3261 25.1: Method = INVITEm / ACKm / ... / extension-method; extension-method = token
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_KNOWN_METHODS = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)
# RFC 3261 7.1: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (case-insensitive).
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
# A blank line ending the head when bare LFs are used (tolerated, RFC 3261 7.5 asks CRLF).
_LENIENT_END_RE = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Hard limits.

    65,535 bytes is the largest UDP payload; PJSIP and Kamailio use the same order of
    magnitude (PJSIP_MAX_PKT_LEN 4000..64k, Kamailio BUF_SIZE 65535). Too large gives
    513 Message Too Large (RFC 3261 21.5.14); too many headers or too long a line give 400.
    """

    max_message_size: int = 65535
    """Largest message, head and body, in bytes."""
    max_headers: int = 256
    """Most header fields (logical lines, after unfolding) in one message."""
    max_line_length: int = 8192
    """Longest physical line of the head, in characters, CRLF excluded."""


DEFAULT_LIMITS = ParserLimits()


def _is_utf8(text: str) -> bool:
    """``text`` came from valid UTF-8 (no ``surrogateescape`` stand-ins for bad bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_message(
    data: bytes, limits: ParserLimits = DEFAULT_LIMITS, *, stream: bool = False
) -> SipMessage:
    """Parse one complete SIP message.

    For datagrams, bytes beyond Content-Length are ignored (RFC 3261 18.3, RFC 4475 3.1.1.8)
    and a body shorter than Content-Length is an error (3.1.2.2); without Content-Length the
    body is the rest of the datagram (RFC 2543 peers, RFC 4475 3.4.1). With ``stream=True``
    (a message cut by :class:`StreamFramer`) Content-Length is mandatory (RFC 3261 20.14).

    The Request-Line must be ``Method SP Request-URI SP SIP-Version`` with single spaces
    (RFC 3261 7.1; RFC 4475 3.1.2.8-10 are rejected rather than repaired, so they are never
    forwarded), the Request-URI must not be in ``<>`` (3.1.2.7) and a SIP Request-URI must not
    carry ``?headers`` (RFC 3261 19.1.5, RFC 4475 3.1.2.11).

    Raises:
        RemoteProtocolError: malformed message; ``status_hint`` says what to answer
            (400, 505, 513), or 0 when the message is a response (never answered).
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > limits.max_message_size:
        raise RemoteProtocolError(
            "Message Too Large", status_hint=0 if data[:4].upper() == b"SIP/" else 513
        )
    if not data or data[0] == 13 or data[0] == 10:
        # RFC 3261 7.5: CRLFs before the start-line are ignored.
        data = data.lstrip(b"\r\n")
        if not data:
            raise RemoteProtocolError("Empty message", status_hint=0)
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        text = data[:sep].decode("utf-8", "surrogateescape")
        body_start = sep + 4
    elif stream:
        raise RemoteProtocolError("Incomplete message: no end of headers")
    else:
        # RFC 4475 A.1 ships baddn.dat without the blank line; a datagram is complete anyway.
        text = data.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        body_start = len(data)
    lines = text.split("\r\n")
    breaks = len(lines) - 1
    hint = 0 if text[:4].upper() == "SIP/" else 400
    if not text.isascii() and not _is_utf8(text):
        # RFC 3261 7.3.1: header text is UTF-8; these bytes could be neither stored (the
        # database writer refused every row after them) nor shown
        raise RemoteProtocolError("Invalid UTF-8 in the header section", status_hint=hint)
    if text.count("\n") != breaks or text.count("\r") != breaks:
        text, lines, body_start = _lenient_head(data, stream, hint)
    start = lines[0]
    if hint == 0:
        status, reason = _parse_status_line(start)
    else:
        method, uri = _parse_request_line(start)
    if len(text) > limits.max_line_length:
        for line in lines:
            if len(line) > limits.max_line_length:
                raise RemoteProtocolError("Header line too long", status_hint=hint)
    parsed = _parse_fields(lines, hint) if len(lines) <= limits.max_headers + 1 else None
    keys, fields = parsed if parsed is not None else _parse_folded_fields(lines, hint)
    if len(keys) > limits.max_headers:
        raise RemoteProtocolError("Too many headers", status_hint=hint)

    if "content-length" in keys:
        index = keys.index("content-length")
        if keys.count("content-length") > 1:
            # RFC 4475 3.3.9: the body length cannot be known.
            raise RemoteProtocolError("Multiple Content-Length headers", status_hint=hint)
        clen = _content_length(fields[index][1], hint)
        available = len(data) - body_start
        if clen > available:
            raise RemoteProtocolError(
                "Content-Length larger than the message body", status_hint=hint
            )
        body = data[body_start : body_start + clen] if clen < available else data[body_start:]
    elif stream:
        raise RemoteProtocolError("Missing Content-Length on a stream transport", status_hint=hint)
    else:
        body = data[body_start:]

    headers = Headers._parsed(keys, fields)
    if hint == 0:
        return SipResponse._parsed(status, reason, headers, body)
    return SipRequest._parsed(method, uri, headers, body)


def _lenient_head(data: bytes, stream: bool, hint: int) -> tuple[str, list[str], int]:
    """Head text, lines and body offset for a head that uses bare LFs (or has a bare CR)."""
    m = _LENIENT_END_RE.search(data)
    if m is not None:
        head, body_start = data[: m.start()], m.end()
    elif stream:
        raise RemoteProtocolError("Incomplete message: no end of headers", status_hint=hint)
    else:
        head, body_start = data.rstrip(b"\r\n"), len(data)
    text = head.decode("utf-8", "surrogateescape")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    for line in lines:
        if "\r" in line:
            # A CR not followed by LF is no line end; forwarding it could split the field
            # in another parser (header injection), so it is refused.
            raise RemoteProtocolError("Bare CR in the header section", status_hint=hint)
    return "\n".join(lines), lines, body_start


def _parse_fields(lines: list[str], hint: int) -> tuple[list[str], list[Field]] | None:
    """Cut field lines (``lines[0]`` is the start line and is skipped).

    Returns None at the first continuation line, without raising: folding is rare, so it
    is detected here, on a name-cache miss, rather than by searching every head for it;
    the caller then runs :func:`_parse_folded_fields`.
    """
    keys: list[str] = []
    fields: list[Field] = []
    add_key = keys.append
    add_field = fields.append
    cache_get = _NAME_CACHE.get
    rest = iter(lines)
    next(rest)
    for line in rest:
        name, colon, value = line.partition(":")
        info = cache_get(name)
        if info is None or not colon:
            if line[:1] == " " or line[:1] == "\t":
                return None
            info = _field_name(name, colon, line, hint)
        key, wire_name = info
        add_key(key)
        add_field((wire_name, value.strip(" \t"), line))
    return keys, fields


def _parse_folded_fields(lines: list[str], hint: int) -> tuple[list[str], list[Field]]:
    """As :func:`_parse_fields`, joining continuation lines first.

    RFC 3261 7.3.1: a line starting with white space continues the previous field, and the
    fold (CRLF plus leading white space) is equivalent to a single SP. The raw text keeps
    the fold, so an unchanged field is forwarded exactly as received.
    """
    # Each logical field as its pieces: [first line, continuation, ...]; joined once at the end
    # so a field folded thousands of times still costs linear time.
    logical: list[list[str]] = []
    for i in range(1, len(lines)):
        line = lines[i]
        if line[:1] == " " or line[:1] == "\t":
            if not logical:
                raise RemoteProtocolError(
                    "Continuation line before the first header", status_hint=hint
                )
            logical[-1].append(line)
        else:
            logical.append([line])
    keys: list[str] = []
    fields: list[Field] = []
    for pieces in logical:
        if len(pieces) == 1:
            text = raw = pieces[0]
        else:
            folded = [p.strip(" \t") for p in pieces[1:]]
            text = " ".join([pieces[0].rstrip(" \t"), *(p for p in folded if p)])
            raw = "\r\n".join(pieces)
        name, colon, value = text.partition(":")
        info = _NAME_CACHE.get(name)
        if info is None or not colon:
            info = _field_name(name, colon, text, hint)
        keys.append(info[0])
        fields.append((info[1], value.strip(" \t"), raw))
    return keys, fields


def _field_name(name: str, colon: str, line: str, hint: int) -> tuple[str, str]:
    info = name_info(name) if colon else None
    if info is None:
        raise RemoteProtocolError(f"Malformed header line {line[:40]!r}", status_hint=hint)
    return info


def _content_length(value: str, hint: int) -> int:
    # RFC 3261 20.14: Content-Length = 1*DIGIT (RFC 4475 3.1.2.3 sends -999).
    if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > 10:
        raise RemoteProtocolError("Malformed Content-Length header", status_hint=hint)
    return int(value)


def _parse_status_line(start: str) -> tuple[int, str]:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; Status-Code = 3DIGIT
    if start[:8] != "SIP/2.0 " and start[:8].upper() != "SIP/2.0 ":
        version = start.partition(" ")[0]
        if _VERSION_RE.fullmatch(version):
            raise RemoteProtocolError("Version Not Supported", status_hint=0)
        raise RemoteProtocolError("Malformed status line", status_hint=0)
    code = start[8:11]
    after = start[11:12]
    if not (len(code) == 3 and code.isascii() and code.isdigit()) or (after and after != " "):
        # RFC 4475 3.1.2.19 sends 4294967301: drop it, never truncate it to 429.
        raise RemoteProtocolError("Malformed status code", status_hint=0)
    status = int(code)
    if status < 100:
        raise RemoteProtocolError("Status code out of range", status_hint=0)
    # Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
    # may be empty (RFC 4475 3.1.1.13) and UTF-8 (3.1.1.12).
    return status, start[12:]


def _parse_request_line(start: str) -> tuple[str, str]:
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF
    parts = start.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise RemoteProtocolError("Malformed Request-Line: white space must be exactly one SP")
    method, uri, version = parts
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise RemoteProtocolError("Version Not Supported", status_hint=505)
        raise RemoteProtocolError("Malformed Request-Line: bad SIP-Version")
    if method not in _KNOWN_METHODS and not _TOKEN_RE.fullmatch(method):
        raise RemoteProtocolError("Malformed Request-Line: method is not a token")
    if uri[0] == "<":
        raise RemoteProtocolError("Malformed Request-URI: enclosed in <>")
    colon = uri.find(":")
    if colon <= 0:
        raise RemoteProtocolError("Malformed Request-URI: no scheme")
    if "?" in uri and uri[:colon].lower() in ("sip", "sips") and "?" in uri[uri.rfind("@") + 1 :]:
        raise RemoteProtocolError("Malformed Request-URI: headers are not allowed in a Request-URI")
    return method, uri


class StreamFramer:
    """Splits a TCP/TLS byte stream into messages by Content-Length (RFC 3261 18.3).

    CRLF keep-alives (RFC 5626 3.5.1) between messages are counted in :attr:`pings` (each
    ``CRLFCRLF`` is one ping) so the transport can answer with a single CRLF; a lone CRLF
    before a message is skipped (RFC 3261 7.5). Feeding is linear in the bytes fed, even
    one byte at a time.

    Only Content-Length is read here; other header errors are left to
    :func:`parse_message` (``stream=True``) so one bad message does not cost the
    connection. After a RemoteProtocolError from :meth:`feed` the stream cannot be
    resynchronised: answer if possible and close the connection.
    """

    __slots__ = ("_buf", "_need", "_scan", "failed", "limits", "pings")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self._need: int | None = None
        self._scan = 0
        self.limits = limits
        self.pings = 0
        self.failed: RemoteProtocolError | None = None
        """Set when :meth:`feed` returned the complete messages before a framing error:
        serve those, then close the connection (the next ``feed`` raises the error)."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a message."""
        return len(self._buf)

    def unframed_head(self) -> bytes:
        """The complete header lines of the message that could not be framed.

        After a framing error the transport answers the offending request from these
        lines (400/513 with its Via, From, To, Call-ID, CSeq) before it closes; a line
        still being received is left out so no cut-off value is echoed.
        """
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buf[: end + 4])
        last = buf.rfind(b"\r\n")
        return bytes(buf[: last + 2]) + b"\r\n" if last >= 0 else b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete raw message now available.

        Pass each returned message to ``parse_message(raw, limits, stream=True)``.

        Raises:
            RemoteProtocolError: the stream is unusable (oversize: 513, missing or bad
                Content-Length: 400); answer if possible and close the connection. When
                complete messages came before the bad one in the same bytes, they are
                returned first and the error is kept in :attr:`failed`.
        """
        if self.failed is not None:
            raise self.failed
        out: list[bytes] = []
        try:
            self._frame(data, out)
        except RemoteProtocolError as exc:
            if not out:
                raise
            self.failed = exc
        return out

    def _frame(self, data: bytes, out: list[bytes]) -> None:
        buf = self._buf
        buf += data
        max_size = self.limits.max_message_size
        while buf:
            if self._need is None:
                first = buf[0]
                if first == 13 or first == 10:
                    if buf.startswith(b"\r\n\r\n"):
                        self.pings += 1
                        del buf[:4]
                        continue
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                        break  # maybe a ping still arriving
                    del buf[: 2 if buf.startswith(b"\r\n") else 1]
                    continue
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    if len(buf) > max_size:
                        raise RemoteProtocolError("Message Too Large", status_hint=513)
                    self._scan = max(0, len(buf) - 3)
                    break
                self._scan = 0
                need = end + 4 + _framing_length(bytes(buf[:end]))
                if need > max_size:
                    raise RemoteProtocolError("Message Too Large", status_hint=513)
                self._need = need
            if len(buf) < self._need:
                break
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = None


def _framing_length(head: bytes) -> int:
    """Content-Length of a stream message head; the only header framing depends on."""
    text = head.decode("utf-8", "surrogateescape")
    hint = 0 if text[:4].upper() == "SIP/" else 400
    lines = text.replace("\r\n", "\n").split("\n")
    found: list[str] = []
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        if not colon:
            continue
        info = name_info(name)
        if info is not None and info[0] == "content-length":
            j = i + 1
            while j < len(lines) and lines[j][:1] in (" ", "\t"):
                value += " " + lines[j]  # a folded Content-Length value
                j += 1
            found.append(value.strip(" \t"))
    if not found:
        raise RemoteProtocolError("Missing Content-Length on a stream transport", status_hint=hint)
    if len(found) > 1:
        raise RemoteProtocolError("Multiple Content-Length headers", status_hint=hint)
    return _content_length(found[0], hint)
