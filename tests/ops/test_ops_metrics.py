"""Prometheus ``/metrics`` of a real server after real traffic: messages in/out by method and
status, transactions, subscriptions by event, appearances by state, NOTIFY failures, database
write latency and errors, event-loop lag."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from helpers.phone import Ladder
from helpers.sca import Line, ci
from ops.support import Database, OpsServer, metric_samples, metric_value, scrape, wait_until

AOR = "sip:1000@127.0.0.1"


async def test_metrics_after_traffic(
    make_database: Callable[[str], Database], ops_server: Callable[..., OpsServer], ladder: Ladder
) -> None:
    srv = ops_server(make_database("sqlite"), {"db": {"db_update_interval": 0}})
    line = Line(srv, ladder)
    try:
        a = await line.member("A")
        b = await line.member("B")
        await line.callee(uas="answer", answer_delay=0.05)
        await line.seize(a, 1)
        call = await a.invite("bob", call_info=line.seize_ci % 1)
        assert call.final is not None and call.final.status == 200
        await line.broadcast(lambda v: f"{ci(1, 'active')}" in v, strict=False)
        await line.seize(b, 2)
        await line.server.arpc("sca.update_appearance", AOR, 2, "held")
        await line.broadcast(lambda v: f"{ci(2, 'held')}" in v, strict=False)
        before = metric_samples(scrape(srv))
        subs = {lb["event"]: v for lb, v in before["sipsca_subscriptions_active"]}
        assert subs["call-info"] == 2 and "line-seize" in subs
        apps = {lb["state"]: v for lb, v in before["sipsca_appearances"]}
        assert apps["active"] == 1 and apps["held"] == 1 and apps["seized"] == 0
        b.notify_reply = (481, "Call/Transaction Does Not Exist")
        await line.server.arpc("sca.update_appearance", AOR, 2, "active")
        await asyncio.sleep(0.3)

        def scraped() -> str | None:
            text = scrape(srv)
            ok = metric_value(text, "sipsca_notify_failures_total", reason="481") >= 1
            return text if ok else None

        text = await wait_until(scraped, 5, "the NOTIFY failure to be counted")
        samples = metric_samples(text)

        received = "sipsca_messages_received_total"
        sent = "sipsca_messages_sent_total"
        for method in ("REGISTER", "SUBSCRIBE", "INVITE", "ACK"):
            assert metric_value(text, received, kind="request", method=method) >= 1, method
        assert metric_value(text, received, kind="response", method="NOTIFY", status="200") >= 4
        assert metric_value(text, received, kind="response", method="INVITE", status="200") >= 1
        assert metric_value(text, received, kind="response", method="NOTIFY", status="481") >= 1
        assert metric_value(text, sent, kind="request", method="NOTIFY") >= 6
        assert metric_value(text, sent, kind="request", method="INVITE") >= 1
        for status in ("200", "202"):
            assert metric_value(text, sent, kind="response", status=status) >= 1, status

        kinds = {labels["kind"] for labels, _ in samples["sipsca_transactions_active"]}
        assert kinds, "no transaction gauge"
        assert metric_value(text, "sipsca_registrations_active") == 3
        transitions = "sipsca_appearance_transitions_total"
        assert metric_value(text, transitions, **{"from": "idle", "to": "seized"}) == 2

        assert metric_value(text, "sipsca_db_operation_seconds_count", op="write") >= 1
        assert any(v > 0 for _, v in samples["sipsca_db_operation_seconds_bucket"])
        assert "sipsca_db_errors" in {f.name for f in _families(text)}  # declared, none yet
        assert metric_value(text, "sipsca_db_errors_total") == 0
        lag = samples["sipsca_event_loop_lag_seconds"]
        assert len(lag) == 1 and 0 <= lag[0][1] < 0.5
        assert samples["process_resident_memory_bytes"][0][1] > 0
        assert text.count("# TYPE sipsca_") >= 12
    finally:
        await line.close()


def _families(text: str) -> list[object]:
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))
