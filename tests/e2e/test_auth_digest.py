"""Digest authentication end to end (beyond section 9): the emulator answers 401/407 with
MD5 or SHA-256 credentials; sipsca users come from ``sipsca user add``."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.phone import Phone
from helpers.server import SipscaProcess

AOR = "sip:1000@127.0.0.1"


@pytest.mark.parametrize("algorithms", [["SHA-256", "MD5"], ["MD5"]])
async def test_digest_register_subscribe_invite(tmp_path: Path, algorithms: list[str]) -> None:
    """REGISTER, SUBSCRIBE and INVITE are challenged; the right password gets through (the
    preferred algorithm of the challenge is used), a wrong one does not."""
    srv = SipscaProcess(tmp_path / "srv", {"auth": {"mode": "digest", "algorithms": algorithms}})
    srv.add_user("1000@127.0.0.1", "s3cret")
    srv.add_user("bob@127.0.0.1", "b0b")
    srv.start()
    try:
        async with (
            Phone("A", "1000", server=srv.sip_addr, credentials=("1000", "s3cret")) as a,
            Phone(
                "bob",
                "bob",
                server=srv.sip_addr,
                credentials=("bob", "b0b"),
                uas="answer",
                answer_delay=0.05,
            ) as bob,
            Phone("X", "1000", server=srv.sip_addr, credentials=("1000", "wrong")) as x,
        ):
            r = await a.register()
            assert r.status == 200, r
            assert (await bob.register()).status == 200
            sent = [m for m in a.received if getattr(m, "status", 0) in (401, 407)]
            assert sent, "REGISTER was not challenged"
            challenge = sent[0].headers.get("www-authenticate") or ""
            assert f"algorithm={algorithms[0]}" in challenge.replace('"', "")
            d, r = await a.subscribe("call-info", 3600, aor=AOR)
            assert r.status == 202, r
            await a.expect_notify("call-info", call_id=d.call_id)
            call = await a.invite("bob")
            assert call.final is not None and call.final.status == 200
            assert (await a.bye(call)).status == 200
            r = await x.register()
            assert r.status in (401, 403), r
    finally:
        srv.stop()
        srv.cleanup()
