"""What a run shows, as neutral blocks: tables, text, headings and charts.

Each architecture's module ends with its view (found through the registry):

- ``view_update(node, update) -> str``: one line about a node's update, for the live
  progress display (``""`` when there is nothing to say);
- ``view_run(run, *, brief=False) -> list[Block]``: what a finished, failed or paused
  run holds; ``brief`` is the terminal's short form (long text cut to one line), the
  full form is the report's.

The renderers know the blocks and nothing else: `graphswarm.cli` prints them with
Rich (no markup read: model text prints as written), `graphswarm.report` writes them
as HTML and Markdown. A run without a spec (a graph built in Python) shows its state,
key by key (`GENERIC`).

Example:
    >>> from graphswarm.view import Table
    >>> table = Table(["answer", "votes"], [["42", "3"]], title="vote", caption="winner: 42")
    >>> table.rows[0]
    ['42', '3']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from graphswarm.runs import RunRecord

__all__ = [
    "Block",
    "Cell",
    "Chart",
    "Heading",
    "Table",
    "Text",
    "Run",
    "View",
    "GENERIC",
    "view_of",
    "run_blocks",
    "shorten",
    "vote_table",
    "vote_progress",
    "agreement_chart",
    "agreement_text",
    "tasks_line",
    "state_table",
]


# -- the blocks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Text a model or a person wrote (or a line about it): shown exactly as written, HTML
    escaped in a report, no markup read in the terminal; long text folds in a report."""

    text: str


@dataclass(frozen=True)
class Heading:
    """A heading over the blocks that follow it (a round, a part of the view)."""

    text: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    title: str = ""
    """Shown above the table (a heading in a report)."""
    caption: str = ""
    """Shown below it: a winner, a spread, what the rows are."""
    strong: set[int] = field(default_factory=set)
    """Indexes of rows shown in bold (a winner, a total)."""
    compact: bool = False
    """Short cells (numbers): as wide as they need, not the whole page."""


@dataclass(frozen=True)
class Chart:
    """A line chart: one line per series, of y values (x is 1, 2, ...) or (x, y) points."""

    title: str
    series: Mapping[str, Sequence[float] | Sequence[tuple[float, float]]]
    x_label: str = ""
    y_range: tuple[float, float] | None = None
    reference: Mapping[str, float] | None = None
    """name -> y of a dashed horizontal line (a threshold)."""


Cell = str | Text
Block = Heading | Table | Text | Chart


# -- finding a run's view ----------------------------------------------------------------


class Run(Protocol):
    """What a view reads of a run (a `graphswarm.runs.RunResult`)."""

    @property
    def record(self) -> RunRecord: ...

    @property
    def state(self) -> dict[str, Any]: ...

    @property
    def pending(self) -> dict[str, list[Any]]:
        """Writes of tasks that finished in a step that did not complete (node -> writes)."""
        ...


@dataclass(frozen=True)
class View:
    """How one architecture's updates and runs are shown."""

    update: Callable[[str, dict[str, Any]], str]
    """(node, update) -> one progress line, or ""."""
    run: Callable[..., list[Block]]
    """(run, *, brief=False) -> the blocks of a run."""


def _generic_run(run: Run, *, brief: bool = False) -> list[Block]:
    return [state_table(run.state, brief=brief)]


GENERIC = View(update=lambda node, update: "", run=_generic_run)
"""The view of a graph built in Python: no progress lines, its state key by key."""


def view_of(architecture: str) -> View:
    """The view of a registered architecture; `GENERIC` for any other name."""
    from graphswarm.registry import ARCHITECTURES

    arch = ARCHITECTURES.get(architecture)
    return arch.view if arch is not None else GENERIC


def run_blocks(run: Run, *, brief: bool = False) -> list[Block]:
    """A run's blocks: its architecture's view, or its state for a run without a spec."""
    view = view_of(run.record.architecture) if run.record.spec else GENERIC
    return view.run(run, brief=brief)


# -- pieces the views share --------------------------------------------------------------


def shorten(text: Any, limit: int) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def vote_table(votes: Mapping[str, Any], *, title: str = "", brief: bool = False) -> Table:
    """A counted vote (`graphswarm.aggregation.VoteTable`): each cluster's answer, votes and agents."""
    if brief:
        rows: list[list[Cell]] = [
            [shorten(c["answers"][0], 60), f"{c['votes']:g}", shorten(", ".join(c["agents"]), 60)]
            for c in votes["clusters"]
        ]
        if votes["abstentions"]:
            rows.append(["(abstained)", "0", shorten(", ".join(votes["abstentions"]), 60)])
        caption = f"winner: {votes['winner']!s} · margin {votes['margin']:g} · {agreement_text(votes)}"
        return Table(["answer", "votes", "agents"], rows, title=title, caption=caption)
    rows = [[Text(c["answers"][0]), f"{c['votes']:g}", ", ".join(c["agents"])] for c in votes["clusters"]]
    if votes.get("abstentions"):
        rows.append(["(abstained)", "0", ", ".join(votes["abstentions"])])
    winner = {i for i, c in enumerate(votes["clusters"]) if c["label"] == votes.get("winner")}
    caption = (
        f"{votes['method']} vote · winner: {votes['winner']!s} · margin {votes['margin']:g} · "
        f"{agreement_text(votes)}" + (" · tie" if votes.get("tie") else "")
    )
    return Table(["answer", "votes", "agents"], rows, title=title, caption=caption, strong=winner, compact=True)


def agreement_text(votes: Mapping[str, Any]) -> str:
    """A counted vote's agreement with the votes behind it: ``agreement 55% (22 of 40 votes)``;
    1 of 40 (every answer different) reads as such, not only as "2%"."""
    clusters = votes.get("clusters") or []
    cast = sum(c["votes"] for c in clusters)
    top = clusters[0]["votes"] if clusters else 0
    return f"agreement {votes['agreement']:.0%} ({top:g} of {cast:g} votes)"


def vote_progress(votes: Mapping[str, Any], stop_reason: str | None = None) -> str:
    """The progress line of a counted vote: agreement, the leading answer, why it stops."""
    line = f"{agreement_text(votes)}, leading: {shorten(votes.get('winning_answer') or '-', 60)}"
    return line + (f"; stop: {stop_reason}" if stop_reason else "")


def agreement_chart(rounds: Sequence[Mapping[str, Any]], *, threshold: float | None = None) -> Chart:
    """Agreement per round, from anything with an ``agreement`` per round (vote tables,
    round outcomes); `threshold` draws the line at which agreement stops a run."""
    return Chart(
        "Agreement per round",
        {"agreement": [r["agreement"] for r in rounds]},
        x_label="round",
        y_range=(0, 1),
        reference={"threshold": threshold} if threshold is not None else None,
    )


def tasks_line(tasks: Sequence[tuple[str, str]]) -> str:
    """The progress line of a plan: its tasks' titles, each with who does it (if anyone yet)."""
    listed = "; ".join(title + (f" -> {who}" if who else "") for title, who in tasks)
    return shorten(f"{len(tasks)} tasks: {listed}", 200)


def state_table(state: Mapping[str, Any], *, brief: bool = False) -> Table:
    """A state as it is, key by key (the ledger of calls and the final answer are shown apart)."""
    rows: list[list[Cell]] = []
    for key, value in state.items():
        if key in ("calls", "final_answer"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        rows.append([key, shorten(text, 120) if brief else Text(text)])
    return Table(["key", "value"], rows, title="state" if brief else "State")
