"""Start-up refusals found by the operator audit: what ``check-config`` accepts ``serve`` starts
with, and whatever stops ``serve`` is one ``sipsca: error:`` line and exit 2, promptly.

Every ``serve`` here runs with a bounded time-out: a start-up error used to leave the SQLite
worker threads running, so the process printed its error and then hung forever.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers.inprocess import run
from helpers.server import free_port, to_toml
from sipsca.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
SERVE_TIMEOUT = 20.0
"""Seconds ``serve`` may take to refuse a config; it used to hang instead."""


def assert_refused(out: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit 2 with exactly one line on stderr, ``sipsca: error: ...`` containing ``needle``
    (no traceback, no ``Exception in thread`` after it)."""
    assert out.returncode == 2, (out.args, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sipsca: error:"), out.stderr
    assert needle in lines[0], lines[0]


def write_config(tmp_path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A config on a free loopback port, SQLite in ``tmp_path``, no RPC listener, plus
    ``sections`` (merged per section)."""
    base: dict[str, dict[str, Any]] = {
        "server": {"listen": [f"udp:127.0.0.1:{free_port()}"]},
        "rpc": {"enabled": False},
        "db": {"db_url": f"sqlite:///{tmp_path}/db.sqlite"},
    }
    merged = {name: {**base.get(name, {}), **sections.get(name, {})} for name in base | sections}
    path = tmp_path / "sipsca.toml"
    path.write_text(to_toml(merged))
    return path


# --- item 1: values only the application's constructor used to check ------------------------

CONSTRUCTOR_CHECKS = [
    pytest.param(
        {"auth": {"mode": "digest", "secret": "short"}},
        "auth.secret must be at least 16 bytes",
        id="short-secret",
    ),
    pytest.param({"transaction": {"t1": 0}}, "transaction.t1 must be > 0", id="t1-zero"),
    pytest.param(
        {"transaction": {"t1": 5.0, "t2": 4.0}},
        "transaction.t2 (4 s) must be >= transaction.t1 (5 s)",
        id="t1-above-t2",
    ),
    pytest.param({"transaction": {"t4": -1}}, "transaction.t4 must be >= 0", id="t4-negative"),
    pytest.param(
        {"auth": {"mode": "digest", "algorithms": []}},
        "auth.algorithms must name",
        id="no-algorithms",
    ),
    pytest.param(
        {"auth": {"mode": "digest", "algorithms": ["SHA-512"]}},
        "auth.algorithms: unsupported 'SHA-512'",
        id="unknown-algorithm",
    ),
    pytest.param(
        {"auth": {"mode": "digest", "nonce_ttl": -1}},
        "auth.nonce_ttl must be > 0",
        id="nonce-ttl",
    ),
    pytest.param(
        {"proxy": {"static_routes": [["example.net", "bogus"]]}},
        "proxy.static_routes: the route for 'example.net', 'bogus', is not transport:host:port",
        id="static-route",
    ),
    pytest.param(
        {"proxy": {"static_routes": [["example.net", "ws:192.0.2.1:80"]]}},
        "proxy.static_routes",
        id="static-route-transport",
    ),
    pytest.param(
        {"proxy": {"static_routes": [["example.net", "udp:192.0.2.1:0"]]}},
        "proxy.static_routes",
        id="static-route-port",
    ),
]


@pytest.mark.parametrize(("sections", "needle"), CONSTRUCTOR_CHECKS)
def test_check_config_refuses_what_the_application_refuses(
    tmp_path: Path, sections: dict[str, dict[str, Any]], needle: str
) -> None:
    """It said OK, and then serve refused the file."""
    config = write_config(tmp_path, sections)
    assert_refused(run("check-config", str(config), cwd=tmp_path), needle)


@pytest.mark.parametrize(("sections", "needle"), CONSTRUCTOR_CHECKS)
def test_serve_refuses_it_promptly(
    tmp_path: Path, sections: dict[str, dict[str, Any]], needle: str
) -> None:
    """serve printed its error, then hung (a TimeoutExpired here), or for the static route
    printed a traceback."""
    config = write_config(tmp_path, sections)
    out = run("serve", "--config", str(config), cwd=tmp_path, timeout=SERVE_TIMEOUT)
    assert_refused(out, needle)


def test_a_short_secret_is_fine_without_digest(tmp_path: Path) -> None:
    """``auth.secret`` is only used (and so only checked) with ``mode = "digest"``."""
    config = write_config(tmp_path, {"auth": {"secret": "short"}})
    out = run("check-config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_a_listen_host_is_checked_for_syntax_and_resolved_by_serve(tmp_path: Path) -> None:
    """``not a host`` is refused by check-config; a well-formed name that does not resolve
    passes it (resolution is serve's business, documented) and stops serve with exit 2."""
    db = f"sqlite:///{tmp_path}/db.sqlite"
    out = run("serve", "--listen", "udp:not a host:29000", "--db-url", db, cwd=tmp_path)
    assert_refused(out, "'not a host' is not a host name or IP address")
    config = write_config(
        tmp_path,
        {
            "server": {"listen": ["udp:sipsca-no-such-host.invalid:29000"]},
            "auth": {"allow_unauthenticated": True},
        },
    )
    assert run("check-config", str(config), cwd=tmp_path).returncode == 0
    out = run("serve", "--config", str(config), cwd=tmp_path, timeout=SERVE_TIMEOUT)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("sipsca: error:")]
    assert len(errors) == 1 and "server.listen: cannot listen on" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


# --- item 2: members / aliases given as a string ---------------------------------------------


@pytest.mark.parametrize("key", ["members", "aliases"])
def test_line_members_and_aliases_must_be_lists(tmp_path: Path, key: str) -> None:
    config = tmp_path / "lines.toml"
    config.write_text(f'[[sca.lines]]\naor = "sip:215@example.com"\n{key} = "215"\n')
    needle = f"sca.lines.{key} must be a list of"
    assert_refused(run("check-config", str(config), cwd=tmp_path), needle)
    assert_refused(
        run("serve", "--config", str(config), cwd=tmp_path, timeout=SERVE_TIMEOUT), needle
    )
    config.write_text(f'[[sca.lines]]\naor = "sip:215@example.com"\n{key} = ["215", 7]\n')
    assert_refused(run("check-config", str(config), cwd=tmp_path), needle)
    config.write_text(f'[[sca.lines]]\naor = "sip:215@example.com"\n{key} = ["215"]\n')
    out = run("check-config", str(config), cwd=tmp_path)
    assert out.returncode == 0 and f"'{key}': ('215',)" in out.stdout, out.stderr


# --- item 3: malformed PostgreSQL URLs --------------------------------------------------------

BAD_URLS = [
    pytest.param("postgresql://u:pw@[bad/x", "[brackets]", id="bracket"),
    pytest.param("postgresql://u:pw@127.0.0.1:99999/x", "port must be a number", id="port"),
    pytest.param("postgres://u:pw@127.0.0.1:0/x", "port must be a number", id="port-zero"),
    pytest.param("postgresql://u:pw@h1:5432,h2:abc/x", "port must be a number", id="host-list"),
    pytest.param("mysql://u:pw@[bad/x", "malformed MySQL URL", id="mysql-bracket"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_URLS)
def test_a_malformed_server_db_url_is_one_line_and_exit_2(
    tmp_path: Path, url: str, needle: str
) -> None:
    """Needs no database server: the URL is refused before anything connects."""
    for args in (
        ("user", "list", "--db-url", url),
        ("db", "init", "--db-url", url),
        ("serve", "--listen", f"udp:127.0.0.1:{free_port()}", "--db-url", url),
    ):
        out = run(*args, cwd=tmp_path, timeout=SERVE_TIMEOUT)
        assert_refused(out, "db.db_url: malformed")
        assert needle in out.stderr and "pw" not in out.stderr, out.stderr
    config = tmp_path / "pg.toml"
    config.write_text(to_toml({"db": {"db_url": url}}))
    assert_refused(run("check-config", str(config), cwd=tmp_path), needle)


# --- item 4: password files -----------------------------------------------------------------


def test_an_undecodable_password_file_is_one_line(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xff\xfe secret\n")
    out = run(
        "user", "add", "215@example.com", "--password-file", str(pw),
        "--db-url", f"sqlite:///{tmp_path}/db.sqlite", cwd=tmp_path,
    )  # fmt: skip
    assert_refused(out, f"cannot read password file {pw}: not UTF-8 text")


def test_an_unreadable_password_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the service user may not read (root reads any file, so the refusal is
    simulated: the read raises what a mode-0 file raises for user ``sipsca``)."""
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    real_read_text = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self == pw:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    result = CliRunner().invoke(
        cli,
        ["user", "add", "215@example.com", "--password-file", str(pw),
         "--db-url", f"sqlite:///{tmp_path}/db.sqlite"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"sipsca: error: cannot read password file {pw}: Permission denied" in result.output


# --- item 8: a database that cannot be opened --------------------------------------------------


def test_a_database_that_cannot_be_opened_is_one_line_every_time(tmp_path: Path) -> None:
    """The SQLite worker thread of the failed connection used to report to the closed event
    loop now and then (``Exception in thread ...: RuntimeError: Event loop is closed``)."""
    for _ in range(5):
        out = run(
            "serve",
            "--listen",
            f"udp:127.0.0.1:{free_port()}",
            "--db-url",
            f"sqlite://{tmp_path}",
            cwd=tmp_path,
            timeout=SERVE_TIMEOUT,
        )  # fmt: skip  (a directory: sqlite3 cannot open it)
        assert_refused(out, "db.db_url: cannot use database")


# --- item 10: db migrate on a new database -----------------------------------------------------


def test_db_migrate_names_a_new_database(tmp_path: Path) -> None:
    out = run("db", "migrate", "--db-url", f"sqlite:///{tmp_path}/new.sqlite", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "set sipsca schema version 1 (new database)" in out.stdout.splitlines()
    assert "None" not in out.stdout


# --- item 9: the Kamailio defaults sipsca does not share ----------------------------------------

KAMAILIO_SCA_DEFAULTS: dict[str, object] = {
    "call_info_max_expires": 3600,
    "line_seize_max_expires": 15,
    "purge_expired_interval": 120,
    "db_url": "mysql://kamailio:kamailiorw@localhost/kamailio",
    "subs_table": "sca_subscriptions",
    "db_update_interval": 300,
    "server_address": "",
    "onhold_bflag": -1,
    "contact_fallback": "",
    "hash_table_size": 9,
}
"""The parameters of Kamailio's sca module and their defaults (its documentation)."""


def test_docs_name_the_kamailio_defaults_that_differ() -> None:
    """README and the example used to say every ``[sca]`` key has Kamailio's default."""
    from sipsca.config import SipscaConfig

    config = SipscaConfig()
    ours = {**vars_of(config.sca), **vars_of(config.db)}
    differ = {k: v for k, v in KAMAILIO_SCA_DEFAULTS.items() if ours[k] != v}
    assert set(differ) == {"db_url", "hash_table_size"}
    readme = " ".join((REPO / "README.md").read_text().split())
    example = (REPO / "sipsca.example.toml").read_text()
    assert "names and defaults of Kamailio" not in readme
    assert "same names, same defaults)" not in example
    tomllib.loads(example)
    for key, value in differ.items():
        for text in (readme, example):
            assert key in text and str(value) in text, (key, value)


def vars_of(section: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}  # type: ignore[arg-type]


def test_a_scoped_ipv6_listen_address_is_still_accepted() -> None:
    """The listen syntax check must not refuse a link-local address with its zone."""
    from sipsca.cli.settings import parse_listen
    from sipsca.errors import ConfigError

    assert parse_listen("udp:[fe80::1%eth0]:5060") == ("udp", "fe80::1%eth0", 5060)
    with pytest.raises(ConfigError):
        parse_listen("udp:[fe80::zz%eth0]:5060")
