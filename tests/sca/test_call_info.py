"""Call-Info: lenient parsing (decisions.md #6), selective stripping, exact rendering (§3.3-3.6)."""

from __future__ import annotations

import pytest

from sipsca.sca.call_info import (
    WILDCARD_INDEX,
    call_info_prefix,
    domain_of,
    escape_display,
    is_sca_value,
    make_appearance_uri,
    parse_call_info_value,
    render_full_state,
    render_index_only,
    scan_call_info,
    strip_sca_call_info,
)
from sipsca.sca.model import Appearance, AppearanceState
from sipsca.sip import Headers

AOR = "sip:1000@example.com"


def headers(*values: str) -> Headers:
    return Headers.from_pairs([("Call-Info", v) for v in values])


@pytest.mark.parametrize(
    ("value", "index", "state"),
    [
        ("<sip:example.com>;appearance-index=1", 1, None),
        ("<sip:example.com>; appearance-index = 2 ;appearance-state=held", 2, "held"),
        ("<sip:example.com>;appearance-state=seized;appearance-index=3", 3, "seized"),
        ("<sip:1000@example.com>;APPEARANCE-INDEX=4;foo=bar", 4, None),
        ("<sips:example.com>;appearance-index=0", 0, None),
        ("<sip:example.com>;appearance-index=*;appearance-state=idle", WILDCARD_INDEX, "idle"),
        ("<sip:example.com>;appearance-index=5;appearance-state=bogus", 5, None),
        ("<sip:example.com>;appearance-index=x", None, None),
    ],
)
def test_lenient_parse(value: str, index: int | None, state: str | None) -> None:
    parsed = parse_call_info_value(value)
    assert parsed is not None
    assert parsed.index == index
    assert (parsed.state.value if parsed.state else None) == state


def test_appearance_uri_keeps_escapes_and_semicolons() -> None:
    parsed = parse_call_info_value(
        r'<sip:example.com>;appearance-index=1;appearance-uri="\"B;ob\" <sip:bob@x>"'
    )
    assert parsed is not None
    assert parsed.appearance_uri == r"\"B;ob\" <sip:bob@x>"


@pytest.mark.parametrize(
    "value",
    ["<http://example.com/a.png>;purpose=icon", "<sip:x>;answer-after=0", "<sip:x>"],
)
def test_non_sca_values(value: str) -> None:
    assert not is_sca_value(value)
    assert parse_call_info_value(value) is None


def test_value_without_brackets_is_sca_but_unparseable() -> None:
    assert is_sca_value("sip:example.com;appearance-index=1")
    assert parse_call_info_value("sip:example.com;appearance-index=1") is None


def test_scan_skips_icons_and_finds_the_sca_value_anywhere() -> None:
    scan = scan_call_info(
        headers("<http://x/a.png>;purpose=icon, <sip:example.com>;appearance-index=2")
    )
    assert scan.present and scan.index == 2 and not scan.invalid


def test_scan_results() -> None:
    assert not scan_call_info(Headers()).present
    only_icon = scan_call_info(headers("<http://x/a.png>;purpose=icon"))
    assert only_icon.present and only_icon.value is None and not only_icon.invalid
    wildcard = scan_call_info(headers("<sip:example.com>;appearance-index=*"))
    assert wildcard.invalid and wildcard.value is None and wildcard.index == 0
    state_only = scan_call_info(headers("<sip:example.com>;appearance-state=held-private"))
    assert state_only.value is not None
    assert state_only.value.state is AppearanceState.HELD_PRIVATE and state_only.index == 0


def test_strip_only_sca_values() -> None:
    h = Headers.from_pairs(
        [
            ("Call-Info", "<http://x/a.png>;purpose=icon"),
            ("Subject", "hi"),
            ("Call-Info", "<sip:example.com>;appearance-index=1"),
            ("Call-Info", "<sip:example.com>;appearance-index=2, <http://x/b.png>;purpose=info"),
        ]
    )
    assert strip_sca_call_info(h) == 2
    assert h.get_all("call-info") == [
        "<http://x/a.png>;purpose=icon",
        "<http://x/b.png>;purpose=info",
    ]
    assert h.get("subject") == "hi"
    assert strip_sca_call_info(h) == 0


@pytest.mark.parametrize(
    ("aor", "domain"),
    [
        ("sip:1000@example.com", "example.com"),
        ("sip:1000@example.com:5060", "example.com:5060"),
        ("sip:example.com", "example.com"),
        ("sips:1000@example.com", "example.com"),
    ],
)
def test_domain_of(aor: str, domain: str) -> None:
    assert domain_of(aor) == domain
    assert call_info_prefix(aor) == f"<sip:{domain}>"  # always sip:, even for sips: AoRs


def test_prefix_aor_mode() -> None:
    assert call_info_prefix(AOR, "aor") == "<sip:1000@example.com>"


def _app(index: int, state: AppearanceState, uri: str = "") -> Appearance:
    return Appearance(aor=AOR, index=index, state=state, uri=uri)


def test_render_full_state_matches_kamailio_literal_example() -> None:
    # sca-behaviour.md §3.9, the broadcast example.
    rendered = render_full_state(
        AOR,
        [
            _app(2, AppearanceState.HELD, make_appearance_uri('"Bob"', "sip:bob@example.com")),
            _app(1, AppearanceState.SEIZED),
        ],
    )
    assert rendered == (
        "<sip:example.com>;appearance-index=1;appearance-state=seized,"
        "<sip:example.com>;appearance-index=2;appearance-state=held;"
        'appearance-uri="\\"Bob\\" <sip:bob@example.com>",'
        "<sip:example.com>;appearance-index=*;appearance-state=idle"
    )


def test_render_idle_and_pending() -> None:
    assert render_full_state(AOR, []) == (
        "<sip:example.com>;appearance-index=*;appearance-state=idle"
    )
    assert render_full_state(AOR, [_app(3, AppearanceState.ACTIVE_PENDING)]).startswith(
        "<sip:example.com>;appearance-index=3;appearance-state=active,"
    )
    assert render_full_state(AOR, [_app(1, AppearanceState.IDLE)]).startswith(
        "<sip:example.com>;appearance-index=1;appearance-state=idle,"
    )


def test_render_index_only() -> None:
    assert render_index_only(AOR, 4) == "<sip:example.com>;appearance-index=4"
    assert render_index_only(AOR, 4, "aor") == "<sip:1000@example.com>;appearance-index=4"


@pytest.mark.parametrize(
    ("display", "uri", "stored"),
    [
        ('"Bob Smith"', "sip:bob@example.com", r"\"Bob Smith\" <sip:bob@example.com>"),
        ("Bob", "sip:bob@example.com", "Bob <sip:bob@example.com>"),
        ("", "sip:bob@example.com", "<sip:bob@example.com>"),
        ('"O\'Neil \\\\"', "sip:o@x", '\\"O\\\'Neil \\\\\\\\\\" <sip:o@x>'),
    ],
)
def test_appearance_uri_quoting(display: str, uri: str, stored: str) -> None:
    assert make_appearance_uri(display, uri) == stored


def test_escape_nul() -> None:
    assert escape_display("a\0b") == "a\\0b"
