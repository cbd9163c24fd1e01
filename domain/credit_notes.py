"""Credit note numbering: one series per store and partition ("CN-<store>-<partition>-<seq>"), the
numbers each message of an order took, and the upstream numbers used. The ledger is the stored side,
read only; `Numbering` is what one message changes in it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from domain.state import APPLIED_IDS_KEPT, Series, TakenNumbers, upstream_key

V = TypeVar("V")


class Layered(Mapping[str, V], Generic[V]):
    """Values as stored, with changes not stored yet on top. Lookups only: a store may be a partitioned
    table that cannot be listed or copied whole."""

    def __init__(self, base: Mapping[str, V], changes: Mapping[str, V]) -> None:
        self._base, self._changes = base, changes

    def __getitem__(self, name: str) -> V:
        return self._changes[name] if name in self._changes else self._base[name]

    def __iter__(self) -> Iterator[str]:
        return iter({*self._base, *self._changes})

    def __len__(self) -> int:
        return len({*self._base, *self._changes})


_NONE: Mapping[str, Any] = {}


class Changes(Protocol):
    """Numbering changes not stored yet (an Outcome, or a runner's record of what it will store)."""

    @property
    def series(self) -> Mapping[str, Series]: ...
    @property
    def taken(self) -> Mapping[str, TakenNumbers]: ...
    @property
    def upstream(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class Ledger:
    """Credit note numbering as stored, read only. Three stores, so that no value grows with history:
    `series` the counter per "<store>-<partition>", `taken` the numbers recent messages of an order took
    (per order key), `upstream` the message that used each upstream number (per `upstream_key`)."""

    series: Mapping[str, Series] = field(default_factory=lambda: _NONE)
    taken: Mapping[str, TakenNumbers] = field(default_factory=lambda: _NONE)
    upstream: Mapping[str, str] = field(default_factory=lambda: _NONE)

    def after(self, changes: Changes) -> Ledger:
        """This ledger with changes not stored yet on top."""
        return Ledger(
            Layered(self.series, changes.series),
            Layered(self.taken, changes.taken),
            Layered(self.upstream, changes.upstream),
        )


class Numbering:
    """The credit note numbers one message takes, with the numbering changes it makes (not stored yet).

    A redelivered message gets the numbers it took before, found under its order (`taken`), never new
    ones; a series counter is stored apart from the orders, so a crash may keep one without the other.
    """

    def __init__(self, ledger: Ledger, order_key: str, message_id: str, partition: int) -> None:
        self._ledger = ledger
        self._order_key = order_key
        self._message_id = message_id
        self._partition = partition
        self.series: dict[str, Series] = {}
        self.taken: dict[str, TakenNumbers] = {}
        self.upstream: dict[str, str] = {}
        self._numbers_taken: dict[str, int] = {}

    def series_name(self, store: str) -> str:
        return series_name(store, self._partition)

    def _series_to_write(self, name: str) -> Series:
        if name not in self.series:
            current = self._ledger.series.get(name)
            self.series[name] = Series(name=name, last=current.last if current else 0)
            # A series written by an older version carries its upstream numbers: they move to their keys.
            for number, message_id in (current.upstream_numbers if current else {}).items():
                key = upstream_key(name, number)
                if key not in self._ledger.upstream:
                    self.upstream.setdefault(key, message_id)
        return self.series[name]

    def next_number(self, store: str) -> str:
        """The next number of the store's series, or, for a redelivered message, the one it took before."""
        name = self.series_name(store)
        key, message_id = self._order_key, self._message_id
        numbers = self.taken.get(key)
        if numbers is None:
            numbers = {mid: list(taken) for mid, taken in self._ledger.taken.get(key, {}).items()}
        mine = numbers.get(message_id)
        if mine is None:
            legacy = self._ledger.series.get(name)
            mine = list(legacy.issued.get(message_id, [])) if legacy else []
        count = self._numbers_taken[name] = self._numbers_taken.get(name, 0) + 1
        if len(mine) < count:
            series = self._series_to_write(name)
            series.last += 1
            mine.append(f"CN-{name}-{series.last:06d}")
        else:
            # Taken before, in a run whose counter was not stored (the runner stores numbers taken
            # before counters): the counter moves past it, so that no later message takes it again.
            seq = _sequence(mine[count - 1], name)
            stored = self.series.get(name) or self._ledger.series.get(name)
            if seq is not None and seq > (stored.last if stored else 0):
                self._series_to_write(name).last = seq
        numbers[message_id] = mine
        for stale in list(numbers)[: max(0, len(numbers) - APPLIED_IDS_KEPT)]:
            del numbers[stale]
        self.taken[key] = numbers
        return mine[count - 1]

    def upstream_number_user(self, store: str, number: str) -> str | None:
        """The message that used this upstream credit note number in the store's series, if one did."""
        name = self.series_name(store)
        key = upstream_key(name, number)
        if key in self.upstream:
            return self.upstream[key]
        if (user := self._ledger.upstream.get(key)) is not None:
            return user
        legacy = self._ledger.series.get(name)
        return legacy.upstream_numbers.get(number) if legacy else None

    def remember_upstream_number(self, store: str, number: str) -> None:
        self.upstream[upstream_key(self.series_name(store), number)] = self._message_id


def series_name(store: str, partition: int) -> str:
    """The credit note series of a store in an order partition: "<store>-<partition>"."""
    return f"{store}-{partition}"


def _sequence(number: str, series: str) -> int | None:
    """The sequence number of a credit note number of `series` ("CN-<series>-<seq>"), else None."""
    prefix = f"CN-{series}-"
    tail = number[len(prefix) :] if number.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None
