"""What handling one message produces: events to publish, stock movements, and the work-in-progress
state that a handler changes (a private copy, so a refused message leaves the stored state untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from domain import names
from domain.money import minor_units
from domain.rules import ChannelRules
from domain.state import APPLIED_IDS_KEPT, OrderState, Series, TakenNumbers, upstream_key
from domain.timeutil import iso

Status = Literal["applied", "rejected", "skipped", "held", "duplicate"]

RejectionCode = Literal[
    "UNKNOWN_ORDER",
    "UNKNOWN_LINE",
    "LINE_NOT_SHIPPED",
    "OVER_RETURN",
    "OVER_REFUND",
    "ORDER_CANCELLED",
    "RETURN_NOT_OPEN",
    "DUPLICATE_RMA",
    "DUPLICATE_REFUND",
    "ALREADY_SHIPPED",
    "NOT_ALLOWED",
]


class Refused(Exception):
    """A well-formed message that the rules refuse; becomes an error_management.notify event."""

    def __init__(self, code: RejectionCode, message: str, *, not_yet: bool = False) -> None:
        super().__init__(message)
        self.code: RejectionCode = code
        self.message = message
        # The message may become valid once another one of its order arrives (Kafka keeps no order
        # across topics): it is held and retried until the channel's reorder window ends.
        self.not_yet = not_yet


@dataclass(frozen=True)
class Event:
    name: str
    key: str
    params: dict[str, Any]
    # The id of the message that caused it: emitted ids derive from it, so a re-run emits the same ids.
    cause: str


@dataclass(frozen=True)
class Movement:
    """A change of stock at one source for one SKU; applied by the stock aggregate, which owns the item."""

    movement_id: str
    source_id: str
    sku: str
    reason: str
    created_on: str
    on_hand_delta: int = 0
    reserved_delta: int = 0
    set_on_hand: int | None = None
    # Where the runner's record that caused it sits ("<topic>:<partition>", offset, index among that
    # record's movements). Movements of one origin reach a stock item in that order, so the item keeps
    # one high-water mark per origin instead of every movement id (replay leaves these empty).
    origin: str | None = None
    origin_offset: int = 0
    origin_index: int = 0

    @property
    def key(self) -> str:
        return f"{self.source_id}:{self.sku}"


@dataclass(frozen=True)
class MessageMeta:
    message_name: str
    message_id: str
    now: datetime
    partition: int = 0
    # The last attempt of a held message: what could still be early is taken in its final meaning.
    final: bool = False


@dataclass
class Outcome:
    status: Status
    order: OrderState | None = None
    # Credit note numbering changes, by store key: series counters, numbers taken per order key, and
    # upstream numbers used (see Ledger).
    series: dict[str, Series] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    movements: list[Movement] = field(default_factory=list)
    detail: str = ""
    taken: dict[str, TakenNumbers] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Outcome) -> None:
        self.series.update(other.series)
        self.taken.update(other.taken)
        self.upstream.update(other.upstream)
        self.events.extend(other.events)
        self.movements.extend(other.movements)


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


class Work:
    """One message being applied to a private copy of its order."""

    def __init__(self, order: OrderState, ledger: Ledger, meta: MessageMeta, rules: ChannelRules) -> None:
        self.order = order.private_copy()
        self.meta = meta
        self.rules = rules
        self._ledger = ledger
        self.series: dict[str, Series] = {}
        self.taken: dict[str, TakenNumbers] = {}
        self.upstream: dict[str, str] = {}
        self.events: list[Event] = []
        self.movements: list[Movement] = []
        self._numbers_taken: dict[str, int] = {}

    @property
    def now(self) -> str:
        return iso(self.meta.now)

    @property
    def may_wait(self) -> bool:
        """Whether a message that may merely be early can still wait for its order's next messages."""
        return not self.meta.final and self.rules.reorder_window_seconds > 0

    @property
    def places(self) -> int:
        return minor_units(self.order.currency, self.rules.currency_precision)

    def emit(self, name: str, params: dict[str, Any]) -> None:
        self.events.append(Event(name, self.order.key, params, self.meta.message_id))

    def move(
        self,
        source_id: str,
        sku: str,
        reason: str,
        *,
        on_hand: int = 0,
        reserved: int = 0,
    ) -> None:
        if on_hand == 0 and reserved == 0:
            return
        movement_id = f"{self.meta.message_id}#m{len(self.movements)}"
        self.movements.append(
            Movement(
                movement_id, source_id, sku, reason, self.now, on_hand_delta=on_hand, reserved_delta=reserved
            )
        )

    def series_name(self, store: str) -> str:
        return f"{store}-{self.meta.partition}"

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

    def next_credit_note(self, store: str) -> str:
        """The next number of the store's series, or, for a redelivered message, the one it took before."""
        name = self.series_name(store)
        key, message_id = self.order.key, self.meta.message_id
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
        self.upstream[upstream_key(self.series_name(store), number)] = self.meta.message_id

    def outcome(self, status: Status = "applied", detail: str = "") -> Outcome:
        self.order.remember(self.meta.message_id)
        return Outcome(
            status, self.order, self.series, self.events, self.movements, detail, self.taken, self.upstream
        )


def _sequence(number: str, series: str) -> int | None:
    """The sequence number of a credit note number of `series` ("CN-<series>-<seq>"), else None."""
    prefix = f"CN-{series}-"
    tail = number[len(prefix) :] if number.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def rejection_event(key: str, meta: MessageMeta, params_json: str, refused: Refused) -> Event:
    return Event(
        names.ERROR_NOTIFY,
        key,
        cause=meta.message_id,
        params={
            "topic": meta.message_name,
            "message": refused.message,
            "delivery_id": meta.message_id,
            "payload": params_json,
            "code": refused.code,
        },
    )
