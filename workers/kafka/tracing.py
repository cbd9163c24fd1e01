"""OpenTelemetry traces through the worker (README, "Traces"), with W3C trace context in record headers.

Imported only when OMS_TRACING is not `off` (the `[otel]` extra installs OpenTelemetry): with tracing
off the worker never imports OpenTelemetry, and its only cost is one `if` per record.

The path of a trace: an upstream record's `traceparent` (and `tracestate`) header is forwarded by the
intake to `oms-postsales.inbound` with every other header, unchanged; the orders agent continues it
there with one span per message (named after the message, with its order key and outcome) and writes
that span's context into the headers of every record the message made: its events, the follow-ups it
sends itself (which continue the trace in their turn), and the stock movements, whose adjustments
carry it on. A dead letter keeps the headers of the record it holds, the original trace context
included; a record the intake dead-letters gets a span of its own there.

Propagation is done here by hand rather than by opentelemetry-instrumentation-aiokafka, which makes a
span per Kafka send and per fetch (changelog writes, ticks and forwards included) and knows nothing of
the message a record belongs to, or by faust's tracing hooks, which are OpenTracing, not OpenTelemetry.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The headers W3C trace context travels in.
HEADERS = ("traceparent", "tracestate")
SERVICE_NAME = "oms-postsales"
_PROPAGATOR = TraceContextTextMapPropagator()


def carried(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace context headers a record carries (none: an empty dict)."""
    return {name: headers[name] for name in HEADERS if name in headers}


class Tracing:
    """Spans per message, and their context into the headers of what a message produced."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("oms_postsales.worker")

    def start(self, name: str, headers: Mapping[str, str], topic: str, key: str | None) -> Span:
        """A span for one message, the child of the trace its record carries (a new trace if none)."""
        parent = _PROPAGATOR.extract(carrier=dict(headers))
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
        }
        if key is not None:
            attributes["oms.order_key"] = key
        return self.tracer.start_span(name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes)

    @staticmethod
    def context_headers(span: Span) -> dict[str, str]:
        """`traceparent` (and `tracestate`) naming `span` as the parent."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    @staticmethod
    def stamp(headers: MutableMapping[str, str], context: Mapping[str, str]) -> None:
        """Replace a record's trace context headers by `context`."""
        for name in HEADERS:
            headers.pop(name, None)
        headers.update(context)

    @staticmethod
    def finish(span: Span, outcome: str, message_id: str | None = None, detail: str = "") -> None:
        span.set_attribute("oms.outcome", outcome)
        if message_id is not None:
            span.set_attribute("oms.message_id", message_id)
        if detail:
            span.set_attribute("oms.detail", detail)
        if outcome == "dead_letter":
            span.set_status(Status(StatusCode.ERROR, detail or "dead letter"))
        span.end()

    @staticmethod
    def fail(span: Span, error: BaseException) -> None:
        """A span whose batch did not complete (it is handled again, under a new span)."""
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _one_line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n"


def build(exporter: str, file: Path | None = None) -> Tracing:
    """A tracer provider configured by the standard OTEL_* variables (service name and resource
    attributes, sampler; for `otlp` the endpoint, headers, protocol and timeout of the OTLP/HTTP
    exporter). `console`: one JSON span per line, to `file` or standard error."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        out: IO[str] = file.open("a", encoding="utf-8") if file is not None else sys.stderr
        span_exporter = ConsoleSpanExporter(out=out, formatter=_one_line)
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    else:
        raise ValueError(f"unknown span exporter {exporter!r}")
    return Tracing(provider)
