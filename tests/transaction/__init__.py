"""Tests of the RFC 3261 17 transaction layer (pure: no sockets, explicit ``now``)."""

from __future__ import annotations
