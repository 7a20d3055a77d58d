"""The SCA ``Call-Info`` header: lenient parsing of incoming values and exact rendering.

Parsing is lenient on purpose (decisions.md #6): Kamailio only looks at the *first*
Call-Info header and insists on a fixed byte sequence, so an icon or ``answer-after``
header in front of the SCA value, a space after ``;`` or a different parameter order
breaks SCA tracking. Here every Call-Info value is examined, parameters may come in any
order with whitespace, unknown parameters are ignored, and only values that carry an
``appearance-*`` parameter are SCA values (the only ones stripped before relaying).

Rendering is byte-exact with Kamailio (sca-behaviour.md §3.3-3.6): ``<sip:DOMAIN>``,
values joined by ``,`` without space, ascending index, idle wildcard last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sipsca.sca.model import Appearance, AppearanceState
from sipsca.sip.fields import split_values
from sipsca.sip.headers import Headers

__all__ = [
    "CallInfoScan",
    "CallInfoValue",
    "call_info_prefix",
    "domain_of",
    "escape_display",
    "is_sca_value",
    "make_appearance_uri",
    "parse_call_info_value",
    "render_appearance",
    "render_full_state",
    "render_index_only",
    "scan_call_info",
    "strip_sca_call_info",
]

_SCA_PARAMS = ("appearance-index", "appearance-state", "appearance-uri")
WILDCARD_INDEX = -1
"""``CallInfoValue.index`` of ``appearance-index=*``."""


@dataclass(frozen=True, slots=True)
class CallInfoValue:
    """One parsed SCA Call-Info value.

    ``index`` is None when the value has no usable ``appearance-index``,
    :data:`WILDCARD_INDEX` for ``*``; ``state`` is None when absent or unknown.
    ``appearance_uri`` is the quoted string's content, still backslash-escaped.
    """

    uri: str
    index: int | None
    state: AppearanceState | None = None
    appearance_uri: str | None = None


@dataclass(frozen=True, slots=True)
class CallInfoScan:
    """What a message's Call-Info headers say for SCA.

    ``present``: the message has at least one Call-Info header (any content).
    ``value``: the first SCA value with a numeric ``appearance-index`` (None if none).
    ``invalid``: SCA values were present but none had a numeric index (e.g. only
    ``appearance-index=*`` or a malformed value).
    """

    present: bool
    value: CallInfoValue | None
    invalid: bool

    @property
    def index(self) -> int:
        """The requested index, 0 ("any") when there is none."""
        return self.value.index if self.value is not None and self.value.index else 0


def _split_params(text: str) -> list[str]:
    """Split ``;a=1;b="x;y"`` on semicolons outside double quotes."""
    out: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _params_of(value: str) -> tuple[str, dict[str, str]] | None:
    """``<uri> ;p=v...`` -> (uri, {lower-name: value}); None when there is no ``<uri>``."""
    text = value.strip()
    if not text.startswith("<"):
        return None
    gt = text.find(">")
    if gt < 0:
        return None
    uri = text[1:gt].strip()
    rest = text[gt + 1 :].strip()
    if rest and not rest.startswith(";"):
        return None
    params: dict[str, str] = {}
    for item in _split_params(rest[1:]) if rest else []:
        name, _, val = item.partition("=")
        name = name.strip().lower()
        if name and name not in params:
            params[name] = val.strip()
    return uri, params


def is_sca_value(value: str) -> bool:
    """True for a Call-Info value that carries SCA information (an ``appearance-*`` param).

    A value we cannot parse counts as SCA when it mentions ``appearance-`` so that a
    broken SCA value is never leaked to the far end.
    """
    parsed = _params_of(value)
    if parsed is None:
        return "appearance-" in value.lower()
    return any(name in parsed[1] for name in _SCA_PARAMS)


_INDEX_DIGITS = 5
"""An appearance index has at most 5 digits (99,999 appearances): a longer one is malformed
(a 2**63 index was stored, then broke every database write)."""


def parse_call_info_value(value: str) -> CallInfoValue | None:
    """Parse one SCA value; None when it is not an SCA value or has no ``<uri>``."""
    parsed = _params_of(value)
    if parsed is None:
        return None
    uri, params = parsed
    if not any(name in params for name in _SCA_PARAMS):
        return None
    index: int | None = None
    raw_index = params.get("appearance-index")
    if raw_index is not None:
        if raw_index == "*":
            index = WILDCARD_INDEX
        elif raw_index.isascii() and raw_index.isdigit() and len(raw_index) <= _INDEX_DIGITS:
            index = int(raw_index)  # ASCII only: int() reads other scripts' digits too
    state: AppearanceState | None = None
    raw_state = params.get("appearance-state")
    if raw_state:
        try:
            state = AppearanceState.from_wire(raw_state.strip('"'))
        except ValueError:
            state = None
    app_uri = params.get("appearance-uri")
    if app_uri is not None and len(app_uri) >= 2 and app_uri[0] == app_uri[-1] == '"':
        app_uri = app_uri[1:-1]
    return CallInfoValue(uri=uri, index=index, state=state, appearance_uri=app_uri)


def scan_call_info(headers: Headers) -> CallInfoScan:
    """Look at every Call-Info value and pick the first SCA value with a numeric index."""
    fields = headers.get_all("call-info")
    if not fields:
        return CallInfoScan(present=False, value=None, invalid=False)
    saw_sca = False
    first_state_only: CallInfoValue | None = None
    for field in fields:
        for raw in split_values(field):
            if not is_sca_value(raw):
                continue
            saw_sca = True
            value = parse_call_info_value(raw)
            if value is None:
                continue
            if value.index is not None and value.index >= 0:
                return CallInfoScan(present=True, value=value, invalid=False)
            if value.index is None and first_state_only is None:
                first_state_only = value
    if first_state_only is not None:
        return CallInfoScan(present=True, value=first_state_only, invalid=False)
    return CallInfoScan(present=True, value=None, invalid=saw_sca)


def strip_sca_call_info(headers: Headers) -> int:
    """Remove SCA Call-Info values, keeping every other Call-Info value (decision #6).

    A header field that mixes SCA and non-SCA values is rewritten with the non-SCA
    values only (moved to the end of the header list). Returns the number of SCA values
    removed.
    """
    removed = 0
    rewritten: list[str] = []
    for field in headers.get_all("call-info"):
        values = split_values(field)
        sca = [v for v in values if is_sca_value(v)]
        if not sca:
            continue
        removed += len(sca)
        kept = [v for v in values if not is_sca_value(v)]
        headers.remove_if("call-info", _equals(field))
        if kept:
            rewritten.append(", ".join(kept))
    for value in rewritten:
        headers.add("Call-Info", value)
    return removed


def _equals(target: str) -> Callable[[str], bool]:
    def predicate(value: str) -> bool:
        return value == target

    return predicate


def domain_of(aor: str) -> str:
    """Everything after the first ``@`` of the AoR, else after the first ``:`` (§3.3)."""
    at = aor.find("@")
    if at >= 0:
        return aor[at + 1 :]
    colon = aor.find(":")
    return aor[colon + 1 :] if colon >= 0 else aor


def call_info_prefix(aor: str, mode: str = "domain") -> str:
    """The ``<...>`` that starts every rendered value: ``<sip:DOMAIN>`` or ``<AoR>``."""
    if mode == "aor":
        return f"<{aor}>"
    return f"<sip:{domain_of(aor)}>"


def render_appearance(prefix: str, appearance: Appearance) -> str:
    """``<sip:D>;appearance-index=N;appearance-state=S[;appearance-uri="U"]``."""
    text = (
        f"{prefix};appearance-index={appearance.index}"
        f";appearance-state={appearance.state.wire_name}"
    )
    if appearance.uri:
        text += f';appearance-uri="{appearance.uri}"'
    return text


def render_full_state(aor: str, appearances: Iterable[Appearance], mode: str = "domain") -> str:
    """The call-info NOTIFY value: every stored appearance then the idle wildcard."""
    prefix = call_info_prefix(aor, mode)
    parts = [render_appearance(prefix, a) for a in sorted(appearances, key=lambda a: a.index)]
    parts.append(f"{prefix};appearance-index=*;appearance-state=idle")
    return ",".join(parts)


def render_index_only(aor: str, index: int, mode: str = "domain") -> str:
    """The line-seize NOTIFY value (and the member INVITE value): index only (§3.6)."""
    return f"{call_info_prefix(aor, mode)};appearance-index={index}"


def escape_display(display: str) -> str:
    """Backslash-escape ``'``, ``"`` and ``\\`` (NUL becomes ``\\0``), as Kamailio does."""
    out: list[str] = []
    for c in display:
        if c in "'\"\\":
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\0")
        else:
            out.append(c)
    return "".join(out)


def make_appearance_uri(display: str, uri: str) -> str:
    """The stored appearance-uri: ``<uri>`` or ``DISPLAY <uri>`` (display escaped, §3.4).

    ``display`` is the display-name token exactly as it appeared (with its quotes).
    """
    display = display.strip()
    if display:
        return f"{escape_display(display)} <{uri}>"
    return f"<{uri}>"
