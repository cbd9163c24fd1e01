"""Sizes the whole system agrees on.

One limit for a record's value, whoever writes it: an upstream message the worker reads, an output it
publishes, a stored value (an order) on its changelog. A record of that size, with room for its key,
headers and batch framing, stays under Apache Kafka's default `max.message.bytes` (1,048,588 bytes),
so no broker or topic default refuses what the worker decided to accept.
"""

from __future__ import annotations

MAX_RECORD_BYTES = 1_000_000
# Key, headers and the record batch's framing around one value (a dead letter's headers included).
RECORD_OVERHEAD_BYTES = 32_768
