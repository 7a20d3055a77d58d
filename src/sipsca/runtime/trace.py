"""The DEBUG message trace: one line per SIP message received or sent.

``recv FLOW SUMMARY`` / ``send FLOW SUMMARY`` on the ``sipsca.trace`` logger, where the
summary is what :func:`describe` reads from the raw bytes. Callers guard each line with
``tracing(logging.DEBUG)``: the logging module's own cached level check, cleared by every
``setLevel`` (the ``log.set_level`` RPC), so the trace costs one dict look-up per message
while it is off.
"""

from __future__ import annotations

import logging

__all__ = ["describe", "trace", "tracing"]

trace = logging.getLogger("sipsca.trace")
tracing = trace.isEnabledFor


def describe(data: bytes) -> str:
    """What the message trace says about raw SIP bytes: the request method and URI or the
    status and reason, then the Call-ID and CSeq, e.g. ``INVITE sip:bob@example.com
    call-id=a84b4c76e66710 cseq=1 INVITE`` or ``180 Ringing call-id=... cseq=1 INVITE``.
    Only called while DEBUG is on; never raises (it sees unparsable input too)."""
    end = data.find(b"\r\n\r\n")
    head = (data if end < 0 else data[:end])[:8192].decode("utf-8", "replace")
    lines = head.split("\n")
    first = lines[0].strip()
    if first.startswith("SIP/2.0 "):
        summary = first[8:]
    elif first.endswith(" SIP/2.0"):
        summary = first[:-8]
    else:
        return f"{len(data)} bytes, not SIP: {first[:80]!r}"
    call_id = cseq = "-"
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if colon and name in ("call-id", "i"):
            call_id = value.strip()
        elif colon and name == "cseq":
            cseq = " ".join(value.split())
    return f"{summary} call-id={call_id} cseq={cseq}"
