"""``sipsca rpc`` against a running server: CliRunner and a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sipsca.cli.rpc_cmd import format_result, rpc_command

from .conftest import TOKEN, ThreadedServer
from .fakes import NOW

AOR = "sip:215@127.0.0.1"
OWNER = "sip:215@127.0.0.1:5081"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(rpc_command, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def dead_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/RPC"


# --- CliRunner ----------------------------------------------------------------------------


def test_list_of_strings_one_per_line(threaded: ThreadedServer) -> None:
    assert run("--url", threaded.url, "sca.all_subscriptions") == (
        0,
        "215 127.0.0.1:5082 call-info 3599 active\n215 127.0.0.1:5081 call-info 3599 active\n",
        "",
    )


def test_integer_arguments_are_sent_as_numbers(threaded: ThreadedServer) -> None:
    code, out, _ = run("--url", threaded.url, "sca.seize_appearance", AOR, OWNER)
    assert (code, out) == (0, f"Seized {AOR} appearance-index 1 for {OWNER}\n")
    assert run("--url", threaded.url, "sca.release_appearance", AOR, "1") == (0, "", "")
    assert threaded.backend.sca.calls[-1] == ("release_appearance", AOR, 1)


def test_dict_result_is_an_aligned_key_value_list(threaded: ThreadedServer) -> None:
    code, out, _ = run("--url", threaded.url, "stats", "sca:")
    assert (code, out) == (0, "sca:appearances:   1\nsca:subscriptions: 2\n")


def test_list_of_dicts_is_a_table(threaded: ThreadedServer) -> None:
    code, out, _ = run("--url", threaded.url, "registrar.bindings")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "AOR", "CONTACT", "EXPIRES", "Q", "RECEIVED", "USER_AGENT", "INSTANCE",
    ]  # fmt: skip
    assert lines[1].split() == [
        AOR, "sip:215@127.0.0.1:5081", "3599", "1.0", "udp:127.0.0.1:5081", "sca-lab-phoneA",
    ]  # fmt: skip
    assert lines[2].endswith("<urn:uuid:00000000-0000-0000-0000-000000000001>")
    # Columns are aligned: every row starts its CONTACT at the same offset.
    assert len({line.index("sip:215@127.0.0.1:508") for line in lines[1:]}) == 1


def test_json_output(threaded: ThreadedServer) -> None:
    code, out, _ = run("--url", threaded.url, "--json", "core.uptime")
    assert code == 0
    assert json.loads(out)["uptime"] == 4242
    code, out, _ = run("--json", "--url", threaded.url, "sca.subscription_count", "call-info")
    assert json.loads(out) == ["2 call-info"]


def test_fault_prints_kamcmd_style_error_and_exits_1(threaded: ThreadedServer) -> None:
    run("--url", threaded.url, "sca.seize_appearance", AOR, OWNER)
    assert run("--url", threaded.url, "sca.update_appearance", AOR, "1", "ringing") == (
        1,
        "",
        "error: 500 - ringing: invalid state\n",
    )
    assert run("--url", threaded.url, "sca.seize_appearance", AOR) == (
        1,
        "",
        "error: 500 - usage: sca.seize_appearance sip:user@domain\n",
    )
    assert run("--url", threaded.url, "sca.show_subscribers") == (
        1,
        "",
        "error: -32601 - Method not found\n",
    )


def test_negative_numbers_are_arguments_not_options(threaded: ThreadedServer) -> None:
    assert run("--url", threaded.url, "sca.release_appearance", AOR, "-1") == (
        1,
        "",
        "error: 500 - appearance-index must be > 0\n",
    )


def test_unreachable_server_exits_1() -> None:
    url = dead_url()
    code, out, err = run("--url", url, "core.version")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: cannot reach sipsca RPC at {url} (")


def test_non_jsonrpc_answer_exits_1(threaded: ThreadedServer) -> None:
    url = threaded.url.removesuffix("/RPC") + "/nothing-here"
    code, _, err = run("--url", url, "core.version")
    assert code == 1
    assert err == f"error: unexpected HTTP 404 answer from {url}\n"


def test_token_from_option_and_environment(threaded_secured: ThreadedServer) -> None:
    url = threaded_secured.url
    code, _, err = run("--url", url, "core.version")
    assert (code, err) == (1, "error: 401 - Unauthorized: missing or wrong bearer token\n")
    assert run("--url", url, "--token", TOKEN, "core.version") == (0, "sipsca 0.1.0\n", "")
    env = {"SIPSCA_RPC_URL": url, "SIPSCA_RPC_TOKEN": TOKEN}
    assert run("core.version", env=env) == (0, "sipsca 0.1.0\n", "")
    # An explicit option beats the environment.
    assert run("--token", "wrong", "core.version", env=env)[0] == 1


def test_defaults_from_config_file(threaded_secured: ThreadedServer, tmp_path: Path) -> None:
    port = threaded_secured.url.rsplit(":", 1)[1].removesuffix("/RPC")
    config = tmp_path / "sipsca.toml"
    config.write_text(f'[rpc]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n')
    assert run("--config", str(config), "core.version") == (0, "sipsca 0.1.0\n", "")
    # The environment beats the file.
    code, _, err = run("--config", str(config), "core.version", env={"SIPSCA_RPC_URL": dead_url()})
    assert code == 1
    assert "cannot reach" in err


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[rpc\n")
    code, _, err = run("--config", str(config), "core.version")
    assert code == 2
    assert "cannot read config" in err


def test_format_result() -> None:
    assert format_result(None) == []
    assert format_result([]) == []
    assert format_result("sipsca 0.1.0") == ["sipsca 0.1.0"]
    assert format_result(["a", "b"]) == ["a", "b"]
    assert format_result({"now": "x", "uptime": 3, "nested": {"a": [1]}}) == [
        "now:    x",
        "uptime: 3",
        'nested: {"a":[1]}',
    ]
    assert format_result([{"a": 1, "bb": None}, {"a": 22, "c": True}]) == [
        "A   BB  C",
        "1",
        "22      true",
    ]


# --- a real process -----------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSCA_RPC_")}
    return subprocess.run(
        [sys.executable, "-m", "sipsca.cli.rpc_cmd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_subprocess_against_the_running_server(threaded: ThreadedServer) -> None:
    proc = cli("--url", threaded.url, "sca.seize_appearance", AOR, OWNER)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"Seized {AOR} appearance-index 1 for {OWNER}\n",
        "",
    )
    proc = cli("--url", threaded.url, "sca.all_appearances")
    assert proc.stdout == f"{AOR} 1 seized {int(NOW)} {OWNER}\n"
    proc = cli("--url", threaded.url, "--json", "sca.subscription_count", "call-info")
    assert (proc.returncode, json.loads(proc.stdout)) == (0, ["2 call-info"])
    proc = cli("--url", threaded.url, "sca.update_appearance", AOR, "7", "active")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"error: 500 - Failed to update {AOR} appearance-index 7\n",
    )


def test_subprocess_unreachable() -> None:
    url = dead_url()
    proc = cli("--url", url, "sca.all_subscriptions")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: cannot reach sipsca RPC at {url} (")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str) -> None:
    code, out, _ = run(flag)
    assert code == 0
    assert "METHOD" in out
