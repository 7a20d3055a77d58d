"""Relaying to host names (RFC 3263): requests, the ACK of a 2xx and NOTIFYs whose next hop
is a name are resolved off the event loop, then sent.

The end-to-end tests use ``localhost`` with a port that is not the server's (so it is not
"myself"): getaddrinfo resolves it to 127.0.0.1 from the hosts file and, being a
``localhost`` name (RFC 6761), it is never asked of a name server. The in-process tests
replace the name server by a fake one, so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import dns.resolver
import dns.rrset
import pytest
from support import ProxyServer, RawUdp, build_request, rand

from sipsca.config import ServerConfig, SipscaConfig, TransactionConfig
from sipsca.runtime.app import SipApplication
from sipsca.runtime.resolver import Resolver
from sipsca.sip import SipResponse
from sipsca.storage.memory import MemoryStorage

SERVER_CONFIG: dict[str, Any] = {}


def _from(domain: str) -> str:
    return f"<sip:alice@{domain}>;tag={rand(8)}"


# ------------------------------------------------------------------------------ end to end
async def test_message_to_a_host_name_is_relayed(server: ProxyServer) -> None:
    """``sip:someone@localhost:PORT`` is another domain: the MESSAGE is relayed to the
    address the name resolves to, and the answer comes back (it was a 503 at once)."""
    async with RawUdp(("127.0.0.1", 9)) as far, RawUdp(server.sip_addr) as udp:
        ruri = f"sip:someone@localhost:{far.port}"
        req = build_request(
            "MESSAGE",
            ruri,
            via=udp.via,
            from_=_from(server.domain),
            to=f"<{ruri}>",
            body=b"hello",
            content_type="text/plain",
        )
        udp.send(req)
        got = await far.request("MESSAGE")
        assert got.uri == ruri  # the Request-URI is not rewritten
        assert got.top_via.port == server.port and got.body == b"hello"
        far.answer(got, 202, "Accepted", to=server.sip_addr)
        resp = await udp.response(req.call_id)
        assert resp.status == 202, resp


async def test_invite_and_its_ack_to_host_names(server: ProxyServer) -> None:
    """The INVITE goes to ``localhost:P1`` (resolved while the call waits); the callee
    answers with Contact ``localhost:P2``, a name not resolved yet: the end-to-end ACK,
    forwarded statelessly, is resolved too and reaches P2."""
    async with (
        RawUdp(server.sip_addr) as callee,
        RawUdp(server.sip_addr) as callee_contact,
        RawUdp(server.sip_addr) as udp,
    ):
        ruri = f"sip:bob@localhost:{callee.port}"
        from_ = _from(server.domain)
        invite = build_request(
            "INVITE",
            ruri,
            via=udp.via,
            from_=from_,
            to=f"<{ruri}>",
            headers=[("Contact", f"<sip:alice@127.0.0.1:{udp.port}>")],
        )
        udp.send(invite)
        got = await callee.request("INVITE")
        assert got.uri == ruri
        contact = f"sip:bob@localhost:{callee_contact.port}"
        callee.answer(got, 200, extra=[("Contact", f"<{contact}>")])
        ok = await udp.response(invite.call_id)
        assert ok.status == 200, ok
        route = list(reversed(ok.headers.values("record-route")))
        assert route, "the proxy record-routes the INVITE"
        ack = build_request(
            "ACK",
            contact,
            via=udp.via,
            from_=from_,
            to=ok.headers.get("to") or "",
            call_id=invite.call_id,
            cseq=1,
            headers=[("Route", value) for value in route],
        )
        udp.send(ack)
        acked = await callee_contact.request("ACK", call_id=invite.call_id)
        assert acked.uri == contact


async def test_notify_to_a_host_name_contact(server: ProxyServer) -> None:
    """A subscriber whose Contact is ``sip:x@localhost:PORT`` gets its NOTIFY there (it was
    dropped as "cannot resolve")."""
    async with RawUdp(server.sip_addr) as udp:
        aor = f"sip:line-{rand(6)}@{server.domain}"
        req = build_request(
            "SUBSCRIBE",
            aor,
            via=udp.via,
            from_=f"<{aor}>;tag={rand(8)}",
            to=f"<{aor}>",
            headers=[
                ("Event", "call-info"),
                ("Expires", "60"),
                ("Contact", f"<sip:x@localhost:{udp.port}>"),
            ],
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
        assert resp.status in (200, 202), resp
        notify = await udp.request("NOTIFY", call_id=req.call_id)
        assert notify.uri == f"sip:x@localhost:{udp.port}"
        udp.answer(notify, 200, to_tag=notify.to_tag)


# ------------------------------------------------------------------------------ in process
class GatedDns:
    """A name server whose answers wait for ``release`` (a slow DNS), from a zone dict."""

    def __init__(self, zone: dict[tuple[str, str], list[str]]) -> None:
        self.zone = zone
        self.release = threading.Event()
        self.queries: list[tuple[str, str]] = []

    async def asked(self) -> None:
        """Wait (bounded) until a query has reached the name server."""
        for _ in range(500):
            if self.queries:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no DNS query was made")

    def resolve(
        self, qname: str, rdtype: str, *, lifetime: float | None = None, search: bool | None = None
    ) -> Any:
        self.queries.append((qname, rdtype))
        assert self.release.wait(10.0), "the test never released the name server"
        records = self.zone.get((qname, rdtype))
        if records is None:
            raise dns.resolver.NXDOMAIN()
        return SimpleNamespace(rrset=dns.rrset.from_text(qname, 60, "IN", rdtype, *records))


def _no_hosts(host: str, *args: Any, **kwargs: Any) -> list[Any]:
    raise OSError(f"{host}: not in the hosts file")


@contextlib.asynccontextmanager
async def _app_with_dns(timer_c: float = 185.0) -> AsyncIterator[tuple[SipApplication, GatedDns]]:
    """A SipApplication on UDP 127.0.0.1 whose resolver asks a :class:`GatedDns`."""
    storage = MemoryStorage()
    await storage.open()
    config = SipscaConfig(
        server=ServerConfig(domains=("127.0.0.1",)),
        transaction=TransactionConfig(t1=0.05, t2=4.0, t4=5.0, timer_c=timer_c),
    )
    application = SipApplication(config, storage)
    fake = GatedDns({("slow.example.", "A"): ["127.0.0.1"]})
    application.resolver = Resolver(dns_client=fake, getaddrinfo=_no_hosts)
    await application.start(("udp:127.0.0.1:0",))
    try:
        yield application, fake
    finally:
        fake.release.set()
        await application.stop()
        await storage.close()


@pytest.fixture
async def app_and_dns() -> AsyncIterator[tuple[SipApplication, GatedDns]]:
    async with _app_with_dns() as pair:
        yield pair


def _server(app: SipApplication) -> tuple[str, int]:
    return ("127.0.0.1", app.transports.listeners[0].port)


async def test_cancel_while_dns_is_pending_gets_487_and_nothing_is_sent(
    app_and_dns: tuple[SipApplication, GatedDns],
) -> None:
    """The INVITE waits for DNS (100 Trying sent); a CANCEL then answers it 487 at once,
    and when DNS answers later nothing is forked."""
    app, fake = app_and_dns
    async with RawUdp(("127.0.0.1", 9)) as far, RawUdp(_server(app)) as udp:
        ruri = f"sip:bob@slow.example:{far.port}"
        via = udp.via
        from_ = _from("127.0.0.1")
        invite = build_request("INVITE", ruri, via=via, from_=from_, to=f"<{ruri}>")
        udp.send(invite)
        trying = await udp.response(invite.call_id, final=False)
        assert trying.status == 100
        await fake.asked()  # the look-up is running (and waits)
        cancel = build_request(
            "CANCEL", ruri, via=via, from_=from_, to=f"<{ruri}>", call_id=invite.call_id
        )
        udp.send(cancel)
        final = await udp.response(invite.call_id, method="INVITE")
        assert final.status == 487, final
        ok = await udp.response(invite.call_id, method="CANCEL")
        assert ok.status == 200
        assert fake.queries == [("slow.example.", "A")]
        fake.release.set()
        assert await far.silence(0.5) == []
        assert app.proxy.forwarded == {}


async def test_invite_waits_for_dns_then_is_forked(
    app_and_dns: tuple[SipApplication, GatedDns],
) -> None:
    app, fake = app_and_dns
    async with RawUdp(_server(app)) as far, RawUdp(_server(app)) as udp:
        ruri = f"sip:bob@slow.example:{far.port}"
        invite = build_request(
            "INVITE", ruri, via=udp.via, from_=_from("127.0.0.1"), to=f"<{ruri}>"
        )
        udp.send(invite)
        assert (await udp.response(invite.call_id, final=False)).status == 100
        assert await far.silence(0.2) == []
        fake.release.set()
        got = await far.request("INVITE")
        assert got.uri == ruri
        far.answer(got, 486)
        final = await udp.response(invite.call_id)
        assert final.status == 486, final
        # the answer is cached: the next request to the name takes the fast path
        assert app.resolver.resolve_now(got.ruri) is not None


async def test_a_name_dns_does_not_know_gets_503_and_is_remembered(
    app_and_dns: tuple[SipApplication, GatedDns],
) -> None:
    app, fake = app_and_dns
    fake.release.set()
    async with RawUdp(_server(app)) as udp:
        statuses = []
        for _ in range(2):
            req = build_request(
                "MESSAGE",
                "sip:bob@nowhere.invalid:5099",
                via=udp.via,
                from_=_from("127.0.0.1"),
                to="<sip:bob@nowhere.invalid>",
            )
            udp.send(req)
            resp = await udp.response(req.call_id)
            assert isinstance(resp, SipResponse)
            statuses.append(resp.status)
    assert statuses == [503, 503]
    # NXDOMAIN: no AAAA asked for a name that does not exist; the second MESSAGE failed
    # from the cache, without a query
    assert fake.queries == [("nowhere.invalid.", "A")]


async def test_timer_c_while_dns_is_pending_gives_408() -> None:
    """DNS slower than timer C: the INVITE gets 408 like a branch that never answered, and
    nothing is forked when DNS answers at last."""
    async with (
        _app_with_dns(timer_c=0.5) as (app, fake),
        RawUdp(("127.0.0.1", 9)) as far,
        RawUdp(_server(app)) as udp,
    ):
        ruri = f"sip:bob@slow.example:{far.port}"
        invite = build_request(
            "INVITE", ruri, via=udp.via, from_=_from("127.0.0.1"), to=f"<{ruri}>"
        )
        udp.send(invite)
        final = await udp.response(invite.call_id)
        assert final.status == 408, final
        fake.release.set()
        assert await far.silence(0.5) == []
        assert app.proxy.forwarded == {}
