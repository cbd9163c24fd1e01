"""`oms-postsales rules publish | show | history`: the rule sets on the rules topic (README, "Rules
that change while the worker runs")."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError

from domain.rule_versions import (
    DEFAULTS_KEY,
    RuleVersion,
    RuleVersions,
    VersionRefused,
    book_versions,
    changed_rules,
)
from domain.rules import RuleBook
from domain.timeutil import EPOCH, iso
from workers.config import logging as oms_logging
from workers.config.settings import Settings
from workers.console import fail, load_settings, option_time, read_rules
from workers.kafka.rules_reader import RulesReader, publish
from workers.ops import rules_whatif

# A rule set takes effect this long after it is published by default: every worker must have read it
# before the first message it decides, or that message is decided by the version before (a worker
# reads the topic within a second; a minute covers a worker catching up after a pause).
DEFAULT_DELAY = timedelta(minutes=1)

rules_app = typer.Typer(no_args_is_help=True, help="The rule sets per sales channel on the rules topic.")


@dataclass(frozen=True)
class Change:
    old: RuleVersion | None
    new: RuleVersion
    keys: dict[str, tuple[Any, Any]]


def planned(
    live: RuleVersions, book: RuleBook, channel: str | None, effective_from: datetime
) -> list[Change]:
    """The rule sets of the file that differ from the live ones, each as the next version of its key."""
    wanted = book_versions(book, effective_from, 1)
    if channel is not None:
        wanted = [found for found in wanted if found.key == channel]
        if not wanted:
            raise ValueError(
                f"--channel {channel}: the file has no [sales_channels.{channel}] (* is [defaults])"
            )
    changes = []
    for found in wanted:
        last = live.latest(found.key)
        keys = changed_rules(last.rules if last is not None else None, found.rules)
        if last is not None and not keys:
            continue
        version = replace(found, version=(last.version + 1) if last is not None else 1)
        changes.append(Change(last, version, keys))
    return changes


def render_changes(changes: list[Change]) -> str:
    if not changes:
        return "no change: the file's rule sets are the live ones\n"
    lines = []
    for change in changes:
        was = change.old.label if change.old is not None else "none (follows the defaults)"
        lines.append(f"{change.new.label}: effective from {iso(change.new.effective_from)} (live: {was})")
        for key, (before, after) in sorted(change.keys.items()):
            lines.append(f"  {key}: {json.dumps(before)} -> {json.dumps(after)}")
    return "\n".join(lines) + "\n"


def live_rules(settings: Settings) -> RuleVersions:
    versions = RuleVersions()
    asyncio.run(RulesReader(settings, versions).load(None))
    return versions


def _live_or_fail(settings: Settings) -> RuleVersions:
    try:
        return live_rules(settings)
    except (KafkaError, OSError) as exc:
        fail(f"cannot read the rules topic at {settings.bootstrap_servers} ({type(exc).__name__})")
        raise


def proposed(live: RuleVersions, changes: list[Change], effective_from: datetime | None) -> RuleVersions:
    """The live versions with the changes added. Without a time given, a what-if applies the proposed
    rule sets to the whole log (a time in the future would change nothing in a log of the past)."""
    if effective_from is not None:
        ahead = live.copy()
        for change in changes:
            ahead.add(change.new)
        return ahead
    changed = {change.new.key: change.new for change in changes}
    whole = RuleVersions()
    for found in live:
        if found.key not in changed:
            whole.add(found)
    for found in changed.values():
        whole.add(replace(found, version=1, effective_from=EPOCH))
    return whole


@rules_app.command("publish")
def publish_command(
    path: Annotated[
        Path, typer.Argument(metavar="FILE.toml", help="rules file ([defaults], [sales_channels.<id>])")
    ],
    channel: Annotated[
        str | None, typer.Option("--channel", help=f"only this sales channel ({DEFAULTS_KEY}: the defaults)")
    ] = None,
    effective_from: Annotated[
        str | None, typer.Option("--effective-from", help="RFC 3339 (default: now + 1 minute)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="write the new versions")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change, write nothing")] = False,
    against: Annotated[
        Path | None, typer.Option("--against", help="with --dry-run: a replay log to replay under both")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option("--base", help="with --dry-run: compare with this rules file instead of the live topic"),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option("--partitions", min=1, help="for --against: as replay (default OMS_PARTITIONS)"),
    ] = None,
) -> None:
    """Publish the file's rule sets that differ from the live ones, each as its key's next version."""
    oms_logging.configure("CRITICAL")
    if yes and dry_run:
        fail("--yes and --dry-run: choose one")
    if (against is not None or base is not None) and not dry_run:
        fail("--against and --base go with --dry-run")
    book = read_rules(path)
    given = option_time(effective_from, "--effective-from")
    moment = given or (datetime.now(UTC) + DEFAULT_DELAY).replace(microsecond=0)
    if given is not None and given < datetime.now(UTC):
        typer.echo(
            f"warning: --effective-from {iso(given)} is in the past: messages dated since then that a "
            "worker already handled stay decided by the version before, while replay decides them by "
            "this one",
            err=True,
        )
    settings = load_settings()
    live = RuleVersions.from_book(read_rules(base)) if base is not None else _live_or_fail(settings)
    try:
        changes = planned(live, book, channel, moment)
    except ValueError as exc:
        fail(str(exc))
        return
    typer.echo(render_changes(changes), nl=False)
    try:
        # What the workers would refuse (an effective_from before the live version's) is refused here.
        ahead = live.copy()
        for change in changes:
            ahead.add(change.new)
    except VersionRefused as exc:
        fail(f"{exc}; give a later --effective-from")
    if dry_run:
        if against is not None:
            try:
                ahead = proposed(live, changes, given)
            except VersionRefused as exc:
                fail(str(exc))
                return
            count = partitions or settings.partitions
            typer.echo(f"what-if on {against} ({count} partitions):")
            typer.echo(rules_whatif.render(rules_whatif.what_if(against, live, ahead, count)), nl=False)
        return
    if not changes:
        return
    if not yes:
        fail("nothing written: add --yes to publish (or --dry-run to look only)")
    try:
        asyncio.run(publish(settings, [change.new for change in changes]))
    except (KafkaError, OSError) as exc:
        fail(f"cannot write the rules topic at {settings.bootstrap_servers} ({type(exc).__name__})")
    for change in changes:
        typer.echo(f"published {change.new.label}")


def _shown(found: RuleVersion) -> dict[str, Any]:
    return {
        "rules_version": found.label,
        "effective_from": iso(found.effective_from),
        "rules": found.rules.model_dump(mode="json"),
    }


@rules_app.command("show")
def show_command(
    channel: Annotated[str | None, typer.Option("--channel", help="this sales channel only")] = None,
    at: Annotated[str | None, typer.Option("--at", help="as of this message time (default: now)")] = None,
) -> None:
    """The rule set that decides a message of each channel (or one) dated now (or --at), as JSON."""
    oms_logging.configure("CRITICAL")  # a broker problem is the verb's one line, not the client's
    moment = option_time(at, "--at") or datetime.now(UTC)
    live = _live_or_fail(load_settings())
    keys = [channel] if channel is not None else live.keys() or [DEFAULTS_KEY]
    shown = {key: {"sales_channel": key} | _shown(live.version_for(key, moment)) for key in keys}
    typer.echo(json.dumps(shown, indent=2))


@rules_app.command("history")
def history_command(
    channel: Annotated[
        str, typer.Option("--channel", help=f"the sales channel ({DEFAULTS_KEY}: the defaults)")
    ],
) -> None:
    """Every version of one channel's rule set, oldest first, with the keys each changed."""
    oms_logging.configure("CRITICAL")
    live = _live_or_fail(load_settings())
    versions = live.history(channel)
    if not versions:
        fail(f"no rule set of {channel} on the rules topic (it follows the defaults, {DEFAULTS_KEY})")
    previous = None
    for found in versions:
        typer.echo(f"{found.label}  effective from {iso(found.effective_from)}")
        for key, (before, after) in sorted(changed_rules(previous, found.rules).items()):
            if previous is not None:
                typer.echo(f"  {key}: {json.dumps(before)} -> {json.dumps(after)}")
        previous = found.rules


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
