"""Digest authentication end to end (beyond section 9): the emulator answers 401/407 with
MD5 or SHA-256 credentials; sipsca users come from ``sipsca user add``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.phone import Dialog, Phone
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
            # the failure names its source (fail2ban and the like need it)
            assert re.search(
                r"authentication of 1000@127\.0\.0\.1 from udp:127\.0\.0\.1:\d+ failed",
                srv.log_text(),
            ), srv.log_text()[-2000:]
    finally:
        srv.stop()
        srv.cleanup()


def _forged(event: str) -> Dialog:
    """An out-of-dialog SUBSCRIBE dialog to the line whose From is in another domain."""
    return Dialog(
        call_id=f"forged-{event}",
        local_uri="sip:1000@evil.example",
        remote_uri=AOR,
        local_tag=f"f-{event}",
        remote_target=AOR,
        event=event,
        local_cseq=0,  # subscribe() counts up from here
    )


async def test_sca_subscribe_is_challenged_whatever_its_from(tmp_path: Path) -> None:
    """A SUBSCRIBE to a local line is challenged even when its From names another domain:
    line membership is checked against the authenticated user, not a From anyone writes
    (the sample config only challenges requests whose From is local)."""
    srv = SipscaProcess(
        tmp_path / "srv",
        {
            "auth": {"mode": "digest"},
            "sca": {"lines": [{"aor": AOR, "members": ["1000"]}]},
        },
    )
    srv.add_user("1000@127.0.0.1", "s3cret")
    srv.start()
    try:
        async with (
            Phone("forger", "1000", server=srv.sip_addr) as forger,
            Phone("member", "1000", server=srv.sip_addr, credentials=("1000", "s3cret")) as member,
        ):
            _, r = await forger.subscribe("call-info", 3600, aor=AOR, dialog=_forged("call-info"))
            assert r.status == 407, r
            _, r = await forger.subscribe(
                "line-seize",
                15,
                aor=AOR,
                call_info="<sip:x>;appearance-index=1",
                dialog=_forged("line-seize"),
            )
            assert r.status == 407, r
            assert srv.rpc("sca.subscription_count", "call-info") == ["0 call-info"]
            assert srv.rpc("sca.subscription_count", "line-seize") == ["0 line-seize"]
            d, r = await member.subscribe("call-info", 3600, aor=AOR)
            assert r.status == 202, r
            await member.expect_notify("call-info", call_id=d.call_id)
            assert srv.rpc("sca.subscription_count", "call-info") == ["1 call-info"]
    finally:
        srv.stop()
        srv.cleanup()
