"""Every change of the registrar's binding table is logged: added, updated, removed and
expired at INFO, a plain refresh at DEBUG; JSON lines carry the binding's fields."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from helpers.inprocess import captured_app, json_logs
from sipsca.runtime.app import SipApplication
from sipsca.sip.address import Flow

PHONE = Flow("udp", "127.0.0.1", 5062)
MOVED = Flow("udp", "127.0.0.1", 5064)
AOR = "sip:alice@127.0.0.1"
CONTACT = "sip:alice@127.0.0.1:5062"
LOGGER = "sipsca.runtime.registration"


def register(cseq: int, expires: int, *, contact: str = f"<{CONTACT}>") -> bytes:
    return (
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKreg{cseq};rport\r\n"
        "From: <sip:alice@127.0.0.1>;tag=regtag\r\n"
        "To: <sip:alice@127.0.0.1>\r\n"
        "Call-ID: reg-call-1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: {contact}\r\n"
        f"Expires: {expires}\r\n"
        "Max-Forwards: 70\r\n"
        "User-Agent: test phone 1.0\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
async def app() -> AsyncIterator[SipApplication]:
    async with captured_app() as (application, _):
        yield application


def changes(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_binding_changes_are_logged(
    app: SipApplication, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app.on_bytes(register(1, 300), PHONE)
    app.on_bytes(register(2, 600), PHONE)
    app.on_bytes(register(3, 600), MOVED)
    app.on_bytes(register(4, 0), MOVED)
    assert changes(caplog) == [
        (logging.INFO, f"registration {AOR} contact {CONTACT} added expires=300 flow={PHONE}"),
        (logging.DEBUG, f"registration {AOR} contact {CONTACT} refreshed expires=600 flow={PHONE}"),
        (logging.INFO, f"registration {AOR} contact {CONTACT} updated expires=600 flow={MOVED}"),
        (logging.INFO, f"registration {AOR} contact {CONTACT} removed expires=0 flow={MOVED}"),
    ]
    assert not app.bindings


async def test_expiry_is_logged(app: SipApplication, caplog: pytest.LogCaptureFixture) -> None:
    app.on_bytes(register(1, 300), PHONE)
    caplog.set_level(logging.INFO, logger=LOGGER)
    app.router.registration.purge_bindings(app.clock.time() + 301)
    assert changes(caplog) == [
        (logging.INFO, f"registration {AOR} contact {CONTACT} expired expires=0 flow={PHONE}")
    ]
    assert not app.bindings


async def test_a_refresh_is_not_logged_at_info(
    app: SipApplication, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app.on_bytes(register(1, 300), PHONE)
    app.on_bytes(register(2, 300), PHONE)
    assert [m.split()[4] for _, m in changes(caplog)] == ["added"]


async def test_json_lines_carry_the_binding_fields(
    app: SipApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    with json_logs(monkeypatch) as stream:
        app.on_bytes(register(1, 300), PHONE)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [line for line in lines if line["logger"] == LOGGER]
    assert {k: line[k] for k in ("kind", "aor", "contact", "change", "expires", "flow")} == {
        "kind": "registration",
        "aor": AOR,
        "contact": CONTACT,
        "change": "added",
        "expires": 300,
        "flow": str(PHONE),
    }
    assert line["call_id"] == "reg-call-1" and line["user_agent"] == "test phone 1.0"
