"""Differential tests: the same phone scripts against the reference Kamailio and sipsca.

For every scenario the script runs first against Kamailio (127.0.0.1:5070, the reference
lab config), then against a fresh ``sipsca serve``. What each phone received is reduced to
observations:

* ``notifies["<phone> <event>"]``: the NOTIFYs that phone received for that event, in order,
  each as ``(Subscription-State, Call-Info)`` with the ``expires`` value replaced by ``*``
  (its presence is compared, its value is not); retransmissions are not counted;
* ``replies``: ``"<step>": status`` (plus the ``Expires`` of SUBSCRIBE 2xx replies);
* ``invites["<phone>"]``: the Call-Info of each INVITE a phone received (None = none);
* ``rpc["<step>"]``: ``sca.all_appearances`` reduced to ``aor index state``.

sipsca must produce exactly the Kamailio observations transformed by the scenario's
``KNOWN_DEVIATIONS`` (each one a ruling of /work/shared/spec/decisions.md, or a
Kamailio-script artifact the spec tells a stand-alone server not to copy); any other
difference fails. ``test_kamailio_golden`` checks that the emulator reproduces the golden
NOTIFY sequences recorded in ``reference/kamailio/traces/*/ladder.txt``.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from helpers.phone import Ladder, Phone, call_info_of
from helpers.server import reference_dir
from sipsca.sip import SipResponse

pytestmark = pytest.mark.interop

AOR = "sip:215@127.0.0.1"
CI = "<sip:215@127.0.0.1>;appearance-index=%s"
DOM = "<sip:127.0.0.1>"
IDLE = f"{DOM};appearance-index=*;appearance-state=idle"

Obs = dict[str, Any]


def norm_state(value: str | None) -> str | None:
    if value is None:
        return None
    return re.sub(r"expires=\d+", "expires=*", value.replace(" ", ""))


# ------------------------------------------------------------------------------ runner
class Run:
    """One scenario run against one server: phones, recorded replies and RPC snapshots."""

    def __init__(self, server: Any, ladder: Ladder) -> None:
        self.server = server
        self.ladder = ladder
        self.phones: dict[str, Phone] = {}
        self.replies: dict[str, Any] = {}
        self.rpc: dict[str, list[str]] = {}

    async def phone(self, name: str, user: str, **kw: Any) -> Phone:
        p = Phone(
            name, user, server=self.server.sip_addr, ladder=self.ladder, domain="127.0.0.1", **kw
        )
        self.phones[name] = p
        return await p.start()

    def reply(self, label: str, resp: SipResponse | None, *, expires: bool = False) -> None:
        assert label not in self.replies, label
        if resp is None:
            self.replies[label] = None
            return
        self.ladder.note(f"{label} -> {resp.status} {resp.reason}")
        if expires:
            self.replies[label] = (resp.status, resp.headers.get("expires"))
        else:
            self.replies[label] = resp.status

    async def settle(self, quiet: float = 0.3, limit: float = 3.0) -> None:
        """Wait until no phone received anything for ``quiet`` s (at most ``limit`` s)."""
        deadline = time.monotonic() + limit
        last = -1
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            n = sum(len(p.received) for p in self.phones.values())
            if n != last:
                last, stable_since = n, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return
            await asyncio.sleep(0.05)

    async def snapshot(self, label: str) -> None:
        lines = await self.server.arpc("sca.all_appearances")
        self.rpc[label] = sorted(" ".join(line.split()[:3]) for line in lines)
        self.ladder.note(f"RPC sca.all_appearances ({label}): {lines}")

    def observations(self) -> Obs:
        notifies: dict[str, list[tuple[str | None, str | None]]] = {}
        invites: dict[str, list[str | None]] = {}
        for name, p in self.phones.items():
            for n in p.notifies:
                key = f"{name} {(n.headers.get('event') or '').strip()}"
                notifies.setdefault(key, []).append(
                    (norm_state(n.headers.get("subscription-state")), call_info_of(n))
                )
            if p.incoming:
                invites[name] = [call_info_of(i.invite) for i in p.incoming]
        return {
            "replies": dict(self.replies),
            "notifies": notifies,
            "invites": invites,
            "rpc": dict(self.rpc),
        }

    async def close(self) -> None:
        for p in self.phones.values():
            await p.close()


async def register_all(run: Run, *phones: Phone) -> None:
    for p in phones:
        run.reply(f"{p.name} REGISTER", await p.register())


async def subscribe_members(run: Run, *phones: Phone, expires: int = 3600) -> None:
    for p in phones:
        _, r = await p.subscribe("call-info", expires)
        run.reply(f"{p.name} SUBSCRIBE call-info {expires}", r, expires=True)


# ------------------------------------------------------------------------------ scenarios
async def sc_subscribe(run: Run) -> None:
    """call-info subscribe, in-dialog refresh, in-dialog unsubscribe, out-of-dialog
    unsubscribe, in-dialog re-SUBSCRIBE on the unsubscribed dialog."""
    a, b = await run.phone("phoneA", "215"), await run.phone("phoneB", "215")
    await register_all(run, a, b)
    da, r = await a.subscribe("call-info", 3600)
    run.reply("A SUBSCRIBE call-info 3600", r, expires=True)
    _, r = await b.subscribe("call-info", 3600)
    run.reply("B SUBSCRIBE call-info 3600", r, expires=True)
    await run.settle()
    _, r = await a.subscribe("call-info", 1800, dialog=da)
    run.reply("A refresh 1800", r, expires=True)
    await run.settle()
    _, r = await a.subscribe("call-info", 0, dialog=da)
    run.reply("A unsubscribe in-dialog", r, expires=True)
    await run.settle()
    _, r = await b.subscribe("call-info", 0)
    run.reply("B unsubscribe out-of-dialog", r, expires=True)
    await run.settle()
    _, r = await a.subscribe("call-info", 3600, dialog=da)
    run.reply("A re-SUBSCRIBE on the terminated dialog", r, expires=True)
    await run.settle()


async def sc_expires_limits(run: Run) -> None:
    """Expires clamping (7200 -> 3600, line-seize 60 -> 15) and a SUBSCRIBE without Expires."""
    a = await run.phone("phoneA", "215")
    await register_all(run, a)
    _, r = await a.subscribe("call-info", 7200)
    run.reply("A call-info 7200", r, expires=True)
    await run.settle()
    _, r = await a.subscribe("line-seize", 60, call_info=CI % 1)
    run.reply("A line-seize 60", r, expires=True)
    await run.settle()
    b = await run.phone("phoneB", "215")
    _, r = await b.subscribe("call-info", None)
    run.reply("B call-info without Expires", r, expires=True)
    await run.settle()


async def sc_seize(run: Run) -> None:
    """Seize index 1, contention (480), index 0 = next free, release by Expires 0."""
    a, b = await run.phone("phoneA", "215"), await run.phone("phoneB", "215")
    await register_all(run, a, b)
    await subscribe_members(run, a, b)
    await run.settle()
    dl, r = await a.subscribe("line-seize", 15, call_info=CI % 1)
    run.reply("A line-seize idx 1", r, expires=True)
    await run.settle()
    _, r = await b.subscribe("line-seize", 15, call_info=CI % 1)
    run.reply("B line-seize idx 1 (taken)", r)
    run.replies["B 480 Retry-After"] = r.headers.get("retry-after")
    await run.settle()
    _, r = await b.subscribe("line-seize", 15, call_info=CI % 0)
    run.reply("B line-seize idx 0", r, expires=True)
    await run.settle()
    await run.snapshot("after seizes")
    _, r = await a.subscribe("line-seize", 0, call_info=CI % 1, dialog=dl)
    run.reply("A line-seize release idx 1", r, expires=True)
    await run.settle()
    await run.snapshot("after release")


async def _seize_and_call(run: Run, callee_mode: str | int) -> tuple[Phone, Phone, Phone]:
    a, b = await run.phone("phoneA", "215"), await run.phone("phoneB", "215")
    callee = await run.phone("callee300", "300", uas=callee_mode, answer_delay=0.3)
    await register_all(run, a, b, callee)
    await subscribe_members(run, a, b)
    await run.settle()
    _, r = await a.subscribe("line-seize", 15, call_info=CI % 1)
    run.reply("A line-seize", r, expires=True)
    await run.settle()
    return a, b, callee


async def sc_basic_call(run: Run) -> None:
    """Outgoing call from the line: seize, INVITE, 180, 200, ACK, hold, resume, BYE."""
    a, _, _ = await _seize_and_call(run, "answer")
    call = await a.invite("300", call_info=CI % 1)
    run.reply("A INVITE", call.final)
    run.replies["A INVITE provisionals"] = [s for s in call.statuses() if 100 < s < 200]
    await run.settle()
    await run.snapshot("answered")
    run.reply("A hold", await a.reinvite(call, "sendonly"))
    await run.settle()
    await run.snapshot("held")
    run.reply("A resume", await a.reinvite(call, "sendrecv"))
    await run.settle()
    run.reply("A BYE", await a.bye(call))
    await run.settle()
    await run.snapshot("ended")


async def sc_cancel(run: Run) -> None:
    """Outgoing call CANCELled after 180."""
    a, _, _ = await _seize_and_call(run, "ring")
    call = await a.invite("300", call_info=CI % 1, wait=False)
    await call.wait_status(180)
    await run.settle()
    run.reply("A CANCEL", await a.cancel(call))
    run.reply("A INVITE final", await call.wait_final())
    await run.settle(limit=4)
    await run.snapshot("after cancel")


async def sc_busy(run: Run) -> None:
    """Callee answers 486 Busy Here."""
    a, _, _ = await _seize_and_call(run, "busy")
    call = await a.invite("300", call_info=CI % 1)
    run.reply("A INVITE", call.final)
    await run.settle()
    await run.snapshot("after busy")


async def sc_expiry(run: Run) -> None:
    """Short line-seize (2 s) never used, and a short call-info (6 s) never refreshed."""
    a, b = await run.phone("phoneA", "215"), await run.phone("phoneB", "215")
    await register_all(run, a, b)
    _, r = await a.subscribe("call-info", 3600)
    run.reply("A SUBSCRIBE call-info 3600", r, expires=True)
    db, r = await b.subscribe("call-info", 6)
    run.reply("B SUBSCRIBE call-info 6", r, expires=True)
    await run.settle()
    dl, r = await a.subscribe("line-seize", 2, call_info=CI % 1)
    run.reply("A line-seize 2", r, expires=True)
    await a.expect_notify(
        "line-seize",
        call_id=dl.call_id,
        predicate=lambda n: "terminated" in (n.headers.get("subscription-state") or ""),
        timeout=8,
    )
    await run.settle()
    await run.snapshot("after seize expiry")
    await b.expect_notify(
        "call-info",
        call_id=db.call_id,
        predicate=lambda n: "terminated" in (n.headers.get("subscription-state") or ""),
        timeout=10,
    )
    await run.settle()


async def _incoming(run: Run) -> tuple[Phone, Phone, Phone, Any]:
    a = await run.phone("phoneA", "215", uas="answer", answer_delay=0.3)
    b = await run.phone("phoneB", "215", uas="ring")
    caller = await run.phone("caller400", "400")
    await register_all(run, a, b, caller)
    await subscribe_members(run, a, b)
    await run.settle()
    call = await caller.invite("215")
    run.reply("caller INVITE 215", call.final)
    run.replies["caller INVITE provisionals"] = sorted(s for s in call.statuses() if 100 < s < 200)
    run.replies["phoneB fork final"] = None
    await run.settle(limit=4)
    run.replies["phoneB fork final"] = b.incoming[0].final_status if b.incoming else None
    await run.snapshot("answered")
    return a, b, caller, call


async def sc_incoming(run: Run) -> None:
    """An outside caller calls the shared line (forked to A and B); A answers; caller hangs up."""
    _, _, caller, call = await _incoming(run)
    run.reply("caller BYE", await caller.bye(call))
    await run.settle()
    await run.snapshot("ended")


async def sc_incoming_member_hangup(run: Run) -> None:
    """As ``incoming``, but the answering member (A) hangs up."""
    a, _, _, _ = await _incoming(run)
    run.reply("A BYE", await a.bye(a.incoming[0]))
    await run.settle()
    await run.snapshot("ended")


async def sc_hold_retrieve(run: Run) -> None:
    """A's call is held; B retrieves it (INVITE to the AoR with the appearance index)."""
    a, b = await run.phone("phoneA", "215"), await run.phone("phoneB", "215")
    callee = await run.phone("callee300", "300", uas="answer", answer_delay=0.3)
    await register_all(run, a, b, callee)
    await subscribe_members(run, a, b)
    await run.settle()
    _, r = await a.subscribe("line-seize", 15, call_info=CI % 1)
    run.reply("A line-seize", r, expires=True)
    call = await a.invite("300", call_info=CI % 1)
    run.reply("A INVITE", call.final)
    await run.settle()
    run.reply("A hold", await a.reinvite(call, "sendonly"))
    await run.settle()
    await run.snapshot("held")
    call2 = await b.invite("215", call_info=CI % 1)
    run.reply("B INVITE (retrieve)", call2.final)
    await run.settle()
    run.replies["callee300 got Replaces"] = [
        bool(i.invite.headers.get("replaces")) for i in callee.incoming
    ]
    await run.snapshot("retrieved")
    run.reply("A BYE old dialog", await a.bye(call))
    await run.settle()
    run.reply("B BYE", await b.bye(call2))
    await run.settle()
    await run.snapshot("ended")


async def sc_retransmitted_200(run: Run) -> None:
    """The callee's 200 OK reaches the proxy twice before the ACK (a UDP retransmission)."""
    a, _, callee = await _seize_and_call(run, "ring")
    call = await a.invite("300", call_info=CI % 1, wait=False)
    await call.wait_status(180)
    await run.settle()
    inc = callee.incoming[0]
    await callee.answer(inc)
    await callee.resend_final(inc, times=1)
    run.reply("A INVITE", await a.finish_invite(call))
    await run.settle()
    run.reply("A BYE", await a.bye(call))
    await run.settle()


@dataclass(frozen=True)
class Scenario:
    fn: Callable[[Run], Awaitable[None]]
    purge: int = 10
    golden: str | None = None
    golden_prefix: bool = False


SCENARIOS: dict[str, Scenario] = {
    "subscribe": Scenario(sc_subscribe, golden="02_unsubscribe", golden_prefix=True),
    "expires_limits": Scenario(sc_expires_limits, golden="04_expires_limits"),
    "seize": Scenario(sc_seize),
    "basic_call": Scenario(sc_basic_call, golden="01_basic_call"),
    "cancel": Scenario(sc_cancel, golden="08_cancel"),
    "busy": Scenario(sc_busy, golden="09_busy"),
    "expiry": Scenario(sc_expiry, purge=1, golden="03_expiry"),
    "incoming": Scenario(sc_incoming, golden="11_incoming_shared"),
    "incoming_member_hangup": Scenario(
        sc_incoming_member_hangup, golden="11b_incoming_member_hangup"
    ),
    "hold_retrieve": Scenario(sc_hold_retrieve, golden="13_hold_retrieve"),
    "retransmitted_200": Scenario(sc_retransmitted_200),
}


# ------------------------------------------------------------------------------ deviations
@dataclass(frozen=True)
class Deviation:
    """A difference sipsca must show: ``apply`` maps Kamailio's observations to sipsca's."""

    name: str
    item: int | None  # decisions.md "Bugs we fix" item number; None = see ``ref``
    ref: str
    apply: Callable[[Obs], None] = field(compare=False)


def _expires_everywhere(obs: Obs) -> None:
    for seq in obs["notifies"].values():
        for i, (state, ci) in enumerate(seq):
            if state == "active":
                seq[i] = ("active;expires=*", ci)


def _no_expires_is_default(obs: Obs) -> None:
    obs["replies"]["B call-info without Expires"] = (202, "3600")
    seq = obs["notifies"]["phoneB call-info"]
    assert seq[0][0] == "terminated", seq
    seq[0] = ("active", seq[0][1])


def _alerting_call_info(active_ci: str) -> str:
    return active_ci.replace("appearance-state=active", "appearance-state=alerting", 1)


def _incoming_alerting(obs: Obs) -> None:
    for phone in ("phoneA", "phoneB"):
        seq = obs["notifies"][f"{phone} call-info"]
        i = next(i for i, (_, ci) in enumerate(seq) if ci and "appearance-state=active" in ci)
        seq.insert(i, (seq[i][0], _alerting_call_info(seq[i][1])))
        obs["invites"][phone] = [f"{DOM};appearance-index=1"]


def _incoming_ends_idle(obs: Obs) -> None:
    for phone in ("phoneA", "phoneB"):
        seq = obs["notifies"][f"{phone} call-info"]
        seq.append((seq[-1][0], IDLE))
    obs["rpc"]["ended"] = []


def _no_failure_route_rebroadcast(obs: Obs) -> None:
    seized = f"{DOM};appearance-index=1;appearance-state=seized,{IDLE}"
    for phone in ("phoneA", "phoneB"):
        seq = obs["notifies"][f"{phone} call-info"]
        cis = [ci for _, ci in seq]
        assert cis.count(seized) == 3, cis
        i = len(cis) - 1 - cis[::-1].index(seized)
        del seq[i]


def _single_active_on_retransmitted_200(obs: Obs) -> None:
    for phone in ("phoneA", "phoneB"):
        seq = obs["notifies"][f"{phone} call-info"]
        actives = [i for i, (_, ci) in enumerate(seq) if ci and "appearance-state=active" in ci]
        assert len(actives) == 2 and actives[1] == actives[0] + 1, seq
        del seq[actives[1]]


def _terminated_dialog_is_481(obs: Obs) -> None:
    obs["replies"]["A re-SUBSCRIBE on the terminated dialog"] = (481, None)
    seq = obs["notifies"]["phoneA call-info"]
    assert seq[-2][0] == "terminated" and seq[-1][0] == "active", seq
    del seq[-1]  # Kamailio's NOTIFY 'active' of the revived subscription


def _retrieval_stays_active(obs: Obs) -> None:
    for phone in ("phoneA", "phoneB"):
        seq = obs["notifies"][f"{phone} call-info"]
        last_held = max(i for i, (_, ci) in enumerate(seq) if ci and "state=held" in ci)
        i = next(
            i for i in range(last_held + 1, len(seq)) if "state=progressing" in (seq[i][1] or "")
        )
        del seq[i]  # no 'progressing' for the 180 to the retrieving INVITE
        assert seq[i][1] == seq[i + 1][1] and "state=active" in (seq[i][1] or ""), seq
        del seq[i + 1]  # no second 'active' on the ACK


D1 = Deviation(
    "expires-in-every-active-notify",
    1,
    "every active NOTIFY, also the first one after a SUBSCRIBE, carries "
    "Subscription-State: active;expires=<remaining>",
    _expires_everywhere,
)
D12 = Deviation(
    "missing-expires-means-package-default",
    12,
    "a SUBSCRIBE without Expires gets call_info_max_expires (3600), not an unsubscribe",
    _no_expires_is_default,
)
D8 = Deviation(
    "incoming-call-alerting",
    8,
    "an incoming call is shown as alerting on a new appearance while it rings, and "
    "the INVITE forked to each member carries Call-Info: <sip:DOMAIN>;appearance-index=N",
    _incoming_alerting,
)
D2 = Deviation(
    "incoming-call-ends-idle",
    2,
    "answered incoming calls are matched whichever side sends the BYE: the "
    "appearance is released (idle NOTIFY, gone from sca.all_appearances)",
    _incoming_ends_idle,
)
FAILURE_ROUTE = Deviation(
    "no-failure-route-rebroadcast",
    None,
    "sca-behaviour.md 5.7: Kamailio's FAILURE_ROUTE re-runs the INVITE request handler and "
    "re-broadcasts 'seized'; a stand-alone server runs only the failure logic",
    _no_failure_route_rebroadcast,
)
RETRANS_200 = Deviation(
    "no-rebroadcast-on-retransmitted-200",
    None,
    "decisions.md preamble ('fix every bug it has'); traces/README: Kamailio sends another "
    "'active' NOTIFY for every retransmitted 200 OK",
    _single_active_on_retransmitted_200,
)

TERMINATED_DIALOG = Deviation(
    "terminated-dialog-is-481",
    None,
    "RFC 6665 4.4.1 / decisions.md preamble ('fix every bug it has'): after the NOTIFY "
    "'terminated' the subscription's dialog is gone, so an in-dialog SUBSCRIBE on it gets 481 "
    "(Kamailio brings the subscription back, traces/02; docs/compat.md row 57)",
    _terminated_dialog_is_481,
)

RETRIEVAL = Deviation(
    "retrieved-call-stays-active",
    None,
    "decisions.md preamble ('fix every bug it has'): a held call retrieved by another member "
    "is connected at once, so the 180 to the retrieving INVITE does not flash the key as "
    "'progressing', and the ACK sends no duplicate 'active' (docs/compat.md)",
    _retrieval_stays_active,
)

# Applied in order; D1 last (it reads the states the others produce).
KNOWN_DEVIATIONS: dict[str, list[Deviation]] = {
    "subscribe": [TERMINATED_DIALOG, D1],
    "expires_limits": [D12, D1],
    "seize": [D1],
    "basic_call": [D1],
    "cancel": [D1],
    "busy": [FAILURE_ROUTE, D1],
    "expiry": [D1],
    "incoming": [D8, D2, D1],
    "incoming_member_hangup": [D8, D2, D1],
    "hold_retrieve": [RETRIEVAL, D1],
    "retransmitted_200": [RETRANS_200, D1],
}


def expected_for_sipsca(name: str, kamailio_obs: Obs) -> Obs:
    obs = copy.deepcopy(kamailio_obs)
    for dev in KNOWN_DEVIATIONS[name]:
        dev.apply(obs)
    return obs


# ------------------------------------------------------------------------------ golden
def golden_notifies(trace: str) -> dict[str, list[tuple[str | None, str | None]]]:
    """NOTIFY sequences per '<phone> <event>' from a reference ladder.txt."""
    out: dict[str, list[tuple[str | None, str | None]]] = {}
    path = reference_dir() / "traces" / trace / "ladder.txt"
    for line in path.read_text().splitlines():
        m = re.match(r"\[\s*[\d.]+\]\s+(\S+)\s+<-\s+kamailio\s+NOTIFY \S+(.*)$", line)
        if not m:
            continue
        fields = dict(
            part.strip().split(": ", 1) for part in m.group(2).split("  |  ") if ": " in part
        )
        key = f"{m.group(1)} {fields.get('Event')}"
        out.setdefault(key, []).append(
            (norm_state(fields.get("Subscription-State")), fields.get("Call-Info"))
        )
    return out


async def run_scenario(name: str, server: Any, ladder: Ladder) -> Obs:
    ladder.note(f"===== scenario {name} against {server.name} =====")
    run = Run(server, ladder)
    try:
        await asyncio.wait_for(SCENARIOS[name].fn(run), 60)
    finally:
        await run.close()
    return run.observations()


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.golden])
async def test_kamailio_golden(name: str, kamailio_factory: Any, ladder: Ladder) -> None:
    """Our emulator against the reference Kamailio reproduces the recorded NOTIFY sequences."""
    sc = SCENARIOS[name]
    assert sc.golden
    obs = await run_scenario(name, kamailio_factory(purge=sc.purge), ladder)
    golden = golden_notifies(sc.golden)
    if sc.golden_prefix:
        golden = {k: v[: len(obs["notifies"].get(k, []))] for k, v in golden.items()}
    assert obs["notifies"] == golden


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_differential(
    name: str, kamailio_factory: Any, sipsca_factory: Any, ladder: Ladder
) -> None:
    """sipsca == Kamailio + the scenario's KNOWN_DEVIATIONS, exactly."""
    sc = SCENARIOS[name]
    kam = kamailio_factory(purge=sc.purge)
    kobs = await run_scenario(name, kam, ladder)
    kam.stop()
    expected = expected_for_sipsca(name, kobs)
    srv = sipsca_factory({"sca": {"purge_expired_interval": sc.purge}})
    sobs = await run_scenario(name, srv, ladder)
    assert sobs == expected, (
        f"unexplained difference from Kamailio in {name!r} "
        f"(known deviations: {[d.name for d in KNOWN_DEVIATIONS[name]]}):\n"
        + describe_diff(expected, sobs)
    )


def _short(item: Any) -> str:
    text = repr(item)
    return text.replace(DOM + ";", "").replace("appearance-", "")


def describe_diff(expected: Obs, actual: Obs) -> str:
    """Every differing observation, expected (Kamailio + deviations) vs sipsca, one per line."""
    out = []
    for section in ("replies", "notifies", "invites", "rpc"):
        exp, act = expected.get(section, {}), actual.get(section, {})
        for key in sorted(set(exp) | set(act)):
            if exp.get(key) == act.get(key):
                continue
            out.append(f"[{section}] {key}:")
            e, a = exp.get(key), act.get(key)
            if isinstance(e, list) and isinstance(a, list):
                for i in range(max(len(e), len(a))):
                    ei = _short(e[i]) if i < len(e) else "-"
                    ai = _short(a[i]) if i < len(a) else "-"
                    mark = "  " if ei == ai else "!!"
                    out.append(
                        f"  {mark} {i}: expected {ei}\n        {'':>{len(str(i))}}  sipsca   {ai}"
                    )
            else:
                out.append(f"  !! expected {_short(e)}\n     sipsca   {_short(a)}")
    return "\n".join(out)
