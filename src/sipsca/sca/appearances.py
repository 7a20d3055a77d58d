"""The appearance table: per shared line, the non-idle appearances keyed by index.

Kamailio keeps a sorted list per AoR under a lock; here one dict per line is enough
because the engine is single-threaded, which also makes a seize atomic by
construction (decisions.md #10): "is index N free?" and "take N" happen in one
method call, so of N simultaneous seizes for one index exactly one wins.

Every mutation goes through this class so that each state change produces exactly
one structured log line and one listener call (which the engine turns into effects
and broadcasts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from sipsca.sca.model import Appearance, AppearanceState

__all__ = ["AppearanceListener", "AppearanceTable", "dialog_score"]

logger = logging.getLogger(__name__)

IDLE = AppearanceState.IDLE
MAX_INDEX = 99_999
"""Highest appearance index taken even without ``max_appearances`` (storage columns are
32-bit integers; no phone has more line keys)."""
_RINGING = frozenset((AppearanceState.PROGRESSING, AppearanceState.ALERTING))


class AppearanceListener(Protocol):
    def appearance_changed(
        self, appearance: Appearance, old: AppearanceState, *, released: bool, visible: bool
    ) -> None:
        """``appearance`` changed (``released``: it was removed; ``visible``: the wire
        rendering may differ, so subscribers must be notified)."""


def dialog_score(appearance: Appearance, call_id: str, tag_a: str, tag_b: str) -> int:
    """How well a message dialog (Call-ID, tag, tag) matches the stored one.

    Tags match in either orientation (decisions.md #2): 3 = both tags match, 1 = one
    tag matches (e.g. a provisional from another fork, or an unanswered call), 0 = no
    match. The Call-ID must always be equal.
    """
    if not call_id or appearance.call_id != call_id:
        return 0
    stored = {t for t in (appearance.from_tag, appearance.to_tag) if t}
    given = {t for t in (tag_a, tag_b) if t}
    common = stored & given
    if not common:
        return 0
    return 3 if len(common) == 2 or (len(stored) == len(given) == 1) else 1


class AppearanceTable:
    """All appearances of all lines, with the seize/update/release/purge rules."""

    def __init__(self, listener: AppearanceListener, *, max_appearances: int = 0) -> None:
        self._lines: dict[str, dict[int, Appearance]] = {}
        self._listener = listener
        self.max_appearances = max_appearances

    # -- queries ---------------------------------------------------------------------

    def lines(self) -> list[str]:
        """AoRs that currently have at least one appearance."""
        return [aor for aor, table in self._lines.items() if table]

    def has_line(self, aor: str) -> bool:
        return bool(self._lines.get(aor))

    def all(self, aor: str) -> list[Appearance]:
        """The line's appearances in ascending index order."""
        table = self._lines.get(aor, {})
        return [table[i] for i in sorted(table)]

    def every(self) -> list[Appearance]:
        return [a for aor in sorted(self._lines) for a in self.all(aor)]

    def get(self, aor: str, index: int) -> Appearance | None:
        return self._lines.get(aor, {}).get(index)

    def find_by_dialog(
        self, aor: str, call_id: str, tag_a: str, tag_b: str = ""
    ) -> Appearance | None:
        """The appearance of this call (Call-ID and a tag, either orientation)."""
        best: Appearance | None = None
        best_score = 0
        for appearance in self.all(aor):
            score = dialog_score(appearance, call_id, tag_a, tag_b)
            if score > best_score:
                best, best_score = appearance, score
        return best

    def owned_by(self, aor: str, owner: str) -> list[Appearance]:
        return [a for a in self.all(aor) if a.owner == owner]

    def next_free(self, aor: str) -> int | None:
        """Lowest free index (gaps are re-used), None when the line is full."""
        table = self._lines.get(aor, {})
        index = 1
        while index in table:
            index += 1
        if self.max_appearances > 0 and index > self.max_appearances:
            return None
        return index

    # -- mutations -------------------------------------------------------------------

    def seize(
        self,
        aor: str,
        owner: str,
        *,
        now: float,
        index: int = 0,
        state: AppearanceState = AppearanceState.SEIZED,
        call_id: str = "",
        from_tag: str = "",
        to_tag: str = "",
        uri: str = "",
        callee: str = "",
    ) -> Appearance | None:
        """Take ``index`` (0 = lowest free) for ``owner``; None when taken or over the bound."""
        table = self._lines.setdefault(aor, {})
        if index <= 0:
            free = self.next_free(aor)
            if free is None:
                return None
            index = free
        elif (
            index in table
            or index > MAX_INDEX
            or (self.max_appearances > 0 and index > self.max_appearances)
        ):
            return None
        appearance = Appearance(
            aor=aor,
            index=index,
            state=state,
            owner=owner,
            callee=callee,
            uri=uri,
            call_id=call_id,
            from_tag=from_tag,
            to_tag=to_tag,
            created_at=now,
            changed_at=now,
        )
        table[index] = appearance
        self._changed(appearance, IDLE, released=False, visible=True)
        return appearance

    def set_state(self, appearance: Appearance, state: AppearanceState, now: float) -> bool:
        """Change the state (mtime := now); False when it already was ``state``."""
        old = appearance.state
        if old is state:
            return False
        appearance.state = state
        appearance.changed_at = now
        self._changed(appearance, old, released=False, visible=old.wire_name != state.wire_name)
        return True

    def touch(self, appearance: Appearance, *, visible: bool = False) -> None:
        """Fields other than the state were edited in place: persist (and maybe notify)."""
        self._changed(appearance, appearance.state, released=False, visible=visible)

    def release(self, aor: str, index: int) -> Appearance | None:
        """Remove the appearance (the index becomes idle); None when not in use."""
        table = self._lines.get(aor)
        if not table or index not in table:
            return None
        appearance = table.pop(index)
        if not table:
            del self._lines[aor]
        self._changed(appearance, appearance.state, released=True, visible=True)
        return appearance

    def move(self, appearance: Appearance, index: int, now: float) -> Appearance | None:
        """Re-key an appearance to a free ``index`` (a member answered on another key)."""
        if self.get(appearance.aor, index) is not None or index <= 0:
            return None
        if self.max_appearances > 0 and index > self.max_appearances:
            return None
        self.release(appearance.aor, appearance.index)
        moved = replace(appearance, index=index, changed_at=now)
        self._lines.setdefault(appearance.aor, {})[index] = moved
        self._changed(moved, IDLE, released=False, visible=True)
        return moved

    def put(self, appearance: Appearance) -> None:
        """Restore a stored appearance as is (start-up); replaces the index if present."""
        self._lines.setdefault(appearance.aor, {})[appearance.index] = appearance

    def stale(
        self, now: float, seized_ttl: float, pending_ttl: float, ringing_ttl: float
    ) -> tuple[list[Appearance], list[Appearance]]:
        """(appearances to release: SEIZED unchanged for >= seized_ttl, PROGRESSING or
        ALERTING unchanged for >= ringing_ttl; ACTIVE_PENDING unchanged for >= pending_ttl)."""
        release: list[Appearance] = []
        pending: list[Appearance] = []
        for appearance in self.every():
            age = now - appearance.changed_at
            state = appearance.state
            ttl = seized_ttl if state is AppearanceState.SEIZED else ringing_ttl
            if (state is AppearanceState.SEIZED or state in _RINGING) and age >= ttl:
                release.append(appearance)
            elif state is AppearanceState.ACTIVE_PENDING and age >= pending_ttl:
                pending.append(appearance)
        return release, pending

    def load(self, appearances: Iterable[Appearance]) -> None:
        for appearance in appearances:
            self.put(appearance)

    def _changed(
        self, appearance: Appearance, old: AppearanceState, *, released: bool, visible: bool
    ) -> None:
        new = IDLE if released else appearance.state
        if old is not new and logger.isEnabledFor(logging.INFO):
            logger.info(
                "appearance %s index %d %s -> %s owner=%s call-id=%s",
                appearance.aor,
                appearance.index,
                old.value,
                new.value,
                appearance.owner,
                appearance.call_id,
                extra={
                    "sca": {
                        "kind": "appearance",
                        "aor": appearance.aor,
                        "index": appearance.index,
                        "old": old.value,
                        "new": new.value,
                        "owner": appearance.owner,
                        "call_id": appearance.call_id,
                        "from_tag": appearance.from_tag,
                        "to_tag": appearance.to_tag,
                    }
                },
            )
        self._listener.appearance_changed(appearance, old, released=released, visible=visible)
