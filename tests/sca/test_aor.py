"""AoR derivation (sca-behaviour.md §1.5) and line identification (decisions.md #13)."""

from __future__ import annotations

import pytest

from sipsca.config import LineConfig, ScaConfig
from sipsca.sca.aor import LineDirectory, canonical_aor, truncate_aor
from sipsca.sip import parse_name_addr


@pytest.mark.parametrize(
    ("uri", "aor"),
    [
        ("sip:1000@example.com;user=phone", "sip:1000@example.com"),
        ("sip:1000@example.com:5060", "sip:1000@example.com:5060"),
        ("SIP:1000@Example.COM", "SIP:1000@Example.COM"),  # no normalisation
    ],
)
def test_truncate(uri: str, aor: str) -> None:
    assert truncate_aor(uri) == aor


@pytest.mark.parametrize(
    ("addr", "contact", "aor"),
    [
        ("<sip:1000@example.com>;tag=x", "sip:1000@192.0.2.10:5060", "sip:1000@example.com"),
        ("<sip:1000@example.com;user=phone>", None, "sip:1000@example.com"),
        ("<sip:1000@example.com>", "sip:192.0.2.10", "sip:1000@example.com"),
        ("<sip:alice@example.com>", "sip:1000@192.0.2.10", "sip:1000@example.com"),
        ("<sip:alice@example.com:5080>", "sip:1000@192.0.2.10", "sip:1000@example.com:5080"),
        ('"Bob" <sip:bob@example.com>', "sip:bob@198.51.100.7", "sip:bob@example.com"),
        ("<sip:1000@example.com>", "sip:bob@198.51.100.7", "sip:bob@example.com"),
        ("<tel:+15551234>", "sip:x@192.0.2.1", "tel:+15551234"),
    ],
)
def test_canonical_aor(addr: str, contact: str | None, aor: str) -> None:
    assert canonical_aor(parse_name_addr(addr), contact) == aor


LINE = "sip:1000@example.com"
CONFIG = ScaConfig(
    lines=(
        LineConfig(
            aor=LINE,
            members=("alice", "sip:bob@example.com"),
            aliases=("+15551234", "sip:did@gw.example.net", "tel:+15559999"),
        ),
    )
)


def test_aliases_map_to_their_line() -> None:
    directory = LineDirectory(CONFIG)
    assert directory.alias_target("sip:+15551234@gw.example.net;user=phone") == LINE
    assert directory.alias_target("sip:did@gw.example.net") == LINE
    assert directory.alias_target("tel:+15559999") == LINE
    assert directory.alias_target("sip:2000@example.com") is None
    no_alias = LineDirectory(ScaConfig(lines=CONFIG.lines, line_identification=("to",)))
    assert no_alias.alias_target("sip:did@gw.example.net") is None


def test_callee_candidates_order() -> None:
    directory = LineDirectory(CONFIG)
    to = parse_name_addr("<sip:+15551234@gw.example.net>")
    assert directory.callee_candidates(to, "sip:1000@example.com;user=phone") == [
        "sip:+15551234@gw.example.net",
        LINE,
    ]


def test_subscribe_candidates() -> None:
    directory = LineDirectory(ScaConfig())
    assert directory.subscribe_candidates("sip:1000@example.com;user=phone", "sip:x@y") == [
        "sip:1000@example.com",
        "sip:x@y",
    ]
    only_to = LineDirectory(ScaConfig(line_identification=("to",)))
    assert only_to.subscribe_candidates("sip:1000@example.com", "sip:x@y") == ["sip:x@y"]


def test_caller_candidates_need_from() -> None:
    from_ = parse_name_addr("<sip:alice@example.com>;tag=1")
    assert LineDirectory(ScaConfig()).caller_candidates(from_, "sip:1000@10.0.0.1") == [
        "sip:1000@example.com",
        "sip:alice@example.com",
    ]
    assert (
        LineDirectory(ScaConfig(line_identification=("to",))).caller_candidates(from_, None) == []
    )


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ("sip:alice@example.com", True),
        ("alice", True),
        ("sip:bob@example.com;transport=tcp", True),
        ("bob", True),
        ("sip:bob@other.net", False),
        ("sip:mallory@example.com", False),
    ],
)
def test_membership(user: str, allowed: bool) -> None:
    directory = LineDirectory(CONFIG)
    assert directory.is_member(LINE, user) is allowed
    assert directory.is_member("sip:open@example.com", "sip:anyone@x")
