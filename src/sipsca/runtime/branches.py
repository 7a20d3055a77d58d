"""A branch of a forwarded request: its target, where it goes, and the request sent on it.

The router picks the :class:`Target` s (a registered contact with its flow, a line's
members, the Request-URI of an outbound or in-dialog request); :func:`destination`
tells the flows to try for one (the registered flow, else the next hop resolved without
I/O when the resolver can), and :func:`branch_request` builds the copy sent on the
branch (RFC 3261 16.6: Request-URI, Via, Record-Route, Path). :class:`ProxyCore
<sipsca.runtime.forwarding.ProxyCore>` runs the branches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy.route import needs_tls, next_hop, prepare_forward
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest
from sipsca.sip.uri import SipUri

if TYPE_CHECKING:
    from sipsca.runtime.addressing import LocalAddresses
    from sipsca.runtime.resolver import Resolver

__all__ = ["Target", "branch_request", "destination"]


class Target:
    """Where to fork a request: a URI and, for registered phones, the flow they came from."""

    __slots__ = ("flow", "path", "uri")

    def __init__(self, uri: str, flow: Flow | None = None, path: tuple[str, ...] = ()) -> None:
        self.uri = uri
        self.flow = flow
        self.path = path


def destination(
    resolver: Resolver, request: SipRequest, target: Target
) -> tuple[tuple[Flow, ...], SipUri | None]:
    """Where a branch to ``target`` goes: (flows known now, in the order to try them;
    next-hop URI to resolve)."""
    if target.flow is not None:  # a registered flow is known
        return (target.flow,), None
    # the probe only tells the next hop (Route, Path or the target itself)
    probe = prepare_forward(
        request,
        target=target.uri,
        via="SIP/2.0/UDP 0.0.0.0;branch=x",
        record_route=[],
        path=target.path,
    )
    try:
        hop = next_hop(probe)
    except RemoteProtocolError:
        return (), None
    return resolver.targets_now(hop), hop


def branch_request(
    addresses: LocalAddresses,
    request: SipRequest,
    source: Flow,
    target: Target,
    dest: Flow,
    branch: str,
    *,
    sips: bool,
    record_route: bool,
    member_call_info: str | None,
) -> SipRequest:
    """The copy of ``request`` (received from ``source``) sent to ``dest`` on one branch.

    With ``record_route`` our Record-Route for the inbound side and, when the request
    leaves by another transport or scheme (``sips``: the branch needs TLS), the outbound
    one too (RFC 5658 double record-routing). ``member_call_info`` is the Call-Info an
    INVITE to a line's member carries (its appearance index).
    """
    rr: list[str] = []
    if record_route:
        inbound = addresses.record_route_uri(source.transport, sips=needs_tls(request))
        outbound = addresses.record_route_uri(dest.transport, sips=sips)
        rr = [inbound] if inbound == outbound else [outbound, inbound]
    out = prepare_forward(
        request,
        target=target.uri,
        via=addresses.via_value(dest, branch),
        record_route=rr,
        path=target.path,
    )
    if member_call_info and out.method == "INVITE":
        out.headers.add("Call-Info", member_call_info)
    return out
