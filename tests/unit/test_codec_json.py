"""`loads` reads JSON with msgspec and falls back to simplejson: what it accepts, the values it gives
(exact decimals) and the errors it raises are simplejson's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import simplejson
from hypothesis import given
from hypothesis import strategies as st

from workers.engine.codec import loads

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def reference(text: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", simplejson.loads(text, use_decimal=True)
    except Exception as exc:
        return "error", type(exc)


def ours(text: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", loads(text)
    except Exception as exc:
        return "error", type(exc)


@given(json_values)
def test_values_written_by_simplejson_read_back_alike(value: Any) -> None:
    text = simplejson.dumps(value, use_decimal=True, ensure_ascii=False)
    assert ours(text) == reference(text)
    assert ours(text.encode("utf-8")) == reference(text.encode("utf-8"))


@given(
    st.binary(max_size=40) | st.text(alphabet='{}[]":,0123456789.eE-+ \\tnulrsaf\ufeff\ud800', max_size=30)
)
def test_any_input_is_accepted_or_refused_as_simplejson_does(text: str | bytes) -> None:
    assert ours(text) == reference(text)


def test_numbers_with_a_fraction_are_exact_decimals() -> None:
    assert loads('{"a": 0.1, "b": "1.0000", "c": 1.0000, "d": 7}') == {
        "a": Decimal("0.1"),
        "b": "1.0000",
        "c": Decimal("1.0000"),
        "d": 7,
    }
    assert str(loads("1.0000")) == "1.0000"


def test_what_msgspec_refuses_is_read_by_simplejson() -> None:
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a byte order mark
    assert loads('"\\ud800"') == "\ud800"  # a lone surrogate escape
