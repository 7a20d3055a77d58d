"""The built-in request pipeline: the seed's sample kamailio.cfg as code.

REQINIT -> CANCEL -> WITHINDLG -> AUTH -> SCA SUBSCRIBE -> SIPOUT -> REGISTRAR ->
LOCATION -> RELAY, with the same replies. SCA call tracking is built into RELAY and the
proxy's response handling, so there is nothing for an operator to forget.

The steps that own state or I/O of their own live beside it: the stateless fast path
(:mod:`~sipsca.runtime.stateless_replies`), AUTH (:mod:`~sipsca.runtime.authentication`),
REGISTRAR and LOCATION (:mod:`~sipsca.runtime.registration`), and our own addresses
(:mod:`~sipsca.runtime.addressing`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import is_myself_factory, needs_tls, preprocess_routes
from sipsca.proxy.validate import check_request
from sipsca.registrar.logic import aor_of
from sipsca.runtime.addressing import LocalAddresses
from sipsca.runtime.authentication import Authentication
from sipsca.runtime.branches import Target
from sipsca.runtime.registration import Registration
from sipsca.runtime.stateless_relay import forward_ack
from sipsca.runtime.stateless_replies import ALLOW, SUPPORTED, StatelessReplies, stateless_tag
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.uri import parse_uri
from sipsca.sip.validate import validate_request

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["RequestRouter", "Target"]

SCA_EVENTS = ("call-info", "line-seize")
SCA_METHODS = frozenset({"INVITE", "CANCEL", "BYE", "PRACK", "REFER"})


class RequestRouter:
    """Decides what happens to every new request (server transaction)."""

    def __init__(self, app: SipApplication) -> None:
        self.app = app
        self.addresses = LocalAddresses(app)
        self.stateless = StatelessReplies(self)
        self.registration = Registration(self)
        self.auth: Authentication | None = None
        if app.config.auth.mode == "digest":
            self.auth = Authentication(self)
        self.is_myself = is_myself_factory(())

    def configure(self) -> None:
        hosts = set(self.app.local_hosts)
        tls = self.app.transports.listener_for("tls")
        adv_host = self.addresses.advertised_host()
        if tls is not None and adv_host:
            # Our sips: Record-Route names the advertised host with the TLS listener's port
            # (LocalAddresses.sips_record_uri); an advertised "host:port" gives only that
            # one port.
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

    def refuse_sips(self, request: SipRequest, key: str, *, required: bool = False) -> None:
        """480 + ``Warning: 380``: the SIPS target is reachable only without TLS; with
        ``required`` ``Warning: 381``: the target has only ``sips:`` contacts and we have
        no TLS (RFC 5630 5.3)."""
        warning = self.addresses.sips_warning(required=required)
        self.reply(request, key, 480, None, [("Warning", warning)])

    # ------------------------------------------------------------------ pipeline
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
            ruri_local = self.ruri_ours(request)
            from_local = self.from_local(request)
            # SCA SUBSCRIBEs are always challenged: line membership is checked against
            # the authenticated user, never against a From anyone can write.
            if request.method == "REGISTER" or from_local or self._sca_validates(request):
                app.spawn(self.auth.authenticate_then_route(request, source, key))
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

    def ruri_ours(self, request: SipRequest) -> bool:
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

    def retrieval_targets(self, uri: str) -> list[Target]:
        """Where a held-call retrieval goes (sca-behaviour.md 5.8): a remote party served
        here (the caller of a call the line answered is stored by its From URI) is found by
        the location service, as the spiral through the proxy would find it in Kamailio
        (none bound: no target, the caller is answered here and the retrieval rolled back);
        any other URI is the next hop as it is."""
        try:
            parsed = parse_uri(uri)
        except RemoteProtocolError:
            return [Target(uri)]
        if parsed.is_sip and parsed.user and self.is_myself(parsed):
            return self.registration.location(parsed, tls_only=parsed.scheme == "sips")
        return [Target(uri)]

    def from_local(self, request: SipRequest) -> bool:
        try:
            uri = request.from_.uri
        except RemoteProtocolError:
            return False
        return uri.is_sip and self.is_myself(uri)

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
            if needs_tls(request) and not self.addresses.tls_listener():
                self.reply(request, key, 416)  # no TLS, so no sips: (decisions.md 35)
                return
            request.headers.add("P-hint", "outbound")
            target = Target(request.uri)
            app.proxy.relay(request, source, key, [target], sca=method in SCA_METHODS)
            return
        if method == "REGISTER":
            self.registration.register(request, source, key)
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
        if secure and not self.addresses.tls_listener():
            self.reply(request, key, 416)
            return
        outcome = None
        if method in SCA_METHODS:
            outcome = app.sca.on_request(request, now=app.clock.time())
            if outcome.reject is not None:
                self.send_reply(outcome.reject, key)
                return
        if outcome is not None and outcome.retrieval_target:
            targets = self.retrieval_targets(outcome.retrieval_target)
        else:
            targets = self.registration.location(ruri, tls_only=secure)
            if not targets and self.registration.location(ruri, every=True):
                # bound, but never over TLS: RFC 5630 5.3 forbids forwarding, 480 + 380; or
                # (a sip: target) only sips: contacts and no TLS here: 480 + 381
                self.refuse_sips(request, key, required=not secure)
                app.proxy.sca_local_failure(request, key, 480)
                return
        if not targets:  # an unknown or offline user (or retrieval target served here)
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
            if needs_tls(request) and not self.addresses.tls_listener():
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
        forward_ack(app, request)

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

    # ------------------------------------------------------------------ registrar
