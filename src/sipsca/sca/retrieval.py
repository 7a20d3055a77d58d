"""Held-call retrieval (sca-behaviour.md §5.8): a member picks up a call held on another phone.

The INVITE names the held appearance's index in its Call-Info; it is sent to the far end
of the held call with ``Replaces`` instead of being routed (decision #4: a
``held-private`` appearance can only be retrieved by its own phone, others get 403).
The appearance is kept as it was, so a failed retrieval can put it back.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sipsca.sca.aor import parse_uri_or_none, user_of
from sipsca.sca.call_info import CallInfoScan, domain_of
from sipsca.sca.call_state import HOLD_STATES, Leg, RequestOutcome, Tx, set_dialog
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState
from sipsca.sca.sdp import HoldState
from sipsca.sip.message import SipRequest, make_response

__all__ = ["retrieve", "roll_back"]

logger = logging.getLogger(__name__)

S = AppearanceState


def retrieve(
    core: ScaCore,
    request: SipRequest,
    leg: Leg,
    scan: CallInfoScan,
    caller: str,
    hold: HoldState,
    now: float,
    tx: Tx,
) -> RequestOutcome | None:
    """§5.8: a member picks up a call held on another phone. None = not a retrieval."""
    if hold is HoldState.HELD or scan.index <= 0:
        return None
    target = core.pick_line(core.directory.callee_candidates(leg.to, None))
    if target != caller:
        return None
    table = core.appearances
    held = table.get(caller, scan.index)
    if held is None or held.state not in HOLD_STATES:
        return None
    if held.state is S.HELD_PRIVATE and leg.contact != (held.private_owner or held.owner):
        logger.info(
            "retrieval of private hold %s index %d by %s refused",
            caller,
            held.index,
            leg.contact,
        )
        reject = make_response(request, 403, "Forbidden - private call", to_tag=core.tag_factory())
        return RequestOutcome(reject=reject)
    if not held.to_tag or not held.callee:
        return None
    tx.backup = replace(held)
    tx.caller_index = held.index
    old = (held.call_id, held.from_tag, held.to_tag)
    # The Request-URI stays as received: the runtime sends the copy to retrieval_target
    # (through its location service when that is served here), and the loop-detecting
    # branch hashes the Request-URI as received (RFC 3261 16.6 step 8).
    request.headers.add("Replaces", f"{old[0]};to-tag={old[2]};from-tag={old[1]}")
    held.owner = leg.contact
    held.private_owner = ""
    set_dialog(core, held, leg.call_id, leg.from_tag, "")
    table.set_state(held, S.ACTIVE, now)
    _remote_side(core, held, caller, old, leg)
    logger.info(
        "retrieval of %s index %d by %s -> %s", caller, held.index, leg.contact, held.callee
    )
    return RequestOutcome(retrieval_target=held.callee)


def _remote_side(
    core: ScaCore, held: Appearance, caller: str, old: tuple[str, str, str], leg: Leg
) -> None:
    """§5.8 step 4: the remote party is itself a line: point its appearance at us."""
    remote_uri = parse_uri_or_none(held.callee)
    user = user_of(held.callee)
    if remote_uri is None or not user:
        return
    remote = f"sip:{user}@{domain_of(caller)}"
    if remote == caller or not core.is_line(remote):
        return
    appearance = core.appearances.find_by_dialog(remote, *old)
    if appearance is not None:
        appearance.callee = leg.contact
        set_dialog(core, appearance, leg.call_id, leg.from_tag, "")


def roll_back(core: ScaCore, backup: Appearance, leg: Leg, now: float) -> None:
    """Put back the appearance a failed INVITE changed: a failed retrieval leaves the call
    held where it was (Kamailio shows idle), a failed hold or resume re-INVITE leaves the
    state it announced (decisions.md 41)."""
    table = core.appearances
    current = table.get(backup.aor, backup.index)
    if current is None or current.call_id != leg.call_id:
        return
    current.owner = backup.owner
    current.callee = backup.callee
    current.uri = backup.uri
    current.private_owner = backup.private_owner
    set_dialog(core, current, backup.call_id, backup.from_tag, backup.to_tag)
    table.set_state(current, backup.state, now)
    what = "retrieval" if backup.call_id != leg.call_id else "re-INVITE"
    logger.info("%s of %s index %d failed: restored", what, backup.aor, backup.index)
