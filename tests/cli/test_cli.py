"""The ``sipsca`` command contract: version/help, check-config, start-up errors (exit 2)."""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helpers.inprocess import run
from helpers.server import SipscaProcess, to_toml
from sipsca.cli.main import cli
from sipsca.cli.settings import load_config
from sipsca.config import SipscaConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "sipsca.example.toml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_refused(out: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit 2 with exactly one ``sipsca: error:`` line on stderr, containing ``needle``."""
    assert out.returncode == 2, (out.args, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sipsca: error:"), out.stderr
    assert needle in lines[0], lines[0]


def invoke(*args: str) -> Result:
    """The ``sipsca`` command in-process (faster than a subprocess for the storage commands)."""
    return CliRunner().invoke(cli, list(args))


def test_version_and_help() -> None:
    out = run("--version")
    assert out.returncode == 0 and "sipsca" in out.stdout and "0." in out.stdout
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "check-config", "user", "db", "rpc"):
        assert command in out.stdout
    # Each summary is a whole sentence: click cuts at the first ". " (it did at "(e.g.").
    for line in out.stdout[out.stdout.index("Commands:") :].splitlines()[1:]:
        summary = line.split(None, 1)[1]
        assert summary.endswith(".") and not summary.endswith("..."), line
        assert summary.count("(") == summary.count(")"), line


def test_check_config_accepts_the_example() -> None:
    out = run("check-config", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert "sca.call_info_max_expires = 3600" in out.stdout
    assert out.stdout.rstrip().endswith("OK")


def test_example_shows_every_key_with_its_default() -> None:
    """The example documents every key, and its values are the defaults except ``domains``
    (marked "example"); ``[[sca.lines]]`` is a commented-out example table."""
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    for section in dataclasses.fields(SipscaConfig):
        for key in dataclasses.fields(getattr(SipscaConfig(), section.name)):
            name = f"{section.name}.{key.name}"
            assert key.name in data.get(section.name, {}) or f"[[{name}]]" in text, name
    example = load_config(EXAMPLE)
    server = dataclasses.replace(example.server, domains=())
    assert dataclasses.replace(example, server=server) == SipscaConfig()


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    """check-config is the unit's ExecStartPre: its output goes to the journal."""
    for section in ("db", "sca"):  # Kamailio's spelling puts db_url in [sca]
        config = tmp_path / f"{section}.toml"
        config.write_text(
            to_toml(
                {
                    section: {"db_url": "postgresql://sipsca:hunter2@127.0.0.1/sipsca"},
                    "auth": {"secret": "n0nce-key"},
                    "rpc": {"token": "t0ken"},
                }
            )
        )
        out = run("check-config", str(config))
        assert out.returncode == 0, out.stderr
        for secret in ("hunter2", "n0nce-key", "t0ken"):
            assert secret not in out.stdout + out.stderr, secret
        for line in (
            "db.db_url = 'postgresql://sipsca:***@127.0.0.1/sipsca'",
            "auth.secret = '***'",
            "rpc.token = '***'",
        ):
            assert line in out.stdout.splitlines(), line


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
        ('[rpc]\nlisten = "127.0.0.1:99999"\n', "rpc.listen: '127.0.0.1:99999': port 99999 out"),
        ('[rpc]\nlisten = "0.0.0.0:5080"\ntoken = "  "\n', "rpc.token"),
        ("[sca]\nhash_table_size = 0\n", "sca.hash_table_size must be -1"),
        ("[sca]\nhash_table_size = 31\n", "sca.hash_table_size must be -1"),
        ("[sca]\nringing_ttl = 180\n", "sca.ringing_ttl (180 s) must be longer than"),
        (
            '[server]\nlisten = ["udp:0.0.0.0:5060"]\n[auth]\nmode = "digest"\n',
            "server.listen on 0.0.0.0 (all interfaces) needs server.advertised_address",
        ),
        (
            '[server]\nadvertised_address = "sip.example.com:70000"\n',
            "server.advertised_address: 'sip.example.com:70000' is not host[:port]",
        ),
        (
            '[server]\ndomains = ["example.com:sip"]\n',
            "server.domains: 'example.com:sip' is not host[:port]",
        ),
        (
            '[server]\nadvertised_address = "2001:db8::1"\n',
            "server.advertised_address: '2001:db8::1' is not host[:port]",
        ),
        ('[[sca.lines]]\naor = "215@example.com"\n', "sca.lines.aor: '215@example.com' is not"),
        ('[[sca.lines]]\naor = "sip:example.com"\n', "sca.lines.aor: 'sip:example.com' is not"),
        (
            '[sca]\ndb_url = "sqlite:///a.sqlite"\n[db]\ndb_url = "sqlite:///b.sqlite"\n',
            "sca.db_url and db.db_url are both set, to different values",
        ),
        (
            '[sca]\nsubs_table = "a"\n[db]\nsubs_table = "b"\n',
            "sca.subs_table and db.subs_table are both set",
        ),
    ],
)
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    for args in (("check-config", str(config)), ("serve", "--config", str(config))):
        assert_refused(run(*args, cwd=tmp_path), needle)


def test_sca_db_keys_may_repeat_the_db_value(tmp_path: Path) -> None:
    config = tmp_path / "same.toml"
    url = f"sqlite:///{tmp_path}/db.sqlite"
    config.write_text(to_toml({"sca": {"db_url": url}, "db": {"db_url": url}}))
    out = run("check-config", str(config))
    assert out.returncode == 0, out.stderr
    assert f"db.db_url = {url!r}" in out.stdout.splitlines()


def _tls(pem: str) -> dict[str, dict[str, Any]]:
    return {"server": {"listen": ["tls:127.0.0.1:0"], "tls_cert": pem, "tls_key": pem}}


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        (_tls("no.pem"), "server.tls_cert/server.tls_key: cannot load no.pem"),
        (_tls("bad.pem"), "server.tls_cert/server.tls_key: cannot load bad.pem"),
        (
            {"server": {"tls_verify": True, "tls_ca_file": "bad.pem"}},
            "server.tls_ca_file: cannot load bad.pem",
        ),
        ({"db": {"db_url": "redis://x"}}, "db.db_url: unsupported scheme 'redis://'"),
        ({"db": {"db_url": "db.sqlite"}}, "db.db_url: 'db.sqlite' has no scheme"),
        ({"db": {"subs_table": "sca-subs"}}, "db.subs_table: 'sca-subs' is not a plain SQL"),
        ({"sca": {"subs_table": "x;y"}}, "db.subs_table: 'x;y' is not a plain SQL"),
    ],
)
def test_check_config_refuses_what_serve_refuses(
    tmp_path: Path, sections: dict[str, dict[str, Any]], needle: str
) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    base: dict[str, dict[str, Any]] = {
        "server": {"listen": ["udp:127.0.0.1:0"]},
        "rpc": {"listen": "127.0.0.1:0"},
        "db": {"db_url": f"sqlite:///{tmp_path}/db.sqlite"},
    }
    merged = {name: {**base.get(name, {}), **sections.get(name, {})} for name in base | sections}
    config = tmp_path / "bad.toml"
    config.write_text(to_toml(merged))
    for args in (("check-config", str(config)), ("serve", "--config", str(config))):
        assert_refused(run(*args, cwd=tmp_path), needle)


def test_serve_flags_are_checked_like_the_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.sqlite"
    flags = ("serve", "--listen", "udp:127.0.0.1:0", "--db-url", db, "--rpc-listen")
    assert_refused(run(*flags, "127.0.0.1:99999", cwd=tmp_path), "port 99999 out of range")
    # A flag does not switch on the management API that the file switched off.
    config = tmp_path / "norpc.toml"
    config.write_text("[rpc]\nenabled = false\n")
    out = run(*flags, "127.0.0.1:0", "--config", str(config), cwd=tmp_path)
    assert_refused(out, "--rpc-listen given but rpc.enabled = false")


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


@pytest.mark.parametrize(
    "address",
    [
        "sip:215@example.com",
        "2 15@example.com",
        "a@b@c",
        "215@example.com:5060",
        "215@example.com;transport=tcp",
        "215:pw@example.com",
        "215@999.0.0.1",
        "215@exa_mple..com",
        "@example.com",
        "nodomain",
    ],
)
def test_user_add_refuses_a_malformed_address(tmp_path: Path, address: str) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret\n")
    db = tmp_path / "users.sqlite"
    result = invoke(
        "user", "add", address, "--password-file", str(pw), "--db-url", f"sqlite://{db}"
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"sipsca: error: {address!r} is not USER@DOMAIN ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not db.exists()  # refused before the database is touched


def test_user_add_accepts_rfc3261_users_and_says_replaced(tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret\n")
    db = f"sqlite://{tmp_path}/users.sqlite"
    addresses = ["215@example.com", "o'neil+x@192.0.2.1", "a%20b;c=d@[2001:db8::1]"]
    for address in addresses:
        result = invoke("user", "add", address, "--password-file", str(pw), "--db-url", db)
        assert (result.exit_code, result.stdout) == (0, f"added {address}\n"), result.output
    pw.write_text("n3w\n")
    result = invoke("user", "add", "215@example.com", "--password-file", str(pw), "--db-url", db)
    assert (result.exit_code, result.stdout) == (0, "replaced 215@example.com\n"), result.output
    result = invoke("user", "list", "--db-url", db)
    assert sorted(result.stdout.split()) == sorted(addresses)


def test_running_server_logs_and_rpc_errors(
    sipsca_factory: Callable[..., SipscaProcess],
) -> None:
    srv = sipsca_factory()
    assert f"rpc: listening on 127.0.0.1:{srv.rpc_port}\n" in srv.log_text()
    url = f"http://127.0.0.1:{srv.rpc_port}/RPC"
    out = run("rpc", "--url", url, "stats", "nonexistent")
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr == "error: -32602 - Invalid params: no such statistic: nonexistent\n"
    out = run("rpc", "--url", url, "stats", "nonexistent", "sca")  # some match: those
    assert out.returncode == 0 and re.search(r"^sca[.:]", out.stdout, re.M), out.stdout


def test_install_steps_agree_with_the_unit() -> None:
    """The install commands run by hand use the database the service will use, in a directory
    that exists before the first start, and read no file the user sipsca cannot."""
    doc = (REPO / "docs" / "operations.md").read_text()
    install = doc[doc.index("## Install") : doc.index("### Databases")]
    unit = (REPO / "contrib" / "sipsca.service").read_text()
    match = re.search(r"^WorkingDirectory=(\S+)$", unit, re.M)
    assert match is not None
    workdir = match[1]
    assert f"install -d -m 0750 -o sipsca -g sipsca {workdir}" in install
    assert f'db_url = "sqlite://{workdir}/' in install  # absolute: the same file from anywhere
    assert "/root/" not in install


def test_db_init_and_migrate(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/m.sqlite"
    assert run("db", "init", "--db-url", db).returncode == 0
    out = run("db", "migrate", "--db-url", db)
    assert out.returncode == 0 and "up to date" in out.stdout
