"""Typed inbound commands, read from the params of a message that already passed its JSON Schema.

Real producers are looser than MOM 1.0.3 (docs/contract.md): null for an absent optional field, extra members,
numeric strings, and PHP's `[]` for an empty object. The models take all of that; what the schema let
through but the domain still cannot use raises `pydantic.ValidationError`, which the worker dead-letters.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

ReturnRefundMode = Literal["QUANTITY_AND_AMOUNT", "QUANTITY_ONLY"]
RefundMode = Literal["QUANTITY_AND_AMOUNT", "QUANTITY_ONLY", "AMOUNT_ONLY"]


def _is_sequence_type(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple):
        return True
    return any(_is_sequence_type(arg) for arg in get_args(annotation))


class Loose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        # "" is how PHP producers write an absent string: it is absent here too, before any rule sees it
        # (an empty credit_note_number must not be kept as a number).
        if value == "":
            return None
        # Magento (PHP) encodes an empty object as []: read it as "absent" where no list is expected.
        if isinstance(value, list) and not value and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            if not _is_sequence_type(field.annotation):
                return None
        return value


class TaxComponent(Loose):
    type: str | None = None
    amount: Decimal
    rate: Decimal | None = None


class Price(Loose):
    net_amount: Decimal | None = None
    gross_amount: Decimal
    tax_amount: Decimal | None = None
    tax_rate: Decimal | None = None
    taxes: tuple[TaxComponent, ...] = ()
    currency: str | None = None

    @field_validator("taxes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class OrderLine(Loose):
    id: str | None = None
    line_number: int
    product_type: str
    sku: str
    quantity: int = 1
    product_name: str | None = None
    parent_line_number: int | None = None
    shipping_line_number: int | None = None
    shipping_address_reference: str | None = None
    payment_reference: str | None = None
    amount: Price
    status: str | None = None
    source_location: str | None = None

    @field_validator("quantity", mode="before")
    @classmethod
    def _default_quantity(cls, value: Any) -> Any:
        return 1 if value is None or value == "" else value


class PaymentTransaction(Loose):
    payment_method: str | None = None
    amount: Decimal


class Payment(Loose):
    reference: str
    currency: str | None = None
    transactions: tuple[PaymentTransaction, ...] = ()

    @field_validator("transactions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class Order(Loose):
    id: str
    store: str
    origin_date: str | None = None
    status: str | None = None
    lines: tuple[OrderLine, ...] = ()
    payments: tuple[Payment, ...] = ()

    @field_validator("lines", "payments", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class OrderCreate(Loose):
    order: Order


class OrderCancel(Loose):
    order_id: str
    sales_channel_id: str | None = None
    user: str | None = None
    reason: str | None = None


class OrderCancelLine(Loose):
    order_id: str
    sales_channel_id: str
    line_number: int
    reason: str | None = None
    user: str | None = None
    quantity: int | None = None


class ShipmentItem(Loose):
    order_line_id: str | None = None
    order_line_number: int
    item_type: str | None = None
    sku: str | None = None
    quantity: int | None = None


class Shipment(Loose):
    store_id: str
    order_id: str
    source_id: str
    method: str | None = None
    shipment_date: str | None = None
    items: tuple[ShipmentItem, ...]


class ShipmentDone(Loose):
    shipment: Shipment


class ReturnLine(Loose):
    id: str | None = None
    line_number: int
    sku: str | None = None
    reason: str | None = None
    reason_description: str | None = None
    condition: str | None = None
    quantity: int | None = None
    restock: bool | None = None


class CustomAttribute(Loose):
    name: str | None = None
    # Magento's own spelling of the name.
    attribute_code: str | None = None
    value: str | int | float | bool | None = None


class Return(Loose):
    sales_channel_id: str
    order_id: str
    source_id: str | None = None
    user: str | None = None
    rma: str | None = None
    origin_date: str | None = None
    refund_mode: ReturnRefundMode | None = None
    return_tracking_number: str | None = None
    return_tracking_url: str | None = None
    return_tracking_label_url: str | None = None
    return_tracking_carrier: str | None = None
    custom_attributes: tuple[CustomAttribute, ...] = ()
    lines: tuple[ReturnLine, ...] = ()

    @field_validator("lines", "custom_attributes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class ReturnCommand(Loose):
    """authorize, request and received share one shape."""

    return_: Return = Field(alias="return")


class ReshipmentLine(Loose):
    id: str | None = None
    line_number: int
    reason: str | None = None
    reason_description: str | None = None
    quantity: int | None = None


class Reshipment(Loose):
    sales_channel_id: str
    order_id: str
    new_order_id: str | None = None
    new_shipping_method: str | None = None
    new_shipping_address: dict[str, Any] | None = None
    lines: tuple[ReshipmentLine, ...]


class ReshipmentCreate(Loose):
    reshipment: Reshipment
    user: str | None = None


class ExchangeLine(Loose):
    id: str | None = None
    line_number: int
    new_sku: str
    reason: str | None = None
    reason_description: str | None = None
    # (ext) Units of the line to exchange; MOM exchanges every returnable unit of the line.
    quantity: int | None = None


class Exchange(Loose):
    sales_channel_id: str
    order_id: str
    new_order_id: str | None = None
    new_shipping_method: str | None = None
    new_shipping_address: dict[str, Any] | None = None
    lines: tuple[ExchangeLine, ...]
    user: str | None = None


class ExchangeCreate(Loose):
    exchange: Exchange


class AppeasementLine(Loose):
    id: str | None = None
    line_number: int
    amount: Decimal
    reason: str | None = None
    reason_description: str | None = None


class Appeasement(Loose):
    sales_channel_id: str
    order_id: str
    user: str | None = None
    credit_note_number: str | None = None
    credit_note_date: str | None = None
    origin_date: str | None = None
    lines: tuple[AppeasementLine, ...]


class AppeasementCreate(Loose):
    appeasement: Appeasement


class VatDetail(Loose):
    type: str | None = None
    amount: Decimal | None = None
    rate: Decimal | None = None


class RefundPaymentDetails(Loose):
    cost_gross: Decimal
    cost_net: Decimal | None = None
    cost_vat: Decimal | None = None
    vat_rate: Decimal | None = None
    vat_detail: tuple[VatDetail, ...] | None = None


class RefundPayment(Loose):
    ref: str
    details: RefundPaymentDetails


class RefundLine(Loose):
    order_line: str
    # Extension: the item a standalone refund (an order never seen) restocks.
    sku: str | None = None
    reason: str | None = None
    reason_description: str | None = None
    quantity: int | None = None
    restock: bool | None = None
    payments: tuple[RefundPayment, ...]


class RefundStatus(Loose):
    date: str


class Refund(Loose):
    client: str | None = None
    order_id: str
    store_id: str
    sales_channel_id: str | None = None
    credit_note_number: str | None = None
    credit_note_date: str | None = None
    status: RefundStatus
    rma: str | None = None
    user: str | None = None
    refund_reason: str | None = None
    refund_mode: RefundMode | None = None
    # Extension: where a standalone refund's restocked units go back on hand.
    source_id: str | None = None
    lines: tuple[RefundLine, ...]


class RefundCreate(Loose):
    refund: Refund


class CreditNoteCommand(Loose):
    """refund_management.release and .cancel (`offline` is release's only)."""

    sales_channel_id: str
    order_id: str
    credit_note_number: str
    user: str | None = None
    offline: bool | None = None


class SnapshotSku(Loose):
    sku: str
    quantity: int
    unlimited: bool | None = None


class SourceSnapshot(Loose):
    source_id: str
    mode: Literal["FULL", "NONZERO", "DELTA"]
    created_on: str | None = None
    stock: tuple[SnapshotSku, ...]


class StockUpdate(Loose):
    snapshot: SourceSnapshot
