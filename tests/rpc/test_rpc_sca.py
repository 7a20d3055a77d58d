"""The eleven ``sca.*`` commands over HTTP: Kamailio's outputs, parameters and fault texts."""

from __future__ import annotations

import pytest

from .conftest import Server
from .fakes import NOW

AOR = "sip:215@127.0.0.1"
OWNER = "sip:215@127.0.0.1:5081"
UPDATE_USAGE = (
    "Usage: sca.update_appearance sip:user@domain appearance-index appearance-state "
    "[appearance-uri]"
)
RELEASE_USAGE = "usage: sca.release_appearance user@domain appearance-index"
COUNT_USAGE = "usage: sca.subscription_count {call-info | line-seize}"
SHOW_USAGE = "usage: sca.show_subscription sip:user@domain {call-info | line-seize} [sip:user@IP]"


async def test_all_subscriptions_lines_as_in_the_kamailio_trace(server: Server) -> None:
    assert await server.result("sca.all_subscriptions") == [
        "215 127.0.0.1:5082 call-info 3599 active",
        "215 127.0.0.1:5081 call-info 3599 active",
    ]


async def test_subscription_count(server: Server) -> None:
    assert await server.result("sca.subscription_count", "call-info") == ["2 call-info"]
    assert await server.result("sca.subscription_count", "line-seize") == ["0 line-seize"]


@pytest.mark.parametrize("params", [[], ["presence"], ["Call-Info"], [None], [["call-info"]]])
async def test_subscription_count_usage_fault(server: Server, params: list[object]) -> None:
    assert await server.fault("sca.subscription_count", *params) == (500, COUNT_USAGE)
    assert server.backend.sca.calls == []  # rejected before reaching the engine


async def test_named_params_are_accepted(server: Server) -> None:
    response = await server.post(
        {"jsonrpc": "2.0", "method": "sca.subscription_count", "params": {"event": "call-info"},
         "id": 7}
    )  # fmt: skip
    assert await response.json() == {"jsonrpc": "2.0", "result": ["2 call-info"], "id": 7}


async def test_show_subscription_with_and_without_contact(server: Server) -> None:
    expires = int(NOW + 3599)
    assert await server.result("sca.show_subscription", AOR, "call-info") == [
        f"{AOR} call-info sip:215@127.0.0.1:5082 {expires}",
        f"{AOR} call-info sip:215@127.0.0.1:5081 {expires}",
    ]
    assert await server.result(
        "sca.show_subscription", AOR, "call-info", "sip:215@127.0.0.1:5082"
    ) == [f"{AOR} call-info sip:215@127.0.0.1:5082 {expires}"]


@pytest.mark.parametrize("params", [[], [AOR], [AOR, "dialog"]])
async def test_show_subscription_usage_fault(server: Server, params: list[object]) -> None:
    assert await server.fault("sca.show_subscription", *params) == (500, SHOW_USAGE)


async def test_subscribers_fault_600_from_the_engine(server: Server) -> None:
    assert await server.fault("sca.subscribers") == (600, "Not yet implemented")


async def test_deactivate_all_subscriptions(server: Server) -> None:
    assert await server.result("sca.deactivate_all_subscriptions") == [
        "Deactivating call-info subscription from sip:215@127.0.0.1:5082",
        "Deactivating call-info subscription from sip:215@127.0.0.1:5081",
    ]
    assert server.backend.after_change_calls == 1
    assert server.backend.flushed == [AOR, AOR]  # the NOTIFYs went out
    # The fake answers as in the Kamailio trace: expires 0 shows as minus "now". sipsca's
    # engine prints 0 instead (docs/compat.md; test_rpc_sca_engine.py).
    assert await server.result("sca.all_subscriptions") == [
        f"215 127.0.0.1:5082 call-info {-int(NOW)} terminated;reason=deactivated",
        f"215 127.0.0.1:5081 call-info {-int(NOW)} terminated;reason=deactivated",
    ]


async def test_deactivate_subscription(server: Server) -> None:
    contact = "sip:215@127.0.0.1:5081"
    assert await server.result("sca.deactivate_subscription", AOR, "call-info", contact) == [
        f"Deactivating call-info subscription from {contact}"
    ]
    assert server.backend.after_change_calls == 1
    usage = (
        "usage: sca.deactivate_subscription sip:user@domain {call-info | line-seize} sip:user@IP"
    )
    assert await server.fault("sca.deactivate_subscription", AOR) == (500, usage)
    assert await server.fault("sca.deactivate_subscription", AOR, "x", contact) == (500, usage)


async def test_seize_then_all_appearances(server: Server) -> None:
    assert await server.result("sca.seize_appearance", AOR, OWNER) == [
        f"Seized {AOR} appearance-index 1 for {OWNER}"
    ]
    assert server.backend.after_change_calls == 1
    assert server.backend.flushed == [AOR]
    assert await server.result("sca.seize_appearance", AOR, "sip:215@127.0.0.1:5082") == [
        f"Seized {AOR} appearance-index 2 for sip:215@127.0.0.1:5082"
    ]
    assert await server.result("sca.all_appearances") == [
        f"{AOR} 1 seized {int(NOW)} {OWNER}",
        f"{AOR} 2 seized {int(NOW)} sip:215@127.0.0.1:5082",
    ]


@pytest.mark.parametrize("params", [[], [AOR], [AOR, None], [AOR, {"x": 1}]])
async def test_seize_usage_fault(server: Server, params: list[object]) -> None:
    assert await server.fault("sca.seize_appearance", *params) == (
        500,
        "usage: sca.seize_appearance sip:user@domain",
    )
    assert server.backend.after_change_calls == 0


async def test_show_appearance(server: Server) -> None:
    assert await server.fault("sca.show_appearance", AOR) == (600, "Not yet implemented")
    assert await server.fault("sca.show_appearance", AOR, 0) == (
        500,
        "appearance-index must be > 0",
    )
    assert await server.fault("sca.show_appearance") == (
        500,
        "usage: sca.show_appearance sip:user@domain [appearance-index]",
    )


async def test_update_appearance(server: Server) -> None:
    await server.result("sca.seize_appearance", AOR, OWNER)
    assert await server.result("sca.update_appearance", AOR, 1, "held") == []
    # An index given as a string is parsed, the optional 4th argument is the appearance-uri.
    assert await server.result("sca.update_appearance", AOR, "1", "active", "Alice Example") == []
    assert server.backend.sca.calls[-2:] == [
        ("update_appearance", AOR, 1, "held", None),
        ("update_appearance", AOR, 1, "active", "Alice Example"),
    ]
    assert server.backend.sca.lines[AOR][1].uri == "<Alice Example>"
    assert server.backend.after_change_calls == 3


@pytest.mark.parametrize(
    ("params", "fault"),
    [
        ([AOR, 1, "ringing"], "ringing: invalid state"),
        ([AOR, 1, "bogus"], "bogus: invalid state"),
        ([AOR, 1, "active-pending"], "active-pending: invalid state"),
        ([AOR, 7, "active"], f"Failed to update {AOR} appearance-index 7"),
        ([AOR, "one", "active"], UPDATE_USAGE),
        ([AOR, 1.5, "active"], UPDATE_USAGE),
        ([AOR, True, "active"], UPDATE_USAGE),
        ([AOR, 1], UPDATE_USAGE),
        ([], UPDATE_USAGE),
    ],
)
async def test_update_appearance_faults(server: Server, params: list[object], fault: str) -> None:
    await server.result("sca.seize_appearance", AOR, OWNER)
    assert await server.fault("sca.update_appearance", *params) == (500, fault)


async def test_release_appearance(server: Server) -> None:
    await server.result("sca.seize_appearance", AOR, OWNER)
    assert await server.result("sca.release_appearance", AOR, 1) == []
    assert await server.fault("sca.release_appearance", AOR, 1) == (
        500,
        f"{AOR} appearance index 1 is not in use",
    )
    assert await server.result("sca.all_appearances") == []
    # after_change ran after every engine call, the faulted one included.
    assert server.backend.after_change_calls == 3


@pytest.mark.parametrize(
    ("params", "fault"),
    [
        (["sip:999@127.0.0.1", 1], "No appearances for sip:999@127.0.0.1"),
        ([AOR, 0], "appearance-index must be > 0"),
        ([AOR, "-3"], "appearance-index must be > 0"),
        ([AOR, "x"], RELEASE_USAGE),
        ([AOR], RELEASE_USAGE),
        ([1000], RELEASE_USAGE),
    ],
)
async def test_release_appearance_faults(server: Server, params: list[object], fault: str) -> None:
    assert await server.fault("sca.release_appearance", *params) == (500, fault)


async def test_integer_aor_is_taken_as_a_string(server: Server) -> None:
    """kamcmd-style clients send ``1000`` as a number; a string parameter accepts it.

    (Kamailio's answer, from the fake; sipsca's engine refuses it as an AoR:
    ``test_rpc_sca_engine.py::test_numeric_aor_is_refused_by_every_command``.)
    """
    assert await server.fault("sca.release_appearance", 1000, 1) == (500, "No appearances for 1000")


async def test_broadcast_failure_fault_still_flushes(server: Server) -> None:
    server.backend.sca.fail_notify = True
    assert await server.fault("sca.seize_appearance", AOR, OWNER) == (
        500,
        f"Failed to NOTIFY subscribers to {AOR}",
    )
    assert server.backend.after_change_calls == 1


async def test_after_change_failure_does_not_hide_the_result(server: Server) -> None:
    server.backend.fail_after_change = True
    assert await server.result("sca.seize_appearance", AOR, OWNER) == [
        f"Seized {AOR} appearance-index 1 for {OWNER}"
    ]


async def test_extra_positional_arguments_are_ignored_like_kamailio(server: Server) -> None:
    assert await server.result("sca.subscription_count", "call-info", "extra") == ["2 call-info"]
    assert await server.result("sca.all_appearances", "junk") == []


async def test_read_only_commands_do_not_flush(server: Server) -> None:
    for method, params in [
        ("sca.all_subscriptions", []),
        ("sca.subscription_count", ["call-info"]),
        ("sca.show_subscription", [AOR, "call-info"]),
        ("sca.all_appearances", []),
    ]:
        await server.result(method, *params)
    assert server.backend.after_change_calls == 0
