"""The ``sipsca`` command contract: version/help, check-config, start-up errors (exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipsca", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version_and_help() -> None:
    out = run("--version")
    assert out.returncode == 0 and "sipsca" in out.stdout and "0." in out.stdout
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "check-config", "user", "db", "rpc"):
        assert command in out.stdout


def test_check_config_accepts_the_example() -> None:
    out = run("check-config", str(REPO / "sipsca.example.toml"))
    assert out.returncode == 0, out.stderr
    assert "sca.call_info_max_expires = 3600" in out.stdout
    assert out.stdout.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sca]\ncall_info_max_expire = 3\n", "unknown key sca.call_info_max_expire"),
        ("[nosuch]\nx = 1\n", "unknown config section [nosuch]"),
        ('[sca]\ncall_info_max_expires = "x"\n', "sca.call_info_max_expires must be an integer"),
        ('[server]\nlisten = ["udp:1.2.3"]\n', "server.listen"),
        ('[auth]\nmode = "magic"\n', "auth.mode"),
        ('[server]\nlisten = ["udp:0.0.0.0:5060"]\n', "allow_unauthenticated"),
        ('[rpc]\nlisten = "0.0.0.0:5080"\n', "rpc.token"),
        ('[server]\nlisten = ["tls:127.0.0.1:5061"]\n', "tls_cert"),
        ("not toml [", "invalid TOML"),
    ],
)
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    for args in (("check-config", str(config)), ("serve", "--config", str(config))):
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("sipsca: error:"), out.stderr
        assert needle in lines[0], lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    out = run("serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "not found" in out.stderr


def test_port_in_use_is_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        out = run(
            "serve",
            "--listen",
            f"udp:127.0.0.1:{port}",
            "--db-url",
            f"sqlite://{tmp_path}/db.sqlite",
            "--rpc-listen",
            f"127.0.0.1:{free_port()}",
            cwd=tmp_path,
        )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("sipsca: error:")]
    assert len(errors) == 1 and "server.listen" in errors[0] and "in use" in errors[0].lower(), (
        out.stderr
    )


def test_unreadable_certificate_is_exit_2(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    config = tmp_path / "tls.toml"
    config.write_text(
        f'[server]\nlisten = ["tls:127.0.0.1:{free_port()}"]\n'
        f'tls_cert = "{cert}"\ntls_key = "{cert}"\n'
        f'[rpc]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[db]\ndb_url = "sqlite://{tmp_path}/db.sqlite"\n'
    )
    out = run("serve", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("sipsca: error:")]
    assert len(errors) == 1 and "tls_cert" in errors[0], out.stderr


def test_user_commands(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/users.sqlite"
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret\n")
    out = run("user", "add", "215@example.com", "--password-file", str(pw), "--db-url", db)
    assert out.returncode == 0, out.stderr
    out = run("user", "list", "--db-url", db)
    assert out.stdout.split() == ["215@example.com"]
    out = run("user", "del", "215@example.com", "--db-url", db)
    assert out.returncode == 0
    out = run("user", "del", "215@example.com", "--db-url", db)
    assert out.returncode == 1 and "no user" in out.stderr
    out = run("user", "add", "nodomain", "--password-file", str(pw), "--db-url", db)
    assert out.returncode == 2


def test_db_init_and_migrate(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/m.sqlite"
    assert run("db", "init", "--db-url", db).returncode == 0
    out = run("db", "migrate", "--db-url", db)
    assert out.returncode == 0 and "up to date" in out.stdout
