"""Log set-up: readable one-line text by default, JSON lines on request.

The configured level (``[log] level``, ``--log-level``, the ``log.set_level`` RPC) is the
root logger's. Third-party libraries never log below INFO, whatever that level: at DEBUG
aiosqlite alone wrote some 130 lines at start-up and 16 per SUBSCRIBE (with the SQL
parameters), drowning sipsca's own DEBUG lines (one per SIP message received and sent,
logger ``sipsca.trace``).
"""

from __future__ import annotations

import json
import logging
import sys

__all__ = ["THIRD_PARTY", "setup_logging"]

THIRD_PARTY = ("aiosqlite", "asyncio", "asyncpg", "aiomysql", "aiohttp")
"""Loggers of the libraries sipsca runs on: kept at INFO or higher."""

_FIELDS = ("sca", "registration")
"""``extra=`` keys whose dict is merged into a JSON line (state changes: SCA subscriptions
and appearances, registrar bindings)."""


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; state changes add their fields (``extra={"sca": ...}``,
    ``extra={"registration": ...}``) so a log pipeline can filter by AoR, index, contact or
    Call-ID without parsing the text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            fields = getattr(record, name, None)
            if isinstance(fields, dict):
                line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _RootLevelFilter(logging.Filter):
    """Drops a third-party record below the root level.

    Those loggers have a level of their own (INFO), so without this an INFO line of theirs
    would pass while the root level says WARNING: their level only keeps DEBUG out (and
    costs nothing then: the record is never made), the root level (which ``log.set_level``
    changes at run time) still applies to everything else.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name.startswith(THIRD_PARTY) and name.partition(".")[0] in THIRD_PARTY:
            return record.levelno >= logging.getLogger().getEffectiveLevel()
        return True


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_RootLevelFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
