"""SCA data model: appearances and call-info / line-seize subscriptions.

Times (``*_at``) are UNIX epoch seconds because they are persisted and must survive a
restart; the engine is always handed ``now`` as epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from operator import attrgetter

__all__ = [
    "Appearance",
    "AppearanceState",
    "ScaEvent",
    "Subscription",
    "SubscriptionState",
]


class AppearanceState(StrEnum):
    """State of one appearance (line key) of a shared line.

    ``ACTIVE_PENDING`` is internal (an answered call before its ACK); on the wire it is
    ``active``. Idle appearances are not stored: absence means idle.
    """

    IDLE = "idle"
    SEIZED = "seized"
    PROGRESSING = "progressing"
    ALERTING = "alerting"
    ACTIVE_PENDING = "active-pending"
    ACTIVE = "active"
    HELD = "held"
    HELD_PRIVATE = "held-private"

    @property
    def wire_name(self) -> str:
        """The ``appearance-state`` value sent in Call-Info."""
        return "active" if self is AppearanceState.ACTIVE_PENDING else self.value

    @classmethod
    def from_wire(cls, name: str) -> AppearanceState:
        """Parse an ``appearance-state`` value (exact, case-sensitive, like Kamailio).

        Raises:
            ValueError: the name is not a known state.
        """
        if name == "active-pending":
            raise ValueError(name)
        return cls(name)


class ScaEvent(StrEnum):
    """The two SCA event packages; ``db_code`` is Kamailio's integer in ``sca_subscriptions``."""

    CALL_INFO = "call-info"
    LINE_SEIZE = "line-seize"

    @property
    def db_code(self) -> int:
        return 1 if self is ScaEvent.CALL_INFO else 2

    @classmethod
    def from_db_code(cls, code: int) -> ScaEvent:
        return cls.CALL_INFO if code == 1 else cls.LINE_SEIZE


class SubscriptionState(IntEnum):
    """Subscription states with Kamailio's integer codes (stored in the ``state`` column)."""

    ACTIVE = 0
    PENDING = 1
    TERMINATED = 2
    TERMINATED_DEACTIVATED = 3
    TERMINATED_GIVEUP = 4
    TERMINATED_NORESOURCE = 5
    TERMINATED_PROBATION = 6
    TERMINATED_REJECTED = 7
    TERMINATED_TIMEOUT = 8

    @property
    def header_value(self) -> str:
        """The ``Subscription-State`` value without ``expires``."""
        return _STATE_HEADER[self]

    @property
    def is_terminated(self) -> bool:
        return self >= SubscriptionState.TERMINATED


_STATE_HEADER = {
    SubscriptionState.ACTIVE: "active",
    SubscriptionState.PENDING: "pending",
    SubscriptionState.TERMINATED: "terminated",
    SubscriptionState.TERMINATED_DEACTIVATED: "terminated;reason=deactivated",
    SubscriptionState.TERMINATED_GIVEUP: "terminated;reason=giveup",
    SubscriptionState.TERMINATED_NORESOURCE: "terminated;reason=noresource",
    SubscriptionState.TERMINATED_PROBATION: "terminated;reason=probation",
    SubscriptionState.TERMINATED_REJECTED: "terminated;reason=rejected",
    SubscriptionState.TERMINATED_TIMEOUT: "terminated;reason=timeout",
}


@dataclass(slots=True)
class Appearance:
    """One non-idle appearance of a shared line.

    The dialog is stored as the initial INVITE had it (``from_tag`` = caller's tag,
    ``to_tag`` = callee's tag) and matched in both orientations, which fixes Kamailio's
    answered-call bugs (decisions.md #2).
    """

    aor: str
    index: int
    state: AppearanceState
    owner: str = ""
    """Contact URI of the phone that owns the appearance."""
    callee: str = ""
    """The remote party: its Contact (calls the line placed) or From URI (calls it answered)."""
    uri: str = ""
    """Stored appearance-uri: ``<uri>`` or ``display <uri>`` (display already escaped)."""
    call_id: str = ""
    from_tag: str = ""
    to_tag: str = ""
    created_at: float = 0.0
    changed_at: float = 0.0
    """Epoch seconds of the last state change; drives the stale purge."""
    private_owner: str = ""
    """Contact that put the call on private hold (only it may retrieve it)."""

    def copy(self) -> Appearance:
        """An independent copy (what ``dataclasses.replace(a)`` gives, five times faster:
        every state change persists one)."""
        return Appearance(*_appearance_values(self))


@dataclass(slots=True)
class Subscription:
    """A call-info or line-seize subscription of one phone (Contact) to one line (AoR).

    Field names follow Kamailio's ``sca_subscriptions`` columns so that a Kamailio
    database restores as is.
    """

    subscriber: str
    """The SUBSCRIBE's Contact URI: the NOTIFY Request-URI and the identity of the subscription."""
    aor: str
    event: ScaEvent
    expires_at: int
    """Absolute epoch second of expiry."""
    state: SubscriptionState
    call_id: str
    from_tag: str
    """The subscriber's tag (To-tag of our NOTIFYs)."""
    to_tag: str
    """Our tag (From-tag of our NOTIFYs)."""
    index: int = 0
    """line-seize: the seized appearance index; call-info: 0."""
    record_route: str = ""
    """Record-Route values of the SUBSCRIBE joined by ``,`` (the NOTIFY route set)."""
    notify_cseq: int = 0
    """CSeq of the last NOTIFY sent in this dialog."""
    subscribe_cseq: int = 0
    server_id: int = 0
    flow: str = ""
    """Runtime hint: the transport flow the SUBSCRIBE came on (e.g. ``tcp:127.0.0.1:40000``)."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, ScaEvent, str]:
        """The identity of a subscription: (AoR, event, subscriber Contact)."""
        return (self.aor, self.event, self.subscriber)

    def copy(self) -> Subscription:
        """An independent copy, ``extra`` included (what
        ``dataclasses.replace(s, extra=dict(s.extra))`` gives, five times faster: every
        NOTIFY persists one)."""
        copy = Subscription(*_subscription_values(self))
        copy.extra = dict(self.extra)
        return copy


# Every field in __init__ order: copies pass them positionally.
_appearance_values = attrgetter(*(f.name for f in fields(Appearance)))
_subscription_values = attrgetter(*(f.name for f in fields(Subscription)))
