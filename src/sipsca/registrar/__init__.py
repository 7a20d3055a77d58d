"""RFC 3261 registrar: pure decisions over bindings (RFC 3327 Path, RFC 5626 outbound)."""

from __future__ import annotations

from sipsca.registrar.logic import RegisterDecision, aor_of, decide_register, lookup_targets
from sipsca.registrar.model import Binding

__all__ = ["Binding", "RegisterDecision", "aor_of", "decide_register", "lookup_targets"]
