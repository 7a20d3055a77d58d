"""Shared Call Appearances: the pure SCA engine (no I/O, clock passed in)."""

from __future__ import annotations
