"""Run reports: one self-contained document that shows what a run did.

The HTML report needs nothing beyond the file: styles are inline and pictures are inline
SVG (the graph with the nodes the run went through filled, fitness and agreement
charts), so it opens offline and can be mailed or attached to an issue. The Markdown
report has the same sections as tables, and the graph as a ```mermaid block.

A report holds only what the run's state and record hold (and those never hold keys);
every piece of model text is escaped.

Example:
    >>> async with Runner("runs.sqlite") as runner:  # doctest: +SKIP
    ...     html = await build_report(runner, run_id)
    >>> export_report(run_id, "report.html", db="runs.sqlite")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from graphswarm.architectures.base import Role
from graphswarm.errors import ConfigError, UsageError
from graphswarm.runs import Runner, RunResult, Step
from graphswarm.state import format_cost
from graphswarm.view import Chart, Heading, Table, Text, run_blocks, shorten
from graphswarm.viz import (
    CURRENT_STROKE,
    VISITED_FILL,
    chart_svg,
    drawable_graph,
    graph_svg,
    inline_svg,
    mermaid,
    record_graph,
    visited_nodes,
)

__all__ = ["ReportFormat", "build_report", "export_report", "result_html", "result_markdown"]

ReportFormat = Literal["html", "md"]
"""`html`: one self-contained page; `md`: Markdown tables and a mermaid graph."""

_SUFFIXES: dict[str, ReportFormat] = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}
_FOLD_AT = 600
"""Model text longer than this is folded in the HTML report (click to open)."""
_ANSWER_CLIP = 300
"""Characters of the final answer a notebook's summary of a run shows."""


async def build_report(runner: Runner, run_id: str, *, format: ReportFormat = "html", graph: Any = None) -> str:
    """The report of one run, as a string.

    Args:
        runner: an open `Runner` on the run's database.
        run_id: the run.
        format: ``"html"`` (self-contained page) or ``"md"`` (Markdown).
        graph: the `StateGraph` of a run started from a graph you built, to draw it
            (others are rebuilt from their record, with stand-in models); without it
            such a report has everything but the picture of the graph.
    """
    if format not in get_args(ReportFormat):
        raise ConfigError(f"unknown report format {format!r} (choose one of: {', '.join(get_args(ReportFormat))})")
    result = await runner.result(run_id, graph=graph)
    steps = await runner.history(run_id, graph=graph)
    shape = graph if graph is not None or not result.record.spec else record_graph(result.record.spec)
    blocks = _blocks(result, steps, shape)
    return _render_html(result, blocks) if format == "html" else _render_markdown(result, blocks)


def export_report(
    run_id: str, path: str | Path, *, db: str | None = None, format: ReportFormat | None = None, graph: Any = None
) -> Path:
    """Write a run's report to `path`; the format follows the suffix (.html, .md) unless given.

    Synchronous, for scripts; in a notebook (a running event loop) use `await build_report(...)`.
    """
    path = Path(path)
    chosen = format or _SUFFIXES.get(path.suffix.lower())
    if chosen is None:
        raise ConfigError(f"cannot tell the report format from {path.name!r}: name it .html or .md, or pass format=")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError("export_report cannot run inside an event loop (a notebook): use await build_report(...)")

    async def main() -> str:
        async with Runner(db) as runner:
            return await build_report(runner, run_id, format=chosen, graph=graph)

    path.write_text(asyncio.run(main()), encoding="utf-8")
    return path


def result_html(result: RunResult) -> str:
    """A run as an HTML fragment for a notebook cell (`RunResult._repr_html_`): its summary
    with the final answer shortened, its graph (drawn here, as in the report: no web
    service) and its view."""
    return "\n".join(_html_block(b) for b in _result_blocks(result))


def result_markdown(result: RunResult) -> str:
    """`result_html` as Markdown (`RunResult._repr_markdown_`)."""
    return "\n\n".join(_markdown_parts(_result_blocks(result))) + "\n"


def _result_blocks(result: RunResult) -> list[_Block]:
    summary = _summary_table(result)
    if result.final_answer:
        summary.rows.append(["final answer", Text(shorten(result.final_answer, _ANSWER_CLIP))])
    blocks: list[_Block] = [summary]
    if result.record.spec:
        shape = record_graph(result.record.spec)
        visited, current = visited_nodes(result, graph=shape), set(result.next)
        drawable = drawable_graph(shape)
        picture = _Figure(
            [graph_svg(drawable, highlight=visited, current=current)],
            markdown=f"```mermaid\n{mermaid(drawable, highlight=visited, current=current)}```",
            legend=True,
        )
        blocks = [_Columns(blocks, [picture])]
    return blocks + _who_said_what(result)


# -- the report as blocks, rendered as HTML or Markdown ------------------------------


@dataclass
class _Heading:
    text: str
    level: int = 2


@dataclass
class _Columns:
    """Blocks side by side in HTML (one after the other in Markdown)."""

    left: list[Any]
    right: list[Any]


@dataclass
class _Figure:
    svgs: list[str]
    markdown: str = ""
    """What the Markdown report shows instead (a mermaid block), if anything."""
    legend: bool = False


_Block = _Heading | Table | Text | _Figure | _Columns


def _blocks(result: RunResult, steps: list[Step], graph: Any) -> list[_Block]:
    state = result.state
    overview: list[_Block] = [_Heading("Summary"), _summary_table(result)]
    overview += [_Heading("Objective"), Text(result.record.objective)]
    if state.get("final_answer"):
        overview += [_Heading("Final answer"), Text(state["final_answer"])]
    blocks: list[_Block] = [_Columns(overview, _graph_section(result, steps, graph))]
    blocks += _who_said_what(result)
    blocks += _accounting(result)
    blocks += _timeline(steps)
    blocks += _team(result)
    return blocks


def _summary_table(result: RunResult) -> Table:
    r, usage = result.record, result.usage["total"]
    rows: list[list[str | Text]] = [
        ["architecture", r.architecture],
        ["status", result.status.value],
        ["stop reason", r.stop_reason or "-"],
        ["started", _when(r.created_at)],
        ["last update", _when(r.updated_at)],
        ["run time", f"{r.elapsed_s:.1f} s"],
        ["model calls", str(int(usage["calls"]))],
        ["tokens (in / out)", f"{int(usage['input_tokens'])} / {int(usage['output_tokens'])}"],
        ["estimated cost", format_cost(usage["cost"], "$")],
    ]
    if r.forked_from:
        rows.append(["forked from", r.forked_from])
    if r.error:
        rows.append(["error", Text(r.error)])
    for pause in result.pauses:
        rows.append(["paused", Text(f"{pause.get('stop_reason', 'human')}: {pause.get('detail', '')}".strip(": "))])
    if result.next:
        rows.append(["runs next", ", ".join(_counted(result.next))])
    return Table(["", ""], rows)


def _graph_section(result: RunResult, steps: list[Step], graph: Any) -> list[_Block]:
    if graph is None:
        return [
            _Heading("Graph"),
            Text("This run was started from a graph built in Python: pass it as graph= to draw it."),
        ]
    # Nodes with finished tasks in an unfinished step ran too, in part: filled and outlined.
    visited, current = visited_nodes(steps) | set(result.pending), set(result.next)
    drawable = drawable_graph(graph)
    text = mermaid(drawable, highlight=visited, current=current)
    picture = graph_svg(drawable, highlight=visited, current=current)
    return [_Heading("Graph"), _Figure([picture], markdown=f"```mermaid\n{text}```", legend=True)]


def _who_said_what(result: RunResult) -> list[_Block]:
    """The run's view (`graphswarm.view`): its headings under this section's, charts side by side."""
    blocks: list[_Block] = []
    for block in run_blocks(result):
        if isinstance(block, Heading):
            blocks.append(_Heading(block.text, 3))
        elif isinstance(block, Chart):
            if blocks and isinstance(blocks[-1], _Figure) and not blocks[-1].legend:
                blocks[-1].svgs.append(chart_svg(block))
            else:
                blocks.append(_Figure([chart_svg(block)]))
        else:
            blocks.append(block)
    return [_Heading("Who said what"), *blocks] if blocks else []


def _accounting(result: RunResult) -> list[_Block]:
    usage = result.usage
    blocks: list[_Block] = [_Heading("Accounting")]
    for kind in ("agent", "node"):
        rows = [[name, *_usage_cells(row)] for name, row in sorted(usage[f"{kind}s"].items())]
        rows.append(["total", *_usage_cells(usage["total"])])
        header = [kind, "calls", "input tokens", "output tokens", "latency s", "cost $"]
        blocks.append(Table(header, rows, caption=f"by {kind}", strong={len(rows) - 1}, compact=True))
    return blocks


def _timeline(steps: list[Step]) -> list[_Block]:
    start = _parse_time(steps[0].created_at) if steps else None
    rows: list[list[str | Text]] = []
    for s in steps:
        at = _parse_time(s.created_at)
        offset = f"{(at - start).total_seconds():.2f}" if at and start else ""
        calls = ", ".join(f"{c['agent']}@{c['node']}" for c in s.calls)
        tokens = sum(c["input_tokens"] + c["output_tokens"] for c in s.calls)
        rows.append(
            [
                str(s.step),
                offset,
                s.source,
                ", ".join(_counted(s.next)) or "(end)",
                calls,
                str(tokens) if s.calls else "",
            ]
        )
    caption = "each checkpoint: the nodes that run next, and the model calls finished since the previous one"
    return [
        _Heading("Timeline"),
        Table(["step", "at s", "source", "next", "calls (agent@node)", "tokens"], rows, caption=caption),
    ]


def _team(result: RunResult) -> list[_Block]:
    spec = result.record.spec
    if not spec:
        return []
    rows: list[list[str | Text]] = []
    for role in Role:
        if spec.get(role):
            rows.append(_agent_row(spec[role], role, spec))
    rows += [_agent_row(a, "member", spec) for a in spec.get("agents", [])]
    blocks: list[_Block] = [_Heading("Team"), Table(["agent", "part", "role", "strengths", "model"], rows)]
    settings = {
        **{f"option {k}": v for k, v in (spec.get("options") or {}).items()},
        **{f"budget {k}": v for k, v in result.record.budget.items()},
    }
    if spec.get("base_url"):
        settings["base url"] = spec["base_url"]
    if settings:
        blocks.append(Table(["setting", "value"], [[k, str(v)] for k, v in settings.items()], compact=True))
    return blocks


def _agent_row(agent: dict[str, Any], part: str, spec: dict[str, Any]) -> list[str | Text]:
    model = agent.get("model") or spec.get("model") or "default"
    return [agent["name"], part, agent.get("role") or "", ", ".join(agent.get("strengths") or []), str(model)]


# -- small helpers --------------------------------------------------------------------


def _usage_cells(row: dict[str, Any]) -> list[str | Text]:
    return [
        str(int(row["calls"])),
        str(int(row["input_tokens"])),
        str(int(row["output_tokens"])),
        f"{row['latency_s']:.2f}",
        format_cost(row["cost"]),
    ]


def _counted(names: Sequence[str]) -> list[str]:
    """["answer", "answer", "tally"] -> ["answer ×2", "tally"] (parallel tasks of one node)."""
    order = list(dict.fromkeys(names))
    return [f"{n} ×{names.count(n)}" if names.count(n) > 1 else n for n in order]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


# -- HTML -----------------------------------------------------------------------------

_CSS = """
:root { --ink: #1f1f2e; --muted: #62627a; --line: #dcdce8; --soft: #f6f6fb; --accent: #5b4fc4; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.5 ui-sans-serif, system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h1 code { font-size: 22px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 8px; color: var(--accent); }
.meta { color: var(--muted); margin: 0 0 12px; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 10px; font-weight: 600; font-size: 12px;
  background: #e9ecef; color: #343a40; }
.badge.done { background: #d3f9d8; color: #2b8a3e; }
.badge.failed { background: #ffe3e3; color: #c92a2a; }
.badge.interrupted, .badge.running { background: #fff3bf; color: #946c00; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
tr.strong td { font-weight: 600; background: #fff9db; }
table.compact { width: auto; min-width: 420px; }
table.kv { width: 100%; }
.columns { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 32px; align-items: start; }
.columns > div > h2:first-child { margin-top: 12px; }
@media (max-width: 800px) { .columns { grid-template-columns: 1fr; } }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 12px; padding-top: 3px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
blockquote.text { margin: 0; padding: 10px 14px; background: var(--soft); border-left: 4px solid var(--accent);
  border-radius: 4px; }
details summary { cursor: pointer; color: var(--muted); }
figure { margin: 8px 0; display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure svg { max-width: 100%; height: auto; }
.legend { color: var(--muted); font-size: 12px; margin: 4px 0 0; }
.swatch { display: inline-block; width: 14px; height: 10px; border-radius: 3px; vertical-align: middle;
  margin: 0 4px 0 12px; border: 1px solid #7b6fd0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _render_html(result: RunResult, blocks: list[_Block]) -> str:
    r = result.record
    status = result.status.value
    head = (
        f"<h1>Run <code>{_e(r.run_id)}</code></h1>"
        f'<p class="meta">{_e(r.architecture)} swarm · <span class="badge {_e(status)}">{_e(status)}</span>'
        f" · {_e(r.stop_reason or '-')}</p>"
    )
    body = "\n".join(_html_block(b) for b in blocks)
    from graphswarm import __version__

    footer = f"<footer>graphswarm {_e(__version__)} · report written {_e(_when(datetime.now().timestamp()))}</footer>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>graphswarm run {_e(r.run_id)} · {_e(r.architecture)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{head}\n{body}\n{footer}\n</main>\n</body>\n</html>\n"
    )


def _html_block(block: _Block) -> str:
    if isinstance(block, _Heading):
        return f"<h{block.level}>{_e(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f'<blockquote class="text">{_e(block.text)}</blockquote>'
    if isinstance(block, _Columns):
        left, right = ("\n".join(_html_block(b) for b in side) for side in (block.left, block.right))
        return f'<div class="columns"><div>{left}</div><div>{right}</div></div>'
    if isinstance(block, _Figure):
        legend = (
            f'<p class="legend"><span class="swatch" style="background:{VISITED_FILL}"></span>the run went through'
            f'<span class="swatch" style="background:#fff;border:2px solid {CURRENT_STROKE}"></span>runs next / stopped here'
            '<span class="swatch" style="background:#f2f0ff"></span>not reached · dashed edges are conditional</p>'
            if block.legend
            else ""
        )
        return "<figure>" + "".join(inline_svg(svg) for svg in block.svgs) + "</figure>" + legend
    return _html_table(block)


def _html_table(table: Table) -> str:
    key_value = table.columns == ["", ""]
    css = "kv" if key_value else "compact" if table.compact else ""
    out = [f"<h3>{_e(table.title)}</h3>\n"] if table.title else []
    out.append(f'<table class="{css}">' if css else "<table>")
    if table.caption:
        out.append(f"<caption>{_e(table.caption)}</caption>")
    if not key_value:
        out.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in table.columns) + "</tr></thead>")
    out.append("<tbody>")
    for index, row in enumerate(table.rows):
        css = ' class="strong"' if index in table.strong else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_cell(cell: str | Text) -> str:
    if not isinstance(cell, Text):
        return _e(cell)
    text = cell.text or ""
    if len(text) <= _FOLD_AT:
        return f'<div class="text">{_e(text)}</div>'
    preview = " ".join(text[:160].split()) + "…"
    return f'<details><summary>{_e(preview)}</summary><div class="text">{_e(text)}</div></details>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# -- Markdown -------------------------------------------------------------------------


def _render_markdown(result: RunResult, blocks: list[_Block]) -> str:
    r = result.record
    out = [
        f"# Run `{r.run_id}`",
        _md_inline(f"{r.architecture} swarm · {result.status.value} · {r.stop_reason or '-'}"),
        *_markdown_parts(blocks),
    ]
    return "\n\n".join(part for part in out if part) + "\n"


def _markdown_parts(blocks: list[_Block]) -> list[str]:
    out: list[str] = []
    flat: list[_Block] = []
    for block in blocks:
        flat += [*block.left, *block.right] if isinstance(block, _Columns) else [block]
    for block in flat:
        if isinstance(block, _Heading):
            out.append("#" * block.level + " " + _md_inline(block.text))
        elif isinstance(block, Text):
            out.append("\n".join("> " + _md_inline(line) for line in (block.text or "").splitlines() or [""]))
        elif isinstance(block, _Figure):
            if block.markdown:
                out.append(block.markdown)
        elif isinstance(block, Table):
            out.append(_md_table(block))
    return [part for part in out if part]


def _md_table(table: Table) -> str:
    header = table.columns
    lines = [f"### {_md_inline(table.title)}\n"] if table.title else []
    lines += ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in enumerate(table.rows):
        cells = [_md_cell(c) for c in row]
        if index in table.strong:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if table.caption:
        lines.append(f"\n*{_md_inline(table.caption)}*")
    return "\n".join(lines)


def _md_cell(cell: str | Text) -> str:
    text = cell.text if isinstance(cell, Text) else str(cell)
    return "<br>".join(_md_inline(line) for line in text.strip().splitlines()).replace("|", "\\|")


def _md_inline(text: str) -> str:
    """Model text in Markdown: HTML escaped, so no tag in it is ever rendered."""
    return html.escape(text, quote=False)
