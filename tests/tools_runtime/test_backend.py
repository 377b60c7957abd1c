import copy

from tools_runtime.backend import SimBackend, empty_state, pseudo_number
from tools_runtime.state import diff_states, state_hash
from tools_runtime.toolspec import ToolSpec


def spec(name: str, **params: dict) -> ToolSpec:
    return ToolSpec(name=name, parameters={"type": "object", "properties": params, "required": list(params)})


S = {"type": "string"}
TOOLS = [
    spec("login", username=S, password=S),
    spec("get_order", order_id=S),
    spec("search_orders", query=S),
    spec("create_order", item=S, quantity={"type": "integer"}),
    spec("update_order", order_id=S, item=S),
    spec("cancel_order", order_id=S),
    spec("delete_order", order_id=S),
    spec("convert_currency", amount={"type": "number"}, to=S),
    spec("open_settings_panel"),
]


def backend(**kw) -> SimBackend:
    state = empty_state()
    state["collections"]["order"] = {"ORD-1": {"item": "blue lamp", "status": "active"},
                                     "ORD-2": {"item": "red mug", "status": "active"}}
    state["session"]["credentials"] = {"ana": "pw1"}
    return SimBackend(TOOLS, state, **kw)


def test_read_by_id_and_not_found():
    be = backend()
    out = be.execute("get_order", {"order_id": "ORD-1"})
    assert out.ok and out.result == {"order_id": "ORD-1", "item": "blue lamp", "status": "active"}
    assert out.diff == []
    miss = be.execute("get_order", {"order_id": "ORD-9"})
    assert not miss.ok and miss.error["code"] == "not_found" and miss.error["param"] == "order_id"
    assert "ORD-9" in miss.error["message"]


def test_search_matches_substrings():
    out = backend().execute("search_orders", {"query": "LAMP"})
    assert out.ok and out.result["count"] == 1 and out.result["results"][0]["order_id"] == "ORD-1"


def test_create_generates_ids_and_diff():
    be = backend()
    out = be.execute("create_order", {"item": "kettle", "quantity": 2})
    assert out.ok and out.result["order_id"] == "ORD-9001"
    assert be.state["collections"]["order"]["ORD-9001"] == {"item": "kettle", "quantity": 2}
    assert {"op": "add", "path": "/collections/order/ORD-9001", "new": {"item": "kettle", "quantity": 2}} in out.diff
    assert be.execute("create_order", {"item": "x", "quantity": 1}).result["order_id"] == "ORD-9002"


def test_update_cancel_delete_and_preconditions():
    be = backend()
    assert be.execute("update_order", {"order_id": "ORD-2", "item": "green mug"}).ok
    assert be.state["collections"]["order"]["ORD-2"]["item"] == "green mug"
    out = be.execute("cancel_order", {"order_id": "ORD-2"})
    assert out.ok and be.state["collections"]["order"]["ORD-2"]["status"] == "cancelled"
    again = be.execute("cancel_order", {"order_id": "ORD-2"})
    assert not again.ok and again.error["code"] == "conflict"
    assert be.execute("delete_order", {"order_id": "ORD-1"}).ok
    assert "ORD-1" not in be.state["collections"]["order"]
    assert be.execute("delete_order", {"order_id": "ORD-1"}).error["code"] == "not_found"


def test_session_gate_and_credentials():
    be = backend(session_required={"get_order"})
    assert be.execute("get_order", {"order_id": "ORD-1"}).error["code"] == "unauthorized"
    bad = be.execute("login", {"username": "ana", "password": "nope"})
    assert not bad.ok and bad.error["code"] == "unauthorized"
    assert be.execute("login", {"username": "ana", "password": "pw1"}).ok
    assert be.execute("get_order", {"order_id": "ORD-1"}).ok


def test_compute_is_deterministic_and_action_counts():
    be = backend()
    a = be.execute("convert_currency", {"amount": 10, "to": "EUR"}).result
    b = be.execute("convert_currency", {"amount": 10, "to": "EUR"}).result
    assert a == b and a["result"] == pseudo_number("convert_currency", {"amount": 10, "to": "EUR"})
    be.execute("open_settings_panel", {})
    be.execute("open_settings_panel", {})
    assert be.state["collections"]["setting_panel"]["default"]["times"] == 2


def test_hash_snapshot_restore():
    be = backend()
    h0, snap = be.state_hash(), be.snapshot()
    be.execute("cancel_order", {"order_id": "ORD-1"})
    assert be.state_hash() != h0
    be.restore(snap)
    assert be.state_hash() == h0 == state_hash(copy.deepcopy(snap))


def test_diff_states_paths():
    d = diff_states({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "x": 1})
    assert d == [{"op": "replace", "path": "/a/b", "old": 1, "new": 3},
                 {"op": "remove", "path": "/a/c", "old": 2}, {"op": "add", "path": "/x", "new": 1}]
