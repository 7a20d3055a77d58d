"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966): parsing, serialising, comparison.

Escaped characters (``%HH``) are kept as received in every component, so a URI is
serialised exactly as it came; comparisons unescape first (RFC 3261 19.1.4), and only
once (RFC 4475 3.1.1.3: ``%25%34%31`` is ``%41``, never ``A``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from urllib.parse import unquote as _unquote

from sipsca.errors import RemoteProtocolError

__all__ = [
    "SipUri",
    "is_valid_host",
    "parse_uri",
    "split_simple_params",
    "unescape",
    "uri_equal",
    "uri_match_key",
]

# RFC 3261 25.1 building blocks:
#   unreserved  = alphanum / mark;  mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
#   escaped     = "%" HEXDIG HEXDIG
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESC = r"%[0-9A-Fa-f]{2}"
#   user             = 1*( unreserved / escaped / user-unreserved )
#   user-unreserved  = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
#   password         = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
#   hostname = *( domainlabel "." ) toplabel [ "." ]
#   domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
#   toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
# Deviation: "_" is tolerated in labels, as PJSIP and Kamailio do (SRV-style and some
# provisioning names use it); refusing it would lock such phones out for no safety gain.
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?\.?"
)
#   IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
#   paramchar = param-unreserved / unreserved / escaped
#   param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
_PARAM_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
#   header = hname "=" hvalue;  hname = 1*( hnv-unreserved / unreserved / escaped )
#   hvalue = *( hnv-unreserved / unreserved / escaped )
#   hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})"
_HEADERS_RE = re.compile(rf"{_HNV}+={_HNV}*(?:&{_HNV}+={_HNV}*)*")
# RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 3966 3: global-number-digits / local-number-digits with visual separators.
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
# The usual SIP URI, ``sip:user@host:port;name=value`` (lower-case scheme; no password,
# escapes, headers or IPv6 reference), matched in one go by _parse_uri's fast path. Each
# part uses a subset of the characters its rule in _parse_uri allows, so whatever matches
# here parses to the same SipUri there; anything else takes the general path.
_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
_SIMPLE_SIP_RE = re.compile(
    rf"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9\-_.]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_PCHAR}+(?:={_PCHAR}+)?)*)"
)
# Characters never allowed unescaped in any URI we accept (RFC 3986 2, RFC 3261 25.1):
# controls, space and the "unwise" set. Non-ASCII is refused separately.
_BAD_CHAR_RE = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3261 19.1.4: "Characters other than those in the 'reserved' set are equivalent to
# their '"%" HEX HEX' encoding." "%" itself stays escaped so that normal forms are unique.
_KEEP_ESCAPED = frozenset(";/?:@&=+$,%")

# Parameters that must match when present in either URI (RFC 3261 19.1.4).
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")
# Memo caches: entries at most _CACHE_MAX_LEN characters, at most _CACHE_SIZE of them.
_CACHE_MAX_LEN = 256
_CACHE_SIZE = 4096
_VALID_HOSTS: set[str] = set()


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed URI. ``params`` keeps order and the original name case; lookups ignore case.

    For ``tel:`` URIs the number is in ``user``; for other non-SIP schemes the whole text is
    in ``user`` and ``is_sip`` is False (callers answer 416, RFC 3261 8.2.2.1).
    """

    scheme: str
    user: str = ""
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str = ""
    _text: str = field(default="", compare=False, repr=False)

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` ('' for a flag parameter), None when absent."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        """Whether URI parameter ``name`` is present (flag or valued)."""
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.params)

    @property
    def is_sip(self) -> bool:
        """True for ``sip:`` and ``sips:`` URIs."""
        return self.scheme in ("sip", "sips")

    @property
    def hostport(self) -> str:
        """``host[:port]`` as written (IPv6 references keep their brackets)."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with parameters set (None value = flag); existing names are replaced."""
        lowered = {k.lower() for k in params}
        kept = [(k, v) for k, v in self.params if k.lower() not in lowered]
        return replace(self, params=(*kept, *params.items()), _text="")

    def without_params(self, *names: str) -> SipUri:
        """A copy without the named parameters (case-insensitive)."""
        drop = {n.lower() for n in names}
        return replace(
            self, params=tuple(p for p in self.params if p[0].lower() not in drop), _text=""
        )

    def without_headers(self) -> SipUri:
        """A copy without the ``?headers`` component (RFC 3261 19.1.5: not for a Request-URI)."""
        return replace(self, headers="", _text="") if self.headers else self

    def aor(self) -> str:
        """``scheme:user@host[:port]`` with no parameters or headers."""
        userinfo = f"{self.user}@" if self.user else ""
        return f"{self.scheme}:{userinfo}{self.hostport}"

    def __str__(self) -> str:
        if self._text:
            return self._text
        if self.scheme == "tel":
            out = f"tel:{self.user}"
        elif not self.is_sip:
            return self.user
        else:
            userinfo = ""
            if self.user or self.password is not None:
                userinfo = (
                    self.user + (f":{self.password}" if self.password is not None else "") + "@"
                )
            out = f"{self.scheme}:{userinfo}{self.hostport}"
        for key, value in self.params:
            out += f";{key}" if value is None else f";{key}={value}"
        if self.headers:
            out += "?" + self.headers
        return out


def is_valid_host(host: str) -> bool:
    """Whether ``host`` is a hostname, IPv4 address or bracketed IPv6 reference (RFC 3261 25.1)."""
    if host in _VALID_HOSTS:
        return True
    if not _check_host(host):
        return False
    if len(_VALID_HOSTS) < _CACHE_SIZE:
        _VALID_HOSTS.add(host)  # hosts recur (peers, proxies, the local domain)
    return True


def _check_host(host: str) -> bool:
    if not host:
        return False
    if host[0] == "[":
        if host[-1] != "]" or "%" in host:
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if _IPV4_RE.fullmatch(host):
        return all(int(octet) <= 255 for octet in host.split("."))
    return _HOSTNAME_RE.fullmatch(host) is not None


def unescape(text: str) -> str:
    """Decode every ``%HH`` once (RFC 3261 19.1.4), e.g. the user part ``%75se%72`` is ``user``.

    Decoded bytes that are not UTF-8 become U+FFFD; ``%00`` stays a NUL character rather than
    truncating anything (RFC 4475 3.1.1.4).
    """
    if "%" not in text:
        return text
    return _unquote(text, errors="replace")


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; any other absolute URI is kept opaque.

    Results are memoised (SipUri is immutable), so the Request-URI and the From/To/Contact
    URIs that recur across a dialog are parsed once.

    Raises:
        RemoteProtocolError: malformed URI (status 400); unknown schemes are returned
            with ``is_sip`` False, not rejected, so callers can answer 416.
    """
    if len(text) <= _CACHE_MAX_LEN:
        return _parse_uri_cached(text)
    return _parse_uri(text)


def _parse_uri(text: str) -> SipUri:
    m = _SIMPLE_SIP_RE.fullmatch(text)
    if m is not None:
        uri = _simple_sip_uri(text, m)
        if uri is not None:
            return uri
    if not text or not text.isascii() or _BAD_CHAR_RE.search(text):
        raise RemoteProtocolError(f"Malformed URI {text[:80]!r}")
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise RemoteProtocolError(f"Malformed URI {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme == "tel":
        # RFC 3966 3: telephone-subscriber = global-number / local-number, then par.
        number, semi, ptext = rest.partition(";")
        if not _TEL_RE.fullmatch(number) or (semi and not ptext):
            raise RemoteProtocolError(f"Malformed tel URI {text[:80]!r}")
        return SipUri(scheme="tel", user=number, params=_parse_params(ptext, text), _text=text)
    if lscheme not in ("sip", "sips"):
        if not rest:
            raise RemoteProtocolError(f"Malformed URI {text[:80]!r}")
        return SipUri(scheme=lscheme, user=text, _text=text)
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # The user part may hold ";", "?" and "/" (user-unreserved), while "@" may appear
    # nowhere but before the host, so split at the last "@" first (RFC 4475 3.1.1.2, 3.1.1.9).
    at = rest.rfind("@")
    user, password = "", None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise RemoteProtocolError(f"Malformed user part in URI {text[:80]!r}")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise RemoteProtocolError(f"Malformed password in URI {text[:80]!r}")
            password = pw
    rest, qmark, headers = rest.partition("?")
    if qmark and not _HEADERS_RE.fullmatch(headers):
        raise RemoteProtocolError(f"Malformed headers in URI {text[:80]!r}")
    hostport, semi, ptext = rest.partition(";")
    if semi and not ptext:
        raise RemoteProtocolError(f"Malformed URI parameters in {text[:80]!r}")
    host, port = _parse_hostport(hostport, text)
    return SipUri(
        scheme=lscheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_params(ptext, text),
        headers=headers,
        _text=text if scheme == lscheme else "",
    )


_parse_uri_cached = lru_cache(maxsize=_CACHE_SIZE)(_parse_uri)


def _simple_sip_uri(text: str, m: re.Match[str]) -> SipUri | None:
    """The SipUri of a :data:`_SIMPLE_SIP_RE` match; None when the host or port is invalid
    (the general path then raises the right error)."""
    scheme, user, host, port_text, ptext = m.groups()
    if not is_valid_host(host):
        return None
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    params = split_simple_params(ptext[1:]) if ptext else ()
    return SipUri(scheme=scheme, user=user or "", host=host, port=port, params=params, _text=text)


def split_simple_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """Cut ``name=value;flag`` text whose names and values are already known valid (the fast
    paths of URI, Via and parameter parsing): nothing to check, nothing to unescape."""
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        params.append((name, value if eq else None))
    return tuple(params)


def _parse_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, portpart = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (portpart and portpart[0] != ":"):
            raise RemoteProtocolError(f"Malformed IPv6 reference in URI {text[:80]!r}")
        has_port = bool(portpart)
        portpart = portpart[1:]
    else:
        host, colon, portpart = hostport.partition(":")
        has_port = bool(colon)
    if not is_valid_host(host):
        raise RemoteProtocolError(f"Malformed host in URI {text[:80]!r}")
    port: int | None = None
    if has_port:
        if (
            not (portpart.isascii() and portpart.isdigit())
            or len(portpart) > 5
            or int(portpart) > 65535
        ):
            raise RemoteProtocolError(f"Malformed port in URI {text[:80]!r}")
        port = int(portpart)
    return host, port


def _parse_params(ptext: str, text: str) -> tuple[tuple[str, str | None], ...]:
    # uri-parameter = transport-param / ... / other-param;  other-param = pname [ "=" pvalue ]
    if not ptext:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in ptext.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAM_RE.fullmatch(name) or (eq and not _PARAM_RE.fullmatch(value)):
            raise RemoteProtocolError(f"Malformed URI parameter {item[:40]!r} in {text[:80]!r}")
        params.append((name, value if eq else None))
    return tuple(params)


def _normal(text: str) -> str:
    """``text`` with unreserved escapes decoded and the rest upper-cased (one canonical form)."""
    if "%" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return "%" + m.group(1).upper() if char in _KEEP_ESCAPED else char

    return _ESCAPE_RE.sub(sub, text)


def _tel_number(number: str) -> str:
    # RFC 3966 4: visual separators are ignored when comparing.
    return "".join(c for c in number if c not in "-.()").lower()


def uri_equal(a: SipUri, b: SipUri) -> bool:
    """URI equivalence per RFC 3261 19.1.4 (and RFC 3966 4 for tel URIs).

    The user part and password compare case-sensitively; host, parameter names and values
    and headers compare case-insensitively; escapes of unreserved characters equal the
    characters themselves. ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` must
    match when present in either URI; other parameters only when present in both. Header
    components must match exactly (in any order). As the RFC notes, this relation is not
    transitive.
    """
    if a.scheme != b.scheme:
        return False
    if a.scheme == "tel":
        if _tel_number(a.user) != _tel_number(b.user):
            return False
        return _param_map(a) == _param_map(b)
    if not a.is_sip:
        return str(a) == str(b)
    if _normal(a.user) != _normal(b.user) or _normal(a.password or "") != _normal(b.password or ""):
        return False
    if a.host.lower() != b.host.lower() or a.port != b.port:
        return False
    pa = _param_map(a)
    pb = _param_map(b)
    for name in _MUST_MATCH:
        if pa.get(name) != pb.get(name):
            return False
    if any(pa[k] != pb[k] for k in pa.keys() & pb.keys()):
        return False
    return _header_set(a) == _header_set(b)


def uri_match_key(uri: SipUri) -> tuple[str, ...]:
    """A key equal for every two URIs :func:`uri_equal` calls equal.

    ``uri_equal`` is not transitive, so it cannot be hashed; this key holds only the parts
    that must match outright (scheme, user, host, port, the always-compared parameters and
    the headers), so a lookup compares a handful of candidates instead of every entry.
    """
    if uri.scheme == "tel":
        return ("tel", _tel_number(uri.user))
    if not uri.is_sip:
        return (uri.scheme, str(uri))
    params = _param_map(uri)
    return (
        uri.scheme,
        _normal(uri.user),
        _normal(uri.password or ""),
        uri.host.lower(),
        str(uri.port),
        *(params.get(name, "\0") for name in _MUST_MATCH),
        *_header_set(uri),
    )


def _param_map(uri: SipUri) -> dict[str, str]:
    return {_normal(k).lower(): _normal(v or "").lower() for k, v in uri.params}


def _header_set(uri: SipUri) -> list[str]:
    return sorted(_normal(h).lower() for h in uri.headers.split("&") if h)
