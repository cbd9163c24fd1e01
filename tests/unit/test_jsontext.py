"""The state's JSON text read back with msgspec gives what the standard library gave: same values,
same types (float or Decimal), for whatever `json.dumps` can have written, NaN and extremes included."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from domain.jsontext import read, read_exact

documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**200)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (NaN equal to NaN, -0.0 apart from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, Decimal):
        return (a.is_nan() and b.is_nan()) or a.as_tuple() == b.as_tuple()
    return bool(a == b)


@given(documents, st.booleans())
@example([float("nan"), 1.5], True)
@example(1e400, True)
@example("\ud800", True)
@example({"note": "a\ud800b"}, False)
@example({"a": 2.5e-05, "b": [1e16, -0.0]}, False)
def test_reads_what_json_dumps_wrote_as_the_standard_library_does(document: Any, ascii_only: bool) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, separators=(",", ":"))
    assert same(read(text), json.loads(text))
    assert same(read_exact(text), json.loads(text, parse_float=Decimal))
