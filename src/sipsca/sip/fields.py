"""Typed header values: name-addr, Via, CSeq, generic ``;param`` lists, comma-separated lists.

Each parser takes the raw header value (as stored in :class:`~sipsca.sip.headers.Headers`)
and raises :class:`RemoteProtocolError` (status 400) naming the header when it is malformed.
They never raise anything else, whatever the input: the parser fuzz invariant
(``fuzz/fuzz_parser.py``) covers every accessor built on them.

Values are kept as written (quotes, escapes, parameter-name case): a proxy forwards what it
received, and only the code that interprets a value unquotes or unescapes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sipsca.errors import RemoteProtocolError
from sipsca.sip.uri import SipUri, is_valid_host, parse_uri, split_simple_params

__all__ = [
    "CSeq",
    "NameAddr",
    "Params",
    "Via",
    "format_params",
    "param_value",
    "parse_auth_params",
    "parse_cseq",
    "parse_date",
    "parse_name_addr",
    "parse_params",
    "parse_uint",
    "parse_value_params",
    "parse_via",
    "quote_string",
    "split_values",
    "unquote_string",
]

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 25.1:
#   token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# RFC 3261 25.1: gen-value = token / host / quoted-string. A host adds ":" "[" "]" (IPv6
# references, ``received=2001:db8::1``); "/" and "@" are tolerated because deployed UAs put
# them in unquoted parameter values and they cannot break framing or splitting.
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]/@]*")
# Memo caches (see parse_name_addr): entry length and count bounds.
_CACHE_MAX_LEN = 256
_CACHE_SIZE = 4096
_is_token = _TOKEN_RE.fullmatch
_is_gen_value = _GEN_VALUE_RE.fullmatch
# A whole parameter list without white space or quotes (``branch=z9hG4bK1;rport``): valid
# exactly when every name is a token and every value a gen-value, as checked one by one
# in parse_params, which then only has to cut it (uri.split_simple_params).
_SIMPLE_PARAM = r"[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]/@]*)?"
_SIMPLE_PARAMS_RE = re.compile(rf"{_SIMPLE_PARAM}(?:;{_SIMPLE_PARAM})*")
# The usual Via, ``SIP/2.0/UDP host:port;params`` written without optional white space:
# _parse_via's fast path (same result as the general path for whatever matches).
_SIMPLE_VIA_RE = re.compile(
    rf"SIP/2\.0/([A-Z]+) ([A-Za-z0-9\-._]+)(?::([0-9]{{1,5}}))?"
    rf"(?:;({_SIMPLE_PARAM}(?:;{_SIMPLE_PARAM})*))?"
)
# RFC 3261 20.42:
#   via-parm = sent-protocol LWS sent-by *( SEMI via-params )
#   sent-protocol = protocol-name SLASH protocol-version SLASH transport
# SLASH is SWS "/" SWS, so white space around the slashes is legal (RFC 4475 3.1.1.1).
_VIA_RE = re.compile(
    r"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+([^;]*)(?:;(.*))?",
    re.IGNORECASE | re.DOTALL,
)
# RFC 3261 20.17 / RFC 2616 3.3.1: SIP-date is rfc1123-date, and only "GMT" is allowed.
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"(\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT"
)
# RFC 3261 20.16: CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
_CSEQ_RE = re.compile(r"[ \t]*([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
# RFC 7235 2.1: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def split_values(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>`` (RFC 3261 7.3.1).

    Empty elements are dropped (``a,,b`` gives two values), as RFC 7230 7 "#rule" allows;
    whether an empty list is an error is the caller's decision.
    """
    if "," not in value:
        stripped = value.strip(" \t")
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
            item = value[start:i].strip(" \t")
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip(" \t")
    if item:
        out.append(item)
    return out


def _quoted_end(text: str, start: int) -> int:
    """Index just after the quoted-string opening at ``text[start]`` (RFC 3261 25.1).

    ``quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F)``: a backslash escapes the next
    character, so ``"a\\"b"`` is one string. Returns -1 when the closing quote is missing.
    """
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    return -1


def unquote_string(text: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved; other text is returned stripped.

    ``"\\"Bob\\" <sip:bob@example.com>"`` (a Call-ID ``appearance-uri`` value) gives
    ``"Bob" <sip:bob@example.com>``; ``"<urn:uuid:...>"`` (``+sip.instance``) gives
    ``<urn:uuid:...>``.
    """
    text = text.strip(" \t")
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string, escaping ``"`` and ``\\`` (RFC 3261 25.1 quoted-pair)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, header: str = "header") -> Params:
    """Parse ``;name[=value]`` pairs (``text`` starts after the first ``;``).

    Names must be tokens; values are tokens, hosts or quoted-strings, kept as written (quotes
    included). LWS around ``;`` and ``=`` is allowed (RFC 3261 25.1 SEMI, EQUAL).

    Raises:
        RemoteProtocolError: empty or non-token name, bad value, unbalanced quote (400).
    """
    if not text:
        return ()
    if _SIMPLE_PARAMS_RE.fullmatch(text):
        return split_simple_params(text)
    if '"' in text:
        return _parse_quoted_params(text, header)
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        name = name.strip(" \t")
        if not _is_token(name):
            raise RemoteProtocolError(f"Malformed {header} parameter {name[:40]!r}")
        if eq:
            value = value.strip(" \t")
            if not _is_gen_value(value):
                raise RemoteProtocolError(f"Malformed {header} parameter value {name!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def _parse_quoted_params(text: str, header: str) -> Params:
    """parse_params for text holding quoted-strings, which may contain ``;`` and ``=``."""
    params: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i <= n:
        j = i
        while j < n and text[j] != ";" and text[j] != "=":
            j += 1
        name = text[i:j].strip(" \t")
        value: str | None = None
        if j < n and text[j] == "=":
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == '"':
                end = _quoted_end(text, k)
                if end < 0:
                    raise RemoteProtocolError(f"Unbalanced quote in {header} parameter")
                value = text[k:end]
                j = end
                while j < n and text[j] != ";":
                    if text[j] not in " \t":
                        raise RemoteProtocolError(f"Malformed {header} parameter {name!r}")
                    j += 1
            else:
                end = text.find(";", k)
                if end < 0:
                    end = n
                value = text[k:end].rstrip(" \t")
                if not _is_gen_value(value):
                    raise RemoteProtocolError(f"Malformed {header} parameter value {name!r}")
                j = end
        if not _is_token(name):
            raise RemoteProtocolError(f"Malformed {header} parameter {name[:40]!r}")
        params.append((name, value))
        i = j + 1
    return tuple(params)


def format_params(params: Params) -> str:
    """``;name=value`` text of ``params`` (flags as ``;name``), the inverse of parse_params."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param_value(params: Params, name: str) -> str | None:
    """Value of ``name`` (case-insensitive), ``''`` for a flag, None when absent."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def parse_value_params(value: str, header: str = "header") -> tuple[str, Params]:
    """Split ``value *(;param)`` into the leading value and its parameters.

    For the headers whose value is a token or word followed by generic parameters:
    Event (``call-info;id=3``, RFC 6665 8.2.1), Subscription-State (``active;expires=60``),
    Content-Type, Replaces (``callid;to-tag=a;from-tag=b``, RFC 3891 6.1), Retry-After...

    Raises:
        RemoteProtocolError: empty leading value or malformed parameters (400).
    """
    head, semi, rest = value.partition(";")
    head = head.strip(" \t")
    if not head or (semi and not rest.strip(" \t")):
        raise RemoteProtocolError(f"Malformed {header} header")
    return head, parse_params(rest, header) if semi else ()


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``[display] <uri> ;params`` or ``uri ;params`` (From, To, Contact, Route, Call-Info...).

    ``display`` is kept exactly as written (quotes included); ``uri_text`` is the URI string,
    parsed on demand by :attr:`uri` (unknown schemes stay opaque). ``params`` are the header
    parameters, outside the brackets.
    """

    display: str
    uri_text: str
    params: Params = ()
    bracketed: bool = True

    @property
    def uri(self) -> SipUri:
        """The parsed URI (RemoteProtocolError if malformed)."""
        return parse_uri(self.uri_text)

    def param(self, name: str) -> str | None:
        """Header parameter ``name`` as written (``''`` for a flag), None when absent."""
        return param_value(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether header parameter ``name`` is present (flag or valued)."""
        return param_value(self.params, name) is not None

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3), None when absent."""
        return param_value(self.params, "tag")

    @property
    def display_name(self) -> str:
        """The display name without quotes and escapes (``"A \\"B\\""`` gives ``A "B"``)."""
        return unquote_string(self.display)

    def __str__(self) -> str:
        if self.bracketed or self.display:
            head = f"{self.display} <{self.uri_text}>" if self.display else f"<{self.uri_text}>"
        else:
            head = self.uri_text
        return head + format_params(self.params)


def parse_name_addr(value: str, header: str = "header") -> NameAddr:
    """Parse one name-addr / addr-spec header value (memoised: NameAddr is immutable).

    The same From, To, Contact and Route values recur in every message of a dialog or
    registration, so results for values up to 256 characters are cached.

    RFC 3261 20.10: "If the URI is not enclosed in angle brackets, any semicolon-delimited
    parameters are header-parameters, not URI parameters", and a URI containing a comma,
    question mark or semicolon must be enclosed in angle brackets.

    Raises:
        RemoteProtocolError: malformed display name (unquoted non-tokens, RFC 4475 3.1.2.15),
            unbalanced quotes (3.1.2.6), white space inside ``<>`` (3.1.2.14), a ``?`` in an
            unbracketed URI (3.1.2.13), or bad parameters (400).
    """
    if len(value) <= _CACHE_MAX_LEN:
        return _parse_name_addr_cached(value, header)
    return _parse_name_addr(value, header)


def _parse_name_addr(value: str, header: str) -> NameAddr:
    text = value.strip(" \t")
    if not text:
        raise RemoteProtocolError(f"Empty {header} header")
    display = ""
    lt = -1
    if text[0] == '"':
        end = _quoted_end(text, 0)
        if end < 0:
            raise RemoteProtocolError(f"Unbalanced quote in {header} display name")
        display = text[:end]
        lt = end
        while lt < len(text) and text[lt] in " \t":
            lt += 1
        if lt >= len(text) or text[lt] != "<":
            raise RemoteProtocolError(f"Malformed {header}: quoted display name without <uri>")
    else:
        lt = text.find("<")
        semi = text.find(";")
        if lt >= 0 and 0 <= semi < lt:
            lt = -1  # the "<" is inside a parameter: addr-spec form
        if lt > 0:
            # LAQUOT = SWS "<": the display name may touch the "<" (RFC 4475 3.1.1.6).
            display = text[:lt].rstrip(" \t")
            if not all(_TOKEN_RE.fullmatch(w) for w in display.split()):
                raise RemoteProtocolError(f"Malformed {header} display name")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise RemoteProtocolError(f"Missing '>' in {header}")
        uri_text = text[lt + 1 : gt]
        rest = text[gt + 1 :].lstrip(" \t")
        bracketed = True
        # name-addr = [ display-name ] LAQUOT addr-spec RAQUOT: no LWS inside the brackets.
        if not uri_text or " " in uri_text or "\t" in uri_text:
            raise RemoteProtocolError(f"Malformed {header} URI: white space inside <>")
    else:
        uri_text, semi_sep, rest = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        rest = ";" + rest if semi_sep else ""
        bracketed = False
        if any(c in uri_text for c in ' \t,?<>"'):
            raise RemoteProtocolError(f"Malformed {header} URI")
    if ":" not in uri_text:
        raise RemoteProtocolError(f"Malformed {header} URI")
    if rest and (rest[0] != ";" or len(rest) == 1):
        raise RemoteProtocolError(f"Malformed {header} after URI")
    params = parse_params(rest[1:], header) if rest else ()
    return NameAddr(display=display, uri_text=uri_text, params=params, bracketed=bracketed)


_parse_name_addr_cached = lru_cache(maxsize=_CACHE_SIZE)(_parse_name_addr)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 20.42, RFC 3581 rport).

    ``transport`` is upper-case; ``host`` is as written (IPv6 in brackets); ``port`` is None
    when absent (the transport default applies, RFC 3261 18.2.2).
    """

    transport: str
    host: str
    port: int | None
    params: Params

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter; RFC 3261 branches start with ``z9hG4bK`` (17.2.3)."""
        return param_value(self.params, "branch")

    def param(self, name: str) -> str | None:
        """Parameter ``name`` (``''`` for a flag such as an empty ``rport``), None when absent."""
        return param_value(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present (flag or valued)."""
        return param_value(self.params, name) is not None

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as used in RFC 3261 18.2.2 / RFC 3581 comparisons."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma-separated list: use ``Headers.values("via")``).

    Memoised like :func:`parse_name_addr`: a request's Via values come back in its responses.

    Raises:
        RemoteProtocolError: malformed sent-protocol, sent-by or parameters, or a port
            outside 1-65535 (400).
    """
    if len(value) <= _CACHE_MAX_LEN:
        return _parse_via_cached(value)
    return _parse_via(value)


def _parse_via(value: str) -> Via:
    simple = _SIMPLE_VIA_RE.fullmatch(value)
    if simple is not None:
        transport, host, port_text, ptext = simple.groups()
        port = None if port_text is None else int(port_text)
        if is_valid_host(host) and (port is None or 0 < port <= 65535):
            params = split_simple_params(ptext) if ptext is not None else ()
            return Via(transport=transport, host=host, port=port, params=params)
    m = _VIA_RE.fullmatch(value.strip(" \t"))
    if not m:
        raise RemoteProtocolError("Malformed Via header")
    transport = m.group(1).upper()
    sent_by = m.group(2)
    host, port = _split_sent_by(sent_by)
    ptext = m.group(3)
    if ptext is not None and not ptext.strip(" \t"):
        raise RemoteProtocolError("Malformed Via parameters")
    params = parse_params(ptext, "Via") if ptext is not None else ()
    return Via(transport=transport, host=host, port=port, params=params)


_parse_via_cached = lru_cache(maxsize=_CACHE_SIZE)(_parse_via)


def _split_sent_by(sent_by: str) -> tuple[str, int | None]:
    # sent-by = host [ COLON port ]; COLON = SWS ":" SWS
    if sent_by.startswith("["):
        end = sent_by.find("]")
        host, portpart = sent_by[: end + 1], sent_by[end + 1 :].strip(" \t")
        if end < 0:
            raise RemoteProtocolError("Malformed Via sent-by")
        if portpart:
            if portpart[0] != ":":
                raise RemoteProtocolError("Malformed Via sent-by")
            portpart = portpart[1:].strip(" \t")
            if not portpart:
                raise RemoteProtocolError("Malformed Via port")
    else:
        host, colon, portpart = sent_by.partition(":")
        host, portpart = host.strip(" \t"), portpart.strip(" \t")
        if colon and not portpart:
            raise RemoteProtocolError("Malformed Via port")
    if not is_valid_host(host):
        raise RemoteProtocolError("Malformed Via sent-by")
    port: int | None = None
    if portpart:
        port = parse_uint(portpart, 65535, "Via port")
        if port == 0:  # nothing can be sent to port 0: not "absent" (5060) either
            raise RemoteProtocolError("Via port value out of range")
    return host, port


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: number method`` (RFC 3261 20.16)."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; leading zeros are fine (RFC 4475 3.1.1.1).

    RFC 3261 8.1.1.5: "The sequence number value MUST be expressible as a 32-bit unsigned
    integer and MUST be less than 2**31" (RFC 4475 3.1.2.4 sends 2**65).

    Memoised like :func:`parse_name_addr`: a few values (``1 INVITE``, ``2 BYE``...) make
    most of the traffic.

    Raises:
        RemoteProtocolError: not ``number method`` or number out of range (400).
    """
    if len(value) <= _CACHE_MAX_LEN:
        return _parse_cseq_cached(value)
    return _parse_cseq(value)


def _parse_cseq(value: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(value)
    if not m:
        raise RemoteProtocolError("Malformed CSeq header")
    number = parse_uint(m.group(1), 2**31 - 1, "CSeq")
    return CSeq(number=number, method=m.group(2))


_parse_cseq_cached = lru_cache(maxsize=_CACHE_SIZE)(_parse_cseq)


def parse_uint(text: str, maximum: int, header: str = "header") -> int:
    """Parse ASCII digits (leading zeros allowed) into an int no larger than ``maximum``.

    ``str.isdigit`` alone accepts "²" and Arabic-Indic digits, and ``int()`` refuses
    strings over 4300 digits; both would escape as ValueError, so the text is checked for
    ASCII and its significant length is bounded first.

    Raises:
        RemoteProtocolError: not a number or larger than ``maximum`` (400).
    """
    text = text.strip(" \t")
    if len(text) < 10 and text.isdigit() and text.isascii():  # the usual case: short
        value = int(text)
        if value > maximum:
            raise RemoteProtocolError(f"{header} value out of range")
        return value
    if not (text.isascii() and text.isdigit()):
        raise RemoteProtocolError(f"Malformed {header} value")
    significant = text.lstrip("0")
    if len(significant) > len(str(maximum)) or (significant and int(significant) > maximum):
        raise RemoteProtocolError(f"{header} value out of range")
    return int(significant) if significant else 0


def parse_date(value: str) -> datetime:
    """Parse a Date header (RFC 3261 20.17): ``Sat, 13 Nov 2010 23:29:00 GMT``, UTC.

    Raises:
        RemoteProtocolError: other formats or time zones (RFC 4475 3.1.2.12 sends "EST") (400).
    """
    m = _DATE_RE.fullmatch(value.strip(" \t"))
    if not m:
        raise RemoteProtocolError("Malformed Date header")
    _, day, month, year, hour, minute, second = m.groups()
    try:
        return datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        raise RemoteProtocolError("Malformed Date header") from None


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Parse an Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate value.

    ``Digest realm="a, b", nonce="x", qop="auth,auth-int", algorithm=MD5`` gives
    ``("Digest", {"realm": "a, b", "nonce": "x", "qop": "auth,auth-int", "algorithm": "MD5"})``:
    parameter names are lower-cased, quoted values unquoted. These headers hold commas inside
    quoted strings, so they must never go through :func:`split_values` /
    ``Headers.values()`` (RFC 3261 7.3.1 exempts them from comma splitting). A token68
    credential (``Basic dXNlcg==``, RFC 7235 2.1) is returned under the key ``"token68"``.

    Raises:
        RemoteProtocolError: no scheme, malformed or duplicate parameter (400).
    """
    text = value.strip(" \t")
    scheme, _, rest = text.replace("\t", " ").partition(" ")
    if not scheme or not _TOKEN_RE.fullmatch(scheme):
        raise RemoteProtocolError("Malformed authentication header: no scheme")
    rest = rest.strip(" \t")
    params: dict[str, str] = {}
    if not rest:
        return scheme, params
    if "=" not in rest.rstrip("=") and _TOKEN68_RE.fullmatch(rest):
        return scheme, {"token68": rest}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise RemoteProtocolError("Malformed authentication parameter")
        name = rest[i:eq].strip(" \t").lower()
        if not _TOKEN_RE.fullmatch(name):
            raise RemoteProtocolError("Malformed authentication parameter")
        k = eq + 1
        while k < n and rest[k] in " \t":
            k += 1
        if k < n and rest[k] == '"':
            end = _quoted_end(rest, k)
            if end < 0:
                raise RemoteProtocolError("Unbalanced quote in authentication parameter")
            item = unquote_string(rest[k:end])
            i = end
        else:
            end = k
            while end < n and rest[end] not in ", \t":
                end += 1
            item = rest[k:end]
            if not item or not _GEN_VALUE_RE.fullmatch(item):
                raise RemoteProtocolError("Malformed authentication parameter value")
            i = end
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] != ",":
            raise RemoteProtocolError("Malformed authentication parameter list")
        if name in params:
            raise RemoteProtocolError(f"Duplicate authentication parameter {name!r}")
        params[name] = item
    return scheme, params
