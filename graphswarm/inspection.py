"""Reading a run: its state now or at any checkpoint, its history, the calls it has made.

Reading never needs a model. A run is read through its graph's shape (the graph given,
or rebuilt from the run's record, which builds no client), or, for a run started from a
graph built in Python and not given, from its checkpoints alone
(`snapshots.CheckpointReader`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from langgraph.types import StateSnapshot

from graphswarm.checkpoint import Persistence
from graphswarm.errors import UsageError
from graphswarm.records import RunRecord, RunStatus
from graphswarm.snapshots import CheckpointReader
from graphswarm.state import CallRecord, summarize_calls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

    Graph: TypeAlias = StateGraph[Any, Any, Any, Any]
    """A graph of any state, context, input and output."""
    Compiled: TypeAlias = CompiledStateGraph[Any, Any, Any, Any]

__all__ = ["RunReader", "RunResult", "StateReader", "Step", "run_config"]

RECURSION_LIMIT = 10_000
"""Steps a run may take (LangGraph's default of 25 would stop long runs and loops)."""


class StateReader(Protocol):
    """The read side of a compiled graph, which `CheckpointReader` also has."""

    async def aget_state(self, config: RunnableConfig) -> StateSnapshot: ...

    def aget_state_history(self, config: RunnableConfig) -> AsyncIterator[StateSnapshot]: ...


@dataclass
class RunResult:
    """A run's record and state as they are now."""

    record: RunRecord
    state: dict[str, Any]
    pending: dict[str, list[Any]] = field(default_factory=dict)
    """Results of tasks that finished in a step that did not complete (node -> writes)."""
    pauses: list[dict[str, Any]] = field(default_factory=list)
    """Why the run is paused, when it is (graphswarm's `Pause` values or a human interrupt)."""
    next: list[str] = field(default_factory=list)
    """The nodes that run next; empty once the run is done."""

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> RunStatus:
        return self.record.effective_status

    @property
    def stop_reason(self) -> str | None:
        return self.record.stop_reason

    @property
    def final_answer(self) -> str | None:
        return self.state.get("final_answer")

    @property
    def calls(self) -> list[CallRecord]:
        """Every request that reached a model: the state's ledger, then those of nodes
        that never finished (`RunRecord.unfinished_calls`).

        LangGraph's snapshot already applies the writes of tasks that finished in a step
        that did not complete, so `state` holds them: they are not added again here.
        """
        return with_unfinished(self.state.get("calls", []), self.record)

    @property
    def usage(self) -> dict[str, Any]:
        """Calls, tokens, latency and cost per agent, per node and in total."""
        return summarize_calls(self.calls)

    def _repr_html_(self) -> str:
        """The run in a notebook: its summary, graph and view (`graphswarm.report.result_html`)."""
        from graphswarm.report import result_html

        return result_html(self)

    def _repr_markdown_(self) -> str:
        from graphswarm.report import result_markdown

        return result_markdown(self)

    @classmethod
    def of(cls, record: RunRecord, snapshot: StateSnapshot) -> RunResult:
        """The result that a snapshot of the run's state shows."""
        pending: dict[str, list[Any]] = {}
        for task in snapshot.tasks:
            if task.result is not None:
                pending.setdefault(task.name, []).append(task.result)
        pauses = [i.value if isinstance(i.value, dict) else {"value": i.value} for i in snapshot.interrupts]
        return cls(
            record=record, state=dict(snapshot.values or {}), pending=pending, pauses=pauses, next=list(snapshot.next)
        )


@dataclass
class Step:
    """One checkpoint of a run, for `history`."""

    checkpoint_id: str
    step: int
    source: str
    next: list[str]
    created_at: str
    calls: list[dict[str, Any]]
    """Model calls that finished between the previous checkpoint and this one."""


def run_config(run_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """The LangGraph config of a run (at one of its checkpoints)."""
    configurable: dict[str, Any] = {"thread_id": run_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable, "recursion_limit": RECURSION_LIMIT}


class RunReader:
    """Reads the runs of one database."""

    def __init__(self, persistence: Persistence) -> None:
        self._p = persistence

    def state_reader(self, record: RunRecord, graph: Graph | None = None) -> StateReader:
        """What reads the run's state: its graph (given, or its shape rebuilt from the
        record), or the checkpoints alone for a run of a graph built in Python that is
        not given."""
        if graph is None and not record.spec:
            return CheckpointReader(self._p.checkpointer)
        return self._p.compile(graph or graph_shape(record))

    async def result(self, record: RunRecord, reader: StateReader) -> RunResult:
        """The run's record and its latest state."""
        return RunResult.of(record, await reader.aget_state(run_config(record.run_id)))

    async def state_at(self, record: RunRecord, checkpoint_id: str, reader: StateReader) -> RunResult:
        """The run's state as it was at one of its checkpoints."""
        snapshot = await reader.aget_state(run_config(record.run_id, checkpoint_id))
        if snapshot.created_at is None:
            raise UsageError(
                f"run {record.run_id} has no checkpoint {checkpoint_id!r} "
                f"(list them: graphswarm history {record.run_id})"
            )
        return RunResult.of(record, snapshot)

    async def history(self, record: RunRecord, reader: StateReader) -> list[Step]:
        """Every checkpoint of the run, oldest first, with the model calls made in each step."""
        snapshots = [s async for s in reader.aget_state_history(run_config(record.run_id))]
        steps: list[Step] = []
        seen = 0
        for snap in reversed(snapshots):
            calls = snap.values.get("calls", []) if isinstance(snap.values, dict) else []
            metadata = snap.metadata or {}
            steps.append(
                Step(
                    checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                    step=int(metadata.get("step", -1)),
                    source=str(metadata.get("source", "")),
                    next=list(snap.next),
                    created_at=snap.created_at or "",
                    calls=list(calls[seen:]),
                )
            )
            seen = len(calls)
        return steps

    async def spent_calls(self, record: RunRecord, reader: StateReader) -> list[CallRecord]:
        """Every request the run has made, so that caps count them on resume: its ledger,
        those of nodes that never finished, and those of graphs run inside a node that
        have not returned yet (their calls reach the run's state only when they do).

        A graph that ran to its end has returned its calls to the node that ran it: they
        are in the state (a snapshot applies the writes of tasks that finished), or, if
        that node died first, among the unfinished calls the runner keeps.
        """
        snapshot = await reader.aget_state(run_config(record.run_id))
        calls = with_unfinished((snapshot.values or {}).get("calls", []), record)
        if not any(task.result is None for task in snapshot.tasks):
            return calls  # only a task that has not finished can have a graph still running inside it
        for nested in await CheckpointReader(self._p.checkpointer).anested_runs(snapshot.config):
            if not nested.finished:
                calls += nested.state.values.get("calls", [])
                calls += [c for channel, value in nested.writes if channel == "calls" for c in value]
        return calls


def graph_shape(record: RunRecord) -> Graph:
    """The graph of a run started from a spec, rebuilt from its record to read or edit
    its state: that needs the graph's shape only, never a model."""
    if not record.spec:
        raise python_graph_needed(record.run_id)
    from graphswarm.viz import record_graph

    return record_graph(record.spec)


def python_graph_needed(run_id: str) -> UsageError:
    """The error for a run whose graph no record can rebuild."""
    return UsageError(
        f"run {run_id} was started from a graph built in Python: resume or edit it from Python, "
        "passing the same graph (graph=...)"
    )


def with_unfinished(ledger: list[CallRecord], record: RunRecord) -> list[CallRecord]:
    """The ledger, then the run's unfinished calls it does not hold: a node that ran again
    after a stop (its durable calls replayed) puts the calls it had finished in the ledger."""
    held = {c.get("id") for c in ledger}
    return [*ledger, *(cast("CallRecord", c) for c in record.unfinished_calls if c.get("id") not in held)]
