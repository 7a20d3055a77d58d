"""Proxy request validation (RFC 3261 16.3) and the sample configuration's REQINIT.

:func:`sipsca.sip.validate.validate_request` does the UAS checks of RFC 3261 8.2 (syntax,
mandatory headers, Require); this module adds what only a proxy checks before forwarding.
Rejections are returned responses (architecture rule "Rejections"), never exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from sipsca.errors import RemoteProtocolError
from sipsca.proxy._hashing import MAGIC_COOKIE, local_tag, loop_hash
from sipsca.proxy.route import is_myself_factory, via_is_mine
from sipsca.sip.fields import Via, parse_via
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.uri import SipUri

__all__ = ["SIP_SCHEMES", "check_request", "is_loop"]

SIP_SCHEMES = frozenset({"sip", "sips"})
"""Request-URI schemes the proxy routes; anything else gets 416 (16.3 step 2)."""


def check_request(
    request: SipRequest,
    *,
    supported: Collection[str],
    is_myself: Callable[[SipUri], bool],
    own_via_hosts: Iterable[tuple[str, int | None]] | None = None,
    schemes: Collection[str] = SIP_SCHEMES,
) -> SipResponse | None:
    """Run the RFC 3261 16.3 checks, in the RFC's order, on a request to be proxied.

    * step 2, URI scheme: a Request-URI scheme not in ``schemes`` -> 416.
    * step 3, Max-Forwards: 0 -> 483 "Too Many Hops"; an absent one is left absent here
      and the forwarded copy gets 70 (16.6 step 3, ``prepare_forward``). RFC 3261 lets an
      element answer an OPTIONS with Max-Forwards 0 itself (section 11); sipsca keeps it
      simple and always answers 483, as the sample does.
    * step 4, loops: for every Via that names us, the branch is recomputed from this
      request with the Via below ours standing for the Via we received it with
      (:func:`is_loop`). Equal -> the request came back unchanged: 482 "Loop Detected".
      Different (typically another Request-URI) -> a legitimate spiral, allowed.
      Detection relies on the runtime using :func:`sipsca.proxy.route.compute_branch`.
    * step 5, Proxy-Require: option tags not in ``supported`` (compared
      case-insensitively, RFC 3261 7.3.1 "tokens are always case-insensitive") -> 420
      "Bad Extension" with an ``Unsupported`` header listing them (20.40).

    Step 1 (syntax) is :mod:`sipsca.sip.validate`'s job and step 6 (Proxy-Authorization)
    the authenticator's. Generated responses carry a To tag derived from the request,
    so retransmissions get identical answers.

    Args:
        request: the received request.
        supported: option tags this proxy supports.
        is_myself: from :func:`sipsca.proxy.route.is_myself_factory`; tells our Vias.
        own_via_hosts: the sent-by ``(host, port)`` pairs we write in Vias, when they
            differ from what ``is_myself`` knows.
        schemes: Request-URI schemes accepted.

    Returns:
        The response to send (statelessly or on the server transaction), or None when
        the request may proceed.

    Raises:
        RemoteProtocolError: a header read here (Request-URI, Max-Forwards; To, From,
            CSeq when a Via of ours is present) is malformed; answer ``status_hint`` (400).
    """
    if request.ruri.scheme not in schemes:
        return _reject(request, 416, "Unsupported URI Scheme")
    max_forwards = request.max_forwards
    if max_forwards == 0:
        return _reject(request, 483, "Too Many Hops")
    mine = is_myself if own_via_hosts is None else is_myself_factory(own_via_hosts)
    if is_loop(request, mine):
        return _reject(request, 482, "Loop Detected")
    unsupported: list[str] = []
    options = request.headers.values("proxy-require")
    if options:
        wanted = {tag.lower() for tag in supported}
        for option in options:
            if option.lower() not in wanted and option not in unsupported:
                unsupported.append(option)
    if unsupported:
        return _reject(request, 420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])
    return None


def is_loop(request: SipRequest, is_myself: Callable[[SipUri], bool]) -> bool:
    """RFC 3261 16.3 step 4 / RFC 5393 section 4.2: has this request looped back to us?

    "If the request contains a Via header field with a sent-by value that equals a value
    placed into previous requests by the proxy, the request has been forwarded by this
    element before. The request has either looped or is legitimately spiraling through
    the element. To determine if the request has looped, the element MAY perform the
    branch parameter calculation described in Step 8 of Section 16.6 on this message and
    compare it to the parameter received in that Via header field."

    The calculation covers the Via that was on top when we received the request the
    first time, which is the Via right below ours now; a Via of ours at the bottom (a
    request this element originated) is never a loop. Branches that do not carry our
    hash (other formats, random branches) never match.

    Raises:
        RemoteProtocolError: a Via, To, From or CSeq is malformed.
    """
    vias = request.headers.values("via")
    for index in range(len(vias) - 1):
        via = _via_or_none(vias[index])
        if via is None or not via.branch or not via.branch.startswith(MAGIC_COOKIE):
            continue
        if not via_is_mine(via, is_myself):
            continue
        below = _via_or_none(vias[index + 1])
        received = via.branch[len(MAGIC_COOKIE) :].partition(".")[0]
        if below is not None and received == loop_hash(request, below):
            return True
    return False


def _via_or_none(value: str) -> Via | None:
    # Only the top Via matters to the transaction layer (and 8.2 validation); a
    # malformed Via deeper down is some other hop's problem, not a reason to fail here.
    try:
        return parse_via(value)
    except RemoteProtocolError:
        return None


def _reject(
    request: SipRequest, status: int, reason: str, extra: list[tuple[str, str]] | None = None
) -> SipResponse:
    return make_response(request, status, reason, to_tag=local_tag(request), extra=extra)
