"""Request and response sanity checks a server runs before any processing (RFC 3261 8.2, 16.3).

:func:`parse_message` only frames a message and checks its start line; header values are
parsed lazily. These pure functions parse every header a server relies on and say what to
answer, so malformed input is refused once, at the edge, with a reason naming the problem,
instead of raising deep inside the transaction, registrar or SCA code.

What is deliberately *not* decided here, because it needs configuration or state:
405/501 for methods the element does not handle (unless ``known_methods`` is given),
420 for Require/Proxy-Require (RFC 3261 8.2.2.3, 16.3 step 5), 483 for Max-Forwards 0
(16.3 step 3: a UAS processes such a request normally), 482 loops, 415/406 for bodies
and Accept, and registrar rules such as "To must be a SIP AOR" (10.3). The Date header is
not checked either (RFC 4475 3.1.2.12: an element that does not use it may ignore it);
``SipMessage.date`` raises 400 for whoever reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from sipsca.errors import RemoteProtocolError
from sipsca.sip.fields import parse_name_addr, parse_uint
from sipsca.sip.message import SipMessage, SipRequest, SipResponse

__all__ = ["check_message", "validate_request", "validate_response"]

# RFC 3261 8.1.1: "A valid SIP request formulated by a UAC MUST, at a minimum, contain the
# following header fields: To, From, CSeq, Call-ID, Max-Forwards, and Via". Max-Forwards
# is not required on receipt: RFC 2543 peers omit it (RFC 4475 3.4.1).
_MANDATORY = (
    ("via", "Via"),
    ("to", "To"),
    ("from", "From"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)
# Headers that may appear at most once (RFC 3261 20, "single value" fields; RFC 4475 3.3.8,
# 3.3.9). Content-Length duplicates are already refused by the parser.
_SINGLETONS = (
    ("to", "To"),
    ("from", "From"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
    ("max-forwards", "Max-Forwards"),
    ("content-length", "Content-Length"),
    ("expires", "Expires"),
    ("content-type", "Content-Type"),
)
# RFC 3261 8.2.2.1 / 16.3 step 2: schemes a SIP element understands; others get 416.
_SCHEMES = frozenset(("sip", "sips", "tel"))

Outcome = tuple[int, str]


def validate_request(
    req: SipRequest, *, known_methods: Collection[str] | None = None
) -> Outcome | None:
    """Check a received request; return ``(status, reason)`` to reject it, None to accept.

    Checks, in this order (the first failure wins):

    1. ``known_methods`` (only if given): an unknown method gets 501 (RFC 3261 8.2.1).
    2. Via, To, From, Call-ID and CSeq are present: 400 "Missing X header" (8.1.1;
       RFC 4475 3.3.1).
    3. Single-valued headers appear once: 400 "Multiple X headers" (RFC 4475 3.3.8, 3.3.9).
    4. Request-URI parses: 400; scheme is sip/sips/tel: 416 (8.2.2.1, 16.3 step 2; RFC 4475
       3.3.2, 3.3.3); a SIP Request-URI has no ``?headers``: 400 (19.1.5; 3.1.2.11).
    5. CSeq parses and its number is below 2**31: 400 (8.1.1.5; RFC 4475 3.1.2.4); its
       method equals the request method: 400 "CSeq method does not match" (8.1.1.5, 12.2.1.1;
       RFC 4475 3.1.2.17, 3.1.2.18).
    6. Call-ID is not empty; To and From parse, with parseable URIs (RFC 4475 3.1.2.6,
       3.1.2.14, 3.1.2.15); every Via value parses; Contact, Route and Record-Route values
       parse (3.1.2.1, 3.1.2.13); Max-Forwards is 0-255 and Expires a 32-bit number
       (3.1.2.4).
    7. Content-Length, when present, equals the body length (18.3).

    A missing branch is accepted (RFC 2543 peers; transaction matching falls back to
    17.2.3's older rules, RFC 4475 3.2.1), as are non-SIP URIs in To/From/Contact
    (RFC 4475 3.3.4: a proxy handles them normally).

    Args:
        req: a parsed request.
        known_methods: methods this element implements; None (a proxy) accepts any method.

    Returns:
        None when the request may be processed, else the status and reason phrase of the
        stateless reply to send (RFC 3261 8.2: no transaction is created).
    """
    if known_methods is not None and req.method not in known_methods:
        return 501, "Not Implemented"
    keys = req.headers.keys()
    for key, name in _MANDATORY:
        if key not in keys:
            return 400, f"Missing {name} header"
    for key, name in _SINGLETONS:
        if keys.count(key) > 1:
            return 400, f"Multiple {name} headers"
    try:
        ruri = req.ruri
    except RemoteProtocolError:
        return 400, "Malformed Request-URI"
    if ruri.scheme not in _SCHEMES:
        return 416, "Unsupported URI Scheme"
    if ruri.headers:
        return 400, "Headers not allowed in the Request-URI"
    try:
        cseq = req.cseq
    except RemoteProtocolError as exc:
        return 400, exc.reason if "out of range" in exc.reason else "Malformed CSeq header"
    if cseq.method != req.method:
        return 400, "CSeq method does not match"
    return _check_common(req)


def validate_response(resp: SipResponse) -> str | None:
    """Check a received response; return a reason to drop it silently, None to accept it.

    Responses are never answered (RFC 3261 17.1.3, 18.1.2): a response with a missing or
    malformed Via, To, From, Call-ID or CSeq, a CSeq number out of range (RFC 4475
    3.1.2.5) or duplicated single-valued headers is discarded.
    """
    keys = resp.headers.keys()
    for key, name in _MANDATORY:
        if key not in keys:
            return f"Missing {name} header"
    for key, name in _SINGLETONS:
        if keys.count(key) > 1:
            return f"Multiple {name} headers"
    try:
        resp.cseq  # noqa: B018 (parsed for its check)
    except RemoteProtocolError as exc:
        return exc.reason
    outcome = _check_common(resp)
    return None if outcome is None else outcome[1]


def check_message(msg: SipMessage, *, known_methods: Collection[str] | None = None) -> None:
    """Raise when :func:`validate_request` / :func:`validate_response` would reject ``msg``.

    For code that handles every peer error in one place: the RemoteProtocolError carries
    the status to answer (``status_hint``; 0 for a response, which is dropped).

    Raises:
        RemoteProtocolError: the message must be rejected.
    """
    if isinstance(msg, SipRequest):
        outcome = validate_request(msg, known_methods=known_methods)
        if outcome is not None:
            raise RemoteProtocolError(outcome[1], status_hint=outcome[0])
    elif isinstance(msg, SipResponse):
        reason = validate_response(msg)
        if reason is not None:
            raise RemoteProtocolError(reason, status_hint=0)


def _check_common(msg: SipMessage) -> Outcome | None:
    """Checks shared by requests and responses (step 6 and 7 of validate_request)."""
    headers = msg.headers
    if not (headers.get("call-id") or "").strip(" \t"):
        return 400, "Empty Call-ID header"
    for name, check in _FIELD_CHECKS:
        try:
            check(msg)
        except RemoteProtocolError as exc:
            # Field parsers quote the offending text; the reason phrase only names the header.
            return 400, exc.reason if "out of range" in exc.reason else f"Malformed {name} header"
    clen = headers.get("content-length")
    if clen is not None:
        try:
            length = parse_uint(clen, 2**32 - 1, "Content-Length")
        except RemoteProtocolError:
            return 400, "Malformed Content-Length header"
        if length != len(msg.body):
            return 400, "Content-Length does not match the body"
    return None


def _name_addrs(values: list[str], header: str) -> None:
    for value in values:
        parse_name_addr(value, header).uri  # noqa: B018 (parsed for its check)


def _vias(msg: SipMessage) -> None:
    if not msg.vias:
        raise RemoteProtocolError("Empty Via header")


def _contacts(msg: SipMessage) -> None:
    for contact in msg.contacts:
        if contact.uri_text != "*":
            contact.uri  # noqa: B018 (parsed for its check)


# Step 6, in order: (header named in the reason phrase, check raising RemoteProtocolError).
_FIELD_CHECKS: tuple[tuple[str, Callable[[SipMessage], object]], ...] = (
    ("To", lambda msg: msg.to.uri),
    ("From", lambda msg: msg.from_.uri),
    ("Via", _vias),
    ("Max-Forwards", lambda msg: msg.max_forwards),
    ("Expires", lambda msg: msg.expires),
    ("Contact", _contacts),
    ("Route", lambda msg: _name_addrs(msg.headers.values("route"), "Route")),
    ("Record-Route", lambda msg: _name_addrs(msg.headers.values("record-route"), "Record-Route")),
)
