"""Retrieval of a held *incoming* call (sca-behaviour.md 5.8 with decisions.md 2).

For a call the line answered, the remote party is stored by the caller's From URI. When
that URI is served here (a caller registered on this server) the retrieving INVITE must
reach the caller's phone: it used to be sent to the URI's host:port, which is this server
(the branch hashed the rewritten Request-URI, so the copy looked like a loop: 482) or, with
no port in the From, port 5060 of the host (nobody: timer B).
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.phone import Call, IncomingCall, Phone
from helpers.sca import Line, appearances, ci

AOR = "sip:1000@127.0.0.1"


async def held_incoming_call(
    line: Line, from_uri: str | None
) -> tuple[Phone, Phone, Call, IncomingCall]:
    """Carol (registered here; From ``from_uri``, else her AoR) calls the line, B answers
    and holds it on index 1. Returns (A, Carol, Carol's call, B's incoming call)."""
    a = await line.member("A", uas="ring")
    b = await line.member("B", uas="manual")
    carol = await line.callee("carol", "carol", uas="answer")
    call = await carol.invite(AOR, from_uri=from_uri, wait=False)
    inc_b = await b.wait_incoming()
    await b.answer(inc_b)
    assert (await carol.finish_invite(call)).status == 200
    await line.broadcast(lambda v: ci(1, "active") in v, strict=False)
    await line.settle()
    line.drain()
    held = await b.reinvite(inc_b, "sendonly", call_info=line.seize_ci % 1)
    assert held.status == 200, held
    await line.broadcast(lambda v: ci(1, "held") in v, strict=False)
    await line.settle()
    line.drain()
    return a, carol, call, inc_b


@pytest.mark.parametrize("from_port", [True, False], ids=["from-with-our-port", "from-no-port"])
async def test_retrieve_held_incoming_call_from_a_local_caller(
    make_line: Any, from_port: bool
) -> None:
    """Carol (registered here) calls the line; B answers and holds; A retrieves: the INVITE
    with ``Replaces`` naming Carol's call reaches Carol's phone, A gets her 200 and the
    group sees index 1 ``active`` again."""
    line: Line = await make_line()
    from_uri = f"sip:carol@127.0.0.1:{line.server.port}" if from_port else None
    a, carol, call, inc_b = await held_incoming_call(line, from_uri)

    calls_before = len(carol.incoming)
    retrieve = await a.invite(AOR, call_info=line.seize_ci % 1, timeout=8)
    assert retrieve.final is not None and retrieve.final.status == 200, retrieve.final
    assert len(carol.incoming) == calls_before + 1
    replacing = carol.incoming[-1].invite
    replaces = replacing.headers.get("replaces") or ""
    assert replaces.split(";")[0] == call.dialog.call_id, replaces
    params = dict(p.split("=", 1) for p in replaces.split(";")[1:])
    # RFC 3891 3: to-tag is the recipient's (Carol's) tag, from-tag the other end's (B's)
    assert params == {"to-tag": call.dialog.local_tag, "from-tag": inc_b.to_tag}, replaces
    assert replacing.uri.startswith("sip:carol@127.0.0.1:"), replacing.uri
    assert replacing.uri != f"sip:carol@127.0.0.1:{line.server.port}"  # her phone, not us
    await line.broadcast(lambda v: ci(1, "active") in v, strict=False)
    await line.settle()
    assert await appearances(line) == [(1, "active")]


async def test_retrieval_to_an_unregistered_local_caller_fails_and_rolls_back(
    make_line: Any,
) -> None:
    """The caller's From names a user served here who is not registered (a gateway's
    caller, a phone gone offline): the retrieval gets 404 at once and the call stays
    ``held`` for the group. Sent to its own address it spiralled, and its second pass
    through the call tracker replaced the first's record, so the group saw ``active``."""
    line: Line = await make_line()
    ghost = f"sip:dave@127.0.0.1:{line.server.port}"  # served here, nobody registered
    a, _, _, _ = await held_incoming_call(line, ghost)

    retrieve = await a.invite(AOR, call_info=line.seize_ci % 1, timeout=8)
    assert retrieve.final is not None and retrieve.final.status == 404, retrieve.final
    await line.broadcast(lambda v: ci(1, "held") in v, strict=False)
    await line.settle()
    assert await appearances(line) == [(1, "held")]
