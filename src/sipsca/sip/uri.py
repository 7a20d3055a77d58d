"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966): parsing, serialising, comparison.

Escaped characters (``%HH``) are kept as received in every component, so a URI is
serialised exactly as it came; comparisons unescape first (RFC 3261 19.1.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from sipsca.errors import RemoteProtocolError

__all__ = ["SipUri", "parse_uri", "uri_equal"]

# RFC 3261 25.1: unreserved / escaped / user-unreserved; we accept the union of what
# the user, password and parameter productions allow and reject controls and spaces.
_USER_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,%]*$")
_HOSTNAME_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?$")
_IPV4_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_PARAM_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")

# Parameters that must match when present in either URI (RFC 3261 19.1.4).
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed URI. ``params`` keeps order and the original name case; lookups ignore case."""

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
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.params)

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with parameters set (None value = flag); existing names are replaced."""
        kept = [(k, v) for k, v in self.params if k.lower() not in params]
        return replace(self, params=(*kept, *params.items()), _text="")

    def without_params(self, *names: str) -> SipUri:
        drop = {n.lower() for n in names}
        return replace(self, params=tuple(p for p in self.params if p[0].lower() not in drop), _text="")

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
                userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
            out = f"{self.scheme}:{userinfo}{self.hostport}"
        for key, value in self.params:
            out += f";{key}" if value is None else f";{key}={value}"
        if self.headers:
            out += "?" + self.headers
        return out


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; any other absolute URI is kept opaque.

    Raises:
        RemoteProtocolError: malformed URI (status 400); unknown schemes are returned
            with ``is_sip`` False, not rejected, so callers can answer 416.
    """
    if not text or any(c in text for c in " \t\r\n<>\"") :
        raise RemoteProtocolError(f"Malformed URI {text!r}")
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.match(scheme):
        raise RemoteProtocolError(f"Malformed URI {text!r}")
    lscheme = scheme.lower()
    if lscheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number:
            raise RemoteProtocolError(f"Malformed tel URI {text!r}")
        return SipUri(scheme="tel", user=number, params=_parse_params(ptext, text), _text=text)
    if lscheme not in ("sip", "sips"):
        return SipUri(scheme=lscheme, user=text, _text=text)
    rest, _, headers = rest.partition("?")
    at = rest.rfind("@")
    user, password = "", None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
            if not _PASSWORD_RE.match(pw):
                raise RemoteProtocolError(f"Malformed password in URI {text!r}")
        if not user or not _USER_RE.match(user):
            raise RemoteProtocolError(f"Malformed user part in URI {text!r}")
    hostport, _, ptext = rest.partition(";")
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


def _parse_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, portpart = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or not _IPV6_RE.match(host) or (portpart and not portpart.startswith(":")):
            raise RemoteProtocolError(f"Malformed IPv6 reference in URI {text!r}")
        portpart = portpart[1:]
    else:
        host, _, portpart = hostport.partition(":")
        if _IPV4_RE.match(host):
            if any(int(o) > 255 for o in host.split(".")):
                raise RemoteProtocolError(f"Malformed IPv4 address in URI {text!r}")
        elif not _HOSTNAME_RE.match(host):
            raise RemoteProtocolError(f"Malformed host in URI {text!r}")
    port: int | None = None
    if portpart or hostport.endswith(":"):
        if not portpart.isdigit() or int(portpart) > 65535:
            raise RemoteProtocolError(f"Malformed port in URI {text!r}")
        port = int(portpart)
    return host, port


def _parse_params(ptext: str, text: str) -> tuple[tuple[str, str | None], ...]:
    if not ptext:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in ptext.split(";"):
        name, eq, value = item.partition("=")
        if not name or not _PARAM_RE.match(name) or (eq and not _PARAM_RE.match(value)):
            raise RemoteProtocolError(f"Malformed URI parameter {item!r} in {text!r}")
        params.append((name, value if eq else None))
    return tuple(params)


def uri_equal(a: SipUri, b: SipUri) -> bool:
    """URI equivalence per RFC 3261 19.1.4."""
    if a.scheme != b.scheme:
        return False
    if not a.is_sip:
        return str(a) == str(b)
    if unquote(a.user) != unquote(b.user) or (a.password or "") != (b.password or ""):
        return False
    if a.host.lower() != b.host.lower() or a.port != b.port:
        return False
    pa = {k.lower(): (v or "").lower() for k, v in a.params}
    pb = {k.lower(): (v or "").lower() for k, v in b.params}
    for name in _MUST_MATCH:
        if pa.get(name) != pb.get(name):
            return False
    if any(pa[k] != pb[k] for k in pa.keys() & pb.keys()):
        return False
    ha = sorted(unquote(h).lower() for h in a.headers.split("&") if h)
    hb = sorted(unquote(h).lower() for h in b.headers.split("&") if h)
    return ha == hb
