"""The operator's verbs: `dlq list|show|redrive`, `orders show`, `preview`, `report refunds`.

Each verb is a thin shell over a function of workers.ops.dlq, workers.ops.lookup, workers.engine.preview or
workers.ops.report, which Python callers can use directly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError

from domain.rule_versions import RuleVersions
from domain.timeutil import iso
from workers.config import logging as oms_logging
from workers.config.settings import Settings
from workers.console import fail, load_settings, option_time, read_rules
from workers.engine import preview as previews
from workers.engine.codec import dumps, loads
from workers.engine.order_view import order_view
from workers.engine.pipeline import Topics
from workers.kafka.topics import changelog_topic
from workers.ops import dlq, lookup, report, rules_commands
from workers.ops.reading import OpsError, Progress
from workers.replay.runner import load_state


@contextmanager
def _one_line_errors(settings: Settings | None = None) -> Iterator[None]:
    """A failure as one line of our own. With `settings` the verb talks to the broker: the Kafka
    client's own log lines about each failed connection would only repeat that line."""
    if settings is not None:
        oms_logging.configure("CRITICAL")
    try:
        yield
    except OpsError as exc:
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        where = settings.bootstrap_servers if settings else "the broker"
        fail(f"cannot reach the broker at {where}: {type(exc).__name__}")


def _print_json(value: Any) -> None:
    typer.echo(dumps(value) if not sys.stdout.isatty() else json.dumps(loads(dumps(value)), indent=2))


# -- dead letters ---------------------------------------------------------------------------------------

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and re-drive the dead-letter topic.")

ErrorClass = Annotated[str | None, typer.Option("--error-class", help="e.g. SchemaValidation, InvalidJson")]
OriginalTopic = Annotated[str | None, typer.Option("--topic", help="original topic of the record")]
Since = Annotated[str | None, typer.Option("--since", help="failed at or after (ISO-8601)")]
Until = Annotated[str | None, typer.Option("--until", help="failed before (ISO-8601)")]


def _selection(
    error_class: str | None,
    topic: str | None,
    since: str | None,
    until: str | None,
    records: list[str] | None = None,
) -> dlq.Selection:
    chosen = None
    if records:
        with _one_line_errors():
            chosen = frozenset(dlq.parse_where(where) for where in records)
    return dlq.Selection(
        error_class, topic, option_time(since, "--since"), option_time(until, "--until"), chosen
    )


@dlq_app.command("list")
def dlq_list(
    error_class: ErrorClass = None, topic: OriginalTopic = None, since: Since = None, until: Until = None
) -> None:
    """The dead letters (a table on a terminal, JSON lines otherwise)."""
    settings = load_settings()
    selection = _selection(error_class, topic, since, until)
    with _one_line_errors(settings):
        progress = Progress("reading")
        letters = dlq.select(dlq.read(settings, progress=progress), selection)
        progress.close()
    if not sys.stdout.isatty():
        for letter in letters:
            typer.echo(json.dumps(letter.summary()))
        return
    rows = [
        [
            letter.where,
            s["failed_at"] or "",
            s["error_class"] or "",
            s["original_topic"] or "",
            str(s["error_message"] or "")[:60],
        ]
        for letter in letters
        for s in [letter.summary()]
    ]
    header = ["WHERE", "FAILED AT", "ERROR CLASS", "ORIGINAL TOPIC", "MESSAGE"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    typer.echo(f"{len(letters)} dead letter(s) in {settings.dlq_topic}")


@dlq_app.command("show")
def dlq_show(
    where: Annotated[str, typer.Argument(metavar="PARTITION:OFFSET")],
    personal: Annotated[
        bool,
        typer.Option("--personal", help="show the personal data of the original record (redacted otherwise)"),
    ] = False,
) -> None:
    """One dead letter: headers, error, JSON pointer and what it points at, the original bytes (its
    personal data redacted unless --personal)."""
    settings = load_settings()
    with _one_line_errors(settings):
        letter = dlq.find(settings, where)
    typer.echo(json.dumps(letter.detail(personal=personal), indent=2, default=str))


@dlq_app.command("redrive")
def dlq_redrive(
    records: Annotated[
        list[str] | None,
        typer.Option("--record", metavar="PARTITION:OFFSET", help="this record (repeatable)"),
    ] = None,
    error_class: ErrorClass = None,
    topic: OriginalTopic = None,
    since: Since = None,
    until: Until = None,
    every: Annotated[bool, typer.Option("--all", help="every dead letter (no filter)")] = False,
    fix: Annotated[
        str | None,
        typer.Option("--fix", help="RFC 6902 JSON Patch applied to each value first: JSON text or @FILE"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be sent, send nothing")] = False,
    to_topic: Annotated[
        str | None,
        typer.Option("--to-topic", metavar="NAME", help="send to this inbound topic instead of the original"),
    ] = None,
    allow_any_topic: Annotated[
        bool,
        typer.Option("--allow-any-topic", help="let --to-topic name a topic that is not an inbound topic"),
    ] = False,
) -> None:
    """Send dead letters back to their original topic (original key and headers, plus dlq.redriven);
    only to the inbound topics of the topic map, unless --to-topic NAME --allow-any-topic."""
    if not (records or error_class or topic or since or until or every):
        fail("choose what to re-drive: --record, --error-class, --topic, --since/--until, or --all")
    if allow_any_topic and to_topic is None:
        fail("--allow-any-topic needs --to-topic NAME: name the one topic outside the topic map")
    settings = load_settings()
    selection = _selection(error_class, topic, since, until, records)
    with _one_line_errors(settings):
        patch = dlq.load_patch(fix) if fix is not None else None
        progress = Progress("re-driving")
        plans = dlq.redrive(
            settings,
            selection,
            patch=patch,
            dry_run=dry_run,
            progress=progress,
            to_topic=to_topic,
            any_topic=allow_any_topic,
        )
        progress.close()
    verb = "would re-drive" if dry_run else "re-drove"
    for item in plans:
        key = item.key.decode("utf-8", "replace") if item.key is not None else None
        typer.echo(f"{verb} {item.source.where} -> {item.topic} key={key}")
    typer.echo(
        f"{verb} {len(plans)} record(s)" + (f" with {len(patch.patch)} patch operation(s)" if patch else "")
    )


# -- order lookup -----------------------------------------------------------------------------------------

orders_app = typer.Typer(no_args_is_help=True, help="Look up an order's post-sales state.")


@orders_app.command("show")
def orders_show(
    key: Annotated[str, typer.Argument(metavar="CHANNEL:ORDER_ID")],
    with_personal_data: Annotated[
        bool, typer.Option("--with-personal-data", help="include the customer, addresses and contacts")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="worker API, http(s) only, no redirects (default: http(s)://OMS_WEB_HOST:OMS_WEB_PORT)",
        ),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="auto (API, else changelog), api or changelog")
    ] = "auto",
) -> None:
    """Lines with shipped/returned/refunded/cancelled counts, returns, credit notes, ledger, held messages."""
    if ":" not in key:
        fail(f"{key!r} is not <sales channel>:<order id>")
    if source not in ("auto", "api", "changelog"):
        fail("--source must be auto, api or changelog")
    settings = load_settings()
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    base = url or f"{settings.web_scheme}://{host}:{settings.web_port}"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    with _one_line_errors(settings):
        if source != "changelog":
            try:
                found = lookup.from_api(
                    base,
                    key,
                    token,
                    with_personal_data=with_personal_data,
                    ssl_context=settings.web_client_ssl() if base.startswith("https:") else None,
                )
            except lookup.WorkerUnreachable:
                if source == "api":
                    raise
                typer.echo(f"no worker answers at {base}; reading the changelog", err=True)
            else:
                if found is None:
                    fail(_not_found(settings, key))
                _print_json(found)
                return
        order = lookup.from_changelog(settings, key)
        if order is None:
            fail(_not_found(settings, key))
            return
    # The deadlines need the channel's rules: the live ones of the rules topic, as the API would use,
    # else (no rule set published yet) the worker's own file (OMS_RULES_FILE).
    try:
        versions = rules_commands.live_rules(settings)
    except (KafkaError, OSError):
        versions = RuleVersions()
    if not len(versions):
        versions = RuleVersions.from_book(read_rules(settings.rules_file))
    version = versions.version_for(order.sales_channel, datetime.now(UTC))
    view = order_view(
        order, with_personal_data=with_personal_data, rules=version.rules, rules_version=version.label
    )
    _print_json(view)


def _not_found(settings: Settings, key: str) -> str:
    """Why there is no such order: it left state (the changelog ends it with a tombstone), or it never
    was in the changelog."""
    try:
        when = lookup.archived_at(settings, key)
    except (OpsError, KafkaError):
        when = None
    if when is not None:
        return (
            f"order {key} was archived at {iso(when)}: it left state once its retention ended (retain_days)"
        )
    return f"no order {key} in {changelog_topic(settings, 'orders')}"


# -- refund preview ---------------------------------------------------------------------------------------


def preview_command(
    message_path: Annotated[Path, typer.Argument(metavar="MESSAGE.json", help="envelope or bare params")],
    state: Annotated[Path, typer.Option("--state", help="state folder written by `replay --state`")],
    rules: Annotated[Path | None, typer.Option("--rules", help="rules TOML file")] = None,
    message: Annotated[str | None, typer.Option("--message", help="message name, for bare params")] = None,
    partitions: Annotated[
        int, typer.Option("--partitions", min=1, help="as `replay --partitions`: the credit note series")
    ] = 1,
    at: Annotated[str | None, typer.Option("--at", help="message time (default: now)")] = None,
) -> None:
    """What a return, appeasement or refund message would refund, offline, changing nothing."""
    oms_logging.configure("ERROR")
    moment = option_time(at, "--at") or datetime.now(UTC)
    if not state.is_dir():
        fail(f"--state {state} is not a folder")
    book = read_rules(rules)
    try:
        document = loads(message_path.read_bytes())
    except OSError as exc:
        fail(f"cannot read {message_path}: {exc.strerror}")
    except ValueError:
        fail(f"{message_path}: not JSON")
    pipeline = previews.preview_pipeline(book, load_state(state), topics=Topics(), partitions=partitions)
    try:
        record = previews.message_record(document, pipeline.topics, message=message, at=moment)
    except previews.PreviewError as exc:
        fail(str(exc))
    _print_json(previews.preview(pipeline, record))


# -- refund and tax report --------------------------------------------------------------------------------

report_app = typer.Typer(no_args_is_help=True, help="Finance reports.")


@report_app.command("refunds")
def report_refunds(
    start: Annotated[str | None, typer.Option("--from", help="first credit note date (YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last credit note date, included")] = None,
    store: Annotated[str | None, typer.Option("--store", help="one store only")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    input_path: Annotated[
        Path | None, typer.Option("--input", help="replay output JSONL (default: the refund topic)")
    ] = None,
) -> None:
    """Refunds and their tax per store, currency, date, document and refund type; one row per note."""
    if output_format not in ("csv", "json"):
        fail("--format must be csv or json")
    first, last = _day(start, "--from"), _day(end, "--to")
    progress = Progress("reading credit notes")
    if input_path is not None:
        try:
            with input_path.open(encoding="utf-8") as lines, _one_line_errors():
                notes = list(report.notes_from_file(lines, str(input_path)))
        except OSError as exc:
            fail(f"cannot read {input_path}: {exc.strerror}")
    else:
        settings = load_settings()
        with _one_line_errors(settings):
            notes = report.notes_from_broker(settings, progress)
    progress.close()
    built = report.build(notes, first, last, store)
    if output_format == "json":
        typer.echo(json.dumps(report.as_json(built), indent=2))
    else:
        report.write_csv(built, sys.stdout)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date (YYYY-MM-DD)")
    return None


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(orders_app, name="orders")
    app.command("preview")(preview_command)
    app.add_typer(report_app, name="report")
