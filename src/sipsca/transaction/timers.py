"""RFC 3261 17 transaction timers A-M and their durations (RFC 3261 Table 4, RFC 6026).

Every duration derives from T1, T2 and T4 (plus the proxy's timer C), so they are computed
once per layer from :class:`~sipsca.config.TransactionConfig` instead of on every message.
Pure arithmetic: no clock is read here, deadlines are ``now + duration`` in the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sipsca.config import TransactionConfig
from sipsca.errors import ConfigError

__all__ = ["TIMER_D_MINIMUM", "Timer", "TimerValues"]

TIMER_D_MINIMUM = 32.0
"""RFC 3261 17.1.1.2: timer D is "at least 32 seconds for unreliable transports"."""


class Timer(StrEnum):
    """The RFC 3261 17 timers (plus L and M from RFC 6026) and who owns them.

    A, B, D: INVITE client (retransmit, timeout, wait for response retransmissions);
    C: proxy INVITE client (RFC 3261 16.6 step 11, 16.8);
    E, F, K: non-INVITE client (retransmit, timeout, wait);
    G, H, I: INVITE server (retransmit final, wait for ACK, absorb ACK retransmissions);
    J: non-INVITE server (absorb request retransmissions);
    L: INVITE server Accepted state, M: INVITE client Accepted state (RFC 6026).
    """

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"


@dataclass(frozen=True, slots=True)
class TimerValues:
    """Durations in seconds for unreliable transports; a reliable transport uses 0 for
    D, I, J and K and never arms the retransmission timers A, E and G (RFC 3261 Table 4).
    """

    t1: float
    """RTT estimate; first retransmission interval of A, E and G."""
    t2: float
    """Cap of the E and G retransmission intervals."""
    t4: float
    """Longest time a message stays in the network: timers I and K."""
    b: float
    """64*T1: INVITE client gives up (also F, H, J, L, M)."""
    c: float
    """Proxy INVITE timer C, more than 3 minutes; 0 when the layer does not run it."""
    d: float
    """Client INVITE Completed state: max(32 s, 64*T1)."""

    @classmethod
    def from_config(cls, config: TransactionConfig, *, timer_c: bool = False) -> TimerValues:
        """Derive every duration from the configured base values; ``timer_c`` says whether
        the layer runs the proxy's timer C itself.

        Raises:
            ConfigError: T1 or T2 not positive, T2 below T1, T4 negative, or timer C not
                positive while enabled (a zero retransmission interval would spin).
        """
        t1 = config.t1  # ``not x > 0`` refuses NaN too
        if not t1 > 0:
            raise ConfigError(f"transaction.t1 must be > 0 seconds, not {t1:g}")
        if not config.t2 >= t1:
            raise ConfigError(
                f"transaction.t2 ({config.t2:g} s) must be >= transaction.t1 ({t1:g} s)"
            )
        if not config.t4 >= 0:
            raise ConfigError(f"transaction.t4 must be >= 0 seconds, not {config.t4:g}")
        if timer_c and not config.timer_c > 0:
            raise ConfigError(f"transaction.timer_c must be > 0 seconds, not {config.timer_c:g}")
        return cls(
            t1=t1,
            t2=config.t2,
            t4=config.t4,
            b=64 * t1,
            c=config.timer_c if timer_c else 0.0,
            d=max(TIMER_D_MINIMUM, 64 * t1),
        )
