"""Routing of proxied requests and responses (RFC 3261 16.4, 16.6, 16.7 step 3, 9.1).

Everything here edits or builds messages and never does I/O: the runtime resolves the
URI returned by :func:`next_hop` (RFC 3263) and sends the message.

Request path, in the order the runtime calls it::

    check_request()          16.3  (sipsca.proxy.validate)
    preprocess_routes()      16.4  loose_route(): strict-router repair, pop our Route(s)
    compute_branch()         16.6 step 8, on the request *as received*
    prepare_forward()        16.6 steps 1-6 and 8 for one target
    next_hop()               16.6 step 7

SIPS (RFC 3261 16.6 step 4 and 26.2.2, RFC 5630): :func:`needs_tls` and
:func:`branch_needs_tls` tell whether a request or one of its branches may only travel
over TLS (and record-routes with a ``sips:`` URI), :func:`secure_transport` whether a
flow qualifies, :func:`tls_capable_binding` which registered contacts may take a request
for a SIPS target, and :func:`sips_not_allowed_warning` / :func:`sips_required_warning`
the ``Warning`` of the ``480`` that refuses one.

Response path: :func:`strip_own_via` (16.7 step 3), then
:meth:`sipsca.proxy.context.ResponseContext.on_response`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from sipsca.errors import LocalProtocolError, RemoteProtocolError
from sipsca.proxy._hashing import MAGIC_COOKIE, loop_hash
from sipsca.sip.address import parse_flow
from sipsca.sip.fields import Via, parse_name_addr
from sipsca.sip.headers import Headers
from sipsca.sip.message import SipRequest, SipResponse
from sipsca.sip.uri import SipUri, parse_uri, uri_equal

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "SECURE_TRANSPORTS",
    "SIPS_NOT_ALLOWED",
    "SIPS_REQUIRED",
    "branch_needs_tls",
    "build_via",
    "compute_branch",
    "is_myself_factory",
    "is_sips_uri",
    "make_cancel",
    "needs_tls",
    "next_hop",
    "preprocess_routes",
    "prepare_forward",
    "record_route_values",
    "secure_transport",
    "sips_not_allowed_warning",
    "sips_record_route",
    "sips_required_warning",
    "strip_own_via",
    "tls_capable_binding",
    "via_is_mine",
]

DEFAULT_MAX_FORWARDS = 70
"""RFC 3261 16.6 step 3 / 8.1.1.6: the value a request without Max-Forwards gets."""

# Key under which prepare_forward() remembers, on the copy it returns, that it applied the
# strict-router rewrite (16.6 step 6), so next_hop() picks the Request-URI. The entry is
# keyed to the Request-URI string object the way SipMessage caches the parsed R-URI: if
# anybody changes ``request.uri`` afterwards the mark is void.
_STRICT_MARK = "_proxy_strict_route"


# --------------------------------------------------------------------------- myself
def _normal_host(host: str) -> str:
    """Lower-case host, brackets and trailing dot removed, IPv6 in compressed form."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            return text
    return text


def _default_port(uri: SipUri) -> int:
    """RFC 3261 19.1.2: 5061 for sips: and transport=tls, 5060 otherwise."""
    transport = (uri.param("transport") or "").lower()
    return 5061 if uri.scheme == "sips" or transport in ("tls", "wss") else 5060


def is_myself_factory(hosts: Iterable[tuple[str, int | None]]) -> Callable[[SipUri], bool]:
    """Build the ``myself`` test of Kamailio's ``uri == myself`` for the given hosts.

    Args:
        hosts: ``(host, port)`` pairs: listen addresses, the advertised address and served
            domains. ``port`` None means "no port written": such an entry matches a URI
            without a port or with one of the default ports 5060/5061 (a domain alias).
            An entry with a port matches that port, and a URI without a port when the
            entry's port is the URI's default one (RFC 3261 19.1.2).

    Returns:
        A predicate on parsed URIs; non-SIP URIs (tel:, opaque) are never "myself".
        Hosts compare case-insensitively; IPv6 addresses compare as addresses.
    """
    table: dict[str, set[int | None]] = {}
    for host, port in hosts:
        table.setdefault(_normal_host(host), set()).add(port)

    def is_myself(uri: SipUri) -> bool:
        if not uri.is_sip:
            return False
        ports = table.get(_normal_host(uri.host))
        if not ports:
            return False
        if uri.port is None:
            return None in ports or _default_port(uri) in ports
        return uri.port in ports or (None in ports and uri.port in (5060, 5061))

    return is_myself


def via_is_mine(via: Via, is_myself: Callable[[SipUri], bool]) -> bool:
    """Whether ``via``'s sent-by names this proxy (its host and port are "myself").

    The transport is carried over so a portless TLS sent-by means 5061 (RFC 3261 18.2.2).
    """
    params: tuple[tuple[str, str | None], ...] = (("transport", via.transport.lower()),)
    return is_myself(SipUri(scheme="sip", host=via.host, port=via.port, params=params))


# --------------------------------------------------------------------------- Via / branch
def compute_branch(request: SipRequest, index: int = 0) -> str:
    """The branch of the Via this proxy adds when forwarding ``request`` (16.6 step 8).

    ``z9hG4bK`` + a hash of the fields that stay the same when the request loops back
    (see :func:`sipsca.proxy._hashing.loop_hash`) + ``.`` + ``index``; the index keeps the
    branches of a fork distinct (Kamailio builds its branches the same way).
    :func:`sipsca.proxy.validate.check_request` recomputes the hash to tell a loop
    (482) from a spiral, which only works when the runtime uses these branches.

    Args:
        request: the request as received (call before :func:`prepare_forward`; after
            :func:`preprocess_routes` is fine, Route headers are not hashed).
        index: the branch number within this server transaction (0, 1, ...).

    Raises:
        RemoteProtocolError: Via, To, From or CSeq is malformed.
    """
    return f"{MAGIC_COOKIE}{loop_hash(request, request.top_via)}.{index}"


def build_via(
    *, transport: str, host: str, port: int | None, branch: str, rport: bool = True
) -> str:
    """The Via value this proxy prepends (RFC 3261 16.6 step 8, RFC 3581 3 ``rport``).

    Args:
        transport: ``udp``, ``tcp``, ``tls``... (written upper-case).
        host: our address or name as reachable by the next hop (IPv6 bracketed or not).
        port: our port; None omits it (the transport default).
        branch: from :func:`compute_branch`.
        rport: add an empty ``rport`` so responses come back to the source port.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    sent_by = host if port is None else f"{host}:{port}"
    return f"SIP/2.0/{transport.upper()} {sent_by};branch={branch}" + (";rport" if rport else "")


# --------------------------------------------------------------------------- 16.4
def _route_uri(value: str) -> SipUri:
    return parse_name_addr(value, "Route").uri


def preprocess_routes(request: SipRequest, is_myself: Callable[[SipUri], bool]) -> bool:
    """RFC 3261 16.4 route information preprocessing (Kamailio ``loose_route()``).

    1. Strict-router repair: when the Request-URI is a Record-Route value we inserted
       (ours, no user part, ``lr``), the previous hop was an RFC 2543 strict router that
       moved it there; "the proxy MUST replace the Request-URI in the request with the
       last value from the Route header field, and remove that value".
    2. "If the first value in the Route header field indicates this proxy, the proxy
       MUST remove that value from the request." When the next one is ours too but a
       *different* URI, it is the second half of a double Record-Route (RFC 5658: we
       record-routed on two interfaces) and is removed as well. An identical second
       value means the request spiralled through us twice, so it stays.

    The request is edited in place; Route values stay in order, but the remaining
    Route values of an edited field may be re-joined into one field line.

    Args:
        request: the received request.
        is_myself: from :func:`is_myself_factory`.

    Returns:
        True when a Route value (or the Request-URI) of ours was consumed: the request
        follows a route set (in-dialog, or pre-loaded by a previous hop).

    Raises:
        RemoteProtocolError: the Request-URI or a Route value it reads is malformed.
    """
    consumed = False
    ruri = request.ruri
    routes = request.headers.values("route")
    if routes and ruri.is_sip and not ruri.user and ruri.has_param("lr") and is_myself(ruri):
        request.uri = parse_name_addr(routes[-1], "Route").uri_text
        _set_values(request.headers, "Route", routes[:-1])
        consumed = True
        routes = routes[:-1]
    if routes:
        first = _route_uri(routes[0])
        if first.is_sip and is_myself(first):
            request.headers.pop_first_value("route")
            consumed = True
            if len(routes) > 1:
                second = _route_uri(routes[1])
                if second.is_sip and is_myself(second) and not uri_equal(first, second):
                    request.headers.pop_first_value("route")
    return consumed


def _set_values(headers: Headers, name: str, values: Sequence[str]) -> None:
    if values:
        headers.set(name, ", ".join(values))
    else:
        headers.remove(name)


# --------------------------------------------------------------------------- 16.6
def _rr_uri(text: str) -> SipUri:
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1].strip()
    if raw.lower().startswith(("sip:", "sips:")):
        uri = parse_uri(raw)
    else:
        flow = parse_flow(raw)
        host = f"[{flow.host}]" if ":" in flow.host else flow.host
        uri = SipUri(
            scheme="sip", host=host, port=flow.port, params=(("transport", flow.transport),)
        )
    return uri if uri.has_param("lr") else uri.with_params(lr=None)


def record_route_values(*, local_uri_in: str, local_uri_out: str | None = None) -> list[str]:
    """The Record-Route value(s) this proxy inserts (RFC 3261 16.6 step 4, RFC 5658).

    Each address is a SIP URI (``sip:10.0.0.10:5060;transport=tcp``, ``<...>`` allowed)
    or a flow/listen string ``tcp:10.0.0.10:5060``; ``lr`` is added when missing
    (we are a loose router, RFC 3261 16.6 step 4 "MUST ... lr").

    RFC 5658 section 4 double record-routing: when the request leaves on another
    interface or transport than it came in on, two values are inserted, the *outbound*
    interface first (the side the callee sends its in-dialog requests to) and the
    inbound one second (the caller's side; the caller reverses the route set).
    :func:`preprocess_routes` later removes both.

    Args:
        local_uri_in: our address on the interface the request arrived on.
        local_uri_out: our address on the interface the request leaves on; None or
            the same URI gives one value.

    Returns:
        ``["<sip:host:port;transport=x;lr>"]`` or ``[out, in]``, to pass as
        ``record_route`` to :func:`prepare_forward` (which prepends them in this order).

    Raises:
        RemoteProtocolError: an address is neither a SIP URI nor a flow.
    """
    inbound = _rr_uri(local_uri_in)
    if local_uri_out is None:
        return [f"<{inbound}>"]
    outbound = _rr_uri(local_uri_out)
    if uri_equal(inbound, outbound):
        return [f"<{inbound}>"]
    return [f"<{outbound}>", f"<{inbound}>"]


def _bracketed(value: str) -> str:
    text = value.strip()
    return text if "<" in text else f"<{text}>"


def prepare_forward(
    request: SipRequest,
    *,
    target: str,
    via: str,
    record_route: Sequence[str],
    path: Sequence[str] = (),
) -> SipRequest:
    """Build the request to send to one target (RFC 3261 16.6 steps 1-6 and 8).

    1. Copy the request; every header and the body are kept byte for byte except
       the ones listed here (``request`` itself is not changed).
    2. Request-URI := ``target``.
    3. Max-Forwards decremented, or set to 70 when absent.
    4. ``record_route`` values prepended to Record-Route, in the given order (the caller
       passes ``[]`` for methods it does not record-route, e.g. all but INVITE and
       SUBSCRIBE in the sample configuration).
    5. ``path`` values (the binding's Path, RFC 3327 5.3) prepended to Route, in order,
       so the request first visits the edge proxies the REGISTER came through.
    6. If the first Route value lacks ``lr`` (a strict router), the Request-URI is
       appended as the last Route value and the first Route value becomes the
       Request-URI (16.6 step 6); :func:`next_hop` then answers the Request-URI.
    8. ``via`` prepended (our Via, branch included; see :func:`build_via`).

    Content-Length is fixed when the message is serialised (16.6 step 9).

    Args:
        request: the received request (after :func:`preprocess_routes`).
        target: the Request-URI for this branch (a binding's contact, or the received
            Request-URI for in-dialog requests).
        via: the complete Via value this proxy adds.
        record_route: values from :func:`record_route_values`, or ``[]``.
        path: Path values stored with the target binding.

    Returns:
        The copy to send; call :func:`next_hop` on it to learn where.

    Raises:
        LocalProtocolError: Max-Forwards is 0 (check_request answers 483 first).
        RemoteProtocolError: Max-Forwards or a Route value is malformed.
    """
    fwd = request.copy()
    fwd.uri = target
    max_forwards = fwd.max_forwards
    if max_forwards is None:
        fwd.headers.set("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
    elif max_forwards == 0:
        raise LocalProtocolError(
            "Max-Forwards is 0: the request must be answered 483, not forwarded"
        )
    else:
        fwd.headers.set("Max-Forwards", str(max_forwards - 1))
    for value in reversed(record_route):
        fwd.headers.prepend("Record-Route", _bracketed(value))
    for value in reversed(path):
        fwd.headers.prepend("Route", _bracketed(value))
    routes = fwd.headers.values("route")
    if routes:
        first = parse_name_addr(routes[0], "Route")
        if not first.uri.has_param("lr"):
            old_ruri = fwd.uri
            fwd.headers.pop_first_value("route")
            if "route" in fwd.headers:
                fwd.headers.insert_after("route", "Route", f"<{old_ruri}>")
            else:
                fwd.headers.add("Route", f"<{old_ruri}>")
            fwd.uri = first.uri_text
            fwd._cache[_STRICT_MARK] = (fwd.uri, True)
    fwd.headers.prepend("Via", via)
    return fwd


def next_hop(request: SipRequest) -> SipUri:
    """The URI whose address the request is sent to (RFC 3261 16.6 step 7).

    The request as returned by :func:`prepare_forward`: after a strict-router rewrite
    (16.6 step 6) the Request-URI; otherwise the first Route value, else the
    Request-URI. On a request that did not pass through :func:`prepare_forward` the first
    Route value is the answer even without ``lr`` (that strict router is the next hop).
    Resolving the URI (RFC 3263: maddr, transport, port, SRV) is the runtime's job.

    Raises:
        RemoteProtocolError: the chosen URI is malformed.
    """
    mark = request._cache.get(_STRICT_MARK)
    if mark is not None and mark[0] is request.uri:
        return request.ruri
    routes = request.headers.values("route")
    if routes:
        return _route_uri(routes[0])
    return request.ruri


# --------------------------------------------------------------------------- SIPS
SECURE_TRANSPORTS = frozenset({"tls", "wss"})
"""Transports a request for a SIPS URI may take (RFC 5630 4: TLS on every hop; RFC 7118
5.2: ``wss`` is TLS too)."""

SIPS_NOT_ALLOWED = 380
"""RFC 5630 9 warn-code: the target cannot be reached over TLS (sent with a 480)."""

SIPS_REQUIRED = 381
"""RFC 5630 9 warn-code: the target can only be reached with SIPS (sent with a 480)."""


def is_sips_uri(text: str) -> bool:
    """Whether a URI text (a Request-URI, a contact) is a ``sips:`` URI (no parse)."""
    return text.lstrip()[:5].lower() == "sips:"


def _is_sips_value(value: str) -> bool:
    """Whether a Route/Path value (a name-addr) holds a ``sips:`` URI; False if malformed."""
    try:
        return parse_name_addr(value, "Route").uri.scheme == "sips"
    except RemoteProtocolError:
        return False


def needs_tls(request: SipRequest) -> bool:
    """Whether ``request`` may only be forwarded over TLS (RFC 3261 16.6 step 4, 26.2.2).

    True when its Request-URI or its first Route value is a SIPS URI: "the URI placed
    into the Record-Route header field MUST be a SIPS URI" then, and RFC 5630 4 makes a
    SIPS URI mean TLS on every hop, the last one included (the "last-hop exception" of
    RFC 3261 is deprecated). Call it on the request as the proxy will forward it: after
    :func:`preprocess_routes` (our own Route values gone) for an in-dialog request.
    """
    if is_sips_uri(request.uri):
        return True
    routes = request.headers.values("route")
    return bool(routes) and _is_sips_value(routes[0])


def branch_needs_tls(request: SipRequest, target: str, path: Sequence[str] = ()) -> bool:
    """Whether the branch of ``request`` to ``target`` may only leave over TLS.

    :func:`needs_tls` of the request (a SIPS Request-URI stays a SIPS target whatever
    contact it is forked to, RFC 5630 5.3), or a SIPS ``target`` (a contact registered
    as ``sips:``), or a SIPS first ``path`` value (the next hop of a binding behind an
    edge proxy).
    """
    return needs_tls(request) or is_sips_uri(target) or (bool(path) and _is_sips_value(path[0]))


def secure_transport(transport: str) -> bool:
    """Whether a flow over ``transport`` may carry a request for a SIPS target."""
    return transport.lower() in SECURE_TRANSPORTS


def tls_capable_binding(contact: str, received: str) -> bool:
    """Whether a registered contact may take a request for a SIPS target.

    A ``sips:`` contact (RFC 5630 5.1.1.1: what a UA registers to be reachable over
    SIPS), or a contact registered over TLS (``received`` is the flow the REGISTER came
    from, ``tls:host:port``), which the proxy reaches over that connection or, once it
    is closed, at its contact (which must then resolve to TLS too: the runtime refuses
    a non-TLS flow for a SIPS branch, see :func:`branch_needs_tls`).
    """
    if is_sips_uri(contact):
        return True
    transport = received.partition(":")[0].lower()
    return bool(received) and secure_transport(transport)


def sips_not_allowed_warning(agent: str) -> str:
    """The ``Warning`` value of a ``480`` refusing a SIPS target (RFC 5630 5.3 and 9).

    Args:
        agent: our host[:port] (RFC 3261 20.43 warn-agent).
    """
    return f'{SIPS_NOT_ALLOWED} {agent} "SIPS Not Allowed"'


def sips_required_warning(agent: str) -> str:
    """The ``Warning`` of a ``480`` for a ``sip:`` request whose target is bound only with
    ``sips:`` contacts the proxy cannot reach (RFC 5630 5.3 lets a proxy that is not
    capable of it reject with 480 and warn-code 381; here: no TLS listener)."""
    return f'{SIPS_REQUIRED} {agent} "SIPS Required"'


def sips_record_route(host: str, port: int | None) -> str:
    """Our ``Record-Route`` value for a SIPS request: ``<sips:host:port;lr>``.

    RFC 3261 16.6 step 4: with a SIPS Request-URI or first Route "the URI placed into
    the Record-Route header field MUST be a SIPS URI". ``host`` and ``port`` are those
    of our TLS listener (or the advertised name); no ``transport=tls`` (RFC 5630 3.1.4
    deprecates it: the scheme alone means TLS). IPv6 hosts are bracketed.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    hostport = host if port is None else f"{host}:{port}"
    return f"<sips:{hostport};lr>"


# --------------------------------------------------------------------------- 16.7
def strip_own_via(
    response: SipResponse, *, is_myself: Callable[[SipUri], bool] | None = None
) -> bool:
    """Remove our Via from a response before it goes upstream (RFC 3261 16.7 step 3).

    "The proxy removes the topmost Via header field value from the response. If no Via
    header field values remain in the response, the response was meant for this element
    and MUST NOT be forwarded."

    Args:
        response: a response received on one of our client transactions (edited in place).
        is_myself: when given, the top Via must name us, otherwise the response is left
            alone and False returned (the transaction layer already matched it by
            branch, so the runtime may omit this).

    Returns:
        True when the response may be forwarded; False when it must be dropped or
        consumed locally (no Via, not our Via, or ours was the only one: a response to
        a request this element originated, e.g. an SCA NOTIFY).
    """
    vias = response.headers.values("via")
    if not vias:
        return False
    if is_myself is not None and not via_is_mine(response.top_via, is_myself):
        return False
    response.headers.pop_first_value("via")
    return len(vias) > 1


# --------------------------------------------------------------------------- 9.1
def make_cancel(invite: SipRequest, *, reason: str | None = None) -> SipRequest:
    """The CANCEL for one branch of a forwarded INVITE (RFC 3261 9.1, 16.10).

    "The Request-URI, Call-ID, To, the numeric part of CSeq, and From header fields in
    the CANCEL request MUST be identical to those in the request being cancelled,
    including tags", its single Via equals the branch INVITE's top Via (our Via, so the
    downstream server matches it to the INVITE transaction, 9.2), and "if the request
    being cancelled contains a Route header field, the CANCEL request MUST include that
    Route header field's values". To is copied as-is: no tag for an initial INVITE, the
    dialog's tag for a re-INVITE.

    Args:
        invite: the INVITE as sent on the branch (from ``ResponseContext.branch_request``).
        reason: an optional RFC 3326 Reason value, e.g.
            ``SIP;cause=200;text="Call completed elsewhere"``.

    Returns:
        A new CANCEL request; send it to the same destination as the INVITE.

    Raises:
        LocalProtocolError: ``invite`` is not an INVITE (9.1: "SHOULD NOT be sent to
            cancel a request other than INVITE").
    """
    if invite.method != "INVITE":
        raise LocalProtocolError(f"cannot CANCEL a {invite.method} (RFC 3261 9.1)")
    vias = invite.headers.values("via")
    if not vias:
        raise LocalProtocolError("the branch INVITE has no Via")
    headers = Headers()
    headers.add("Via", vias[0])
    headers.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
    for route in invite.headers.get_all("route"):
        headers.add("Route", route)
    for name in ("From", "To", "Call-ID"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    if reason:
        headers.add("Reason", reason)
    headers.add("Content-Length", "0")
    return SipRequest("CANCEL", invite.uri, headers)
