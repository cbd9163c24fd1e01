"""One function per inbound message, and the dispatcher that applies a message to its order aggregate:
de-duplication by message id, the integration-date skip, the hold for unknown orders, and refusals.

    handle(message name, params, stored order | None, credit note ledger, rule book, meta) -> Outcome

Pure: no I/O, no clock (time comes in `meta.now`), no Kafka. The registry at the bottom maps each
message name to how its params are read, which order they belong to, and what applies them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from msgspec.structs import replace
from pydantic import BaseModel

from domain import (
    appeasements,
    credit_note_status,
    exchanges,
    jsontext,
    names,
    orders,
    retention,
    returns,
    upstream_refunds,
)
from domain.commands import (
    AppeasementCreate,
    CreditNoteCommand,
    ExchangeCreate,
    OrderCancel,
    OrderCancelLine,
    OrderCreate,
    RefundCreate,
    ReshipmentCreate,
    Return,
    ReturnCommand,
    ShipmentDone,
)
from domain.credit_notes import Ledger
from domain.outcome import Forgotten, MessageMeta, Outcome, Refused, Unchanged, rejection_event
from domain.reshipments import reship
from domain.rule_versions import RuleVersions, stamp
from domain.rules import ChannelRules
from domain.state import HELD_MESSAGES_MAX, HeldMessage, OrderState
from domain.timeutil import iso, parse_time
from domain.work import Work


def order_key(sales_channel: str, order_id: str) -> str:
    return f"{sales_channel}:{order_id}"


Apply = Callable[[Work, BaseModel], None]


def _unwrap(kind: type[BaseModel], field: str | None, apply: Callable[[Work, Any], None]) -> Apply:
    """Adapt a domain function taking the command (or one of its members) to the registry's shape."""

    def applied(work: Work, cmd: BaseModel) -> None:
        assert isinstance(cmd, kind)
        apply(work, getattr(cmd, field) if field else cmd)

    return applied


def _reship(work: Work, cmd: ReshipmentCreate) -> None:
    reship(work, cmd.reshipment, cmd.user)


@dataclass(frozen=True)
class Route:
    """How one inbound order message is read, which order it belongs to, and what applies it."""

    command: type[BaseModel]
    key: Callable[[Any], tuple[str | None, str]]
    apply: Apply
    # What to do when the order never arrives and the channel says unknown_order=standalone.
    standalone: Apply | None = None
    time: Callable[[Any], str | None] = lambda _cmd: None
    # It applies to the credit notes of an order that never arrived (standalone refunds) without a hold.
    notes_without_order: bool = False


def _return_key(cmd: ReturnCommand) -> tuple[str | None, str]:
    return cmd.return_.sales_channel_id, cmd.return_.order_id


def _return_route(apply: Callable[[Work, Return], None], *, dated: bool = True) -> Route:
    return Route(
        ReturnCommand,
        _return_key,
        _unwrap(ReturnCommand, "return_", apply),
        time=(lambda c: c.return_.origin_date) if dated else (lambda _cmd: None),
    )


def _note_route(apply: Callable[[Work, CreditNoteCommand], None]) -> Route:
    return Route(
        CreditNoteCommand,
        lambda c: (c.sales_channel_id, c.order_id),
        _unwrap(CreditNoteCommand, None, apply),
        notes_without_order=True,
    )


_RESHIP = Route(
    ReshipmentCreate,
    lambda c: (c.reshipment.sales_channel_id, c.reshipment.order_id),
    _unwrap(ReshipmentCreate, None, _reship),
)

ROUTES: dict[str, Route] = {
    names.ORDER_CANCEL: Route(
        OrderCancel,
        lambda c: (c.sales_channel_id, c.order_id),
        _unwrap(OrderCancel, None, orders.cancel_order),
    ),
    names.ORDER_CANCEL_LINE: Route(
        OrderCancelLine,
        lambda c: (c.sales_channel_id, c.order_id),
        _unwrap(OrderCancelLine, None, orders.cancel_line),
    ),
    names.SHIPMENT_DONE: Route(
        ShipmentDone,
        lambda c: (c.shipment.store_id, c.shipment.order_id),
        _unwrap(ShipmentDone, None, orders.ship),
        time=lambda c: c.shipment.shipment_date,
    ),
    names.RETURN_AUTHORIZE: _return_route(returns.authorize_return),
    names.RETURN_REQUEST: _return_route(returns.authorize_return),
    names.RETURN_RECEIVED: _return_route(returns.receive_return),
    names.RETURN_CANCEL: _return_route(returns.cancel_return, dated=False),
    names.RETURN_UPDATE: _return_route(returns.update_return, dated=False),
    names.RESHIPMENT_CREATE: _RESHIP,
    # The same command under the other spelling of its name.
    names.RESHIPMENT_CREATE_SEED: _RESHIP,
    names.EXCHANGE_CREATE: Route(
        ExchangeCreate,
        lambda c: (c.exchange.sales_channel_id, c.exchange.order_id),
        _unwrap(ExchangeCreate, "exchange", exchanges.exchange),
    ),
    names.APPEASEMENT_CREATE: Route(
        AppeasementCreate,
        lambda c: (c.appeasement.sales_channel_id, c.appeasement.order_id),
        _unwrap(AppeasementCreate, "appeasement", appeasements.appease),
        standalone=_unwrap(AppeasementCreate, "appeasement", appeasements.standalone_appeasement),
        time=lambda c: c.appeasement.origin_date or c.appeasement.credit_note_date,
    ),
    names.REFUND_CREATE: Route(
        RefundCreate,
        lambda c: (c.refund.sales_channel_id or c.refund.store_id, c.refund.order_id),
        _unwrap(RefundCreate, "refund", upstream_refunds.refund),
        standalone=_unwrap(RefundCreate, "refund", upstream_refunds.standalone_refund),
        time=lambda c: c.refund.status.date,
    ),
    names.REFUND_RELEASE: _note_route(credit_note_status.release),
    names.REFUND_CANCEL: _note_route(credit_note_status.cancel),
}


@dataclass(frozen=True)
class Parsed:
    """An inbound order message read into its command, with the order it belongs to."""

    name: str
    command: BaseModel
    sales_channel: str | None
    order_id: str
    time: str | None

    @property
    def key(self) -> str | None:
        return order_key(self.sales_channel, self.order_id) if self.sales_channel else None


def parse(name: str, params: Mapping[str, Any]) -> Parsed:
    """Read params that passed the schema; raises pydantic.ValidationError for what the domain can't use."""
    if name == names.ORDER_CREATE:
        create = OrderCreate.model_validate(params)
        return Parsed(name, create, create.order.store, create.order.id, create.order.origin_date)
    route = ROUTES[name]
    command = route.command.model_validate(params)
    channel, order_id = route.key(command)
    return Parsed(name, command, channel, order_id, route.time(command))


def handle(
    parsed: Parsed,
    params_json: str,
    stored: OrderState | None,
    ledger: Ledger,
    book: RuleVersions,
    meta: MessageMeta,
    *,
    fallback_channel: str | None = None,
    retry: bool = True,
) -> Outcome:
    """Apply one order message. `params_json` is the params as JSON text: kept for holds and rejections.

    An order whose retention ended by the message's time is forgotten first, and the message handled as
    one for an order never seen. `retry`: after a change, try again the messages of this order that
    wait for one (False while such a message is itself being tried, so that attempts do not nest)."""
    gone: Forgotten | None = None
    if stored is not None and retention.forgotten(
        book.for_channel(stored.sales_channel, meta.now), stored, meta.now
    ):
        gone = Forgotten(stored.key, tuple(retention.upstream_keys(stored, meta.partition)))
        # The numbers its messages took go with it: a message of the new life starts afresh.
        ledger = ledger.after(Outcome("applied", taken={stored.key: {}}))
        stored = None
    outcome = _handle(parsed, params_json, stored, ledger, book, meta, fallback_channel, retry)
    outcome.forgotten = gone
    # Every decision names the rule set it was made under: the channel's at the message's time (held
    # messages tried again inside were named by their own time already).
    channel = stored.sales_channel if stored is not None else parsed.sales_channel or fallback_channel
    stamp(outcome.events, book.version_for(channel, meta.now).label)
    return _dated(outcome, meta.now, meta.stamp)


def _dated(outcome: Outcome, now: datetime, stamp: str) -> Outcome:
    """The order as stored carries the time of its last change (the latest message time, as messages
    may come out of order). A refused message changes nothing, so it leaves the time as it was."""
    order = outcome.order
    if order is None or (outcome.status == "rejected" and order.changed_at is not None):
        return outcome
    if order.changed_at is None or retention.stored_time(order.changed_at) < now:
        order.changed_at = stamp
    return outcome


def _handle(
    parsed: Parsed,
    params_json: str,
    stored: OrderState | None,
    ledger: Ledger,
    book: RuleVersions,
    meta: MessageMeta,
    fallback_channel: str | None,
    retry: bool,
) -> Outcome:
    channel = parsed.sales_channel or fallback_channel
    if channel is None:
        refused = Refused("UNKNOWN_ORDER", f"order {parsed.order_id}: no sales channel in the message or key")
        return Outcome(
            "rejected", None, events=[rejection_event("", meta, params_json, refused)], detail=refused.code
        )
    key = order_key(channel, parsed.order_id)
    state = stored or OrderState(key=key, sales_channel=channel, order_id=parsed.order_id)
    rules = book.for_channel(channel, meta.now)
    if meta.message_id in state.applied or any(h.message_id == meta.message_id for h in state.held):
        return Outcome("duplicate", None, detail="message id already applied")
    if parsed.name == names.ORDER_CREATE:
        return _create(parsed, params_json, state, ledger, book, meta)
    route = ROUTES[parsed.name]
    if not state.known and not (route.notes_without_order and state.credit_notes):
        return _hold_or_skip(parsed.name, params_json, state, ledger, rules, meta)
    # What waited past its window by this message's time is settled first: outcomes then depend on
    # message times only, the same in replay and on Kafka.
    earlier = settle_expired(state, ledger, book, meta.now, meta.partition)
    if earlier.order is not None:
        state = earlier.order
        ledger = ledger.after(earlier)
    outcome = _apply(route.apply, parsed.command, params_json, state, ledger, book, meta)
    if retry and outcome.status == "applied":
        outcome = _retry_held(outcome, ledger, book, meta)
    if earlier.order is None:
        return outcome
    earlier.extend(outcome)
    earlier.status, earlier.detail = outcome.status, outcome.detail
    earlier.order = outcome.order or earlier.order
    return earlier


def _apply(
    apply: Apply,
    command: BaseModel,
    params_json: str,
    state: OrderState,
    ledger: Ledger,
    book: RuleVersions,
    meta: MessageMeta,
) -> Outcome:
    rules = book.for_channel(state.sales_channel, meta.now)
    work = Work(state, ledger, meta, rules)
    try:
        apply(work, command)
    except Unchanged as already:
        kept = state.private_copy()
        kept.remember(meta.message_id)
        return Outcome("skipped", kept, detail=str(already))
    except Refused as refused:
        if refused.not_yet and work.may_wait and len(state.held) < HELD_MESSAGES_MAX:
            deadline = meta.now + timedelta(seconds=rules.reorder_window_seconds)
            return _hold(state, params_json, meta, deadline, waits_for=refused.code)
        unchanged = state.private_copy()
        unchanged.remember(meta.message_id)
        return Outcome(
            "rejected",
            unchanged,
            events=[rejection_event(state.key, meta, params_json, refused)],
            detail=refused.code,
        )
    return work.outcome()


def _hold(
    state: OrderState, params_json: str, meta: MessageMeta, deadline: datetime, waits_for: str | None
) -> Outcome:
    held = state.private_copy()
    held.held.append(
        HeldMessage(
            message_name=meta.message_name,
            message_id=meta.message_id,
            params_json=params_json,
            arrived=iso(meta.now),
            deadline=iso(deadline),
            waits_for=waits_for,
        )
    )
    why = "order unknown" if waits_for is None else f"{waits_for} yet"
    return Outcome("held", held, detail=f"{why}; held until {iso(deadline)}")


def _attempt(
    message: HeldMessage,
    state: OrderState,
    ledger: Ledger,
    book: RuleVersions,
    partition: int,
    *,
    final: bool = False,
) -> Outcome:
    """Try a held message again, as of its arrival (or, on its last attempt, of its deadline)."""
    at = parse_time(message.deadline if final else message.arrived)
    assert at is not None
    # Its arrival (or deadline) comes from its record's time: taken as timed (Movement.timed), which a
    # held message does not remember; a count of a stand-in time keeps the order of handling anyway.
    meta = MessageMeta(message.message_name, message.message_id, at, partition, final=final, timed=True)
    parsed = parse(message.message_name, jsontext.read(message.params_json))
    return handle(parsed, message.params_json, state, ledger, book, meta, retry=False)


def _retry_held(outcome: Outcome, ledger: Ledger, book: RuleVersions, meta: MessageMeta) -> Outcome:
    """After a change, the held messages of the order, oldest first, until none applies any more."""
    assert outcome.order is not None
    order = outcome.order
    window = timedelta(seconds=book.for_channel(order.sales_channel, meta.now).reorder_window_seconds)
    progress = True
    while progress and order.held:
        progress = False
        for message in order.held:
            trial = replace(order, held=[h for h in order.held if h is not message])
            result = _attempt(message, trial, ledger.after(outcome), book, meta.partition)
            if result.status == "held":
                if message.waits_for is None and result.order is not None:
                    # It waited for its order, which is here now; from now on it waits for its turn.
                    waiting = replace(result.order.held[-1], deadline=iso(meta.now + window))
                    order = replace(order, held=[waiting if h is message else h for h in order.held])
                continue
            outcome.extend(result)
            order = result.order or trial
            progress = True
            break
    outcome.order = order
    return outcome


def _create(
    parsed: Parsed,
    params_json: str,
    state: OrderState,
    ledger: Ledger,
    book: RuleVersions,
    meta: MessageMeta,
) -> Outcome:
    assert isinstance(parsed.command, OrderCreate)
    rules = book.for_channel(state.sales_channel, meta.now)
    origin = parse_time(parsed.command.order.origin_date)
    if not state.known and retention.archived_create(rules, origin, meta.now):
        # Its life may have ended and been forgotten: a re-sent old create must not reserve stock again.
        return Outcome("archived", None, detail=f"order placed more than {rules.retain_days} days ago")
    if not state.known and rules.integration_date and origin and origin < rules.integration_date:
        work = Work(state, ledger, meta, rules)
        work.order.skipped_before_integration = True
        return work.outcome("skipped", "order placed before the channel's integration date")
    order_json = json.dumps(jsontext.read(params_json).get("order", {}), separators=(",", ":"))
    work = Work(state, ledger, meta, rules)
    work.order.skipped_before_integration = False
    orders.create(work, parsed.command.order, order_json)
    return _retry_held(work.outcome(), ledger, book, meta)


def _hold_or_skip(
    name: str,
    params_json: str,
    state: OrderState,
    ledger: Ledger,
    rules: ChannelRules,
    meta: MessageMeta,
) -> Outcome:
    work = Work(state, ledger, meta, rules)
    if state.skipped_before_integration:
        return work.outcome("skipped", "order placed before the channel's integration date")
    if len(state.held) >= HELD_MESSAGES_MAX:
        refused = Refused(
            "UNKNOWN_ORDER",
            f"order {state.order_id} is unknown and {HELD_MESSAGES_MAX} messages already wait for it",
        )
        work.events.append(rejection_event(state.key, meta, params_json, refused))
        return work.outcome("rejected", refused.code)
    deadline = meta.now + timedelta(minutes=rules.unknown_order_hold_minutes)
    return _hold(state, params_json, meta, deadline, waits_for=None)


def settle_expired(
    state: OrderState,
    ledger: Ledger,
    book: RuleVersions,
    now: Any,
    partition: int = 0,
    *,
    everything: bool = False,
) -> Outcome:
    """The held messages whose window has passed: a message that waited for another one of its order
    gets its last attempt (applied in its final meaning, or refused with its code); one whose order
    never came is refused, or, for messages that carry their own amounts, refunded standalone."""
    due = [h for h in state.held if everything or (parse_time(h.deadline) or now) <= now]
    if not due:
        return Outcome("skipped", None)
    # Dated by the messages' own deadlines, not by `now`: a worker settles on its clock's ticks and
    # replay at the next record or the end of its input, and both must date a settled message alike
    # (and count the order's retention in message time).
    latest = max(parse_time(message.deadline) or now for message in due)
    current = state.private_copy()
    current.held = [h for h in state.held if h not in due]
    total = Outcome("applied", current)
    for message in due:
        view = ledger.after(total)
        if message.waits_for is not None and current.known:
            outcome = _attempt(message, current, view, book, partition, final=True)
        else:
            outcome = _order_never_came(message, current, view, book, now, partition)
        total.extend(outcome)
        if outcome.order is not None:
            current = outcome.order
    total.order = current
    if current.known and current.held and total.events:
        at = MessageMeta("", "", latest, partition)
        total = _retry_held(total, ledger, book, at)
    return _dated(total, latest, iso(latest))


def _order_never_came(
    message: HeldMessage,
    current: OrderState,
    ledger: Ledger,
    book: RuleVersions,
    now: datetime,
    partition: int,
) -> Outcome:
    # The last attempt of a held message is dated at its deadline (README, "Early messages"), and
    # decided by the rules of that time.
    at = parse_time(message.deadline) or now
    meta = MessageMeta(message.message_name, message.message_id, at, partition, timed=True)
    version = book.version_for(current.sales_channel, at)
    rules = version.rules
    route = ROUTES[message.message_name]
    if rules.unknown_order == "standalone" and route.standalone is not None:
        command = parse(message.message_name, jsontext.read(message.params_json)).command
        applied = _apply(route.standalone, command, message.params_json, current, ledger, book, meta)
        stamp(applied.events, version.label)
        return applied
    refused = Refused(
        "UNKNOWN_ORDER",
        f"order {current.order_id} of sales channel {current.sales_channel} did not arrive by "
        f"{message.deadline} (or it was archived: an order leaves state {rules.retain_days} days after "
        "its post-sales life ended)",
    )
    rejected = current.private_copy()
    rejected.remember(message.message_id)
    event = rejection_event(current.key, meta, message.params_json, refused)
    stamp([event], version.label)
    return Outcome("rejected", rejected, events=[event])
