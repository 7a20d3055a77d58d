"""The 63 scenarios of sca-behaviour.md §9, one test each.

Where decisions.md rules against Kamailio ([K]) the recommended result ([R]) is what is
asserted, and the test says which decision; everything else is Kamailio's behaviour.
The harness plays the proxy: requests go through ``on_request`` before they would be
forwarded, responses through ``on_response`` before they would be relayed upstream.

Common setup (``line`` fixture): AoR ``sip:1000@example.com``, phones A
(``sip:1000@192.0.2.10:5060``) and B (``...11``) with call-info subscriptions of 3600 s,
B created after A, so broadcasts reach B first (Kamailio's bucket order).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sipsca.config import LineConfig, ScaConfig
from sipsca.sca import (
    DeleteSubscription,
    PersistAppearance,
    PersistSubscription,
    ScaEngine,
    ScaEvent,
    ScaRpcError,
    SendNotify,
    SubscriptionState,
)
from sipsca.sca.engine import CSEQ_RESTORE_GAP
from sipsca.sip import SipRequest, make_response

from .factory import AOR, BOB, CAROL, PREFIX, WILDCARD, A, B, C, Call, Party, SubDialog, sdp
from .harness import NOW, Harness, Notify

A_URI, B_URI, C_URI = A.contact, B.contact, C.contact


def ci(*appearances: str) -> str:
    """A full-state call-info value: the given appearances, then the idle wildcard."""
    return ",".join([*appearances, WILDCARD])


def app(index: int, state: str, uri: str | None = None) -> str:
    text = f"{PREFIX};appearance-index={index};appearance-state={state}"
    return text + (f';appearance-uri="{uri}"' if uri else "")


def idx(index: int) -> str:
    return f"{PREFIX};appearance-index={index}"


BOB_URI = r"\"Bob\" <sip:bob@example.com>"
CAROL_URI = r"\"Carol\" <sip:carol@carrier.net>"


def summary(notifies: list[Notify]) -> list[tuple[str, str, str, str]]:
    """(target, event, Subscription-State, Call-Info) of each NOTIFY, in order."""
    return [(n.target, n.event, n.state, n.call_info) for n in notifies]


def broadcast(
    value: str, *, a: str = "active;expires=3600", b: str = "active;expires=3600"
) -> list[tuple[str, str, str, str]]:
    """The broadcast of the ``line`` fixture: B first, then A."""
    return [
        (B_URI, "call-info", b, value),
        (A_URI, "call-info", a, value),
    ]


def seized_call(h: Harness, *, index: int = 1) -> tuple[SubDialog, Call]:
    """A line-seizes ``index`` and INVITEs Bob with it (tags a1 / b1); effects drained."""
    ls = h.f.new_sub(A, "line-seize")
    assert h.seize(ls, index).status == 200
    call = h.f.new_call(A, BOB, from_tag="a1")
    h.request(h.f.invite(call, call_info=idx(index)))
    h.drain()
    return ls, call


def established(h: Harness) -> tuple[Call, SubDialog]:
    """Scenario 28's call: seized, ringing, answered by Bob (tag b1), ACKed."""
    ls, call = seized_call(h)
    return _answer(h, call), ls


def _answer(h: Harness, call: Call) -> Call:
    original = _first_invite(h, call)
    h.relay(h.f.response(original, 180, call=call, to_tag="b1", contact=BOB.contact), original)
    h.relay(
        h.f.response(original, 200, call=call, to_tag="b1", contact=BOB.contact, body=sdp()),
        original,
    )
    h.ack(h.f.ack(call))
    h.drain()
    return call


def _first_invite(h: Harness, call: Call) -> SipRequest:
    """Rebuild the INVITE as the UAC sent it (same Call-ID, tag and CSeq 1)."""
    saved = dict(call.cseqs)
    call.cseqs["caller"] = 0
    invite = h.f.invite(call, call_info=idx(1))
    call.cseqs.update(saved)
    return invite


# --------------------------------------------------------------------------- SUBSCRIBE / call-info


def test_scenario_01_call_info_subscribe_reply_and_first_notify() -> None:
    h = Harness(user_agent="sipsca-test")
    sub = h.f.new_sub(A)
    reply = h.subscribe(sub, expires=7200, record_route=("<sip:p1.example.com;lr>",))
    assert (reply.status, reply.reason) == (202, "Accepted")
    # Record-Route copied as in every 180-299 reply of Kamailio (RFC 3261 12.1.1), so the
    # phone's refreshes go through the record-routing proxy too.
    assert reply.headers.values("record-route") == ["<sip:p1.example.com;lr>"]
    names = [n for n, _ in reply.headers if n != "Record-Route"]
    assert names[5:] == ["Event", "Contact", "Allow-Events", "Expires"]
    assert reply.headers.get("event") == "call-info"
    assert reply.headers.get("contact") == "sip:1000@example.com"
    assert reply.headers.get("allow-events") == "call-info, line-seize"
    assert reply.headers.get("expires") == "3600"
    our_tag = reply.to.tag
    assert our_tag == "T1"
    [notify] = h.notifies()
    assert notify.target == A_URI
    assert notify.header_names() == [
        "To", "From", "CSeq", "Call-ID", "Route", "Max-Forwards", "Content-Length",
        "User-Agent", "Contact", "Call-Info", "Event", "Subscription-State",
    ]  # fmt: skip
    headers = notify.request.headers
    assert headers.get("to") == f"<{AOR}>;tag={sub.from_tag}"
    assert headers.get("from") == f"<{AOR}>;tag={our_tag}"
    assert headers.get("cseq") == "1 NOTIFY"
    assert headers.get("call-id") == sub.call_id
    assert headers.get("route") == "<sip:p1.example.com;lr>"
    assert headers.get("max-forwards") == "70"
    assert headers.get("content-length") == "0"
    assert headers.get("contact") == AOR
    assert notify.call_info == WILDCARD
    assert notify.event == "call-info"
    # decisions.md #1: the first NOTIFY carries ;expires= too ([K] sends plain "active").
    assert notify.state == "active;expires=3600"
    assert notify.request.body == b""


def test_scenario_02_server_address_is_the_contact() -> None:
    h = Harness(ScaConfig(server_address="sip:10.10.10.10:5060"))
    sub = h.f.new_sub(A)
    reply = h.subscribe(sub)
    assert reply.headers.get("contact") == "sip:10.10.10.10:5060"
    [notify] = h.notifies()
    assert notify.request.headers.get("contact") == "sip:10.10.10.10:5060"
    h.engine.rpc_seize_appearance(AOR, B_URI, now=h.now)
    assert [n.request.headers.get("contact") for n in h.notifies()] == ["sip:10.10.10.10:5060"]


def test_scenario_03_event_header_checks(h: Harness) -> None:
    # decisions.md #7: no/unknown event -> 489 + Allow-Events ([K] 400 Missing/Bad Event).
    missing = h.send_subscribe(h.f.subscribe(h.f.new_sub(A), omit=("Event",)))
    assert (missing.status, missing.reason) == (489, "Bad Event")
    assert missing.headers.get("allow-events") == "call-info, line-seize"
    presence = h.send_subscribe(h.f.subscribe(h.f.new_sub(A), event="presence"))
    assert (presence.status, presence.headers.get("allow-events")) == (
        489,
        "call-info, line-seize",
    )
    assert h.notifies() == []
    # decisions.md #7: event parameters are allowed; the id is echoed ([K] 400 Bad Event).
    sub = h.f.new_sub(A)
    reply = h.subscribe(sub, event="call-info;id=7")
    assert reply.status == 202
    assert reply.headers.get("event") == "call-info;id=7"
    [notify] = h.notifies()
    assert notify.event == "call-info;id=7"


def test_scenario_04_unparseable_expires(h: Harness) -> None:
    reply = h.send_subscribe(
        h.f.subscribe(h.f.new_sub(A), expires=None, extra=(("Expires", "abc"),))
    )
    assert (reply.status, reply.reason) == (400, "Bad Shared Call Appearance Request")
    assert h.notifies() == []


def test_scenario_05_from_without_tag(h: Harness) -> None:
    request = h.f.subscribe(h.f.new_sub(A))
    request.headers.set("From", f"<{AOR}>")
    reply = h.send_subscribe(request)
    assert (reply.status, reply.reason) == (400, "Bad Shared Call Appearance Request")
    assert h.notifies() == []


@pytest.mark.parametrize(
    "contact", ["<sip:a@192.0.2.1>, <sip:b@192.0.2.2>", "*", None], ids=["two", "star", "none"]
)
def test_scenario_06_contact_must_be_exactly_one(h: Harness, contact: str | None) -> None:
    if contact is None:
        # [K] accepts a SUBSCRIBE without Contact (undefined); [R] 400 (sca-behaviour §2.2).
        request = h.f.subscribe(h.f.new_sub(A), omit=("Contact",))
    else:
        request = h.f.subscribe(h.f.new_sub(A), contact=contact)
    reply = h.send_subscribe(request)
    assert (reply.status, reply.reason) == (400, "Bad Shared Call Appearance Request")
    assert h.notifies() == []
    assert h.engine.rpc_subscription_count("call-info") == ["0 call-info"]


def test_scenario_07_missing_expires_gets_the_package_default(h: Harness) -> None:
    # decisions.md #12: the package default, not Kamailio's "Expires: 0 / terminated".
    reply = h.subscribe(h.f.new_sub(A), expires=None)
    assert (reply.status, reply.headers.get("expires")) == (202, "3600")
    [notify] = h.notifies()
    assert notify.state == "active;expires=3600"
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "1000 192.0.2.10:5060 call-info 3600 active"
    ]
    seize = h.seize(h.f.new_sub(A, "line-seize"), 0, expires=None)
    assert (seize.status, seize.headers.get("expires")) == (200, "15")


def test_scenario_08_to_tag_without_subscription_is_481(h: Harness) -> None:
    sub = h.f.new_sub(A)
    sub.to_tag = "made-up"
    reply = h.subscribe(sub)
    assert (reply.status, reply.reason) == (481, "Call Leg/Transaction Does Not Exist")
    assert reply.to.tag == "made-up"
    assert h.notifies() == []


def test_scenario_09_in_dialog_refresh(h: Harness, line: dict[str, SubDialog]) -> None:
    h.advance(60)
    reply = h.subscribe(line["A"], expires=3600)
    assert (reply.status, reply.headers.get("expires")) == (202, "3600")
    assert reply.to.tag == line["A"].to_tag
    [notify] = h.notifies()
    assert notify.target == A_URI and notify.call_id == line["A"].call_id
    assert notify.cseq == 2  # greater than the first NOTIFY's 1
    assert notify.call_info == WILDCARD
    assert notify.state == "active;expires=3600"


def test_scenario_10_in_dialog_unsubscribe(h: Harness, line: dict[str, SubDialog]) -> None:
    reply = h.subscribe(line["A"], expires=0)
    assert (reply.status, reply.headers.get("expires")) == (202, "0")
    effects = h.drain()
    [notify] = [Notify(e) for e in effects if isinstance(e, SendNotify)]
    assert (notify.target, notify.state, notify.call_info) == (A_URI, "terminated", WILDCARD)
    # Storage forgets it at once (decisions.md #11), memory keeps it until the purge.
    assert DeleteSubscription(key=(AOR, ScaEvent.CALL_INFO, A_URI)) in effects
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "1000 192.0.2.11:5060 call-info 3600 active",
        "1000 192.0.2.10:5060 call-info 0 terminated",
    ]
    # decisions.md #1: a terminated subscription gets no broadcasts ([K] it still does).
    h.engine.rpc_seize_appearance(AOR, B_URI, now=h.now)
    assert [n.target for n in h.notifies()] == [B_URI]
    h.advance(120)
    h.engine.handle_timer(h.now)
    notifies = h.notifies()
    assert A_URI not in [n.target for n in notifies]
    assert h.engine.rpc_subscription_count("call-info") == ["1 call-info"]


@pytest.mark.parametrize("field", ["call_id", "from_tag", "to_tag"])
def test_scenario_10_in_dialog_subscribe_of_another_dialog_is_481(
    h: Harness, line: dict[str, SubDialog], field: str
) -> None:
    """decisions/compat: an in-dialog SUBSCRIBE must name the stored dialog; [K] matched
    the Contact alone, so a forged one could end or redirect a member's subscription."""
    forged = replace(line["A"])
    setattr(forged, field, "forged")
    for expires in (0, 3600):
        reply = h.subscribe(forged, expires=expires)
        assert (reply.status, reply.reason) == (481, "Call Leg/Transaction Does Not Exist")
    assert h.notifies() == []
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "1000 192.0.2.11:5060 call-info 3600 active",
        "1000 192.0.2.10:5060 call-info 3600 active",
    ]
    seize = replace(h.f.new_sub(A, "line-seize"), to_tag="forged")
    assert h.seize(seize, 1).status == 481


def test_scenario_11_resubscribe_from_rebooted_phone_releases_its_appearances(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    h.outgoing(A, BOB)
    h.drain()
    assert h.states() == {1: "active"}
    fresh = h.f.new_sub(A)
    reply = h.subscribe(fresh)
    assert reply.status == 202
    assert h.states() == {}
    notifies = h.notifies()
    assert summary(notifies) == [
        (A_URI, "call-info", "active;expires=3600", WILDCARD),
        *broadcast(WILDCARD),
    ]
    assert notifies[0].call_id == fresh.call_id
    assert notifies[2].call_id == fresh.call_id  # the broadcast uses A's new dialog


def test_scenario_12_resubscribe_without_appearances(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    h.engine.rpc_seize_appearance(AOR, B_URI, now=h.now)
    h.drain()
    reply = h.subscribe(h.f.new_sub(A))
    assert reply.status == 202
    assert summary(h.notifies()) == [
        (A_URI, "call-info", "active;expires=3600", ci(app(1, "seized")))
    ]


def test_scenario_13_in_dialog_to_uri_must_equal_the_aor(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    reply = h.subscribe(line["A"], to_uri=f"{AOR};user=phone")
    assert (reply.status, reply.reason) == (481, "Call Leg/Transaction Does Not Exist")
    assert h.notifies() == []


# --------------------------------------------------------------------------- SUBSCRIBE / line-seize


def test_scenario_14_line_seize_grants_lowest_index(h: Harness, line: dict[str, SubDialog]) -> None:
    ls = h.f.new_sub(A, "line-seize")
    reply = h.seize(ls, 0, expires=60)
    assert (reply.status, reply.reason) == (200, "OK")
    assert reply.headers.get("event") == "line-seize"
    assert reply.headers.get("expires") == "15"
    notifies = h.notifies()
    assert summary(notifies) == [
        (A_URI, "line-seize", "active;expires=15", idx(1)),  # decisions.md #1: ;expires
        *broadcast(ci(app(1, "seized"))),
    ]
    assert notifies[0].call_id == ls.call_id
    assert notifies[0].request.headers.get("from") == f"<{AOR}>;tag={ls.to_tag}"


def test_scenario_15_line_seize_without_call_info(h: Harness, line: dict[str, SubDialog]) -> None:
    reply = h.subscribe(h.f.new_sub(A, "line-seize"), expires=15)
    assert (reply.status, reply.reason) == (400, "Bad Request - missing Call-Info header")
    assert h.notifies() == []


def test_scenario_16_line_seize_call_info_parsing(h: Harness, line: dict[str, SubDialog]) -> None:
    for value in (f"{PREFIX};appearance-index=*", "sip:example.com;appearance-index=1"):
        reply = h.seize(h.f.new_sub(A, "line-seize"), call_info=value)
        assert (reply.status, reply.reason) == (400, "Bad Request - Invalid Call-Info header")
    assert h.notifies() == []
    # decisions.md #6: lenient parsing - a space after ';' is fine ([K] 400).
    reply = h.seize(h.f.new_sub(A, "line-seize"), call_info=f"{PREFIX}; appearance-index=1")
    assert reply.status == 200
    assert h.states() == {1: "seized"}


def test_scenario_17_index_taken_gives_480(h: Harness, line: dict[str, SubDialog]) -> None:
    h.seize(h.f.new_sub(A, "line-seize"), 1)
    h.drain()
    reply = h.seize(h.f.new_sub(B, "line-seize"), 1)
    assert (reply.status, reply.reason) == (480, "Temporarily Unavailable")
    assert reply.headers.get("retry-after") == "1"
    assert h.notifies() == []
    assert h.engine.rpc_subscription_count("line-seize") == ["1 line-seize"]


def test_scenario_18_lowest_gap_then_any_index(h: Harness, line: dict[str, SubDialog]) -> None:
    h.seize(h.f.new_sub(A, "line-seize"), 1)
    h.seize(h.f.new_sub(C, "line-seize"), 3)
    b_sub = h.f.new_sub(B, "line-seize")
    assert h.seize(b_sub, 0).status == 200
    assert h.states() == {1: "seized", 2: "seized", 3: "seized"}
    h.drain()
    reply = h.seize(h.f.new_sub(B, "line-seize"), 7)
    assert reply.status == 200
    assert summary(h.notifies())[0] == (B_URI, "line-seize", "active;expires=15", idx(7))
    assert sorted(h.states()) == [1, 2, 3, 7]


def test_scenario_19_line_seize_for_unknown_line(h: Harness, line: dict[str, SubDialog]) -> None:
    sub = h.f.new_sub(A, "line-seize")
    other = "sip:2000@example.com"
    reply = h.send_subscribe(h.f.line_seize(sub, 0, ruri=other, to_uri=other))
    assert (reply.status, reply.reason) == (500, "Internal Server Error - seize appearance index")
    assert h.notifies() == []
    # sipsca: a line configured in ScaConfig.lines is known without any subscription.
    configured = Harness(ScaConfig(lines=(LineConfig(aor="sip:2000@example.com"),)))
    sub = configured.f.new_sub(A, "line-seize")
    reply = configured.send_subscribe(configured.f.line_seize(sub, 0, ruri=other, to_uri=other))
    assert reply.status == 200


def test_scenario_20_line_seize_release(h: Harness, line: dict[str, SubDialog]) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    h.drain()
    reply = h.seize(ls, 1, expires=0)
    assert (reply.status, reply.headers.get("expires")) == (200, "0")
    assert h.states() == {}
    assert summary(h.notifies()) == [
        (A_URI, "line-seize", "terminated", idx(1)),
        *broadcast(WILDCARD),
    ]


def test_scenario_21_release_of_unused_index(h: Harness, line: dict[str, SubDialog]) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    h.drain()
    reply = h.seize(ls, 4, expires=0)
    assert (reply.status, reply.reason) == (500, "Internal Server Error - release seized line")
    assert h.notifies() == []


def test_scenario_22_line_seize_refresh(h: Harness, line: dict[str, SubDialog]) -> None:
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    h.drain()
    h.advance(10)
    reply = h.seize(ls, 1, expires=15)
    assert reply.status == 200
    assert h.states() == {1: "seized"}
    notifies = h.notifies()
    assert summary(notifies) == [
        (A_URI, "line-seize", "active;expires=15", idx(1)),
        *broadcast(ci(app(1, "seized")), a="active;expires=3590", b="active;expires=3590"),
    ]
    assert notifies[0].cseq == 2


def test_scenario_23_unused_seize_expires(h: Harness, line: dict[str, SubDialog]) -> None:
    h.seize(h.f.new_sub(A, "line-seize"), 1)
    h.drain()
    h.advance(120)
    h.engine.handle_timer(h.now)
    assert summary(h.notifies()) == [
        (A_URI, "line-seize", "terminated;reason=timeout", idx(1)),
        *broadcast(WILDCARD, a="active;expires=3480", b="active;expires=3480"),
    ]
    assert h.states() == {}
    assert h.engine.rpc_subscription_count("line-seize") == ["0 line-seize"]


def test_scenario_24_rpc_seize_is_purged_as_stale(h: Harness, line: dict[str, SubDialog]) -> None:
    h.advance(10)
    assert h.engine.rpc_seize_appearance(AOR, A_URI, now=h.now) == [
        f"Seized {AOR} appearance-index 1 for {A_URI}"
    ]
    h.drain()
    h.advance(110)  # first purge tick (t0 + 120): only 110 s old
    h.engine.handle_timer(h.now)
    assert h.states() == {1: "seized"} and h.notifies() == []
    h.advance(120)  # next tick: 230 s old
    h.engine.handle_timer(h.now)
    assert h.states() == {}
    assert [n.call_info for n in h.notifies()] == [WILDCARD, WILDCARD]


# --------------------------------------------------------------------------- outgoing calls


def test_scenario_25_invite_on_seized_appearance(h: Harness, line: dict[str, SubDialog]) -> None:
    h.seize(h.f.new_sub(A, "line-seize"), 1)
    h.drain()
    call = h.f.new_call(A, BOB, from_tag="a1")
    invite = h.f.invite(call, call_info=idx(1))
    outcome = h.request(invite)
    assert outcome.reject is None and outcome.retrieval_target is None
    assert invite.headers.get("call-info") is None  # stripped before forwarding
    assert summary(h.notifies()) == broadcast(ci(app(1, "seized")))
    [appearance] = h.engine.appearances(AOR)
    assert (appearance.call_id, appearance.from_tag, appearance.to_tag) == (call.call_id, "a1", "")


@pytest.mark.parametrize("first", [180, 183])
def test_scenario_26_first_18x_is_progressing(
    h: Harness, line: dict[str, SubDialog], first: int
) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, first, call=call, contact=BOB.contact), invite)
    assert summary(h.notifies()) == [
        (A_URI, "line-seize", "terminated;reason=noresource", idx(1)),
        *broadcast(ci(app(1, "progressing"))),
    ]
    for later in (180, 183):
        h.relay(h.f.response(invite, later, call=call, contact=BOB.contact), invite)
    assert h.notifies() == []


def test_scenario_27_183_first_is_never_alerting(h: Harness, line: dict[str, SubDialog]) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 183, call=call, contact=BOB.contact), invite)
    assert [n.call_info for n in h.notifies()][1:] == [ci(app(1, "progressing"))] * 2
    assert h.states() == {1: "progressing"}


def test_scenario_28_answer_adds_pai_and_shows_remote(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 180, call=call, to_tag="b1", contact=BOB.contact), invite)
    h.drain()
    ok = h.f.response(invite, 200, call=call, to_tag="b1", contact=BOB.contact, body=sdp())
    h.relay(ok, invite)
    assert ok.headers.get("p-asserted-identity") == '"Bob" <sip:bob@example.com>'
    assert summary(h.notifies()) == broadcast(ci(app(1, "active", BOB_URI)))
    h.ack(h.f.ack(call))
    assert h.notifies() == []  # Bob is no line: nothing on the ACK


@pytest.mark.parametrize("with_call_info", [False, True])
def test_scenario_29_bye_from_the_line(
    h: Harness, line: dict[str, SubDialog], with_call_info: bool
) -> None:
    call, _ = established(h)
    bye = h.f.bye(call, call_info=idx(1) if with_call_info else None)
    h.request(bye)
    assert summary(h.notifies()) == broadcast(WILDCARD)
    h.relay(h.f.response(bye, 200), bye)
    assert h.notifies() == []
    assert h.states() == {}


def test_scenario_30_cancel_before_answer(h: Harness, line: dict[str, SubDialog]) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 180, call=call, contact=BOB.contact), invite)
    h.drain()
    h.request(h.f.cancel(call, invite))
    assert summary(h.notifies()) == broadcast(WILDCARD)
    h.relay(h.f.response(invite, 487, call=call), invite)
    assert h.notifies() == []
    assert h.states() == {}


def test_scenario_31_busy_before_any_18x(h: Harness, line: dict[str, SubDialog]) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 486, call=call), invite)
    assert summary(h.notifies()) == [
        (A_URI, "line-seize", "terminated;reason=noresource", idx(1)),
        *broadcast(WILDCARD),
    ]
    assert h.states() == {}


def test_scenario_32_busy_after_180(h: Harness, line: dict[str, SubDialog]) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 180, call=call, contact=BOB.contact), invite)
    h.drain()
    h.relay(h.f.response(invite, 486, call=call), invite)
    assert summary(h.notifies()) == broadcast(WILDCARD)
    assert h.states() == {}


def test_scenario_33_locally_generated_failures(h: Harness, line: dict[str, SubDialog]) -> None:
    # The proxy's own 404 (no binding) is fed to on_response like a relayed reply
    # (sipsca's equivalent of Kamailio's sl callback). 407 changes nothing (decisions #3).
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(make_response(invite, 407), invite)
    assert h.notifies() == [] and h.states() == {1: "seized"}
    h.relay(make_response(invite, 404), invite)
    assert summary(h.notifies()) == [
        (A_URI, "line-seize", "terminated;reason=noresource", idx(1)),
        *broadcast(WILDCARD),
    ]
    assert h.states() == {}


def test_scenario_34_redirect_changes_nothing(h: Harness, line: dict[str, SubDialog]) -> None:
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 302, call=call, contact="sip:bob@192.0.2.77"), invite)
    assert h.notifies() == []
    assert h.states() == {1: "seized"}


def test_scenario_35_181_is_only_provisional(h: Harness, line: dict[str, SubDialog]) -> None:
    # decisions.md #3: [K] releases the appearance on 181.
    _, call = seized_call(h)
    invite = _first_invite(h, call)
    h.relay(h.f.response(invite, 181, call=call, contact=BOB.contact), invite)
    assert h.notifies() == []
    assert h.states() == {1: "seized"}


def test_scenario_36_outgoing_call_without_seize_gets_an_appearance(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    # decisions.md #8: lowest free index ([K]: the call stays invisible).
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(call)
    original = invite.copy()
    h.request(invite)
    assert summary(h.notifies()) == broadcast(ci(app(1, "seized")))
    h.relay(h.f.response(original, 180, call=call, contact=BOB.contact), original)
    assert [n.call_info for n in h.notifies()] == [ci(app(1, "progressing"))] * 2
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    assert [n.call_info for n in h.notifies()] == [ci(app(1, "active", BOB_URI))] * 2
    # With the setting off, Kamailio's behaviour: no appearance.
    k = Harness(ScaConfig(outgoing_auto_appearance=False))
    k.call_info_line(A, B)
    k.request(k.f.invite(k.f.new_call(A, BOB)))
    assert [n.call_info for n in k.notifies()] == [WILDCARD, WILDCARD]
    assert k.states() == {}


# ---------------------------------------------------------------- hold / resume / retrieval


def reinvite(
    h: Harness, call: Call, body: str | None, call_info: str | None = idx(1), by: str = "caller"
) -> SipRequest:
    request = h.f.invite(call, body=body, call_info=call_info, by=by)
    original = request.copy()
    h.request(request)
    return original


def test_scenario_37_hold_with_sendonly(h: Harness, line: dict[str, SubDialog]) -> None:
    call, _ = established(h)
    original = reinvite(h, call, sdp("sendonly"))
    assert summary(h.notifies()) == broadcast(ci(app(1, "held", BOB_URI)))
    ok = h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp("recvonly"))
    h.relay(ok, original)
    # Kamailio notifies again on the 200 (trace 01) and adds P-Asserted-Identity.
    assert summary(h.notifies()) == broadcast(ci(app(1, "held", BOB_URI)))
    assert ok.headers.get("p-asserted-identity") == '"Bob" <sip:bob@example.com>'


def test_scenario_38_private_hold(h: Harness, line: dict[str, SubDialog]) -> None:
    call, _ = established(h)
    reinvite(h, call, sdp("sendonly"), f"{PREFIX};appearance-index=1;appearance-state=held-private")
    assert summary(h.notifies()) == broadcast(ci(app(1, "held-private", BOB_URI)))


def test_scenario_39_hold_with_zero_address(h: Harness, line: dict[str, SubDialog]) -> None:
    call, _ = established(h)
    reinvite(h, call, sdp("sendrecv", zero=True))
    assert h.states() == {1: "held"}


def test_scenario_40_session_level_sendonly_is_hold(h: Harness, line: dict[str, SubDialog]) -> None:
    # decisions.md #5: [K] misses session-level direction attributes.
    call, _ = established(h)
    reinvite(h, call, sdp("sendonly", session_level=True))
    assert [n.call_info for n in h.notifies()] == [ci(app(1, "held", BOB_URI))] * 2


def test_scenario_41_resume(h: Harness, line: dict[str, SubDialog]) -> None:
    call, _ = established(h)
    reinvite(h, call, sdp("sendonly"))
    h.drain()
    reinvite(h, call, sdp("sendrecv"))
    assert summary(h.notifies()) == broadcast(ci(app(1, "active", BOB_URI)))


def test_scenario_42_music_on_hold_via_ack(h: Harness, line: dict[str, SubDialog]) -> None:
    call, _ = established(h)
    original = reinvite(h, call, "")
    assert [n.call_info for n in h.notifies()] == [ci(app(1, "active", BOB_URI))] * 2
    h.relay(h.f.response(original, 200, call=call, contact=BOB.contact, body=sdp()), original)
    h.drain()
    h.ack(h.f.ack(call, body=sdp("sendonly")))
    assert summary(h.notifies()) == broadcast(ci(app(1, "held", BOB_URI)))


def test_scenario_43_reinvite_without_call_info_found_by_dialog(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    call, _ = established(h)
    reinvite(h, call, sdp("sendonly"), call_info=None)
    assert h.states() == {1: "held"}
    # A call A *answered*: the tags are reversed; decisions.md #2 finds it anyway
    # ([K] "Failed to update ... appearance-index 0").
    h2 = Harness()
    h2.call_info_line(A, B)
    incoming = h2.f.new_call(CAROL, Party("line", AOR, A.contact))
    incoming.answerer = A.contact
    invite = h2.f.invite(incoming)
    original = invite.copy()
    h2.request(invite)
    h2.relay(h2.f.response(original, 200, call=incoming, contact=A.contact, body=sdp()), original)
    h2.ack(h2.f.ack(incoming))
    h2.drain()
    reinvite(h2, incoming, sdp("sendonly"), call_info=None, by="callee")
    assert h2.states() == {1: "held"}


def held_call(h: Harness, *, private: bool = False) -> Call:
    """Scenario 44's setup: A's call to Bob (Call-ID C1, tags a1/b1) held on index 1."""
    ls = h.f.new_sub(A, "line-seize")
    h.seize(ls, 1)
    call = h.f.new_call(A, BOB, call_id="C1", from_tag="a1")
    h.request(h.f.invite(call, call_info=idx(1)))
    _answer(h, call)
    state = ";appearance-state=held-private" if private else ""
    reinvite(h, call, sdp("sendonly"), f"{PREFIX};appearance-index=1{state}")
    h.drain()
    return call


def retrieval_invite(h: Harness) -> tuple[Call, SipRequest]:
    line_party = Party("line", AOR, B.contact)
    retrieve = h.f.new_call(B, line_party, call_id="C2", from_tag="n1", ruri=AOR)
    return retrieve, h.f.invite(retrieve, call_info=idx(1))


def test_scenario_44_retrieval_of_a_held_call(h: Harness, line: dict[str, SubDialog]) -> None:
    call = held_call(h)
    retrieve, invite = retrieval_invite(h)
    original = invite.copy()
    outcome = h.request(invite)
    assert outcome.retrieval_target == BOB.contact
    assert invite.uri == AOR  # as received: the runtime sends the copy to the target
    assert invite.headers.get("call-info") is None
    assert invite.headers.get("replaces") == "C1;to-tag=b1;from-tag=a1"
    assert summary(h.notifies()) == broadcast(ci(app(1, "active", BOB_URI)))
    [appearance] = h.engine.appearances(AOR)
    assert (appearance.owner, appearance.call_id) == (B_URI, "C2")
    ok = h.f.response(original, 200, call=retrieve, to_tag="bb2", contact=BOB.contact, body=sdp())
    h.relay(ok, original)
    assert ok.headers.get("p-asserted-identity") == "<sip:bob@example.com>"
    assert [n.call_info for n in h.notifies()] == [
        ci(app(1, "active", "<sip:bob@example.com>"))
    ] * 2
    h.ack(h.f.ack(retrieve))
    h.drain()
    # Bob hangs up the replaced dialog with A: index 1 (now B's) is not touched.
    h.request(h.f.bye(call, by="callee"))
    assert h.notifies() == []
    assert h.states() == {1: "active"}


def test_scenario_45_private_hold_cannot_be_retrieved(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    # decisions.md #4: 403 ([K] the 403 is unreachable; the INVITE is an ordinary call).
    held_call(h, private=True)
    _, invite = retrieval_invite(h)
    outcome = h.request(invite)
    assert outcome.reject is not None
    assert (outcome.reject.status, outcome.reject.reason) == (403, "Forbidden - private call")
    assert outcome.retrieval_target is None
    assert invite.uri == AOR and invite.headers.get("replaces") is None
    assert h.notifies() == []
    [appearance] = h.engine.appearances(AOR)
    assert (appearance.state.value, appearance.owner, appearance.call_id) == (
        "held-private",
        A_URI,
        "C1",
    )


def test_scenario_46_retrieval_of_an_active_index_is_an_ordinary_call(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    established(h)
    _, invite = retrieval_invite(h)
    outcome = h.request(invite)
    assert outcome.retrieval_target is None and outcome.reject is None
    assert invite.uri == AOR
    assert invite.headers.get("replaces") is None
    first, second = h.engine.appearances(AOR)
    assert (first.index, first.state.value, first.owner, first.from_tag) == (
        1,
        "active",
        A_URI,
        "a1",
    )
    # compat 32: B's ordinary call names a taken index, so it is shown on the lowest free
    # one, like any outgoing call without a seize ([K] shows nothing for it)
    assert (second.index, second.state.value, second.owner) == (2, "seized", B_URI)


# --------------------------------------------------------------------------- incoming calls


def incoming(h: Harness) -> tuple[Call, SipRequest]:
    """Carol calls the line; the INVITE the proxy forks to A and B."""
    call = h.f.new_call(CAROL, Party("line", AOR, B.contact), from_tag="c1")
    invite = h.f.invite(call)
    return call, invite


def test_scenario_47_incoming_call_alerting_then_active(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    call, invite = incoming(h)
    original = invite.copy()
    outcome = h.request(invite)
    # decisions.md #8: alerting while it rings, Call-Info for the forked INVITEs
    # ([K]: nothing until the answer).
    assert outcome.member_call_info == "<sip:example.com>;appearance-index=1"
    assert summary(h.notifies()) == broadcast(ci(app(1, "alerting", CAROL_URI)))
    for phone in (A, B):
        h.relay(
            h.f.response(original, 180, call=call, to_tag=f"r{phone.name}", contact=phone.contact),
            original,
        )
    assert h.notifies() == []
    call.answerer = B.contact
    ok = h.f.response(original, 200, call=call, to_tag="bt", contact=B.contact, body=sdp())
    h.relay(ok, original)
    assert summary(h.notifies()) == broadcast(ci(app(1, "active", CAROL_URI)))
    h.ack(h.f.ack(call))
    assert h.notifies() == []  # already announced on the 200: no duplicate on the ACK
    [appearance] = h.engine.appearances(AOR)
    assert (appearance.state.value, appearance.owner) == ("active", B_URI)
    # decisions.md #2: no purge while the call is up ([K]: idle after 35 s + purge).
    h.advance(35 + 120)
    h.engine.handle_timer(h.now)
    assert h.notifies() == []
    assert h.states() == {1: "active"}


def test_scenario_48_answer_names_another_index(h: Harness, line: dict[str, SubDialog]) -> None:
    call, invite = incoming(h)
    original = invite.copy()
    h.request(invite)
    h.drain()
    call.answerer = B.contact
    ok = h.f.response(
        original, 200, call=call, to_tag="bt", contact=B.contact, call_info=idx(2), body=sdp()
    )
    h.relay(ok, original)
    assert ok.headers.get("call-info") is None  # not leaked to the caller
    assert h.states() == {2: "active-pending"}
    h.ack(h.f.ack(call))
    assert h.states() == {2: "active"}
    assert h.notifies()[-1].call_info == ci(app(2, "active", CAROL_URI))


def test_scenario_49_caller_hangs_up(h: Harness, line: dict[str, SubDialog]) -> None:
    # decisions.md #2: removed at once ([K]: the BYE matches nothing).
    call, invite = incoming(h)
    original = invite.copy()
    h.request(invite)
    call.answerer = B.contact
    h.relay(
        h.f.response(original, 200, call=call, to_tag="bt", contact=B.contact, body=sdp()), original
    )
    h.ack(h.f.ack(call))
    h.drain()
    h.request(h.f.bye(call))
    assert summary(h.notifies()) == broadcast(WILDCARD)
    assert h.states() == {}


# --------------------------------------------------------------------------- Call-Info handling


def test_scenario_50_non_sca_call_info_is_kept(h: Harness, line: dict[str, SubDialog]) -> None:
    # decisions.md #6: [K] stops SCA processing and forwards everything unchanged.
    h.seize(h.f.new_sub(A, "line-seize"), 1)
    h.drain()
    call = h.f.new_call(A, BOB)
    invite = h.f.invite(
        call,
        extra=(
            ("Call-Info", "<http://example.com/a.png>;purpose=icon"),
            ("Call-Info", f"{PREFIX};appearance-index=1"),
        ),
    )
    h.request(invite)
    assert invite.headers.get_all("call-info") == ["<http://example.com/a.png>;purpose=icon"]
    [appearance] = h.engine.appearances(AOR)
    assert appearance.call_id == call.call_id
    assert [n.call_info for n in h.notifies()] == [ci(app(1, "seized"))] * 2


def test_scenario_51_sca_call_info_between_non_sca_users(h: Harness) -> None:
    call = h.f.new_call(BOB, CAROL)
    invite = h.f.invite(call, call_info="<sip:x.com>;appearance-index=1")
    h.request(invite)
    assert invite.headers.get("call-info") is None
    assert h.drain() == []


def test_scenario_52_line_without_subscribers_is_forgotten(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    for sub in line.values():
        h.subscribe(sub, expires=0)
    h.advance(120)
    h.engine.handle_timer(h.now)
    h.drain()
    assert not h.engine.is_line(AOR)
    invite = h.f.invite(h.f.new_call(A, BOB))
    h.request(invite)
    assert h.drain() == [] and h.states() == {}
    reply = h.seize(h.f.new_sub(A, "line-seize"), 0)
    assert reply.status == 500
    h.subscribe(h.f.new_sub(A))
    assert h.seize(h.f.new_sub(A, "line-seize"), 0).status == 200


def test_scenario_53_call_between_two_lines(h: Harness, line: dict[str, SubDialog]) -> None:
    # Kamailio's mask argument (sca_call_info_update(1|2)) chooses which side of a call
    # between two shared lines is tracked. sipsca has no script functions: it always
    # tracks both sides, and ScaConfig.line_identification is the equivalent knob
    # (without "from" the calling side is not tracked, like mask 2).
    line2 = "sip:2000@example.com"
    d = Party("D", line2, "sip:2000@192.0.2.20:5060")
    d_sub = h.f.new_sub(d)
    h.send_subscribe(h.f.subscribe(d_sub, ruri=line2, to_uri=line2), d_sub)
    h.drain()
    call = h.f.new_call(A, Party("line2", line2, d.contact))
    invite = h.f.invite(call)
    outcome = h.request(invite)
    assert outcome.member_call_info == "<sip:example.com>;appearance-index=1"
    assert h.states(AOR) == {1: "seized"}
    assert h.states(line2) == {1: "alerting"}
    k = Harness(ScaConfig(line_identification=("request_uri", "to", "alias")))
    k.call_info_line(A)
    k_d = k.f.new_sub(d)
    k.send_subscribe(k.f.subscribe(k_d, ruri=line2, to_uri=line2), k_d)
    k.request(k.f.invite(k.f.new_call(A, Party("line2", line2, d.contact))))
    assert k.states(AOR) == {} and k.states(line2) == {1: "alerting"}


@pytest.mark.parametrize("method", ["UPDATE", "INFO", "MESSAGE"])
def test_scenario_54_other_methods_are_ignored(
    h: Harness, line: dict[str, SubDialog], method: str
) -> None:
    call = h.f.new_call(A, BOB)
    request = h.f.request(method, call, call_info=idx(1))
    outcome = h.request(request)
    assert outcome.reject is None and outcome.member_call_info is None
    assert request.headers.get("call-info") == idx(1)
    assert h.drain() == []


# --------------------------------------------------------------------------- purge, DB, RPC


def test_scenario_55_call_info_subscription_expires(h: Harness, line: dict[str, SubDialog]) -> None:
    short = h.f.new_sub(C)
    h.subscribe(short, expires=100)
    h.engine.rpc_seize_appearance(AOR, A_URI, now=h.now)
    effects_before = h.drain()
    assert effects_before
    h.advance(120)
    h.engine.handle_timer(h.now)
    effects = h.drain()
    notifies = [Notify(e) for e in effects if isinstance(e, SendNotify)]
    assert summary(notifies)[0] == (
        C_URI,
        "call-info",
        "terminated;reason=timeout",
        ci(app(1, "seized")),
    )
    assert DeleteSubscription(key=(AOR, ScaEvent.CALL_INFO, C_URI)) in effects
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]


def test_scenario_56_each_subscriber_gets_its_own_expires(h: Harness) -> None:
    # decisions.md #1: [K] gives everyone the most recent subscriber's value (3500).
    h.subscribe(h.f.new_sub(A))
    h.advance(100)
    h.subscribe(h.f.new_sub(B))
    h.drain()
    h.advance(100)
    h.engine.rpc_seize_appearance(AOR, A_URI, now=h.now)
    assert [(n.target, n.state) for n in h.notifies()] == [
        (B_URI, "active;expires=3500"),
        (A_URI, "active;expires=3400"),
    ]


def test_scenario_57_notify_rejected_with_481(
    h: Harness, line: dict[str, SubDialog], caplog: pytest.LogCaptureFixture
) -> None:
    # The brief's ruling (RFC 6665 4.2.2): 481 or a timeout removes the subscription
    # ([K] keeps notifying it); other failures are logged and counted.
    caplog.set_level("INFO", logger="sipsca.sca")
    key = (AOR, ScaEvent.CALL_INFO, A_URI)
    h.engine.on_notify_result(key, 1, 481, now=h.now)
    assert h.drain() == [DeleteSubscription(key=key)]
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        "1000 192.0.2.11:5060 call-info 3600 active"
    ]
    h.engine.rpc_seize_appearance(AOR, B_URI, now=h.now)
    assert [n.target for n in h.notifies()] == [B_URI]
    h.engine.on_notify_result((AOR, ScaEvent.CALL_INFO, B_URI), 2, 500, now=h.now)
    assert h.drain() == [] and h.engine.stats()["notifies_failed"] == 2
    assert f"NOTIFY 2 to {B_URI} for {AOR} answered 500: subscription kept" in caplog.text


def test_scenario_58_persistence_and_restore(h: Harness, line: dict[str, SubDialog]) -> None:
    a_sub = line["A"]
    persisted = {
        e.subscription.key: e.subscription for e in h.effects if isinstance(e, PersistSubscription)
    }
    stored = persisted[(AOR, ScaEvent.CALL_INFO, A_URI)]
    assert (stored.event.db_code, stored.state.value, stored.index) == (1, 0, 0)
    assert stored.expires_at == int(NOW) + 3600
    assert stored.notify_cseq == 1
    # Line-seize subscriptions are never stored (as in Kamailio); appearances are
    # (decisions.md #11: call state survives a restart).
    h.seize(h.f.new_sub(B, "line-seize"), 1)
    effects = h.drain()
    assert not any(
        isinstance(e, PersistSubscription) and e.subscription.event is ScaEvent.LINE_SEIZE
        for e in effects
    )
    assert any(isinstance(e, PersistAppearance) for e in effects)
    h.subscribe(line["B"], expires=0)  # unsubscribed: must not come back
    h.drain()
    last_cseq = max(s.notify_cseq for s in h.engine.subscriptions() if s.subscriber == A_URI)
    subscriptions = h.engine.subscriptions()
    appearances = h.engine.appearances(AOR)
    # "Restart": storage lagged one NOTIFY behind for A.
    subscriptions = [
        replace(s, notify_cseq=s.notify_cseq - 1) if s.subscriber == A_URI else s
        for s in subscriptions
    ]
    restarted = Harness()
    restarted.now = h.now + 30
    restarted.engine.restore(subscriptions, appearances, now=restarted.now)
    restored = restarted.drain()
    assert DeleteSubscription(key=(AOR, ScaEvent.CALL_INFO, B_URI)) in restored
    assert restarted.states() == {1: "seized"}  # call state survives (Kamailio: idle)
    restarted.engine.rpc_update_appearance(AOR, 1, "held", None, now=restarted.now)
    [notify] = restarted.notifies()
    assert (notify.target, notify.call_id) == (A_URI, a_sub.call_id)
    assert notify.request.headers.get("to") == f"<{AOR}>;tag={a_sub.from_tag}"
    assert notify.request.headers.get("from") == f"<{AOR}>;tag={a_sub.to_tag}"
    assert notify.cseq == last_cseq - 1 + CSEQ_RESTORE_GAP + 1 > last_cseq


def test_scenario_59_rpc_subscription_count(h: Harness, line: dict[str, SubDialog]) -> None:
    assert h.engine.rpc_subscription_count("call-info") == ["2 call-info"]
    with pytest.raises(ScaRpcError) as fault:
        h.engine.rpc_subscription_count("foo")
    assert (fault.value.code, fault.value.message) == (
        500,
        "usage: sca.subscription_count {call-info | line-seize}",
    )


def test_scenario_60_rpc_update_appearance(h: Harness, line: dict[str, SubDialog]) -> None:
    h.engine.rpc_seize_appearance(AOR, A_URI, now=h.now)
    h.drain()
    assert h.engine.rpc_update_appearance(AOR, 1, "held", None, now=h.now) == []
    assert summary(h.notifies()) == broadcast(ci(app(1, "held")))
    with pytest.raises(ScaRpcError) as fault:
        h.engine.rpc_update_appearance(AOR, 1, "busy", None, now=h.now)
    assert (fault.value.code, fault.value.message) == (500, "busy: invalid state")
    with pytest.raises(ScaRpcError) as fault:
        h.engine.rpc_update_appearance(AOR, 9, "held", None, now=h.now)
    assert fault.value.message == f"Failed to update {AOR} appearance-index 9"
    assert h.notifies() == []


def test_scenario_61_rpc_release_appearance(h: Harness, line: dict[str, SubDialog]) -> None:
    h.engine.rpc_seize_appearance(AOR, A_URI, now=h.now)
    h.drain()
    with pytest.raises(ScaRpcError) as fault:
        h.engine.rpc_release_appearance(AOR, 0, now=h.now)
    assert (fault.value.code, fault.value.message) == (500, "appearance-index must be > 0")
    with pytest.raises(ScaRpcError) as fault:
        h.engine.rpc_release_appearance(AOR, 5, now=h.now)
    assert fault.value.message == f"{AOR} appearance index 5 is not in use"
    assert h.engine.rpc_release_appearance(AOR, 1, now=h.now) == []
    assert summary(h.notifies()) == broadcast(WILDCARD)


def test_scenario_62_rpc_deactivate_all_subscriptions(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    assert h.engine.rpc_deactivate_all_subscriptions(now=h.now) == [
        f"Deactivating call-info subscription from {B_URI}",
        f"Deactivating call-info subscription from {A_URI}",
    ]
    assert summary(h.notifies()) == broadcast(
        WILDCARD, a="terminated;reason=deactivated", b="terminated;reason=deactivated"
    )
    assert h.engine.rpc_all_subscriptions(now=h.now) == [
        # compat 47: 0 seconds left, not Kamailio's expires_at (0) minus now
        "1000 192.0.2.11:5060 call-info 0 terminated;reason=deactivated",
        "1000 192.0.2.10:5060 call-info 0 terminated;reason=deactivated",
    ]
    h.advance(120)
    h.engine.handle_timer(h.now)
    assert h.notifies() == []
    assert h.engine.rpc_all_subscriptions(now=h.now) == []


def test_scenario_63_rpc_all_appearances_during_a_call(
    h: Harness, line: dict[str, SubDialog]
) -> None:
    call, _ = established(h)
    assert h.engine.rpc_all_appearances() == [
        f"{AOR} 1 active {int(NOW)} {A_URI} {BOB.contact} {call.call_id} a1 b1"
    ]


def test_subscription_state_codes_are_kamailios() -> None:
    assert SubscriptionState.TERMINATED_TIMEOUT.header_value == "terminated;reason=timeout"
    assert ScaEngine.__module__ == "sipsca.sca.engine"  # re-exported by sipsca.sca
