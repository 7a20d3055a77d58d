"""STUN Binding responses on the SIP UDP port (RFC 5626 4.4.1 / 8, RFC 5389).

A phone using SIP outbound (we answer its REGISTER with ``Require: outbound``) keeps its
UDP flow alive with STUN Binding requests sent to the SIP port and treats the flow as
failed when no answer comes. STUN and SIP share the port: a STUN message starts with two
zero bits and carries the magic cookie, a SIP message starts with a letter.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["binding_response", "is_stun"]

MAGIC = b"\x21\x12\xa4\x42"
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HH4s12s")


def is_stun(data: bytes) -> bool:
    """A STUN message (RFC 5389 6): first two bits 0, cookie at bytes 4-7, 20-byte header."""
    return len(data) >= 20 and data[0] < 0x40 and data[4:8] == MAGIC


def binding_response(data: bytes, addr: tuple[str, int]) -> bytes | None:
    """The Binding success response to a Binding request from ``addr``, or None for any
    other STUN message (indications, responses: nothing to answer)."""
    kind, _length, _cookie, transaction = _HEADER.unpack_from(data)
    if kind != _BINDING_REQUEST:
        return None
    ip = ipaddress.ip_address(addr[0].split("%")[0])
    port = addr[1] ^ 0x2112
    if ip.version == 4:
        mask = MAGIC
        value = struct.pack("!BBH", 0, 1, port)
    else:
        mask = MAGIC + transaction
        value = struct.pack("!BBH", 0, 2, port)
    value += bytes(a ^ b for a, b in zip(ip.packed, mask, strict=True))
    attribute = struct.pack("!HH", _XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(_BINDING_SUCCESS, len(attribute), MAGIC, transaction) + attribute
