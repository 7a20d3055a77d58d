"""An ordered, case-insensitive SIP header multimap that keeps raw names and values.

Unknown headers are carried byte for byte. Compact forms (RFC 3261 7.3.3) are looked
up under their long names, but keep their original spelling on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

from sipsca.sip.fields import split_values

__all__ = ["COMPACT_FORMS", "Headers", "canonical_key"]

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


def canonical_key(name: str) -> str:
    """Lookup key of a header name: lower-case, compact forms expanded."""
    key = name.strip().lower()
    return COMPACT_FORMS.get(key, key)


def pretty_name(key: str) -> str:
    return _PRETTY.get(key) or "-".join(part.capitalize() for part in key.split("-"))


class Headers:
    """Header fields in wire order as ``[key, name, value]`` triples."""

    __slots__ = ("_items",)

    def __init__(self, items: list[list[str]] | None = None) -> None:
        self._items: list[list[str]] = items if items is not None else []

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Headers:
        return cls([[canonical_key(n), n, v] for n, v in pairs])

    def copy(self) -> Headers:
        return Headers([list(item) for item in self._items])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_key(name)
        return any(item[0] == key for item in self._items)

    def get(self, name: str) -> str | None:
        """Value of the first header field called ``name``."""
        key = canonical_key(name)
        for item in self._items:
            if item[0] == key:
                return item[2]
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every header field called ``name``, one per field line."""
        key = canonical_key(name)
        return [item[2] for item in self._items if item[0] == key]

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of every ``name`` field, in order."""
        out: list[str] = []
        key = canonical_key(name)
        for item in self._items:
            if item[0] == key:
                out.extend(split_values(item[2]))
        return out

    def add(self, name: str, value: str) -> None:
        """Append a field at the end."""
        key = canonical_key(name)
        self._items.append([key, pretty_name(key) if name.islower() else name, value])

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of the same name (or at the top)."""
        key = canonical_key(name)
        item = [key, pretty_name(key) if name.islower() else name, value]
        for i, existing in enumerate(self._items):
            if existing[0] == key:
                self._items.insert(i, item)
                return
        self._items.insert(0, item)

    def insert_after(self, after: str, name: str, value: str) -> None:
        """Insert a field after the last field called ``after`` (or at the end)."""
        akey = canonical_key(after)
        key = canonical_key(name)
        pos = len(self._items)
        for i, existing in enumerate(self._items):
            if existing[0] == akey:
                pos = i + 1
        self._items.insert(pos, [key, name, value])

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one with ``value`` (at the first one's position)."""
        key = canonical_key(name)
        for i, item in enumerate(self._items):
            if item[0] == key:
                item[2] = value
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0] != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> int:
        """Remove every ``name`` field; returns how many were removed."""
        key = canonical_key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        return before - len(self._items)

    def remove_if(self, name: str, predicate: object) -> int:
        """Remove the ``name`` fields whose value satisfies ``predicate(value)``."""
        key = canonical_key(name)
        before = len(self._items)
        assert callable(predicate)
        self._items = [it for it in self._items if not (it[0] == key and predicate(it[2]))]
        return before - len(self._items)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first comma-separated element of ``name`` (Via, Route)."""
        key = canonical_key(name)
        for i, item in enumerate(self._items):
            if item[0] == key:
                parts = split_values(item[2])
                if len(parts) <= 1:
                    del self._items[i]
                    return parts[0] if parts else None
                item[2] = ", ".join(parts[1:])
                return parts[0]
        return None

    def encode_into(self, out: list[str]) -> None:
        for _, name, value in self._items:
            out.append(f"{name}: {value}\r\n")
