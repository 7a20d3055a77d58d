"""Test helpers: an asyncio SIP phone emulator and real-server process wrappers."""

from __future__ import annotations
