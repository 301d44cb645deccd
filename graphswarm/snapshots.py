"""Reading a run's state from its checkpoints alone, without the graph that made them.

A run started from a graph built in Python has no record to rebuild that graph from,
yet `show`, `history` and `report` must read it. A checkpoint holds what they need:
the state's values, the channels that say which nodes run next (`branch:to:NODE`,
`join:A+B:NODE`, queued `Send`s, the input) and, as pending writes, the interrupts
the run waits on. `CheckpointReader` answers `aget_state` and `aget_state_history`
from those, as a compiled graph would.

It also finds the graphs run inside a step's tasks (`anested_runs`): a subgraph
LangGraph knows, or a compiled graph a node invokes itself (a node handing a task to another swarm),
which LangGraph's `aget_state(config, subgraphs=True)` does not list because it only
discovers subgraphs it can see in a node's code. Every checkpoint such a graph writes
records in its metadata, as `parents`, the checkpoint of the step it runs in: a
documented field that the checkpointer's `alist` can filter on.

What needs the graph is not shown: the writes of tasks that finished in a step that
did not complete (how they combine with the state depends on the graph's reducers;
they are kept, and resuming with the graph applies them), the empty values a reducer
starts from for keys never written, and `tasks`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.constants import START, TASKS
from langgraph.types import StateSnapshot

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["CheckpointReader", "NestedRun"]

# LangGraph's channels for a task's interrupts and the answers given to them.
_INTERRUPT, _RESUME = "__interrupt__", "__resume__"
_BRANCH, _JOIN = "branch:to:", "join:"
_INTERNAL = ("__", _BRANCH, _JOIN)
"""Channels that are LangGraph's bookkeeping, not state keys."""


class CheckpointReader:
    """The read side of a compiled graph (`aget_state`, `aget_state_history`) for one
    checkpointer, needing no graph; see the module docstring for what it leaves out."""

    def __init__(self, checkpointer: BaseCheckpointSaver) -> None:
        self._saver = checkpointer

    async def aget_state(self, config: RunnableConfig) -> StateSnapshot:
        """The state at the config's checkpoint (its latest without a `checkpoint_id`)."""
        config = _root(config)
        saved = await self._saver.aget_tuple(config)
        if saved is None:
            return StateSnapshot({}, (), config, None, None, None, (), ())
        return _snapshot(saved, live="checkpoint_id" not in config["configurable"])

    async def aget_state_history(self, config: RunnableConfig) -> AsyncIterator[StateSnapshot]:
        """Every checkpoint's state, newest first."""
        async for saved in self._saver.alist(_root(config)):
            yield _snapshot(saved, live=False)

    async def anested_runs(self, config: RunnableConfig) -> list[NestedRun]:
        """The graphs run inside the tasks of the step after the run's checkpoint at
        `config` (one level down), each at its latest checkpoint."""
        configurable = config["configurable"]
        step = {"": configurable["checkpoint_id"]}  # the root namespace's checkpoint: LangGraph's `parents`
        latest: dict[str, CheckpointTuple] = {}
        # No `checkpoint_ns` in the config: every namespace of the thread.
        query: RunnableConfig = {"configurable": {"thread_id": configurable["thread_id"]}}
        async for saved in self._saver.alist(query, filter={"parents": step}):
            namespace = saved.config["configurable"].get("checkpoint_ns", "")
            if namespace not in latest or saved.checkpoint["id"] > latest[namespace].checkpoint["id"]:
                latest[namespace] = saved
        return [
            NestedRun(
                state=_snapshot(saved, live=True),
                writes=tuple((channel, value) for _, channel, value in saved.pending_writes or []),
            )
            for saved in latest.values()
        ]


@dataclass(frozen=True)
class NestedRun:
    """A graph run inside a task of a run's step, at its latest checkpoint."""

    state: StateSnapshot
    """Its state, read as `CheckpointReader.aget_state` reads it."""
    writes: tuple[tuple[str, Any], ...]
    """(channel, value) pending on that checkpoint: what its tasks that finished in a step
    that did not complete wrote (not in `state.values`, as said in the module docstring)."""

    @property
    def finished(self) -> bool:
        """It ran to its end: nothing left to run, no question open."""
        return not self.state.next and not self.state.interrupts


def _root(config: RunnableConfig) -> RunnableConfig:
    """The config of the run's own checkpoints (not those of graphs run inside its nodes)."""
    return {**config, "configurable": {"checkpoint_ns": "", **config["configurable"]}}


def _snapshot(saved: CheckpointTuple, *, live: bool) -> StateSnapshot:
    channels = saved.checkpoint["channel_values"]
    writes = saved.pending_writes or []
    # The latest checkpoint shows only the questions still open; an older one every
    # question asked in its step.
    answered = {task for task, channel, _ in writes if channel == _RESUME} if live else set()
    interrupts = tuple(
        interrupt
        for task, channel, value in writes
        if channel == _INTERRUPT and task not in answered
        for interrupt in (value if isinstance(value, Sequence) else [value])
    )
    return StateSnapshot(
        values={key: value for key, value in channels.items() if not key.startswith(_INTERNAL)},
        next=_next_nodes(channels),
        config=saved.config,
        metadata=saved.metadata,
        created_at=saved.checkpoint["ts"],
        parent_config=saved.parent_config,
        tasks=(),
        interrupts=interrupts,
    )


def _next_nodes(channels: dict[str, Any]) -> tuple[str, ...]:
    """The nodes a checkpoint's channels trigger. A trigger channel holds a value until
    its node has run: `__start__` the input, `branch:to:NODE` an edge taken,
    `__pregel_tasks` the `Send`s, `join:A+B:NODE` the nodes it has heard from."""
    nodes: list[str] = []
    for channel, value in channels.items():
        if channel == START:
            nodes.append(START)
        elif channel == TASKS:
            nodes += [send.node for send in value]
        elif channel.startswith(_BRANCH):
            nodes.append(channel.removeprefix(_BRANCH))
        elif channel.startswith(_JOIN):
            sources, node = channel.removeprefix(_JOIN).rsplit(":", 1)
            if set(value) >= set(sources.split("+")):
                nodes.append(node)
    return tuple(nodes)
