"""Target ordering from bindings (q-values, expiry) and the 16.5 target set."""

from __future__ import annotations

from sipsca.proxy.targets import Target, TargetSet, ordered_targets
from sipsca.registrar.model import Binding

NOW = 1_700_000_000.0


def binding(
    contact: str,
    *,
    q: float = 1.0,
    expires_in: float = 600,
    updated: float = 0.0,
    path: tuple[str, ...] = (),
    received: str = "",
    instance_id: str = "",
) -> Binding:
    return Binding(
        aor="sip:bob@example.com",
        contact=contact,
        expires_at=NOW + expires_in,
        q=q,
        updated_at=NOW - 1000 + updated,
        path=path,
        received=received,
        instance_id=instance_id,
    )


def contacts(groups: list[list[Binding]]) -> list[list[str]]:
    return [[b.contact for b in group] for group in groups]


def test_groups_by_q_highest_first() -> None:
    bindings = [
        binding("sip:a@h", q=0.5),
        binding("sip:b@h", q=1.0),
        binding("sip:c@h", q=0.5),
        binding("sip:d@h", q=0.1),
    ]
    assert contacts(ordered_targets(bindings, now=NOW)) == [
        ["sip:b@h"],
        ["sip:a@h", "sip:c@h"],
        ["sip:d@h"],
    ]


def test_expired_bindings_are_dropped() -> None:
    bindings = [
        binding("sip:a@h", expires_in=0),
        binding("sip:b@h", expires_in=-5),
        binding("sip:c@h"),
    ]
    assert contacts(ordered_targets(bindings, now=NOW)) == [["sip:c@h"]]
    assert ordered_targets([binding("sip:a@h", expires_in=0)], now=NOW) == []


def test_most_recent_registration_first_within_a_group() -> None:
    bindings = [binding("sip:old@h", updated=1), binding("sip:new@h", updated=50)]
    assert contacts(ordered_targets(bindings, now=NOW)) == [["sip:new@h", "sip:old@h"]]


def test_float_noise_does_not_split_a_q_group() -> None:
    bindings = [binding("sip:a@h", q=0.7), binding("sip:b@h", q=0.1 * 7)]
    assert len(ordered_targets(bindings, now=NOW)) == 1


def test_target_set_dedupes_equal_uris() -> None:
    ts = TargetSet()
    assert ts.add(Target(uri="sip:bob@192.0.2.9;transport=udp"))
    assert not ts.add(Target(uri="sip:bob@192.0.2.9;TRANSPORT=UDP"))  # RFC 3261 19.1.4 equal
    assert not ts.add(Target(uri="sip:bob@192.0.2.9;transport=udp", q=0.2))
    assert ts.add(Target(uri="sip:bob@192.0.2.9:5062"))
    assert len(ts) == 2


def test_a_tried_uri_is_not_added_again() -> None:
    ts = TargetSet()
    ts.add(Target(uri="sip:a@h"))
    assert ts.take_all()[0].uri == "sip:a@h"
    assert not ts
    assert not ts.add(Target(uri="sip:a@h"))


def test_unparsable_uris_compare_as_text() -> None:
    ts = TargetSet()
    assert ts.add(Target(uri="sip:bad uri"))
    assert not ts.add(Target(uri="sip:bad uri"))
    assert ts.add(Target(uri="sip:a@h"))


def test_add_bindings_keeps_path_flow_and_instance() -> None:
    ts = TargetSet()
    added = ts.add_bindings(
        [
            binding(
                "<sip:bob@192.0.2.9:5062;ob>",
                q=0.5,
                path=("<sip:edge.example.net;lr>",),
                received="tcp:198.51.100.7:40000",
                instance_id="<urn:uuid:1>",
            ),
            binding("sip:bob@192.0.2.10", q=0.9),
            binding("sip:bob@192.0.2.10", q=0.3),  # same URI twice: once
            binding("sip:gone@192.0.2.11", expires_in=-1),
        ],
        now=NOW,
    )
    assert added == 2
    first, second = ts.take_all()
    assert (first.uri, first.q) == ("sip:bob@192.0.2.10", 0.9)
    assert second == Target(
        uri="sip:bob@192.0.2.9:5062;ob",
        q=0.5,
        path=("<sip:edge.example.net;lr>",),
        received="tcp:198.51.100.7:40000",
        instance_id="<urn:uuid:1>",
    )


def test_next_group_walks_q_groups() -> None:
    ts = TargetSet()
    for uri, q in [("sip:a@h", 0.5), ("sip:b@h", 1.0), ("sip:c@h", 0.5)]:
        ts.add(Target(uri=uri, q=q))
    assert [t.uri for t in ts.next_group()] == ["sip:b@h"]
    assert [t.uri for t in ts.next_group()] == ["sip:a@h", "sip:c@h"]
    assert ts.next_group() == []
