"""Operations documentation and packaging stay true: the generated configuration reference is
up to date, every RPC method and metric is documented, the systemd unit is valid and matches
the server's stop behaviour."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipsca.rpc.methods import METHODS
from sipsca.runtime import persistence
from sipsca.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations.md"
GEN = REPO / "scripts" / "gen_config_reference.py"
UNIT = REPO / "contrib" / "sipsca.service"


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN), *args], capture_output=True, text=True, timeout=60
    )


def test_config_reference_is_up_to_date() -> None:
    p = gen("--check")
    assert p.returncode == 0, p.stdout + p.stderr


def test_config_reference_check_detects_drift(tmp_path: Path) -> None:
    doc = tmp_path / "operations.md"
    doc.write_text(
        DOC.read_text().replace(
            "| `db_update_interval` | integer | `300` |",
            "| `db_update_interval` | integer | `60` |",
        )
    )
    p = gen("--check", str(doc))
    assert p.returncode == 1 and "out of date" in p.stdout
    assert gen("--write", str(doc)).returncode == 0
    assert gen("--check", str(doc)).returncode == 0
    assert doc.read_text() == DOC.read_text()


def test_config_reference_covers_every_key() -> None:
    import dataclasses

    from sipsca.config import SipscaConfig

    text = DOC.read_text()
    for section in dataclasses.fields(SipscaConfig):
        assert f"#### `[{section.name}]`" in text
        for field in dataclasses.fields(getattr(SipscaConfig(), section.name)):
            assert f"| `{field.name}` |" in text, f"{section.name}.{field.name}"


def test_operations_guide_sections() -> None:
    text = DOC.read_text()
    for heading in (
        "## Install",
        "### Configuration reference",
        "## Backup and restore",
        "## Upgrade",
        "## Tuning",
        "## Persistence",
        "### When the database goes away",
        "### Moving from Kamailio",
        "### Metrics and health",
    ):
        assert heading in text, heading
    backup = text[text.index("## Backup and restore") : text.index("## Upgrade")]
    for tool in ("sqlite3", "pg_dump", "pg_restore", "mariadb-dump"):
        assert tool in backup, tool
    assert "sipsca db migrate" in text[text.index("## Upgrade") :]


def test_every_rpc_method_and_metric_is_documented() -> None:
    text = DOC.read_text()
    for name in METHODS:
        assert f"`{name}" in text, name
    families = {m.name for m in Metrics(process_metrics=False).registry.collect()}
    for family in families:
        assert f"`{family}" in text, family


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_systemd_unit_matches_the_server() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"].endswith("sipsca serve --config /etc/sipsca/sipsca.toml")
    assert "ExecReload" not in service, "sipsca has no reload: a reload must not stop it"
    assert service["KillSignal"] == "SIGTERM"  # graceful stop: flush, exit 0
    assert float(service["TimeoutStopSec"]) >= persistence.STOP_TIMEOUT + 10
    assert service["Restart"] in ("on-failure", "always")
    assert float(service["RestartSec"]) * 5 > 10, "would hit systemd's start limit at boot"
    assert service["StateDirectory"] == "sipsca"
    assert service["WorkingDirectory"] == "/var/lib/sipsca"
    assert int(service["LimitNOFILE"]) > 4096  # > server.max_connections default
    assert "AF_UNIX" in service["RestrictAddressFamilies"]  # local PostgreSQL/MariaDB sockets


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "sipsca.service"
    unit.write_text(UNIT.read_text().replace("/opt/sipsca/.venv/bin/sipsca", "/bin/true"))
    p = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sipsca.service" not in p.stderr, p.stderr


def test_changelog_mentions_the_operations_work() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    head = text[: text.index("\n## ", text.index("## ") + 3)] if text.count("\n## ") > 1 else text
    for needle in ("docs/operations.md", "sipsca db migrate", "kill -9"):
        assert needle in head, needle
