"""Best-effort replies to requests too broken to parse (RFC 3261 8.2 / 16.3: answer 400).

Copies whatever Via, From, To, Call-ID and CSeq lines can be found so the sender can
match the reply; the reason phrase names the problem.
"""

from __future__ import annotations

import hashlib

from sipsca.errors import RemoteProtocolError
from sipsca.sip.address import Flow
from sipsca.sip.fields import Via, parse_via
from sipsca.sip.headers import canonical_key

__all__ = ["error_reply_bytes", "stamped_via"]

_COPIED = ("via", "from", "to", "call-id", "cseq")
_STAMPED = frozenset(("received", "rport"))


def stamped_via(via: Via, source: Flow) -> Via | None:
    """``via`` with ``received`` (RFC 3261 18.2.1) added and ``rport`` (RFC 3581 4) filled
    from the packet's ``source``; None when it needs no change.

    Only the receiver writes these: a ``received`` or ``rport`` value the sender put there
    itself is replaced (else the replies would go wherever the sender named).
    """
    rport = via.param("rport")
    received = via.param("received")
    if via.host == source.host and rport is None and received in (None, source.host):
        return None
    params = [p for p in via.params if p[0].lower() not in _STAMPED]
    if rport is not None:
        params.append(("rport", str(source.port)))
    if via.host != source.host or rport is not None:
        params.append(("received", source.host))
    return Via(transport=via.transport, host=via.host, port=via.port, params=tuple(params))


def error_reply_bytes(
    data: bytes, status: int, reason: str, source: Flow | None = None
) -> bytes | None:
    """Raw error response for ``data``, or None when it is not a request, is an ACK or has
    no Via (a response without one matches nothing, RFC 3261 8.2.6.2, 17.1.3).

    Folded lines are unfolded; a copied line holding a control character (a bare CR that
    could start a header of the sender's choosing in our reply) is left out; To gets a tag
    (RFC 3261 8.2.6.2), the same for a retransmission of the same bytes; the top Via gets
    ``received``/``rport`` from ``source`` when it parses (RFC 3581 4).
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = _unfolded(head.replace("\r\n", "\n").split("\n"))
    if not lines or lines[0][:4].upper() == "SIP/" or " " not in lines[0]:
        return None
    if lines[0].split(" ", 1)[0] == "ACK":
        return None  # an ACK is never answered (RFC 3261 17.2.1)
    kept: list[str] = []
    has_via = False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = canonical_key(name) if colon else ""
        if key not in _COPIED or any(ord(c) < 32 and c != "\t" for c in line):
            continue
        value = value.strip()
        if key == "to" and ";tag=" not in value.replace(" ", "").lower():
            value += ";tag=" + hashlib.blake2s(data, digest_size=6).hexdigest()
        elif key == "via":
            if not has_via and source is not None:
                value = _stamped_text(value, source)
            has_via = True
        kept.append(f"{name.strip()}: {value}")
    if not has_via:
        return None
    safe_reason = "".join(c for c in reason if c.isprintable())[:120] or "Bad Request"
    out = [f"SIP/2.0 {status} {safe_reason}", *kept, "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("utf-8", "replace")


def _stamped_text(value: str, source: Flow) -> str:
    """A Via header line's value with its first Via stamped, or as it was when that one
    does not parse (the rest of the line is copied untouched)."""
    first, comma, rest = value.partition(",")
    try:
        stamped = stamped_via(parse_via(first.strip()), source)
    except RemoteProtocolError:
        return value
    return value if stamped is None else f"{stamped}{comma}{rest}"


def _unfolded(lines: list[str]) -> list[str]:
    """Header lines with folded continuations (leading SP/HT) joined to their line."""
    out: list[str] = []
    for line in lines:
        if out and line[:1] in (" ", "\t"):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out
