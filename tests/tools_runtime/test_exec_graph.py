"""Execution-graph notation: parsing, errors with positions, validation, and call-order checks."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools_runtime.exec_graph import (
    ExecGraph,
    GraphSyntaxError,
    check_order,
    format_graph,
    graph_from_chains,
    graph_from_stages,
    parse_graph,
    reference_order,
    stages,
    validate_graph,
)


def edges(g: ExecGraph) -> set[tuple[str, str]]:
    """The edge set of a parsed graph."""
    return set(g.graph.edges)


# --------------------------------------------------------------------------------------------
# syntax forms


def test_canonical_form():
    g = parse_graph("(login)->(search_items, get_cart)->(update_item)")
    assert g.chains == [[["login"], ["search_items", "get_cart"], ["update_item"]]]
    assert edges(g) == {
        ("login", "search_items"),
        ("login", "get_cart"),
        ("search_items", "update_item"),
        ("get_cart", "update_item"),
    }
    assert format_graph(g) == "(login)->(search_items, get_cart)->(update_item)"


@pytest.mark.parametrize(
    "text",
    [
        "(a)->(b, c)->(d)",
        "  ( a )  ->  ( b ,c )->(d)  ",
        "(a)→(b, c)→(d)",
        "(a)=>(b, c)=>(d)",
        "(a)-->(b, c)==>(d)",
        "(a) ⇒ (b, c) ⟶ (d)",
        "a -> b, c -> d",
        "a->b,c->d",
        "a → (b, c) => d",
        "(a\n)->(b,\n  c)->(d)",
        "(a)\n-> (b, c)\n-> (d)",
        "(a) ->\n(b, c) ->\n\n(d)",
        "a ->\n b,\n c -> d",
        "\n\n(a)->(b, c)->(d)\n\n",
        "(a)->(b,c)->(d);",
        "\t(a)\t->\t(b,\tc)\t->\t(d)\r\n",
    ],
)
def test_equivalent_spellings(text):
    g = parse_graph(text)
    assert g.chains == [[["a"], ["b", "c"], ["d"]]]
    assert edges(g) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}


def test_names_with_dots_and_dashes():
    g = parse_graph("get-item->x.y -> _z9")
    assert g.chains == [[["get-item"], ["x.y"], ["_z9"]]]


def test_several_chains_newline_and_semicolon():
    g = parse_graph("(a)->(b)\n(c)->(b); (b)->(d)")
    assert g.chains == [[["a"], ["b"]], [["c"], ["b"]], [["b"], ["d"]]]
    assert edges(g) == {("a", "b"), ("c", "b"), ("b", "d")}
    assert format_graph(g) == "(a)->(b)\n(c)->(b)\n(b)->(d)"


def test_bare_names_on_separate_lines_are_separate_chains():
    g = parse_graph("a -> b\nc\nd, e")
    assert g.chains == [[["a"], ["b"]], [["c"]], [["d", "e"]]]
    assert set(g.graph.nodes) == {"a", "b", "c", "d", "e"}


def test_union_of_chains_can_make_a_cycle():
    g = parse_graph("(a)->(b)\n(b)->(a)")
    issues = validate_graph(g)
    assert [i.code for i in issues] == ["cycle"]
    assert set(issues[0].nodes) == {"a", "b"}
    assert "a -> b -> a" in issues[0].message


# --------------------------------------------------------------------------------------------
# syntax errors


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("   \n ; \n", 0, "empty"),
        ("(a, b -> (c)", 0, "unbalanced"),
        ("(a)->(b", 5, "unbalanced"),
        ("(a)->(b; (c)", 5, "unbalanced"),
        ("(a)->b)", 6, "unbalanced"),
        (")(a)", 0, "unbalanced"),
        ("(a)->()", 5, "empty stage"),
        ("()", 0, "empty stage"),
        ("( \n )->(a)", 0, "empty stage"),
        ("(a) ->", 4, "dangling arrow"),
        ("(a) ->\n\n", 4, "dangling arrow"),
        ("-> (a)", 0, "dangling arrow"),
        ("(a) -> -> (b)", 4, "dangling arrow"),
        ("(a) -> ; (b)", 4, "dangling arrow"),
        ("(a)\n-> (b)\n->", 11, "dangling arrow"),
        ("(1abc)", 1, "invalid node name"),
        ("(a)->(b, foo$)", 9, "invalid node name"),
        ("x -> é", 5, "invalid node name"),
        ("(a b)", 3, "expected ','"),
        ("(a,)", 2, "after ','"),
        ("(a,,b)", 3, "expected a node name"),
        ("a, -> b", 3, "expected a node name"),
        ("(a) (b)", 4, "expected '->'"),
        ("(a),(b)", 3, "','"),
        ("((a))", 1, "do not nest"),
    ],
)
def test_syntax_errors(text, position, fragment):
    with pytest.raises(GraphSyntaxError) as info:
        parse_graph(text)
    err = info.value
    assert err.position == position, str(err)
    assert fragment in err.reason
    assert isinstance(err, ValueError)


def test_error_message_shows_caret_under_column():
    text = "(login)->(search items)"
    with pytest.raises(GraphSyntaxError) as info:
        parse_graph(text)
    err = info.value
    assert (err.position, err.line, err.column) == (17, 1, 18)
    lines = str(err).splitlines()
    assert lines[0].endswith("(line 1, column 18)")
    source, caret = lines[1], lines[2]
    assert caret.index("^") == source.index("items")


def test_error_on_second_line_reports_line_and_column():
    text = "(a)->(b)\n(c)->(d e)"
    with pytest.raises(GraphSyntaxError) as info:
        parse_graph(text)
    err = info.value
    assert (err.position, err.line, err.column) == (17, 2, 9)
    source, caret = str(err).splitlines()[1:3]
    assert source.strip() == "(c)->(d e)"
    assert caret.index("^") == source.index("e)")


def test_error_caret_is_clipped_on_long_lines():
    text = "->".join(f"(n{i})" for i in range(500)) + "->(bad name)"
    with pytest.raises(GraphSyntaxError) as info:
        parse_graph(text)
    source, caret = str(info.value).splitlines()[1:3]
    assert len(source) < 140
    assert source[caret.index("^") :].startswith("name")


# --------------------------------------------------------------------------------------------
# validation


def test_validate_ok_and_unknown_nodes():
    g = parse_graph("(login)->(search_items, get_cart)->(update_item)")
    assert validate_graph(g) == []
    assert validate_graph(g, ["login", "search_items", "get_cart", "update_item", "extra"]) == []
    issues = validate_graph(g, ["login", "search_item", "update_item"])
    assert [(i.code, i.nodes) for i in issues] == [
        ("unknown_node", ["get_cart"]),
        ("unknown_node", ["search_items"]),
    ]
    assert "did you mean 'search_item'" in issues[1].message


def test_validate_empty_and_duplicates():
    assert [i.code for i in validate_graph(ExecGraph())] == ["empty"]
    assert [i.code for i in validate_graph(graph_from_stages([]))] == ["empty"]
    issues = validate_graph(parse_graph("(a, b, a)->(c)"))
    assert [(i.code, i.nodes) for i in issues] == [("duplicate_in_stage", ["a"])]


def test_validate_self_loop_and_independent_cycles():
    issues = validate_graph(parse_graph("(a)->(a)"))
    assert [(i.code, i.nodes) for i in issues] == [("cycle", ["a"])]
    issues = validate_graph(parse_graph("(a)->(b)->(a)\n(x)->(y)->(z)->(x)\n(p)->(q)"))
    cycles = [set(i.nodes) for i in issues if i.code == "cycle"]
    assert cycles == [{"a", "b"}, {"x", "y", "z"}]


def test_stages_and_reference_order():
    g = parse_graph("(login)->(search_items, get_cart)->(update_item)\n(login)->(logout)")
    assert stages(g) == [["login"], ["get_cart", "logout", "search_items"], ["update_item"]]
    assert reference_order(g) == ["login", "get_cart", "logout", "search_items", "update_item"]


def test_orders_refuse_cycles():
    g = parse_graph("(a)->(b)->(a)")
    with pytest.raises(ValueError, match="cycle"):
        stages(g)
    with pytest.raises(ValueError, match="cycle"):
        reference_order(g)


def test_graph_from_stages_and_chains():
    g = graph_from_stages([["login"], ["a", "b"], ["c"]])
    assert format_graph(g) == "(login)->(a, b)->(c)"
    assert edges(g) == edges(parse_graph("(login)->(a, b)->(c)"))
    g2 = graph_from_chains([[["a"], ["b"]], [["c"], ["b"]]])
    assert edges(g2) == {("a", "b"), ("c", "b")}
    with pytest.raises(ValueError, match="empty"):
        graph_from_stages([["a"], []])
    with pytest.raises(ValueError, match="invalid node name"):
        graph_from_stages([["a b"]])
    with pytest.raises(ValueError, match="string"):
        graph_from_stages(["ab", "cd"])


# --------------------------------------------------------------------------------------------
# order checks


def test_check_order_examples():
    g = parse_graph("(login)->(search_items, get_cart)->(update_item)")
    ok = check_order(g, ["login", "get_cart", "search_items", "update_item"])
    assert ok.ok and ok.violations == [] and ok.missing == []
    rep = check_order(g, ["login", "update_item", "get_cart"])
    assert not rep.ok
    assert [(v.position, v.node, v.missing_predecessors) for v in rep.violations] == [
        (1, "update_item", ["get_cart", "search_items"])
    ]
    assert rep.missing == ["search_items"]


def test_check_order_ignores_unknown_calls_and_counts_repeats():
    g = parse_graph("(a)->(b)")
    rep = check_order(g, ["zzz", "b", "a", "zzz", "b", "b"])
    assert [(v.position, v.node, v.missing_predecessors) for v in rep.violations] == [(1, "b", ["a"])]
    assert rep.missing == []


def test_check_order_required():
    g = parse_graph("(a)->(b, c)")
    assert check_order(g, ["a", "b"], required=["a", "b"]).ok
    rep = check_order(g, ["a", "b"])
    assert rep.missing == ["c"] and not rep.ok
    assert check_order(g, ["a"], required=[]).ok


def test_check_order_self_loop():
    g = parse_graph("(a)->(a)")
    rep = check_order(g, ["a", "a"])
    assert [(v.position, v.missing_predecessors) for v in rep.violations] == [(0, ["a"])]
    g2 = parse_graph("(a)->(a)\n(b)->(a)")
    rep2 = check_order(g2, ["a", "a", "b", "a"])
    assert [(v.position, v.missing_predecessors) for v in rep2.violations] == [(0, ["a", "b"]), (1, ["b"])]


def test_repeated_early_calls_report_each_position():
    g = parse_graph("(a, b)->(c)")
    rep = check_order(g, ["c", "c", "a", "c", "b", "c"])
    assert [(v.position, v.missing_predecessors) for v in rep.violations] == [
        (0, ["a", "b"]),
        (1, ["a", "b"]),
        (3, ["b"]),
    ]


def test_long_chain_is_linear():
    """A 1000-node chain parses, validates and checks quickly (no timing assertion)."""
    n = 1000
    text = "->".join(f"(n{i})" for i in range(n))
    g = parse_graph(text)
    assert g.graph.number_of_nodes() == n and g.graph.number_of_edges() == n - 1
    assert validate_graph(g) == []
    order = reference_order(g)
    assert order == [f"n{i}" for i in range(n)]
    assert check_order(g, order * 5).ok
    rep = check_order(g, order[::-1])
    assert len(rep.violations) == n - 1 and rep.missing == []
    assert parse_graph(format_graph(g)).chains == g.chains


# --------------------------------------------------------------------------------------------
# property tests

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,6}", fullmatch=True)


@st.composite
def chain_lists(draw):
    """Random chains of stages over a small name pool (names may repeat across chains)."""
    pool = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    stage = st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)
    return draw(st.lists(st.lists(stage, min_size=1, max_size=5), min_size=1, max_size=3))


@st.composite
def spelled(draw, chains):
    """One random spelling of `chains`: arrows, spacing, parentheses or bare names, separators."""
    ws = st.sampled_from(["", " ", "  ", "\t"])
    out = []
    for chain in chains:
        parts = []
        for stage in chain:
            inner_sep = draw(st.sampled_from([",", ", ", " ,", ",\n  "]))
            if draw(st.booleans()):
                parts.append("(" + draw(ws) + inner_sep.join(stage) + draw(ws) + ")")
            else:
                parts.append(inner_sep.join(stage))
        text = parts[0]
        for part in parts[1:]:
            arrow = draw(st.sampled_from(["->", "→", "=>", "-->", "⇒"]))
            # A space before the arrow keeps a bare name ending in '-' apart from '->'.
            text += " " + draw(ws) + arrow + draw(st.sampled_from(["", " ", "\n", " \n "])) + part
        out.append(text)
    sep = draw(st.sampled_from(["\n", ";", " ; ", "\n\n", ";\n"]))
    return draw(ws) + sep.join(out) + draw(st.sampled_from(["", "\n", ";"]))


def expected_edges(chains):
    return {(u, v) for chain in chains for a, b in zip(chain, chain[1:], strict=False) for u in a for v in b}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_round_trip(data):
    chains = data.draw(chain_lists())
    text = data.draw(spelled(chains))
    g = parse_graph(text)
    assert g.chains == chains
    assert edges(g) == expected_edges(chains)
    again = parse_graph(format_graph(g))
    assert again.chains == g.chains
    assert edges(again) == edges(g)
    assert set(again.graph.nodes) == set(g.graph.nodes)


@st.composite
def dags(draw):
    """A random acyclic graph in stage notation: every chain visits nodes in one global rank order."""
    pool = draw(st.lists(NAMES, min_size=1, max_size=9, unique=True))
    chains = []
    for _ in range(draw(st.integers(1, 3))):
        picked = sorted(draw(st.sets(st.integers(0, len(pool) - 1), min_size=1)))
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(picked) - 1)))) if len(picked) > 1 else [])
        bounds = [0, *cuts, len(picked)]
        chain = [[pool[j] for j in picked[lo:hi]] for lo, hi in zip(bounds, bounds[1:], strict=False)]
        chains.append([s for s in chain if s])
    return graph_from_chains(chains)


def random_topological_order(g: ExecGraph, data) -> list[str]:
    """Kahn's algorithm with ties broken by hypothesis, so any topological order can appear."""
    indeg = dict(g.graph.in_degree())
    ready = sorted(n for n, d in indeg.items() if d == 0)
    order = []
    while ready:
        node = ready.pop(data.draw(st.integers(0, len(ready) - 1)))
        order.append(node)
        for succ in g.graph.successors(node):
            indeg[succ] -= 1
            if indeg[succ] == 0:
                ready.append(succ)
    return order


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_topological_order_passes(data):
    g = data.draw(dags())
    assert nx.is_directed_acyclic_graph(g.graph)
    assert validate_graph(g) == []
    order = random_topological_order(g, data)
    assert len(order) == g.graph.number_of_nodes()
    rep = check_order(g, order)
    assert rep.ok and rep.violations == [] and rep.missing == []
    assert check_order(g, reference_order(g)).ok


def test_all_topological_sorts_of_small_graph_pass():
    g = parse_graph("(login)->(search_items, get_cart)->(update_item)\n(login)->(logout)")
    sorts = list(nx.all_topological_sorts(g.graph))
    assert len(sorts) == 8  # 2 orders of the middle stage x 4 places for logout
    for order in sorts:
        assert check_order(g, order).ok


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_swapping_a_dependent_pair_is_a_violation(data):
    g = data.draw(dags())
    edge_list = sorted(g.graph.edges)
    if not edge_list:
        return
    order = random_topological_order(g, data)
    u, v = data.draw(st.sampled_from(edge_list))
    if data.draw(st.booleans()):
        i, j = order.index(u), order.index(v)
        order[i], order[j] = order[j], order[i]  # swap, wherever they are
    else:
        order.remove(v)
        order.insert(order.index(u), v)  # v immediately before u
    rep = check_order(g, order)
    assert not rep.ok
    hits = [x for x in rep.violations if x.node == v and u in x.missing_predecessors]
    assert hits and hits[0].position == order.index(v)
