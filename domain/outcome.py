"""What handling one message produces: its status, the order as it becomes, events to publish, stock
movements and credit note numbering changes; or the refusal that becomes a rejection event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from domain import names
from domain.state import OrderState, Series, TakenNumbers
from domain.timeutil import iso

Status = Literal["applied", "rejected", "skipped", "held", "duplicate", "archived"]

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
    "RETURN_WINDOW_CLOSED",
    "UNKNOWN_REFUND",
    "ALREADY_EXCHANGED",
    "ORDER_TOO_LARGE",
    "FINAL_SALE",
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


class Unchanged(Exception):
    """A message whose effect is already there (the same command sent again): a counted skip."""


@dataclass(frozen=True)
class Event:
    name: str
    key: str
    params: dict[str, Any]
    # The id of the message that caused it: emitted ids derive from it, so a re-run emits the same ids.
    cause: str


@dataclass(frozen=True)
class FollowUp:
    """An inbound message that handling this one makes for another order (an exchange's child order and
    its cancellation): applied right after it by replay, sent to the worker's own inbound topic by the
    Kafka worker. Its id derives from the cause's, so a redelivered cause makes a duplicate of it."""

    name: str
    message_id: str
    key_channel: str
    key_order: str
    params: dict[str, Any]
    at: datetime


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

    @cached_property
    def stamp(self) -> str:
        """`now` as stored and published (ISO-8601, UTC), made once per message."""
        return iso(self.now)


@dataclass(frozen=True)
class Forgotten:
    """An order that left state when this message came (domain/retention.py): its value, the numbers
    its messages took and these upstream-number keys are deleted before anything is written."""

    order_key: str
    upstream_keys: tuple[str, ...] = ()


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
    forgotten: Forgotten | None = None
    follow_ups: list[FollowUp] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.forgotten = self.forgotten or other.forgotten
        self.follow_ups.extend(other.follow_ups)
        self.series.update(other.series)
        self.taken.update(other.taken)
        self.upstream.update(other.upstream)
        self.events.extend(other.events)
        self.movements.extend(other.movements)


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
