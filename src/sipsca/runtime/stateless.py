"""Best-effort replies to requests too broken to parse (RFC 3261 8.2 / 16.3: answer 400).

Copies whatever Via, From, To, Call-ID and CSeq lines can be found so the sender can
match the reply; the reason phrase names the problem.
"""

from __future__ import annotations

from sipsca.sip.headers import canonical_key

__all__ = ["error_reply_bytes"]

_COPIED = ("via", "from", "to", "call-id", "cseq")


def error_reply_bytes(data: bytes, status: int, reason: str) -> bytes | None:
    """Raw error response for ``data``, or None when it is not a request at all."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    if not lines or lines[0][:4].upper() == "SIP/" or " " not in lines[0]:
        return None
    kept: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and canonical_key(name) in _COPIED:
            kept.append(f"{name.strip()}: {value.strip()}")
    safe_reason = "".join(c for c in reason if c.isprintable())[:120] or "Bad Request"
    out = [f"SIP/2.0 {status} {safe_reason}", *kept, "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("utf-8", "replace")
