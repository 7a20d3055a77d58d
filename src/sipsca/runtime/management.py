"""The management facade the RPC layer drives (``sipsca.rpc.api.ManagementBackend``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sipsca import __version__
from sipsca.sca.engine import ScaEngine

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["Management"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Management:
    """Read and change a running server on behalf of JSON-RPC commands."""

    def __init__(self, app: SipApplication, *, started: float) -> None:
        self.app = app
        self.started = started
        self.sca: ScaEngine = app.sca

    def now(self) -> float:
        return self.app.clock.time()

    def after_change(self) -> None:
        self.app.pump()

    def version(self) -> str:
        return f"sipsca {__version__}"

    def uptime(self) -> float:
        return time.time() - self.started

    def bindings(self) -> list[dict[str, object]]:
        now = self.app.clock.time()
        out: list[dict[str, object]] = []
        for aor in sorted(self.app.bindings):
            for binding in self.app.bindings[aor].values():
                out.append(
                    {
                        "aor": aor,
                        "contact": binding.contact,
                        "expires": max(0, int(binding.expires_at - now)),
                        "q": binding.q,
                        "received": binding.received,
                        "user_agent": binding.user_agent,
                        "instance": binding.instance_id,
                        "call_id": binding.call_id,
                        "cseq": binding.cseq,
                    }
                )
        return out

    def stats(self) -> dict[str, float]:
        app = self.app
        out: dict[str, float] = {f"sca.{k}": float(v) for k, v in app.sca.stats().items()}
        out.update({f"transactions.{k}": float(v) for k, v in app.tl.counts.items()})
        out["registrar.bindings"] = float(sum(len(t) for t in app.bindings.values()))
        out["proxy.forwarded"] = float(len(app.proxy.forwarded))
        out["db.pending_writes"] = float(app.writeback.pending)
        out["db.write_failures"] = float(app.writeback.failures)
        out["db.healthy"] = 1.0 if app.writeback.healthy else 0.0
        out["core.overloaded"] = 1.0 if app.overloaded else 0.0
        out["core.uptime"] = self.uptime()
        return out

    def set_log_level(self, level: str) -> str:
        name = level.upper()
        if name not in _LEVELS:
            raise ValueError(f"unknown log level {level!r} (one of {', '.join(_LEVELS)})")
        logging.getLogger().setLevel(name)
        return name

    def log_level(self) -> str:
        return logging.getLevelName(logging.getLogger().getEffectiveLevel())
