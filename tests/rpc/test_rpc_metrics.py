"""``GET /metrics`` scraped and parsed: the counters the runtime bumps, bounded labels."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipsca.runtime.metrics import MAX_LABEL_VALUES, Metrics

from .conftest import Server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: Server) -> Samples:
    response = await server.session.get(server.base + "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(await response.text())


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_counters_show_up_in_the_scrape(server: Server) -> None:
    m = server.metrics
    m.message_in("request", "INVITE")
    m.message_in("request", "INVITE")
    m.message_in("response", "INVITE", 180)
    m.message_in("response", "SUBSCRIBE", "202")
    m.message_out("request", "NOTIFY")
    m.message_out("response", "REGISTER", 200)
    m.notify_failed("timeout")
    m.db_observe("save_subscription", 0.003)
    m.db_error("save_subscription")
    m.loop_lag(0.25)
    m.overload()
    m.parse_error("udp")
    m.auth_failure("bad_password")
    m.message_in("response", "1 INVITE", "200")  # a whole CSeq value is fine
    m.message_out("response", "", "200")  # method unknown to the caller
    m.appearance_changed("idle", "seized")
    m.appearance_changed("seized", "active")
    m.connection_dropped("limit")
    m.connection_dropped("message_timeout")
    m.connection_dropped("who knows")

    s = await scrape(server)
    received = "sipsca_messages_received_total"
    assert sample(s, received, kind="request", method="INVITE", status="") == 2
    assert sample(s, received, kind="response", method="INVITE", status="180") == 1
    assert sample(s, received, kind="response", method="SUBSCRIBE", status="202") == 1
    sent = "sipsca_messages_sent_total"
    assert sample(s, sent, kind="request", method="NOTIFY", status="") == 1
    assert sample(s, sent, kind="response", method="REGISTER", status="200") == 1
    assert sample(s, "sipsca_notify_failures_total", reason="timeout") == 1
    assert sample(s, "sipsca_db_operation_seconds_count", op="save_subscription") == 1
    assert sample(s, "sipsca_db_operation_seconds_bucket", op="save_subscription", le="0.005") == 1
    assert sample(s, "sipsca_db_operation_seconds_bucket", op="save_subscription", le="0.001") == 0
    assert sample(s, "sipsca_db_errors_total", op="save_subscription") == 1
    assert sample(s, "sipsca_event_loop_lag_seconds") == 0.25
    assert sample(s, "sipsca_overload_rejections_total") == 1
    assert sample(s, "sipsca_parse_errors_total", transport="udp") == 1
    assert sample(s, "sipsca_auth_failures_total", reason="bad_password") == 1
    assert sample(s, received, kind="response", method="INVITE", status="200") == 1
    assert sample(s, sent, kind="response", method="", status="200") == 1
    transitions = "sipsca_appearance_transitions_total"
    assert sample(s, transitions, **{"from": "idle", "to": "seized"}) == 1
    assert sample(s, transitions, **{"from": "seized", "to": "active"}) == 1
    dropped = "sipsca_connections_dropped_total"
    assert sample(s, dropped, reason="limit") == 1
    assert sample(s, dropped, reason="message_timeout") == 1
    assert sample(s, dropped, reason="other") == 1


async def test_state_gauges_come_from_the_state_source(server: Server) -> None:
    s = await scrape(server)  # no source yet: families exist, no samples
    assert not any(name == "sipsca_subscriptions_active" for name, _ in s)

    server.metrics.set_state_source(
        lambda: {
            "subscriptions": {"call-info": 2},
            "appearances": {"seized": 1, "active-pending": 1, "active": 2},
            "transactions": {"ict": 3, "nist": 1},
            "registrations": 5,
        }
    )
    s = await scrape(server)
    assert sample(s, "sipsca_subscriptions_active", event="call-info") == 2
    assert sample(s, "sipsca_subscriptions_active", event="line-seize") == 0  # zero-filled
    assert sample(s, "sipsca_appearances", state="seized") == 1
    assert sample(s, "sipsca_appearances", state="active") == 3  # active-pending is active
    assert sample(s, "sipsca_appearances", state="held") == 0
    assert sample(s, "sipsca_transactions_active", kind="ict") == 3
    assert sample(s, "sipsca_transactions_active", kind="nist") == 1
    assert sample(s, "sipsca_registrations_active") == 5


async def test_a_failing_state_source_does_not_break_the_scrape(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("engine gone")

    server.metrics.set_state_source(broken)
    server.metrics.overload()
    s = await scrape(server)
    assert sample(s, "sipsca_overload_rejections_total") == 1
    assert "engine gone" in caplog.text


def test_label_values_are_bounded() -> None:
    m = Metrics(process_metrics=False)
    m.message_in("request", "invite")  # methods are case-sensitive
    m.message_in("request", "X" * 300)
    m.message_in("response", "INVITE", 999)
    m.message_in("response", "INVITE", "2000")
    m.message_in("request", "BYE", 200)  # a request has no status
    m.parse_error("carrier-pigeon")
    m.parse_error("TCP")
    for i in range(MAX_LABEL_VALUES + 10):
        m.notify_failed(f"reason{i}")
    m.auth_failure("has spaces and <html>")
    m.appearance_changed("active-pending", "ringing")

    s = parse(m.render().decode())
    received = "sipsca_messages_received_total"
    assert sample(s, received, kind="request", method="other", status="") == 2
    assert sample(s, received, kind="response", method="INVITE", status="other") == 2
    assert sample(s, received, kind="request", method="BYE", status="") == 1
    assert sample(s, "sipsca_parse_errors_total", transport="other") == 1
    assert sample(s, "sipsca_parse_errors_total", transport="tcp") == 1
    reasons = {
        dict(labels)["reason"] for name, labels in s if name == "sipsca_notify_failures_total"
    }
    assert len(reasons) == MAX_LABEL_VALUES + 1
    assert sample(s, "sipsca_notify_failures_total", reason="other") == 10
    assert sample(s, "sipsca_auth_failures_total", reason="other") == 1
    transitions = "sipsca_appearance_transitions_total"
    assert sample(s, transitions, **{"from": "active", "to": "other"}) == 1


def test_db_timer_counts_errors() -> None:
    m = Metrics(process_metrics=False)
    with m.db_timer("load"):
        pass
    with pytest.raises(ValueError), m.db_timer("load"):
        raise ValueError("db down")
    s = parse(m.render().decode())
    assert sample(s, "sipsca_db_operation_seconds_count", op="load") == 2
    assert sample(s, "sipsca_db_errors_total", op="load") == 1


def test_registries_are_private() -> None:
    a, b = Metrics(), Metrics()
    a.overload()
    assert sample(parse(b.render().decode()), "sipsca_overload_rejections_total") == 0
    assert any(name.startswith("process_") for name, _ in parse(a.render().decode()))


async def test_watch_loop_lag_sets_the_gauge() -> None:
    m = Metrics(process_metrics=False)
    task = asyncio.create_task(m.watch_loop_lag(0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sample(parse(m.render().decode()), "sipsca_event_loop_lag_seconds") >= 0
