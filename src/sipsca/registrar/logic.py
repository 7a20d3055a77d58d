"""The registrar's decisions: what a REGISTER does to the bindings of one AoR (RFC 3261 10.3).

Pure code, no I/O. The runtime applies ``upserts``/``deletes`` to its in-memory binding
table (where lookups happen) and sends ``response``; the database gets them through the
write-back (``db_update_interval``, or at once with 0) like subscriptions, so a database
outage never fails a REGISTER (RFC 3261 10.3 step 7's all-or-nothing holds for the table
the registrar answers from; decisions.md 32).

Extensions handled besides RFC 3261:

* RFC 3327 Path: the Path header values are stored with each binding so the proxy can
  reach a UA behind an edge proxy, and echoed in the 200 when the UA supports ``path``.
* RFC 5626 outbound: a Contact with ``+sip.instance`` and ``reg-id`` binds the AoR to
  that (instance, reg-id) pair instead of to the Contact URI, so a phone that changes
  address or reconnects replaces its old flow instead of adding a stale one.

Times are epoch seconds (``now``): bindings are persisted and must survive a restart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, unquote_to_bytes

from sipsca.config import RegistrarConfig
from sipsca.errors import RemoteProtocolError
from sipsca.registrar.model import Binding
from sipsca.sip.address import Flow
from sipsca.sip.fields import NameAddr
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.uri import SipUri, parse_uri, uri_equal, uri_match_key

__all__ = ["RegisterDecision", "aor_of", "decide_register", "lookup_targets"]

# RFC 3261 10.3 step 7 / 10.2.1: "Malformed values SHOULD be treated as equivalent to
# 3600" and values above 2**32-1 MAY be treated as 2**32-1 (also 20.19 for Expires).
_MALFORMED_EXPIRES = 3600
_MAX_DELTA_SECONDS = 2**32 - 1
# RFC 3261 10.3 step 7: 423 only "if ... greater than zero AND smaller than one hour AND
# less than a registrar-configured minimum".
_ONE_HOUR = 3600

# RFC 3261 25.1: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE_RE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
# RFC 5626 4.2: reg-id = "reg-id" EQUAL 1*DIGIT ; 1 to (2^31 - 1)
_REG_ID_RE = re.compile(r"^[0-9]{1,10}$")

# Characters left unescaped in the canonical user part: RFC 3261 25.1 unreserved plus
# user-unreserved. Everything else is %HH (upper-case), so equivalent spellings of one
# user ("%61lice" / "alice") give one key, and the key stays a valid SIP URI.
_USER_SAFE = "-_.!~*'()&=+$,;?/"


def aor_of(uri: SipUri) -> str:
    """The canonical address-of-record key of ``uri``: ``scheme:user@host``.

    RFC 3261 10.3 step 5 says to remove every URI parameter and to unescape the user
    part; the result "serves as an index into the list of bindings". On top of that:

    * the host is lower-cased (hosts compare case-insensitively, 19.1.4);
    * the port is dropped: ``sip:alice@example.com:5060`` is the same user as
      ``sip:alice@example.com`` for a location service (Kamailio's usrloc ignores it too);
    * the user part is re-escaped canonically (see ``_USER_SAFE``) rather than left
      unescaped, so ``%40`` cannot forge an ``@`` and the key is itself a URI;
    * the scheme is kept: ``sips:`` and ``sip:`` AoRs are distinct keys, so a lookup
      for a ``sip:`` target never hands out a binding made under a ``sips:`` AoR (and
      its TLS-only promise); callers wanting both must look both up.

    Non-SIP URIs cannot be registered (:func:`decide_register` answers 400); for them
    the key is ``tel:number`` or the URI text, which simply never matches a binding.

    This function is used both when storing (REGISTER To) and when looking up
    (Request-URI), so the two always agree.
    """
    if uri.scheme == "tel":
        return f"tel:{uri.user}"
    if not uri.is_sip:
        return str(uri)
    user = quote_from_bytes(unquote_to_bytes(uri.user), safe=_USER_SAFE) if uri.user else ""
    userinfo = f"{user}@" if user else ""
    return f"{uri.scheme}:{userinfo}{uri.host.lower()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterDecision:
    """What a REGISTER does: the response plus the binding changes to persist first.

    ``upserts`` are complete bindings to insert or replace, keyed by (aor, contact);
    ``deletes`` are (aor, contact) keys, never one of the upserted keys, so the two may be
    applied in any order. Both are empty when the request is rejected (RFC 3261 10.3: a
    failed request changes nothing). Expired bindings passed in are always deleted.
    """

    response: SipResponse
    upserts: tuple[Binding, ...] = ()
    deletes: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Slot:
    """One binding while a request is applied: where it started and where it ends."""

    original: Binding | None
    binding: Binding | None
    touched: bool = False


@dataclass(frozen=True, slots=True)
class _ContactRequest:
    """One Contact value of the REGISTER, validated."""

    contact: NameAddr
    uri: SipUri
    expires: int
    q: float | None
    instance_id: str
    reg_id: int


def decide_register(
    request: SipRequest,
    current: Sequence[Binding],
    *,
    aor: str,
    source: Flow,
    now: float,
    config: RegistrarConfig,
    to_tag: str,
) -> RegisterDecision:
    """Apply a REGISTER to the bindings of ``aor`` (RFC 3261 10.3 steps 6-8).

    Authentication (steps 3-4) and checking that ``aor`` belongs to a served domain
    (step 5, 404) are the caller's, which also computes ``aor`` (normally
    ``aor_of(request.to.uri)``, possibly after mapping aliases).

    Args:
        request: the REGISTER.
        current: the stored bindings of ``aor``; expired ones are treated as absent and
            deleted, bindings of other AoRs are ignored.
        aor: the canonical AoR key the bindings are stored under.
        source: the flow the request arrived on; stored as ``received`` so requests
            reach a phone behind NAT at the address it registered from.
        now: epoch seconds.
        config: expiry bounds and the per-AoR contact limit.
        to_tag: the To tag of the response.

    Returns:
        The decision: apply ``deletes`` and ``upserts``, send ``response``. Peer errors
        never raise: a malformed REGISTER gets a returned 400 whose reason names the
        problem.
    """

    def reject(
        status: int, reason: str | None = None, extra: list[tuple[str, str]] | None = None
    ) -> RegisterDecision:
        return RegisterDecision(
            response=make_response(request, status, reason, to_tag=to_tag, extra=extra)
        )

    try:
        # RFC 3261 10.2: the To AoR "MUST be a SIP URI or SIPS URI" (RFC 4475 3.3.4 unksm2).
        if not request.to.uri.is_sip:
            return reject(400, "To must be a SIP or SIPS URI")
        call_id = request.call_id
        cseq = request.cseq.number
        contacts = request.contacts
        header_expires = _expires_header(request)
        supported = _option_tags(request, "supported")
        path = tuple(request.headers.values("path"))
        wanted = [
            _contact_request(c, header_expires, config) for c in contacts if c.uri_text != "*"
        ]
    except RemoteProtocolError as exc:
        status = exc.status_hint if 400 <= exc.status_hint < 700 else 400
        return reject(status, exc.reason)
    if len(wanted) > MAX_CONTACTS_PER_REGISTER:
        return reject(403, "Too many Contacts in one REGISTER")

    live: list[Binding] = []
    deletes: list[tuple[str, str]] = []
    for b in current:
        if b.aor != aor:
            continue
        if b.expires_at > now:
            live.append(b)
        else:
            deletes.append((b.aor, b.contact))
    slots = [_Slot(original=b, binding=b) for b in live]

    # RFC 3261 10.3 step 6: "*" must be the only Contact and needs "Expires: 0".
    if any(c.uri_text == "*" for c in contacts):
        if len(contacts) != 1:
            return reject(400, "Wildcard Contact must be the only Contact")
        if header_expires != 0:
            return reject(400, "Wildcard Contact requires Expires: 0")
        for slot in slots:
            assert slot.original is not None
            # Same Call-ID: remove "only if the CSeq in the request is higher than the
            # value stored for that binding. Otherwise, the update MUST be aborted and
            # the request fails." (see _OUT_OF_ORDER for the status code).
            if slot.original.call_id == call_id and cseq <= slot.original.cseq:
                return reject(*_OUT_OF_ORDER)
            slot.binding = None
            slot.touched = True
        return _finish(
            request, aor, slots, deletes, path, supported, outbound=False, now=now, to_tag=to_tag
        )

    # RFC 3261 10.3 step 7: 423 stops the whole request ("It then skips the remaining steps").
    for w in wanted:
        if 0 < w.expires < _ONE_HOUR and w.expires < config.min_expires:
            return reject(423, None, [("Min-Expires", str(config.min_expires))])

    outbound = _outbound_applies(request, wanted, supported, path)
    if outbound is None:
        return reject(439, "First Hop Lacks Outbound Support")
    if outbound and sum(1 for w in wanted if w.expires > 0) > 1:
        # RFC 5626 6: a reg-id registration binds one flow, so with a reg-id present "if
        # the Contact header field contains more than one header field value with a
        # non-zero expiration ... the entire registration SHOULD be rejected with a 400".
        return reject(400, "Only one Contact may be registered with reg-id")

    user_agent = request.headers.get("user-agent") or ""
    index = _SlotIndex(slots)
    for w in wanted:
        reg_id = w.reg_id if outbound else 0
        match = index.find(w, reg_id)
        if match is not None and not match.touched:
            assert match.original is not None
            # RFC 3261 10.3 step 7: a different Call-ID replaces; the same Call-ID needs a
            # higher CSeq, "If not, the update MUST be aborted and the request fails."
            if match.original.call_id == call_id and cseq <= match.original.cseq:
                return reject(*_OUT_OF_ORDER)
        if w.expires == 0:
            if match is not None:
                match.binding = None
                match.touched = True
            continue
        binding = Binding(
            aor=aor,
            contact=w.contact.uri_text,
            expires_at=now + min(w.expires, config.max_expires),
            q=1.0 if w.q is None else w.q,
            call_id=call_id,
            cseq=cseq,
            path=path,
            instance_id=w.instance_id,
            reg_id=reg_id,
            received=str(source),
            user_agent=user_agent,
            updated_at=now,
        )
        if match is None:
            index.append(_Slot(original=None, binding=binding, touched=True), w.uri)
        else:
            match.binding = binding
            match.touched = True
            index.replaced(match, w.uri)

    _collapse_same_contact(slots)
    limit = config.max_contacts or UNLIMITED_CONTACTS_CEILING
    after = sum(1 for s in slots if s.binding is not None)
    # Refreshes and removals stay possible for an AoR already over a lowered limit.
    if after > limit and after > len(live):
        return reject(403, "Too many registered contacts")

    return _finish(
        request, aor, slots, deletes, path, supported, outbound=outbound, now=now, to_tag=to_tag
    )


MAX_CONTACTS_PER_REGISTER = 100
"""Contacts one REGISTER may carry (403 above). URIs equal under RFC 3261 19.1.4 can only
be found by comparing them pairwise (the relation is not transitive, so not hashable), and
Contacts that differ in an unchecked parameter share one index bucket: this bounds that
work per request (a REGISTER with 3,500 such Contacts took 15 s of CPU)."""
UNLIMITED_CONTACTS_CEILING = 1000
"""Bindings one AoR may hold when ``max_contacts`` is 0 ("unlimited"): for the same
reason, across REGISTERs."""


# RFC 3261 10.3 names no status for an out-of-order refresh ("the request fails"); the
# only status step 7 gives for a binding update that cannot be applied is "500 (Server
# Error)" ("If any one of them fails ... the request MUST fail with a 500"), which is
# also what other registrars send (e.g. JAIN-SIP examples, Asterisk, Kamailio's usrloc).
_OUT_OF_ORDER = (500, "Out of order request")


def lookup_targets(bindings: Sequence[Binding], *, now: float) -> list[Binding]:
    """The bindings a request for their AoR is forked to (RFC 3261 16.6 target set).

    Unexpired bindings only, highest ``q`` first (16.6 step 1 / 10.2.1.2 preference);
    among equal ``q``, the most recently updated first, so a phone that just
    re-registered is tried before a possibly stale one. Ties beyond that keep the input
    order (the sort is stable). RFC 5626 5.3: of the outbound flows of one instance
    (same ``+sip.instance``, a ``reg-id``) only the first in that order is used; the
    others are that phone's backup flows, not more phones.
    """
    alive = sorted((b for b in bindings if b.expires_at > now), key=lambda b: (-b.q, -b.updated_at))
    instances: set[str] = set()
    targets: list[Binding] = []
    for binding in alive:
        if binding.instance_id and binding.reg_id:
            if binding.instance_id in instances:
                continue
            instances.add(binding.instance_id)
        targets.append(binding)
    return targets


def _finish(
    request: SipRequest,
    aor: str,
    slots: list[_Slot],
    deletes: list[tuple[str, str]],
    path: tuple[str, ...],
    supported: frozenset[str],
    *,
    outbound: bool,
    now: float,
    to_tag: str,
) -> RegisterDecision:
    """Build the 200 and the change set from the slots (RFC 3261 10.3 step 8)."""
    upserts: list[Binding] = []
    keep: set[str] = set()
    for slot in slots:
        if slot.binding is not None:
            keep.add(slot.binding.contact)
    for slot in slots:
        if not slot.touched:
            continue
        if slot.binding is not None:
            upserts.append(slot.binding)
        # The storage key is (aor, contact): an outbound refresh from a new contact URI
        # replaces the old row, so the old key goes.
        if slot.original is not None and slot.original.contact not in keep:
            deletes.append((aor, slot.original.contact))
    extra: list[tuple[str, str]] = []
    # 10.3 step 8: "The response MUST contain Contact header field values enumerating
    # all current bindings. Each Contact value MUST feature an 'expires' parameter".
    # The "SHOULD include a Date header field" is skipped: the core formats no clock
    # time, and UAs use the per-contact expires, not Date.
    for slot in slots:
        if slot.binding is not None:
            extra.append(("Contact", _render_contact(slot.binding, now)))
    # RFC 3327 5.3: the registrar returns the Path values of the request in the 200 -
    # only to a UA that said it supports path (RFC 3261 8.2.2.3: no unrequested extensions).
    if path and "path" in supported:
        extra.extend(("Path", value) for value in path)
    if outbound:
        # RFC 5626 6: a registrar that processed reg-id MUST put "outbound" in Require.
        extra.append(("Require", "outbound"))
    response = make_response(request, 200, to_tag=to_tag, extra=extra)
    # Keys are disjoint, so the runtime may apply deletes and upserts in any order.
    written = {(b.aor, b.contact) for b in upserts}
    deletes = [key for key in dict.fromkeys(deletes) if key not in written]
    return RegisterDecision(response=response, upserts=tuple(upserts), deletes=tuple(deletes))


def _collapse_same_contact(slots: list[_Slot]) -> None:
    """Keep one binding per Contact text: storage rows are keyed by (aor, contact).

    Only RFC 5626 flows can collide (reg-id 1 and 2, or an outbound and a plain
    registration, from the same Contact URI). The binding written by this request wins;
    a UA's several flows through one Contact URI therefore collapse to its latest flow.
    """
    fresh = {s.binding.contact for s in slots if s.touched and s.binding is not None}
    for slot in slots:
        if not slot.touched and slot.binding is not None and slot.binding.contact in fresh:
            slot.binding = None
            slot.touched = True


def _render_contact(binding: Binding, now: float) -> str:
    """``<uri>;expires=N[;q=Q][;+sip.instance="..."][;reg-id=N]`` for the 200.

    The URI is the registered text verbatim inside ``<>`` so URI parameters stay URI
    parameters (RFC 4475 3.3.13 cparam02) and escaped headers survive (3.3.14 regescrt);
    unknown contact parameters of the request are not stored, hence not echoed
    (3.3.12 cparam01). ``q`` is shown when it differs from the implied 1.0: the model
    stores 1.0 for "no q".
    """
    remaining = max(0, round(binding.expires_at - now))
    out = f"<{binding.contact}>;expires={remaining}"
    if binding.q != 1.0:
        out += f";q={_format_q(binding.q)}"
    if binding.instance_id:
        out += f';+sip.instance="{binding.instance_id}"'
    if binding.reg_id:
        out += f";reg-id={binding.reg_id}"
    return out


def _format_q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class _SlotIndex:
    """Finds the binding a Contact refers to without comparing it to every binding.

    RFC 5626 6: with outbound, the binding "is between an AOR and the combination of the
    instance-id ... and the value of reg-id"; "the Contact URI is not used for binding
    comparisons". Otherwise RFC 3261 10.3 step 7: "searches the list of current
    bindings using the URI comparison rules" (19.1.4), among non-outbound bindings.
    Candidates are bucketed by :func:`uri_match_key`, so a REGISTER with thousands of
    Contacts for an AoR with thousands of bindings is linear, not quadratic. The first
    matching slot in slot order wins, as a scan would find it.
    """

    _SCAN = 8
    """Up to this many slots a plain scan is cheaper than building the index (the usual
    AoR has one to three bindings)."""

    def __init__(self, slots: list[_Slot]) -> None:
        self._slots = slots
        self._flows: dict[tuple[int, str], list[int]] = {}
        self._uris: dict[tuple[str, ...], list[tuple[int, SipUri | None]]] = {}
        self._indexed = 0
        """Slots ``[:_indexed]`` are in the index; the rest are scanned."""

    def replaced(self, slot: _Slot, uri: SipUri) -> None:
        """``slot``'s binding is now ``uri`` (equal to the one indexed, so in the same
        bucket): later Contacts compare with it, as a scan of the slots would."""
        if not self._indexed or _current(slot).reg_id:
            return
        bucket = self._uris.get(uri_match_key(uri), [])
        for i, (position, _) in enumerate(bucket):
            if self._slots[position] is slot:
                bucket[i] = (position, uri)
                return

    def append(self, slot: _Slot, uri: SipUri) -> None:
        self._slots.append(slot)
        if self._indexed == len(self._slots) - 1 and self._indexed:
            self._add(self._indexed, slot, uri)
            self._indexed += 1

    def _add(self, position: int, slot: _Slot, uri: SipUri | None) -> None:
        b = _current(slot)
        if b.reg_id:
            self._flows.setdefault((b.reg_id, b.instance_id), []).append(position)
            return
        if uri is None:
            try:
                uri = parse_uri(b.contact)
            except RemoteProtocolError:  # matched by its exact text only
                self._uris.setdefault(("", b.contact), []).append((position, None))
                return
        self._uris.setdefault(uri_match_key(uri), []).append((position, uri))

    def find(self, wanted: _ContactRequest, reg_id: int) -> _Slot | None:
        """The slot a Contact refers to, or None when it would be new."""
        slots = self._slots
        if len(slots) <= self._SCAN and not self._indexed:
            for slot in slots:
                b = _current(slot)
                if reg_id:
                    if b.reg_id == reg_id and b.instance_id == wanted.instance_id:
                        return slot
                elif not b.reg_id and _same_uri(b.contact, wanted.uri):
                    return slot
            return None
        while self._indexed < len(slots):
            self._add(self._indexed, slots[self._indexed], None)
            self._indexed += 1
        if reg_id:
            positions = self._flows.get((reg_id, wanted.instance_id))
            return slots[positions[0]] if positions else None
        found = [p for p, _ in self._uris.get(("", str(wanted.uri)), ())][:1]
        for position, uri in self._uris.get(uri_match_key(wanted.uri), ()):
            if uri is not None and uri_equal(uri, wanted.uri):
                found.append(position)
                break
        return slots[min(found)] if found else None


def _current(slot: _Slot) -> Binding:
    b = slot.binding if slot.binding is not None else slot.original
    assert b is not None
    return b


def _same_uri(stored: str, uri: SipUri) -> bool:
    if stored == str(uri):
        return True
    try:
        return uri_equal(parse_uri(stored), uri)
    except RemoteProtocolError:
        return False


def _contact_request(
    contact: NameAddr, header_expires: int | None, config: RegistrarConfig
) -> _ContactRequest:
    """Validate one Contact value and work out the interval it asks for.

    Raises:
        RemoteProtocolError: malformed URI, ``q`` or ``reg-id`` (answered 400).
    """
    uri = parse_uri(contact.uri_text)
    # RFC 3261 10.2.1.1 / 10.3 step 7: the contact's expires param, else the Expires
    # header, else the local default.
    expires_param = contact.param("expires")
    if expires_param is not None:
        requested = _delta_seconds(expires_param)
    elif header_expires is not None:
        requested = header_expires
    else:
        requested = config.default_expires
    q_text = contact.param("q")
    q: float | None = None
    if q_text is not None:
        if not _QVALUE_RE.match(q_text):
            raise RemoteProtocolError(f"Malformed q parameter {q_text!r} in Contact")
        q = float(q_text)
    instance_id = contact.param("+sip.instance") or ""
    if len(instance_id) >= 2 and instance_id[0] == '"' and instance_id[-1] == '"':
        instance_id = instance_id[1:-1]
    reg_text = contact.param("reg-id")
    reg_id = 0
    if reg_text is not None:
        if not _REG_ID_RE.match(reg_text) or not 1 <= int(reg_text) <= 2**31 - 1:
            raise RemoteProtocolError(f"Malformed reg-id parameter {reg_text!r} in Contact")
        # RFC 5626 6: a reg-id without an instance-id "is not valid ... it simply
        # ignores the reg-id parameter".
        if instance_id:
            reg_id = int(reg_text)
    return _ContactRequest(
        contact=contact, uri=uri, expires=requested, q=q, instance_id=instance_id, reg_id=reg_id
    )


def _outbound_applies(
    request: SipRequest,
    wanted: list[_ContactRequest],
    supported: frozenset[str],
    path: tuple[str, ...],
) -> bool | None:
    """Whether RFC 5626 reg-id processing applies to this REGISTER (None: answer 439).

    It needs a Contact with both ``+sip.instance`` and ``reg-id`` and the UA's
    ``Supported: outbound`` (we answer with ``Require: outbound``, which a UA that did
    not ask for it could not understand, RFC 3261 8.2.2.3). RFC 5626 6: when we are not
    the first hop, the first Path URI must carry ``ob`` or outbound "MUST NOT be
    applied"; then a reg-id with outbound support gets 439, anything else has its
    reg-id ignored.
    """
    if not any(w.reg_id for w in wanted) or "outbound" not in supported:
        return False
    first_hop = len(request.headers.values("via")) <= 1
    if first_hop:
        return True
    if path:
        try:
            first = parse_uri(_strip_brackets(path[0]))
        except RemoteProtocolError:
            first = None
        if first is not None and first.has_param("ob"):
            return True
    return None


def _strip_brackets(value: str) -> str:
    text = value.strip()
    lt, gt = text.find("<"), text.find(">")
    return text[lt + 1 : gt] if 0 <= lt < gt else text.split(";", 1)[0]


def _expires_header(request: SipRequest) -> int | None:
    raw = request.headers.get("expires")
    return None if raw is None else _delta_seconds(raw)


def _delta_seconds(text: str) -> int:
    """RFC 3261 20.19 / 10.2.1: malformed means 3600; above 2**32-1 means 2**32-1."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        return _MALFORMED_EXPIRES
    return min(int(value), _MAX_DELTA_SECONDS)


def _option_tags(request: SipRequest, header: str) -> frozenset[str]:
    return frozenset(tag.strip().lower() for tag in request.headers.values(header))
