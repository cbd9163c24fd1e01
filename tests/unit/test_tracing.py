"""Tracing: off by default and then OpenTelemetry is never imported; on, a record's W3C trace context is
continued by a span per message and handed on to what it made (spans read from the SDK's in-memory
exporter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workers.config.settings import Settings, SettingsError, check_runtime
from workers.kafka.tracing import Tracing, build

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROOT = Path(__file__).resolve().parents[2]


def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def test_a_span_continues_the_trace_its_record_carries_and_hands_it_on() -> None:
    tracing, exporter = traced()
    span = tracing.start("magento.sales.order_management.create", {"traceparent": PARENT}, "t", "OCTO:1")
    headers = {"message_id": "m", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    tracing.stamp(headers, tracing.context_headers(span))
    tracing.finish(span, "applied", "m-1")
    [finished] = exporter.get_finished_spans()
    assert finished.name == "magento.sales.order_management.create"
    assert f"{finished.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert finished.parent is not None and f"{finished.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert dict(finished.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "t",
        "oms.order_key": "OCTO:1",
        "oms.outcome": "applied",
        "oms.message_id": "m-1",
    }
    # The output now names the worker's span as its parent, in the same trace; the rest is kept.
    assert headers["message_id"] == "m"
    assert headers["traceparent"] == (
        f"00-4bf92f3577b34da6a3ce929d0e0e4736-{finished.context.span_id:016x}-01"
    )


def test_a_record_without_trace_context_starts_a_trace() -> None:
    tracing, exporter = traced()
    tracing.finish(tracing.start("n", {}, "t", None), "dead_letter", detail="InvalidJson")
    [finished] = exporter.get_finished_spans()
    assert finished.parent is None and finished.status.status_code.name == "ERROR"
    assert "oms.order_key" not in (finished.attributes or {})


def test_the_console_exporter_writes_one_json_span_per_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    tracing = build("console", path)
    tracing.finish(tracing.start("one", {"traceparent": PARENT}, "t", "k"), "applied")
    tracing.finish(tracing.start("two", {}, "t", "k"), "applied")
    tracing.shutdown()
    lines = path.read_text().splitlines()
    assert [line.count('"name"') >= 1 for line in lines] == [True, True]
    assert '"name":"one"' in lines[0] and "4bf92f3577b34da6a3ce929d0e0e4736" in lines[0]


def test_tracing_off_never_imports_opentelemetry() -> None:
    code = textwrap.dedent(
        """
        import sys
        from workers.config.rules_file import load_rules
        from workers.config.settings import Settings
        from workers.kafka.app import build_app
        app, runtime = build_app(Settings(create_topics=False, store="memory://"), load_rules(None))
        assert runtime.tracing is None
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_tracing_on_builds_the_worker_with_its_tracer() -> None:
    from workers.config.rules_file import load_rules
    from workers.kafka.app import build_app

    _app, runtime = build_app(
        Settings(create_topics=False, store="memory://", tracing="console"), load_rules(None)
    )
    assert isinstance(runtime.tracing, Tracing)
    runtime.tracing.shutdown()


@pytest.mark.parametrize("word", ["OFF", " otlp "])
def test_the_setting_takes_any_case(word: str) -> None:
    assert Settings(tracing=word).tracing == word.strip().lower()  # type: ignore[arg-type]


def test_start_refuses_tracing_without_opentelemetry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A module that cannot be imported stands for the missing extra.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    settings = Settings(data_dir=tmp_path, store="memory://", tracing="otlp")
    with pytest.raises(SettingsError, match=r"OMS_TRACING=otlp needs OpenTelemetry .*\[otel\]"):
        check_runtime(settings)
