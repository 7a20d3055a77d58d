"""SIPp against ``sipsca serve``: short, bounded runs of the bench/sipp scenarios.

Every run is bounded by ``-m`` (call count), ``-timeout`` (wall clock, with
``-timeout_error`` so that a timeout fails the run) and a subprocess timeout; all traffic stays
on 127.0.0.1. ``SIPSCA_SIPP_AGAINST=kamailio`` runs the SCA scenarios against the reference
Kamailio instead (a check of the scenarios themselves).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.phone import Phone
from helpers.server import REPO, free_port

pytestmark = pytest.mark.interop

SIPP_DIR = REPO / "bench" / "sipp"


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str

    def __str__(self) -> str:
        head = f"sipp rc={self.returncode} successful={self.successful} failed={self.failed}"
        return f"{head}\n{self.output[-3000:]}"


def _require_sipp() -> str:
    exe = shutil.which("sipp")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("sipp (Debian package sip-tester) is not installed: run .ci/kamailio.sh")
        pytest.skip("sipp not installed (apt-get install sip-tester, or .ci/kamailio.sh)")
    return exe


def run_sipp(
    workdir: Path,
    target: tuple[str, int] | None,
    scenario: str,
    *,
    calls: int,
    rate: int | None = None,
    local_port: int = 0,
    extra: tuple[str, ...] = (),
    timeout: int = 30,
    background: bool = False,
) -> SippResult | subprocess.Popen[bytes]:
    """Run SIPp; returns its result (or the Popen when ``background``)."""
    exe = _require_sipp()
    if target is not None:
        assert target[0].startswith("127."), target
    name = Path(scenario).stem
    if not local_port:
        local_port = free_port(also=None)  # SIPp's "-p 0" means 5060, which may be taken
    stat = workdir / f"{name}-{local_port}-stat.csv"
    cmd = [exe]
    if target is not None:
        cmd.append(f"{target[0]}:{target[1]}")
    cmd += [
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port),
        "-m",
        str(calls),
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stat),
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}-{local_port}-errors.log"),
        "-max_recv_loops",
        "10000",
        "-buff_size",
        "4194304",
    ]
    if rate is not None:
        cmd += ["-r", str(rate)]
    cmd += list(extra)
    if background:
        return subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    p = subprocess.run(
        cmd,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        stdin=subprocess.DEVNULL,
    )
    ok, failed = _stat_counts(stat)
    errors = workdir / f"{name}-{local_port}-errors.log"
    out = (
        p.stdout
        + p.stderr
        + (errors.read_text(errors="replace")[-3000:] if errors.exists() else "")
    )
    return SippResult(p.returncode, ok, failed, out)


def _stat_counts(stat: Path) -> tuple[int, int]:
    """(successful, failed) cumulative call counts from SIPp's last -trace_stat row."""
    if not stat.exists():
        return (0, 0)
    rows = list(csv.reader(stat.open(), delimiter=";"))
    if len(rows) < 2:
        return (0, 0)
    head, last = rows[0], rows[-1]
    col = {h: i for i, h in enumerate(head)}
    return int(last[col["SuccessfulCall(C)"]]), int(last[col["FailedCall(C)"]])


def users_csv(workdir: Path, n: int) -> Path:
    """The first ``n`` lines of bench/sipp/users10k.csv (distinct AoRs)."""
    lines = (SIPP_DIR / "users10k.csv").read_text().splitlines()
    path = workdir / f"users{n}.csv"
    path.write_text("\n".join(lines[: n + 1]) + "\n")
    return path


@pytest.fixture
def target(sipsca_factory: Any, kamailio_factory_optional: Any) -> Any:
    if os.environ.get("SIPSCA_SIPP_AGAINST") == "kamailio":
        return kamailio_factory_optional()
    return sipsca_factory()


@pytest.fixture
def kamailio_factory_optional(request: pytest.FixtureRequest) -> Any:
    if os.environ.get("SIPSCA_SIPP_AGAINST") != "kamailio":
        return None
    return request.getfixturevalue("kamailio_factory")


def assert_clean(res: SippResult, calls: int) -> None:
    assert res.returncode == 0, str(res)
    assert (res.successful, res.failed) == (calls, 0), str(res)


def test_sipp_options(target: Any, tmp_path: Path) -> None:
    """200 OPTIONS to the server itself at 200/s: 200 answered 200 OK, 0 failures."""
    res = run_sipp(tmp_path, target.sip_addr, "options.xml", calls=200, rate=200)
    assert isinstance(res, SippResult)
    assert_clean(res, 200)


def test_sipp_register(target: Any, tmp_path: Path) -> None:
    """200 distinct AoRs REGISTER then unregister (Expires 0): 0 failures."""
    res = run_sipp(
        tmp_path,
        target.sip_addr,
        "register.xml",
        calls=200,
        rate=200,
        extra=("-inf", str(users_csv(tmp_path, 200))),
    )
    assert isinstance(res, SippResult)
    assert_clean(res, 200)


async def _register_contact(target: Any, user: str, port: int) -> None:
    """REGISTER ``sip:user@127.0.0.1:port`` (the SIPp UAS address) with a short-lived phone."""
    async with Phone("reg", user, port=port, server=target.sip_addr, domain="127.0.0.1") as p:
        r = await p.register()
        assert r.status == 200, r


def _start_uas(tmp_path: Path, port: int, calls: int, timeout: int) -> subprocess.Popen[bytes]:
    proc = run_sipp(
        tmp_path,
        None,
        "call_uas.xml",
        calls=calls,
        local_port=port,
        extra=("-s", "bob"),
        timeout=timeout,
        background=True,
    )
    assert isinstance(proc, subprocess.Popen)
    time.sleep(0.5)
    assert proc.poll() is None, "SIPp UAS did not start"
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(5)
        return None


async def test_sipp_call(target: Any, tmp_path: Path) -> None:
    """50 calls A -> bob (a SIPp UAS registered through sipsca): INVITE/180/200/ACK/BYE via the
    Record-Route set; both SIPp sides report 50 successful calls."""
    port = free_port(also=None)
    await _register_contact(target, "bob", port)
    uas = _start_uas(tmp_path, port, 50, 40)
    try:
        res = run_sipp(
            tmp_path, target.sip_addr, "call_uac.xml", calls=50, rate=25, extra=("-s", "bob")
        )
    finally:
        rc = _stop(uas)
    assert isinstance(res, SippResult)
    assert_clean(res, 50)
    assert rc == 0, f"SIPp UAS exit {rc}"


def test_sipp_subscribe_storm(target: Any, tmp_path: Path) -> None:
    """500 distinct AoRs SUBSCRIBE call-info at 250/s: every one gets 202 and an idle NOTIFY
    (answered 200); 0 failures, and RPC counts 500 subscriptions."""
    res = run_sipp(
        tmp_path,
        target.sip_addr,
        "subscribe_storm.xml",
        calls=500,
        rate=250,
        extra=("-inf", str(users_csv(tmp_path, 500))),
    )
    assert isinstance(res, SippResult)
    assert_clean(res, 500)
    out = target.rpc("sca.subscription_count", "call-info")
    assert out == ["500 call-info"], out


async def test_sipp_sca_call(target: Any, tmp_path: Path) -> None:
    """20 full SCA calls (call-info SUBSCRIBE, line-seize, INVITE with Call-Info, 180/200/ACK,
    BYE, unsubscribe) on 20 distinct lines, the callee a SIPp UAS: 0 failures."""
    port = free_port(also=None)
    await _register_contact(target, "bob", port)
    uas = _start_uas(tmp_path, port, 20, 40)
    try:
        res = run_sipp(
            tmp_path,
            target.sip_addr,
            "sca_call.xml",
            calls=20,
            rate=10,
            extra=("-s", "bob", "-inf", str(users_csv(tmp_path, 20))),
        )
    finally:
        rc = _stop(uas)
    assert isinstance(res, SippResult)
    assert_clean(res, 20)
    assert rc == 0, f"SIPp UAS exit {rc}"
    assert not re.search(r"\S", "\n".join(target.rpc("sca.all_appearances")))
