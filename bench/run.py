#!/usr/bin/env python3
"""sipsca vs Kamailio 5.6 (sca module) load benchmarks with SIPp, on 127.0.0.1.

One command runs every workload against sipsca and, where marked (K), against the reference
Kamailio in the same run, one server at a time, each step on a freshly started server::

    .venv/bin/python bench/run.py                  # full run (about an hour)
    .venv/bin/python bench/run.py --quick          # smoke run, a few seconds per workload
    .venv/bin/python bench/run.py --workloads subscribe sca_call --servers sipsca

Workloads: ``options`` (sipsca only), ``register`` (K), ``call`` (K), ``subscribe`` (K),
``sca_call`` (K), ``memory`` (K), ``overload`` (sipsca only), ``profile`` (sipsca under cProfile
during a SUBSCRIBE storm) and ``micro`` (bench/bench_parse.py, bench/bench_transactions.py).

Rate ladder: a step runs SIPp at a fixed rate for ``--step-seconds`` (calls = rate x seconds);
it passes with 0 failed calls, every call completed and SIPp reaching >= 95 % of the rate. The
rate doubles until a step fails, then bisects between the best pass and the lowest failure until
they are within 10 %, at most ``--max-steps`` steps. Response times are SIPp's RTDs
(-trace_rtt, 1 ms resolution) plus a probe thread (20 requests/s, microsecond resolution).
CPU is utime+stime of the server's processes over the step; memory is RSS and PSS from
/proc/PID/smaps_rollup (summed over all Kamailio processes).

Every SIPp run is bounded by -m (calls), -timeout (wall clock) and a subprocess timeout; every
server is stopped by its own pid. Prints a markdown summary and writes
bench/results/run-<time>.json (and latest.json). No assertion is made on any figure.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SIPP_DIR = BENCH / "sipp"
RESULTS = BENCH / "results"
VENV_PY = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PY) if VENV_PY.exists() else sys.executable
HOST = "127.0.0.1"
SRC = {"path": REPO / "src", "mode": "worktree"}
"""The sipsca sources the servers run: a snapshot taken at start (see --src)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIPSCA_GC = {"mode": "default"}
GC_SETUP = {"off": "gc.disable()", "relaxed": "gc.set_threshold(100000, 50, 1000)"}

K_WORKLOADS = ("register", "call", "subscribe", "sca_call")
LADDER_WORKLOADS = ("options", *K_WORKLOADS)
ALL_WORKLOADS = (*LADDER_WORKLOADS, "memory", "overload", "profile", "micro")

# full-run ladder start (per server: from smoke runs, the ladder adapts) and cap (calls/s)
START_RATE = {
    "sipsca": {"options": 12000, "register": 2800, "call": 600, "subscribe": 2800, "sca_call": 200},
    "kamailio": {"register": 12000, "call": 160, "subscribe": 8000, "sca_call": 320},
}
MAX_RATE = {"options": 40000, "register": 20000, "call": 5000, "subscribe": 20000, "sca_call": 2000}
QUICK_RATE = {"options": 500, "register": 200, "call": 50, "subscribe": 300, "sca_call": 20}

# issue targets (docs/benchmarks.md)
TARGETS = {
    "options": "sipsca >= 15,000/s",
    "register": "ratio >= 1.0",
    "call": "ratio >= 1.0",
    "subscribe": ">= 7,000/s, p99 <= Kamailio",
    "sca_call": ">= 600/s, p99 <= Kamailio",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- /proc helpers
def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind((HOST, port))
        except OSError:
            continue
        return int(port)
    raise RuntimeError("no free port")


def proc_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def memory_kb(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in kB summed over ``pids``."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


class Sampler(threading.Thread):
    """Samples CPU seconds, RSS and PSS of a server's processes every ``interval`` seconds."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float, int, int]] = []

    def sample(self) -> tuple[float, float, int, int]:
        pids = self.pids()
        rss, pss = memory_kb(pids)
        return (time.monotonic(), cpu_seconds(pids), rss, pss)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append(self.sample())
            self.stop_event.wait(self.interval)

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(5)
        self.samples.append(self.sample())
        first, last = self.samples[0], self.samples[-1]
        wall = max(1e-6, last[0] - first[0])
        return {
            "cpu_percent": round(100 * (last[1] - first[1]) / wall, 1),
            "cpu_seconds": round(last[1] - first[1], 2),
            "rss_kb_end": last[2],
            "pss_kb_end": last[3],
            "rss_kb_peak": max(s[2] for s in self.samples),
            "pss_kb_peak": max(s[3] for s in self.samples),
        }


# ------------------------------------------------------------------------------- servers
class SipscaServer:
    """``python -m sipsca serve`` on free loopback ports (optionally under cProfile)."""

    name = "sipsca"

    def __init__(self, workdir: Path, *, profile: Path | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.port = free_port()
        self.rpc_port = free_port()
        self.db = workdir / "sipsca.sqlite"
        self.log_path = workdir / "sipsca.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    def config_text(self) -> str:
        # mirrors the Kamailio lab: purge every 10 s, DB write-back every 60 s, no auth
        return (
            "[server]\n"
            'domains = ["127.0.0.1"]\n\n'
            "[sca]\n"
            "purge_expired_interval = 10\n\n"
            "[auth]\n"
            'mode = "none"\n\n'
            "[db]\n"
            "db_update_interval = 60\n"
        )

    def command(self, config: Path) -> list[str]:
        serve = [
            "serve",
            "--listen",
            f"udp:{HOST}:{self.port}",
            "--listen",
            f"tcp:{HOST}:{self.port}",
            "--db-url",
            f"sqlite:///{self.db}",
            "--rpc-listen",
            f"{HOST}:{self.rpc_port}",
            "--log-level",
            "WARNING",
            "--config",
            str(config),
        ]
        if SIPSCA_GC["mode"] != "default":
            # experiment only (--sipsca-gc): tune the cyclic GC without touching src/
            setup = GC_SETUP[SIPSCA_GC["mode"]]
            code = (
                f"import gc, runpy, sys; {setup}; sys.argv = ['sipsca', *{serve!r}]; "
                "runpy.run_module('sipsca', run_name='__main__', alter_sys=True)"
            )
            return [PYTHON, "-c", code]
        cmd = [PYTHON]
        if self.profile is not None:
            cmd += ["-m", "cProfile", "-o", str(self.profile)]
        return [*cmd, "-m", "sipsca", *serve]

    def start(self, timeout: float = 30.0) -> None:
        config = self.workdir / "sipsca.toml"
        config.write_text(self.config_text())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SRC["path"]), env.get("PYTHONPATH", "")) if p
        )
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(config),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if f"listening udp:{HOST}:{self.port}" in text and "rpc http://" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipsca exited {self.proc.returncode}:\n{text[-2000:]}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sipsca not ready within {timeout}s:\n{self.log_text()[-2000:]}")

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rpc(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(
            f"http://{HOST}:{self.rpc_port}/RPC",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = json.loads(r.read().decode())
        if data.get("error"):
            raise RuntimeError(f"rpc {method}: {data['error']}")
        return data.get("result")

    def subscription_count(self, event: str = "call-info") -> int:
        out = self.rpc("sca.subscription_count", event)
        return int(str(out[0]).split()[0])

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.rpc_port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def extra_memory(self) -> dict[str, Any]:
        return {}

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class KamailioServer:
    """The reference lab (start.sh/stop.sh/kamailio.cfg copied to a temp dir).

    Only change to the lab config: the listen port (5070 -> a free port), so that a test suite
    using the lab's 5070 at the same time does not collide. children=2, debug=1 as measured in
    the reference; SCA_PURGE=10, SCA_DBUPD=60 (start.sh defaults); 512 MB shm (default).
    """

    name = "kamailio"

    def __init__(self, workdir: Path, *, children: int = 2, reference: Path | None = None) -> None:
        self.workdir = workdir
        self.reference = reference or Path(
            os.environ.get("SCA_REFERENCE_DIR", "/work/shared/reference/kamailio")
        )
        self.children = children
        self.port = free_port()
        self.lab = workdir / "lab"
        self.run_dir = workdir / "run"
        self.main_pid: int | None = None
        self._pids: list[int] = []
        self.nproc_start = 0
        self.returncode: int | None = None
        self.crashed = False

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAMAILIO_RUN_DIR=str(self.run_dir),
            FRESH_DB="1",
            CHILDREN=str(self.children),
            DEBUGLVL="1",
            SCA_PURGE="10",
            SCA_DBUPD="60",
        )
        return env

    def start(self, timeout: float = 30.0) -> None:
        (self.lab / "scripts").mkdir(parents=True, exist_ok=True)
        for f in ("start.sh", "stop.sh"):
            shutil.copy(self.reference / f, self.lab / f)
        shutil.copy(self.reference / "scripts" / "init_db.sh", self.lab / "scripts" / "init_db.sh")
        cfg = (self.reference / "kamailio.cfg").read_text()
        (self.lab / "kamailio.cfg").write_text(cfg.replace(":5070", f":{self.port}"))
        for f in ("start.sh", "stop.sh", "scripts/init_db.sh"):
            (self.lab / f).chmod(0o755)
        p = subprocess.run(
            ["bash", str(self.lab / "start.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if p.returncode != 0:
            raise RuntimeError(f"kamailio start failed: {p.stdout}{p.stderr}")
        self.main_pid = int((self.run_dir / "run" / "kamailio.pid").read_text().strip())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self.kamcmd("core.version")
                break
            time.sleep(0.1)
        time.sleep(0.5)
        self._pids = proc_tree(self.main_pid)
        self.nproc_start = len(self._pids)

    def pids(self) -> list[int]:
        if self.main_pid is None:
            return []
        if alive(self.main_pid):
            self._pids = proc_tree(self.main_pid)
        return [p for p in self._pids if alive(p)]

    def alive(self) -> bool:
        if self.main_pid is None or not alive(self.main_pid):
            return False
        # a crashed worker makes Kamailio's main process exit; count processes too
        return len(self.pids()) >= self.nproc_start

    def log_text(self) -> str:
        try:
            return (self.run_dir / "logs" / "kamailio.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kamcmd(self, *args: str, timeout: float = 10.0) -> str:
        p = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.run_dir}/run/kamailio_ctl", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if p.returncode != 0 or p.stdout.startswith("error"):
            raise RuntimeError(f"kamcmd {args}: {p.stdout}{p.stderr}")
        return p.stdout

    def subscription_count(self, event: str = "call-info") -> int:
        out = self.kamcmd("sca.subscription_count", event)
        m = re.search(r"\d+", out)
        return int(m.group()) if m else -1

    def metric(self, name: str) -> float | None:
        return None

    def extra_memory(self) -> dict[str, Any]:
        try:
            out = self.kamcmd("core.shmmem")
        except Exception:
            return {}
        vals = dict(re.findall(r"(\w+):\s*(\d+)", out))
        return {
            "shm_used_kb": round(int(vals.get("used", 0)) / 1024),
            "shm_real_used_kb": round(int(vals.get("real_used", 0)) / 1024),
        }

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.main_pid is None:
            return self.returncode
        self.crashed = not self.alive()
        subprocess.run(
            ["bash", str(self.lab / "stop.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        # stop.sh stops the main process, which stops its children; wait for all of them
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in self._pids):
            time.sleep(0.1)
        for p in self._pids:
            if alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        self.returncode = 1 if self.crashed else 0
        self.main_pid = None
        return self.returncode

    def kill(self) -> None:
        self.stop()


Server = SipscaServer | KamailioServer


def make_server(kind: str, workdir: Path, args: argparse.Namespace) -> Server:
    if kind == "sipsca":
        return SipscaServer(workdir)
    return KamailioServer(workdir, children=args.kamailio_children)


# ---------------------------------------------------------------------------------- SIPp
@dataclass
class SippResult:
    scenario: str
    rate: int | None
    calls: int
    returncode: int | None
    successful: int = 0
    failed: int = 0
    created: int = 0
    retransmissions: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    rtd: dict[str, dict[str, float]] = field(default_factory=dict)
    achieved_rate: float | None = None
    """Server throughput: rtd-1 completions per second between the 1st and 99th percentile
    completion times (a server that falls behind stretches this span)."""
    offered_rate: float | None = None
    """Calls SIPp created per second up to its last -fd 1 stat row before it had created all."""
    wall_seconds: float = 0.0
    sipp_cpu_percent: float = 0.0
    errors_tail: str = ""
    unexpected: dict[str, int] = field(default_factory=dict)
    """What aborted calls received instead (from the error log, capped at 2 MB)."""

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful == self.calls


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


RUNNING_SIPP: list[Sipp] = []


def stop_all_sipp() -> None:
    """Terminate every SIPp process this run started that is still running (by pid)."""
    for s in RUNNING_SIPP:
        if s.proc is not None:
            terminate(s.proc, 5)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM a process still running, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Sipp:
    """One SIPp process (UAC towards ``target`` or UAS when ``target`` is None)."""

    def __init__(
        self,
        run_dir: Path,
        scenario: str,
        *,
        target: tuple[str, int] | None,
        calls: int,
        rate: int | None = None,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        timeout: int = 60,
        rtt: bool = True,
        counts: bool = False,
        tag: str = "",
    ) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.stem = Path(scenario).stem
        self.target = target
        self.calls = calls
        self.rate = rate
        self.port = port or free_port()
        self.timeout = timeout
        self.name = f"{tag or self.stem}-{self.port}"
        self.stat = run_dir / f"{self.name}-stat.csv"
        self.errors = run_dir / f"{self.name}-errors.log"
        cmd = ["sipp"]
        if target is not None:
            assert target[0] == HOST, target
            cmd.append(f"{target[0]}:{target[1]}")
        cmd += [
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            HOST,
            "-p",
            str(self.port),
            "-m",
            str(calls),
            "-timeout",
            f"{timeout}s",
            "-timeout_error",
            "-nostdin",
            "-buff_size",
            "4194304",
            "-max_recv_loops",
            "10000",
            "-max_sched_loops",
            "10000",
            "-recv_timeout",
            "10000",
            "-l",
            str(max(calls, 10)),
            "-trace_stat",
            "-stf",
            str(self.stat),
            "-fd",
            "1",
            "-trace_err",
            "-error_file",
            str(self.errors),
            "-max_log_size",
            "2000000",
        ]
        if rate is not None:
            cmd += ["-r", str(rate)]
        if rtt:
            cmd += ["-trace_rtt", "-rtt_freq", "20"]
        if counts:
            cmd += ["-trace_counts"]
        cmd += list(extra)
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Sipp:
        self.started = time.monotonic()
        RUNNING_SIPP.append(self)
        with open(self.run_dir / f"{self.name}-stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.run_dir,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait(self, extra: float = 30.0) -> SippResult:
        """Wait (bounded by -timeout + ``extra``), then parse SIPp's files."""
        assert self.proc is not None
        cpu = 0.0
        deadline = self.started + self.timeout + extra
        while self.proc.poll() is None and time.monotonic() < deadline:
            cpu = max(cpu, cpu_seconds([self.proc.pid]))
            time.sleep(0.2)
        terminate(self.proc, 10)
        wall = time.monotonic() - self.started
        res = self.parse(self.proc.returncode)
        res.wall_seconds = round(wall, 2)
        res.sipp_cpu_percent = round(100 * cpu / max(wall, 1e-6), 1)
        return res

    def stop(self) -> SippResult:
        """Terminate (a UAS or member process that has done its part) and parse."""
        if self.proc is not None:
            terminate(self.proc, 10)
        return self.parse(self.proc.returncode if self.proc else None)

    def parse(self, rc: int | None) -> SippResult:
        res = SippResult(self.stem, self.rate, self.calls, rc)
        rows: list[list[str]] = []
        if self.stat.exists():
            rows = list(csv.reader(self.stat.open(errors="replace"), delimiter=";"))
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            col = {h: i for i, h in enumerate(head)}

            def get(name: str, row: list[str] = last) -> int:
                try:
                    return int(float(row[col[name]]))
                except (KeyError, IndexError, ValueError):
                    return 0

            res.successful = get("SuccessfulCall(C)")
            res.failed = get("FailedCall(C)")
            res.created = get("TotalCallCreated")
            res.retransmissions = get("Retransmissions(C)")
            for h in head:
                failure = h.startswith("Failed") and h.endswith("(C)") and h != "FailedCall(C)"
                if failure and get(h):
                    res.failures[h[6:-3]] = get(h)
                if h in (
                    "OutOfCallMsgs(C)",
                    "DeadCallMsgs(C)",
                    "WatchdogMajor(C)",
                    "WatchdogMinor(C)",
                    "FatalErrors(C)",
                ) and get(h):
                    res.warnings[h[:-3]] = get(h)

            def epoch(cell: str) -> float:
                try:
                    return float(cell.split("\t")[-1])
                except (ValueError, IndexError):
                    return 0.0

            if "StartTime" in col and "CurrentTime" in col:
                t0 = epoch(rows[1][col["StartTime"]])
                before = [r for r in rows[1:] if get("TotalCallCreated", r) < self.calls]
                if before and t0:
                    r = before[-1]
                    dt = epoch(r[col["CurrentTime"]]) - t0
                    if dt >= 1.0 and get("TotalCallCreated", r) > 0:
                        res.offered_rate = round(get("TotalCallCreated", r) / dt, 1)
        if self.proc is not None:
            for f in self.run_dir.glob(f"{self.stem}_{self.proc.pid}_counts.csv"):
                crow = list(csv.reader(f.open(errors="replace"), delimiter=";"))
                if len(crow) >= 2:
                    for h, v in zip(crow[0], crow[-1], strict=False):
                        if v.isdigit() and int(v) and h not in ("CurrentTime", "ElapsedTime"):
                            res.counts[h] = int(v)
            rtts: dict[str, list[float]] = {}
            times: list[float] = []
            for f in self.run_dir.glob(f"{self.stem}_{self.proc.pid}_rtt.csv"):
                for line in f.open(errors="replace"):
                    parts = line.strip().split(";")
                    if len(parts) != 3 or not parts[2].isdigit():
                        continue
                    rtts.setdefault(parts[2], []).append(float(parts[1]))
                    if parts[2] == "1":
                        times.append(float(parts[0]))
            for rtd, vals in sorted(rtts.items()):
                res.rtd[rtd] = {
                    "n": len(vals),
                    "p50_ms": percentile(vals, 0.5),
                    "p99_ms": percentile(vals, 0.99),
                    "max_ms": max(vals),
                    "mean_ms": round(statistics.fmean(vals), 2),
                }
            if len(times) > 100:
                times.sort()
                lo, hi = int(0.01 * len(times)), int(0.99 * len(times))
                span = (times[hi] - times[lo]) / 1000.0
                if span > 0:
                    res.achieved_rate = round((hi - lo) / span, 1)
        if self.errors.exists():
            with self.errors.open("rb") as fh:
                text = fh.read(3_000_000).decode(errors="replace")
            res.errors_tail = text[:1500]
            for m in re.finditer(r"unexpected message .*?received '(SIP/2\.0 \d{3}|[A-Z]+ )", text):
                key = m.group(1).strip()
                res.unexpected[key] = res.unexpected.get(key, 0) + 1
        return res


def register_contact(target: tuple[str, int], run_dir: Path, user: str, port: int) -> None:
    """REGISTER ``user`` at 127.0.0.1:``port`` (the UAS's future address) with register_one."""
    s = Sipp(
        run_dir,
        "register_one.xml",
        target=target,
        calls=1,
        port=port,
        extra=("-s", user),
        timeout=10,
        rtt=False,
        tag=f"reg-{user}",
    ).start()
    res = s.wait(10)
    if res.successful != 1:
        raise RuntimeError(f"REGISTER {user} failed: {res}")


def users_file(run_dir: Path, n: int, offset: int = 0, prefix: str = "line") -> Path:
    """A SIPp injection file of ``n`` distinct users (``line00000``.. like users10k.csv)."""
    width = 5 if offset + n <= 100000 else 6
    path = run_dir / f"users-{prefix}-{offset}-{n}.csv"
    with path.open("w") as fh:
        fh.write("SEQUENTIAL\n")
        for i in range(offset, offset + n):
            fh.write(f"{prefix}{i:0{width}d};pw-{prefix}{i:0{width}d};\n")
    return path


def members_file(run_dir: Path, lines: int, members: int) -> Path:
    path = run_dir / f"members-{lines}x{members}.csv"
    with path.open("w") as fh:
        fh.write("SEQUENTIAL\n")
        for i in range(lines):
            for m in range(members):
                fh.write(f"line{i:05d};m{m + 1};\n")
    return path


# ---------------------------------------------------------------------------------- probe
class Probe(threading.Thread):
    """Sends one request every ``interval`` s and times its final response (microseconds).

    ``kind``: options (OPTIONS to the server; Kamailio answers 484 statelessly), register
    (REGISTER sip:probe) or subscribe (SUBSCRIBE call-info to sip:probe, NOTIFYs answered 200).
    """

    def __init__(
        self, target: tuple[str, int], kind: str, duration: float, interval: float = 0.05
    ) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.kind = kind
        self.interval = interval
        self.max_count = int(duration / interval) + 1
        self.deadline = time.monotonic() + duration + 15
        self.stop_event = threading.Event()
        self.rtts: list[float] = []
        self.sent = 0
        self.statuses: dict[str, int] = {}

    def request(self, n: int, port: int) -> tuple[str, bytes]:
        call_id = f"probe-{os.getpid()}-{n}-{time.monotonic_ns()}"
        branch = f"z9hG4bK-probe-{n}-{time.monotonic_ns()}"
        via = f"Via: SIP/2.0/UDP {HOST}:{port};branch={branch};rport\r\n"
        common = f"Call-ID: {call_id}\r\nMax-Forwards: 70\r\n{via}"
        if self.kind == "register":
            text = (
                f"REGISTER sip:{HOST} SIP/2.0\r\n{common}"
                f"From: <sip:probe@{HOST}>;tag=p{n}\r\nTo: <sip:probe@{HOST}>\r\n"
                f"CSeq: 1 REGISTER\r\nContact: <sip:probe@{HOST}:{port}>;expires=60\r\n"
                "Content-Length: 0\r\n\r\n"
            )
        elif self.kind == "subscribe":
            text = (
                f"SUBSCRIBE sip:probe@{HOST} SIP/2.0\r\n{common}"
                f"From: <sip:probe@{HOST}>;tag=p{n}\r\nTo: <sip:probe@{HOST}>\r\n"
                f"CSeq: 1 SUBSCRIBE\r\nContact: <sip:probe@{HOST}:{port}>\r\n"
                "Event: call-info\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
            )
        else:
            text = (
                f"OPTIONS sip:{self.target[0]}:{self.target[1]} SIP/2.0\r\n{common}"
                f"From: <sip:probe@{HOST}>;tag=p{n}\r\nTo: <sip:{HOST}:{self.target[1]}>\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        return call_id, text.encode()

    @staticmethod
    def answer(data: bytes) -> bytes:
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        keep = [
            h
            for h in head[1:]
            if h.split(":", 1)[0].strip().lower()
            in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
        ]
        return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        sock.settimeout(0.005)
        pending: dict[str, float] = {}
        next_send = time.monotonic()
        n = 0
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                now = time.monotonic()
                if now >= next_send and n < self.max_count:
                    call_id, data = self.request(n, port)
                    pending[call_id] = time.perf_counter()
                    sock.sendto(data, self.target)
                    n += 1
                    self.sent = n
                    next_send = now + self.interval
                try:
                    data, src = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                t = time.perf_counter()
                first = data.split(b"\r\n", 1)[0]
                if first.startswith(b"SIP/2.0 "):
                    status = first.split()[1].decode()
                    m = re.search(rb"\r\n(?:Call-ID|i):\s*(\S+)", data, re.I)
                    if status >= "200" and m and m.group(1).decode() in pending:
                        self.rtts.append((t - pending.pop(m.group(1).decode())) * 1000)
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                elif first.startswith(b"NOTIFY "):
                    sock.sendto(self.answer(data), src)
                if n >= self.max_count and not pending:
                    break
        finally:
            sock.close()

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(5)
        return {
            "kind": self.kind,
            "sent": self.sent,
            "answered": len(self.rtts),
            "statuses": self.statuses,
            "p50_ms": round(percentile(self.rtts, 0.5), 3) if self.rtts else None,
            "p99_ms": round(percentile(self.rtts, 0.99), 3) if self.rtts else None,
            "max_ms": round(max(self.rtts), 3) if self.rtts else None,
        }


PROBE_KIND = {
    "options": "options",
    "register": "register",
    "call": "options",
    "subscribe": "subscribe",
    "sca_call": "subscribe",
}


# ------------------------------------------------------------------------------- workloads
@dataclass
class Step:
    workload: str
    server: str
    rate: int
    seconds: float
    passed: bool
    reason: str
    load: dict[str, Any]
    aux: dict[str, Any]
    server_stats: dict[str, Any]
    probe: dict[str, Any]
    server_alive: bool
    server_rc: int | None
    loadavg: str


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


def run_step(
    kind: str, workload: str, rate: int, seconds: float, workdir: Path, args: argparse.Namespace
) -> Step:
    """One ladder step: fresh server, setup, SIPp at ``rate`` for ``seconds``, teardown."""
    run_dir = workdir / kind / workload / f"r{rate}-{int(time.time() * 1000) % 10**7}"
    run_dir.mkdir(parents=True)
    server = make_server(kind, run_dir / "server", args)
    calls = max(1, int(rate * seconds))
    timeout = int(seconds + 40)
    aux: dict[str, Any] = {}
    extra_procs: list[Sipp] = []
    with running(server):
        target = server.addr
        # ---- setup
        if workload in ("call", "sca_call"):
            uas_port = free_port()
            register_contact(target, run_dir, "bob", uas_port)
            uas = Sipp(
                run_dir,
                "call_uas.xml",
                target=None,
                calls=calls,
                port=uas_port,
                extra=("-s", "bob"),
                timeout=timeout + 20,
                rtt=False,
                tag="uas",
            ).start()
            extra_procs.append(uas)
        lines_csv = None
        if workload == "sca_call":
            lines = min(10000, max(1000, 5 * rate))
            lines_csv = users_file(run_dir, lines)
            aux["lines"] = lines
            if args.sca_members:
                members = Sipp(
                    run_dir,
                    "sca_member.xml",
                    target=target,
                    calls=lines * args.sca_members,
                    rate=args.member_rate,
                    extra=("-inf", str(members_file(run_dir, lines, args.sca_members))),
                    timeout=timeout + 200,
                    rtt=False,
                    counts=True,
                    tag="members",
                ).start()
                extra_procs.append(members)
                want = lines * args.sca_members
                deadline = time.monotonic() + want / args.member_rate + 30
                count = -1
                while time.monotonic() < deadline:
                    time.sleep(0.5)
                    with contextlib.suppress(Exception):
                        count = server.subscription_count("call-info")
                    if count >= want:
                        break
                aux["member_subscriptions"] = count
                time.sleep(1.0)
        time.sleep(0.5)
        # ---- load
        scenario, extra = {
            "options": ("options.xml", ()),
            "register": ("register.xml", ("-inf", str(SIPP_DIR / "users10k.csv"))),
            "call": ("call_uac.xml", ("-s", "bob")),
            "subscribe": ("subscribe_storm.xml", ("-inf", str(SIPP_DIR / "users10k.csv"))),
            "sca_call": ("sca_call.xml", ("-s", "bob", "-inf", str(lines_csv))),
        }[workload]
        sampler = Sampler(server.pids)
        probe = Probe(target, PROBE_KIND[workload], seconds)
        sampler.start()
        probe.start()
        load = Sipp(
            run_dir, scenario, target=target, calls=calls, rate=rate, extra=extra, timeout=timeout
        ).start()
        res = load.wait()
        probe_res = probe.finish()
        stats = sampler.finish()
        stats.update(server.extra_memory())
        for p in extra_procs:
            r = p.stop()
            aux[p.name.split("-")[0]] = {
                "successful": r.successful,
                "failed": r.failed,
                "failures": r.failures,
                "rc": r.returncode,
                "counts": r.counts,
            }
        is_alive = server.alive()
    rc = server.returncode
    reasons = []
    if not res.clean:
        reasons.append(
            f"{res.failed} failed, {res.successful}/{calls} ok, rc={res.returncode}"
            + (f" {res.failures}" if res.failures else "")
            + (f" unexpected {res.unexpected}" if res.unexpected else "")
        )
    if res.offered_rate is not None and res.offered_rate < 0.95 * rate:
        reasons.append(f"SIPp offered only {res.offered_rate:.0f}/s")
    if res.achieved_rate is not None and res.achieved_rate < 0.95 * rate:
        reasons.append(f"server kept up with only {res.achieved_rate:.0f}/s")
    if not is_alive:
        reasons.append("server died")
    step = Step(
        workload,
        kind,
        rate,
        seconds,
        not reasons,
        "; ".join(reasons) or "ok",
        asdict(res),
        aux,
        stats,
        probe_res,
        is_alive,
        rc,
        loadavg(),
    )
    rtd1 = res.rtd.get("1", {})
    log(
        f"  {kind:8} {workload:9} {rate:6}/s: {'PASS' if step.passed else 'FAIL'} "
        f"({step.reason}) p50/p99 {rtd1.get('p50_ms')}/{rtd1.get('p99_ms')} ms, "
        f"probe {probe_res['p50_ms']}/{probe_res['p99_ms']} ms, cpu {stats['cpu_percent']}%, "
        f"sipp cpu {res.sipp_cpu_percent}%, pss {stats['pss_kb_end'] // 1024} MB"
    )
    return step


def safe_step(kind: str, workload: str, rate: int, args: argparse.Namespace, workdir: Path) -> Step:
    """run_step, with a harness error (server did not start, ...) recorded as a failed step."""
    try:
        return run_step(kind, workload, rate, args.step_seconds, workdir, args)
    except Exception as exc:
        log(f"  {kind:8} {workload:9} {rate:6}/s: ERROR {exc!r}"[:500])
        return Step(
            workload,
            kind,
            rate,
            args.step_seconds,
            False,
            f"harness error: {exc!r}"[:300],
            {"rtd": {}, "achieved_rate": None},
            {},
            {},
            {},
            False,
            None,
            loadavg(),
        )


def nice(rate: float) -> int:
    q = 100 if rate >= 2000 else 50 if rate >= 500 else 10 if rate >= 100 else 1
    return max(1, int(round(rate / q) * q))


def ladder(kind: str, workload: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Doubling then bisection; returns the steps and the best passing step."""
    steps: list[Step] = []
    explicit = args.rates.get(workload)
    if explicit:
        for rate in explicit[: args.max_steps]:
            steps.append(safe_step(kind, workload, rate, args, workdir))
    else:
        rate = args.start.get(workload) or (
            QUICK_RATE[workload] if args.quick else START_RATE[kind][workload]
        )
        cap = MAX_RATE[workload]
        good: int | None = None
        bad: int | None = None
        for _ in range(args.max_steps):
            step = safe_step(kind, workload, rate, args, workdir)
            steps.append(step)
            if step.passed:
                good = max(good or 0, rate)
            else:
                bad = min(bad or rate, rate)
            if bad is None:
                if rate >= cap:
                    break
                rate = min(cap, rate * 2)
            elif good is None:
                if rate <= 10:
                    break
                rate = nice(rate / 2)
            else:
                if (bad - good) / good <= 0.10:
                    break
                rate = nice((good + bad) / 2)
                if rate in (good, bad):
                    break
    passing = [s for s in steps if s.passed]
    best = max(passing, key=lambda s: s.rate) if passing else None
    return {"steps": [asdict(s) for s in steps], "best": asdict(best) if best else None}


# ---------------------------------------------------------------------------------- memory
def memory_workload(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """RSS/PSS idle, with N1 and N2 call-info subscriptions (N2 distinct AoRs in total)."""
    n1, n2 = args.mem_counts
    run_dir = workdir / kind / "memory"
    run_dir.mkdir(parents=True)
    server = make_server(kind, run_dir / "server", args)
    out: dict[str, Any] = {
        "server": kind,
        "rate": args.mem_rate,
        "settle_seconds": args.mem_settle,
        "points": [],
    }
    with running(server):
        time.sleep(3)
        rss, pss = memory_kb(server.pids())
        point: dict[str, Any] = {"subscriptions": 0, "rss_kb": rss, "pss_kb": pss}
        point.update(server.extra_memory())
        out["points"].append(point)
        done = 0
        for n in (n1, n2):
            batch = n - done
            csv_path = users_file(run_dir, batch, offset=done, prefix="m")
            s = Sipp(
                run_dir,
                "subscribe_storm.xml",
                target=server.addr,
                calls=batch,
                rate=args.mem_rate,
                extra=("-inf", str(csv_path)),
                timeout=int(batch / args.mem_rate + 60),
                rtt=False,
                tag=f"mem{n}",
            ).start()
            res = s.wait()
            done = n
            # let transactions (timer J/K, 32 s / 5 s) and NOTIFY client transactions expire
            time.sleep(args.mem_settle)
            count = -1
            with contextlib.suppress(Exception):
                count = server.subscription_count("call-info")
            rss, pss = memory_kb(server.pids())
            point = {
                "subscriptions": n,
                "counted": count,
                "sipp_successful": res.successful,
                "sipp_failed": res.failed,
                "rss_kb": rss,
                "pss_kb": pss,
            }
            point.update(server.extra_memory())
            out["points"].append(point)
            log(f"  {kind:8} memory {n:>7} subs (counted {count}): RSS {rss} kB, PSS {pss} kB")
        out["alive"] = server.alive()
    idle = out["points"][0]
    for p in out["points"][1:]:
        n = p["counted"] if p.get("counted", -1) > 0 else p["subscriptions"]
        p["rss_kb_per_sub"] = round((p["rss_kb"] - idle["rss_kb"]) / n, 3)
        p["pss_kb_per_sub"] = round((p["pss_kb"] - idle["pss_kb"]) / n, 3)
        if "shm_real_used_kb" in p:
            p["shm_kb_per_sub"] = round((p["shm_real_used_kb"] - idle["shm_real_used_kb"]) / n, 3)
    return out


# -------------------------------------------------------------------------------- overload
def overload_workload(
    args: argparse.Namespace, workdir: Path, sub_rate: int, call_rate: int
) -> dict[str, Any]:
    """sipsca at ~2x its max SUBSCRIBE and call rates for ``--overload-seconds`` each."""
    out: dict[str, Any] = {}
    for what, rate in (("subscribe", sub_rate), ("call", call_rate)):
        run_dir = workdir / "sipsca" / f"overload-{what}"
        run_dir.mkdir(parents=True)
        server = SipscaServer(run_dir / "server")
        seconds = args.overload_seconds
        calls = int(rate * seconds)
        timeout = int(seconds + 60)
        extra_procs: list[Sipp] = []
        with running(server):
            target = server.addr
            if what == "call":
                uas_port = free_port()
                register_contact(target, run_dir, "bob", uas_port)
                extra_procs.append(
                    Sipp(
                        run_dir,
                        "call_uas.xml",
                        target=None,
                        calls=calls,
                        port=uas_port,
                        extra=("-s", "bob"),
                        timeout=timeout + 20,
                        rtt=False,
                        tag="uas",
                    ).start()
                )
                scenario, extra = "call_overload.xml", ("-s", "bob")
            else:
                scenario = "subscribe_overload.xml"
                extra = ("-inf", str(SIPP_DIR / "users10k.csv"))
            sampler = Sampler(server.pids, interval=0.25)
            probe = Probe(target, "options", seconds + 10, interval=0.1)
            sampler.start()
            probe.start()
            res = (
                Sipp(
                    run_dir,
                    scenario,
                    target=target,
                    calls=calls,
                    rate=rate,
                    extra=extra,
                    timeout=timeout,
                    counts=True,
                )
                .start()
                .wait()
            )
            probe_res = probe.finish()
            stats = sampler.finish()
            for p in extra_procs:
                p.stop()
            is_alive = server.alive()
            after = Probe(target, "options", 1.0, interval=0.1)
            after.start()
            time.sleep(1.5)
            after_res = after.finish()
            shed_metric = server.metric("sipsca_overload_rejections_total")
        rc = server.returncode
        text = server.log_text()
        shed = sum(v for k, v in res.counts.items() if k.endswith("_503_Recv"))
        entry = {
            "rate": rate,
            "seconds": seconds,
            "calls": calls,
            "successful": res.successful,
            "failed": res.failed,
            "failures": res.failures,
            "shed_503": shed,
            "server_overload_rejections": shed_metric,
            "overload_log_lines": text.count("overload started"),
            "achieved_rate": res.achieved_rate,
            "sipp_cpu_percent": res.sipp_cpu_percent,
            "rtd": res.rtd,
            "counts": res.counts,
            "server": stats,
            "probe_during": probe_res,
            "probe_after": after_res,
            "alive_after": is_alive,
            "exit_code": rc,
            "errors_tail": res.errors_tail[:800],
            "log_tail": text[-1500:],
        }
        log(
            f"  sipsca overload {what} {rate}/s x {seconds}s: ok {res.successful}, "
            f"503 {shed}, failed {res.failed} {res.failures}, peak RSS "
            f"{stats['rss_kb_peak'] // 1024} MB, alive {is_alive}, rc {rc}"
        )
        out[what] = entry
    return out


# --------------------------------------------------------------------------------- profile
SKIP_PROFILE = re.compile(
    r"<module>|_bootstrap|importlib|runpy|cProfile|click/|run_until_complete|run_forever|"
    r"runners\.py|builtins\.(exec|compile|__import__|__build_class__)"
)


def profile_workload(args: argparse.Namespace, workdir: Path, rate: int) -> dict[str, Any]:
    """sipsca under cProfile during a SUBSCRIBE storm at ``rate`` for ``--profile-seconds``."""
    run_dir = workdir / "sipsca" / "profile"
    run_dir.mkdir(parents=True)
    prof = run_dir / "sipsca.prof"
    server = SipscaServer(run_dir / "server", profile=prof)
    seconds = args.profile_seconds
    server.start()
    try:
        cpu0 = cpu_seconds(server.pids())
        res = (
            Sipp(
                run_dir,
                "subscribe_storm.xml",
                target=server.addr,
                calls=int(rate * seconds),
                rate=rate,
                extra=("-inf", str(SIPP_DIR / "users10k.csv")),
                timeout=int(seconds + 40),
            )
            .start()
            .wait()
        )
        cpu_total = cpu_seconds(server.pids())
    finally:
        rc = server.stop(timeout=120)
    out: dict[str, Any] = {
        "rate": rate,
        "seconds": seconds,
        "successful": res.successful,
        "failed": res.failed,
        "rtd": res.rtd,
        "server_cpu_seconds_total": round(cpu_total, 2),
        "server_cpu_seconds_load": round(cpu_total - cpu0, 2),
        "exit_code": rc,
        "profile_file": str(prof),
    }
    if not prof.exists():
        out["error"] = "no profile written"
        return out
    if args.keep_profile:
        RESULTS.mkdir(exist_ok=True)
        shutil.copy(prof, RESULTS / "sipsca-subscribe.prof")
        out["profile_file"] = str(RESULTS / "sipsca-subscribe.prof")
    st = pstats.Stats(str(prof))
    total_tt = st.total_tt  # type: ignore[attr-defined]
    rows = []
    for (fname, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        short = fname.replace(str(SRC["path"]) + "/", "").replace(str(REPO / "src") + "/", "")
        short = re.sub(r".*/site-packages/", "", short)
        short = re.sub(r".*/lib/python3\.\d+/", "", short)
        rows.append(
            {
                "function": f"{short}:{line}({func})" if line else func,
                "ncalls": nc,
                "tottime": round(tt, 3),
                "cumtime": round(ct, 3),
            }
        )
    # Denominator: the Python work done while the event loop ran, i.e. cumulative minus own
    # time of asyncio.Runner.run (its own time is uvloop's C loop: idle waits and socket I/O);
    # start-up imports and config parsing happen before it and are excluded.
    loop_work = 0.0
    for (fname, _line, func), (_cc, _nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if fname.endswith("asyncio/runners.py") and func == "run":
            loop_work = ct - tt
    denom = loop_work if loop_work > 0 else max(cpu_total, 1e-6)
    out["loop_work_seconds"] = round(loop_work, 3)
    for r in rows:
        r["cum_pct"] = round(100 * r["cumtime"] / denom, 1)
        r["self_pct"] = round(100 * r["tottime"] / denom, 1)
    by_cum = [
        r
        for r in sorted(rows, key=lambda r: -r["cumtime"])
        if not SKIP_PROFILE.search(r["function"]) and r["cumtime"] <= denom * 1.001
    ]
    out["total_profiled_seconds"] = round(total_tt, 2)
    out["top_cumulative"] = by_cum[: args.profile_top]
    out["top_self"] = [
        r
        for r in sorted(rows, key=lambda r: -r["tottime"])
        if not SKIP_PROFILE.search(r["function"])
    ][: args.profile_top]
    return out


# ----------------------------------------------------------------------------------- micro
def micro_workload(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC["path"]), env.get("PYTHONPATH", "")) if p
    )
    if args.quick:
        cmds = {
            "bench_parse": ["--seconds", "0.2", "--repeat", "1", "--variants", "2000"],
            "bench_transactions": ["--n", "5000", "--repeat", "1"],
        }
    else:
        cmds = {"bench_parse": [], "bench_transactions": []}
    out: dict[str, Any] = {}
    for name, extra in cmds.items():
        cmd = [PYTHON, str(BENCH / f"{name}.py"), *extra]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
            shown = " ".join([".venv/bin/python", f"bench/{name}.py", *extra])
            out[name] = {"cmd": shown, "rc": p.returncode, "output": p.stdout.strip()}
            if p.returncode:
                out[name]["stderr"] = p.stderr[-2000:]
        except subprocess.TimeoutExpired:
            out[name] = {"cmd": f"bench/{name}.py", "rc": None, "output": "timeout"}
        log(f"  micro {name}: rc {out[name]['rc']}")
    return out


# --------------------------------------------------------------------------------- report
def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def out(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": out(["sipp", "-v"]).splitlines()[0] if out(["sipp", "-v"]) else "",
        "kamailio": (out(["kamailio", "-v"]).splitlines() or [""])[0],
        "rmem_max": Path("/proc/sys/net/core/rmem_max").read_text().strip(),
        "git_head": out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty_src": bool(out(["git", "-C", str(REPO), "status", "--short", "src"])),
        "loadavg_start": loadavg(),
    }


def fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def summary_markdown(results: dict[str, Any]) -> str:
    lines = []
    m = results["machine"]
    lines.append(
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, Python "
        f"{m['python']}, {m['sipp']}, {m['kamailio']}; load at start {m['loadavg_start']}, "
        f"at end {m.get('loadavg_end', '-')}; sipsca sources: {m.get('sources', '-')}"
        f"{', GC ' + m['sipsca_gc'] if m.get('sipsca_gc', 'default') != 'default' else ''}; mode "
        f"{'quick' if results['args']['quick'] else 'full'}, "
        f"{results['args']['step_seconds']} s steps."
    )
    lines.append("")
    lad = results.get("ladders", {})
    if lad:
        lines.append(
            "| workload | server | max rate @ 0 failures (/s) | throughput (/s) | "
            "rtd1 p50 / p99 (ms) | probe p50 / p99 (ms) | server CPU % | RSS / PSS (MB) | "
            "first failing step |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for wl, per_server in lad.items():
            for kind, data in per_server.items():
                best = data.get("best")
                fails = [s for s in data["steps"] if not s["passed"]]
                first_fail = min(fails, key=lambda s: s["rate"]) if fails else None
                ff = f"{first_fail['rate']}/s: {first_fail['reason']}" if first_fail else "-"
                if best:
                    rtd = best["load"]["rtd"].get("1", {})
                    pr = best["probe"]
                    st = best["server_stats"]
                    lines.append(
                        f"| {wl} | {kind} | {best['rate']:,} | {fmt(best['load']['achieved_rate'])}"
                        f" | {fmt(rtd.get('p50_ms'), 0)} / {fmt(rtd.get('p99_ms'), 0)}"
                        f" | {fmt(pr['p50_ms'], 2)} / {fmt(pr['p99_ms'], 2)}"
                        f" | {fmt(st['cpu_percent'])} | {st['rss_kb_end'] / 1024:.0f} / "
                        f"{st['pss_kb_end'] / 1024:.0f} | {ff[:90]} |"
                    )
                else:
                    lines.append(f"| {wl} | {kind} | none passed | | | | | | {ff[:90]} |")
        lines.append("")
        lines.append("| workload | sipsca (/s) | Kamailio (/s) | sipsca / Kamailio | target |")
        lines.append("|---|---:|---:|---:|---|")
        for wl, per_server in lad.items():
            s = (per_server.get("sipsca") or {}).get("best")
            k = (per_server.get("kamailio") or {}).get("best")
            sr = s["rate"] if s else None
            kr = k["rate"] if k else None
            ratio = f"{sr / kr:.2f}" if sr and kr else "-"
            lines.append(f"| {wl} | {fmt(sr)} | {fmt(kr)} | {ratio} | {TARGETS.get(wl, '')} |")
        lines.append("")
    mem = results.get("memory")
    if mem:
        lines.append(
            "| server | subscriptions | counted | RSS (MB) | PSS (MB) | kB/sub (RSS) | "
            "kB/sub (PSS) | shm kB/sub |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for kind, data in mem.items():
            for p in data["points"]:
                lines.append(
                    f"| {kind} | {p['subscriptions']:,} | {fmt(p.get('counted'))} | "
                    f"{p['rss_kb'] / 1024:.1f} | {p['pss_kb'] / 1024:.1f} | "
                    f"{fmt(p.get('rss_kb_per_sub'), 2)} | {fmt(p.get('pss_kb_per_sub'), 2)} | "
                    f"{fmt(p.get('shm_kb_per_sub'), 2)} |"
                )
        lines.append("")
    ov = results.get("overload")
    if ov:
        lines.append(
            "| overload (sipsca) | rate (/s) x s | completed | shed 503 | failed | "
            "peak RSS (MB) | CPU % | probe p99 during (ms) | alive / exit |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for what, e in ov.items():
            lines.append(
                f"| {what} | {e['rate']:,} x {e['seconds']} | {e['successful']:,} | "
                f"{e['shed_503']:,} | {e['failed']:,} {e['failures'] or ''} | "
                f"{e['server']['rss_kb_peak'] / 1024:.0f} | {e['server']['cpu_percent']} | "
                f"{fmt(e['probe_during']['p99_ms'], 1)} | {e['alive_after']} / {e['exit_code']} |"
            )
        lines.append("")
    prof = results.get("profile")
    if prof and prof.get("top_cumulative"):
        lines.append(
            f"Profile: sipsca under cProfile, SUBSCRIBE storm {prof['rate']}/s x "
            f"{prof['seconds']} s ({prof['successful']} ok, {prof['failed']} failed); "
            f"server CPU {prof['server_cpu_seconds_total']} s; percentages are of the "
            f"{prof.get('loop_work_seconds')} s of Python work done inside the event loop."
        )
        lines.append("")
        lines.append("| # | function | ncalls | cumtime (s) | cum % | self (s) | self % |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|")
        for i, r in enumerate(prof["top_cumulative"], 1):
            lines.append(
                f"| {i} | `{r['function']}` | {r['ncalls']:,} | {r['cumtime']} | "
                f"{r['cum_pct']} | {r['tottime']} | {r['self_pct']} |"
            )
        lines.append("")
        lines.append("Top self time:")
        lines.append("")
        lines.append("| # | function | ncalls | self (s) | self % | cumtime (s) |")
        lines.append("|---:|---|---:|---:|---:|---:|")
        for i, r in enumerate(prof["top_self"], 1):
            lines.append(
                f"| {i} | `{r['function']}` | {r['ncalls']:,} | {r['tottime']} | "
                f"{r['self_pct']} | {r['cumtime']} |"
            )
        lines.append("")
    micro = results.get("micro")
    if micro:
        for e in micro.values():
            lines.append(f"`{e['cmd']}` (rc {e['rc']}):")
            lines.append("```")
            lines.append(e["output"])
            lines.append("```")
    return "\n".join(lines)


def snapshot_sources(mode: str, workdir: Path) -> None:
    """Freeze the sipsca sources for the whole run (others edit the work tree meanwhile).

    ``head``: ``git archive HEAD src``; ``worktree``: a copy of src/ as it is now.
    """
    dest = workdir / "snapshot"
    dest.mkdir()
    if mode == "head":
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD", "src"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        SRC["mode"] = f"git HEAD {head}"
    else:
        shutil.copytree(
            REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        SRC["mode"] = "work tree copy"
    SRC["path"] = dest / "src"


def wait_for_quiet(threshold: float, max_wait: float) -> str:
    deadline = time.monotonic() + max_wait
    while True:
        one = float(loadavg().split()[0])
        if one < threshold or time.monotonic() >= deadline:
            return loadavg()
        log(f"load {one:.2f} >= {threshold}: waiting 30 s")
        time.sleep(30)


def parse_rate_map(items: list[str], multiple: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in LADDER_WORKLOADS or not value:
            raise SystemExit(f"bad rate spec {item!r} (WORKLOAD=RATE[,RATE...])")
        out[name] = [int(v) for v in value.split(",")] if multiple else int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (CI)")
    parser.add_argument(
        "--workloads", nargs="+", choices=ALL_WORKLOADS, default=list(ALL_WORKLOADS)
    )
    parser.add_argument(
        "--servers", nargs="+", choices=("sipsca", "kamailio"), default=["sipsca", "kamailio"]
    )
    parser.add_argument("--step-seconds", type=float, help="seconds per ladder step (15; quick 3)")
    parser.add_argument("--max-steps", type=int, help="ladder steps per server (8; quick 1)")
    parser.add_argument(
        "--start", nargs="*", default=[], metavar="WORKLOAD=RATE", help="ladder start rate"
    )
    parser.add_argument(
        "--rates",
        nargs="*",
        default=[],
        metavar="WORKLOAD=R1,R2",
        help="explicit ladder instead of doubling/bisection",
    )
    parser.add_argument(
        "--sca-members",
        type=int,
        default=2,
        help="other subscribed members per line in sca_call (2)",
    )
    parser.add_argument(
        "--member-rate",
        type=int,
        default=1000,
        help="SUBSCRIBE rate used to set up the members (1000/s)",
    )
    parser.add_argument("--kamailio-children", type=int, default=2)
    parser.add_argument(
        "--mem-counts",
        type=int,
        nargs=2,
        metavar=("N1", "N2"),
        help="subscription counts for memory (10000 100000; quick 500 2000)",
    )
    parser.add_argument("--mem-rate", type=int, help="SUBSCRIBE rate for memory (500)")
    parser.add_argument(
        "--mem-settle",
        type=float,
        help="seconds between the last SUBSCRIBE and the memory reading (40; quick 3)",
    )
    parser.add_argument("--overload-seconds", type=float, help="seconds per overload run (30; 4)")
    parser.add_argument(
        "--overload-subscribe-rate",
        type=int,
        help="default: 2x sipsca's max SUBSCRIBE rate of this run (or 4000)",
    )
    parser.add_argument(
        "--overload-call-rate",
        type=int,
        help="default: 2x sipsca's max call rate of this run (or 1000)",
    )
    parser.add_argument(
        "--profile-rate",
        type=int,
        help="SUBSCRIBE rate under cProfile (default: half sipsca's max, or 1500)",
    )
    parser.add_argument("--profile-seconds", type=float, help="(20; quick 3)")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--keep-profile", action="store_true", help="copy the .prof file to bench/results/"
    )
    parser.add_argument(
        "--wait-load",
        type=float,
        default=0.0,
        metavar="LOAD",
        help="before starting, wait until the 1-minute load is below LOAD",
    )
    parser.add_argument(
        "--wait-max",
        type=float,
        default=1800.0,
        help="longest wait for --wait-load, seconds (1800)",
    )
    parser.add_argument(
        "--src",
        choices=("head", "worktree"),
        default="head",
        help="sipsca sources to run: git HEAD (default) or a copy of the work tree",
    )
    parser.add_argument(
        "--sipsca-gc",
        choices=("default", *GC_SETUP),
        default="default",
        help="experiment: run sipsca with the cyclic GC off or with relaxed thresholds",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir of SIPp files")
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/run-*.json)")
    args = parser.parse_args(argv)

    q = args.quick
    args.step_seconds = args.step_seconds or (3.0 if q else 15.0)
    args.max_steps = args.max_steps or (1 if q else 8)
    args.mem_counts = args.mem_counts or ((500, 2000) if q else (10000, 100000))
    args.mem_rate = args.mem_rate or 500
    args.mem_settle = args.mem_settle if args.mem_settle is not None else (3.0 if q else 40.0)
    args.overload_seconds = args.overload_seconds or (4.0 if q else 30.0)
    args.profile_seconds = args.profile_seconds or (3.0 if q else 20.0)
    args.start = parse_rate_map(args.start, False)
    args.rates = parse_rate_map(args.rates, True)
    if shutil.which("sipp") is None:
        print("sipp not found (apt-get install sip-tester)", file=sys.stderr)
        return 2
    if "kamailio" in args.servers and (
        shutil.which("kamailio") is None or shutil.which("kamcmd") is None
    ):
        log("kamailio/kamcmd not installed: sipsca only")
        args.servers = [s for s in args.servers if s != "kamailio"]

    if args.wait_load:
        log(f"load before start: {wait_for_quiet(args.wait_load, args.wait_max)}")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine_facts(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
    }
    workdir = Path(tempfile.mkdtemp(prefix="sipsca-bench-"))
    snapshot_sources(args.src, workdir)
    SIPSCA_GC["mode"] = args.sipsca_gc
    results["machine"]["sources"] = SRC["mode"]
    results["machine"]["sipsca_gc"] = args.sipsca_gc
    log(f"work dir {workdir}; sipsca sources {SRC['mode']}; load {loadavg()}")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    try:
        ladders: dict[str, Any] = {}
        for wl in (w for w in LADDER_WORKLOADS if w in args.workloads):
            ladders[wl] = {}
            kinds = ["sipsca"] if wl == "options" else args.servers
            for kind in kinds:
                if kind not in args.servers:
                    continue
                log(f"{wl} ladder on {kind} (load {loadavg()})")
                try:
                    ladders[wl][kind] = ladder(kind, wl, args, workdir)
                except Exception as exc:  # keep going: report it
                    log(f"  {kind} {wl} ERROR {exc!r}")
                    ladders[wl][kind] = {"steps": [], "best": None, "error": repr(exc)}
        if ladders:
            results["ladders"] = ladders

        def best_rate(wl: str) -> int | None:
            b = ladders.get(wl, {}).get("sipsca", {}).get("best")
            return int(b["rate"]) if b else None

        if "memory" in args.workloads:
            results["memory"] = {}
            for kind in args.servers:
                log(f"memory on {kind}")
                try:
                    results["memory"][kind] = memory_workload(kind, args, workdir)
                except Exception as exc:
                    log(f"  memory {kind} ERROR {exc!r}")
                    results["memory"][kind] = {"points": [], "error": repr(exc)}
        if "overload" in args.workloads and "sipsca" in args.servers:
            sub = args.overload_subscribe_rate or 2 * (best_rate("subscribe") or 2000)
            call = args.overload_call_rate or 2 * (best_rate("call") or 500)
            if q:
                sub = args.overload_subscribe_rate or 4000
                call = args.overload_call_rate or 1000
            log(f"overload on sipsca: SUBSCRIBE {sub}/s, calls {call}/s")
            try:
                results["overload"] = overload_workload(args, workdir, sub, call)
            except Exception as exc:
                log(f"  overload ERROR {exc!r}")
                results["overload_error"] = repr(exc)
        if "profile" in args.workloads and "sipsca" in args.servers:
            rate = args.profile_rate or max(300, (best_rate("subscribe") or 3000) // 2)
            if q and not args.profile_rate:
                rate = 300
            log(f"profile: sipsca under cProfile, SUBSCRIBE {rate}/s")
            try:
                results["profile"] = profile_workload(args, workdir, rate)
            except Exception as exc:
                log(f"  profile ERROR {exc!r}")
                results["profile"] = {"error": repr(exc)}
        if "micro" in args.workloads:
            log("micro benchmarks")
            results["micro"] = micro_workload(args)
    finally:
        stop_all_sipp()
        results["machine"]["loadavg_end"] = loadavg()
        results["elapsed_seconds"] = round(time.monotonic() - t0)
        RESULTS.mkdir(exist_ok=True)
        out = args.out or RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
        text = json.dumps(results, indent=1, default=str)
        out.write_text(text)
        (RESULTS / "latest.json").write_text(text)
        md = summary_markdown(results)
        (out.with_suffix(".md")).write_text(md + "\n")
        print(md)
        log(f"wrote {out} (+ .md, latest.json) in {results['elapsed_seconds']} s")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    problems = find_problems(results)
    for p in problems:
        log(f"PROBLEM: {p}")
    return 1 if problems else 0


def find_problems(results: dict[str, Any]) -> list[str]:
    """Harness errors and server crashes (not rate or latency figures): the exit status."""
    out = []
    for wl, per_server in results.get("ladders", {}).items():
        for kind, data in per_server.items():
            if data.get("error"):
                out.append(f"{wl}/{kind}: {data['error']}")
            for st in data.get("steps", []):
                if st["reason"].startswith("harness error"):
                    out.append(f"{wl}/{kind} {st['rate']}/s: {st['reason']}")
                elif not st["server_alive"] or st["server_rc"] not in (0, None):
                    out.append(f"{wl}/{kind} {st['rate']}/s: server died (rc {st['server_rc']})")
    for kind, data in (results.get("memory") or {}).items():
        if data.get("error"):
            out.append(f"memory/{kind}: {data['error']}")
    for what, e in (results.get("overload") or {}).items():
        if not e["alive_after"] or e["exit_code"] != 0:
            out.append(f"overload/{what}: alive {e['alive_after']}, exit {e['exit_code']}")
    if results.get("overload_error"):
        out.append(f"overload: {results['overload_error']}")
    if (results.get("profile") or {}).get("error"):
        out.append(f"profile: {results['profile']['error']}")
    for name, e in (results.get("micro") or {}).items():
        if e["rc"] != 0:
            out.append(f"micro/{name}: rc {e['rc']}")
    return out


if __name__ == "__main__":
    sys.exit(main())
