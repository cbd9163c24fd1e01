"""What handling one message produces: events to publish, stock movements, and the work-in-progress
state that a handler changes (a private copy, so a refused message leaves the stored state untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from domain import names
from domain.money import minor_units
from domain.rules import ChannelRules
from domain.state import OrderState, Series
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
    series: dict[str, Series] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    movements: list[Movement] = field(default_factory=list)
    detail: str = ""

    def extend(self, other: Outcome) -> None:
        self.series.update(other.series)
        self.events.extend(other.events)
        self.movements.extend(other.movements)


class Layered(Mapping[str, Series]):
    """Series as stored, with changes not stored yet on top. Lookups only: a store may be a partitioned
    table that cannot be listed or copied whole."""

    def __init__(self, base: Mapping[str, Series], changes: Mapping[str, Series]) -> None:
        self._base, self._changes = base, changes

    def __getitem__(self, name: str) -> Series:
        return self._changes[name] if name in self._changes else self._base[name]

    def __iter__(self) -> Iterator[str]:
        return iter({*self._base, *self._changes})

    def __len__(self) -> int:
        return len({*self._base, *self._changes})


class Work:
    """One message being applied to a private copy of its order."""

    def __init__(
        self, order: OrderState, series: Mapping[str, Series], meta: MessageMeta, rules: ChannelRules
    ) -> None:
        # A JSON round trip through pydantic-core copies the aggregate twice as fast as deepcopy.
        self.order = OrderState.model_validate_json(order.model_dump_json())
        self.meta = meta
        self.rules = rules
        self._series_in = series
        self.series: dict[str, Series] = {}
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

    def series_for(self, store: str) -> Series:
        name = f"{store}-{self.meta.partition}"
        if name not in self.series:
            current = self._series_in.get(name)
            self.series[name] = (
                Series.model_validate_json(current.model_dump_json()) if current else Series(name=name)
            )
        return self.series[name]

    def next_credit_note(self, store: str) -> str:
        series = self.series_for(store)
        taken = series.issued.setdefault(self.meta.message_id, [])
        self._numbers_taken[series.name] = self._numbers_taken.get(series.name, 0) + 1
        if len(taken) < self._numbers_taken[series.name]:
            series.last += 1
            taken.append(f"CN-{store}-{self.meta.partition}-{series.last:06d}")
            series.trim()
        return taken[self._numbers_taken[series.name] - 1]

    def outcome(self, status: Status = "applied", detail: str = "") -> Outcome:
        self.order.remember(self.meta.message_id)
        return Outcome(status, self.order, self.series, self.events, self.movements, detail)


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
