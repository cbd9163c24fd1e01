"""One message being applied: a private copy of its order, the events and stock movements it makes,
and the credit note numbers it takes."""

from __future__ import annotations

from typing import Any

from domain.credit_notes import Ledger, Numbering
from domain.money import minor_units
from domain.outcome import Event, FollowUp, MessageMeta, Movement, Outcome, Status
from domain.rules import ChannelRules
from domain.state import OrderState


class Work:
    """One message being applied to a private copy of its order."""

    def __init__(self, order: OrderState, ledger: Ledger, meta: MessageMeta, rules: ChannelRules) -> None:
        self.order = order.private_copy()
        self.meta = meta
        self.rules = rules
        self.numbers = Numbering(ledger, order.key, meta.message_id, meta.partition)
        self.events: list[Event] = []
        self.movements: list[Movement] = []
        self.follow_ups: list[FollowUp] = []

    @property
    def now(self) -> str:
        return self.meta.stamp

    @property
    def may_wait(self) -> bool:
        """Whether a message that may merely be early can still wait for its order's next messages."""
        return not self.meta.final and self.rules.reorder_window_seconds > 0

    @property
    def places(self) -> int:
        return minor_units(self.order.currency, self.rules.currency_precision)

    def emit(self, name: str, params: dict[str, Any]) -> None:
        self.events.append(Event(name, self.order.key, params, self.meta.message_id))

    def follow(self, name: str, what: str, channel: str, order_id: str, params: dict[str, Any]) -> None:
        """Make an inbound message for another order (`what` tells it from the cause's other ones)."""
        message_id = f"{self.meta.message_id}#{what}"
        self.follow_ups.append(FollowUp(name, message_id, channel, order_id, params, self.meta.now))

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
                movement_id,
                source_id,
                sku,
                reason,
                self.now,
                on_hand_delta=on_hand,
                reserved_delta=reserved,
                timed=self.meta.timed,
            )
        )

    def outcome(self, status: Status = "applied", detail: str = "") -> Outcome:
        self.order.remember(self.meta.message_id)
        numbers = self.numbers
        return Outcome(
            status,
            self.order,
            numbers.series,
            self.events,
            self.movements,
            detail,
            numbers.taken,
            numbers.upstream,
            follow_ups=self.follow_ups,
        )
