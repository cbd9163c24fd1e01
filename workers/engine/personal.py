"""Personal data in messages: which members hold it, and a copy of a message without them.

Shared by every door that shows a message or part of one: `POST /v1/preview` (the child orders and
returns it shows), `dlq show` (the original record), dead-letter error texts (never the value of a
personal member). `/v1/orders` leaves the same data out through `order_view`. A reader asks for
personal data explicitly (`?personal=1`, `--personal`), and the worker logs that it was asked.
"""

from __future__ import annotations

from typing import Any

from workers.engine.codec import DecodeError

# Members of the MOM messages (schemas/) that name, locate or contact a person, or hold what a person
# wrote: the customer, addresses and their parts, contacts, the IP, the users who act on a return, free
# text written by the customer or an agent.
PERSONAL_KEYS = frozenset(
    {
        "customer",
        "customer_id",
        "addresses",
        "address",
        "address1",
        "address2",
        "billing_address",
        "shipping_address",
        "new_shipping_address",
        "pickup_location",
        "first_name",
        "last_name",
        "company_name",
        "city",
        "zip",
        "state",
        "latitude",
        "longitude",
        "email",
        "phone",
        "ip",
        "user",
        "customer_service_agent",
        "gift_message",
        "reason_description",
        "condition_description",
    }
)
REDACTED = "[personal data: redacted]"
# The longest `dlq.error.message` written: validator texts quote the value and the schema's rule.
MAX_ERROR_CHARS = 500


def redact(value: Any) -> Any:
    """A copy of a JSON value where every value inside a personal member reads REDACTED; the shape
    stays (an address keeps its members, each redacted), so a reader still sees what was sent where."""
    if isinstance(value, dict):
        return {k: _blank(v) if k in PERSONAL_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _blank(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(item) for item in value]
    return None if value is None else REDACTED


def holds_personal(value: Any) -> bool:
    """Whether a JSON value has a personal member anywhere inside."""
    if isinstance(value, dict):
        return any(k in PERSONAL_KEYS or holds_personal(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_personal(item) for item in value)
    return False


def personal_pointer(pointer: str) -> bool:
    """Whether a JSON pointer goes through a personal member (`/params/order/addresses/0/email`)."""
    segments = pointer.split("/")[1:]
    return any(part.replace("~1", "/").replace("~0", "~") in PERSONAL_KEYS for part in segments)


def at_pointer(document: Any, pointer: str) -> Any:
    """The value a JSON pointer points at, or None."""
    found = document
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(found, dict):
            found = found.get(part)
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            return None
    return found


def safe_error(error: DecodeError, document: Any = None) -> DecodeError:
    """The error as a dead letter may say it: never quoting a personal value (the pointer goes through a
    personal member, or the value pointed at holds one), and at most MAX_ERROR_CHARS long. `document`:
    the JSON the pointer is relative to (the record's value), when known."""
    message = error.message
    personal = personal_pointer(error.path)
    if not personal and document is not None and error.path:
        personal = holds_personal(at_pointer(document, error.path))
    if personal:
        rule = message.partition("; the rule: ")[2]
        message = (
            f"the value at {error.path} is not valid ({error.error_class}); it is personal data and "
            "not quoted here (`dlq show --personal` shows the record)"
            + (f"; the rule: {rule}" if rule else "")
        )
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    if message == error.message:
        return error
    return DecodeError(error.error_class, message, error.path)
