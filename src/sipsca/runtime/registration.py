"""REGISTRAR and LOCATION of the pipeline: the bindings in memory, written back to storage.

:meth:`Registration.register` applies the registrar's decision (RFC 3261 10.3,
:func:`~sipsca.registrar.logic.decide_register`) to the AoR's bindings and queues the
write-back; :meth:`Registration.location` turns the live bindings into fork targets,
each with the flow its phone registered on when that flow can still reach it.

Every change of the binding table is logged (:func:`log_binding`): a contact ``added``,
``updated`` (registered again from another flow or Path), ``removed`` (Expires 0, a
wildcard, a newer RFC 5626 flow) or ``expired`` at INFO; a plain re-registration
(``refreshed``) at DEBUG, since every phone does it every few minutes.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import is_sips_uri, secure_transport, tls_capable_binding
from sipsca.registrar.logic import aor_of, decide_register, lookup_targets
from sipsca.registrar.model import Binding
from sipsca.runtime.branches import Target
from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.message import SipRequest
from sipsca.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from sipsca.runtime.routing import RequestRouter

__all__ = ["Registration", "log_binding"]

logger = logging.getLogger(__name__)


def log_binding(
    binding: Binding, change: str, *, now: float, flow: str = "", level: int = logging.INFO
) -> None:
    """One line per binding change, with its fields for JSON logs (``extra``, as the SCA
    state changes do). ``expires``: seconds the binding has left (0 once removed); ``flow``:
    where the change came from (the REGISTER's source; the binding's own for an expiry)."""
    if not logger.isEnabledFor(level):
        return  # not even the fields are built
    expires = 0 if change in ("removed", "expired") else max(0, round(binding.expires_at - now))
    flow = flow or binding.received or "-"
    logger.log(
        level,
        "registration %s contact %s %s expires=%d flow=%s",
        binding.aor,
        binding.contact,
        change,
        expires,
        flow,
        extra={
            "registration": {
                "kind": "registration",
                "aor": binding.aor,
                "contact": binding.contact,
                "change": change,
                "expires": expires,
                "flow": flow,
                "call_id": binding.call_id,
                "user_agent": binding.user_agent,
            }
        },
    )


def _change(old: Binding | None, new: Binding, now: float) -> tuple[str, int]:
    """How an upsert changes the table: (change, log level)."""
    if old is None or old.expires_at <= now:
        return "added", logging.INFO
    if old.received != new.received or old.path != new.path:
        return "updated", logging.INFO  # the phone moved (NAT rebinding, new connection)
    return "refreshed", logging.DEBUG


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
        now = app.clock.time()
        decision = decide_register(
            request,
            current,
            aor=aor,
            source=source,
            now=now,
            config=app.config.registrar,
            to_tag=secrets.token_hex(6),
        )
        table = app.bindings.setdefault(aor, {})
        flow = str(source)
        for binding in decision.upserts:
            change, level = _change(table.get(binding.contact), binding, now)
            table[binding.contact] = binding
            app.writeback.save_binding(binding)
            log_binding(binding, change, now=now, flow=flow, level=level)
        for b_aor, contact in decision.deletes:
            old = app.bindings.get(b_aor, {}).pop(contact, None)
            app.writeback.delete_binding((b_aor, contact))
            if old is not None and old.expires_at <= now:
                log_binding(old, "expired", now=now)
            elif old is not None:
                log_binding(old, "removed", now=now, flow=flow)
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
                    log_binding(binding, "expired", now=now)
            if not table:
                del self.app.bindings[aor]
