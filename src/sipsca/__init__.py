"""sipsca: a Shared Call Appearances SIP server (registrar, stateful proxy, SCA engine)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
