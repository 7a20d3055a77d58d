"""RFC 3261 registrar: pure decisions over bindings."""

from __future__ import annotations
