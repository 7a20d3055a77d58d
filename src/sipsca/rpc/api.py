"""The contract between the management plane and the runtime.

The RPC layer never touches SIP state itself: it parses JSON-RPC, checks arguments the way
Kamailio's ``sca_rpc.c`` does and then calls the two Protocols below. Keeping the contract this
small lets the runtime (``sipsca.sca.engine.ScaEngine`` and the server facade) be written and
tested independently, and lets the RPC tests run against an in-memory fake.

Faults: Kamailio answers ``rpc->fault(ctx, code, text)``; sipsca's runtime raises an exception
that carries an integer ``code`` and a string ``message`` (``sipsca.sca.rpc.ScaRpcError``).
The RPC layer recognises such exceptions by shape (:func:`fault_of`), so it does not have to import
the engine and keeps working whatever concrete class the engine chooses.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = [
    "ManagementBackend",
    "RpcFault",
    "ScaRpc",
    "fault_of",
]


@runtime_checkable
class ScaRpc(Protocol):
    """Kamailio's eleven ``sca.*`` RPC commands; each returns the lines kamcmd would print.

    Implemented by ``sipsca.sca.engine.ScaEngine``. Arguments arrive already checked for
    presence and type (indexes are ints, states are Kamailio state names); semantic failures
    (unknown AoR, index not in use...) are raised as faults with Kamailio's texts. ``now`` is
    epoch seconds, passed in so the engine never reads a clock.
    """

    def rpc_all_subscriptions(self, *, now: float) -> list[str]:
        """``<user> <host[:port]> <event> <seconds left> <state>`` per subscription (0 seconds
        once expired or ended)."""
        ...

    def rpc_subscription_count(self, event: str) -> list[str]:
        """``["<n> <event>"]`` for ``call-info`` or ``line-seize``: subscriptions not
        terminated."""
        ...

    def rpc_show_subscription(self, aor: str, event: str, contact: str | None) -> list[str]:
        """``<aor> <event> <subscriber> <absolute expires>`` per matching subscription."""
        ...

    def rpc_subscribers(self) -> list[str]:
        """Kamailio faults 600 ``Not yet implemented``; sipsca may list subscribers."""
        ...

    def rpc_deactivate_all_subscriptions(self, *, now: float) -> list[str]:
        """Terminate every subscription (queues NOTIFYs); ``Deactivating <event> ...`` lines."""
        ...

    def rpc_deactivate_subscription(
        self, aor: str, event: str, contact: str, *, now: float
    ) -> list[str]:
        """Terminate one subscription (Kamailio faults 600 ``Not implemented``)."""
        ...

    def rpc_all_appearances(self) -> list[str]:
        """``<aor> <index> <state> <mtime> <owner> <callee> <call-id> <from-tag> <to-tag>``."""
        ...

    def rpc_show_appearance(self, aor: str, index: int | None) -> list[str]:
        """One line's appearances (Kamailio faults 600 ``Not yet implemented``)."""
        ...

    def rpc_seize_appearance(self, aor: str, owner: str, *, now: float) -> list[str]:
        """``["Seized <aor> appearance-index <n> for <owner>"]``; queues the broadcast."""
        ...

    def rpc_update_appearance(
        self, aor: str, index: int, state: str, uri: str | None, *, now: float
    ) -> list[str]:
        """Set an appearance's state (and appearance-uri); ``idle`` releases it as
        :meth:`rpc_release_appearance` does. No output on success."""
        ...

    def rpc_release_appearance(self, aor: str, index: int, *, now: float) -> list[str]:
        """Remove an appearance; no output on success."""
        ...


@runtime_checkable
class ManagementBackend(Protocol):
    """What the management plane needs from the running server, and nothing more."""

    @property
    def sca(self) -> ScaRpc:
        """The SCA engine (a plain attribute satisfies this too)."""
        ...

    def now(self) -> float:
        """Epoch seconds; the one clock the RPC layer uses, so tests can freeze it."""
        ...

    def after_change(self) -> None:
        """Flush what an ``sca.*`` command queued (NOTIFYs, DB writes).

        Called after every command that may change state, also when it faulted: a fault such
        as ``Failed to NOTIFY subscribers`` comes after the state has already changed.
        """
        ...

    def version(self) -> str:
        """Server name and version, e.g. ``sipsca 0.1.0``."""
        ...

    def uptime(self) -> float:
        """Seconds since start."""
        ...

    def bindings(self) -> list[dict[str, object]]:
        """Registrar dump: ``aor``, ``contact``, ``expires`` (seconds left), ``q``,
        ``received``, ``user_agent``, ``instance`` per binding."""
        ...

    def stats(self) -> dict[str, float]:
        """Named counters and gauges, keyed ``group.name`` or ``group:name`` (Kamailio)."""
        ...

    def set_log_level(self, level: str) -> str:
        """Change the log level; returns the new name; ValueError for an unknown name."""
        ...

    def log_level(self) -> str:
        """The current log level name."""
        ...


class RpcFault(Exception):
    """A Kamailio-style RPC fault: answered as ``{"code": code, "message": message}``.

    Raised by the argument checks of :mod:`sipsca.rpc.methods`; the runtime may raise it (or
    any exception of the same shape) too.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def fault_of(exc: BaseException) -> tuple[int, str] | None:
    """Return ``(code, message)`` when ``exc`` is shaped like a fault, else None.

    Duck-typed on purpose (see the module docstring). ``bool`` is excluded because it is an
    ``int`` subclass and a ``code=True`` is certainly not a fault code.
    """
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(message, str):
        return code, message
    return None
