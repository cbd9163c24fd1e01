"""Message names of the MOM 1.0.3 contract that the worker reads and writes (docs/contract.md)."""

from typing import Final

ORDER_CREATE: Final = "magento.sales.order_management.create"
ORDER_CANCEL: Final = "magento.sales.order_management.cancel"
ORDER_CANCEL_LINE: Final = "magento.sales.order_management.cancel_line"
SHIPMENT_DONE: Final = "magento.logistics.fulfillment_management.customer_shipment_done"
RETURN_AUTHORIZE: Final = "magento.postsales.return_management.authorize"
RETURN_REQUEST: Final = "magento.postsales.return_management.request"
RETURN_RECEIVED: Final = "magento.postsales.return_management.received"
RETURN_CANCEL: Final = "magento.postsales.return_management.cancel"
RETURN_UPDATE: Final = "magento.postsales.return_management.update"
RESHIPMENT_CREATE: Final = "magento.postsales.reshipment_management.create"
# The archived MOM documentation's example spells the reshipment command this way; both spellings are
# accepted (docs/contract.md, "Wire format").
RESHIPMENT_CREATE_SEED: Final = "magento.postsales.reshipment.management.create"
# Messages with two spellings: each spelling is the same message, accepted on the topic of either.
SPELLINGS: Final = {
    RESHIPMENT_CREATE: (RESHIPMENT_CREATE, RESHIPMENT_CREATE_SEED),
    RESHIPMENT_CREATE_SEED: (RESHIPMENT_CREATE, RESHIPMENT_CREATE_SEED),
}
EXCHANGE_CREATE: Final = "magento.postsales.exchange_management.create"
APPEASEMENT_CREATE: Final = "magento.postsales.appeasement_management.create"
REFUND_CREATE: Final = "magento.postsales.refund_management.create"
REFUND_RELEASE: Final = "magento.postsales.refund_management.release"
REFUND_CANCEL: Final = "magento.postsales.refund_management.cancel"
STOCK_UPDATE: Final = "magento.inventory.source_stock_management.update"

ORDER_UPDATED: Final = "magento.sales.order_management.updated"
ORDER_CREATED: Final = "magento.sales.order_management.created"
RETURN_UPDATED: Final = "magento.postsales.return_management.updated"
REFUND_UPDATED: Final = "magento.postsales.refund_management.updated"
SHIPMENT_REQUESTED: Final = "magento.logistics.shipment_request_management.requested"
STOCK_ADJUSTED: Final = "magento.inventory.source_stock_management.adjusted"
ERROR_NOTIFY: Final = "magento.common.error_management.notify"

DEFAULT_DLQ_TOPIC: Final = "oms-postsales.dlq"

# Inbound messages about one order: keyed "<sales channel>:<order id>" and co-partitioned.
ORDER_INBOUND: Final = (
    ORDER_CREATE,
    ORDER_CANCEL,
    ORDER_CANCEL_LINE,
    SHIPMENT_DONE,
    RETURN_AUTHORIZE,
    RETURN_REQUEST,
    RETURN_RECEIVED,
    RETURN_CANCEL,
    RETURN_UPDATE,
    RESHIPMENT_CREATE,
    RESHIPMENT_CREATE_SEED,
    EXCHANGE_CREATE,
    APPEASEMENT_CREATE,
    REFUND_CREATE,
    REFUND_RELEASE,
    REFUND_CANCEL,
)
STOCK_INBOUND: Final = (STOCK_UPDATE,)
INBOUND: Final = ORDER_INBOUND + STOCK_INBOUND
OUTBOUND: Final = (
    ORDER_UPDATED,
    ORDER_CREATED,
    RETURN_UPDATED,
    REFUND_UPDATED,
    SHIPMENT_REQUESTED,
    STOCK_ADJUSTED,
    ERROR_NOTIFY,
)
