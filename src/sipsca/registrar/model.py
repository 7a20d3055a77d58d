"""Registrar data: one binding of a Contact to an address-of-record (RFC 3261 10.3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Binding"]


@dataclass(slots=True)
class Binding:
    """A registered contact. Times are epoch seconds (bindings survive restarts)."""

    aor: str
    """Canonical AoR ``sip:user@domain`` (lower-case domain, no port/params)."""
    contact: str
    """The Contact URI as registered."""
    expires_at: float
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    path: tuple[str, ...] = ()
    instance_id: str = ""
    reg_id: int = 0
    received: str = ""
    """Flow the REGISTER came from, ``transport:host:port`` (how to reach a phone behind NAT)."""
    user_agent: str = ""
    updated_at: float = 0.0
