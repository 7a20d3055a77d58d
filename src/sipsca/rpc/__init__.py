"""sipsca.rpc."""

from __future__ import annotations
