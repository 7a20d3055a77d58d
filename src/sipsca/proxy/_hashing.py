"""Deterministic digests of a request: loop-detecting branch values and local To tags.

Both are pure functions of the message, so no RNG is needed and a retransmitted request
gets the same value (a stateless reply carries the same To tag, RFC 3261 16.11; a looped
request reproduces the branch we computed the first time, RFC 3261 16.3 step 4).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipsca.sip.fields import Via
    from sipsca.sip.message import SipRequest

__all__ = ["MAGIC_COOKIE", "local_tag", "loop_hash"]

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 8.1.1.7: every RFC 3261 branch starts with this."""

# Parameters a transport adds to a Via on receipt (RFC 3261 18.2.1, RFC 3581 4). They are
# left out of the Via's identity, so the Via hashed when we forwarded a request and the
# same Via seen again below ours on a looped copy give the same digest.
_RECEIPT_PARAMS = frozenset({"received", "rport"})


def _digest(*parts: str) -> str:
    # Every part followed by a NUL, hashed in one call (one encode, one update).
    data = "\x00".join(parts) + "\x00" if parts else ""
    # RFC 3261 16.6 step 8: "MD5 ... is a reasonable choice"
    return hashlib.md5(data.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


def via_identity(via: Via) -> str:
    """The parts of a Via that identify the hop: sent-by, transport, branch, other params."""
    params = ";".join(
        f"{name.lower()}={value or ''}"
        for name, value in via.params
        if name.lower() not in _RECEIPT_PARAMS
    )
    return f"{via.transport.upper()} {via.host.lower()}:{via.port or ''};{params}"


def loop_hash(request: SipRequest, upstream_via: Via | None) -> str:
    """RFC 3261 16.6 step 8: hash of the fields that stay the same when a request loops.

    The RFC lists the To tag, From tag, Call-ID, Request-URI *as received*, the topmost
    Via as received (``upstream_via``), the CSeq number and Proxy-Require. The CSeq method
    is added so a CANCEL or 2xx-ACK never shares a digest with its INVITE.
    Proxy-Authorization, which the RFC also lists, is left out on purpose: the sample
    configuration consumes credentials before relaying, so a looped copy would no longer
    carry them and the loop would pass as a spiral.

    Raises:
        RemoteProtocolError: To, From or CSeq is missing or malformed.
    """
    cseq = request.cseq
    return _digest(
        request.to_tag or "",
        request.from_tag or "",
        (request.headers.get("call-id") or "").strip(),
        request.uri,
        "" if upstream_via is None else via_identity(upstream_via),
        str(cseq.number),
        cseq.method.upper(),
        ",".join(v.lower() for v in request.headers.values("proxy-require")),
    )


def local_tag(request: SipRequest) -> str:
    """A To tag for a response this proxy generates itself (RFC 3261 8.2.6.2).

    Computed from raw header text only, so it never raises and every retransmission of
    ``request`` is answered with the same tag (what Kamailio's ``sl`` module does).
    """
    first_via = request.headers.values("via")[:1]
    return _digest(
        "local-tag",
        request.headers.get("call-id") or "",
        request.headers.get("from") or "",
        first_via[0] if first_via else "",
        request.headers.get("cseq") or "",
    )[:20]
