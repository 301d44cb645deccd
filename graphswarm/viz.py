"""Drawing graphs offline: mermaid text, ASCII, SVG pictures and charts; no web service.

`graph_svg` renders a graph on this machine (LangGraph's `draw_mermaid_png` would call
a web service), with the nodes a run went through filled and those it stopped before
outlined; `show_graph` displays it in a notebook; `line_chart_svg` draws fitness,
diversity or agreement per round without matplotlib.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import shutil
import subprocess
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, get_args

from graphswarm.agents import make_workers
from graphswarm.errors import ConfigError
from graphswarm.registry import ARCHITECTURES, SwarmSpec, get_architecture
from graphswarm.view import Chart

__all__ = [
    "draw",
    "mermaid",
    "ascii_art",
    "architecture_graph",
    "run_graph_svg",
    "run_graph",
    "draw_named",
    "Engine",
    "VISITED_FILL",
    "CURRENT_STROKE",
    "graph_svg",
    "graph_png",
    "show_graph",
    "visited_nodes",
    "record_graph",
    "drawable_graph",
    "inline_svg",
    "line_chart_svg",
    "chart_svg",
]


def draw(architecture: str, *, ascii: bool = False) -> str:
    """The graph of an architecture as mermaid text (default, see `mermaid`) or ASCII art
    (see `ascii_art`)."""
    graph = architecture_graph(architecture)
    return ascii_art(graph) if ascii else mermaid(graph)


def draw_named(name: str, *, db: str | None = None, ascii: bool = False, svg: bool = False) -> tuple[str, str]:
    """What `graphswarm draw NAME` shows: an architecture's graph, or else the graph of the
    run with that id in `db` with the nodes it went through marked (architecture names
    win). Returns the text (mermaid, or ASCII art) or, with `svg`, the SVG picture.

    A name that is neither is a `ConfigError` of one line; no database is created to
    find that out.
    """
    if name in ARCHITECTURES:
        graph, highlight, current = architecture_graph(name), set[str](), set[str]()
    else:
        graph, highlight, current = _named_run(name, db)
    if svg:
        return "", graph_svg(graph, highlight=highlight, current=current)
    return (ascii_art(graph) if ascii else mermaid(graph, highlight=highlight, current=current)), ""


def _named_run(name: str, db: str | None) -> tuple[Any, set[str], set[str]]:
    import asyncio

    from graphswarm.checkpoint import Backend, parse_db_url
    from graphswarm.errors import UnknownRunError
    from graphswarm.runs import Runner

    database = parse_db_url(db)
    neither = ConfigError(
        f"unknown architecture or run {name!r}: not one of {', '.join(ARCHITECTURES)}, nor a run in "
        f"{database.label} (list runs with: graphswarm runs)"
    )
    if database.backend is Backend.SQLITE and not Path(database.location).expanduser().is_file():
        raise neither

    async def main() -> tuple[Any, set[str], set[str]]:
        async with Runner(db) as runner:
            return await run_graph(runner, name)

    try:
        return asyncio.run(main())
    except UnknownRunError:
        raise neither from None


def architecture_graph(architecture: str) -> Any:
    """An architecture's graph with its default team. Building it creates no model or
    embeddings client: drawing needs no credentials."""
    arch = get_architecture(architecture)
    return SwarmSpec(architecture=arch.name, agents=make_workers(arch.default_agents)).build()


# -- text: mermaid and ASCII ------------------------------------------------------

_MERMAID_ENTITIES = {ch: f"#{ord(ch)};" for ch in '#[](){}"<>|;`*&'}
_TERMINAL_LABELS = {"__start__": "start", "__end__": "end"}


def mermaid(graph: Any, *, highlight: Collection[str] = frozenset(), current: Collection[str] = frozenset()) -> str:
    """A graph as plain mermaid text: no HTML in it, so it reads the same raw and rendered.

    LangGraph's `draw_mermaid` puts node metadata into labels as HTML
    (``consolidate<hr/><small><em>defer = True</em></small>``) and wraps names such as
    ``__start__`` in ``<p>``; here labels are the nodes' names (special characters as
    mermaid's own ``#code;`` entities, start and end as ``start`` and ``end``), and a
    deferred node (one that waits for all its inputs) is said in a ``%%`` comment.
    `highlight` and `current` nodes get the classes ``visited`` and ``current``.
    """
    drawable = drawable_graph(graph)
    nodes = {
        key: node._replace(name=_mermaid_label(key, str(node.name or node.id)), metadata=None)
        for key, node in drawable.nodes.items()
    }
    edges = [
        edge._replace(data=_mermaid_text(label) if (label := _edge_label(edge)) else None) for edge in drawable.edges
    ]
    plain = type(drawable)(nodes=nodes, edges=edges)
    text = plain.draw_mermaid(wrap_label_n_words=10**6).replace("&nbsp;", "").rstrip() + "\n"
    deferred = sorted(key for key, node in drawable.nodes.items() if _label(node)[1])
    for key in deferred:
        text += f"\t%% {key}: waits for all its inputs (defer=True)\n"
    if ran := _mermaid_ids(set(highlight), drawable):
        text += f"\tclassDef visited fill:{VISITED_FILL}\n\tclass {ran} visited\n"
    if stopped := _mermaid_ids(set(current), drawable):
        text += f"\tclassDef current stroke:{CURRENT_STROKE},stroke-width:3px\n\tclass {stopped} current\n"
    return text


def _mermaid_text(text: str) -> str:
    """Text safe in a mermaid label: syntax characters as entities, and underscores
    at either end too (mermaid reads labels as markdown: ``__x__`` would be bold)."""
    body = text.strip("_")
    if not body:
        return "#95;" * len(text)
    lead, trail = len(text) - len(text.lstrip("_")), len(text) - len(text.rstrip("_"))
    return "#95;" * lead + "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in body) + "#95;" * trail


def _mermaid_label(key: str, name: str) -> str:
    return _TERMINAL_LABELS.get(key) or _mermaid_text(name.split(":")[-1])


def _mermaid_ids(names: set[str], drawable: Any) -> str:
    """Node ids for a mermaid `class` line (ids mermaid would have to escape are left out)."""
    return ",".join(sorted(n for n in names & set(drawable.nodes) if re.fullmatch(r"[A-Za-z0-9_-]+", n)))


def ascii_art(graph: Any) -> str:
    """A graph as ASCII art, with every edge.

    LangChain's `draw_ascii` lays the graph out with grandalf, which draws every edge
    downwards: an edge back up a loop (``consolidate -> plan``) is laid over the edge it
    closes the loop with (``plan -> consolidate``) and, with no arrowheads, cannot be
    told apart; a node's edge to itself is not drawn at all, nor are parts of the graph
    not connected to the first. So the picture shows the graph without such edges
    (``*`` an edge, ``.`` a conditional one) and lists them under it.
    """
    from langchain_core.runnables.graph_ascii import draw_ascii

    drawable = drawable_graph(graph)
    back = _back_edges(drawable)
    forward = [e for i, e in enumerate(drawable.edges) if i not in back]
    pictures = []
    for component in _components(drawable.nodes, forward):
        names = {key: str(drawable.nodes[key].name or key) for key in component}
        edges = [e for e in forward if e.source in component]
        pictures.append(draw_ascii(names, edges) if edges else "\n".join(f"[ {n} ]" for n in names.values()))
    text = "\n\n".join(p.rstrip() for p in pictures)
    if back:
        legend = " (-.-> conditional)" if any(drawable.edges[i].conditional for i in back) else ""
        text += f"\n\nedges back up the graph (loops), not drawn above{legend}:"
        for index in sorted(back):
            edge = drawable.edges[index]
            arrow = " -.-> " if edge.conditional else " --> "
            label = f"  ({label})" if (label := _edge_label(edge)) else ""
            text += f"\n  {edge.source}{arrow}{edge.target}{label}"
    return text + "\n"


def _back_edges(drawable: Any) -> set[int]:
    """Indexes of the edges that close a cycle (to a node on the depth-first path from
    the start, a node to itself included), found from ``__start__`` first."""
    out: dict[str, list[int]] = {}
    for index, edge in enumerate(drawable.edges):
        out.setdefault(edge.source, []).append(index)
    back: set[int] = set()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    roots = [n for n in ("__start__",) if n in drawable.nodes] + list(drawable.nodes)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out.get(root, ())))]
        while stack:
            node, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                state[node] = 2
                stack.pop()
                continue
            target = drawable.edges[following].target
            if state.get(target) == 1:
                back.add(following)
            elif target not in state and target in drawable.nodes:
                state[target] = 1
                stack.append((target, iter(out.get(target, ()))))
    return back


def _components(nodes: Mapping[str, Any], edges: Sequence[Any]) -> list[list[str]]:
    """The node ids of each connected part of the graph, in the nodes' order."""
    parent = {key: key for key in nodes}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for edge in edges:
        if edge.source in parent and edge.target in parent:
            parent[find(edge.source)] = find(edge.target)
    parts: dict[str, list[str]] = {}
    for key in nodes:
        parts.setdefault(find(key), []).append(key)
    return list(parts.values())


# -- pictures: SVG rendered on this machine ---------------------------------------
#
# Two renderers give the same picture: a pure-Python layout by grandalf (a dependency
# already; LangGraph's `draw_ascii` uses it), or Graphviz `dot` when asked for and
# installed (smoother edges). Both mark a node's group `class="node visited"` (or
# "node current") with a `<title>` holding the node's name, so either output can be
# checked the same way.

Engine = Literal["auto", "dot", "python"]
"""`dot` needs Graphviz on PATH; `python` always works; `auto` picks `dot` when present."""

VISITED_FILL = "#ffd966"
"""Fill of the nodes a run went through."""
CURRENT_STROKE = "#d6336c"
"""Outline of the nodes a run stopped before (paused, failed, or about to run)."""
NODE_FILL, NODE_STROKE, END_FILL, START_FILL = "#f2f0ff", "#7b6fd0", "#bfb6fc", "#ffffff"
EDGE_COLOUR, TEXT_COLOUR = "#6b6b80", "#1f1f2e"
FONT = "ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
_SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'
_TERMINALS = ("__start__", "__end__")


def graph_svg(
    graph: Any,
    *,
    highlight: Collection[str] = frozenset(),
    current: Collection[str] = frozenset(),
    engine: Engine = "python",
) -> str:
    """A graph as a standalone SVG document, drawn on this machine (no web service).

    Args:
        graph: a compiled graph, a `StateGraph`, or a drawable graph (`get_graph()`).
        highlight: nodes filled with `VISITED_FILL` (the nodes a run went through).
        current: nodes outlined with `CURRENT_STROKE` (where a paused or failed run stands).
        engine: ``"python"`` (default) lays the graph out with grandalf, a dependency, so
            the picture is the same on every machine; ``"dot"`` uses Graphviz for
            smoother edge routing and ``"auto"`` uses it when ``dot`` is on PATH, else
            falls back to ``"python"``. Get Graphviz with ``apt-get install graphviz``,
            ``brew install graphviz`` or ``conda install graphviz``.

    Example:
        >>> from graphswarm.viz import graph_svg
        >>> svg = graph_svg(spec.build(), highlight={"plan", "work"})  # doctest: +SKIP
    """
    if engine not in get_args(Engine):
        raise ConfigError(f"unknown engine {engine!r} (choose one of: {', '.join(get_args(Engine))})")
    drawable = drawable_graph(graph)
    highlight, current = set(highlight), set(current)
    dot = shutil.which("dot") if engine != "python" else None
    if engine == "dot" and dot is None:
        raise ConfigError("engine='dot' needs Graphviz on PATH: apt-get install graphviz (or brew install graphviz)")
    if dot is not None:
        try:
            return _run_dot(dot, _dot_source(drawable, highlight, current), "svg").decode("utf-8")
        except (OSError, subprocess.SubprocessError):
            if engine == "dot":
                raise
    return _python_svg(drawable, highlight, current)


def graph_png(graph: Any, *, highlight: Collection[str] = frozenset(), current: Collection[str] = frozenset()) -> bytes:
    """The same picture as a PNG; needs Graphviz ``dot`` (``apt-get install graphviz``)."""
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigError("graph_png needs Graphviz on PATH: apt-get install graphviz (or use graph_svg)")
    return _run_dot(dot, _dot_source(drawable_graph(graph), set(highlight), set(current)), "png")


def show_graph(
    graph_or_run: Any,
    *,
    highlight: Collection[str] | None = None,
    current: Collection[str] | None = None,
    engine: Engine = "python",
):
    """Display a graph in a notebook: an `IPython.display.SVG`.

    Give a graph (compiled or not), or a `RunResult`: its graph is rebuilt from the run's
    record and the nodes it went through are highlighted (see `visited_nodes`), those it
    stopped before outlined. Runs started from a graph you built need ``highlight=``
    with that graph instead.
    """
    try:
        from IPython.display import SVG
    except ImportError as exc:  # pragma: no cover - IPython comes with Jupyter
        raise ImportError("show_graph needs IPython: pip install ipython (or use graph_svg)") from exc
    if _is_run(graph_or_run):
        run, graph_or_run = graph_or_run, record_graph(graph_or_run.record.spec)
        highlight = visited_nodes(run, graph=graph_or_run) if highlight is None else highlight
        current = set(run.next) if current is None else current
    return SVG(graph_svg(graph_or_run, highlight=highlight or (), current=current or (), engine=engine))


def visited_nodes(run: Any, *, graph: Any = None) -> set[str]:
    """The nodes a run went through.

    From a run's history (`Runner.history`) this is exact: every node a checkpoint named
    as next, except the last checkpoint's (where the run stands: see `RunResult.next`),
    with ``__end__`` once the run finished. From a `RunResult` alone it is inferred: the
    nodes that made model calls or finished tasks of an unfinished step (`pending`), and,
    given the `graph`, every node that lies on all paths from the start to one of those
    (it must have run before them).
    """
    if _is_run(run):
        return _visited_from_result(run, graph)
    steps = list(run)
    seen: set[str] = set()
    for step in steps[:-1]:
        seen.update(step.next)
    for step in steps:
        seen.update(c["node"] for c in step.calls)
    if steps and not steps[-1].next:
        seen.add("__end__")
    return seen


async def run_graph_svg(runner: Any, run_id: str, *, graph: Any = None, engine: Engine = "python") -> str:
    """The picture of a run's graph (`graph_svg`): the nodes it went through filled, those
    it stopped before outlined, as in its report.

    Args:
        runner: an open `Runner` on the run's database.
        graph: the `StateGraph` of a run started from a graph you built; others are
            rebuilt from their record.
    """
    shape, visited, current = await run_graph(runner, run_id, graph=graph)
    return graph_svg(shape, highlight=visited, current=current, engine=engine)


async def run_graph(runner: Any, run_id: str, *, graph: Any = None) -> tuple[Any, set[str], set[str]]:
    """A run's graph, the nodes it went through (from its history, with the nodes that
    finished tasks in an unfinished step), and those it stopped before."""
    result = await runner.result(run_id, graph=graph)
    steps = await runner.history(run_id, graph=graph)
    shape = graph if graph is not None else record_graph(result.record.spec)
    return shape, visited_nodes(steps) | set(result.pending), set(result.next)


def record_graph(spec: Mapping[str, Any]) -> Any:
    """The shape of a recorded run's graph. Building it creates no client: models and
    embeddings are resolved only when a node first uses them."""
    if not spec:
        raise ConfigError("this run was started from a graph you built: pass that graph to draw it")
    return SwarmSpec.from_record(dict(spec)).build()


def inline_svg(svg: str) -> str:
    """An SVG document made fit to paste into HTML: no XML prolog, doctype or namespaces."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    for ns in (' xmlns="http://www.w3.org/2000/svg"', ' xmlns:xlink="http://www.w3.org/1999/xlink"'):
        body = body.replace(ns, "", 1)
    return body.strip()


# -- the graph, whatever form it comes in -----------------------------------------


def drawable_graph(graph: Any) -> Any:
    """The drawable graph (nodes, edges, `draw_mermaid`) of a compiled graph or a `StateGraph`."""
    if hasattr(graph, "nodes") and hasattr(graph, "edges") and hasattr(graph, "draw_mermaid"):
        return graph
    if hasattr(graph, "get_graph"):
        return graph.get_graph()
    if hasattr(graph, "compile"):
        return graph.compile().get_graph()
    raise ConfigError(f"cannot draw a {type(graph).__name__}: give a compiled graph, a StateGraph or get_graph()")


def _is_run(value: Any) -> bool:
    return hasattr(value, "record") and hasattr(value, "state") and hasattr(value, "next")


def _visited_from_result(run: Any, graph: Any) -> set[str]:
    seen = {"__start__"} | {c["node"] for c in run.calls} | set(run.pending)
    if not run.next and str(getattr(run.status, "value", run.status)) == "done":
        seen.add("__end__")
    if graph is None:
        return seen
    drawable = drawable_graph(graph)
    successors: dict[str, set[str]] = {}
    for edge in drawable.edges:
        successors.setdefault(edge.source, set()).add(edge.target)

    def reachable(without: str | None) -> set[str]:
        found, todo = {"__start__"}, ["__start__"]
        while todo:
            for nxt in successors.get(todo.pop(), ()):
                if nxt != without and nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return found

    everywhere = reachable(None)
    targets = seen & everywhere
    for node in set(drawable.nodes) - seen - {"__start__"}:
        if targets - {node} - reachable(node):
            seen.add(node)
    return seen


def _label(node: Any) -> tuple[str, str]:
    """A node's name, and a note under it (a deferred node waits for all its inputs)."""
    deferred = bool((node.metadata or {}).get("defer"))
    return str(node.name or node.id), "waits for all" if deferred else ""


def _edge_label(edge: Any) -> str:
    data = edge.data
    return "" if data is None or str(data) == str(edge.target) else str(data)


# -- Graphviz ---------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_source(graph: Any, highlight: set[str], current: set[str]) -> str:
    lines = [
        "digraph graphswarm {",
        '  graph [rankdir=TB, bgcolor="transparent", nodesep=0.35, ranksep=0.45, fontname="Helvetica"];',
        (
            f'  node [shape=box, style="rounded,filled", fillcolor="{NODE_FILL}", color="{NODE_STROKE}", '
            f'fontname="Helvetica", fontsize=12, fontcolor="{TEXT_COLOUR}", height=0.4, margin="0.18,0.06"];'
        ),
        f'  edge [color="{EDGE_COLOUR}", arrowsize=0.7, fontname="Helvetica", fontsize=10, fontcolor="{EDGE_COLOUR}"];',
    ]
    for node_id, node in graph.nodes.items():
        name, note = _label(node)
        label = html.escape(name)
        if note:
            label += f'<BR/><FONT POINT-SIZE="9" COLOR="#666666">{html.escape(note)}</FONT>'
        fill = (
            VISITED_FILL
            if node_id in highlight
            else {"__start__": START_FILL, "__end__": END_FILL}.get(node_id, NODE_FILL)
        )
        attrs = [f"label=<{label}>", f'fillcolor="{fill}"']
        if extra := _node_class(node_id, highlight, current).removeprefix("node").strip():
            attrs.append(f"class={_dot_quote(extra)}")  # Graphviz puts "node" first itself
        if node_id in current:
            attrs.append(f'color="{CURRENT_STROKE}", penwidth=2.5')
        lines.append(f"  {_dot_quote(node_id)} [{', '.join(attrs)}];")
    for edge in graph.edges:
        attrs = ["style=dashed"] if edge.conditional else []
        if label := _edge_label(edge):
            attrs.append(f"label={_dot_quote(label)}")
        lines.append(f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.target)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines)


def _run_dot(dot: str, source: str, fmt: str) -> bytes:
    done = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=60, check=True)
    if fmt != "svg":
        return done.stdout
    text = done.stdout.decode("utf-8")
    start = text.find("<svg")
    body = text[start:] if start >= 0 else text
    # Graphviz writes comments with its version and the graph name: keep the picture only.
    while (begin := body.find("<!--")) >= 0 and (end := body.find("-->", begin)) >= 0:
        body = body[:begin] + body[end + 3 :]
    return body.encode("utf-8")


def _node_class(node_id: str, highlight: set[str], current: set[str]) -> str:
    return " ".join(
        ["node"] + (["visited"] if node_id in highlight else []) + (["current"] if node_id in current else [])
    )


# -- pure Python: grandalf's Sugiyama layout, drawn as SVG ------------------------

_CHAR_W, _NODE_H, _NOTE_H, _PAD = 7.4, 34.0, 12.0, 16.0


class _Box:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _Path:
    def __init__(self) -> None:
        self.pts: list[tuple[float, float]] = []

    def setpath(self, pts: list[tuple[float, float]]) -> None:
        self.pts = [(p[0], p[1]) for p in pts]


def _layout(graph: Any) -> tuple[dict[str, _Box], dict[int, list[tuple[float, float]]]]:
    """Node boxes (centre, size) and edge polylines (index in graph.edges -> points)."""
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout
    from grandalf.routing import route_with_lines

    vertices: dict[str, Any] = {}
    for node_id, node in graph.nodes.items():
        name, note = _label(node)
        vertex = Vertex(node_id)
        width = max(len(name), len(note) * 0.8) * _CHAR_W + 2 * _PAD
        vertex.view = _Box(max(width, 64.0), _NODE_H + (_NOTE_H if note else 0.0))
        vertices[node_id] = vertex
    edges = []
    for index, edge in enumerate(graph.edges):
        if edge.source != edge.target and edge.source in vertices and edge.target in vertices:
            e = Edge(vertices[edge.source], vertices[edge.target], data=index)
            e.view = _Path()
            edges.append(e)
    offset_x = 0.0
    for component in Graph(list(vertices.values()), edges).C:
        layout = SugiyamaLayout(component)
        roots = [v for v in component.sV if not v.e_in()] or [component.sV[0]]
        layout.init_all(roots=roots, optimize=True)
        layout.xspace, layout.yspace = 28, 46
        layout.route_edge = route_with_lines
        layout.draw()
        left = min(v.view.xy[0] - v.view.w / 2 for v in component.sV)
        right = max(v.view.xy[0] + v.view.w / 2 for v in component.sV)
        shift = offset_x - left
        for v in component.sV:
            v.view.xy = (v.view.xy[0] + shift, v.view.xy[1])
        for e in component.sE:
            e.view.pts = [(x + shift, y) for x, y in e.view.pts]
        offset_x += right - left + 60
    boxes = {node_id: v.view for node_id, v in vertices.items()}
    return boxes, {e.data: e.view.pts for e in edges}


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _edge_path(pts: list[tuple[float, float]], bend: float) -> tuple[str, tuple[float, float]]:
    """SVG path data through the points (corners smoothed), and where to put a label.

    `bend` bows a straight edge sideways (for a pair of edges both ways between two nodes).
    """
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    if len(pts) == 2 and bend:
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / length, dx / length
        sx, sy, ex, ey = x0 + nx * bend / 2, y0 + ny * bend / 2, x1 + nx * bend / 2, y1 + ny * bend / 2
        cx, cy = (x0 + x1) / 2 + nx * bend * 1.6, (y0 + y1) / 2 + ny * bend * 1.6
        mid = ((sx + 2 * cx + ex) / 4, (sy + 2 * cy + ey) / 4)
        return f"M{_fmt(sx)},{_fmt(sy)} Q{_fmt(cx)},{_fmt(cy)} {_fmt(ex)},{_fmt(ey)}", mid
    parts = [f"M{_fmt(x0)},{_fmt(y0)}"]
    for index, ((xa, ya), (xb, yb)) in enumerate(pairwise(pts[1:]), start=2):
        end = (xb, yb) if index == len(pts) - 1 else ((xa + xb) / 2, (ya + yb) / 2)
        parts.append(f"Q{_fmt(xa)},{_fmt(ya)} {_fmt(end[0])},{_fmt(end[1])}")
    if len(pts) == 2:
        parts.append(f"L{_fmt(x1)},{_fmt(y1)}")
    middle = pts[len(pts) // 2] if len(pts) > 2 else ((x0 + x1) / 2, (y0 + y1) / 2)
    return " ".join(parts), middle


def _python_svg(graph: Any, highlight: set[str], current: set[str]) -> str:
    boxes, paths = _layout(graph)
    uid = "g" + hashlib.sha1(repr((sorted(boxes), sorted(highlight), sorted(current))).encode()).hexdigest()[:8]
    pairs = {(e.source, e.target) for e in graph.edges}
    body: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    for index, edge in enumerate(graph.edges):
        if edge.source == edge.target:
            box = boxes[edge.source]
            (x, y), r = box.xy, box.w / 2
            d = f"M{_fmt(x + r)},{_fmt(y - 6)} C{_fmt(x + r + 34)},{_fmt(y - 22)} {_fmt(x + r + 34)},{_fmt(y + 22)} {_fmt(x + r)},{_fmt(y + 6)}"
            mid: tuple[float, float] = (x + r + 28, y)
        else:
            bend = 14.0 if (edge.target, edge.source) in pairs else 0.0
            d, mid = _edge_path(paths[index], bend)
        xs.append(mid[0] + 40)
        dash = ' stroke-dasharray="5 4"' if edge.conditional else ""
        body.append(
            f'<g class="edge"><title>{html.escape(f"{edge.source} -> {edge.target}")}</title>'
            f'<path d="{d}" fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.4"{dash} marker-end="url(#{uid}-arrow)"/>'
        )
        if label := _edge_label(edge):
            body.append(
                f'<text x="{_fmt(mid[0] + 4)}" y="{_fmt(mid[1])}" font-size="10" fill="{EDGE_COLOUR}">{html.escape(label)}</text>'
            )
        body.append("</g>")
    for node_id, node in graph.nodes.items():
        box = boxes[node_id]
        name, note = _label(node)
        (x, y), w, h = box.xy, box.w, box.h
        xs += [x - w / 2, x + w / 2]
        ys += [y - h / 2, y + h / 2]
        fill = (
            VISITED_FILL
            if node_id in highlight
            else {"__start__": START_FILL, "__end__": END_FILL}.get(node_id, NODE_FILL)
        )
        stroke, width = (CURRENT_STROKE, 2.5) if node_id in current else (NODE_STROKE, 1.2)
        radius = h / 2 if node_id in _TERMINALS else 7
        text_y = y + 4.5 - (_NOTE_H / 2 if note else 0)
        body.append(
            f'<g class="{_node_class(node_id, highlight, current)}"><title>{html.escape(node_id)}</title>'
            f'<rect x="{_fmt(x - w / 2)}" y="{_fmt(y - h / 2)}" width="{_fmt(w)}" height="{_fmt(h)}" rx="{_fmt(radius)}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
            f'<text x="{_fmt(x)}" y="{_fmt(text_y)}" text-anchor="middle" font-size="13" fill="{TEXT_COLOUR}">{html.escape(name)}</text>'
        )
        if note:
            body.append(
                f'<text x="{_fmt(x)}" y="{_fmt(text_y + 14)}" text-anchor="middle" font-size="10" font-style="italic" fill="#666666">{html.escape(note)}</text>'
            )
        body.append("</g>")
    for pts in paths.values():
        xs += [p[0] for p in pts]
        ys += [p[1] for p in pts]
    left, top = min(xs) - 12, min(ys) - 12
    width, height = max(xs) - left + 12, max(ys) - top + 12
    return (
        f'<svg {_SVG_NS} class="graphswarm-graph" role="img" aria-label="graph" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="{_fmt(left)} {_fmt(top)} {_fmt(width)} {_fmt(height)}" font-family="{html.escape(FONT)}">'
        f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE_COLOUR}"/></marker></defs>' + "".join(body) + "</svg>"
    )


# -- line charts: fitness, diversity, agreement per round (no matplotlib) -----------

PALETTE = ("#5b4fc4", "#e8590c", "#2b8a3e", "#c2255c", "#1971c2", "#868e96")


def line_chart_svg(
    series: Mapping[str, Sequence[float] | Sequence[tuple[float, float]]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    reference: Mapping[str, float] | None = None,
    width: int = 460,
    height: int = 240,
) -> str:
    """A line chart as a standalone SVG document.

    Args:
        series: name -> values (x is 1, 2, ...) or (x, y) points; one line each.
        y_range: the y axis (default: from 0, or the lowest value, to the highest).
        reference: name -> y of a dashed horizontal line (a threshold).

    Example:
        >>> svg = line_chart_svg({"agreement": [0.33, 0.67, 1.0]}, title="agreement per round", y_range=(0, 1))
        >>> svg.startswith("<svg") and "polyline" in svg
        True
    """
    points = {name: _as_points(values) for name, values in series.items()}
    xs = [x for pts in points.values() for x, _ in pts] or [1.0]
    ys = [y for pts in points.values() for _, y in pts] + list((reference or {}).values())
    low, high = y_range if y_range is not None else (min([0.0, *ys]), max([1e-9, *ys]))
    ticks = _ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    x_low, x_high = min(xs), max(xs)
    left, right, top, bottom = 52, 16, 30 if title or len(points) > 1 else 14, 40 if x_label else 26
    plot_w, plot_h, inset = width - left - right, height - top - bottom, 12

    def sx(x: float) -> float:
        span = plot_w - 2 * inset
        return left + inset + (span / 2 if x_high == x_low else (x - x_low) / (x_high - x_low) * span)

    def sy(y: float) -> float:
        return top + plot_h - (0.5 if high == low else (y - low) / (high - low)) * plot_h

    out = [
        (
            f'<svg {_SVG_NS} class="graphswarm-chart" role="img" aria-label="{html.escape(title or "chart")}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{html.escape(FONT)}" font-size="11">'
        ),
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfbfe" stroke="#d0d0dc"/>',
    ]
    if title:
        out.append(
            f'<text x="{left}" y="{top - 10}" font-size="13" font-weight="600" fill="{TEXT_COLOUR}">{html.escape(title)}</text>'
        )
    for tick in ticks:
        y = sy(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="#e6e6ef"/>')
        out.append(f'<text x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end" fill="#555">{_number(tick)}</text>')
    for x in _x_ticks(x_low, x_high, xs):
        out.append(
            f'<text x="{_fmt(sx(x))}" y="{top + plot_h + 15}" text-anchor="middle" fill="#555">{_number(x)}</text>'
        )
    if x_label:
        out.append(
            f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#555">{html.escape(x_label)}</text>'
        )
    if y_label:
        out.append(
            f'<text transform="translate(13 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" fill="#555">{html.escape(y_label)}</text>'
        )
    for name, value in (reference or {}).items():
        y = sy(value)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="#c92a2a" stroke-dasharray="4 3"/>'
            f'<text x="{left + plot_w - 4}" y="{_fmt(y - 4)}" text-anchor="end" fill="#c92a2a">{html.escape(name)} {_number(value)}</text>'
        )
    legend_x = left + plot_w - sum(24 + int(len(name) * 6.2) for name in points) + 10
    for i, (name, pts) in enumerate(points.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{_fmt(sx(x))},{_fmt(sy(y))}" for x, y in pts)
        out.append(f'<g class="series"><title>{html.escape(name)}</title>')
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            out.append(
                f'<circle cx="{_fmt(sx(x))}" cy="{_fmt(sy(y))}" r="3" fill="{colour}">'
                f"<title>{html.escape(name)}: {_number(x)} → {_number(y)}</title></circle>"
            )
        out.append("</g>")
        if len(points) > 1:
            out.append(
                f'<rect x="{legend_x}" y="{top - 15}" width="10" height="3" fill="{colour}"/>'
                f'<text x="{legend_x + 14}" y="{top - 10}" fill="{TEXT_COLOUR}">{html.escape(name)}</text>'
            )
            legend_x += 24 + int(len(name) * 6.2)
    out.append("</svg>")
    return "".join(out)


def chart_svg(chart: Chart) -> str:
    """A view's `graphswarm.view.Chart` as a standalone SVG document (`line_chart_svg`)."""
    return line_chart_svg(
        chart.series, title=chart.title, x_label=chart.x_label, y_range=chart.y_range, reference=chart.reference
    )


def _as_points(values: Sequence[Any]) -> list[tuple[float, float]]:
    if values and isinstance(values[0], (tuple, list)):
        return [(float(x), float(y)) for x, y in values]
    return [(float(i), float(v)) for i, v in enumerate(values, start=1)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [first]
    while ticks[-1] < high - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _x_ticks(low: float, high: float, xs: list[float]) -> list[float]:
    distinct = sorted(set(xs))
    if len(distinct) <= 12:
        return distinct
    return _ticks(low, high, 8)


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
