"""Digest authentication (RFC 3261 22, RFC 8760), pure."""

from __future__ import annotations

from sipsca.auth.digest import AuthResult, Credentials, DigestAuthenticator, ha1, make_subscriber
from sipsca.auth.model import Subscriber

__all__ = [
    "AuthResult",
    "Credentials",
    "DigestAuthenticator",
    "Subscriber",
    "ha1",
    "make_subscriber",
]
