"""The one exception tree of sipsca.

::

    SipscaError
    ├── ProtocolError
    │   ├── LocalProtocolError      the caller misused an API (a bug in sipsca)
    │   └── RemoteProtocolError     a peer sent something the RFCs forbid; carries the
    │                               status a server must answer (``status_hint``)
    ├── StorageError                a database backend failed (driver errors are mapped to it)
    └── ConfigError                 the configuration cannot be used (start-up refuses it)

Domain rejections that the RFCs tell us to send (423, 480, 481, 489...) are *returned*
responses, never exceptions.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SipscaError",
    "StorageError",
]


class SipscaError(Exception):
    """Base of every error sipsca raises on purpose."""


class ProtocolError(SipscaError):
    """A SIP protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """sipsca itself tried to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """A peer's message is malformed or illegal.

    ``status_hint`` is the SIP status a server answers with (400, 420, 505, 413...);
    ``reason`` becomes the reason phrase, so it names the problem.
    """

    def __init__(self, reason: str, *, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class StorageError(SipscaError):
    """A storage backend failed; the original driver error is the ``__cause__``."""


class ConfigError(SipscaError):
    """The configuration is invalid; the message names the key and the problem."""
