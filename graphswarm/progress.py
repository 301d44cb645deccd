"""What `graphswarm run` and `graphswarm resume` show while a run goes on.

A run is shown by phase: a phase is a stretch of updates of one graph node (the 40
updates of the node where 40 agents answer, then the one that counts the vote). While a phase runs,
a terminal shows a progress bar for it (answered x/N, N being the swarm's member agents)
and the run's totals: model calls, tokens, cost, failed requests, elapsed time. Once the
phase is over (another node's update arrives, or the run ends) it leaves one line:

    ✓ answer  40/40  40 calls  3.1 s
    ✓ tally  1 update  0 calls  0.0 s  leading: 4 (40/40)
    total  40 calls  5200 tokens  cost unknown  0 failed  3.2 s

Piped (not a terminal), only those lines are printed; quiet, nothing. LangGraph's own
nodes (`__interrupt__`, any name starting with `__`) are never shown.

Streamed answers never interleave: with `stream=True` each agent's text is kept until
its node's update arrives and is then printed whole; with `stream_agent=NAME` that one
agent's tokens are printed as they come (as plain lines, without the live bars).

Example:
    >>> from rich.console import Console
    >>> console = Console(record=True, width=100)
    >>> call = {"agent": "a", "node": "answer", "input_tokens": 9, "output_tokens": 3, "latency_s": 0.1, "cost": None}
    >>> with run_display(console, agents=["a"]) as display:
    ...     display.on_update("answer", {"calls": [call]})
    >>> console.export_text().splitlines()[0].split("  ")[:3]
    ['✓ answer', '1/1', '1 call']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from graphswarm.state import CallRecord, format_cost

__all__ = ["Verbosity", "RunDisplay", "run_display"]

FEW_UPDATES = 3
"""A phase with at most this many updates also shows the architecture's own progress
line (the vote so far, a stop reason) and who made its calls."""


class Verbosity(StrEnum):
    """How much a run display shows."""

    QUIET = "quiet"
    """Nothing (errors are the caller's to print)."""
    LINES = "lines"
    """One plain line per finished phase and one for the totals: for pipes and logs."""
    LIVE = "live"
    """The lines, with a live progress bar and the running totals below them (a terminal)."""


def is_internal(node: str) -> bool:
    """LangGraph's own nodes and channels (`__interrupt__`, `__start__`): never shown."""
    return node.startswith("__")


@dataclass
class Totals:
    """Model calls of the run so far, as its updates report them."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failed: int = 0
    """Requests that failed (refused, timed out, malformed), retried or not."""
    cost: float | None = 0.0
    """US dollars; None once any call has no known price."""

    def add(self, call: CallRecord) -> None:
        self.calls += 1
        self.input_tokens += call.get("input_tokens", 0)
        self.output_tokens += call.get("output_tokens", 0)
        self.failed += 1 if call.get("error") else 0
        cost = call.get("cost")
        self.cost = None if cost is None or self.cost is None else self.cost + cost

    def describe(self, elapsed_s: float) -> str:
        tokens = self.input_tokens + self.output_tokens
        return (
            f"{_plural(self.calls, 'call')}  {tokens} tokens  cost {format_cost(self.cost, '$')}  "
            f"{self.failed} failed  {elapsed_s:.1f} s"
        )


@dataclass
class Phase:
    """A stretch of updates of one node."""

    node: str
    started: float
    ended: float
    updates: int = 0
    totals: Totals = field(default_factory=Totals)
    agents: list[str] = field(default_factory=list)
    """Who made its calls, in order of first call."""
    members_only: bool = True
    """Whether every call was made by a member agent (one update per member: x/N)."""
    lines: list[str] = field(default_factory=list)
    """The architecture's progress lines of its updates (non-empty ones)."""

    def count(self, members: int) -> str:
        """The phase's count: "12/40" for one of the members' updates, else "1 update", "5 updates"."""
        if members and self.members_only and self.agents and self.updates <= members:
            return f"{self.updates}/{members}"
        return _plural(self.updates, "update")

    def summary(self, members: int) -> Text:
        calls = _plural(self.totals.calls, "call")
        if self.totals.failed:
            calls += f" ({self.totals.failed} failed)"
        details = f"  {self.count(members)}  {calls}  {self.ended - self.started:.1f} s"
        if self.updates <= FEW_UPDATES:
            details += f"  by {', '.join(self.agents)}" if self.agents else ""
            details += "".join(f"  {line}" for line in self.lines[-FEW_UPDATES:])
        return Text.assemble(("✓", "green"), " ", (self.node, "bold"), details)


class RunDisplay:
    """Shows one run's updates and streamed tokens on a console; see the module docstring.

    Use it as a context manager around the run, and pass `on_update` (and `on_token` when
    `streams`) to `Runner.start` or `Runner.resume`."""

    def __init__(
        self,
        console: Console,
        *,
        verbosity: Verbosity,
        architecture: str = "",
        agents: Sequence[str] = (),
        stream: bool = False,
        stream_agent: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from graphswarm.view import view_of

        self.console = console
        self.verbosity = verbosity
        self._members = set(agents)
        self._stream_agent = stream_agent
        self._buffered = stream and stream_agent is None
        self._view_line = view_of(architecture).update
        self._clock = clock
        self._started = self._last = clock()
        self._phase: Phase | None = None
        self.totals = Totals()
        self._buffers: dict[tuple[str, str], list[str]] = {}
        self._speaking: tuple[str, str] | None = None
        """The (agent, node) whose tokens are being printed as they come, mid-line."""
        self._live: Live | None = None

    @property
    def streams(self) -> bool:
        """Whether the display shows tokens: pass `on_token` to the run only then."""
        return self.verbosity is not Verbosity.QUIET and (self._buffered or self._stream_agent is not None)

    # -- the run's events ----------------------------------------------------------

    def on_update(self, node: str, update: dict[str, Any]) -> None:
        """One node's update (a `Runner` `on_update` handler)."""
        if is_internal(node):
            return
        now = self._clock()
        calls: list[CallRecord] = update.get("calls") or []
        if self._phase is None or self._phase.node != node:
            self._end_phase()
            self._phase = Phase(node=node, started=self._last, ended=now)
        phase = self._phase
        phase.updates += 1
        phase.ended = self._last = now
        for call in calls:
            phase.totals.add(call)
            self.totals.add(call)
            if call["agent"] not in phase.agents:
                phase.agents.append(call["agent"])
            phase.members_only = phase.members_only and call["agent"] in self._members
        if line := self._view_line(node, update):
            phase.lines.append(line)
        self._answered(node, [c["agent"] for c in calls])
        if self._live is not None:
            self._live.refresh()

    def on_token(self, agent: str, node: str, text: str) -> None:
        """A piece of an agent's answer (a `Runner` `on_token` handler)."""
        if self.verbosity is Verbosity.QUIET or is_internal(node):
            return
        if self._buffered:
            self._buffers.setdefault((agent, node), []).append(text)
        elif agent == self._stream_agent:
            if self._speaking != (agent, node):
                self._end_speaking()
                self.console.print(_speaker(agent, node), end="")
                self._speaking = (agent, node)
            self.console.print(text, end="")

    # -- showing -------------------------------------------------------------------

    def start(self) -> None:
        self._started = self._last = self._clock()
        if self.verbosity is Verbosity.LIVE:
            self._live = Live(console=self.console, get_renderable=self._render, transient=True, refresh_per_second=4)
            self._live.start()

    def stop(self) -> None:
        """Give the terminal back, end the last phase and print the totals."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._end_phase()
        for agent, node in list(self._buffers):
            self._print_buffered(agent, node)
        self._end_speaking()
        if self.verbosity is not Verbosity.QUIET and (self.totals.calls or self._last > self._started):
            self._print(Text.assemble(("total", "bold"), "  ", self.totals.describe(self._clock() - self._started)))

    def __enter__(self) -> RunDisplay:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _end_phase(self) -> None:
        if self._phase is not None:
            self._print(self._phase.summary(len(self._members)))
            self._phase = None

    def _answered(self, node: str, agents: list[str]) -> None:
        """An update of `node` came in for `agents`: their streamed text is complete."""
        if self._buffered:
            for agent in agents or [""]:
                self._print_buffered(agent, node)
        elif self._speaking is not None and self._speaking[1] == node and self._speaking[0] in agents:
            self._end_speaking()

    def _print_buffered(self, agent: str, node: str) -> None:
        pieces = self._buffers.pop((agent, node), None)
        if pieces:
            self._print(Text.assemble(_speaker(agent, node), "".join(pieces)))

    def _end_speaking(self) -> None:
        if self._speaking is not None:
            self.console.print()
            self._speaking = None

    def _print(self, text: Text) -> None:
        if self.verbosity is not Verbosity.QUIET:
            self._end_speaking()
            self.console.print(text)

    def _render(self) -> RenderableType:
        """The live part: the running phase's bar, then the totals."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        phase = self._phase
        members = len(self._members)
        if phase is None:
            grid.add_row(Spinner("dots"), Text("starting"), ProgressBar(total=None, width=30), Text(""))
        else:
            known = members and phase.members_only and phase.updates <= members
            bar = ProgressBar(total=members if known else None, completed=phase.updates, width=30)
            last = phase.lines[-1] if phase.lines else ""
            grid.add_row(Spinner("dots"), Text(phase.node, style="bold"), bar, Text(f"{phase.count(members)}  {last}"))
        totals = Text(self.totals.describe(self._clock() - self._started), style="dim", no_wrap=True)
        return Group(grid, totals)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _speaker(agent: str, node: str) -> Text:
    return Text.assemble((agent or node, "bold"), " ", (f"({node})", "dim"), ": ")


def run_display(
    console: Console,
    *,
    architecture: str = "",
    agents: Sequence[str] = (),
    quiet: bool = False,
    stream: bool = False,
    stream_agent: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RunDisplay:
    """The display for a run on `console`: live bars on a terminal, plain lines otherwise,
    nothing when `quiet`.

    Args:
        console: Where to show it (the CLI's stderr console).
        architecture: The run's architecture, whose view gives each update's progress line.
        agents: The swarm's member agents: a phase of their updates counts to their number.
        quiet: Show nothing.
        stream: Print each agent's answer whole once its node's update arrives.
        stream_agent: Print this agent's tokens as they come instead (plain lines, no bars).
        clock: Seconds, for the elapsed times.
    """
    if quiet:
        verbosity = Verbosity.QUIET
    elif console.is_terminal and stream_agent is None:
        verbosity = Verbosity.LIVE
    else:
        verbosity = Verbosity.LINES
    return RunDisplay(
        console,
        verbosity=verbosity,
        architecture=architecture,
        agents=agents,
        stream=stream or stream_agent is not None,
        stream_agent=stream_agent,
        clock=clock,
    )
