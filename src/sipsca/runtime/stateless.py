"""Best-effort replies to requests too broken to parse (RFC 3261 8.2 / 16.3: answer 400).

Copies whatever Via, From, To, Call-ID and CSeq lines can be found so the sender can
match the reply; the reason phrase names the problem.
"""

from __future__ import annotations

import hashlib

from sipsca.sip.headers import canonical_key

__all__ = ["error_reply_bytes"]

_COPIED = ("via", "from", "to", "call-id", "cseq")


def error_reply_bytes(data: bytes, status: int, reason: str) -> bytes | None:
    """Raw error response for ``data``, or None when it is not a request or is an ACK.

    Folded lines are unfolded; a copied line holding a control character (a bare CR that
    could start a header of the sender's choosing in our reply) is left out; To gets a tag
    (RFC 3261 8.2.6.2), the same for a retransmission of the same bytes.
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = _unfolded(head.replace("\r\n", "\n").split("\n"))
    if not lines or lines[0][:4].upper() == "SIP/" or " " not in lines[0]:
        return None
    if lines[0].split(" ", 1)[0] == "ACK":
        return None  # an ACK is never answered (RFC 3261 17.2.1)
    kept: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = canonical_key(name) if colon else ""
        if key not in _COPIED or any(ord(c) < 32 and c != "\t" for c in line):
            continue
        value = value.strip()
        if key == "to" and ";tag=" not in value.replace(" ", "").lower():
            value += ";tag=" + hashlib.blake2s(data, digest_size=6).hexdigest()
        kept.append(f"{name.strip()}: {value}")
    safe_reason = "".join(c for c in reason if c.isprintable())[:120] or "Bad Request"
    out = [f"SIP/2.0 {status} {safe_reason}", *kept, "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("utf-8", "replace")


def _unfolded(lines: list[str]) -> list[str]:
    """Header lines with folded continuations (leading SP/HT) joined to their line."""
    out: list[str] = []
    for line in lines:
        if out and line[:1] in (" ", "\t"):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out
