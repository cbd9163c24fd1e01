"""Per sales channel post-sales rules (README, "Rules per sales channel") with defaults, read from a
plain mapping (the TOML file)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.sku_patterns import SkuPatterns

ShippingRefundRule = Literal["onFirst", "onLast", "never"]

# Percentages and money in rules are decimal text: a TOML float is binary (0.1 is not 0.1), and a fee is
# money, so `15.5` is refused and `"15.5"` taken. The patterns are the whole rule (the JSON Schema made
# from this model says the same); the validators below only word the refusal.
_PERCENT = r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$"
_AMOUNT = r"^[0-9]{1,9}(\.[0-9]{1,4})?$"
PercentText = Annotated[str, StringConstraints(strict=True, pattern=_PERCENT)]
AmountText = Annotated[str, StringConstraints(strict=True, pattern=_AMOUNT)]
_TRIMMED = r"^\S(.*\S)?$"
# A SKU or a glob of SKUs, without surrounding blanks (a blank would never match a SKU).
SkuPattern = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=_TRIMMED)]
# A return reason or condition code, compared without case.
Code = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100, pattern=_TRIMMED)]


class RulesError(ValueError):
    """A rules file that cannot be used: the message names the offending key."""


class ChannelRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Booleans and numbers are strict: TOML has them, so `"yes"`, `1` or `"true"` for a flag and `"30"`
    # or `true` for a count are typos, which pydantic would otherwise coerce (`true` became 1 second).

    return_service_order: StrictBool = False
    return_service_line: StrictBool = True
    shipping_refund_rule: ShippingRefundRule = "onLast"
    auto_approve_return: StrictBool = True
    refund_on: Literal["approval", "receipt"] = "approval"
    auto_release_refund: StrictBool = True
    integration_date: datetime | None = None
    unknown_order: Literal["reject", "standalone"] = "reject"
    unknown_order_hold_minutes: StrictInt = Field(default=60, ge=0, le=60 * 24 * 90)
    # How long a message whose precondition is not met yet (line not shipped yet, return not opened yet)
    # waits for the message it depends on before it is refused, or taken in its final meaning.
    reorder_window_seconds: StrictInt = Field(default=30, ge=0, le=24 * 3600)
    # Conditions that put returned goods back on sale; any other condition writes them off.
    restock_conditions: tuple[str, ...] = ("GOOD", "NEW", "AS_NEW", "RESELLABLE", "UNOPENED")
    default_source: str = Field(default="DEFAULT", min_length=1)
    currency_precision: dict[str, StrictInt] = Field(default_factory=dict)
    # Days after which a line's units can no longer be returned (None: no window), counted from the
    # line's last shipment or from the order's date (domain/return_window.py).
    return_window_days: StrictInt | None = Field(default=None, ge=0, le=3650)
    return_window_from: Literal["shipment", "order"] = "shipment"
    # Days an order stays in state after its post-sales life ended (nothing open) and its last change;
    # then it is forgotten (domain/retention.py). More than any window, hold or reorder window.
    retain_days: StrictInt = Field(default=400, ge=1, le=3650)
    # Split tender: the payment methods that take back what no one line's payment does, first and in
    # this order; then the order's other payments in its own order (domain/tender.py).
    refund_tender_order: tuple[str, ...] = ("GIFT_CARD", "STORE_CREDIT")
    # When an exchange's child order is sent to be shipped: with the exchange, or once the returned
    # units arrived in a restocking condition (domain/exchanges.py).
    exchange_ships: Literal["at_once", "on_receipt"] = "at_once"
    # Final sale and return fees (domain/final_sale.py, domain/return_fees.py).
    final_sale_skus: tuple[SkuPattern, ...] = Field(
        default=(),
        description="SKUs that cannot be returned or exchanged: exact SKUs or fnmatch globs "
        "(*, ?, [seq]), compared without case",
    )
    restocking_fee_percent: PercentText | None = Field(
        default=None,
        description="percent of the returned goods' refund kept as a restocking fee, decimal text "
        '("15", "12.5"); none: no restocking fee',
    )
    restocking_fee_reasons: tuple[Code, ...] | None = Field(
        default=None,
        description="return reasons the restocking fee is charged for (without case); none: every reason",
    )
    restocking_fee_conditions: tuple[Code, ...] | None = Field(
        default=None,
        description="conditions the restocking fee is charged for (without case); none: every condition",
    )
    return_shipping_fee: AmountText | None = Field(
        default=None,
        description='flat fee kept once per return, in the order\'s currency, decimal text ("5.95"); '
        "none: no shipping fee",
    )

    # Made once per rules object, so that no message compiles a pattern or parses a fee.
    _final_sale: SkuPatterns = PrivateAttr(default_factory=lambda: SkuPatterns(()))
    _restocking_rate: Decimal | None = PrivateAttr(default=None)
    _shipping_fee: Decimal | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        self._final_sale = SkuPatterns(self.final_sale_skus)
        percent = self.restocking_fee_percent
        self._restocking_rate = None if percent is None else Decimal(percent) / 100
        fee = self.return_shipping_fee
        self._shipping_fee = None if fee is None else Decimal(fee)

    @property
    def final_sale(self) -> SkuPatterns:
        return self._final_sale

    @property
    def restocking_rate(self) -> Decimal | None:
        """The restocking fee as a fraction of the goods' refund (15 % is 0.15); None: no fee."""
        return self._restocking_rate

    @property
    def shipping_fee(self) -> Decimal | None:
        return self._shipping_fee

    def restocking_fee_applies(self, reason: str | None, condition: str | None) -> bool:
        """Whether a returned line with this reason and condition is charged the restocking fee. With
        `restocking_fee_conditions` set, a line whose condition is not known is not charged: a fee is
        taken on evidence, as goods are restocked on evidence."""
        if self._restocking_rate is None:
            return False
        for allowed, code in (
            (self.restocking_fee_reasons, reason),
            (self.restocking_fee_conditions, condition),
        ):
            if allowed is not None and (code is None or code.strip().upper() not in allowed):
                return False
        return True

    @field_validator("restocking_fee_percent", mode="before")
    @classmethod
    def _percent_text(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and re.fullmatch(_PERCENT, value)):
            raise ValueError(
                'must be a percentage from "0" to "100" as decimal text, up to 4 decimals ("15", "12.5")'
            )
        return value

    @field_validator("return_shipping_fee", mode="before")
    @classmethod
    def _amount_text(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and re.fullmatch(_AMOUNT, value)):
            raise ValueError('must be a non-negative amount as decimal text, up to 4 decimals ("5.95")')
        return value

    @field_validator("restocking_fee_reasons", "restocking_fee_conditions")
    @classmethod
    def _codes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list charges no one: leave the key out to charge every return")
        return None if value is None else tuple(code.upper() for code in value)

    @model_validator(mode="after")
    def _fee_filters_need_a_fee(self) -> ChannelRules:
        for name in ("restocking_fee_reasons", "restocking_fee_conditions"):
            if getattr(self, name) is not None and self.restocking_fee_percent is None:
                raise ValueError(f"{name} is set but restocking_fee_percent is not")
        return self

    @model_validator(mode="after")
    def _retention_outlives_every_window(self) -> ChannelRules:
        longest = [
            ("return_window_days", float(self.return_window_days or 0)),
            ("unknown_order_hold_minutes", self.unknown_order_hold_minutes / (24 * 60)),
            ("reorder_window_seconds", self.reorder_window_seconds / (24 * 3600)),
        ]
        for name, days in longest:
            if self.retain_days <= days:
                raise ValueError(f"retain_days ({self.retain_days}) must be longer than {name}")
        return self

    @field_validator("integration_date", mode="before")
    @classmethod
    def _date_to_utc_midnight(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("integration_date")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("restock_conditions")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(condition.strip().upper() for condition in value)

    @field_validator("currency_precision")
    @classmethod
    def _precision_range(cls, value: dict[str, int]) -> dict[str, int]:
        for code, places in value.items():
            if not 0 <= places <= 4:
                raise ValueError(f"{code}: minor digits must be 0..4")
        return {code.upper(): places for code, places in value.items()}

    def restocks(self, condition: str | None) -> bool:
        return condition is not None and condition.strip().upper() in self.restock_conditions


class RuleBook(BaseModel):
    model_config = ConfigDict(frozen=True)

    defaults: ChannelRules = Field(default_factory=ChannelRules)
    sales_channels: dict[str, ChannelRules] = Field(default_factory=dict)

    def for_channel(self, sales_channel: str | None) -> ChannelRules:
        if sales_channel is None:
            return self.defaults
        return self.sales_channels.get(sales_channel, self.defaults)


def _where(error: Mapping[str, Any], prefix: str) -> str:
    path = ".".join(str(part) for part in error.get("loc", ()))
    return f"{prefix}.{path}" if path else prefix


def _channel(raw: Mapping[str, Any], base: Mapping[str, Any], prefix: str) -> ChannelRules:
    try:
        return ChannelRules.model_validate({**base, **raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        given = first.get("input")
        # The value given, when it is one TOML scalar: `"30"` and `30` read alike in pydantic's text.
        shown = f" (got {_toml(given)})" if isinstance(given, str | bool | int | float) else ""
        raise RulesError(f"{_where(first, prefix)}: {first['msg']}{shown}") from None


def _toml(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def parse_rules(raw: Mapping[str, Any]) -> RuleBook:
    """Build the rule book from a `[defaults]` table and `[sales_channels.<id>]` tables.

    Unknown keys and wrong values are refused with the key named: a typo must never fall back to a
    default silently, since the defaults decide whether money is refunded.
    """
    unknown = sorted(set(raw) - {"defaults", "sales_channels"})
    if unknown:
        raise RulesError(f"{unknown[0]}: unknown table (expected [defaults] and [sales_channels.<id>])")
    defaults_raw = raw.get("defaults", {})
    channels_raw = raw.get("sales_channels", {})
    if not isinstance(defaults_raw, Mapping):
        raise RulesError("defaults: must be a table")
    if not isinstance(channels_raw, Mapping):
        raise RulesError("sales_channels: must be a table of tables")
    defaults = _channel(defaults_raw, {}, "defaults")
    base = defaults.model_dump(exclude_unset=False)
    channels: dict[str, ChannelRules] = {}
    for channel_id, table in channels_raw.items():
        if not isinstance(table, Mapping):
            raise RulesError(f"sales_channels.{channel_id}: must be a table")
        channels[str(channel_id)] = _channel(table, base, f"sales_channels.{channel_id}")
    return RuleBook(defaults=defaults, sales_channels=channels)
