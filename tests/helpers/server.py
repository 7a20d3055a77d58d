"""Real servers for tests: ``sipsca serve`` as a subprocess, and the reference Kamailio.

Both expose the same small surface: ``sip_addr`` (host, port) for UDP and TCP,
``domain``, ``rpc(method, *params) -> list[str]`` (raises :class:`RpcError`), its async
twin ``arpc``, ``log_text()`` and ``stop()``. Everything is bounded in time and bound to
127.0.0.1.
"""

# ruff: noqa: ASYNC109  (a bounded `timeout=` argument on every wait is this harness's API)
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "KAMAILIO_PORT",
    "KamailioProcess",
    "RpcError",
    "SipscaProcess",
    "free_port",
    "kamailio_available",
    "reference_dir",
]

REPO = Path(__file__).resolve().parents[2]
KAMAILIO_PORT = 5070
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class RpcError(Exception):
    """An RPC fault: ``code`` and ``message`` as the server gave them."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} - {message}")
        self.code = code
        self.message = message


def free_port(kind: int = socket.SOCK_DGRAM, also: int | None = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free for ``kind`` (and ``also``) right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also is None:
            return port
        try:
            with socket.socket(socket.AF_INET, also) as s2:
                s2.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table, e.g. one of [[sca.lines]]
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"unsupported TOML value {v!r}")


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A tiny TOML writer for flat sections (and one level of sub-tables)."""
    out: list[str] = []
    for name, values in sections.items():
        flat = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        subs = {k: v for k, v in values.items() if isinstance(v, Mapping)}
        out.append(f"[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in flat.items()]
        out.append("")
        for sub, sv in subs.items():
            out.append(f"[{name}.{sub}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in sv.items()]
            out.append("")
    return "\n".join(out)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


class SipscaProcess:
    """``python -m sipsca serve`` on free loopback ports, with a generated TOML config.

    ``config``: extra TOML sections merged over the defaults, e.g.
    ``{"sca": {"purge_expired_interval": 1}, "auth": {"mode": "digest"}}``.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        domain: str = "127.0.0.1",
        log_level: str = "INFO",
        port: int | None = None,
        db_path: Path | None = None,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sipsca-test-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.rpc_port = free_port(socket.SOCK_STREAM, None)
        self.db_path = db_path or (self.workdir / "db.sqlite")
        self.log_level = log_level
        defaults: dict[str, Any] = {
            "server": {"domains": [domain]},
            "sca": {},
            "auth": {"mode": "none"},
            "db": {"db_url": f"sqlite:///{self.db_path}"},
        }
        self.config = _deep_merge(defaults, config or {})
        for key in [k for k, v in self.config.items() if not v]:
            del self.config[key]
        self.config_path = self.workdir / "sipsca.toml"
        self.log_path = self.workdir / "sipsca.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def sip_addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def name(self) -> str:
        return "sipsca"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sipsca",
            "serve",
            "--listen",
            f"udp:{self.host}:{self.port}",
            "--listen",
            f"tcp:{self.host}:{self.port}",
            "--db-url",
            f"sqlite:///{self.db_path}",
            "--rpc-listen",
            f"{self.host}:{self.rpc_port}",
            "--log-level",
            self.log_level,
            "--config",
            str(self.config_path),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> SipscaProcess:
        self.config_path.write_text(to_toml(self.config))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.pop("PYTHONWARNINGS", None)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
            )
        wanted = {f"udp:{self.host}:{self.port}", f"tcp:{self.host}:{self.port}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text(log_start)  # this run's lines only (restart appends)
            ready = {w for w in wanted if f"listening {w}" in text}
            if ready == wanted:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sipsca exited with {self.proc.returncode} before it was ready:\n"
                    + text[-4000:]
                )
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sipsca not ready within {timeout}s:\n{self.log_text()[-4000:]}")

    def add_user(self, address: str, password: str, timeout: float = 30.0) -> None:
        """``sipsca user add ADDRESS`` into this server's database (call before ``start``)."""
        self.config_path.write_text(to_toml(self.config))
        pw = self.workdir / f"pw-{address.replace('@', '_')}"
        pw.write_text(password + "\n")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
        )
        cmd = [
            sys.executable,
            "-m",
            "sipsca",
            "user",
            "add",
            address,
            "--password-file",
            str(pw),
            "--config",
            str(self.config_path),
            "--db-url",
            f"sqlite:///{self.db_path}",
        ]
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 0, f"sipsca user add failed ({p.returncode}):\n{p.stdout}{p.stderr}"

    def log_text(self, offset: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[offset:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT, *, check: bool = True) -> int:
        """SIGTERM, wait (bounded), then assert exit status 0 when ``check``."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"sipsca did not stop within {timeout}s of SIGTERM:\n{self.log_text()[-3000:]}"
                ) from None
        self.returncode = self.proc.returncode
        self.proc = None
        if check:
            assert self.returncode == 0, (
                f"sipsca exited with {self.returncode} on SIGTERM:\n{self.log_text()[-3000:]}"
            )
        return self.returncode

    def kill(self) -> None:
        """Crash-stop (SIGKILL) without checks (crash-recovery tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self, timeout: float = START_TIMEOUT) -> SipscaProcess:
        """Graceful stop (exit 0 asserted) and start again with the same ports, config and DB."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -------------------------------------------------------------- RPC
    def rpc(self, method: str, *params: Any, timeout: float = 5.0) -> list[str]:
        """JSON-RPC 2.0 call; returns the result (a list of strings) or raises RpcError."""
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": method,
                "params": [str(p) if not isinstance(p, int) else p for p in params],
            }
        )
        req = urllib.request.Request(
            f"http://{self.host}:{self.rpc_port}/RPC",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = json.loads(r.read().decode())
        except urllib.error.HTTPError as exc:
            data = json.loads(exc.read().decode() or "{}")
        if "error" in data and data["error"] is not None:
            err = data["error"]
            raise RpcError(int(err.get("code", 500)), str(err.get("message", "")))
        result = data.get("result")
        if result is None:
            return []
        if isinstance(result, str):
            return [line for line in result.splitlines() if line]
        return [str(x) for x in result]

    async def arpc(self, method: str, *params: Any, timeout: float = 5.0) -> list[str]:
        return await asyncio.to_thread(self.rpc, method, *params, timeout=timeout)


# ------------------------------------------------------------------------------ Kamailio
def reference_dir() -> Path:
    """The reference Kamailio lab: ``$SCA_REFERENCE_DIR``, else ``shared/`` beside the repo."""
    env = os.environ.get("SCA_REFERENCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [
        REPO.parent / "shared" / "reference" / "kamailio",
        Path("/work/shared/reference/kamailio"),
    ]
    for c in candidates:
        if (c / "kamailio.cfg").is_file():
            return c
    raise FileNotFoundError(f"reference Kamailio lab not found in {candidates}")


def kamailio_available() -> bool:
    return shutil.which("kamailio") is not None and shutil.which("kamcmd") is not None


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class KamailioProcess:
    """The reference Kamailio (SCA module) on 127.0.0.1:5070 in a private run dir.

    The lab's start.sh/stop.sh/kamailio.cfg/init_db.sh are copied to a temp dir (the
    shared folder may be read-only); ``KAMAILIO_RUN_DIR`` is a temp dir too.
    ``purge``: sca purge_expired_interval (s); ``children``: worker processes.
    ``port``: 5070 (the lab's) by default, or ``$SCA_KAMAILIO_PORT``; when 5070 stays busy
    (another lab Kamailio, e.g. a benchmark, runs) a free port is used instead: only the
    copied config's listen/alias lines change, the SCA behaviour does not.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        purge: int = 10,
        children: int = 2,
        debug: int = 2,
        port: int | None = None,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kamailio-test-"))
        self.lab = self.workdir / "lab"
        self.run_dir = self.workdir / "run"
        self.purge = purge
        self.children = children
        self.debug = debug
        self.host = "127.0.0.1"
        env_port = os.environ.get("SCA_KAMAILIO_PORT")
        self._fixed_port = port is not None or env_port is not None
        self.port = port or int(env_port or KAMAILIO_PORT)
        self.domain = "127.0.0.1"
        self.started = False

    @property
    def sip_addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def name(self) -> str:
        return "kamailio"

    @property
    def ctl(self) -> str:
        return f"unix:{self.run_dir}/run/kamailio_ctl"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAMAILIO_RUN_DIR=str(self.run_dir),
            FRESH_DB="1",
            SCA_PURGE=str(self.purge),
            CHILDREN=str(self.children),
            DEBUGLVL=str(self.debug),
        )
        return env

    def start(self, timeout: float = START_TIMEOUT) -> KamailioProcess:
        ref = reference_dir()
        (self.lab / "scripts").mkdir(parents=True, exist_ok=True)
        for f in ("start.sh", "stop.sh", "kamailio.cfg"):
            shutil.copy(ref / f, self.lab / f)
        shutil.copy(ref / "scripts" / "init_db.sh", self.lab / "scripts" / "init_db.sh")
        for f in ("start.sh", "stop.sh", "scripts/init_db.sh"):
            (self.lab / f).chmod(0o755)
        deadline = time.monotonic() + 5
        while _port_busy(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)  # a previous instance is still shutting down
        if _port_busy(self.port):
            if self._fixed_port:
                raise RuntimeError(f"127.0.0.1:{self.port} is busy: another Kamailio is running?")
            self.port = free_port()
        if self.port != KAMAILIO_PORT:
            cfg = self.lab / "kamailio.cfg"
            text = cfg.read_text()
            for host in ("127.0.0.1", "localhost"):
                text = text.replace(f"{host}:{KAMAILIO_PORT}", f"{host}:{self.port}")
            cfg.write_text(text)
        p = subprocess.run(
            ["bash", str(self.lab / "start.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"kamailio start failed:\n{p.stdout}\n{p.stderr}\n{self.log_text()[-3000:]}"
            )
        self.started = True
        # wait until SIP and RPC answer
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.rpc("core.version")
                return self
            except (RpcError, RuntimeError, subprocess.TimeoutExpired):
                time.sleep(0.1)
        raise RuntimeError("kamailio RPC not answering")

    def log_text(self) -> str:
        try:
            return (self.run_dir / "logs" / "kamailio.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if not self.started:
            return
        subprocess.run(
            ["bash", str(self.lab / "stop.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT + 5,
        )
        self.started = False

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def rpc(self, method: str, *params: Any, timeout: float = 5.0) -> list[str]:
        """kamcmd over the binrpc socket; output lines as a list, errors as RpcError."""
        p = subprocess.run(
            ["kamcmd", "-s", self.ctl, method, *[str(x) for x in params]],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = (p.stdout + p.stderr).strip()
        if out.startswith("error:"):
            code, _, msg = out[len("error:") :].strip().partition(" - ")
            try:
                raise RpcError(int(code), msg)
            except ValueError:
                raise RpcError(500, out) from None
        if p.returncode != 0:
            raise RuntimeError(f"kamcmd failed ({p.returncode}): {out}")
        return [line for line in out.splitlines() if line.strip()]

    async def arpc(self, method: str, *params: Any, timeout: float = 5.0) -> list[str]:
        return await asyncio.to_thread(self.rpc, method, *params, timeout=timeout)
