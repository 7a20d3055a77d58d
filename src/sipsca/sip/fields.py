"""Typed header values: name-addr, Via, CSeq, generic ``;param`` lists, comma-separated lists.

Each parser takes the raw header value (as stored in :class:`~sipsca.sip.headers.Headers`)
and raises :class:`RemoteProtocolError` (status 400) naming the header when it is malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError
from sipsca.sip.uri import SipUri, parse_uri

__all__ = [
    "CSeq",
    "NameAddr",
    "Params",
    "Via",
    "format_params",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "split_values",
]

Params = tuple[tuple[str, str | None], ...]
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_VIA_SENT_BY_RE = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(.+)$", re.IGNORECASE)


def split_values(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>`` (RFC 3261 7.3.1)."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            item = value[start:i].strip()
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        out.append(item)
    return out


def parse_params(text: str, header: str = "header") -> Params:
    """Parse ``;name[=value]`` pairs (``text`` starts after the first ``;``); quoted values kept."""
    params: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in ";=":
            j += 1
        name = text[i:j].strip()
        value: str | None = None
        if j < n and text[j] == "=":
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == '"':
                end = k + 1
                while end < n and text[end] != '"':
                    end += 2 if text[end] == "\\" else 1
                if end >= n:
                    raise RemoteProtocolError(f"Unbalanced quote in {header} parameter")
                value = text[k : end + 1]
                j = end + 1
                while j < n and text[j] != ";":
                    if text[j] not in " \t":
                        raise RemoteProtocolError(f"Malformed {header} parameter")
                    j += 1
            else:
                end = k
                while end < n and text[end] != ";":
                    end += 1
                value = text[k:end].strip()
                j = end
        if not name or not _TOKEN_RE.match(name):
            raise RemoteProtocolError(f"Malformed {header} parameter {name!r}")
        params.append((name, value))
        i = j + 1
    return tuple(params)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param_value(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``[display] <uri> ;params`` or ``uri ;params`` (From, To, Contact, Route, Call-Info...).

    ``display`` is kept exactly as written (quotes included); ``uri_text`` is the URI string,
    parsed on demand by :attr:`uri` (unknown schemes stay opaque).
    """

    display: str
    uri_text: str
    params: Params = ()
    bracketed: bool = True

    @property
    def uri(self) -> SipUri:
        return parse_uri(self.uri_text)

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def tag(self) -> str | None:
        return param_value(self.params, "tag")

    def __str__(self) -> str:
        if self.bracketed or self.display:
            head = f"{self.display} <{self.uri_text}>" if self.display else f"<{self.uri_text}>"
        else:
            head = self.uri_text
        return head + format_params(self.params)


def parse_name_addr(value: str, header: str = "header") -> NameAddr:
    """Parse one name-addr / addr-spec header value (RFC 3261 20.10 parameter rule)."""
    text = value.strip()
    if not text:
        raise RemoteProtocolError(f"Empty {header} header")
    display = ""
    if text[0] == '"':
        end = 1
        while end < len(text) and text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise RemoteProtocolError(f"Unbalanced quote in {header} display name")
        display = text[: end + 1]
        text = text[end + 1 :].lstrip()
        if not text.startswith("<"):
            raise RemoteProtocolError(f"Malformed {header}: quoted display name without <uri>")
    lt = text.find("<")
    if lt >= 0:
        if not display:
            display = text[:lt].strip()
            if display and not all(_TOKEN_RE.match(w) for w in display.split()):
                raise RemoteProtocolError(f"Malformed {header} display name")
        gt = text.find(">", lt)
        if gt < 0:
            raise RemoteProtocolError(f"Missing '>' in {header}")
        uri_text = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :].strip()
        bracketed = True
    else:
        uri_text, _, rest = text.partition(";")
        uri_text = uri_text.strip()
        rest = ";" + rest if _ else ""
        bracketed = False
        if any(c in uri_text for c in " \t,?"):
            raise RemoteProtocolError(f"Malformed {header} URI")
    if ":" not in uri_text or not uri_text:
        raise RemoteProtocolError(f"Malformed {header} URI")
    if rest and not rest.startswith(";"):
        raise RemoteProtocolError(f"Malformed {header} after URI")
    params = parse_params(rest[1:], header) if rest else ()
    return NameAddr(display=display, uri_text=uri_text, params=params, bracketed=bracketed)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None
    params: Params

    @property
    def branch(self) -> str | None:
        return param_value(self.params, "branch")

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    def has_param(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.params)

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hostport}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    m = _VIA_SENT_BY_RE.match(value.strip())
    if not m:
        raise RemoteProtocolError("Malformed Via header")
    transport = m.group(1).upper()
    sent_by, _, ptext = m.group(2).partition(";")
    sent_by = sent_by.strip()
    if sent_by.startswith("["):
        end = sent_by.find("]")
        host, portpart = sent_by[: end + 1], sent_by[end + 1 :].strip()
        portpart = portpart[1:].strip() if portpart.startswith(":") else portpart
    else:
        host, _, portpart = sent_by.partition(":")
        host, portpart = host.strip(), portpart.strip()
    if not host or " " in host:
        raise RemoteProtocolError("Malformed Via sent-by")
    port: int | None = None
    if portpart:
        if not portpart.isdigit() or int(portpart) > 65535:
            raise RemoteProtocolError("Malformed Via port")
        port = int(portpart)
    return Via(transport=transport, host=host, port=port, params=parse_params(ptext, "Via"))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN_RE.match(parts[1]):
        raise RemoteProtocolError("Malformed CSeq header")
    number = int(parts[0])
    if number >= 2**31:
        raise RemoteProtocolError("CSeq number out of range")
    return CSeq(number=number, method=parts[1])
