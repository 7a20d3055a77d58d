"""In-memory stand-ins for the runtime, faithful to Kamailio's ``sca_rpc.c`` output and faults.

They exist so the RPC layer can be tested over real HTTP without the SIP engine; the texts are
copied from ``reference/kamailio/traces/10_rpc/full.txt`` and spec section 7, so a test that
passes here shows the plumbing carries Kamailio's strings through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sipsca.rpc.api import ManagementBackend, ScaRpc

__all__ = ["NOW", "FakeBackend", "FakeSca", "ScaRpcError"]

NOW = 1795692973.0
"""The epoch second of the Kamailio trace's first seize."""


class ScaRpcError(Exception):
    """Shaped like ``sipsca.sca.rpc.ScaRpcError`` (code + message), deliberately not RpcFault."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FakeSubscription:
    aor: str
    event: str
    subscriber: str
    expires: float
    state: str = "active"


@dataclass
class FakeAppearance:
    index: int
    state: str
    owner: str
    mtime: int
    uri: str = ""
    callee: str = ""
    call_id: str = ""
    from_tag: str = ""
    to_tag: str = ""


@dataclass
class FakeSca:
    """The eleven commands over two lists; queued NOTIFYs wait for ``after_change``."""

    subscriptions: list[FakeSubscription] = field(default_factory=list)
    lines: dict[str, dict[int, FakeAppearance]] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)
    calls: list[tuple[object, ...]] = field(default_factory=list)
    fail_notify: bool = False
    explode: bool = False

    def _broadcast(self, aor: str) -> None:
        self.queued.append(aor)
        if self.fail_notify:
            raise ScaRpcError(500, f"Failed to NOTIFY subscribers to {aor}")

    def rpc_all_subscriptions(self, *, now: float) -> list[str]:
        out = []
        for s in self.subscriptions:
            user = s.aor.removeprefix("sip:").split("@", 1)[0]
            host = s.subscriber.split("@", 1)[1]
            out.append(f"{user} {host} {s.event} {int(s.expires - now)} {s.state}")
        return out

    def rpc_subscription_count(self, event: str) -> list[str]:
        self.calls.append(("subscription_count", event))
        return [f"{sum(s.event == event for s in self.subscriptions)} {event}"]

    def rpc_show_subscription(self, aor: str, event: str, contact: str | None) -> list[str]:
        return [
            f"{s.aor} {s.event} {s.subscriber} {int(s.expires)}"
            for s in self.subscriptions
            if s.aor == aor and s.event == event and contact in (None, s.subscriber)
        ]

    def rpc_subscribers(self) -> list[str]:
        raise ScaRpcError(600, "Not yet implemented")

    def rpc_deactivate_all_subscriptions(self, *, now: float) -> list[str]:
        out = []
        for s in self.subscriptions:
            s.state, s.expires = "terminated;reason=deactivated", 0
            self.queued.append(s.aor)
            out.append(f"Deactivating {s.event} subscription from {s.subscriber}")
        return out

    def rpc_deactivate_subscription(
        self, aor: str, event: str, contact: str, *, now: float
    ) -> list[str]:
        for s in self.subscriptions:
            if (s.aor, s.event, s.subscriber) == (aor, event, contact):
                s.state, s.expires = "terminated;reason=deactivated", 0
                self.queued.append(aor)
                return [f"Deactivating {event} subscription from {contact}"]
        raise ScaRpcError(500, f"No {event} subscription from {contact} for {aor}")

    def rpc_all_appearances(self) -> list[str]:
        if self.explode:
            raise RuntimeError("secret internal detail")
        return [
            " ".join(
                (aor, str(a.index), a.state, str(a.mtime), a.owner, a.callee, a.call_id,
                 a.from_tag, a.to_tag)
            ).rstrip()
            for aor, line in sorted(self.lines.items())
            for a in sorted(line.values(), key=lambda a: a.index)
        ]  # fmt: skip

    def rpc_show_appearance(self, aor: str, index: int | None) -> list[str]:
        raise ScaRpcError(600, "Not yet implemented")

    def rpc_seize_appearance(self, aor: str, owner: str, *, now: float) -> list[str]:
        line = self.lines.setdefault(aor, {})
        index = next(i for i in range(1, len(line) + 2) if i not in line)
        line[index] = FakeAppearance(index, "seized", owner, int(now))
        self._broadcast(aor)
        return [f"Seized {aor} appearance-index {index} for {owner}"]

    def rpc_update_appearance(
        self, aor: str, index: int, state: str, uri: str | None, *, now: float
    ) -> list[str]:
        self.calls.append(("update_appearance", aor, index, state, uri))
        appearance = self.lines.get(aor, {}).get(index)
        if appearance is None:
            raise ScaRpcError(500, f"Failed to update {aor} appearance-index {index}")
        appearance.state, appearance.mtime = state, int(now)
        if uri is not None:
            appearance.uri = f"<{uri}>"
        self._broadcast(aor)
        return []

    def rpc_release_appearance(self, aor: str, index: int, *, now: float) -> list[str]:
        self.calls.append(("release_appearance", aor, index))
        line = self.lines.get(aor)
        if line is None:  # an emptied list stays, as in Kamailio (then "not in use")
            raise ScaRpcError(500, f"No appearances for {aor}")
        if index not in line:
            raise ScaRpcError(500, f"{aor} appearance index {index} is not in use")
        del line[index]
        self._broadcast(aor)
        return []


@dataclass
class FakeBackend:
    """The server facade: a frozen clock, fixed bindings and stats, a log level."""

    sca: FakeSca = field(default_factory=FakeSca)
    clock: float = NOW
    started: float = NOW - 4242.7
    level: str = "INFO"
    after_change_calls: int = 0
    flushed: list[str] = field(default_factory=list)
    fail_after_change: bool = False

    @classmethod
    def seeded(cls) -> FakeBackend:
        """The state of the Kamailio trace: two call-info subscribers on line 215."""
        backend = cls()
        for port in (5082, 5081):
            backend.sca.subscriptions.append(
                FakeSubscription(
                    "sip:215@127.0.0.1", "call-info", f"sip:215@127.0.0.1:{port}", NOW + 3599
                )
            )
        return backend

    def now(self) -> float:
        return self.clock

    def after_change(self) -> None:
        self.after_change_calls += 1
        self.flushed.extend(self.sca.queued)
        self.sca.queued.clear()
        if self.fail_after_change:
            raise OSError("transport down")

    def version(self) -> str:
        return "sipsca 0.1.0"

    def uptime(self) -> float:
        return self.clock - self.started

    def bindings(self) -> list[dict[str, object]]:
        return [
            {
                "aor": "sip:215@127.0.0.1",
                "contact": "sip:215@127.0.0.1:5081",
                "expires": 3599,
                "q": 1.0,
                "received": "udp:127.0.0.1:5081",
                "user_agent": "sca-lab-phoneA",
                "instance": None,
            },
            {
                "aor": "sip:215@127.0.0.1",
                "contact": "sip:215@127.0.0.1:5082",
                "expires": 3598,
                "q": 0.5,
                "received": "udp:127.0.0.1:5082",
                "user_agent": "sca-lab-phoneB",
                "instance": "<urn:uuid:00000000-0000-0000-0000-000000000001>",
            },
        ]

    def stats(self) -> dict[str, float]:
        return {
            "core:rcv_requests": 10.0,
            "core:load": 0.25,
            "sca:subscriptions": 2.0,
            "sca:appearances": 1.0,
            "core:broken": float("nan"),
            "registrar.bindings": 2.0,
        }

    def set_log_level(self, level: str) -> str:
        if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {level!r}")
        self.level = level.upper()
        return self.level

    def log_level(self) -> str:
        return self.level


# The fakes must satisfy the Protocols the runtime implements (checked by mypy).
_sca_check: ScaRpc = FakeSca()
_backend_check: ManagementBackend = FakeBackend()
