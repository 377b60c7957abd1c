"""`bind_tools` binds each set of tools once: the same bindings, a fresh dict per caller."""

from __future__ import annotations

from tests.helpers import example
from tools_runtime.binding import bind_tool, bind_tools
from tools_runtime.executor import session_required
from tools_runtime.toolspec import ToolSpec


def test_a_second_call_gives_equal_bindings_in_a_dict_of_its_own():
    wf = example("shop_return")
    first, second = bind_tools(wf.tools), bind_tools(wf.tools)
    assert first == second and first is not second
    first.pop(next(iter(first)))
    assert bind_tools(wf.tools) == second  # the caller's dict is its own


def test_bindings_follow_names_and_argument_names_only():
    a = ToolSpec(name="get_order", description="one", parameters={"type": "object",
                                                                 "properties": {"order_id": {"type": "string"}}})
    b = ToolSpec(name="get_order", description="two", parameters={"type": "object",
                                                                 "properties": {"order_id": {"type": "integer"}}})
    assert bind_tools([a]) == bind_tools([b]) == {"get_order": bind_tool(a)}
    c = ToolSpec(name="get_order", parameters={"type": "object", "properties": {"email": {"type": "string"}}})
    assert bind_tools([c])["get_order"].filters == ("email",)  # other argument names: another binding
    assert bind_tools([a], {"get_order"})["get_order"].requires_session
    assert not bind_tools([a])["get_order"].requires_session


def test_session_required_is_the_same_on_every_call():
    for name in ("bank_transfer", "router_wifi_password", "shop_return"):
        wf = example(name)
        first = session_required(wf)
        first.add("mutated by the caller")
        assert session_required(wf) == first - {"mutated by the caller"}
