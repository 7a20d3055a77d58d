"""sipsca.transaction."""

from __future__ import annotations
