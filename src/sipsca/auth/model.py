"""Digest subscribers: users with their HA1 hashes (never the password)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Subscriber"]


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A user allowed to register and place calls; ``ha1_*`` = H(user:realm:password)."""

    username: str
    domain: str
    ha1_md5: str
    ha1_sha256: str
