"""Prometheus metrics of the running server, in one private registry.

A private ``CollectorRegistry`` (not the process-global default) so several servers can run in
one test process and ``/metrics`` shows exactly sipsca's series.

Label values are bounded on purpose: methods, statuses and transports come off the network, and
an unbounded label (one series per junk method name) is a memory leak and a way to knock the
monitoring over. Methods outside the RFC set become ``other``, statuses are 3-digit strings,
and free-form labels (reasons, DB operations, transaction kinds) keep at most
:data:`MAX_LABEL_VALUES` distinct values each before folding into ``other``.

State gauges (subscriptions, appearances, transactions, registrations) are read from a callback
at scrape time (:meth:`Metrics.set_state_source`), so they can never drift from the engine.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Literal, TypedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "APPEARANCE_STATES",
    "KNOWN_METHODS",
    "DROP_REASONS",
    "KNOWN_TRANSPORTS",
    "MAX_LABEL_VALUES",
    "OTHER",
    "SCA_EVENTS",
    "Metrics",
    "StateSnapshot",
    "StateSource",
]

logger = logging.getLogger(__name__)

KNOWN_METHODS: Final = frozenset(
    {
        "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS",
        "PRACK", "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
    }
)  # fmt: skip
KNOWN_TRANSPORTS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss", "sctp"})
SCA_EVENTS: Final = ("call-info", "line-seize")
DROP_REASONS: Final = frozenset(
    {"limit", "message_timeout", "not_reading", "tls_handshake", "tls_error"}
)
"""Why the transport refused or dropped a stream connection."""
APPEARANCE_STATES: Final = (
    "seized", "progressing", "alerting", "active", "held", "held-private",
)  # fmt: skip
MAX_LABEL_VALUES: Final = 32
OTHER: Final = "other"
_MAX_CACHED_CHILDREN: Final = 1024
"""Bound of the per-counter caches of label children (raw arguments -> child)."""

_SAFE_LABEL: Final = re.compile(r"[a-z0-9][a-z0-9_.:+-]{0,47}")
_STATUS: Final = re.compile(r"[1-6]\d\d")
_DB_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StateSnapshot(TypedDict, total=False):
    """What the state source returns; every key is optional.

    ``subscriptions``: active subscriptions per event (``call-info``, ``line-seize``);
    ``appearances``: stored appearances per state name; ``transactions``: live transactions per
    kind (the transaction layer's names, e.g. ``ict``/``nict``/``ist``/``nist``);
    ``registrations``: registered contacts.
    """

    subscriptions: Mapping[str, float]
    appearances: Mapping[str, float]
    transactions: Mapping[str, float]
    registrations: float


StateSource = Callable[[], Mapping[str, Any]]


class _Labels:
    """Maps a raw value to a bounded label value (see the module docstring)."""

    def __init__(
        self,
        known: Iterable[str] = (),
        *,
        open_ended: bool = True,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self._known = frozenset(known)
        self._open = open_ended
        self._aliases = dict(aliases or {})
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = str(value).strip().lower()
        value = self._aliases.get(value, value)
        if value in self._known or value in self._seen:
            return value
        if self._open and len(self._seen) < MAX_LABEL_VALUES and _SAFE_LABEL.fullmatch(value):
            self._seen.add(value)
            return value
        return OTHER


def _method_label(method: str) -> str:
    """Bounded method label; a whole CSeq value (``1 INVITE``) is accepted too.

    SIP methods are case-sensitive (RFC 3261 7.1): ``invite`` is not INVITE. An empty method
    (a response whose CSeq the caller did not look at) stays empty rather than ``other``.
    """
    parts = method.split()
    if not parts:
        return ""
    return parts[-1] if parts[-1] in KNOWN_METHODS else OTHER


def _status_label(status: int | str | None) -> str:
    if status is None:
        return ""
    text = str(status).strip()
    return text if _STATUS.fullmatch(text) else OTHER


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


_EVENT_LABELS: Final = _Labels(SCA_EVENTS, open_ended=False)
# ``active-pending`` is sipsca's internal name for what the wire calls ``active``.
_STATE_LABELS: Final = _Labels(
    (*APPEARANCE_STATES, "idle"), open_ended=False, aliases={"active-pending": "active"}
)


class _StateCollector(Collector):
    """Custom collector: asks the state source at every scrape."""

    def __init__(self) -> None:
        self.source: StateSource | None = None
        self._kinds = _Labels()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only, so registering does not call the (maybe not yet set) source.
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "sipsca_subscriptions_active",
                "SCA subscriptions not terminated, by event package.",
                labels=["event"],
            ),
            GaugeMetricFamily(
                "sipsca_appearances",
                "Stored (non-idle) appearances of shared lines, by state.",
                labels=["state"],
            ),
            GaugeMetricFamily(
                "sipsca_transactions_active", "Live SIP transactions, by kind.", labels=["kind"]
            ),
            GaugeMetricFamily("sipsca_registrations_active", "Registered contacts (bindings)."),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot: Mapping[str, Any] = {}
        if self.source is not None:
            try:
                snapshot = self.source()
            except Exception:
                # A broken callback must not take the other metrics down with it.
                logger.exception("metrics state source failed")
        subs, apps, trans, regs = self._families()
        self._fill(subs, snapshot.get("subscriptions"), SCA_EVENTS, _EVENT_LABELS)
        self._fill(apps, snapshot.get("appearances"), APPEARANCE_STATES, _STATE_LABELS)
        self._fill(trans, snapshot.get("transactions"), (), self._kinds)
        registrations = _number(snapshot.get("registrations"))
        if registrations is not None:
            regs.add_metric([], registrations)
        yield from (subs, apps, trans, regs)

    @staticmethod
    def _fill(
        family: GaugeMetricFamily,
        values: object,
        zero_labels: Iterable[str],
        label: _Labels,
    ) -> None:
        """Add one sample per label, zero-filling the known ones (continuous series)."""
        if not isinstance(values, Mapping):
            return
        totals = dict.fromkeys(zero_labels, 0.0)
        for key, raw in values.items():
            value = _number(raw)
            if value is not None:
                name = label(str(key))
                totals[name] = totals.get(name, 0.0) + value
        for name, value in totals.items():
            family.add_metric([name], value)


def _cached_child(
    counter: Counter, cache: dict[Any, Any], raw: tuple[Any, ...], labels: tuple[str, ...]
) -> Any:
    """``counter.labels(*labels)``, remembered under the ``raw`` arguments it came from
    (bounded: values off the network stop being cached at _MAX_CACHED_CHILDREN)."""
    child = counter.labels(*labels)
    if len(cache) < _MAX_CACHED_CHILDREN:
        cache[raw] = child
    return child


class Metrics:
    """All of sipsca's metrics; the runtime calls the small methods, ``/metrics`` renders them.

    ``registry`` is what :func:`sipsca.rpc.app.make_app` serves.
    """

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        if process_metrics:  # process_* and python_gc_*: CPU, memory, fds of this server
            ProcessCollector(registry=r)
            GCCollector(registry=r)
        message_labels = ["kind", "method", "status"]
        self._received = Counter(
            "sipsca_messages_received",
            "SIP messages received (status empty for requests).",
            message_labels,
            registry=r,
        )
        self._sent = Counter(
            "sipsca_messages_sent",
            "SIP messages sent, retransmissions included (status empty for requests).",
            message_labels,
            registry=r,
        )
        self._notify_failures = Counter(
            "sipsca_notify_failures", "NOTIFYs that failed, by reason.", ["reason"], registry=r
        )
        self._db_seconds = Histogram(
            "sipsca_db_operation_seconds",
            "Duration of storage operations.",
            ["op"],
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self._db_errors = Counter(
            "sipsca_db_errors", "Failed storage operations.", ["op"], registry=r
        )
        self._loop_lag = Gauge(
            "sipsca_event_loop_lag_seconds",
            "How late the event loop ran the last lag probe (blocking work shows up here).",
            registry=r,
        )
        self._overload = Counter(
            "sipsca_overload_rejections",
            "Requests shed with 503 because the server was overloaded.",
            registry=r,
        )
        self._parse_errors = Counter(
            "sipsca_parse_errors",
            "Unparseable SIP messages, by transport.",
            ["transport"],
            registry=r,
        )
        self._connections_dropped = Counter(
            "sipsca_connections_dropped",
            "TCP/TLS connections refused or dropped to protect the server, by reason "
            "(limit, message_timeout, not_reading).",
            ["reason"],
            registry=r,
        )
        self._auth_failures = Counter(
            "sipsca_auth_failures",
            "Failed digest authentications, by reason.",
            ["reason"],
            registry=r,
        )
        self._appearance_transitions = Counter(
            "sipsca_appearance_transitions",
            "Appearance state changes (idle = not stored), by old and new wire state.",
            ["from", "to"],
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)
        self._reasons = _Labels()
        self._auth_reasons = _Labels()
        self._ops = _Labels()
        self._transports = _Labels(KNOWN_TRANSPORTS, open_ended=False)
        # ``labels()`` costs a few microseconds (argument checks, a lock, a dict lookup on a
        # tuple of strings) and runs for every message in and out, so the children are kept
        # per raw ``(kind, method, status)``. Raw values come off the network: the caches
        # stop growing at _MAX_CACHED_CHILDREN entries (further values are not cached).
        self._received_children: dict[tuple[str, str, int | str | None], Any] = {}
        self._sent_children: dict[tuple[str, str, int | str | None], Any] = {}
        self._transition_children: dict[tuple[str, str], Any] = {}  # per SCA state change

    # --- callbacks ----------------------------------------------------------------------

    def set_state_source(self, source: StateSource | None) -> None:
        """Register the callable read at every scrape (returns a :class:`StateSnapshot`)."""
        self._state.source = source

    # --- events -------------------------------------------------------------------------

    def message_in(
        self, kind: Literal["request", "response"], method: str, status: int | str | None = None
    ) -> None:
        """A SIP message was received; ``method`` is the CSeq method for responses."""
        cache = self._received_children
        child = cache.get((kind, method, status))
        if child is None:
            labels = (kind, _method_label(method), self._status(kind, status))
            child = _cached_child(self._received, cache, (kind, method, status), labels)
        child.inc()

    def message_out(
        self, kind: Literal["request", "response"], method: str, status: int | str | None = None
    ) -> None:
        """A SIP message was sent."""
        cache = self._sent_children
        child = cache.get((kind, method, status))
        if child is None:
            labels = (kind, _method_label(method), self._status(kind, status))
            child = _cached_child(self._sent, cache, (kind, method, status), labels)
        child.inc()

    @staticmethod
    def _status(kind: str, status: int | str | None) -> str:
        return "" if kind == "request" else _status_label(status)

    def appearance_changed(self, old: str, new: str) -> None:
        """An appearance went from wire state ``old`` to ``new`` (``idle`` for none)."""
        cache = self._transition_children
        child = cache.get((old, new))
        if child is None:
            labels = (_STATE_LABELS(old), _STATE_LABELS(new))
            child = _cached_child(self._appearance_transitions, cache, (old, new), labels)
        child.inc()

    def notify_failed(self, reason: str) -> None:
        """A NOTIFY got an error response or none (``timeout``, ``481``, ``transport``...)."""
        self._notify_failures.labels(self._reasons(reason)).inc()

    def db_observe(self, op: str, seconds: float) -> None:
        self._db_seconds.labels(self._ops(op)).observe(max(0.0, seconds))

    def db_error(self, op: str) -> None:
        self._db_errors.labels(self._ops(op)).inc()

    @contextmanager
    def db_timer(self, op: str) -> Iterator[None]:
        """Time a storage operation; count it as an error if it raises."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.db_error(op)
            raise
        finally:
            self.db_observe(op, time.perf_counter() - start)

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.set(max(0.0, seconds))

    async def watch_loop_lag(self, interval: float = 1.0) -> None:
        """Probe event-loop lag every ``interval`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag(loop.time() - start - interval)

    def overload(self) -> None:
        self._overload.inc()

    def parse_error(self, transport: str) -> None:
        self._parse_errors.labels(self._transports(transport)).inc()

    def connection_dropped(self, reason: str) -> None:
        """A stream connection refused at the limit or dropped (decisions 39)."""
        self._connections_dropped.labels(reason if reason in DROP_REASONS else OTHER).inc()

    def auth_failure(self, reason: str) -> None:
        """A digest check failed; ``reason`` e.g. ``bad_password``, ``stale_nonce``."""
        self._auth_failures.labels(self._auth_reasons(reason)).inc()

    def render(self) -> bytes:
        """The text exposition (what ``GET /metrics`` returns), for logs and tests."""
        return bytes(generate_latest(self.registry))
