"""``sca.*`` RPC outputs and faults, as in sca-behaviour.md §7 and traces/10_rpc."""

from __future__ import annotations

import itertools

import pytest

from sipsca.config import ScaConfig
from sipsca.sca import (
    Appearance,
    AppearanceState,
    DeleteAppearance,
    PersistAppearance,
    ScaEngine,
    ScaRpcError,
    SendNotify,
)

from .factory import Party
from .harness import NOW, Harness

AOR = "sip:215@127.0.0.1"
A = Party("A", AOR, "sip:215@127.0.0.1:5081")
B = Party("B", AOR, "sip:215@127.0.0.1:5082")


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    for phone in (A, B):
        sub = harness.f.new_sub(phone)
        reply = harness.send_subscribe(harness.f.subscribe(sub, ruri=AOR, to_uri=AOR), sub)
        assert reply.status == 202
    harness.drain()
    return harness


def fault(call: object, *args: object, **kw: object) -> tuple[int, str]:
    with pytest.raises(ScaRpcError) as info:
        call(*args, **kw)  # type: ignore[operator]
    return info.value.code, info.value.message


def call_infos(h: Harness) -> list[str]:
    return [
        e.request.headers.get("call-info") or "" for e in h.drain() if isinstance(e, SendNotify)
    ]


def test_all_subscriptions(h: Harness) -> None:
    h.advance(1)
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "215 127.0.0.1:5082 call-info 3599 active",
        "215 127.0.0.1:5081 call-info 3599 active",
    ]


def test_all_subscriptions_unparseable_uri_falls_back_to_raw_fields() -> None:
    h = Harness()
    sub = h.f.new_sub(Party("X", "sip:1000@example.com", "sip:x@192.0.2.50"))
    h.send_subscribe(h.f.subscribe(sub, contact="<urn:uuid:1234>"), sub)
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        f"sip:1000@example.com urn:uuid:1234 call-info {int(NOW) + 3600} active"
    ]


def test_subscription_count(h: Harness) -> None:
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]
    assert h.engine.rpc_subscription_count("line-seize") == ["0 line-seize"]
    usage = "usage: sca.subscription_count {call-info | line-seize}"
    assert fault(h.engine.rpc_subscription_count, "foo") == (500, usage)


def test_show_subscription(h: Harness) -> None:
    expires = int(NOW) + 3600
    assert h.engine.rpc_show_subscription(AOR, "call-info", None) == [
        f"{AOR} call-info {B.contact} {expires}",
        f"{AOR} call-info {A.contact} {expires}",
    ]
    assert h.engine.rpc_show_subscription(AOR, "call-info", B.contact) == [
        f"{AOR} call-info {B.contact} {expires}"
    ]
    usage = "usage: sca.show_subscription sip:user@domain {call-info | line-seize} [sip:user@IP]"
    assert fault(h.engine.rpc_show_subscription, AOR, "dialog", None) == (500, usage)


def test_subscribers_sipsca_format(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    expires = int(NOW) + 3600
    assert h.engine.rpc_subscribers() == [
        f"{AOR} {B.contact} call-info active {expires}",
        f"{AOR} {A.contact} call-info active {expires}",
    ]


def test_seize_update_release_cycle_like_the_trace(h: Harness) -> None:
    assert h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now) == [
        f"Seized {AOR} appearance-index 1 for {A.contact}"
    ]
    assert (
        call_infos(h)
        == [
            "<sip:127.0.0.1>;appearance-index=1;appearance-state=seized,"
            "<sip:127.0.0.1>;appearance-index=*;appearance-state=idle"
        ]
        * 2
    )
    # empty fields print as empty strings (trailing spaces, as traces/06 shows)
    assert h.engine.rpc_all_appearances() == [f"{AOR} 1 seized {int(NOW)} {A.contact}    "]
    for bad in ("ringing", "bogus", "active-pending"):
        assert fault(h.engine.rpc_update_appearance, AOR, 1, bad, None, now=h.now) == (
            500,
            f"{bad}: invalid state",
        )
    # The trace also sets "idle" here; sipsca releases the appearance for it (compat.md,
    # test_update_to_idle_releases_like_release_appearance), so the cycle goes on without it.
    for state in ("alerting", "progressing", "active", "held", "held-private", "seized"):
        assert h.engine.rpc_update_appearance(AOR, 1, state, None, now=h.now) == []
        assert call_infos(h)[0].startswith(
            f"<sip:127.0.0.1>;appearance-index=1;appearance-state={state},"
        )
    h.engine.rpc_update_appearance(AOR, 1, "active", "Alice Example", now=h.now)
    assert call_infos(h)[0] == (
        "<sip:127.0.0.1>;appearance-index=1;appearance-state=active;"
        'appearance-uri="<Alice Example>",'
        "<sip:127.0.0.1>;appearance-index=*;appearance-state=idle"
    )
    assert h.engine.rpc_all_appearances() == [f"{AOR} 1 active {int(NOW)} {A.contact}    "]
    assert fault(h.engine.rpc_update_appearance, AOR, 7, "active", None, now=h.now) == (
        500,
        f"Failed to update {AOR} appearance-index 7",
    )
    assert h.engine.rpc_release_appearance(AOR, 1, now=h.now) == []
    assert call_infos(h) == ["<sip:127.0.0.1>;appearance-index=*;appearance-state=idle"] * 2
    assert fault(h.engine.rpc_release_appearance, AOR, 1, now=h.now) == (
        500,
        f"{AOR} appearance index 1 is not in use",
    )
    assert h.engine.rpc_all_appearances() == []


def test_rpc_active_is_not_purged(h: Harness) -> None:
    # Kamailio stores ACTIVE_PENDING for "active" and purges it 35 s later.
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    h.engine.rpc_update_appearance(AOR, 1, "active", None, now=h.now)
    h.advance(240)
    h.engine.handle_timer(h.now)
    assert h.states(AOR) == {1: "active"}


def test_seize_for_an_unknown_aor_creates_the_line(h: Harness) -> None:
    other = "sip:999@127.0.0.1"
    assert h.engine.rpc_seize_appearance(other, "sip:999@127.0.0.1:5099", now=h.now) == [
        f"Seized {other} appearance-index 1 for sip:999@127.0.0.1:5099"
    ]
    assert h.engine.is_line(other)
    assert h.engine.rpc_update_appearance(other, 1, "active", None, now=h.now) == []
    assert h.engine.rpc_release_appearance(other, 1, now=h.now) == []


def test_usage_and_argument_faults(h: Harness) -> None:
    assert fault(h.engine.rpc_seize_appearance, AOR, "", now=h.now) == (
        500,
        "usage: sca.seize_appearance sip:user@domain",
    )
    assert fault(h.engine.rpc_release_appearance, AOR, 0, now=h.now) == (
        500,
        "appearance-index must be > 0",
    )
    assert fault(h.engine.rpc_release_appearance, "sip:nobody@x", 1, now=h.now) == (
        500,
        "No appearances for sip:nobody@x",
    )
    assert fault(h.engine.rpc_update_appearance, AOR, 1, "", None, now=h.now) == (
        500,
        "Usage: sca.update_appearance sip:user@domain appearance-index "
        "appearance-state [appearance-uri]",
    )


def test_seize_fails_when_the_line_is_full() -> None:
    tags = itertools.count()
    engine = ScaEngine(ScaConfig(max_appearances=1), tag_factory=lambda: f"t{next(tags)}")
    engine.rpc_seize_appearance(AOR, A.contact, now=NOW)
    assert fault(engine.rpc_seize_appearance, AOR, B.contact, now=NOW) == (
        500,
        "Failed to seize line",
    )


def test_show_appearance(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    h.engine.rpc_seize_appearance(AOR, B.contact, now=h.now)
    assert h.engine.rpc_show_appearance(AOR, None) == h.engine.rpc_all_appearances()
    assert h.engine.rpc_show_appearance(AOR, 2) == [f"{AOR} 2 seized {int(NOW)} {B.contact}    "]
    assert fault(h.engine.rpc_show_appearance, AOR, 5) == (
        500,
        f"{AOR} appearance index 5 is not in use",
    )
    assert fault(h.engine.rpc_show_appearance, "sip:nobody@x", None) == (
        500,
        "No appearances for sip:nobody@x",
    )


def test_deactivate_all_and_one(h: Harness) -> None:
    assert h.engine.rpc_deactivate_subscription(AOR, "call-info", A.contact, now=h.now) == [
        f"Deactivating call-info subscription from {A.contact}"
    ]
    [notify] = [e for e in h.drain() if isinstance(e, SendNotify)]
    assert notify.request.headers.get("subscription-state") == "terminated;reason=deactivated"
    assert fault(h.engine.rpc_deactivate_subscription, AOR, "call-info", A.contact, now=h.now) == (
        500,
        f"No call-info subscription from {A.contact} to {AOR}",
    )
    assert fault(h.engine.rpc_deactivate_subscription, AOR, "x", A.contact, now=h.now)[0] == 500
    assert h.engine.rpc_deactivate_all_subscriptions(now=h.now) == [
        f"Deactivating call-info subscription from {B.contact}"
    ]
    h.advance(1)
    # Kamailio (traces/10_rpc) prints expires 0 minus now: -1795692981; sipsca prints 0.
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "215 127.0.0.1:5082 call-info 0 terminated;reason=deactivated",
        "215 127.0.0.1:5081 call-info 0 terminated;reason=deactivated",
    ]


def test_deactivated_line_seize_notify_is_index_only(h: Harness) -> None:
    # [K] renders a malformed header for line-seize here (§3.6); [R] the index.
    sub = h.f.new_sub(A, "line-seize")
    h.send_subscribe(h.f.line_seize(sub, 0, ruri=AOR, to_uri=AOR), sub)
    h.drain()
    h.engine.rpc_deactivate_subscription(AOR, "line-seize", A.contact, now=h.now)
    [notify] = [e for e in h.drain() if isinstance(e, SendNotify)]
    assert notify.request.headers.get("call-info") == "<sip:127.0.0.1>;appearance-index=1"


# -- sca.update_appearance ... idle -------------------------------------------------------

WILDCARD = "<sip:127.0.0.1>;appearance-index=*;appearance-state=idle"


def test_update_to_idle_releases_like_release_appearance(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    h.engine.rpc_seize_appearance(AOR, B.contact, now=h.now)
    h.drain()
    h.engine.rpc_update_appearance(AOR, 1, "held", None, now=h.now)
    h.drain()
    assert h.engine.rpc_update_appearance(AOR, 1, "idle", None, now=h.now) == []
    effects = h.drain()
    # the same broadcast as sca.release_appearance: index 1 is gone, not "1 idle"
    assert [e.request.headers.get("call-info") for e in effects if isinstance(e, SendNotify)] == [
        "<sip:127.0.0.1>;appearance-index=2;appearance-state=seized," + WILDCARD
    ] * 2
    assert [e for e in effects if isinstance(e, DeleteAppearance | PersistAppearance)] == [
        DeleteAppearance(aor=AOR, index=1)
    ]
    assert h.engine.rpc_all_appearances() == [f"{AOR} 2 seized {int(NOW)} {B.contact}    "]
    assert fault(h.engine.rpc_release_appearance, AOR, 1, now=h.now) == (
        500,
        f"{AOR} appearance index 1 is not in use",
    )
    # the index is free again: the next seize gets it
    assert h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now) == [
        f"Seized {AOR} appearance-index 1 for {A.contact}"
    ]


def test_update_last_appearance_to_idle_leaves_only_the_wildcard(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    h.drain()
    h.engine.rpc_update_appearance(AOR, 1, "idle", "Alice Example", now=h.now)
    assert call_infos(h) == [WILDCARD] * 2
    assert h.engine.rpc_all_appearances() == []
    assert h.engine.stats()["appearances_idle"] == 0
    h.advance(3000)  # no purge run ever needed, and nothing for it to do
    h.engine.handle_timer(h.now)
    assert call_infos(h) == []
    assert h.engine.rpc_all_appearances() == []


def test_purge_releases_an_idle_appearance_restored_from_storage(h: Harness) -> None:
    # A database written while update ... idle still stored the appearance.
    h.engine.restore(
        [], [Appearance(aor=AOR, index=1, state=AppearanceState.IDLE, owner=A.contact)], now=h.now
    )
    assert h.engine.rpc_all_appearances() == [f"{AOR} 1 idle 0 {A.contact}    "]
    h.engine.handle_timer(h.now)
    effects = h.drain()
    assert DeleteAppearance(aor=AOR, index=1) in effects
    assert [e.request.headers.get("call-info") for e in effects if isinstance(e, SendNotify)] == [
        WILDCARD
    ] * 2
    assert h.engine.rpc_all_appearances() == []


# -- seconds left and counts of terminated subscriptions -----------------------------------


def test_all_subscriptions_never_prints_negative_seconds(h: Harness) -> None:
    h.advance(3600 + 5)  # expired, not yet purged: Kamailio prints -5
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "215 127.0.0.1:5082 call-info 0 active",
        "215 127.0.0.1:5081 call-info 0 active",
    ]


def test_unsubscribed_subscription_shows_zero_seconds() -> None:
    h = Harness()
    sub = h.f.new_sub(A)
    h.send_subscribe(h.f.subscribe(sub, ruri=AOR, to_uri=AOR), sub)
    h.send_subscribe(h.f.subscribe(sub, ruri=AOR, to_uri=AOR, expires=0), sub)
    h.advance(2)  # traces/02_unsubscribe: Kamailio prints -2
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "215 127.0.0.1:5081 call-info 0 terminated"
    ]
    assert h.engine.rpc_subscription_count("call-info") == ["0 call-info"]


def test_subscription_count_and_gauge_leave_out_terminated_subscriptions(h: Harness) -> None:
    seize = h.f.new_sub(A, "line-seize")
    h.send_subscribe(h.f.line_seize(seize, 0, ruri=AOR, to_uri=AOR), seize)
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]
    assert h.engine.rpc_subscription_count("line-seize") == ["1 line-seize"]
    h.engine.rpc_deactivate_subscription(AOR, "call-info", A.contact, now=h.now)
    assert h.engine.rpc_subscription_count("call-info") == ["1 call-info"]
    assert h.engine.stats()["subscriptions_call_info"] == 1
    h.engine.rpc_deactivate_all_subscriptions(now=h.now)
    assert h.engine.rpc_subscription_count("call-info") == ["0 call-info"]
    assert h.engine.rpc_subscription_count("line-seize") == ["0 line-seize"]
    stats = h.engine.stats()
    assert (stats["subscriptions_call_info"], stats["subscriptions_line_seize"]) == (0, 0)
    # still listed (with their state) until the purge removes them
    assert len(h.engine.rpc_all_subscriptions(now=h.now)) == 3


# -- argument validation ----------------------------------------------------------------


def test_seize_rejects_an_aor_that_is_not_a_sip_uri(h: Harness) -> None:
    h.drain()
    for aor in ("garbage", "215@127.0.0.1", "1000", "tel:+15551234", f"{AOR};transport=udp"):
        assert fault(h.engine.rpc_seize_appearance, aor, A.contact, now=h.now) == (
            500,
            f"{aor}: invalid AoR",
        )
    assert fault(h.engine.rpc_seize_appearance, "garbage", "garbage", now=h.now) == (
        500,
        "garbage: invalid AoR",
    )
    assert h.engine.rpc_all_appearances() == []
    assert not h.engine.is_line("garbage")
    assert h.drain() == []  # nothing persisted, nobody notified


def test_seize_rejects_an_owner_that_is_not_a_sip_uri(h: Harness) -> None:
    h.drain()
    # "sipsca rpc sca.seize_appearance sip:215@... 1234" sends 1234 as a number -> "1234"
    for owner in ("1234", "garbage", "215@127.0.0.1:5081", "<sip:215@127.0.0.1:5081>"):
        assert fault(h.engine.rpc_seize_appearance, AOR, owner, now=h.now) == (
            500,
            f"{owner}: invalid contact",
        )
    assert h.engine.rpc_all_appearances() == []
    assert h.drain() == []
    # SIP and SIPS URIs, with URI parameters, are fine
    for owner in ("sip:215@127.0.0.1:5081;transport=tcp", "sips:215@example.com"):
        assert h.engine.rpc_seize_appearance(AOR, owner, now=h.now)[0].endswith(f"for {owner}")


def test_other_commands_reject_invalid_aor(h: Harness) -> None:
    h.engine.rpc_seize_appearance(AOR, A.contact, now=h.now)
    bad = "garbage"
    invalid = (500, f"{bad}: invalid AoR")
    assert fault(h.engine.rpc_update_appearance, bad, 1, "held", None, now=h.now) == invalid
    assert fault(h.engine.rpc_release_appearance, bad, 1, now=h.now) == invalid
    assert fault(h.engine.rpc_show_appearance, bad, None) == invalid
    assert fault(h.engine.rpc_show_subscription, bad, "call-info", None) == invalid
    assert fault(h.engine.rpc_deactivate_subscription, bad, "call-info", A.contact, now=h.now) == (
        invalid
    )
    # Kamailio's checks that come first keep their order and texts
    assert fault(h.engine.rpc_update_appearance, bad, 1, "busy", None, now=h.now) == (
        500,
        "busy: invalid state",
    )
    assert fault(h.engine.rpc_release_appearance, bad, 0, now=h.now) == (
        500,
        "appearance-index must be > 0",
    )
    assert fault(h.engine.rpc_show_subscription, bad, "dialog", None)[1].startswith("usage:")
    # valid but unknown AoRs keep Kamailio's answers
    assert h.engine.rpc_show_subscription("sip:nobody@x", "call-info", None) == []
    assert fault(h.engine.rpc_update_appearance, "sip:nobody@x", 1, "held", None, now=h.now) == (
        500,
        "Failed to update sip:nobody@x appearance-index 1",
    )


def test_show_and_deactivate_reject_invalid_contact(h: Harness) -> None:
    invalid = (500, "1234: invalid contact")
    assert fault(h.engine.rpc_show_subscription, AOR, "call-info", "1234") == invalid
    assert fault(h.engine.rpc_deactivate_subscription, AOR, "call-info", "1234", now=h.now) == (
        invalid
    )
    # a valid Contact that is not subscribed keeps its answers
    assert h.engine.rpc_show_subscription(AOR, "call-info", "sip:215@127.0.0.1:9") == []
    assert fault(
        h.engine.rpc_deactivate_subscription, AOR, "call-info", "sip:215@127.0.0.1:9", now=h.now
    ) == (500, f"No call-info subscription from sip:215@127.0.0.1:9 to {AOR}")


def test_stored_non_sip_names_stay_reachable() -> None:
    # A subscriber whose Contact is not a SIP URI, and a line that is not: what is stored
    # can still be shown, seized for and deactivated.
    h = Harness()
    sub = h.f.new_sub(Party("X", "sip:1000@example.com", "sip:x@192.0.2.50"))
    h.send_subscribe(h.f.subscribe(sub, contact="<urn:uuid:1234>"), sub)
    aor = "sip:1000@example.com"
    expires = int(NOW) + 3600
    assert h.engine.rpc_show_subscription(aor, "call-info", "urn:uuid:1234") == [
        f"{aor} call-info urn:uuid:1234 {expires}"
    ]
    assert h.engine.rpc_seize_appearance(aor, "urn:uuid:1234", now=h.now) == [
        f"Seized {aor} appearance-index 1 for urn:uuid:1234"
    ]
    assert h.engine.rpc_deactivate_subscription(aor, "call-info", "urn:uuid:1234", now=h.now) == [
        "Deactivating call-info subscription from urn:uuid:1234"
    ]
    held = Appearance(aor="1000", index=1, state=AppearanceState.HELD, owner=A.contact)
    h.engine.restore([], [held], now=h.now)
    assert h.engine.rpc_show_appearance("1000", None) == [f"1000 1 held 0 {A.contact}    "]
    assert h.engine.rpc_update_appearance("1000", 1, "active", None, now=h.now) == []
    assert h.engine.rpc_release_appearance("1000", 1, now=h.now) == []
