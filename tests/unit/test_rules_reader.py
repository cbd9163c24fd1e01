"""The worker's rules reader without a broker: what one rules record does to the live versions, when
it is dead-lettered, and the warning of the ordering caveat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from domain.rule_versions import RuleVersion, RuleVersions
from domain.rules import ChannelRules
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord
from workers.engine.rule_records import RULES_TOPIC, encode
from workers.kafka.rules_reader import RulesReader

T0 = datetime(2026, 12, 7, 6, tzinfo=UTC)


def _record(found: RuleVersion, offset: int = 0) -> InboundRecord:
    out = encode(found, RULES_TOPIC)
    return InboundRecord(RULES_TOPIC, out.value, key=out.key, offset=offset, timestamp=T0)


def test_a_new_version_joins_the_live_rules_and_a_bad_one_is_dead_lettered_only_while_following() -> None:
    versions = RuleVersions()
    reader = RulesReader(Settings(), versions)
    assert reader._apply(_record(RuleVersion("ST1", 1, T0, ChannelRules())), following=True) is None
    older = RuleVersion("ST1", 1, T0, ChannelRules(refund_on="receipt"))
    # At start a refused record is only logged: it was dead-lettered when it came.
    assert reader._apply(_record(older, 1), following=False) is None
    dead = reader._apply(_record(older, 1), following=True)
    assert dead is not None and dead.topic == Settings().dlq_topic
    assert dead.headers["dlq.error.class"] == "RulesVersion"
    assert dead.headers["dlq.original.topic"] == RULES_TOPIC and dead.headers["dlq.original.offset"] == "1"
    assert [v.label for v in versions] == ["ST1@1"]


def test_a_version_effective_before_what_the_worker_handled_is_taken_with_a_warning() -> None:
    versions = RuleVersions()
    reader = RulesReader(Settings(), versions, handled_until=lambda: T0 + timedelta(minutes=5))
    with capture_logs() as logs:
        reader._apply(_record(RuleVersion("ST1", 1, T0, ChannelRules())), following=True)
        reader._apply(
            _record(RuleVersion("ST1", 2, T0 + timedelta(minutes=10), ChannelRules())), following=True
        )
    late = [entry for entry in logs if entry["event"] == "rules.effective_before_handled"]
    assert [entry["rules_version"] for entry in late] == ["ST1@1"]
    assert [v.label for v in versions] == ["ST1@1", "ST1@2"]
