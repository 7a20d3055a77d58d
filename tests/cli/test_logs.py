"""The log formats: JSON lines carry the fields of SCA state changes."""

from __future__ import annotations

import json
import logging

import pytest

from helpers.inprocess import json_logs


def test_json_lines_carry_the_state_change_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    with json_logs(monkeypatch) as stream:
        logging.getLogger("sipsca.sca.appearances").info(
            "appearance %s index %d", "sip:215@example.com", 2, extra={"sca": {"index": 2}}
        )
        logging.getLogger("sipsca.test").info("plain")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "appearance sip:215@example.com index 2"
    assert first["index"] == 2 and first["logger"] == "sipsca.sca.appearances"
    assert second["msg"] == "plain" and "index" not in second
