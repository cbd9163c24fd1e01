"""Emitted ids are uuid5 of "<cause>/<index>" in the project's namespace: consumers may recompute them."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from workers.engine.codec import ID_NAMESPACE, derived_id


@given(st.text(st.characters(exclude_categories=("Cs",))), st.integers(min_value=0, max_value=10**6))
def test_derived_ids_are_the_standard_uuid5(cause: str, index: int) -> None:
    assert derived_id(cause, index) == str(uuid.uuid5(ID_NAMESPACE, f"{cause}/{index}"))
