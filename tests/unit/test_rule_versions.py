"""The versioned rule book: which rule set decides a message of a channel at a time, and its name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import names
from domain.outcome import Event
from domain.rule_versions import (
    DEFAULTS_KEY,
    RuleVersion,
    RuleVersions,
    VersionRefused,
    rule_fields,
    rule_version,
    stamp,
)
from domain.rules import ChannelRules, RulesError, parse_rules
from domain.timeutil import EPOCH
from tests.unit.harness import OCTOPUS, Harness, rejection, the_refund

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _v(key: str, version: int, minutes: int, **rules: object) -> RuleVersion:
    return RuleVersion(key, version, T0 + timedelta(minutes=minutes), ChannelRules.model_validate(rules))


def test_a_channel_follows_its_versions_by_message_time_and_the_defaults_before_its_first() -> None:
    book = RuleVersions()
    book.add(_v(DEFAULTS_KEY, 1, 0, shipping_refund_rule="never"))
    book.add(_v("ST1", 1, 10, shipping_refund_rule="onFirst"))
    book.add(_v("ST1", 2, 20, shipping_refund_rule="onLast"))
    assert book.version_for("ST1", T0 + timedelta(minutes=5)).label == "*@1"
    assert book.version_for("ST1", T0 + timedelta(minutes=10)).label == "ST1@1"
    assert book.version_for("ST1", T0 + timedelta(minutes=19, seconds=59)).label == "ST1@1"
    assert book.for_channel("ST1", T0 + timedelta(minutes=20)).shipping_refund_rule == "onLast"
    assert book.version_for("OTHER", T0 + timedelta(days=1)).label == "*@1"
    assert book.version_for(None, T0).label == "*@1"
    # Before any defaults' version: the built-in defaults.
    assert book.version_for("ST1", T0 - timedelta(seconds=1)).label == "*@0"


def test_a_version_must_rise_and_may_not_take_effect_before_the_one_before() -> None:
    book = RuleVersions()
    assert book.add(_v("ST1", 2, 10))
    with pytest.raises(VersionRefused, match="above 2"):
        book.add(_v("ST1", 1, 20))
    with pytest.raises(VersionRefused, match="before"):
        book.add(_v("ST1", 3, 5))
    # The very version again (a second worker publishing the same file at start) is no change.
    assert not book.add(_v("ST1", 2, 10))
    with pytest.raises(VersionRefused):
        book.add(_v("ST1", 2, 10, auto_release_refund=False))
    assert [v.label for v in book.history("ST1")] == ["ST1@2"]


def test_a_rules_file_is_version_1_of_each_key_from_the_start_of_time() -> None:
    book = RuleVersions.from_book(parse_rules({"sales_channels": {"A": {"refund_on": "receipt"}}}))
    assert book.keys() == ["*", "A"]
    assert book.version_for("A", datetime(1999, 1, 1, tzinfo=UTC)).label == "A@1"
    assert book.for_channel("A", T0).refund_on == "receipt"


def test_a_provisional_file_gives_way_to_the_version_1_a_log_carries() -> None:
    book = RuleVersions.from_book(
        parse_rules({"sales_channels": {"A": {"refund_on": "receipt"}}}), provisional=True
    )
    logged = RuleVersion("A", 1, EPOCH, ChannelRules(refund_on="approval"))
    assert book.add(logged)
    assert [v.rules.refund_on for v in book.history("A")] == ["approval"]
    # Once read, version 1 is firm: another version 1 is refused, a version 2 follows.
    with pytest.raises(VersionRefused):
        book.add(RuleVersion("A", 1, EPOCH, ChannelRules(refund_on="receipt")))
    assert book.add(_v("A", 2, 0))
    # The very file's version 1 again is no change, and makes it firm too.
    same = book.version_for(DEFAULTS_KEY, T0)
    assert not book.add(same)
    with pytest.raises(VersionRefused):
        book.add(RuleVersion(DEFAULTS_KEY, 1, EPOCH, ChannelRules(refund_on="receipt")))


def test_record_fields_round_trip_and_are_checked_as_the_rules_file() -> None:
    found = _v("ST1", 3, 0, return_window_days=30)
    assert rule_version(rule_fields(found)).same_content(found)
    fields = rule_fields(found)
    fields["rules"]["retain_days"] = 10
    with pytest.raises(RulesError, match="retain_days"):
        rule_version(fields)
    with pytest.raises(RulesError, match="effective_from"):
        rule_version({**rule_fields(found), "effective_from": "yesterday"})
    with pytest.raises(RulesError, match="version"):
        rule_version({**rule_fields(found), "version": True})


def test_stamp_names_the_rule_set_on_decisions_only_and_never_twice() -> None:
    note = Event(names.REFUND_UPDATED, "K", {"refund": {}}, "m1")
    order = Event(names.ORDER_UPDATED, "K", {"order": {}}, "m1")
    stamp([note, order], "ST1@2")
    stamp([note], "ST1@3")
    assert note.params["rules_version"] == "ST1@2"
    assert "rules_version" not in order.params


def test_messages_dated_before_a_new_version_are_decided_by_the_old_one_and_say_so() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    # From 30 minutes on, OCTO's credit notes wait for finance; the return before is released at once.
    later = RuleVersion("OCTO", 2, h.now + timedelta(minutes=30), ChannelRules(auto_release_refund=False))
    h.rules.add(later)
    before = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1, "condition": "GOOD"}]))
    h.now += timedelta(minutes=40)
    after = h.ret("1234", [{"line_number": 2, "quantity": 1, "condition": "GOOD"}])
    assert before["status"]["code"] == "RELEASED"
    assert the_refund(after)["status"]["code"] == "PENDINGRELEASE"
    labels = [e.params["rules_version"] for e in h.log if e.name == names.REFUND_UPDATED]
    assert labels == ["*@1", "OCTO@2"]
    refused = h.ret("1234", [{"line_number": 9}])
    assert rejection(refused) and refused.events[0].params["rules_version"] == "OCTO@2"


starts = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).map(sorted)


@given(
    starts=starts,
    defaults=starts,
    moment=st.integers(min_value=-10, max_value=1010),
    channel=st.sampled_from(["A", "B"]),
)
def test_the_version_chosen_for_t_is_the_latest_with_effective_from_at_or_before_t(
    starts: list[int], defaults: list[int], moment: int, channel: str
) -> None:
    book = RuleVersions()
    known = [_v("A", number, start) for number, start in enumerate(starts, start=1)]
    fallback = [_v(DEFAULTS_KEY, number, start) for number, start in enumerate(defaults, start=1)]
    for found in [*fallback, *known]:
        book.add(found)
    at = T0 + timedelta(minutes=moment)
    own = [found for found in known if found.effective_from <= at] if channel == "A" else []
    common = [found for found in fallback if found.effective_from <= at]
    chosen = book.version_for(channel, at)
    # The latest: the highest version among those in effect (equal starts: the later one); the
    # channel's own first, then the defaults', then the built-in ones.
    if own:
        assert chosen == max(own, key=lambda found: found.version)
    elif common:
        assert chosen == max(common, key=lambda found: found.version)
    else:
        assert chosen.label == "*@0"
