"""REGISTRAR and LOCATION of the pipeline: the bindings in memory, written back to storage.

:meth:`Registration.register` applies the registrar's decision (RFC 3261 10.3,
:func:`~sipsca.registrar.logic.decide_register`) to the AoR's bindings and queues the
write-back; :meth:`Registration.location` turns the live bindings into fork targets,
each with the flow its phone registered on when that flow can still reach it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import is_sips_uri, secure_transport, tls_capable_binding
from sipsca.registrar.logic import aor_of, decide_register, lookup_targets
from sipsca.runtime.branches import Target
from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.message import SipRequest
from sipsca.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from sipsca.runtime.routing import RequestRouter

__all__ = ["Registration"]


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


class Registration:
    """REGISTER handling, location look-up and expiry of the bindings (``app.bindings``)."""

    def __init__(self, router: RequestRouter) -> None:
        self.router = router
        self.app = router.app

    def register(self, request: SipRequest, source: Flow, key: str) -> None:
        app = self.app
        router = self.router
        to_uri = request.to.uri
        if to_uri.is_sip and not router.is_myself(to_uri):
            # 10.3 step 5: the AoR must belong to a domain of this registrar (a non-SIP
            # To is decide_register's 400)
            router.reply(request, key, 404, "Not Found - not a domain of this registrar")
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
        router.send_reply(decision.response, key)

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
        tls = every or self.router.addresses.tls_listener()
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
