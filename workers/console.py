"""What every command shares: a one-line error and exit 2, settings and rules read with the setting or
rule named (never a setting's value: some are secrets)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from pydantic import ValidationError

from domain.rules import RuleBook, RulesError
from domain.timeutil import parse_time
from workers.config.rules_file import load_rules
from workers.config.settings import Settings


def fail(message: str) -> None:
    typer.echo(f"oms-postsales: error: {message}", err=True)
    raise typer.Exit(2)


def option_time(text: str | None, option: str) -> datetime | None:
    """A command-line time (RFC 3339 / ISO 8601), or a one-line error naming the option."""
    if text is None:
        return None
    moment = parse_time(text)
    if moment is None:
        fail(f"{option} {text!r} is not an RFC 3339 time")
    return moment


def read_rules(path: Path | None) -> RuleBook:
    try:
        return load_rules(path)
    except RulesError as exc:
        fail(f"rules: {exc}")
        raise  # unreachable: fail() exits


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # Name the setting, never its value: some values are secrets.
        where = ", ".join(
            "OMS_" + "__".join(str(part) for part in error["loc"]).upper() + f" ({error['msg']})"
            for error in exc.errors(include_input=False)
        )
        fail(f"settings: {where}")
        raise  # unreachable: fail() exits
