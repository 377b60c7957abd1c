"""`state.json_copy`: the same deep copy as `copy.deepcopy` on JSON data, at a fraction of the cost."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from tools_runtime.state import json_copy

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


def containers(value, out=None):
    """Every dict and list inside `value` (by identity)."""
    out = [] if out is None else out
    if isinstance(value, dict | list):
        out.append(value)
        for v in value.values() if isinstance(value, dict) else value:
            containers(v, out)
    return out


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_equal_to_deepcopy_and_shares_no_container(value):
    got = json_copy(value)
    assert got == copy.deepcopy(value) or value != value  # (a float NaN never equals itself)
    assert type(got) is type(value)
    originals = {id(c) for c in containers(value)}
    assert not originals & {id(c) for c in containers(got)}


def test_a_change_to_the_copy_leaves_the_original_alone():
    state = {"collections": {"printer": {"p1": {"name": "HP", "tags": ["a"]}}}, "session": {"logged_in": False}}
    work = json_copy(state)
    work["collections"]["printer"]["p1"]["tags"].append("b")
    work["session"]["logged_in"] = True
    assert state == {"collections": {"printer": {"p1": {"name": "HP", "tags": ["a"]}}}, "session": {"logged_in": False}}


def test_values_that_are_not_json_are_copied_by_deepcopy():
    class Box:
        def __init__(self):
            self.items = [1]

    tup, box, nested_set = (1, [2]), Box(), {"s": {1, 2}}
    assert json_copy(tup) == tup and json_copy(tup)[1] is not tup[1]
    copied = json_copy({"box": box})["box"]
    assert copied is not box and copied.items == [1] and copied.items is not box.items
    assert json_copy(nested_set) == nested_set and json_copy(nested_set)["s"] is not nested_set["s"]
