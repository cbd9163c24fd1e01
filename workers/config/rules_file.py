"""Reads the rules TOML file (README, "Rules per sales channel"); the domain turns the mapping into a
checked rule book."""

from __future__ import annotations

import tomllib
from pathlib import Path

from domain.rules import RuleBook, RulesError, parse_rules


def load_rules(path: Path | None) -> RuleBook:
    if path is None:
        return parse_rules({})
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_rules(raw)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None
