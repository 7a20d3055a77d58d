"""Which shared line (AoR) a message is about (sca-behaviour.md §1.5, decisions.md #13).

Kamailio compares AoRs as exact, case-sensitive strings built from the message:
the Request-URI or To URI truncated at the first ``;``, and for the calling side a
"canonical AoR" made of the From host and the Contact user. sipsca keeps these rules
(phones are configured around them) and adds, per ``ScaConfig.line_identification``:

* ``request_uri`` - the Request-URI identifies the line (SUBSCRIBE; INVITE to a line);
* ``to``          - the To URI identifies the line (SUBSCRIBE; requests to a line);
* ``from``        - the From URI (canonical and plain) identifies the calling line;
* ``alias``       - URIs, numbers or DIDs listed in ``LineConfig.aliases`` map to their line
  (fixes Kamailio issue #103: a gateway sending ``To: +15551234``).

Candidates are tried in that order and the first one that is a *known* line wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sipsca.config import LineConfig, ScaConfig
from sipsca.errors import RemoteProtocolError
from sipsca.sip.fields import NameAddr, parse_name_addr
from sipsca.sip.message import SipMessage
from sipsca.sip.uri import SipUri, parse_uri

__all__ = [
    "LineDirectory",
    "canonical_aor",
    "contact_uri",
    "parse_uri_or_none",
    "truncate_aor",
    "user_of",
]


def truncate_aor(uri_text: str) -> str:
    """A URI truncated at its first ``;`` (Kamailio's AoR rule; a port is kept)."""
    return uri_text.split(";", 1)[0].strip()


def parse_uri_or_none(uri_text: str) -> SipUri | None:
    try:
        return parse_uri(uri_text)
    except RemoteProtocolError:
        return None


def user_of(uri_text: str) -> str:
    """User part of a URI ('' when none or unparseable); the number of a tel: URI."""
    uri = parse_uri_or_none(truncate_aor(uri_text))
    return uri.user if uri is not None and uri.scheme in ("sip", "sips", "tel") else ""


def contact_uri(message: SipMessage) -> str | None:
    """The URI of the message's first Contact (no ``<>``, header params dropped).

    None when there is no Contact or it cannot be parsed; never raises, because call
    tracking must not break forwarding.
    """
    raw = message.headers.get("contact")
    if raw is None:
        return None
    try:
        values = message.headers.values("contact")
        if not values or values[0].strip() == "*":
            return None
        return parse_name_addr(values[0], "Contact").uri_text
    except RemoteProtocolError:
        return None


def canonical_aor(addr: NameAddr, contact: str | None) -> str:
    """Kamailio's ``sca_create_canonical_aor_for_ua`` (§1.5).

    The From (requests) or To (replies) URI truncated at ``;``; when the Contact has a
    user part different from that URI's user, ``scheme:<contact user>@<host>[:port]``
    instead (a handset whose Contact user is the line's user maps onto the line).
    """
    base = truncate_aor(addr.uri_text)
    if not contact:
        return base
    base_uri = parse_uri_or_none(base)
    contact_parsed = parse_uri_or_none(contact)
    if base_uri is None or contact_parsed is None or not base_uri.is_sip:
        return base
    if not contact_parsed.is_sip or not contact_parsed.user:
        return base
    if contact_parsed.user == base_uri.user:
        return base
    port = f":{base_uri.port}" if base_uri.port is not None else ""
    return f"{base_uri.scheme}:{contact_parsed.user}@{base_uri.host}{port}"


_CANDIDATE_CACHE_SIZE = 4096


class LineDirectory:
    """Configured lines, their aliases and members, and the line-identification rules."""

    def __init__(self, config: ScaConfig) -> None:
        self._sources = frozenset(config.line_identification)
        self._lines: dict[str, LineConfig] = {line.aor: line for line in config.lines}
        self._aliases: dict[str, str] = {}
        for line in config.lines:
            for alias in line.aliases:
                self._aliases[alias.strip()] = line.aor
        # Candidate lists are pure functions of the message's URI strings and of the
        # configuration, and call tracking asks for both sides of every INVITE, BYE and
        # response it sees: they are memoised (bounded: cleared when full).
        self._candidates: dict[tuple[str, str, str | None], tuple[str, ...]] = {}

    @property
    def configured_lines(self) -> list[str]:
        return list(self._lines)

    def uses(self, source: str) -> bool:
        return source in self._sources

    def config_of(self, aor: str) -> LineConfig | None:
        return self._lines.get(aor)

    def alias_target(self, uri_text: str) -> str | None:
        """The line an alias URI/number means, or None (only with ``alias`` enabled)."""
        if "alias" not in self._sources or not self._aliases:
            return None
        text = truncate_aor(uri_text)
        hit = self._aliases.get(text)
        if hit is not None:
            return hit
        user = user_of(text)
        if user:
            return self._aliases.get(user) or self._aliases.get(f"tel:{user}")
        return None

    def _expand(self, candidates: Iterable[str]) -> list[str]:
        out: list[str] = []
        for candidate in candidates:
            if not candidate:
                continue
            for value in (candidate, self.alias_target(candidate)):
                if value and value not in out:
                    out.append(value)
        return out

    @staticmethod
    def pick(candidates: list[str], is_line: Callable[[str], bool]) -> str | None:
        for candidate in candidates:
            if is_line(candidate):
                return candidate
        return None

    def _memo(
        self, key: tuple[str, str, str | None], compute: Callable[[], list[str]]
    ) -> list[str]:
        hit = self._candidates.get(key)
        if hit is None:
            if len(self._candidates) >= _CANDIDATE_CACHE_SIZE:
                self._candidates.clear()
            hit = self._candidates[key] = tuple(compute())
        return list(hit)

    def subscribe_candidates(self, ruri: str, to_uri: str) -> list[str]:
        """Out-of-dialog SUBSCRIBE: Request-URI, then To (each truncated), then aliases."""
        return self._memo(("subscribe", ruri, to_uri), lambda: self._subscribe(ruri, to_uri))

    def _subscribe(self, ruri: str, to_uri: str) -> list[str]:
        raw: list[str] = []
        if "request_uri" in self._sources or "to" not in self._sources:
            raw.append(truncate_aor(ruri))
        if "to" in self._sources:
            raw.append(truncate_aor(to_uri))
        return self._expand(raw)

    def caller_candidates(self, from_: NameAddr, contact: str | None) -> list[str]:
        """The calling side of a request: canonical From AoR, then plain From, then aliases."""
        if "from" not in self._sources:
            return []
        return self._memo(("caller", from_.uri_text, contact), lambda: self._caller(from_, contact))

    def _caller(self, from_: NameAddr, contact: str | None) -> list[str]:
        return self._expand([canonical_aor(from_, contact), truncate_aor(from_.uri_text)])

    def callee_candidates(self, to: NameAddr, ruri: str | None) -> list[str]:
        """The called side of a request: To (truncated), then the Request-URI, then aliases."""
        return self._memo(("callee", to.uri_text, ruri), lambda: self._callee(to.uri_text, ruri))

    def _callee(self, to_uri: str, ruri: str | None) -> list[str]:
        raw: list[str] = []
        if "to" in self._sources:
            raw.append(truncate_aor(to_uri))
        if ruri and "request_uri" in self._sources:
            raw.append(truncate_aor(ruri))
        return self._expand(raw)

    def is_member(self, aor: str, user: str) -> bool:
        """May ``user`` (an AoR or a username) use line ``aor``? True when no members listed."""
        line = self._lines.get(aor)
        if line is None or not line.members:
            return True
        user_aor = truncate_aor(user)
        user_name = user_of(user_aor) if ":" in user_aor else user_aor
        for member in line.members:
            member = member.strip()
            if ":" in member:
                if truncate_aor(member) == user_aor:
                    return True
                if ":" not in user_aor and user_of(member) == user_name:
                    return True
            elif member == user_name:
                return True
        return False
