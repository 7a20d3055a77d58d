"""The log formats: JSON lines carry the fields of SCA state changes."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sipsca.cli import logs


def test_json_lines_carry_the_state_change_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.setup_logging("info", "json")
        logging.getLogger("sipsca.sca.appearances").info(
            "appearance %s index %d", "sip:215@example.com", 2, extra={"sca": {"index": 2}}
        )
        logging.getLogger("sipsca.test").info("plain")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "appearance sip:215@example.com index 2"
    assert first["index"] == 2 and first["logger"] == "sipsca.sca.appearances"
    assert second["msg"] == "plain" and "index" not in second
