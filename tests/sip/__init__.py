"""Tests of sipsca.sip, the SIP wire format."""

from __future__ import annotations
