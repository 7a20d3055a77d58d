"""The built-in request pipeline: the seed's sample kamailio.cfg as code.

REQINIT -> CANCEL -> WITHINDLG -> AUTH -> SCA SUBSCRIBE -> SIPOUT -> REGISTRAR ->
LOCATION -> RELAY, with the same replies. SCA call tracking is built into RELAY and the
proxy's response handling, so there is nothing for an operator to forget.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from typing import TYPE_CHECKING

from sipsca.auth.digest import DigestAuthenticator
from sipsca.errors import RemoteProtocolError, StorageError
from sipsca.proxy.route import (
    is_myself_factory,
    is_sips_uri,
    needs_tls,
    preprocess_routes,
    secure_transport,
    sips_not_allowed_warning,
    sips_record_route,
    sips_required_warning,
    tls_capable_binding,
)
from sipsca.proxy.validate import check_request
from sipsca.registrar.logic import aor_of, decide_register, lookup_targets
from sipsca.runtime.persistence import SubscriberCache
from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.message import SipRequest, SipResponse, make_response, response_bytes
from sipsca.sip.uri import SipUri, parse_uri
from sipsca.sip.validate import validate_request
from sipsca.transaction import response_destination

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["RequestRouter", "Target"]

logger = logging.getLogger(__name__)

SCA_EVENTS = ("call-info", "line-seize")
SCA_METHODS = frozenset({"INVITE", "CANCEL", "BYE", "PRACK", "REFER"})
ALLOW = ", ".join(
    [
        *("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "SUBSCRIBE", "NOTIFY"),
        *("PRACK", "REFER", "UPDATE", "INFO", "MESSAGE"),
    ]
)
SUPPORTED = frozenset({"path", "outbound", "replaces"})


SHED_METHODS = frozenset(("INVITE", "SUBSCRIBE", "REGISTER", "MESSAGE", "PUBLISH", "REFER"))
"""Out-of-dialog requests that start new work: shed first under overload."""
OVERLOAD_RETRY_AFTER = 5
"""Seconds in the Retry-After of an overload 503."""
# In-dialog methods the stateful pipeline handles itself: the stray ACK is absorbed, CANCEL
# matched (481), SUBSCRIBE goes to the SCA engine; other in-dialog requests to us get 404.
_OWN_IN_DIALOG = frozenset(("ACK", "CANCEL", "SUBSCRIBE"))


def stateless_tag(request: SipRequest) -> str:
    """A To-tag that is the same for retransmissions of one request (as Kamailio's sl).

    Made from the raw Call-ID, From and top Via texts (a retransmission repeats them byte
    for byte), so nothing is parsed for it.
    """
    headers = request.headers
    seed = f"{headers.get('call-id')}|{headers.get('from')}|{headers.values('via')[:1]}"
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()


def _request_uri(contact: str) -> str:
    """A bound contact as Request-URI: escaped ``?headers`` dropped (RFC 3261 19.1.1 table:
    not allowed in a Request-URI; RFC 4475 3.3.14 keeps them in the binding only)."""
    if "?" not in contact:
        return contact
    try:
        uri = parse_uri(contact)
    except RemoteProtocolError:
        return contact
    return str(uri.without_headers()) if uri.headers else contact


class Target:
    """Where to fork a request: a URI and, for registered phones, the flow they came from."""

    __slots__ = ("flow", "path", "uri")

    def __init__(self, uri: str, flow: Flow | None = None, path: tuple[str, ...] = ()) -> None:
        self.uri = uri
        self.flow = flow
        self.path = path


class RequestRouter:
    """Decides what happens to every new request (server transaction)."""

    def __init__(self, app: SipApplication) -> None:
        self.app = app
        self._options_tail: str | None = None
        """The constant header lines of the stateless 200 to OPTIONS, built once."""
        cfg = app.config.auth
        self.auth: DigestAuthenticator | None = None
        if cfg.mode == "digest":
            secret = cfg.secret.encode() if cfg.secret else secrets.token_bytes(32)
            self.auth = DigestAuthenticator(
                secret=secret,
                nonce_ttl=cfg.nonce_ttl,
                algorithms=cfg.algorithms,
                entropy=os.urandom,
            )
        self.is_myself = is_myself_factory(())
        self.subscribers = SubscriberCache(app.storage, on_error=app.metrics.db_error)

    def configure(self) -> None:
        hosts = set(self.app.local_hosts)
        tls = self.app.transports.listener_for("tls")
        adv_host = self._advertised_host()
        if tls is not None and adv_host:
            # Our sips: Record-Route names the advertised host with the TLS listener's port
            # (sips_record_uri); an advertised "host:port" gives only that one port.
            hosts.add((adv_host.lower(), tls.port))
        self.is_myself = is_myself_factory(sorted(hosts, key=str))

    # ------------------------------------------------------------------ replies
    def reply(
        self,
        request: SipRequest,
        key: str | None,
        status: int,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(request, status, reason, to_tag=secrets.token_hex(6), extra=extra)
        self.send_reply(response, key)

    def send_reply(self, response: SipResponse, key: str | None) -> None:
        if self.app.config.server.user_agent and "server" not in response.headers:
            response.headers.add("Server", self.app.config.server.user_agent)
        self.app.tl.send_response(response, now=self.app.clock.monotonic(), key=key)

    # ------------------------------------------------------------------ addresses
    def local_hostport(self, transport: str) -> str:
        """``host:port`` of our Via and Record-Route on the side using ``transport``.

        ``advertised_address`` replaces the host; its port (if any) replaces the port of
        the UDP/TCP listeners only. A TLS listener keeps its own port (5061 beside 5060:
        one advertised port for every transport sent TLS peers to the UDP port), and a
        port is always written, so a listener off 5060 is never reached at the default.
        """
        listener = self.app.transports.listener_for(transport) or self.app.transports.listeners[0]
        host = f"[{listener.host}]" if ":" in listener.host else listener.host
        port = listener.port
        adv_host = self._advertised_host()
        if adv_host:
            host = adv_host
            adv_port = self._advertised_port()
            if adv_port is not None and listener.transport != "tls":
                port = adv_port
        return f"{host}:{port}"

    def _advertised_port(self) -> int | None:
        """The port of ``advertised_address``, or None when it names none."""
        adv = self.app.config.server.advertised_address.strip()
        rest = adv[adv.index("]") + 1 :] if adv.startswith("[") and "]" in adv else adv
        if rest.count(":") != 1:
            return None  # no port (or a bare IPv6 address, which config refuses anyway)
        number = rest.rpartition(":")[2]
        return int(number) if number.isdigit() else None

    def via_value(self, dest: Flow, branch: str) -> str:
        sent_by = self.local_hostport(dest.transport)
        return f"SIP/2.0/{dest.transport.upper()} {sent_by};branch={branch};rport"

    def record_route_uri(self, transport: str, *, sips: bool = False) -> str:
        """Our Record-Route value on the side using ``transport``; with ``sips`` (the
        request or branch needs TLS, :func:`~sipsca.proxy.route.needs_tls`) the
        ``sips:`` URI of the TLS listener whatever ``transport`` (RFC 3261 16.6 step 4)."""
        if sips:
            return self.sips_record_uri()
        params = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{self.local_hostport(transport)}{params};lr>"

    def _advertised_host(self) -> str:
        """The host part of ``advertised_address`` (brackets kept), or ""."""
        adv = self.app.config.server.advertised_address.strip()
        if adv.startswith("["):
            return adv[: adv.index("]") + 1] if "]" in adv else adv
        return adv.partition(":")[0]

    def tls_listener(self) -> bool:
        """Whether sipsca listens on TLS (so a ``sips:`` Record-Route can name it)."""
        return self.app.transports.listener_for("tls") is not None

    def sips_record_uri(self) -> str:
        """``<sips:host:port;lr>``: the advertised host (else the TLS listener's address)
        and the TLS listener's port, where the far end's in-dialog requests must come
        over TLS (:meth:`configure` makes it "myself")."""
        listener = self.app.transports.listener_for("tls")
        if listener is None:  # not reached: a SIPS request is refused 416 without TLS
            return f"<sips:{self.local_hostport('tls')};lr>"
        return sips_record_route(self._advertised_host() or listener.host, listener.port)

    def sips_warning(self, *, required: bool = False) -> str:
        """``380 host:port "SIPS Not Allowed"``, or with ``required`` ``381 ... "SIPS
        Required"`` (RFC 5630 5.3 and 9), we being the warn-agent."""
        agent = self.local_hostport("tls")
        return sips_required_warning(agent) if required else sips_not_allowed_warning(agent)

    def refuse_sips(self, request: SipRequest, key: str, *, required: bool = False) -> None:
        """480 + ``Warning: 380``: the SIPS target is reachable only without TLS; with
        ``required`` ``Warning: 381``: the target has only ``sips:`` contacts and we have
        no TLS (RFC 5630 5.3)."""
        self.reply(request, key, 480, None, [("Warning", self.sips_warning(required=required))])

    # ------------------------------------------------------------------ pipeline
    def answer_statelessly(self, request: SipRequest, source: Flow) -> bool:
        """OPTIONS to the server itself, and in-dialog requests for no dialog, are answered
        without a transaction (like Kamailio's sl): a retransmission just gets the same reply
        again, and no state is kept for 32 s per ping or per stray BYE."""
        if request.headers.get("to") is None:
            return False
        if request.method != "OPTIONS":
            return self._not_here(request, source)
        if "require" in request.headers:
            return False  # a 420 perhaps: the stateful path decides
        ruri = request.ruri
        if not ruri.is_sip or ruri.user or not self.is_myself(ruri) or request.to_tag is not None:
            return False
        if validate_request(request) is not None:
            return False
        if request.max_forwards == 0 or "proxy-require" in request.headers:
            return False  # REQINIT's 483 / 420 come first (stateful path)
        if self._options_tail is None:
            extra = [
                ("Allow", ALLOW),
                ("Accept", "application/sdp"),
                ("Allow-Events", "call-info, line-seize"),
                ("Supported", ", ".join(sorted(SUPPORTED))),
            ]
            if self.app.config.server.user_agent:
                extra.append(("Server", self.app.config.server.user_agent))
            self._options_tail = "".join(f"{name}: {value}\r\n" for name, value in extra)
        data = response_bytes(
            request, 200, "OK", to_tag=stateless_tag(request), tail=self._options_tail
        )
        self._send_stateless(data, "OPTIONS", 200, response_destination(request.top_via, source))
        return True

    def _not_here(self, request: SipRequest, source: Flow) -> bool:
        """The sample config's ``sl_send_reply("404", "Not here")``: an in-dialog request with
        no Route to follow belongs to no dialog we route (a BYE for a call that a 503 or a
        crash ended, say; or a To-tag added to get a request relayed unauthenticated).
        Anything else takes the stateful pipeline, which gives the same answer for the same
        request and rejects malformed ones."""
        if (
            request.method in _OWN_IN_DIALOG
            or "route" in request.headers
            or request.to_tag is None
            or self.app.tl.find_server_key(request) is not None
        ):
            return False
        if not request.ruri.is_sip:
            return False
        if validate_request(request) is not None or check_request(
            request, supported=SUPPORTED, is_myself=self.is_myself
        ):
            return False
        tail = ""
        if self.app.config.server.user_agent:
            tail = f"Server: {self.app.config.server.user_agent}\r\n"
        data = response_bytes(request, 404, "Not here", to_tag=None, tail=tail)
        self._send_stateless(
            data, request.method, 404, response_destination(request.top_via, source)
        )
        return True

    def _send_stateless(self, data: bytes, method: str, status: int, dest: Flow) -> None:
        """A stateless fast-path reply: straight to the transport, counted as sent."""
        self.app.metrics.message_out("response", method, status)
        self.app.transports.send(data, dest)

    def shed(self, request: SipRequest, source: Flow) -> bool:
        """Overloaded: answer a new dialog-creating request 503 + Retry-After, statelessly.

        Costs a fraction of serving it (no validation, no transaction, nothing kept), so the
        backlog drains and what is accepted completes in time. In-dialog requests, CANCEL,
        ACK, responses and retransmissions of requests already in a transaction go on.
        """
        if request.method not in SHED_METHODS or request.to_tag is not None:
            return False
        if self.app.tl.find_server_key(request) is not None:
            return False  # a retransmission: its transaction answers it
        data = response_bytes(
            request,
            503,
            "Service Unavailable",
            to_tag=stateless_tag(request),
            tail=f"Retry-After: {OVERLOAD_RETRY_AFTER}\r\n",
        )
        self.app.overload.shed += 1
        self.app.metrics.overload()
        self._send_stateless(
            data, request.method, 503, response_destination(request.top_via, source)
        )
        return True

    def on_request(self, request: SipRequest, source: Flow, key: str | None) -> None:
        app = self.app
        if key is None:  # ACK for a 2xx or a stray ACK: end-to-end, stateless
            self.on_ack(request, source)
            return
        problem = validate_request(request)
        if problem is not None and not self._sca_validates(request):
            self.reply(request, key, problem[0], problem[1])
            return
        rejection = check_request(request, supported=SUPPORTED, is_myself=self.is_myself)
        if rejection is not None:
            self.send_reply(rejection, key)
            return
        if request.method == "CANCEL":  # CancelReceived normally takes these
            self.reply(request, key, 481)
            return
        if request.to_tag is not None:
            self.in_dialog(request, source, key)
            return
        if self.auth is not None:
            ruri_local = self._ruri_ours(request)
            from_local = self._from_local(request)
            # SCA SUBSCRIBEs are always challenged: line membership is checked against
            # the authenticated user, never against a From anyone can write.
            if request.method == "REGISTER" or from_local or self._sca_validates(request):
                app.spawn(self._authenticate_then_route(request, source, key))
                return
            if not ruri_local:
                self.reply(request, key, 403, "Not relaying")
                return
        self.initial(request, source, key, identity=None)

    def _sca_validates(self, request: SipRequest) -> bool:
        """SCA SUBSCRIBEs to us are validated by the engine, with Kamailio's reason phrases."""
        if request.method != "SUBSCRIBE":
            return False
        try:
            return request.event in SCA_EVENTS and self.is_myself(request.ruri)
        except RemoteProtocolError:
            return False

    def _ruri_ours(self, request: SipRequest) -> bool:
        """The Request-URI names this server, or a line's alias (a DID, a ``tel:`` number)."""
        ruri = request.ruri
        if ruri.is_sip and self.is_myself(ruri):
            return True
        return self._alias_line(request) is not None

    def _alias_line(self, request: SipRequest) -> str | None:
        """The line whose alias the Request-URI is, unless it is a registered AoR itself."""
        ruri = request.ruri
        if ruri.is_sip and self.app.bindings.get(aor_of(ruri)):
            return None
        return self.app.sca.line_for_alias(request.uri)

    def _from_local(self, request: SipRequest) -> bool:
        try:
            uri = request.from_.uri
        except RemoteProtocolError:
            return False
        return uri.is_sip and self.is_myself(uri)

    async def _authenticate_then_route(self, request: SipRequest, source: Flow, key: str) -> None:
        assert self.auth is not None
        app = self.app
        proxy = request.method != "REGISTER"
        header_uri = request.to.uri if not proxy else request.from_.uri
        realm = app.config.auth.realm or header_uri.host.lower()
        now = app.clock.time()
        try:
            creds = self.auth.credentials(request, realm=realm, proxy=proxy)
        except RemoteProtocolError as exc:  # a malformed Digest value: answer, never hang
            app.metrics.auth_failure("invalid")
            self.reply(request, key, exc.status_hint or 400, exc.reason)
            return
        if creds is None:
            app.metrics.auth_failure("challenge")
            self.send_reply(
                self.auth.challenge(
                    request, realm=realm, now=now, proxy=proxy, to_tag=secrets.token_hex(6)
                ),
                key,
            )
            return
        try:
            subscriber = await self.subscribers.get(creds.username, realm)
        except StorageError as exc:  # cannot check the password: ask the phone to come back
            logger.warning("cannot authenticate %s@%s: %s", creds.username, realm, exc)
            app.metrics.auth_failure("db_unavailable")
            self.reply(request, key, 503, "Service Unavailable", [("Retry-After", "5")])
            return
        if app.tl.server_state(key) not in ("trying", "proceeding"):
            return  # answered meanwhile (a CANCEL got it its 487): nothing more to do
        result = self.auth.verify(request, creds, subscriber, now=app.clock.time())
        if not result.ok:
            app.metrics.auth_failure("stale" if result.stale else "invalid")
            logger.info(
                "authentication of %s@%s from %s failed: %s",
                creds.username,
                realm,
                source,
                result.reason,
            )
            self.send_reply(
                self.auth.challenge(
                    request,
                    realm=realm,
                    now=app.clock.time(),
                    proxy=proxy,
                    stale=result.stale,
                    to_tag=secrets.token_hex(6),
                ),
                key,
            )
            return
        if header_uri.user and header_uri.user != creds.username:
            self.reply(request, key, 403, "Forbidden - identity mismatch")
            return
        if proxy:
            self.auth.strip_credentials(request, realm=realm)
        identity = f"sip:{creds.username}@{realm}"
        if not (self._from_local(request) or self._ruri_ours(request)):
            self.reply(request, key, 403, "Not relaying")
            return
        self.initial(request, source, key, identity=identity)

    def initial(self, request: SipRequest, source: Flow, key: str, *, identity: str | None) -> None:
        """Requests without To-tag (new dialogs and standalone transactions)."""
        app = self.app
        method = request.method
        ruri = request.ruri
        if not ruri.is_sip and ruri.scheme != "tel":
            self.reply(request, key, 416)
            return
        local = ruri.is_sip and self.is_myself(ruri)
        request.headers.remove("route")  # preloaded routes are not honoured (sample config)
        if local and self._require_refused(request, key):
            return
        if method == "SUBSCRIBE" and local and request.event in SCA_EVENTS:
            self.handle_sca_subscribe(request, source, key, identity)
            return
        line = self._alias_line(request) if method != "REGISTER" else None
        if line is not None:
            ruri = parse_uri(line)  # a DID of a line: its members are called
            local = True
        if not local:
            if needs_tls(request) and not self.tls_listener():
                self.reply(request, key, 416)  # no TLS, so no sips: (decisions.md 35)
                return
            request.headers.add("P-hint", "outbound")
            target = Target(request.uri)
            app.proxy.relay(request, source, key, [target], sca=method in SCA_METHODS)
            return
        if method == "REGISTER":
            self.register(request, source, key)
            return
        if not ruri.user:
            if method == "OPTIONS":
                self.reply(
                    request,
                    key,
                    200,
                    None,
                    [
                        ("Allow", ALLOW),
                        ("Accept", "application/sdp"),
                        ("Allow-Events", "call-info, line-seize"),
                        ("Supported", ", ".join(sorted(SUPPORTED))),
                    ],
                )
                return
            self.reply(request, key, 484, "Address Incomplete")
            return
        secure = needs_tls(request)  # a sips: AoR: only its TLS bindings (RFC 5630 5.3)
        if secure and not self.tls_listener():
            self.reply(request, key, 416)
            return
        outcome = None
        if method in SCA_METHODS:
            outcome = app.sca.on_request(request, now=app.clock.time())
            if outcome.reject is not None:
                self.send_reply(outcome.reject, key)
                return
        if outcome is not None and outcome.retrieval_target:
            targets = [Target(outcome.retrieval_target)]
        else:
            targets = self.location(ruri, tls_only=secure)
            if not targets and self.location(ruri, every=True):
                # bound, but never over TLS: RFC 5630 5.3 forbids forwarding, 480 + 380; or
                # (a sip: target) only sips: contacts and no TLS here: 480 + 381
                self.refuse_sips(request, key, required=not secure)
                app.proxy.sca_local_failure(request, key, 480)
                return
            if not targets:
                status = app.config.proxy.unknown_user_status
                self.reply(request, key, status, "Not Found" if status == 404 else None)
                app.proxy.sca_local_failure(request, key, status)
                return
        member_call_info = outcome.member_call_info if outcome is not None else None
        app.proxy.relay(
            request,
            source,
            key,
            targets,
            sca=method in SCA_METHODS,
            member_call_info=member_call_info,
            sca_done=outcome is not None,
        )

    def in_dialog(self, request: SipRequest, source: Flow, key: str) -> None:
        """WITHINDLG of the sample config: loose routing, or our own in-dialog SUBSCRIBEs.

        Only a request with a route set is relayed (``loose_route()`` of the sample config):
        a To-tag alone is no dialog of ours, and relaying it would let anyone skip AUTH, so
        it gets the config's 404. A request whose route set ends at us (a phone that routes
        its refreshes via its outbound proxy) is ours to handle.
        """
        app = self.app
        routed = request.headers.get("route") is not None
        preprocess_routes(request, self.is_myself)
        ruri = request.ruri
        for_us = ruri.is_sip and self.is_myself(ruri) and not request.headers.get("route")
        if routed and not for_us:
            if needs_tls(request) and not self.tls_listener():
                self.reply(request, key, 416)
                return
            extra_rr = request.method == "NOTIFY"  # RFC 6665: record-route in-dialog NOTIFY
            app.proxy.relay(
                request,
                source,
                key,
                [Target(request.uri)],
                sca=request.method in SCA_METHODS,
                record_route=extra_rr,
            )
            return
        if request.method == "SUBSCRIBE" and for_us:
            self.handle_sca_subscribe(request, source, key, None)
            return
        self.reply(request, key, 404, "Not here")

    def on_ack(self, request: SipRequest, source: Flow) -> None:
        app = self.app
        to_tag = request.to_tag
        if to_tag is None:
            return  # stray ACK without dialog: absorbed
        if app.overload.shed and to_tag == stateless_tag(request):
            # The ACK for a stateless reply of ours (an overload 503, the only one an ACK
            # follows): it carries the INVITE's Call-ID, From and top Via, so the tag
            # recomputes (as Kamailio's sl). Never computed before anything was shed.
            return
        routed = request.headers.get("route") is not None
        preprocess_routes(request, self.is_myself)
        local = request.ruri.is_sip and self.is_myself(request.ruri)
        if not routed or (local and not request.headers.get("route")):
            return  # ACK for a reply we generated, or with no route set: absorbed
        app.sca.on_ack(request, now=app.clock.time())
        app.proxy.forward_stateless(request)

    def handle_sca_subscribe(
        self, request: SipRequest, source: Flow, key: str, identity: str | None
    ) -> None:
        app = self.app
        if identity is None and app.config.auth.mode == "none":
            try:
                identity = request.from_.uri.aor()
            except RemoteProtocolError:
                identity = None
        response = app.sca.handle_subscribe(
            request, now=app.clock.time(), flow=str(source), authenticated=identity
        )
        self.send_reply(response, key)

    # ------------------------------------------------------------------ registrar
    def _require_refused(self, request: SipRequest, key: str) -> bool:
        """RFC 3261 8.2.2.3, for what we answer ourselves (REGISTER, SCA SUBSCRIBE, OPTIONS,
        a local error): a Require option we do not support is a 420 listing it. A request
        we proxy is not ours to check (16.3: only Proxy-Require)."""
        unsupported = [
            tag
            for value in request.headers.values("require")
            if (tag := value.strip().lower()) and tag not in SUPPORTED
        ]
        if not unsupported:
            return False
        method = request.method
        ours = (
            method == "REGISTER"
            or (method == "SUBSCRIBE" and request.event in SCA_EVENTS)
            or not request.ruri.user
        )
        if not ours:
            return False  # to a user: relayed to the user's phones, which decide
        self.reply(request, key, 420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])
        return True

    def register(self, request: SipRequest, source: Flow, key: str) -> None:
        app = self.app
        to_uri = request.to.uri
        if to_uri.is_sip and not self.is_myself(to_uri):
            # 10.3 step 5: the AoR must belong to a domain of this registrar (a non-SIP
            # To is decide_register's 400)
            self.reply(request, key, 404, "Not Found - not a domain of this registrar")
            return
        aor = aor_of(to_uri)
        current = list(app.bindings.get(aor, {}).values())
        decision = decide_register(
            request,
            current,
            aor=aor,
            source=source,
            now=app.clock.time(),
            config=app.config.registrar,
            to_tag=secrets.token_hex(6),
        )
        table = app.bindings.setdefault(aor, {})
        for binding in decision.upserts:
            table[binding.contact] = binding
            app.writeback.save_binding(binding)
        for b_aor, contact in decision.deletes:
            app.bindings.get(b_aor, {}).pop(contact, None)
            app.writeback.delete_binding((b_aor, contact))
        if not table:
            app.bindings.pop(aor, None)
        self.send_reply(decision.response, key)

    def location(
        self, ruri: SipUri, *, tls_only: bool = False, every: bool = False
    ) -> list[Target]:
        """The AoR's live contacts; with ``tls_only`` (a ``sips:`` target) only those
        registered over TLS or as ``sips:`` (:func:`~sipsca.proxy.route.tls_capable_binding`).
        A ``sips:`` contact is never reached over the UDP/TCP flow it registered on, and
        not at all without a TLS listener (no TLS client), unless ``every`` (all of them)."""
        app = self.app
        aor = aor_of(ruri)
        bindings = lookup_targets(list(app.bindings.get(aor, {}).values()), now=app.clock.time())
        tls = every or self.tls_listener()
        targets = []
        for binding in bindings:
            if tls_only and not tls_capable_binding(binding.contact, binding.received):
                continue
            sips_contact = is_sips_uri(binding.contact)
            if sips_contact and not tls:
                continue
            flow = None
            if binding.received and not binding.path:
                try:
                    flow = parse_flow(binding.received)
                except RemoteProtocolError:
                    flow = None
                if flow is not None and flow.reliable and not app.transports.has_connection(flow):
                    # The phone's connection is gone (idle timeout, restart): a new one to
                    # its ephemeral source port reaches nobody; its Contact may listen.
                    flow = None
                if flow is not None and sips_contact and not secure_transport(flow.transport):
                    flow = None  # a sips: contact means TLS (RFC 5630): resolve the contact
            targets.append(Target(_request_uri(binding.contact), flow, binding.path))
        return targets

    def purge_bindings(self, now: float) -> None:
        for aor in list(self.app.bindings):
            table = self.app.bindings[aor]
            for contact, binding in list(table.items()):
                if binding.expires_at <= now:
                    del table[contact]
                    self.app.writeback.delete_binding((aor, contact))
            if not table:
                del self.app.bindings[aor]
