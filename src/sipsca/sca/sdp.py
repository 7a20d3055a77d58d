"""Hold detection from an SDP body (sca-behaviour.md §5.2, decisions.md #5).

A call is on hold when at least one active media stream is ``sendonly`` or
``inactive`` - from a media-level attribute or, unlike Kamailio, from a session-level
attribute that the stream does not override - or when the stream's connection address
is ``0.0.0.0`` (RFC 2543 style hold). ``recvonly`` and ``sendrecv`` mean "not held":
``recvonly`` is what the held party answers, and the line resumes with ``sendrecv``.

Kamailio's exception is kept: ``c=0.0.0.0`` with port 9 and ``a=ice-options:trickle``
is a trickle-ICE offer, not a hold. Disabled streams (port 0) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["HoldState", "is_on_hold", "sdp_hold_state"]

_HOLD_DIRECTIONS = frozenset({"sendonly", "inactive"})
_DIRECTIONS = frozenset({"sendonly", "inactive", "recvonly", "sendrecv"})


class HoldState(StrEnum):
    """Tri-state result: the body says held, not held, or there is no SDP at all."""

    HELD = "held"
    NOT_HELD = "not-held"
    NO_SDP = "no-sdp"


@dataclass(slots=True)
class _Stream:
    port: int
    direction: str | None = None
    connection: str | None = None
    attributes: list[str] = field(default_factory=list)


def _extract_sdp(body: bytes, content_type_header: str | None) -> str | None:
    """The SDP text of a body: the whole body, or the ``application/sdp`` part of a multipart."""
    if not body:
        return None
    ctype = (content_type_header or "application/sdp").strip()
    main = ctype.split(";")[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if main == "application/sdp":
        return text
    if not main.startswith("multipart/"):
        return None
    boundary = ""
    for param in ctype.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return None
    for part in text.split("--" + boundary)[1:]:
        if part.startswith("--"):
            break
        head, sep, content = part.replace("\r\n", "\n").partition("\n\n")
        if not sep:
            continue
        for line in head.split("\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type" and value.strip().lower().startswith(
                "application/sdp"
            ):
                return content
    return None


def _connection_address(value: str) -> str:
    """``IN IP4 0.0.0.0/127`` -> ``0.0.0.0``."""
    parts = value.split()
    return parts[2].split("/")[0] if len(parts) >= 3 else ""


def sdp_hold_state(body: bytes, content_type: str | None = None) -> HoldState:
    """Classify a message body as :class:`HoldState` ``HELD``, ``NOT_HELD`` or ``NO_SDP``.

    ``content_type`` is the raw Content-Type header value (parameters included, so a
    multipart boundary can be found); None means ``application/sdp``.
    """
    sdp = _extract_sdp(body, content_type)
    if sdp is None or "v=" not in sdp:
        return HoldState.NO_SDP
    session_direction: str | None = None
    session_connection: str | None = None
    session_attributes: list[str] = []
    streams: list[_Stream] = []
    for raw_line in sdp.replace("\r\n", "\n").split("\n"):
        line = raw_line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        current = streams[-1] if streams else None
        if kind == "m":
            parts = value.split()
            port_text = parts[1].split("/")[0] if len(parts) > 1 else "0"
            streams.append(_Stream(port=int(port_text) if port_text.isdigit() else 0))
        elif kind == "c":
            address = _connection_address(value)
            if current is None:
                session_connection = address
            else:
                current.connection = address
        elif kind == "a":
            name = value.split(":")[0].strip().lower()
            if name in _DIRECTIONS:
                if current is None:
                    session_direction = name
                else:
                    current.direction = name
            elif current is None:
                session_attributes.append(value.lower())
            else:
                current.attributes.append(value.lower())
    if not streams:
        held = session_direction in _HOLD_DIRECTIONS or session_connection == "0.0.0.0"
        return HoldState.HELD if held else HoldState.NOT_HELD
    for stream in streams:
        if stream.port == 0:
            continue
        direction = stream.direction or session_direction or "sendrecv"
        if direction in _HOLD_DIRECTIONS:
            return HoldState.HELD
        connection = stream.connection or session_connection
        if connection == "0.0.0.0":
            trickle = any(
                a.startswith("ice-options") and "trickle" in a
                for a in (*stream.attributes, *session_attributes)
            )
            if not (trickle and stream.port == 9):
                return HoldState.HELD
    return HoldState.NOT_HELD


def is_on_hold(body: bytes, content_type: str | None = None) -> bool:
    """True when the body is SDP that puts the call on hold."""
    return sdp_hold_state(body, content_type) == HoldState.HELD
