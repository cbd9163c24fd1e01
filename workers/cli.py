"""The `oms-postsales` command line."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from domain.rules import RulesError
from domain.timeutil import parse_time
from workers import logging as oms_logging
from workers.replay import ReplayInputError, load_state, replay, save_state
from workers.rules_file import load_rules

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def fail(message: str) -> None:
    typer.echo(f"oms-postsales: error: {message}", err=True)
    raise typer.Exit(2)


@app.command("replay")
def replay_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="message log, one record a line")],
    rules: Annotated[Path | None, typer.Option("--rules", help="rules TOML file")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
    state: Annotated[Path | None, typer.Option("--state", help="folder to load and save state")] = None,
    now: Annotated[str | None, typer.Option("--now", help="clock for messages that carry no time")] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="log level (JSON logs on stderr)")
    ] = "WARNING",
) -> None:
    """Run the worker's processing on a JSONL message log, with no broker; print the emitted records."""
    try:
        oms_logging.configure(log_level)
    except ValueError as exc:
        fail(str(exc))
    clock: datetime | None = None
    if now is not None:
        clock = parse_time(now)
        if clock is None:
            fail(f"--now {now!r} is not an ISO-8601 time")
    try:
        book = load_rules(rules)
    except RulesError as exc:
        fail(f"rules: {exc}")
    stores = load_state(state) if state is not None else None
    with ExitStack() as stack:
        try:
            source = stack.enter_context(input_path.open(encoding="utf-8"))
        except OSError as exc:
            fail(f"cannot read {input_path}: {exc.strerror}")
        out = stack.enter_context(output.open("w", encoding="utf-8")) if output else sys.stdout
        try:
            summary = replay(iter(source), out, book, source=str(input_path), stores=stores, now=clock)
        except ReplayInputError as exc:
            fail(str(exc))
        except UnicodeDecodeError as exc:
            fail(f"{input_path}: not UTF-8 text ({exc.reason})")
    if state is not None and stores is not None:
        save_state(state, stores)
    counts = ", ".join(f"{name}={count}" for name, count in sorted(summary.counts.items()))
    typer.echo(f"replayed {summary.records} records, emitted {summary.emitted} ({counts})", err=True)


@app.callback()
def main_callback() -> None:
    """Kafka-native post-sales worker for the Magento Order Management (MOM 1.0.3) message contract."""


def main() -> None:
    app()
