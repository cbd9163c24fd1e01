"""Versions of each sales channel's rules over message time (README, "Rules that change while the
worker runs"): which rule set decides a message, and which version that was.

Each key (a sales channel, or `*` for the defaults) has versions 1, 2, … each effective from a
moment. A message dated t is decided by its channel's latest version with `effective_from` ≤ t; a
channel with none (no rule set of its own, or only later ones) by the defaults' latest such version;
and before any defaults' version by the built-in defaults, named `*@0`. Versions of a key must rise,
and so must their `effective_from` (never earlier than the version before): a rule set may not rewrite
what earlier messages were decided under, and the search stays a bisection.

Pure: no Kafka, clock, environment or I/O; the worker, `replay` and the operator verbs feed it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from domain import names
from domain.outcome import Event
from domain.rules import ChannelRules, RuleBook, RulesError
from domain.timeutil import EPOCH, iso, parse_time

# The key of the defaults' rule sets: what a channel without rules of its own follows.
DEFAULTS_KEY = "*"
# The version the built-in defaults go by (no rule set at all published yet for the time asked).
BUILT_IN = 0


@dataclass(frozen=True)
class RuleVersion:
    """One rule set of one key, as published."""

    key: str
    version: int
    effective_from: datetime
    rules: ChannelRules

    @property
    def label(self) -> str:
        """How outputs name it (`rules_version`): `<key>@<version>`, also its record key."""
        return f"{self.key}@{self.version}"

    def same_content(self, other: RuleVersion) -> bool:
        return (
            self.key == other.key
            and self.version == other.version
            and self.effective_from == other.effective_from
            and same_rules(self.rules, other.rules)
        )


def same_rules(one: ChannelRules, other: ChannelRules) -> bool:
    """Equal rule sets, key by key: `==` on the models also compares what they compile privately (SKU
    patterns), which differs between two instances read from the same values."""
    return one is other or one.model_dump() == other.model_dump()


class VersionRefused(ValueError):
    """A rule set that cannot follow the key's versions known so far."""


@dataclass
class _Timeline:
    starts: list[datetime] = field(default_factory=list)
    versions: list[RuleVersion] = field(default_factory=list)

    def at(self, moment: datetime) -> RuleVersion | None:
        # Equal starts: the higher version (added later) wins, hence bisect_right.
        index = bisect_right(self.starts, moment)
        return self.versions[index - 1] if index else None


class RuleVersions:
    """Every version of every key known so far; grows as rule sets are read (never shrinks)."""

    def __init__(self) -> None:
        self._timelines: dict[str, _Timeline] = {}
        self._built_in = RuleVersion(DEFAULTS_KEY, BUILT_IN, EPOCH, ChannelRules())
        # Keys whose version 1 is only a starting point (replay's rules file): a version 1 read from
        # the log itself replaces it, since that is what the cluster's workers went by.
        self._provisional: set[str] = set()

    @classmethod
    def from_book(
        cls,
        book: RuleBook,
        effective_from: datetime = EPOCH,
        version: int = 1,
        *,
        provisional: bool = False,
    ) -> RuleVersions:
        """A rules file as one version of every key it names (the defaults and each channel);
        `provisional`: until a rules record of the same key and version says otherwise."""
        versions = cls()
        for found in book_versions(book, effective_from, version):
            versions.add(found)
        if provisional:
            versions._provisional = set(versions.keys())
        return versions

    # -- reading ----------------------------------------------------------------------------------

    def version_for(self, channel: str | None, moment: datetime) -> RuleVersion:
        """The rule set deciding a message of `channel` dated `moment`."""
        if channel is not None:
            timeline = self._timelines.get(channel)
            if timeline is not None:
                found = timeline.at(moment)
                if found is not None:
                    return found
        defaults = self._timelines.get(DEFAULTS_KEY)
        found = defaults.at(moment) if defaults is not None else None
        return found if found is not None else self._built_in

    def for_channel(self, channel: str | None, moment: datetime) -> ChannelRules:
        return self.version_for(channel, moment).rules

    def latest(self, key: str) -> RuleVersion | None:
        timeline = self._timelines.get(key)
        return timeline.versions[-1] if timeline is not None and timeline.versions else None

    def history(self, key: str) -> list[RuleVersion]:
        timeline = self._timelines.get(key)
        return list(timeline.versions) if timeline is not None else []

    def keys(self) -> list[str]:
        return sorted(self._timelines)

    def __iter__(self) -> Iterator[RuleVersion]:
        for key in self.keys():
            yield from self._timelines[key].versions

    def __len__(self) -> int:
        return sum(len(timeline.versions) for timeline in self._timelines.values())

    # -- growing ----------------------------------------------------------------------------------

    def check(self, candidate: RuleVersion) -> bool:
        """Whether `candidate` would be new (False: the very version already known, a re-send).
        Raises VersionRefused when it cannot follow the key's last version."""
        last = self.latest(candidate.key)
        if last is None:
            return True
        if candidate.key in self._provisional and candidate.version == last.version:
            return not candidate.same_content(last)
        if candidate.version == last.version and candidate.same_content(last):
            return False
        if candidate.version <= last.version:
            raise VersionRefused(
                f"{candidate.label}: version must be above {last.version}, the last of {candidate.key}"
            )
        if candidate.effective_from < last.effective_from:
            raise VersionRefused(
                f"{candidate.label}: effective_from {iso(candidate.effective_from)} is before "
                f"{iso(last.effective_from)}, that of {last.label}"
            )
        return True

    def add(self, candidate: RuleVersion) -> bool:
        """Add a version; False when it was known already. Raises VersionRefused (nothing changes)."""
        last = self.latest(candidate.key)
        # A provisional version 1 that the same version read from the log replaces.
        replaces = (
            candidate.key in self._provisional and last is not None and last.version == candidate.version
        )
        new = self.check(candidate)
        self._provisional.discard(candidate.key)
        if not new:
            return False
        if replaces:
            del self._timelines[candidate.key]
        timeline = self._timelines.setdefault(candidate.key, _Timeline())
        timeline.starts.append(candidate.effective_from)
        timeline.versions.append(candidate)
        return True

    def copy(self) -> RuleVersions:
        twin = RuleVersions()
        for found in self:
            twin.add(found)
        return twin


# The outputs that carry a decision, and so name the rule set it was made under: credit notes, return
# updates, rejections, and the child orders of reshipments and exchanges.
RULED = frozenset({names.REFUND_UPDATED, names.RETURN_UPDATED, names.ERROR_NOTIFY, names.ORDER_CREATED})
RULES_VERSION = "rules_version"


def stamp(events: list[Event], label: str) -> None:
    """Name the rule set on the events that carry a decision and do not name one yet."""
    for event in events:
        if event.name in RULED and RULES_VERSION not in event.params:
            event.params[RULES_VERSION] = label


def book_versions(
    book: RuleBook, effective_from: datetime, version: int | Mapping[str, int]
) -> list[RuleVersion]:
    """A rule book (a rules file) as rule sets: `*` for its defaults, one per channel it names (the
    defaults already merged in). `version`: one for all, or per key."""

    def number(key: str) -> int:
        return version if isinstance(version, int) else version[key]

    found = [RuleVersion(DEFAULTS_KEY, number(DEFAULTS_KEY), effective_from, book.defaults)]
    for channel, rules in sorted(book.sales_channels.items()):
        found.append(RuleVersion(channel, number(channel), effective_from, rules))
    return found


def rule_version(fields: Mapping[str, Any]) -> RuleVersion:
    """A rule set from a record's fields (`sales_channel`, `version`, `effective_from`, `rules`),
    checked as the rules file is: RulesError names the first key refused."""
    key = fields.get("sales_channel")
    version = fields.get("version")
    if not isinstance(key, str) or not key:
        raise RulesError("sales_channel: a non-empty string is required")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RulesError("version: a whole number of 1 or more is required")
    raw_from = fields.get("effective_from")
    moment = parse_time(raw_from) if isinstance(raw_from, str) else None
    if moment is None:
        raise RulesError("effective_from: an RFC 3339 time is required")
    raw_rules = fields.get("rules")
    if not isinstance(raw_rules, Mapping):
        raise RulesError("rules: an object is required")
    try:
        rules = ChannelRules.model_validate(dict(raw_rules))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first.get("loc", ()))
        raise RulesError(f"rules.{path}: {first['msg']}" if path else f"rules: {first['msg']}") from None
    return RuleVersion(key, version, moment, rules)


def rule_fields(found: RuleVersion) -> dict[str, Any]:
    """A rule set as a record's fields (JSON types), the inverse of `rule_version`."""
    return {
        "sales_channel": found.key,
        "version": found.version,
        "effective_from": iso(found.effective_from),
        "rules": found.rules.model_dump(mode="json"),
    }


def changed_rules(old: ChannelRules | None, new: ChannelRules) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ (old, new): what `rules publish` shows."""
    before = old.model_dump(mode="json") if old is not None else {}  # by value, as same_rules
    after = new.model_dump(mode="json")
    return {name: (before.get(name), value) for name, value in after.items() if before.get(name) != value}
