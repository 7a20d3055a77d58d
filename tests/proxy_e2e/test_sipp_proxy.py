"""SIPp through sipsca's registrar, proxy and digest authentication: short bounded runs.

Every SIPp run is bounded by ``-m`` (calls), ``-timeout`` with ``-timeout_error`` and a
subprocess timeout, and talks to 127.0.0.1 only. Digest runs offer MD5 only
(``auth.algorithms = ["MD5"]``): SIPp 3.6 answers MD5 challenges, not SHA-256 ones. SIPp's
digest ``uri`` defaults to ``sip:remote_ip:remote_port``; sipsca requires it to equal the
Request-URI (RFC 2617 3.2.2.5), so ``-auth_uri`` passes the Request-URI.

* REGISTER with a 401 challenge answered by SIPp, then unregister (bench/sipp/register.xml).
* A -> B calls over UDP (bench/sipp/call_uac.xml + call_uas.xml), callee registered.
* Authenticated calls from a TCP caller (tests/proxy_e2e/sipp/uac_auth.xml: 407, ACK,
  INVITE with credentials) to a UDP callee: digest + transport change + double Record-Route.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import ProxyServer, add_user, bindings

from helpers.phone import Phone
from helpers.server import REPO, free_port

pytestmark = pytest.mark.interop

BENCH = REPO / "bench" / "sipp"
OWN = Path(__file__).resolve().parent / "sipp"
MD5_ONLY = {"auth": {"mode": "digest", "algorithms": ["MD5"]}}


def sipp_exe() -> str:
    exe = shutil.which("sipp")
    if exe is None:
        pytest.fail("sipp is not installed (Debian package sip-tester)")
    return exe


def run_sipp(
    workdir: Path,
    scenario: Path,
    *,
    target: tuple[str, int] | None,
    calls: int,
    rate: int = 10,
    local_port: int | None = None,
    extra: tuple[str, ...] = (),
    timeout: int = 20,
    background: bool = False,
) -> Any:
    """Run SIPp; returns (returncode, successful, failed, output) or the Popen."""
    if target is not None:
        assert target[0] == "127.0.0.1"
    port = local_port or free_port(also=None)
    stat = workdir / f"{scenario.stem}-{port}-stat.csv"
    errors = workdir / f"{scenario.stem}-{port}-errors.log"
    cmd = [sipp_exe()]
    if target is not None:
        cmd.append(f"{target[0]}:{target[1]}")
    cmd += [
        "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-m", str(calls),
        "-r", str(rate), "-timeout", f"{timeout}s", "-timeout_error", "-nostdin",
        "-trace_stat", "-stf", str(stat), "-trace_err", "-error_file", str(errors),
        *extra,
    ]  # fmt: skip
    if background:
        return subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    p = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout + 20,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    ok, failed = stat_counts(stat)
    out = p.stdout[-2000:] + p.stderr[-2000:]
    if errors.exists():
        out += errors.read_text(errors="replace")[-3000:]
    return p.returncode, ok, failed, out


def stat_counts(stat: Path) -> tuple[int, int]:
    if not stat.exists():
        return (0, 0)
    rows = list(csv.reader(stat.open(), delimiter=";"))
    if len(rows) < 2:
        return (0, 0)
    col = {h: i for i, h in enumerate(rows[0])}
    return int(rows[-1][col["SuccessfulCall(C)"]]), int(rows[-1][col["FailedCall(C)"]])


def assert_clean(result: Any, calls: int) -> None:
    rc, ok, failed, out = result
    assert (rc, ok, failed) == (0, calls, 0), f"sipp rc={rc} ok={ok} failed={failed}\n{out}"


async def register_at(server: ProxyServer, user: str, port: int, **kw: Any) -> None:
    """REGISTER ``sip:user@127.0.0.1:port`` from that very port (the SIPp UAS's), so the
    binding's source flow is the UAS."""
    async with Phone("reg", user, port=port, server=server.sip_addr, **kw) as p:
        assert (await p.register(expires=300)).status == 200


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(5)
        return None


async def test_sipp_register_with_digest(make_server: Any, tmp_path: Path) -> None:
    """A subscriber made with ``sipsca user add`` registers 10 contacts through SIPp, each:
    401, answer, 200 listing the contact with its expires, then removal (401, answer, 200):
    10 successful calls, 0 failed, and no binding left.

    (bench/sipp/register.xml needs ``[field0]`` inside ``[authentication]``, which SIPp 3.6
    does not substitute, so tests/proxy_e2e/sipp/register_auth.xml uses -au/-ap.)"""
    srv: ProxyServer = make_server(MD5_ONLY)
    await asyncio.to_thread(add_user, srv, "sippreg", srv.domain, "sippreg-secret")
    result = await asyncio.to_thread(
        run_sipp, tmp_path, OWN / "register_auth.xml", target=srv.sip_addr, calls=10, rate=20,
        extra=("-s", "sippreg", "-au", "sippreg", "-ap", "sippreg-secret",
               "-auth_uri", srv.domain),
    )  # fmt: skip
    assert_clean(result, 10)
    assert await bindings(srv) == []


async def test_sipp_calls_udp(make_server: Any, tmp_path: Path) -> None:
    """20 A -> B calls (INVITE/100/180/200/ACK/BYE via the Record-Route set) from a SIPp UAC
    to a SIPp UAS registered as bob: 20 successful calls on both sides, 0 failed, and the
    proxy keeps no call state afterwards."""
    srv: ProxyServer = make_server()
    port = free_port(also=None)
    await register_at(srv, "bob", port)
    uas = run_sipp(
        tmp_path, BENCH / "call_uas.xml", target=None, calls=20, local_port=port,
        extra=("-s", "bob"), timeout=30, background=True,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.5)
        assert uas.poll() is None, "SIPp UAS did not start"
        result = await asyncio.to_thread(
            run_sipp, tmp_path, BENCH / "call_uac.xml", target=srv.sip_addr, calls=20,
            rate=20, extra=("-s", "bob"),
        )  # fmt: skip
    finally:
        rc = await asyncio.to_thread(stop, uas)
    assert_clean(result, 20)
    assert rc == 0, f"SIPp UAS exit {rc}"


async def test_sipp_authenticated_calls_tcp_to_udp(make_server: Any, tmp_path: Path) -> None:
    """10 calls from a SIPp caller on TCP that answers the 407 challenge (MD5) to a SIPp UAS
    on UDP: the proxy authenticates, strips the credentials, double record-routes (TCP/UDP)
    and the in-dialog ACK/BYE follow the route set: 0 failed calls on both sides."""
    srv: ProxyServer = make_server(MD5_ONLY)
    await asyncio.gather(
        asyncio.to_thread(add_user, srv, "alice", srv.domain, "alice-pw"),
        asyncio.to_thread(add_user, srv, "bob", srv.domain, "bob-pw"),
    )
    port = free_port(also=None)
    await register_at(srv, "bob", port, credentials=("bob", "bob-pw"))
    uas = run_sipp(
        tmp_path, BENCH / "call_uas.xml", target=None, calls=10, local_port=port,
        extra=("-s", "bob"), timeout=30, background=True,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.5)
        assert uas.poll() is None, "SIPp UAS did not start"
        t0 = time.monotonic()
        result = await asyncio.to_thread(
            run_sipp, tmp_path, OWN / "uac_auth.xml", target=srv.sip_addr, calls=10, rate=10,
            extra=("-s", "bob", "-key", "caller", "alice", "-au", "alice", "-ap", "alice-pw",
                   "-auth_uri", f"bob@{srv.domain}", "-t", "t1"),
        )  # fmt: skip
        assert time.monotonic() - t0 < 30
    finally:
        rc = await asyncio.to_thread(stop, uas)
    assert_clean(result, 10)
    assert rc == 0, f"SIPp UAS exit {rc}"
