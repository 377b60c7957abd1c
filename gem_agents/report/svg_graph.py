"""Draw an execution graph as inline SVG with a pure-Python layered layout (no graphviz needed).

Nodes sit in columns by topological generation (nodes of one column may run in any order);
edges are straight arrows. Tools the trajectory called successfully are filled green, tools it
called with an error amber, tools never called stay white.
"""

from __future__ import annotations

from html import escape

from tools_runtime.exec_graph import parse_graph, stages

NODE_H = 30
COL_GAP = 56
ROW_GAP = 14
PAD = 10
CHAR_W = 7.2  # average glyph width of the 12px sans-serif font used below
FILL = {"ok": "#c8efcf", "error": "#ffe2a8", "none": "#ffffff"}


def _width(name: str) -> float:
    return max(60.0, len(name) * CHAR_W + 20)


def render_graph_svg(execution_graph: str, called: dict[str, str] | None = None) -> str:
    """The SVG markup of `execution_graph`; `called` maps a tool name to "ok" or "error"."""
    called = called or {}
    try:
        g = parse_graph(execution_graph)
        columns = stages(g)
    except ValueError as exc:
        return f'<p class="graph-error">cannot draw the execution graph: {escape(str(exc))}</p>'
    col_w = [max(_width(n) for n in col) for col in columns]
    tallest = max(len(col) for col in columns)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
    pos: dict[str, tuple[float, float, float]] = {}  # name → (x, y centre, width)
    x: float = PAD
    for col, w in zip(columns, col_w, strict=True):
        col_h = len(col) * NODE_H + (len(col) - 1) * ROW_GAP
        y0 = (height - col_h) / 2
        for i, name in enumerate(col):
            pos[name] = (x, y0 + i * (NODE_H + ROW_GAP) + NODE_H / 2, w)
        x += w + COL_GAP
    width = x - COL_GAP + PAD
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="exec-graph" width="{width:.0f}" '
             f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
             f'aria-label="execution graph {escape(execution_graph, quote=True)}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for u, v in sorted(g.graph.edges()):
        ux, uy, uw = pos[u]
        vx, vy, _ = pos[v]
        parts.append(f'<line class="edge" x1="{ux + uw:.1f}" y1="{uy:.1f}" x2="{vx - 2:.1f}" y2="{vy:.1f}" '
                     'stroke="#555" stroke-width="1.3" marker-end="url(#arrow)"/>')
    for name, (nx_, ny, w) in pos.items():
        state = called.get(name, "none")
        parts.append(f'<g class="node node-{state}"><title>{escape(name)}: {state}</title>'
                     f'<rect x="{nx_:.1f}" y="{ny - NODE_H / 2:.1f}" width="{w:.1f}" height="{NODE_H}" rx="6" '
                     f'fill="{FILL[state]}" stroke="#333"/>'
                     f'<text x="{nx_ + w / 2:.1f}" y="{ny + 4:.1f}" text-anchor="middle" '
                     f'font-family="sans-serif" font-size="12">{escape(name)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
