"""AUTH route with ``[auth] mode = "digest"`` (RFC 3261 22, RFC 2617, RFC 8760).

Subscribers are created with the real CLI (``sipsca user add``). REGISTER is challenged
with 401/WWW-Authenticate, other requests from a local user with 407/Proxy-Authenticate;
both MD5 and SHA-256 are offered and accepted; a stale nonce gets ``stale=true``; a replayed
nonce-count is refused; a request neither from nor to a local user is ``403 Not relaying``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import ProxyServer, RawUdp, add_user, authorize, bindings, build_request, rand

from helpers.phone import Phone, parse_challenge

SERVER_CONFIG = {"auth": {"mode": "digest", "nonce_ttl": 300}}
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@pytest.fixture(scope="module", autouse=True)
def users(server: ProxyServer) -> None:
    for user, password in PASSWORDS.items():
        add_user(server, user, server.domain, password)


def register_request(
    udp: RawUdp,
    server: ProxyServer,
    user: str,
    *,
    to_user: str | None = None,
    cseq: int = 1,
    call_id: str | None = None,
) -> Any:
    to_aor = f"sip:{to_user or user}@{server.domain}"
    return build_request(
        "REGISTER",
        f"sip:{server.domain}",
        via=udp.via,
        from_=f"<sip:{user}@{server.domain}>;tag={rand(8)}",
        to=f"<{to_aor}>",
        call_id=call_id or f"reg-{rand(12)}",
        cseq=cseq,
        headers=[("Contact", f"<sip:{to_user or user}@127.0.0.1:{udp.port}>;expires=600")],
    )


async def roundtrip(udp: RawUdp, req: Any) -> Any:
    udp.messages.clear()
    udp.send(req)
    return await udp.response(req.call_id, method=req.method)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_register_challenge_then_success(server: ProxyServer, algorithm: str) -> None:
    """REGISTER without credentials: 401 with one WWW-Authenticate per algorithm (SHA-256
    first, then MD5), same nonce, ``qop="auth"``, realm = the domain. The answer computed
    with ``algorithm`` gets 200 and the binding exists."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "alice")
        r = await roundtrip(udp, req)
        assert r.status == 401, r
        assert r.headers.get_all("proxy-authenticate") == []
        chs = [parse_challenge(v) for v in r.headers.get_all("www-authenticate")]
        assert [c["algorithm"] for c in chs] == ["SHA-256", "MD5"]
        assert {c["realm"] for c in chs} == {server.domain}
        assert len({c["nonce"] for c in chs}) == 1
        assert all(c["qop"] == "auth" for c in chs)
        again = authorize(req, r, "alice", PASSWORDS["alice"], algorithm=algorithm)
        ok = await roundtrip(udp, again)
        assert ok.status == 200, ok
    rows = await bindings(server, f"sip:alice@{server.domain}")
    assert any(row["contact"] == f"sip:alice@127.0.0.1:{udp.port}" for row in rows)


async def test_wrong_password(server: ProxyServer) -> None:
    """A wrong password is challenged again (401, not stale) and binds nothing."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "carol")
        r = await roundtrip(udp, req)
        bad = authorize(req, r, "carol", "not-the-password")
        r2 = await roundtrip(udp, bad)
    assert r2.status == 401, r2
    assert all("stale" not in v.lower() for v in r2.headers.get_all("www-authenticate"))
    assert not any(
        row["contact"].endswith(f":{udp.port}")
        for row in await bindings(server, f"sip:carol@{server.domain}")
    )


async def test_unknown_user_is_challenged_again(server: ProxyServer) -> None:
    """Credentials of a user that does not exist: 401 again, nothing bound."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "mallory")
        r = await roundtrip(udp, req)
        r2 = await roundtrip(udp, authorize(req, r, "mallory", "whatever"))
    assert r2.status == 401, r2
    assert await bindings(server, f"sip:mallory@{server.domain}") == []


async def test_replayed_nonce_count(server: ProxyServer) -> None:
    """nc=1 accepted; the same nonce with nc=1 again (a replay) is refused with a new
    challenge; nc=2 on that nonce is accepted."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "bob", call_id=f"nc-{rand(10)}")
        ch = await roundtrip(udp, req)
        first = authorize(req, ch, "bob", PASSWORDS["bob"], nc=1, cnonce="c0ffee01")
        assert (await roundtrip(udp, first)).status == 200
        replay = authorize(first, ch, "bob", PASSWORDS["bob"], nc=1, cnonce="c0ffee01")
        r = await roundtrip(udp, replay)
        assert r.status == 401, r
        nxt = authorize(replay, ch, "bob", PASSWORDS["bob"], nc=2, cnonce="c0ffee01")
        assert (await roundtrip(udp, nxt)).status == 200


async def test_identity_mismatch(server: ProxyServer) -> None:
    """Alice authenticates correctly but registers Bob's AoR: ``403`` (identity mismatch)."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "alice", to_user="bob")
        ch = await roundtrip(udp, req)
        r = await roundtrip(udp, authorize(req, ch, "alice", PASSWORDS["alice"]))
    assert r.status == 403, r
    assert "mismatch" in r.reason.lower()


async def test_identity_compares_the_unescaped_user(server: ProxyServer) -> None:
    """RFC 3261 19.1.4: ``sip:%61lice@...`` is alice's AoR, as the registrar keys it: her
    credentials register it (it was 403 identity mismatch); ``ALICE`` is another user."""
    async with RawUdp(server.sip_addr) as udp:
        escaped = register_request(udp, server, "%61lice")
        ch = await roundtrip(udp, escaped)
        r = await roundtrip(udp, authorize(escaped, ch, "alice", PASSWORDS["alice"]))
        assert r.status == 200, r
        upper = register_request(udp, server, "ALICE")
        ch = await roundtrip(udp, upper)
        r = await roundtrip(udp, authorize(upper, ch, "alice", PASSWORDS["alice"]))
        assert r.status == 403, r


async def test_invite_407_then_success_credentials_stripped(
    server: ProxyServer, phones: Any
) -> None:
    """An INVITE from a local user gets 407 with Proxy-Authenticate (MD5 and SHA-256); the
    authenticated retry is forwarded to Bob without our Proxy-Authorization, while a
    credential for another realm is left in place (RFC 3261 22.3)."""
    bob: Phone = await phones(
        server, "bob", "bob", credentials=("bob", PASSWORDS["bob"]), uas="answer", answer_delay=0.05
    )
    assert (await bob.register()).status == 200
    foreign = (
        'Digest username="x", realm="elsewhere.example", nonce="n", uri="sip:x", '
        'response="0123456789abcdef0123456789abcdef"'
    )
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "INVITE",
            f"sip:bob@{server.domain}",
            via=udp.via,
            from_=f"<sip:alice@{server.domain}>;tag={rand(8)}",
            to=f"<sip:bob@{server.domain}>",
            headers=[
                ("Contact", f"<sip:alice@127.0.0.1:{udp.port}>"),
                ("Proxy-Authorization", foreign),
            ],
        )
        ch = await roundtrip(udp, req)
        assert ch.status == 407, ch
        algs = [parse_challenge(v)["algorithm"] for v in ch.headers.get_all("proxy-authenticate")]
        assert algs == ["SHA-256", "MD5"]
        udp.send(
            build_request(  # ACK for the 407 (hop-by-hop, same branch)
                "ACK",
                req.uri,
                via=req.headers.values("via")[0],
                from_=req.headers.get("from") or "",
                to=ch.headers.get("to") or "",
                call_id=req.call_id,
                cseq=1,
            )
        )
        again = authorize(req, ch, "alice", PASSWORDS["alice"], algorithm="MD5")
        again.headers.add("Proxy-Authorization", foreign)
        ok = await roundtrip(udp, again)
        assert ok.status == 200, ok
    inv = bob.incoming[0].invite
    assert inv.headers.get_all("proxy-authorization") == [foreign]
    assert inv.headers.get_all("authorization") == []


async def test_foreign_caller_to_local_user_not_challenged(
    server: ProxyServer, phones: Any
) -> None:
    """A call from another domain to a local user is not challenged (we cannot know its
    password) and reaches the callee."""
    carol: Phone = await phones(
        server, "carol", "carol", credentials=("carol", PASSWORDS["carol"]), uas=486
    )
    assert (await carol.register()).status == 200
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "INVITE",
            f"sip:carol@{server.domain}",
            via=udp.via,
            from_=f"<sip:someone@far.example>;tag={rand(8)}",
            to=f"<sip:carol@{server.domain}>",
            headers=[("Contact", f"<sip:someone@127.0.0.1:{udp.port}>")],
        )
        r = await roundtrip(udp, req)
    assert r.status == 486, r
    assert carol.incoming


async def test_not_relaying(server: ProxyServer) -> None:
    """Neither the caller nor the callee is local: ``403 Not relaying``."""
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "MESSAGE",
            "sip:someone@other.example",
            via=udp.via,
            from_=f"<sip:spammer@far.example>;tag={rand(8)}",
            to="<sip:someone@other.example>",
            body=b"hi",
            content_type="text/plain",
        )
        r = await roundtrip(udp, req)
    assert (r.status, r.reason) == (403, "Not relaying")


async def test_stale_nonce(make_server: Any) -> None:
    """``nonce_ttl = 1``: an answer to a 2 s old nonce gets 401 with ``stale=true`` (the
    password was right), and answering the fresh challenge succeeds."""
    srv = make_server({"auth": {"mode": "digest", "nonce_ttl": 1}})
    add_user(srv, "dave", srv.domain, "dave-pw")
    async with RawUdp(srv.sip_addr) as udp:
        req = register_request(udp, srv, "dave")
        ch = await roundtrip(udp, req)
        await asyncio.sleep(2.2)
        late = authorize(req, ch, "dave", "dave-pw")
        r = await roundtrip(udp, late)
        assert r.status == 401, r
        values = r.headers.get_all("www-authenticate")
        assert values and all("stale=true" in v.replace(" ", "").lower() for v in values)
        fresh = authorize(late, r, "dave", "dave-pw")
        assert (await roundtrip(udp, fresh)).status == 200


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="alice"',
        'Digest username="alice", realm="127.0.0.1", nonce="x", uri="sip:127.0.0.1", '
        'response="not-hex"',
        'Digest username="alice", realm="127.0.0.1", nonce="x", uri="sip:127.0.0.1", '
        'response="0123456789abcdef0123456789abcdef", qop=auth',
    ],
    ids=["missing-params", "response-not-hex", "qop-without-nc"],
)
async def test_malformed_credentials_400(server: ProxyServer, value: str) -> None:
    """A malformed Digest ``Authorization`` is a malformed request: ``400`` with a reason
    naming the header (not silence, not a 500), and the server keeps serving."""
    async with RawUdp(server.sip_addr) as udp:
        req = register_request(udp, server, "alice")
        req.headers.add("Authorization", value)
        r = await roundtrip(udp, req)
        assert r.status == 400, r
        assert "authorization" in r.reason.lower(), r.reason
        ok = register_request(udp, server, "alice")
        assert (await roundtrip(udp, ok)).status == 401
