"""Relaying without a transaction: the end-to-end ACK of a 2xx and stray 2xx responses.

An ACK for a 2xx is its own transaction end to end, so a proxy forwards it statelessly
(RFC 3261 16.11); a 2xx retransmission whose client transaction is gone (the call's
context was released, see :meth:`ProxyCore._release
<sipsca.runtime.forwarding.ProxyCore._release>`) is forwarded statelessly by its Vias
(16.7). Neither gets an answer from us, so whatever cannot go on is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import (
    compute_branch,
    needs_tls,
    next_hop,
    prepare_forward,
    secure_transport,
    strip_own_via,
)
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, SipResponse
from sipsca.sip.uri import SipUri
from sipsca.transaction import stateless_response_destination

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["forward_ack", "relay_stray_2xx"]


def forward_ack(app: SipApplication, request: SipRequest) -> None:
    """End-to-end ACK for a 2xx: forwarded without a transaction (RFC 3261 16.11)."""
    try:
        if request.max_forwards == 0:
            return  # nobody to answer 483 to: an ACK is dropped
        hop = next_hop(request)
        dest = app.resolver.resolve_now(hop)
    except RemoteProtocolError:
        return
    if dest is None:
        if app.resolver.must_query(hop):
            app.spawn(_resolve_and_send(app, request, hop))
        return
    _send_stateless(app, request, dest)


async def _resolve_and_send(app: SipApplication, request: SipRequest, hop: SipUri) -> None:
    dest = await app.resolver.resolve(hop)
    if dest is not None:
        _send_stateless(app, request, dest)


def _send_stateless(app: SipApplication, request: SipRequest, dest: Flow) -> None:
    if needs_tls(request) and not secure_transport(dest.transport):
        return  # a sips: ACK never leaves without TLS (RFC 5630 5.3); nobody to answer
    branch = compute_branch(request)
    out = prepare_forward(
        request,
        target=request.uri,
        via=app.router.addresses.via_value(dest, branch),
        record_route=[],
    )
    app.tl.send_stateless(out, destination=dest)


def relay_stray_2xx(app: SipApplication, response: SipResponse) -> None:
    """2xx retransmissions whose client transaction is gone: forward statelessly (16.7)."""
    if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
        return
    try:
        # Only a response whose top Via is ours goes on (RFC 4475 3.3.10 bcast): else
        # anyone could have us send a 2xx to the address in the next Via.
        if not strip_own_via(response, is_myself=app.router.is_myself):
            return
        # received/rport of the caller's Via (RFC 3581), as the server transaction did;
        # a Via nothing can be sent to (unknown transport, bad rport) drops the response
        dest = stateless_response_destination(response.top_via)
    except RemoteProtocolError:
        return
    app.sca.on_repeated_answer(response)
    app.tl.send_stateless(response, destination=dest)
