"""Durable runs: start, resume, list and inspect swarms kept in a database.

A run is a LangGraph thread: its id is the thread id, its state lives in the
checkpointer. Beside it we keep a `RunRecord` in the LangGraph store: what was run,
with which agents, and how it ended. LangGraph does the hard part: a resumed run
continues from its last checkpoint, and tasks that finished in an interrupted step
are kept as pending writes and not run again.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field

from graphswarm.budget import Budget, Governor, SwarmContext
from graphswarm.checkpoint import Persistence, open_database
from graphswarm.errors import ConfigError, RunError, UnknownRunError, UsageError
from graphswarm.edits import apply_edit, checked_edit
from graphswarm.registry import SwarmSpec
from graphswarm.snapshots import CheckpointReader
from graphswarm.state import StopReason, summarize_calls

__all__ = [
    "RunStatus", "RunRecord", "RunResult", "RunFailedError", "Step", "Runner", "run_swarm", "resume_swarm", "new_run_id",
]

_NAMESPACE = ("graphswarm", "runs")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

UpdateHandler = Callable[[str, dict[str, Any]], None]
"""Called with (node name, the node's state update) as each node finishes."""
TokenHandler = Callable[[str, str, str], None]
"""Called with (agent, node, text) for each piece of a model's answer as it streams."""


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Paused: by a budget cap, a stall, a failed worker, a human, or a killed process."""


class RunRecord(BaseModel):
    """What graphswarm knows about a run besides its graph state."""

    run_id: str
    architecture: str
    objective: str
    spec: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    status: RunStatus = RunStatus.RUNNING
    stop_reason: str | None = None
    error: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    elapsed_s: float = 0.0
    pid: int | None = None
    host: str = ""
    pause_before: list[str] = Field(default_factory=list)
    pause_after: list[str] = Field(default_factory=list)
    """Breakpoints: the run pauses before/after these nodes, every time they run."""
    memory: str | None = None
    """The run's shared memory: "embedded", "memory" or a Chroma server URL (None: no memory)."""
    forked_from: str | None = None
    """"RUN_ID@CHECKPOINT_ID" for a run forked from another run's checkpoint."""
    unfinished_calls: list[dict[str, Any]] = Field(default_factory=list)
    """Requests that reached a model from a node that never finished (paused by a cap
    mid-node, failed, or retried after an error): not in the state's ledger, yet spent."""

    @property
    def effective_status(self) -> RunStatus:
        """`running` runs whose process is gone (killed, crashed) count as interrupted."""
        if self.status is RunStatus.RUNNING and self.host == socket.gethostname() and not _alive(self.pid):
            return RunStatus.INTERRUPTED
        return self.status

    @property
    def agent_names(self) -> list[str]:
        roles = [self.spec[r] for r in ("leader", "judge", "moderator") if self.spec.get(r)]
        return [a["name"] for a in [*roles, *self.spec.get("agents", [])]]


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
    def calls(self) -> list[dict[str, Any]]:
        """Every request that reached a model: the state's ledger, then those of nodes
        that never finished (`RunRecord.unfinished_calls`).

        LangGraph's snapshot already applies the writes of tasks that finished in a step
        that did not complete, so `state` holds them: they are not added again here.
        """
        return [*self.state.get("calls", []), *self.record.unfinished_calls]

    @property
    def usage(self) -> dict[str, Any]:
        """Calls, tokens, latency and cost per agent, per node and in total."""
        return summarize_calls(self.calls)


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


class RunFailedError(RunError):
    """A run stopped on an error; its state is saved and `resume` continues it."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"run {run_id} failed: {type(cause).__name__}: {detail}")
        self.run_id = run_id
        self.cause = cause


class Runner:
    """Runs swarms against one database.

    Example:
        >>> async with Runner("memory") as runner:  # doctest: +SKIP
        ...     result = await runner.start(spec, "Plan a product launch")
        ...     print(result.final_answer)
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        max_concurrency: int | None = None,
        memory: str | bool | None = None,
        embeddings: Any = None,
        objectives: Any = None,
    ) -> None:
        """`memory` gives every run a shared Chroma memory: True for the embedded one
        beside the database, "http://host:port" for a Chroma server, "memory" for an
        in-process one; agents then read relevant notes and post what they produce.
        `embeddings` is any LangChain `Embeddings` or a name ("minilm", "openai").
        `objectives` (an `ObjectiveSettings`) says when an objective is too long for
        prompts: it is then saved with the run, chunked into the run's memory (embedded
        memory is switched on for it), and agents get a summary plus the relevant chunks."""
        self._db = db
        self._max_concurrency = max_concurrency
        self._memory = memory
        self._embeddings = embeddings
        self._chroma: Any = None
        self._objectives = objectives
        self._persistence: Persistence | None = None
        self._opened: Any = None

    async def __aenter__(self) -> Runner:
        self._opened = open_database(self._db)
        self._persistence = await self._opened.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._opened.__aexit__(*exc)
        self._persistence = None

    @property
    def db_label(self) -> str:
        return self._p.database.label

    @property
    def _p(self) -> Persistence:
        if self._persistence is None:
            raise RuntimeError("use Runner as an async context manager: async with Runner(db) as runner")
        return self._persistence

    async def start(
        self,
        swarm: SwarmSpec | StateGraph,
        objective: str,
        *,
        run_id: str | None = None,
        budget: Budget | None = None,
        architecture: str | None = None,
        pause_before: Sequence[str] = (),
        pause_after: Sequence[str] = (),
        on_update: UpdateHandler | None = None,
        on_token: TokenHandler | None = None,
    ) -> RunResult:
        """Start a new run of `swarm` (a spec, or a graph you built) on `objective`.

        `pause_before` / `pause_after` name nodes to stop at (breakpoints); inspect the
        state, then `resume` (optionally with state `updates`).
        """
        if not isinstance(objective, str) or not objective.strip():
            raise ConfigError("the objective is empty")
        run_id = await self._new_run_id(run_id)
        if isinstance(swarm, SwarmSpec):
            swarm.check_models()
            graph, spec, arch = swarm.build(), swarm.to_record(), swarm.architecture
        else:
            graph, spec, arch = swarm, {}, architecture or "custom"
        budget = budget or Budget()
        record = RunRecord(
            run_id=run_id,
            architecture=arch,
            objective=objective,
            spec=spec,
            budget=budget.model_dump(exclude_none=True),
            memory=None if not self._memory else ("embedded" if self._memory is True else str(self._memory)),
            pause_before=_known_nodes(graph, pause_before),
            pause_after=_known_nodes(graph, pause_after),
        )
        prepared = self._prepare_objective(record)
        graph_input = {"objective": prepared.prompt if prepared else objective}
        return await self._execute(record, graph, graph_input, budget, on_update, on_token, prepared)

    async def resume(
        self,
        run_id: str,
        *,
        graph: StateGraph | None = None,
        budget: Budget | None = None,
        base_url: str | None = None,
        model: str | None = None,
        updates: dict[str, Any] | None = None,
        as_node: str | None = None,
        decision: Any = None,
        pause_before: Sequence[str] | None = None,
        pause_after: Sequence[str] | None = None,
        on_update: UpdateHandler | None = None,
        on_token: TokenHandler | None = None,
    ) -> RunResult:
        """Continue a run that failed, paused or was killed.

        Finished model calls are not made again. Pass a `budget` to raise the caps
        of a run that stopped on one; `updates` to edit its state first (applied as if
        `as_node` had written them); `decision` to answer a pause that asks a person
        (an approval); new breakpoints (an empty list clears them); and `graph` for
        runs started from a graph you built yourself.
        """
        record = await self.get(run_id)
        if record.status is RunStatus.DONE:
            raise UsageError(f"run {run_id} is already done (see: graphswarm show {run_id})")
        if record.effective_status is RunStatus.RUNNING:
            raise UsageError(f"run {run_id} is still running in process {record.pid}")
        if graph is None:
            graph = self._rebuild(record, base_url=base_url, model=model)
        if pause_before is not None:
            record.pause_before = _known_nodes(graph, pause_before)
        if pause_after is not None:
            record.pause_after = _known_nodes(graph, pause_after)
        if as_node is not None:
            _known_nodes(graph, [as_node])
        budget = budget or Budget.model_validate(record.budget)
        record.budget = budget.model_dump(exclude_none=True)
        compiled = self._compile(graph, record)
        decision = _checked_decision(run_id, (await self._result(record, compiled)).pauses, decision)
        if updates:
            as_node = await checked_edit(compiled, _config(run_id), updates, as_node)
            await apply_edit(compiled, _config(run_id), updates, as_node)
        graph_input = Command(resume=decision) if decision is not None else None
        return await self._execute(record, graph, graph_input, budget, on_update, on_token)

    async def state_at(self, run_id: str, checkpoint_id: str, *, graph: StateGraph | None = None) -> RunResult:
        """The run's state as it was at one of its checkpoints (see `history`)."""
        record = await self.get(run_id)
        compiled = self._reader(record, graph)
        snapshot = await compiled.aget_state(_config(run_id, checkpoint_id))
        if snapshot.created_at is None:
            raise UsageError(f"run {run_id} has no checkpoint {checkpoint_id!r} (list them: graphswarm history {run_id})")
        return _as_result(record, snapshot)

    async def fork(
        self,
        run_id: str,
        checkpoint_id: str,
        *,
        new_run_id: str | None = None,
        updates: dict[str, Any] | None = None,
        as_node: str | None = None,
        graph: StateGraph | None = None,
    ) -> RunRecord:
        """A new run that starts where `run_id` was at `checkpoint_id`; the original is unchanged.

        The fork is paused: `resume` it to continue, with other agents or options if you
        pass another `graph`. `updates` edit its state first.
        """
        source = await self.get(run_id)
        await self.state_at(run_id, checkpoint_id, graph=graph)  # says clearly when the checkpoint is unknown
        if updates:  # checked before anything is written
            editor = self._compile(graph or self._rebuild(source, lazy=True))
            as_node = await checked_edit(editor, _config(run_id, checkpoint_id), updates, as_node)
        new_run_id = await self._new_run_id(new_run_id)
        saver = self._p.checkpointer
        origin = await saver.aget_tuple(_config(run_id, checkpoint_id))
        target = {"configurable": {"thread_id": new_run_id, "checkpoint_ns": ""}}
        copied = await saver.aput(target, origin.checkpoint, origin.metadata, origin.checkpoint["channel_versions"])
        # Writes pending on a checkpoint are the results of the step after it, which the
        # fork runs again; only the input checkpoint's writes are the input itself.
        if (origin.metadata or {}).get("source") == "input":
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in origin.pending_writes or []:
                by_task.setdefault(task_id, []).append((channel, value))
            for task_id, writes in by_task.items():
                await saver.aput_writes(copied, writes, task_id)
        record = source.model_copy(
            update={
                "run_id": new_run_id,
                "status": RunStatus.INTERRUPTED,
                "stop_reason": "forked",
                "error": None,
                "created_at": time.time(),
                "pid": None,
                "forked_from": f"{run_id}@{checkpoint_id}",
            }
        )
        if updates:
            try:
                await apply_edit(editor, _config(new_run_id), updates, as_node)
            except UsageError:
                await saver.adelete_thread(new_run_id)  # no half-made fork
                raise
        await self._save_record(record)
        return record

    async def get(self, run_id: str) -> RunRecord:
        record = await self._load_record(run_id)
        if record is None:
            raise UnknownRunError(run_id, self.db_label)
        return record

    async def list(self) -> list[RunRecord]:
        items = await self._p.store.asearch(_NAMESPACE, limit=10_000)
        records = [RunRecord.model_validate(item.value) for item in items]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    async def result(self, run_id: str, *, graph: StateGraph | None = None) -> RunResult:
        """The run's record and its latest state."""
        record = await self.get(run_id)
        return await self._result(record, self._reader(record, graph))

    async def history(self, run_id: str, *, graph: StateGraph | None = None) -> list[Step]:
        """Every checkpoint of the run, oldest first, with the model calls made in each step."""
        record = await self.get(run_id)
        snapshots = [s async for s in self._reader(record, graph).aget_state_history(_config(run_id))]
        steps: list[Step] = []
        seen = 0
        for snap in reversed(snapshots):
            calls = snap.values.get("calls", []) if isinstance(snap.values, dict) else []
            steps.append(
                Step(
                    checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                    step=int(snap.metadata.get("step", -1)) if snap.metadata else -1,
                    source=str(snap.metadata.get("source", "")) if snap.metadata else "",
                    next=list(snap.next),
                    created_at=snap.created_at or "",
                    calls=list(calls[seen:]),
                )
            )
            seen = len(calls)
        return steps

    # -- internals -------------------------------------------------------------

    def _prepare_objective(self, record: RunRecord) -> Any:
        """Save and chunk an objective too long for prompts; None when it fits."""
        from graphswarm.objectives import ObjectiveSettings

        settings = self._objectives or ObjectiveSettings()
        if len(record.objective) <= settings.max_inline_tokens:  # a token is at least a character
            return None
        from graphswarm.objectives import prepare_objective

        run_dir = self._run_dir("objectives", record.run_id)
        prepared = prepare_objective(record.objective, run_dir=run_dir, settings=settings)
        if prepared.inline:
            return None
        record.memory = record.memory or "embedded"
        return prepared

    def _open_memory(self, record: RunRecord) -> Any:
        if not record.memory:
            return None
        from graphswarm.embeddings import resolve_embeddings
        from graphswarm.memory import SharedMemory, open_chroma

        if self._chroma is None:
            self._chroma = open_chroma(None if record.memory == "embedded" else record.memory, db=self._db)
        embeddings = resolve_embeddings(self._embeddings, base_url=record.spec.get("base_url"))
        return SharedMemory(self._chroma, record.run_id, embeddings=embeddings)

    def _run_dir(self, kind: str, run_id: str) -> Path:
        """A run's own files of one kind ("objectives", "workspaces"), beside the run database
        (in the temp directory for an in-memory database, which keeps nothing either)."""
        from graphswarm.checkpoint import Backend, parse_db_url
        from graphswarm.memory import chroma_path

        if parse_db_url(self._db).backend is Backend.MEMORY:
            return Path(tempfile.gettempdir()) / "graphswarm-runs" / kind / run_id
        return chroma_path(self._db).parent / kind / run_id

    async def _new_run_id(self, run_id: str | None) -> str:
        if run_id is not None and not _RUN_ID.match(run_id):
            raise ConfigError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-' (max 64)")
        run_id = run_id or new_run_id()
        if await self._load_record(run_id) is not None:
            raise ConfigError(f"run {run_id!r} already exists: resume it with graphswarm resume {run_id}")
        return run_id

    def _compile(self, graph: StateGraph, record: RunRecord | None = None):
        return graph.compile(
            checkpointer=self._p.checkpointer,
            store=self._p.store,
            interrupt_before=record.pause_before if record else None,
            interrupt_after=record.pause_after if record else None,
        )

    def _reader(self, record: RunRecord, graph: StateGraph | None) -> Any:
        """What reads a run's state: its graph (given, or rebuilt from its record with
        stand-in models), or for a run started from a graph built in Python that is not
        given, its checkpoints alone; reading never needs a model."""
        if graph is None and not record.spec:
            return CheckpointReader(self._p.checkpointer)
        return self._compile(graph or self._rebuild(record, lazy=True))

    def _rebuild(
        self, record: RunRecord, *, base_url: str | None = None, model: str | None = None, lazy: bool = False
    ) -> StateGraph:
        if not record.spec:
            raise UsageError(
                f"run {record.run_id} was started from a graph built in Python: resume or edit it from Python, "
                "passing the same graph (graph=...)"
            )
        if not record.spec.get("recordable", True) and not lazy:
            raise UsageError(
                f"run {record.run_id} used model instances or tools that a record cannot hold: "
                "resume it from Python with the same graph"
            )
        if lazy:
            # Reading state needs the graph's shape only, never a model.
            from graphswarm.viz import record_graph

            return record_graph(record.spec)
        data = dict(record.spec)
        if base_url:
            data["base_url"] = base_url
        if model:
            data["model"] = model
        spec = SwarmSpec.from_record(data)
        spec.check_models()
        return spec.build()

    async def _execute(
        self,
        record: RunRecord,
        graph: StateGraph,
        graph_input: dict[str, Any] | None,
        budget: Budget,
        on_update: UpdateHandler | None,
        on_token: TokenHandler | None = None,
        objective: Any = None,
    ) -> RunResult:
        compiled = self._compile(graph, record)
        config = _config(record.run_id)
        if self._max_concurrency:
            config["max_concurrency"] = self._max_concurrency
        governor = Governor(budget, spent=await self._spent_calls(record, compiled), elapsed_s=record.elapsed_s)
        memory = self._open_memory(record)
        if objective is not None:
            from graphswarm.objectives import store_chunks

            await store_chunks(memory, objective)
        record.status, record.stop_reason, record.error = RunStatus.RUNNING, None, None
        record.pid, record.host = os.getpid(), socket.gethostname()
        await self._save_record(record)
        started = time.monotonic()
        try:
            modes = ["updates", "messages"] if on_token else ["updates"]
            async for mode, chunk in compiled.astream(
                graph_input,
                config,
                context=SwarmContext(governor, memory, self._run_dir("workspaces", record.run_id)),
                stream_mode=modes,
                durability="sync",
            ):
                if mode == "messages":
                    _emit_token(chunk, on_token)
                elif on_update:
                    for node, update in chunk.items():
                        on_update(node, update if isinstance(update, dict) else {})
        except Exception as exc:
            record.status, record.stop_reason = RunStatus.FAILED, StopReason.ERROR.value
            record.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            raise RunFailedError(record.run_id, exc) from exc
        except BaseException:
            record.status, record.stop_reason = RunStatus.INTERRUPTED, "cancelled"
            raise
        finally:
            record.elapsed_s += time.monotonic() - started
            await asyncio.shield(self._keep_unfinished_calls(record, compiled, governor))
        result = await self._result(record, compiled)
        if result.pauses:
            record.status = RunStatus.INTERRUPTED
            record.stop_reason = str(result.pauses[0].get("stop_reason", "human"))
        elif result.next:
            record.status, record.stop_reason = RunStatus.INTERRUPTED, "breakpoint"
        else:
            record.status = RunStatus.DONE
            record.stop_reason = result.state.get("stop_reason") or "completed"
        await self._save_record(record)
        return result

    async def _keep_unfinished_calls(self, record: RunRecord, compiled: Any, governor: Governor) -> None:
        """Save the run record with the requests of this execution that no checkpoint holds."""
        saved = {c.get("id") for c in await self._spent_calls(record, compiled)}
        record.unfinished_calls += [c for c in governor.records if c.get("id") not in saved]
        await self._save_record(record)

    async def _spent_calls(self, record: RunRecord, compiled: Any) -> list[dict[str, Any]]:
        """Every request the run has made: its ledger, those of a graph a task handed work
        to that has not returned yet (its calls reach the parent's state only when it does),
        and those of nodes that never finished, so that caps count them on resume."""
        snapshot = await compiled.aget_state(_config(record.run_id))
        calls = [*(snapshot.values or {}).get("calls", []), *record.unfinished_calls]
        for task in snapshot.tasks:
            # A graph run inside a node keeps its checkpoints under "node:task id".
            namespace = {"thread_id": record.run_id, "checkpoint_ns": f"{task.name}:{task.id}"}
            inner = await self._p.checkpointer.aget_tuple({"configurable": namespace})
            if inner is not None:
                calls += inner.checkpoint["channel_values"].get("calls", [])
                calls += [c for _, channel, value in inner.pending_writes or [] if channel == "calls" for c in value]
        return calls

    async def _result(self, record: RunRecord, compiled: Any) -> RunResult:
        return _as_result(record, await compiled.aget_state(_config(record.run_id)))

    async def _load_record(self, run_id: str) -> RunRecord | None:
        item = await self._p.store.aget(_NAMESPACE, run_id)
        return RunRecord.model_validate(item.value) if item else None

    async def _save_record(self, record: RunRecord) -> None:
        record.updated_at = time.time()
        await self._p.store.aput(_NAMESPACE, record.run_id, record.model_dump(mode="json"), index=False)


def _as_result(record: RunRecord, snapshot: Any) -> RunResult:
    pending: dict[str, list[Any]] = {}
    for task in snapshot.tasks:
        if task.result is not None:
            pending.setdefault(task.name, []).append(task.result)
    pauses = [i.value if isinstance(i.value, dict) else {"value": i.value} for i in snapshot.interrupts]
    return RunResult(
        record=record, state=dict(snapshot.values or {}), pending=pending, pauses=pauses, next=list(snapshot.next)
    )


def _checked_decision(run_id: str, pauses: list[dict[str, Any]], decision: Any) -> Any:
    """The decision to resume with: the one given, checked against what the pause accepts,
    or the pause's own default for a plain resume."""
    accepts = {action for pause in pauses for action in pause.get("accepts", [])}
    if decision is None:
        return next((pause["resume"] for pause in pauses if "resume" in pause), None)
    if not accepts:
        reason = ", ".join(str(p.get("stop_reason")) for p in pauses) or "nothing"
        raise UsageError(f"run {run_id} is not waiting for a decision (it is paused on: {reason})")
    action = decision.get("action") if isinstance(decision, dict) else None
    if action not in accepts:
        raise UsageError(f"run {run_id} waits for one of: {', '.join(sorted(accepts))} (got {action!r})")
    return decision


def _config(run_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": run_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable, "recursion_limit": 10_000}


def _known_nodes(graph: StateGraph, names: Sequence[str]) -> list[str]:
    for name in names:
        if name not in graph.nodes:
            raise ConfigError(f"unknown node {name!r} (this graph's nodes: {', '.join(graph.nodes)})")
    return list(names)


def _emit_token(chunk: Any, on_token: TokenHandler | None) -> None:
    message, metadata = chunk
    text = getattr(message, "text", "")
    if on_token and isinstance(text, str) and text:
        on_token(str(metadata.get("graphswarm_agent", "")), str(metadata.get("langgraph_node", "")), text)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id() -> str:
    """A fresh random run id, as `Runner.start` makes when it is given none."""
    return uuid.uuid4().hex[:12]


def run_swarm(swarm: SwarmSpec | StateGraph, objective: str, *, db: str | None = None, **kwargs: Any) -> RunResult:
    """Synchronous `Runner.start` for scripts: opens the database, runs, closes."""

    async def main() -> RunResult:
        async with Runner(db) as runner:
            return await runner.start(swarm, objective, **kwargs)

    return asyncio.run(main())


def resume_swarm(run_id: str, *, db: str | None = None, **kwargs: Any) -> RunResult:
    """Synchronous `Runner.resume`."""

    async def main() -> RunResult:
        async with Runner(db) as runner:
            return await runner.resume(run_id, **kwargs)

    return asyncio.run(main())
