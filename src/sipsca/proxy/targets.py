"""Target sets built from registrar bindings (RFC 3261 16.5, 16.6 q-value ordering).

No lookups happen here: the runtime reads the bindings from storage and passes them in,
together with ``now`` (epoch seconds, like :class:`~sipsca.registrar.model.Binding`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.sip.fields import parse_name_addr
from sipsca.sip.uri import SipUri, parse_uri, uri_equal

if TYPE_CHECKING:
    from sipsca.registrar.model import Binding

__all__ = ["Target", "TargetSet", "ordered_targets"]


def _q_key(q: float) -> int:
    # RFC 3261 20.10: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ),
    # so three decimals identify a q-value exactly; float noise must not split a group.
    return round(q * 1000)


def ordered_targets(bindings: Iterable[Binding], *, now: float) -> list[list[Binding]]:
    """Group the live bindings of an AoR by q-value, highest q first.

    RFC 3261 16.6 leaves the order to the proxy; the usual reading (Kamailio's
    ``t_load_contacts``/``t_next_contacts``) is "parallel within a q group, sequential
    across groups". Within a group the most recently refreshed binding comes first
    (usrloc's order), then input order.

    Args:
        bindings: the AoR's bindings, any order.
        now: epoch seconds; bindings with ``expires_at <= now`` are dropped.

    Returns:
        Non-empty groups; an empty list when no binding is live.
    """
    live = [b for b in bindings if b.expires_at > now]
    live.sort(key=lambda b: (-_q_key(b.q), -b.updated_at))
    groups: list[list[Binding]] = []
    for binding in live:
        if groups and _q_key(groups[-1][0].q) == _q_key(binding.q):
            groups[-1].append(binding)
        else:
            groups.append([binding])
    return groups


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One place to fork a request to."""

    uri: str
    """The Request-URI of the branch (a binding's Contact URI)."""
    q: float = 1.0
    path: tuple[str, ...] = ()
    """Route values to pre-load (RFC 3327 Path of the binding)."""
    received: str = ""
    """Flow the binding was registered from (``transport:host:port``); empty: resolve ``uri``."""
    instance_id: str = ""


def _contact_uri(text: str) -> str:
    # Bindings normally store the bare URI; tolerate a stored name-addr ``<sip:...>;p``.
    stripped = text.strip()
    return parse_name_addr(stripped, "Contact").uri_text if "<" in stripped else stripped


class TargetSet:
    """The target set of one request context (RFC 3261 16.5).

    "If the Request-URI indicates a resource at this proxy, the proxy MUST replace it
    with the results of running a location service"; a URI is added only once:
    "a proxy MUST NOT add any URI to the target set that is already present" with
    RFC 3261 19.1.4 equality, and a URI tried before is not added again either (which
    keeps 3xx recursion, should it be added, loop-free).

    The runtime either takes every target at once (:meth:`take_all`, parallel forking
    in q order, what sipsca does) or one q group at a time (:meth:`next_group`).
    """

    __slots__ = ("_seen", "_waiting")

    def __init__(self) -> None:
        self._waiting: list[Target] = []
        self._seen: list[SipUri | str] = []

    def _known(self, uri: str) -> bool:
        try:
            parsed: SipUri | str = parse_uri(uri)
        except RemoteProtocolError:
            parsed = uri
        for seen in self._seen:
            if isinstance(seen, SipUri) and isinstance(parsed, SipUri):
                if uri_equal(seen, parsed):
                    return True
            elif seen == parsed:
                return True
        self._seen.append(parsed)
        return False

    def add(self, target: Target) -> bool:
        """Add ``target`` unless an equal URI was already added; returns whether it was."""
        if self._known(target.uri):
            return False
        self._waiting.append(target)
        self._waiting.sort(key=lambda t: -_q_key(t.q))  # stable: equal q keep arrival order
        return True

    def add_bindings(self, bindings: Iterable[Binding], *, now: float) -> int:
        """Add the live ``bindings`` (see :func:`ordered_targets`); returns how many were new."""
        added = 0
        for group in ordered_targets(bindings, now=now):
            for b in group:
                target = Target(
                    uri=_contact_uri(b.contact),
                    q=b.q,
                    path=b.path,
                    received=b.received,
                    instance_id=b.instance_id,
                )
                added += self.add(target)
        return added

    def next_group(self) -> list[Target]:
        """Remove and return the waiting targets with the highest q (sequential forking)."""
        if not self._waiting:
            return []
        q = _q_key(self._waiting[0].q)
        group = [t for t in self._waiting if _q_key(t.q) == q]
        self._waiting = self._waiting[len(group) :]
        return group

    def take_all(self) -> list[Target]:
        """Remove and return every waiting target, highest q first (parallel forking)."""
        out, self._waiting = self._waiting, []
        return out

    def __len__(self) -> int:
        return len(self._waiting)

    def __bool__(self) -> bool:
        return bool(self._waiting)
