from tools_runtime.binding import bind_tool, bind_tools, entity_of, singular, split_name
from tools_runtime.toolspec import ToolSpec


def spec(name: str, *params: str, required: tuple[str, ...] | None = None) -> ToolSpec:
    props = {p: {"type": "string"} for p in params}
    return ToolSpec(name=name, parameters={"type": "object", "properties": props,
                                           "required": list(required if required is not None else params)})


def test_split_and_singular():
    assert split_name("getOrderStatus") == ["get", "order", "status"]
    assert split_name("add-item.to_cart") == ["add", "item", "to", "cart"]
    assert [singular(w) for w in ["orders", "addresses", "entries", "status", "boxes"]] == [
        "order", "address", "entry", "status", "box"]


def test_verbs_map_to_operations():
    cases = {
        "get_order_details": ("read", "order"),
        "search_products": ("read", "product"),
        "create_return": ("create", "return"),
        "update_shipping_address": ("update", "shipping_address"),
        "cancel_order": ("delete", "order"),
        "log_in": ("session", "session"),
        "calculate_total_price": ("compute", "total_price"),
        "open_print_dialog": ("action", "print_dialog"),
        "turn_on_wifi": ("update", "wifi"),
    }
    for name, (op, entity) in cases.items():
        b = bind_tool(spec(name))
        assert (b.op, b.entity) == (op, entity), name


def test_container_and_filter_prepositions():
    assert entity_of(["item", "to", "cart"]) == "cart_item"
    assert entity_of(["orders", "by", "user"]) == "order"
    assert entity_of(["order", "details"]) == "order"


def test_selectors_and_values_split():
    b = bind_tool(spec("update_user_email", "username", "email"))
    assert b.selectors == ("username",) and b.values == ("email",)
    b = bind_tool(spec("rename_file", "file_name", "new_name"))
    assert b.selectors == ("file_name",) and b.values == ("new_name",)
    b = bind_tool(spec("get_order", "order_id"))
    assert b.selectors == ("order_id",) and b.filters == ()
    b = bind_tool(spec("search_orders", "query"))
    assert b.selectors == () and b.filters == ("query",)
    assert bind_tool(spec("cancel_order", "order_id")).mode == "cancel"
    assert bind_tool(spec("delete_order", "order_id")).mode == "remove"
    assert bind_tool(spec("disable_alarm")).mode == "disable"
    assert bind_tool(spec("log_out")).mode == "logout"


def test_lonely_tool_rebinds_to_the_entity_its_id_names():
    tools = [spec("get_order", "order_id"), spec("cancel_order", "order_id"),
             spec("get_tracking_info", "order_id")]
    b = bind_tools(tools)["get_tracking_info"]
    assert (b.op, b.entity, b.selectors) == ("read", "order", ("order_id",))


def test_create_of_an_existing_entity_makes_a_new_kind_of_record():
    tools = [spec("get_flight", "flight_id"), spec("book_flight", "flight_id", "passenger")]
    b = bind_tools(tools)["book_flight"]
    assert b.op == "create" and b.entity == "flight_booking" and b.id_field == "flight_booking_id"


def test_session_requirement_is_per_tool():
    tools = [spec("login", "user", "password"), spec("get_order", "order_id")]
    bs = bind_tools(tools, session_required={"get_order"})
    assert bs["get_order"].requires_session and not bs["login"].requires_session
