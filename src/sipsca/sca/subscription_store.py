"""In-memory subscription store keyed by (AoR, event, subscriber Contact).

Kamailio hashes ``AoR+event`` into buckets and matches by Contact inside a bucket, so
two keys sharing a bucket can be confused (sca-behaviour.md §1.4). A dict keyed by the
full triple cannot. The per-line index keeps creation order so broadcasts go to the most
recently created subscription first, like Kamailio's bucket order.
"""

from __future__ import annotations

from collections.abc import Iterator

from sipsca.sca.model import ScaEvent, Subscription

__all__ = ["SubscriptionStore"]

Key = tuple[str, ScaEvent, str]


class SubscriptionStore:
    def __init__(self) -> None:
        self._by_line: dict[tuple[str, ScaEvent], dict[str, Subscription]] = {}
        self._events_of_line: dict[str, int] = {}
        """AoR -> number of its (line, event) buckets: ``has_line`` is asked for every
        candidate line of every tracked request and response."""
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Subscription]:
        """Every subscription, most recently created first within each (line, event)."""
        for bucket in self._by_line.values():
            yield from reversed(list(bucket.values()))

    def get(self, key: Key) -> Subscription | None:
        aor, event, contact = key
        bucket = self._by_line.get((aor, event))
        return None if bucket is None else bucket.get(contact)

    def add(self, subscription: Subscription) -> None:
        line = (subscription.aor, subscription.event)
        bucket = self._by_line.get(line)
        if bucket is None:
            bucket = self._by_line[line] = {}
            self._events_of_line[subscription.aor] = (
                self._events_of_line.get(subscription.aor, 0) + 1
            )
        if subscription.subscriber not in bucket:
            self._count += 1
        bucket[subscription.subscriber] = subscription

    def remove(self, key: Key) -> Subscription | None:
        aor, event, contact = key
        bucket = self._by_line.get((aor, event))
        if bucket is None or contact not in bucket:
            return None
        subscription = bucket.pop(contact)
        self._count -= 1
        if not bucket:
            del self._by_line[(aor, event)]
            if self._events_of_line[aor] == 1:
                del self._events_of_line[aor]
            else:
                self._events_of_line[aor] -= 1
        return subscription

    def for_line(self, aor: str, event: ScaEvent) -> list[Subscription]:
        """Subscriptions of one line and event, most recently created first."""
        return list(reversed(list(self._by_line.get((aor, event), {}).values())))

    def has_line(self, aor: str) -> bool:
        return aor in self._events_of_line

    def count(self, event: ScaEvent) -> int:
        """Subscriptions of ``event`` that are not terminated.

        Terminated ones (unsubscribed, deactivated, used up) stay stored until the next
        purge but are no longer subscriptions (RFC 6665): ``sca.subscription_count`` and
        the ``sipsca_subscriptions_active`` gauge leave them out. ``len()`` counts all.
        """
        return sum(
            1
            for (_, ev), bucket in self._by_line.items()
            if ev is event
            for s in bucket.values()
            if not s.state.is_terminated
        )

    def all(self) -> list[Subscription]:
        return list(self)
