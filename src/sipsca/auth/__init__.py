"""Digest authentication (RFC 3261 22, RFC 8760), pure."""

from __future__ import annotations
