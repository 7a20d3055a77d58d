"""An ordered, case-insensitive SIP header multimap that keeps raw names and values.

Unknown headers are carried byte for byte. Compact forms (RFC 3261 7.3.3) are looked
up under their long names, but keep their original spelling on the wire.

Every field remembers the exact text it was received as (folding, odd spacing and all), and
serialisation reuses that text until the field is changed: a proxy forwards what it did not
touch unchanged (RFC 4475 3.1.1.1), and re-serialising an unmodified message is a join.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from sipsca.errors import LocalProtocolError
from sipsca.sip.fields import split_values

__all__ = ["COMPACT_FORMS", "Headers", "canonical_key", "name_info", "pretty_name"]

COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_PRETTY: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "rack": "RAck",
    "rseq": "RSeq",
    "mime-version": "MIME-Version",
    "p-asserted-identity": "P-Asserted-Identity",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

# RFC 3261 7.3.1 / 25.1: header-name = token, optionally followed by LWS before HCOLON.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# Raw name as seen on the wire (possibly with trailing white space) -> (lookup key, name).
# Only valid names are stored, and the table stops growing at _NAME_CACHE_MAX entries so
# a peer inventing header names cannot grow it without bound.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 4096
# Name given to a lookup method (``"Call-ID"``, ``"via"``, ``"v"``) -> lookup key.
_KEY_CACHE: dict[str, str] = {}

Field = tuple[str, str, str | None]
"""``(name, value, raw)``: ``raw`` is the received field text, None once built or changed here."""


def name_info(raw_name: str) -> tuple[str, str] | None:
    """``(lookup key, name)`` of a received header name, or None if it is not a token.

    The key is lower-case with compact forms expanded (``"v"`` gives ``"via"``); the
    name is ``raw_name`` without the white space allowed before the colon.
    """
    info = _NAME_CACHE.get(raw_name)
    if info is not None:
        return info
    name = raw_name.rstrip(" \t")
    if not _TOKEN_RE.fullmatch(name):
        return None
    key = name.lower()
    info = (COMPACT_FORMS.get(key, key), name)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[raw_name] = info
    return info


def canonical_key(name: str) -> str:
    """Lookup key of a header name: lower-case, compact forms expanded."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = name.strip().lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_KEY_CACHE) < _NAME_CACHE_MAX:
            _KEY_CACHE[name] = key
    return key


def pretty_name(key: str) -> str:
    """Conventional spelling of a lookup key (``call-id`` gives ``Call-ID``)."""
    return _PRETTY.get(key) or "-".join(part.capitalize() for part in key.split("-"))


def _checked(name: str, value: str) -> tuple[str, str]:
    """Lookup key and name of a field added locally (h11-style LocalProtocolError)."""
    info = _NAME_CACHE.get(name) or name_info(name)
    if info is None:
        raise LocalProtocolError(f"Illegal header name {name!r}")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"Line break in the value of header {name!r}")
    return info


# Name given to add/prepend/set -> (lookup key, name written on the wire); the same
# bound as _NAME_CACHE, and only valid names are stored.
_LOCAL_CACHE: dict[str, tuple[str, str]] = {}


def _local(name: str, value: str) -> tuple[str, str]:
    """As :func:`_checked`, with all-lower-case names written in their usual spelling."""
    info = _LOCAL_CACHE.get(name)
    if info is None:
        key, clean = _checked(name, value)
        info = (key, pretty_name(key) if clean.islower() else clean)
        if len(_LOCAL_CACHE) < _NAME_CACHE_MAX:
            _LOCAL_CACHE[name] = info
    elif "\r" in value or "\n" in value:
        raise LocalProtocolError(f"Line break in the value of header {name!r}")
    return info


def _build(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[Field]]:
    """Lookup keys and fields of locally built ``(name, value)`` pairs (checked)."""
    keys: list[str] = []
    fields: list[Field] = []
    for name, value in pairs:
        key, clean = _checked(name, value)
        keys.append(key)
        fields.append((clean, value, None))
    return keys, fields


class Headers:
    """Header fields in wire order.

    Two parallel lists: ``_keys`` (lookup keys, so searches run at C speed with
    ``list.index``) and ``_fields`` (``(name, value, raw)`` tuples). Values are stored
    unfolded and without surrounding white space; ``raw`` is what goes back on the wire
    while the field is unchanged.
    """

    __slots__ = ("_fields", "_keys")

    def __init__(self, items: Iterable[Sequence[str]] | None = None) -> None:
        """Build from ``(name, value)`` pairs, names kept as given.

        Legacy ``[key, name, value]`` triples are accepted too (the key is recomputed).

        Raises:
            LocalProtocolError: a name is not a token or a value has a line break.
        """
        self._keys, self._fields = _build(
            (item[1], item[2]) if len(item) == 3 else (item[0], item[1]) for item in items or ()
        )

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build from ``(name, value)`` pairs, in order (names kept as given).

        Raises:
            LocalProtocolError: a name is not a token or a value has a line break.
        """
        return cls._parsed(*_build(pairs))

    @classmethod
    def _parsed(cls, keys: list[str], fields: list[Field]) -> Headers:
        """Adopt lists built by the parser (no validation, no copies)."""
        self = cls.__new__(cls)
        self._keys = keys
        self._fields = fields
        return self

    def copy(self) -> Headers:
        """An independent copy (fields are immutable tuples, so only the lists are copied)."""
        return Headers._parsed(list(self._keys), list(self._fields))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value, _ in self._fields:
            yield name, value

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_key(name) in self._keys

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def keys(self) -> list[str]:
        """Lookup keys of every field, in order (``["via", "via", "from", ...]``)."""
        return list(self._keys)

    def count(self, name: str) -> int:
        """Number of field lines called ``name`` (RFC 4475 3.3.8: singletons must be 1)."""
        return self._keys.count(canonical_key(name))

    def get(self, name: str) -> str | None:
        """Value of the first header field called ``name``."""
        key = _KEY_CACHE.get(name) or canonical_key(name)  # the most called method here
        keys = self._keys
        if key in keys:
            return self._fields[keys.index(key)][1]
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every header field called ``name``, one per field line."""
        key = canonical_key(name)
        keys = self._keys
        if key not in keys:  # the usual answers, found at C speed
            return []
        if keys.count(key) == 1:
            return [self._fields[keys.index(key)][1]]
        return [f[1] for k, f in zip(keys, self._fields, strict=True) if k == key]

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of every ``name`` field, in order.

        Not for headers whose values contain unquoted commas (Authorization,
        WWW-Authenticate, Proxy-Authenticate, Proxy-Authorization, Date): use :meth:`get`
        and ``parse_auth_params``.
        """
        key = canonical_key(name)
        keys = self._keys
        if key not in keys:  # the usual answers, found at C speed
            return []
        if keys.count(key) == 1:
            return split_values(self._fields[keys.index(key)][1])
        out: list[str] = []
        for k, f in zip(keys, self._fields, strict=True):
            if k == key:
                out.extend(split_values(f[1]))
        return out

    def add(self, name: str, value: str) -> None:
        """Append a field at the end.

        Raises:
            LocalProtocolError: ``name`` is not a token or ``value`` has a line break.
        """
        key, wire_name = _local(name, value)
        self._keys.append(key)
        self._fields.append((wire_name, value, None))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of the same name (or at the top)."""
        key, wire_name = _local(name, value)
        keys = self._keys
        pos = keys.index(key) if key in keys else 0
        keys.insert(pos, key)
        self._fields.insert(pos, (wire_name, value, None))

    def insert_after(self, after: str, name: str, value: str) -> None:
        """Insert a field after the last field called ``after`` (or at the end)."""
        akey = canonical_key(after)
        key, wire_name = _local(name, value)
        pos = len(self._keys)
        for i, existing in enumerate(self._keys):
            if existing == akey:
                pos = i + 1
        self._keys.insert(pos, key)
        self._fields.insert(pos, (wire_name, value, None))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one with ``value`` (at the first one's position)."""
        key, wire_name = _local(name, value)
        keys = self._keys
        if key not in keys:
            keys.append(key)
            self._fields.append((wire_name, value, None))
            return
        first = keys.index(key)
        self._fields[first] = (self._fields[first][0], value, None)
        if keys.count(key) > 1:
            self._filter(lambda i, k, f: i <= first or k != key)

    def remove(self, name: str) -> int:
        """Remove every ``name`` field; returns how many were removed."""
        key = canonical_key(name)
        if key not in self._keys:
            return 0
        return self._filter(lambda i, k, f: k != key)

    def remove_if(self, name: str, predicate: Callable[[str], object]) -> int:
        """Remove the ``name`` fields whose value satisfies ``predicate(value)``."""
        key = canonical_key(name)
        return self._filter(lambda i, k, f: not (k == key and predicate(f[1])))

    def _filter(self, keep: Callable[[int, str, Field], object]) -> int:
        before = len(self._keys)
        pairs = [
            (k, f)
            for i, (k, f) in enumerate(zip(self._keys, self._fields, strict=True))
            if keep(i, k, f)
        ]
        self._keys = [k for k, _ in pairs]
        self._fields = [f for _, f in pairs]
        return before - len(self._keys)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first comma-separated element of ``name`` (Via, Route)."""
        key = canonical_key(name)
        keys = self._keys
        while key in keys:
            i = keys.index(key)
            wire_name, value, _ = self._fields[i]
            parts = split_values(value)
            if len(parts) <= 1:
                del keys[i]
                del self._fields[i]
                if parts:
                    return parts[0]
                continue  # an empty field: drop it and look at the next one
            self._fields[i] = (wire_name, ", ".join(parts[1:]), None)
            return parts[0]
        return None

    def lines(self) -> list[str]:
        """Every field as one wire line without CRLF (received text reused when unchanged)."""
        return [raw if raw is not None else f"{name}: {value}" for name, value, raw in self._fields]

    def encode_into(self, out: list[str]) -> None:
        """Append every field as ``"Name: value\\r\\n"`` text to ``out``."""
        for line in self.lines():
            out.append(line + "\r\n")
