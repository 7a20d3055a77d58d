"""The ``sca.*`` commands over HTTP with the real SCA engine behind them (not the fake).

``test_rpc_sca.py`` shows that the RPC layer carries Kamailio's strings through unchanged,
using a fake that answers like Kamailio. These tests show sipsca's own answers where it
deliberately differs (docs/compat.md): ``update_appearance ... idle`` releases, seconds
left never go negative, terminated subscriptions are not counted, and AoR / Contact
arguments must be SIP URIs, also when the client sends digits as a JSON number.
"""

from __future__ import annotations

import itertools

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipsca.config import ScaConfig
from sipsca.sca import ScaEngine, ScaEvent, Subscription, SubscriptionState

from .conftest import Server
from .fakes import NOW, FakeBackend

AOR = "sip:215@127.0.0.1"
OWNER = "sip:215@127.0.0.1:5081"
PORTS = (5081, 5082)
"""Subscription order: the newest (5082) is listed first, as in the trace."""


class EngineBackend(FakeBackend):
    """The fake server facade, but with a real :class:`ScaEngine` as ``sca``."""

    @property
    def engine(self) -> ScaEngine:
        assert isinstance(self.sca, ScaEngine)
        return self.sca

    def after_change(self) -> None:
        """The runtime would send the queued NOTIFYs and storage writes; drop them."""
        self.after_change_calls += 1
        while self.engine.next_effect() is not None:
            pass


@pytest.fixture
def backend() -> FakeBackend:
    """Two call-info subscribers on line 215, as in the Kamailio trace (overrides conftest)."""
    tags = itertools.count()
    engine = ScaEngine(ScaConfig(), tag_factory=lambda: f"t{next(tags)}")
    engine.restore(
        [
            Subscription(
                subscriber=f"sip:215@127.0.0.1:{port}",
                aor=AOR,
                event=ScaEvent.CALL_INFO,
                expires_at=int(NOW) + 3599,
                state=SubscriptionState.ACTIVE,
                call_id=f"call-info-{port}",
                from_tag=f"ft{port}",
                to_tag=f"tt{port}",
            )
            for port in PORTS
        ],
        [],
        now=NOW,
    )
    backend = EngineBackend(sca=engine)  # type: ignore[arg-type]
    backend.after_change()
    backend.after_change_calls = 0
    return backend


async def test_the_engine_answers_like_the_trace_for_valid_input(server: Server) -> None:
    assert await server.result("sca.all_subscriptions") == [
        "215 127.0.0.1:5082 call-info 3599 active",
        "215 127.0.0.1:5081 call-info 3599 active",
    ]
    assert await server.result("sca.seize_appearance", AOR, OWNER) == [
        f"Seized {AOR} appearance-index 1 for {OWNER}"
    ]
    assert await server.result("sca.all_appearances") == [f"{AOR} 1 seized {int(NOW)} {OWNER}    "]


async def test_update_to_idle_releases_the_appearance(server: Server) -> None:
    await server.result("sca.seize_appearance", AOR, OWNER)
    assert await server.result("sca.update_appearance", AOR, 1, "idle") == []
    assert await server.result("sca.all_appearances") == []
    assert await server.fault("sca.release_appearance", AOR, 1) == (
        500,
        f"{AOR} appearance index 1 is not in use",
    )
    assert await server.result("sca.seize_appearance", AOR, OWNER) == [
        f"Seized {AOR} appearance-index 1 for {OWNER}"
    ]


async def test_deactivated_subscriptions_show_zero_seconds_and_are_not_counted(
    server: Server,
) -> None:
    server.metrics.set_state_source(lambda: _state(server))
    assert await _gauge(server) == 2
    await server.result("sca.deactivate_subscription", AOR, "call-info", OWNER)
    assert await server.result("sca.subscription_count", "call-info") == ["1 call-info"]
    assert await _gauge(server) == 1
    await server.result("sca.deactivate_all_subscriptions")
    # Kamailio: "215 127.0.0.1:5082 call-info -1795692973 terminated;reason=deactivated"
    assert await server.result("sca.all_subscriptions") == [
        "215 127.0.0.1:5082 call-info 0 terminated;reason=deactivated",
        "215 127.0.0.1:5081 call-info 0 terminated;reason=deactivated",
    ]
    assert await server.result("sca.subscription_count", "call-info") == ["0 call-info"]
    assert await _gauge(server) == 0


async def test_seize_with_a_numeric_owner_is_refused(server: Server) -> None:
    """``sipsca rpc sca.seize_appearance sip:215@example.com 1234`` sends 1234 as a number."""
    assert await server.fault("sca.seize_appearance", "sip:215@example.com", 1234) == (
        500,
        "1234: invalid contact",
    )
    assert await server.fault("sca.seize_appearance", "garbage", "garbage") == (
        500,
        "garbage: invalid AoR",
    )
    assert await server.result("sca.all_appearances") == []


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("sca.seize_appearance", [1000, OWNER]),
        ("sca.update_appearance", [1000, 1, "held"]),
        ("sca.release_appearance", [1000, 1]),
        ("sca.show_appearance", [1000]),
        ("sca.show_subscription", [1000, "call-info"]),
        ("sca.deactivate_subscription", [1000, "call-info", OWNER]),
    ],
)
async def test_numeric_aor_is_refused_by_every_command(
    server: Server, method: str, params: list[object]
) -> None:
    assert await server.fault(method, *params) == (500, "1000: invalid AoR")


def _state(server: Server) -> dict[str, object]:
    """What ``runtime.app.state_snapshot`` makes of the engine's stats for the gauges."""
    assert isinstance(server.backend, EngineBackend)
    stats = server.backend.engine.stats()
    return {
        "subscriptions": {
            "call-info": stats["subscriptions_call_info"],
            "line-seize": stats["subscriptions_line_seize"],
        }
    }


async def _gauge(server: Server) -> float:
    response = await server.session.get(server.base + "/metrics")
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            if s.name == "sipsca_subscriptions_active" and s.labels == {"event": "call-info"}:
                return s.value
    raise AssertionError("no sipsca_subscriptions_active{event=call-info} sample")
