"""Execution graphs: the `(login)->(search_items, get_cart)->(update_item)` notation, parsed into a
networkx DAG, validated, and used to check the order of a trajectory's successful tool calls.

Notation. A *chain* is a sequence of *stages* joined by arrows; a stage is one node or several
(in any order), written `(a, b)` or bare `a, b`. Every node of stage i precedes every node of
stage i+1. Arrows may be `->`, `-->`, `=>`, `→`, `⇒` or `⟶`. Several chains, separated by newlines
or `;`, are unioned into one graph. Inside parentheses, after a comma and around an arrow a newline
is just whitespace, so a long chain may be wrapped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import NamedTuple

import networkx as nx
from pydantic import BaseModel, Field

__all__ = [
    "NODE_NAME",
    "ExecGraph",
    "GraphIssue",
    "GraphSyntaxError",
    "OrderReport",
    "OrderViolation",
    "check_order",
    "format_graph",
    "graph_from_chains",
    "graph_from_stages",
    "parse_graph",
    "reference_order",
    "stages",
    "validate_graph",
]

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# models


@dataclass(eq=False)  # DiGraph compares by identity; compare chains and edges instead
class ExecGraph:
    """An execution graph: the chains as written and the DAG they define (edges unioned)."""

    chains: list[list[list[str]]] = field(default_factory=list)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)


class GraphIssue(BaseModel):
    """One problem with a parsed graph (`cycle`, `unknown_node`, `empty`, `duplicate_in_stage`)."""

    code: str
    message: str
    nodes: list[str] = Field(default_factory=list)


class OrderViolation(BaseModel):
    """A call made before all of its node's predecessors had been called."""

    position: int
    node: str
    missing_predecessors: list[str]


class OrderReport(BaseModel):
    """Whether a sequence of successful calls respects the graph and covers its required nodes."""

    ok: bool
    violations: list[OrderViolation] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


class GraphSyntaxError(ValueError):
    """The graph text does not parse; `position` is the 0-based offset of the offending character."""

    def __init__(self, reason: str, text: str, position: int) -> None:
        self.reason = reason
        self.text = text
        self.position = position
        self.line = text.count("\n", 0, position) + 1
        line_start = text.rfind("\n", 0, position) + 1
        self.column = position - line_start + 1
        super().__init__(f"{reason} (line {self.line}, column {self.column})\n{_caret(text, position)}")


def _caret(text: str, position: int, width: int = 60) -> str:
    """Two lines: the source line around `position` (clipped to `width` each side) and a caret."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    lo, hi = max(start, position - width), min(end, position + width)
    prefix = "…" if lo > start else ""
    suffix = "…" if hi < end else ""
    shown = text[lo:hi]
    # Keep tabs in the pad so the caret lines up under the same column in a terminal.
    pad = "".join(ch if ch == "\t" else " " for ch in text[lo:position])
    return f"  {prefix}{shown}{suffix}\n  {' ' * len(prefix)}{pad}^"


# ---------------------------------------------------------------------------------------------
# tokenizer


class _Tok(NamedTuple):
    kind: str  # NAME LPAREN RPAREN COMMA ARROW SEMI NL END
    text: str
    pos: int


# A name is any run of non-delimiters; validity (NODE_NAME) is checked by the parser so that
# `1abc` or `foo$` get a precise "invalid node name" error instead of a vague one. A `-` or `=`
# only ends a name where it starts an arrow, so `get-item->x` is `get-item` then `->`.
_TOKEN = re.compile(
    r"(?P<WS>[^\S\n]+)"
    r"|(?P<NL>\n)"
    r"|(?P<LPAREN>\()"
    r"|(?P<RPAREN>\))"
    r"|(?P<COMMA>,)"
    r"|(?P<SEMI>;)"
    r"|(?P<ARROW>-+>|=+>|[→⇒⟶])"
    r"|(?P<NAME>(?:[^\s(),;→⇒⟶=-]|-(?!-*>)|=(?!=*>))+)"
)


def _tokenize(text: str) -> list[_Tok]:
    """Split `text` into tokens (whitespace other than newlines dropped); ends with an END token."""
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - NAME matches every character the others do not
            raise GraphSyntaxError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup or ""
        if kind != "WS":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("END", "", len(text)))
    return toks


# ---------------------------------------------------------------------------------------------
# parser


class _Parser:
    """Recursive-descent parser over the token list; one pass, so linear in the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def error(self, reason: str, pos: int) -> GraphSyntaxError:
        """A syntax error at `pos`."""
        return GraphSyntaxError(reason, self.text, pos)

    def peek(self) -> _Tok:
        """The current token."""
        return self.toks[self.i]

    def skip(self, *kinds: str) -> int:
        """Advance past tokens of `kinds`; return how many were skipped."""
        start = self.i
        while self.toks[self.i].kind in kinds:
            self.i += 1
        return self.i - start

    def parse(self) -> list[list[list[str]]]:
        """The whole text: chains separated by `;` or newlines; blank separators are ignored."""
        chains: list[list[list[str]]] = []
        while True:
            self.skip("NL", "SEMI")
            if self.peek().kind == "END":
                break
            chains.append(self.chain())
        if not chains:
            raise self.error("empty graph: no stages found", 0)
        return chains

    def chain(self) -> list[list[str]]:
        """One chain: stage (ARROW stage)*, ending at `;`, a newline not followed by an arrow, or END."""
        stages = [self.stage()]
        while True:
            newlines = self.skip("NL")
            tok = self.peek()
            if tok.kind in ("END", "SEMI"):
                return stages
            if tok.kind == "ARROW":
                self.i += 1
                self.skip("NL")
                nxt = self.peek()
                if nxt.kind in ("END", "SEMI", "ARROW"):
                    raise self.error(f"dangling arrow {tok.text!r}: no stage after it", tok.pos)
                stages.append(self.stage())
                continue
            if newlines:
                return stages  # a newline between two stages with no arrow starts a new chain
            if tok.kind == "RPAREN":
                raise self.error("unbalanced parentheses: ')' without a matching '('", tok.pos)
            if tok.kind == "COMMA":
                raise self.error(
                    "unexpected ',' after ')': put all nodes of a stage inside one '( )'", tok.pos
                )
            raise self.error(f"expected '->' between stages, found {tok.text!r}", tok.pos)

    def name(self) -> str:
        """A node name at the current token, checked against NODE_NAME."""
        tok = self.peek()
        if tok.kind != "NAME":
            found = "end of input" if tok.kind == "END" else repr(tok.text)
            raise self.error(f"expected a node name, found {found}", tok.pos)
        if not NODE_NAME.match(tok.text):
            raise self.error(f"invalid node name {tok.text!r}: names must match {NODE_NAME.pattern}", tok.pos)
        self.i += 1
        return tok.text

    def stage(self) -> list[str]:
        """One stage: `( name (, name)* )` or bare `name (, name)*`."""
        tok = self.peek()
        if tok.kind == "LPAREN":
            return self.paren_stage()
        if tok.kind == "NAME":
            names = [self.name()]
            while self.peek().kind == "COMMA":
                self.i += 1
                self.skip("NL")
                names.append(self.name())
            return names
        if tok.kind == "ARROW":
            raise self.error(f"dangling arrow {tok.text!r}: no stage before it", tok.pos)
        if tok.kind == "RPAREN":
            raise self.error("unbalanced parentheses: ')' without a matching '('", tok.pos)
        raise self.error(f"expected a stage, found {tok.text!r}", tok.pos)

    def paren_stage(self) -> list[str]:
        """A parenthesised stage; newlines inside are whitespace."""
        open_tok = self.peek()
        self.i += 1
        self.skip("NL")
        if self.peek().kind == "RPAREN":
            raise self.error("empty stage '()': a stage needs at least one node", open_tok.pos)
        names: list[str] = []
        while True:
            self.skip("NL")
            tok = self.peek()
            if tok.kind == "LPAREN":
                raise self.error("unexpected '(' inside a stage: stages do not nest", tok.pos)
            if tok.kind in ("END", "ARROW", "SEMI"):
                raise self.error("unbalanced parentheses: '(' is never closed", open_tok.pos)
            names.append(self.name())
            self.skip("NL")
            tok = self.peek()
            if tok.kind == "RPAREN":
                self.i += 1
                return names
            if tok.kind == "COMMA":
                self.i += 1
                self.skip("NL")
                if self.peek().kind == "RPAREN":
                    raise self.error("expected a node name after ','", tok.pos)
                continue
            if tok.kind == "NAME":
                raise self.error(f"expected ',' between node names, found {tok.text!r}", tok.pos)
            raise self.error("unbalanced parentheses: '(' is never closed", open_tok.pos)


def parse_graph(text: str) -> ExecGraph:
    """Parse the stage-chain notation into an ExecGraph; raise GraphSyntaxError with a position."""
    return graph_from_chains(_Parser(text).parse())


def graph_from_chains(chains: Iterable[Iterable[Iterable[str]]]) -> ExecGraph:
    """Build an ExecGraph from chains of stages; raise ValueError on an empty stage or a bad name."""
    # A bare string would be split into characters by list(); refuse it instead of guessing.
    if isinstance(chains, str):
        raise ValueError("chains must be lists of stages, each a list of node names, not a string")
    outer = [list(chain) if not isinstance(chain, str) else None for chain in chains]
    if any(chain is None or any(isinstance(stage, str) for stage in chain) for chain in outer):
        raise ValueError(
            "each chain must be a list of stages and each stage a list of node names, not a string"
        )
    copied = [[list(stage) for stage in chain] for chain in outer if chain is not None]
    graph = nx.DiGraph()
    for c, chain in enumerate(copied):
        for s, stage in enumerate(chain):
            if not stage:
                raise ValueError(f"chain {c + 1}, stage {s + 1} is empty")
            for name in stage:
                if not isinstance(name, str) or not NODE_NAME.match(name):
                    raise ValueError(f"invalid node name {name!r}: names must match {NODE_NAME.pattern}")
            graph.add_nodes_from(stage)
            if s:
                graph.add_edges_from((u, v) for u in chain[s - 1] for v in stage)
    return ExecGraph(chains=[c for c in copied if c], graph=graph)


def graph_from_stages(stages: Iterable[Iterable[str]]) -> ExecGraph:
    """Build a one-chain ExecGraph from its stages (no chain at all when `stages` is empty)."""
    return graph_from_chains([stages])


def format_graph(g: ExecGraph) -> str:
    """Canonical text, `(a)->(b, c)->(d)`, one chain per line; parses back to the same chains."""
    return "\n".join("->".join(f"({', '.join(stage)})" for stage in chain) for chain in g.chains)


# ---------------------------------------------------------------------------------------------
# validation and order


def _cycle_text(nodes: list[str]) -> str:
    """`a -> b -> a` for the cycle through `nodes`."""
    return " -> ".join([*nodes, nodes[0]])


def _cycles(graph: nx.DiGraph) -> list[list[str]]:
    """One cycle per cyclic strongly connected component, so every independent cycle is named."""
    found = []
    for comp in nx.strongly_connected_components(graph):
        start = min(comp)
        if len(comp) == 1 and not graph.has_edge(start, start):
            continue
        edges = nx.find_cycle(graph.subgraph(comp), source=start)
        found.append([u for u, _ in edges])
    return sorted(found)


def validate_graph(g: ExecGraph, tool_names: Iterable[str] | None = None) -> list[GraphIssue]:
    """Problems with the graph: empty, duplicate nodes in a stage, cycles, nodes that are not tools."""
    issues: list[GraphIssue] = []
    if g.graph.number_of_nodes() == 0:
        issues.append(GraphIssue(code="empty", message="the execution graph has no nodes"))
        return issues
    for c, chain in enumerate(g.chains):
        for s, stage in enumerate(chain):
            counts = Counter(stage)
            for name in sorted(n for n, k in counts.items() if k > 1):
                issues.append(
                    GraphIssue(
                        code="duplicate_in_stage",
                        message=f"{name!r} appears more than once in stage {s + 1} of chain {c + 1}",
                        nodes=[name],
                    )
                )
    for cycle in _cycles(g.graph):
        issues.append(
            GraphIssue(
                code="cycle",
                message=f"the execution graph has a cycle: {_cycle_text(cycle)}",
                nodes=cycle,
            )
        )
    if tool_names is not None:
        known = set(tool_names)
        for name in sorted(set(g.graph.nodes) - known):
            hint = get_close_matches(name, sorted(known), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            issues.append(
                GraphIssue(
                    code="unknown_node",
                    message=f"node {name!r} is not a defined tool{extra}",
                    nodes=[name],
                )
            )
    return issues


def check_order(g: ExecGraph, calls: Sequence[str], required: Iterable[str] | None = None) -> OrderReport:
    """Check that each successful call comes after a call of every predecessor of its node.

    `calls` are the names of the successful calls in order; names outside the graph are ignored
    here. `required` (default: every node) must each be called at least once. O(calls + edges):
    each node's count of already-called predecessors is bumped once, when that predecessor is
    first called, so a call is checked in O(1) unless it is a violation.
    """
    graph = g.graph
    indegree = {v: graph.in_degree(v) - (1 if graph.has_edge(v, v) else 0) for v in graph}
    satisfied = dict.fromkeys(graph, 0)
    called: set[str] = set()
    violations: list[OrderViolation] = []
    # A node's missing list only changes when its satisfied count does; cache it per count so a
    # node called many times too early costs its in-degree once, not once per call.
    # The key also holds whether the node itself was called, which matters only for a self-loop.
    missing_cache: dict[str, tuple[tuple[int, bool], list[str]]] = {}
    for position, node in enumerate(calls):
        if node not in satisfied:
            called.add(node)
            continue
        needs_self = graph.has_edge(node, node) and node not in called
        if satisfied[node] < indegree[node] or needs_self:
            key = (satisfied[node], node in called)
            cached = missing_cache.get(node)
            if cached is None or cached[0] != key:
                cached = (key, sorted(u for u in graph.predecessors(node) if u not in called))
                missing_cache[node] = cached
            # model_construct: the fields are already the right types, and validating a long
            # predecessor list again for every repeated early call would dominate the run time.
            violations.append(
                OrderViolation.model_construct(
                    position=position, node=node, missing_predecessors=list(cached[1])
                )
            )
        if node not in called:
            called.add(node)
            for succ in graph.successors(node):
                if succ != node:
                    satisfied[succ] += 1
    wanted = list(graph.nodes) if required is None else list(dict.fromkeys(required))
    missing = sorted(n for n in wanted if n not in called)
    return OrderReport(ok=not violations and not missing, violations=violations, missing=missing)


def _unfeasible(g: ExecGraph) -> ValueError:
    """The error for asking a cyclic graph for an order."""
    cycles = _cycles(g.graph)
    return ValueError(
        f"the execution graph has a cycle: {_cycle_text(cycles[0])}" if cycles else "cyclic graph"
    )


def stages(g: ExecGraph) -> list[list[str]]:
    """The topological generations, each sorted: nodes of one generation may run in parallel."""
    try:
        return [sorted(gen) for gen in nx.topological_generations(g.graph)]
    except nx.NetworkXUnfeasible:
        raise _unfeasible(g) from None


def reference_order(g: ExecGraph) -> list[str]:
    """A deterministic topological order: `stages(g)` flattened (generation order, ties by name).

    Chosen over `nx.lexicographical_topological_sort` so the order a person sees in the stage
    listing is exactly the plan; raises ValueError on a cyclic graph.
    """
    return [node for gen in stages(g) for node in gen]
