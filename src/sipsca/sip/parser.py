"""Bytes to messages: datagram parsing and stream framing (RFC 3261 7, 18.3).

Only :class:`RemoteProtocolError` ever escapes (with the status a server should answer),
whatever the input; hard limits bound memory per message and per connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError
from sipsca.sip.headers import Headers, canonical_key
from sipsca.sip.message import SipMessage, SipRequest, SipResponse

__all__ = ["ParserLimits", "StreamFramer", "parse_message"]

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUEST_LINE_RE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (\S+)$")
_STATUS_LINE_RE = re.compile(r"^(SIP/\d+\.\d+) (\d{3}) ?(.*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Hard limits. 65,535 bytes is the largest UDP payload; PJSIP and Kamailio use the
    same order of magnitude (PJSIP_MAX_PKT_LEN 4000..64k, Kamailio BUF_SIZE 65535)."""

    max_message_size: int = 65535
    max_headers: int = 256
    max_line_length: int = 8192


DEFAULT_LIMITS = ParserLimits()


def parse_message(data: bytes, limits: ParserLimits = DEFAULT_LIMITS, *, stream: bool = False) -> SipMessage:
    """Parse one complete SIP message.

    For datagrams, bytes beyond Content-Length are ignored (RFC 3261 18.3) and a body
    shorter than Content-Length is an error; without Content-Length the body is the rest.

    Raises:
        RemoteProtocolError: malformed message; ``status_hint`` says what to answer
            (400, 413, 505), or 0 when the message is a response (never answered).
    """
    if len(data) > limits.max_message_size:
        raise RemoteProtocolError("Message Too Large", status_hint=513)
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4 :]
    else:
        sep = data.find(b"\n\n")
        if sep >= 0:
            head, body = data[:sep], data[sep + 2 :]
        else:
            head, body = data.rstrip(b"\r\n"), b""
            if not stream and b"\n" not in head:
                raise RemoteProtocolError("Incomplete message")
    text = head.decode("utf-8", "surrogateescape")
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0]
    is_response = start[:4].upper() == "SIP/"
    hint_status = 0 if is_response else 400
    items = _parse_header_lines(lines[1:], limits, hint_status)
    headers = Headers(items)
    msg: SipMessage
    if is_response:
        m = _STATUS_LINE_RE.match(start)
        if not m:
            raise RemoteProtocolError("Malformed status line", status_hint=0)
        if m.group(1).upper() != "SIP/2.0":
            raise RemoteProtocolError("Version Not Supported", status_hint=0)
        status = int(m.group(2))
        if not 100 <= status <= 699:
            raise RemoteProtocolError("Status code out of range", status_hint=0)
        msg = SipResponse(status, m.group(3), headers)
    else:
        m = _REQUEST_LINE_RE.match(start)
        if not m:
            raise RemoteProtocolError("Malformed Request-Line")
        if m.group(3) != "SIP/2.0":
            if m.group(3).upper().startswith("SIP/"):
                raise RemoteProtocolError("Version Not Supported", status_hint=505)
            raise RemoteProtocolError("Malformed Request-Line")
        uri = m.group(2)
        if uri.startswith("<") or ":" not in uri:
            raise RemoteProtocolError("Malformed Request-URI")
        msg = SipRequest(m.group(1), uri, headers)
    clen_text = headers.get("content-length")
    if clen_text is not None:
        clen_text = clen_text.strip()
        if not clen_text.isdigit():
            raise RemoteProtocolError("Malformed Content-Length header", status_hint=hint_status)
        if len(headers.get_all("content-length")) > 1:
            raise RemoteProtocolError("Multiple Content-Length headers", status_hint=hint_status)
        clen = int(clen_text)
        if clen > len(body):
            raise RemoteProtocolError("Content-Length larger than the message body", status_hint=hint_status)
        body = body[:clen]
    elif stream:
        raise RemoteProtocolError("Missing Content-Length on a stream transport", status_hint=hint_status)
    msg.body = body
    return msg


def _parse_header_lines(lines: list[str], limits: ParserLimits, hint: int) -> list[list[str]]:
    items: list[list[str]] = []
    for line in lines:
        if len(line) > limits.max_line_length:
            raise RemoteProtocolError("Header line too long", status_hint=hint)
        if not line:
            continue
        if line[0] in " \t":
            if not items:
                raise RemoteProtocolError("Continuation line before the first header", status_hint=hint)
            items[-1][2] = f"{items[-1][2]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN_RE.match(name):
            raise RemoteProtocolError(f"Malformed header line {line[:40]!r}", status_hint=hint)
        items.append([canonical_key(name), name, value.strip(" \t")])
        if len(items) > limits.max_headers:
            raise RemoteProtocolError("Too many headers", status_hint=hint)
    return items


class StreamFramer:
    """Splits a TCP/TLS byte stream into messages by Content-Length (RFC 3261 18.3).

    CRLF keep-alives (RFC 5626 3.5.1) between messages are reported through
    :attr:`pings` so the transport can answer a double-CRLF ping with a single CRLF.
    """

    __slots__ = ("_buf", "limits", "pings")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self.limits = limits
        self.pings = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete raw message now available.

        Raises:
            RemoteProtocolError: the stream is unusable (oversize, bad Content-Length);
                the connection should be answered (if possible) and closed.
        """
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            # Skip keep-alive CRLFs between messages.
            i = 0
            while i < len(buf) and buf[i] in (13, 10):
                i += 1
            if i:
                if buf[:i].count(b"\r\n") >= 2 or buf[:i] == b"\r\n\r\n"[: i]:
                    if i >= 4:
                        self.pings += 1
                del buf[:i]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.limits.max_message_size:
                    raise RemoteProtocolError("Message Too Large", status_hint=513)
                break
            head_end = end + 4
            clen = _content_length(bytes(buf[:end]))
            if clen is None:
                raise RemoteProtocolError("Missing Content-Length on a stream transport")
            total = head_end + clen
            if total > self.limits.max_message_size:
                raise RemoteProtocolError("Message Too Large", status_hint=513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out


_CLEN_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def _content_length(head: bytes) -> int | None:
    m = _CLEN_RE.search(head.replace(b"\r\n", b"\n"))
    if m is None:
        return None
    value = m.group(1)
    if not value.isdigit():
        raise RemoteProtocolError("Malformed Content-Length header")
    return int(value)
