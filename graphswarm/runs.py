"""Durable runs: `Runner` starts, resumes, reads and forks swarms kept in a database.

A run is a LangGraph thread: its id is the thread id, its state lives in the
checkpointer. LangGraph does the hard part: a resumed run continues from its last
checkpoint, and tasks that finished in an interrupted step are kept as pending writes
and not run again.

This module executes runs: it streams their updates, gives them a budget governor that
counts what earlier executions spent, and keeps the calls of nodes that never finished.
`Runner` is the one object users hold; behind it, one module per job:

- `graphswarm.records`: `RunRecord`, `RunStatus` and the record store;
- `graphswarm.inspection`: `RunResult`, `Step`; reading state, history and calls;
- `graphswarm.forks`: a new run from another run's checkpoint;
- `graphswarm.resources`: a run's memory, workspace and long objective.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, StreamMode

from graphswarm.budget import Budget, Governor
from graphswarm.checkpoint import Persistence, open_database
from graphswarm.edits import apply_edit, checked_edit
from graphswarm.errors import ConfigError, GraphswarmError, RunCancelledError, RunError, UsageError, first_line
from graphswarm.forks import fork_run
from graphswarm.graph_nodes import ANSWER_AUTHOR
from graphswarm.inspection import RunReader, RunResult, Step, python_graph_needed, run_config
from graphswarm.leases import RunOwnedError
from graphswarm.models import load_prices
from graphswarm.records import RunRecord, RunRecords, RunStatus, checked_run_id, new_run_id
from graphswarm.registry import SwarmSpec
from graphswarm.resources import RunResources
from graphswarm.state import StopReason

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from graphswarm.inspection import Compiled, Graph
    from graphswarm.objectives import ObjectiveSettings, PreparedObjective
    from graphswarm.temporal import TemporalSettings

__all__ = [
    "DEFAULT_MAX_AGENTS",
    "MAX_AGENTS_ENV",
    "RunFailedError",
    "RunOwnedError",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "Runner",
    "Step",
    "new_run_id",
    "resume_swarm",
    "run_swarm",
]

MAX_AGENTS_ENV = "GRAPHSWARM_MAX_AGENTS"
"""The environment variable that raises (or lowers) the most agents a swarm may have."""
DEFAULT_MAX_AGENTS = 5000
"""The most agents a swarm may have unless `GRAPHSWARM_MAX_AGENTS` says otherwise: a
swarm far larger takes gigabytes before its first model call."""

UpdateHandler = Callable[[str, dict[str, Any]], None]
"""Called with (node name, the node's state update) as each node finishes."""
TokenHandler = Callable[[str, str, str], None]
"""Called with (agent, node, text) for each piece of a model's answer as it streams."""


class RunFailedError(RunError):
    """A run stopped on an error; its state is saved and `resume` continues it."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        super().__init__(f"run {run_id} failed: {type(cause).__name__}: {first_line(cause)}")
        self.run_id = run_id
        self.cause = cause


@dataclass(frozen=True)
class _Open:
    """What a runner holds while its database is open."""

    persistence: Persistence
    records: RunRecords
    reading: RunReader


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
        embeddings: Embeddings | str | None = None,
        objectives: ObjectiveSettings | None = None,
        temporal: TemporalSettings | None = None,
    ) -> None:
        """`memory` gives every run a shared Chroma memory: True for the embedded one
        beside the database, "http://host:port" for a Chroma server, "memory" for an
        in-process one; each architecture says what its agents post there and recall.
        `embeddings` is any LangChain `Embeddings` or a name ("minilm", "openai").
        `objectives` (an `ObjectiveSettings`) says when an objective is too long for
        prompts: it is then saved with the run, chunked into the run's memory (embedded
        memory is switched on for it), and agents get a summary plus the relevant chunks.
        `temporal` (a `graphswarm.temporal.TemporalSettings`) executes new runs as Temporal
        workflows on the workers of its task queue (`graphswarm worker`); their records
        stay in `db`, so this runner lists, reads and resumes them like any other."""
        if temporal is not None and memory and not str(memory).startswith(("http://", "https://")):
            raise ConfigError(
                "on Temporal, shared memory must be a Chroma server (--memory http://host:port): "
                "workers on other machines cannot reach an embedded or in-process store"
            )
        if temporal is not None and embeddings is not None and not isinstance(embeddings, str):
            raise ConfigError("on Temporal, embeddings are given by name (minilm, openai...): workers build them")
        self._temporal = temporal
        self._db = db
        self._max_concurrency = max_concurrency
        self._resources = RunResources(db, memory=memory, embeddings=embeddings, objectives=objectives)
        self._database: AbstractAsyncContextManager[Persistence] | None = None
        self._opened: _Open | None = None

    async def __aenter__(self) -> Runner:
        self._database = open_database(self._db)
        persistence = await self._database.__aenter__()
        records = RunRecords(persistence.store, persistence.database.label)
        self._opened = _Open(persistence, records, RunReader(persistence))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._opened = None
        if self._database is not None:
            await self._database.__aexit__(*exc)

    @classmethod
    async def open(cls, db: str | None = None, **options: Any) -> Runner:
        """An open runner that stays open across notebook cells, until `close()`:

            runner = await Runner.open("memory")
            ...
            await runner.close()

        `options` are those of `Runner(...)`; elsewhere prefer `async with Runner(db) as runner:`.
        """
        return await cls(db, **options).__aenter__()

    async def close(self) -> None:
        """Close a runner opened with `Runner.open` (closing it twice does nothing)."""
        database, self._database = self._database, None
        self._opened = None
        if database is not None:
            await database.__aexit__(None, None, None)

    @property
    def db_label(self) -> str:
        return self._open.persistence.database.label

    @property
    def _open(self) -> _Open:
        if self._opened is None:
            raise RuntimeError("use Runner as an async context manager: async with Runner(db) as runner")
        return self._opened

    # -- running ------------------------------------------------------------------

    async def start(
        self,
        swarm: SwarmSpec | Graph,
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
        run_id = checked_run_id(run_id)
        if isinstance(swarm, SwarmSpec):
            check_swarm_size(len(swarm.members))
            swarm.check_models()
            if budget is not None and budget.max_cost is not None:
                swarm.check_prices()
            graph, spec, arch = swarm.build(), swarm.to_record(), swarm.architecture
        else:
            graph, spec, arch = swarm, {}, architecture or "custom"
        budget = budget or Budget()
        if self._temporal is not None and not isinstance(swarm, SwarmSpec):
            raise ConfigError("a run on Temporal is given as a SwarmSpec (workers build its graph), not a graph")
        record = RunRecord(
            run_id=run_id,
            architecture=arch,
            objective=objective,
            spec=spec,
            budget=budget.model_dump(exclude_none=True),
            memory=self._resources.memory_setting,
            pause_before=_known_nodes(graph, pause_before),
            pause_after=_known_nodes(graph, pause_after),
        )
        if self._temporal is not None:
            record.temporal = self._temporal.model_dump(mode="json")
            if not isinstance(swarm, SwarmSpec) or not swarm.recordable:
                raise ConfigError("a run on Temporal needs a swarm given as plain data (no model objects or functions)")
            if pause_before or pause_after:
                raise ConfigError("breakpoints are not supported on Temporal yet: run in-process to step through")
        async with self._open.persistence.leases.hold(run_id):
            await self._open.records.free_id(run_id)
            if record.temporal is not None:
                return await self._execute_on_temporal(record, on_update, objective=objective)
            prepared = self._resources.prepare_objective(record)
            graph_input = {"objective": prepared.prompt if prepared else objective}
            return await self._execute(record, graph, graph_input, budget, on_update, on_token, prepared)

    async def resume(
        self,
        run_id: str,
        *,
        graph: Graph | None = None,
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
        force: bool = False,
    ) -> RunResult:
        """Continue a run that failed, paused or was killed.

        Finished model calls are not made again. Pass a `budget` to raise the caps
        of a run that stopped on one; `updates` to edit its state first (applied as if
        `as_node` had written them); `decision` to answer a pause that asks a person
        (an approval); new breakpoints (an empty list clears them); and `graph` for
        runs started from a graph you built yourself.

        One process at a time executes a run: `RunOwnedError` when another one does.
        `force` takes the run over anyway, from a process that is gone but whose lease
        has not expired yet (one on another host, killed less than a minute ago).
        """
        await self.get(run_id)  # no such run: say so before taking its lease
        async with self._open.persistence.leases.hold(run_id, force=force):
            return await self._resume_owned(
                run_id,
                graph,
                budget,
                base_url,
                model,
                updates,
                as_node,
                decision,
                pause_before,
                pause_after,
                on_update,
                on_token,
            )

    async def _resume_owned(
        self,
        run_id: str,
        graph: Graph | None,
        budget: Budget | None,
        base_url: str | None,
        model: str | None,
        updates: dict[str, Any] | None,
        as_node: str | None,
        decision: Any,
        pause_before: Sequence[str] | None,
        pause_after: Sequence[str] | None,
        on_update: UpdateHandler | None,
        on_token: TokenHandler | None,
    ) -> RunResult:
        """`resume`, once this process owns the run (its record is read again: as the
        last owner left it)."""
        record = await self.get(run_id)
        if record.status is RunStatus.DONE:
            raise UsageError(f"run {run_id} is already done (see: graphswarm show {run_id})")
        if record.temporal is not None:
            if updates or graph is not None or pause_before or pause_after:
                raise UsageError(f"run {run_id} runs on Temporal: it resumes with a decision or a budget only")
            if budget is not None:
                record.budget = budget.model_dump(exclude_none=True)
            return await self._execute_on_temporal(record, on_update, decision=decision)
        if graph is None:
            graph = _graph_to_run(record, base_url=base_url, model=model)
        if pause_before is not None:
            record.pause_before = _known_nodes(graph, pause_before)
        if pause_after is not None:
            record.pause_after = _known_nodes(graph, pause_after)
        if as_node is not None:
            _known_nodes(graph, [as_node])
        budget = budget or Budget.model_validate(record.budget)
        record.budget = budget.model_dump(exclude_none=True)
        compiled = self._compile(graph, record)
        decision = _checked_decision(run_id, (await self._open.reading.result(record, compiled)).pauses, decision)
        if updates:
            as_node = await checked_edit(compiled, run_config(run_id), updates, as_node)
            await apply_edit(compiled, run_config(run_id), updates, as_node)
        graph_input: Command[Any] | None = Command(resume=decision) if decision is not None else None
        return await self._execute(record, graph, graph_input, budget, on_update, on_token)

    async def fork(
        self,
        run_id: str,
        checkpoint_id: str,
        *,
        new_run_id: str | None = None,
        updates: dict[str, Any] | None = None,
        as_node: str | None = None,
        graph: Graph | None = None,
    ) -> RunRecord:
        """A new run that starts where `run_id` was at `checkpoint_id`; the original is unchanged.

        The fork is paused: `resume` it to continue, with other agents or options if you
        pass another `graph`. `updates` edit its state first.
        """
        source = _checkpointed(await self.get(run_id))
        await self.state_at(run_id, checkpoint_id, graph=graph)  # says clearly when the checkpoint is unknown
        opened = self._open
        return await fork_run(
            opened.persistence,
            opened.records,
            source,
            checkpoint_id,
            new_run_id=new_run_id,
            updates=updates,
            as_node=as_node,
            graph=graph,
        )

    async def cancel(self, run_id: str) -> RunRecord:
        """Stop a run that is executing: a run on Temporal ends (its workflow is cancelled);
        a run in a process of this host is sent SIGTERM (it stops cleanly, saved, and can
        be resumed). `UsageError` when the run is not executing."""
        record = await self.get(run_id)
        if record.temporal is not None:
            from graphswarm.temporal import TemporalEngine

            await TemporalEngine.of(record).cancel(record)
            record.status, record.stop_reason = RunStatus.FAILED, "cancelled"
            await self._open.records.save(record)
            return record
        if record.effective_status is not RunStatus.RUNNING or record.host != socket.gethostname() or not record.pid:
            raise UsageError(f"run {run_id} is not executing on this host (status: {record.effective_status})")
        os.kill(record.pid, signal.SIGTERM)
        return record

    # -- reading ------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord:
        """The run's record (`UnknownRunError` when there is none)."""
        return await self._open.records.get(run_id)

    async def list(self) -> builtins.list[RunRecord]:
        """Every run's record, newest first."""
        return await self._open.records.list()

    async def result(self, run_id: str, *, graph: Graph | None = None) -> RunResult:
        """The run's record and its latest state."""
        record = await self.get(run_id)
        if record.temporal is not None:
            from graphswarm.temporal import TemporalEngine

            progress = await TemporalEngine.of(record).read(record)
            return RunResult(record, progress.state, pauses=progress.pauses)
        reading = self._open.reading
        return await reading.result(record, reading.state_reader(record, graph))

    async def state_at(self, run_id: str, checkpoint_id: str, *, graph: Graph | None = None) -> RunResult:
        """The run's state as it was at one of its checkpoints (see `history`)."""
        record = _checkpointed(await self.get(run_id))
        reading = self._open.reading
        return await reading.state_at(record, checkpoint_id, reading.state_reader(record, graph))

    async def history(self, run_id: str, *, graph: Graph | None = None) -> builtins.list[Step]:
        """Every checkpoint of the run, oldest first, with the model calls made in each step
        (for a run on Temporal: every node that finished, from the workflow's history)."""
        record = await self.get(run_id)
        if record.temporal is not None:
            from graphswarm.temporal import TemporalEngine

            return await TemporalEngine.of(record).steps(record)
        reading = self._open.reading
        return await reading.history(record, reading.state_reader(record, graph))

    async def checkpoint_sizes(self, run_id: str) -> dict[str, int]:
        """Bytes the database keeps for each of the run's checkpoints (by checkpoint id,
        oldest first): its row, the channel values stored with it and the writes pending
        on it. SQLite databases only (`UsageError` for the others)."""
        record = _checkpointed(await self.get(run_id))
        saver = self._open.persistence.checkpointer
        measure = getattr(saver, "astored_sizes", None)
        if measure is None:
            raise UsageError(f"checkpoint sizes are measured in SQLite databases only, not in {self.db_label}")
        sizes: dict[str, int] = await measure(record.run_id)
        return sizes

    # -- execution ----------------------------------------------------------------

    def _compile(self, graph: Graph, record: RunRecord) -> Compiled:
        return self._open.persistence.compile(
            graph, interrupt_before=record.pause_before, interrupt_after=record.pause_after
        )

    async def _execute(
        self,
        record: RunRecord,
        graph: Graph,
        graph_input: dict[str, Any] | Command[Any] | None,
        budget: Budget,
        on_update: UpdateHandler | None,
        on_token: TokenHandler | None = None,
        objective: PreparedObjective | None = None,
    ) -> RunResult:
        records, reading = self._open.records, self._open.reading
        compiled = self._compile(graph, record)
        config = run_config(record.run_id)
        if self._max_concurrency:
            config["max_concurrency"] = self._max_concurrency
        spent = await reading.spent_calls(record, compiled)
        governor = Governor(budget, spent=spent, elapsed_s=record.elapsed_s)
        context = await self._resources.context(record, governor, objective)
        # A finished task's writes are saved as soon as it returns (durability="sync"), unless
        # something holds up the event loop: loading prices at the first reply did, for long
        # enough that a kill then lost the calls finished meanwhile.
        load_prices()
        record.status, record.stop_reason, record.error = RunStatus.RUNNING, None, None
        record.pid, record.host = os.getpid(), socket.gethostname()
        await records.save(record)
        started = time.monotonic()
        try:
            modes: list[StreamMode] = ["updates", "messages"] if on_token else ["updates"]
            async for mode, chunk in compiled.astream(
                graph_input, config, context=context, stream_mode=modes, durability="sync"
            ):
                if mode == "messages":
                    _emit_token(chunk, on_token)
                elif on_update and isinstance(chunk, dict):
                    for node, update in chunk.items():
                        on_update(node, update if isinstance(update, dict) else {})
        except Exception as exc:
            raise _failed(record, exc) from exc
        except BaseException:
            record.status, record.stop_reason = RunStatus.INTERRUPTED, "cancelled"
            raise
        finally:
            record.elapsed_s += time.monotonic() - started
            await asyncio.shield(self._keep_unfinished_calls(record, compiled, governor))
        result = await reading.result(record, compiled)
        _conclude(record, result)
        await records.save(record)
        return result

    async def _execute_on_temporal(
        self,
        record: RunRecord,
        on_update: UpdateHandler | None,
        *,
        objective: str | None = None,
        decision: Any = None,
    ) -> RunResult:
        """Start (with `objective`) or continue (with `decision`) the run's workflow, and
        follow it until it ends or pauses; the record says how it went."""
        from graphswarm.temporal import TemporalEngine

        engine = TemporalEngine.of(record)
        record.status, record.stop_reason, record.error = RunStatus.RUNNING, None, None
        record.pid, record.host = os.getpid(), socket.gethostname()
        await self._open.records.save(record)
        started = time.monotonic()
        try:
            if objective is not None:
                await engine.start(record, objective, embeddings=self._resources.embeddings_name)
            else:
                await engine.resume(record, decision)
            progress = await engine.follow(record, on_update)
        except RunCancelledError:
            record.status, record.stop_reason = RunStatus.FAILED, "cancelled"
            raise
        except GraphswarmError:
            record.status = RunStatus.INTERRUPTED
            raise
        except Exception as exc:
            raise _failed(record, exc) from exc
        except BaseException:
            record.status, record.stop_reason = RunStatus.INTERRUPTED, "cancelled"
            raise
        finally:
            record.elapsed_s += time.monotonic() - started
            await asyncio.shield(self._open.records.save(record))
        result = RunResult(record, progress.state, pauses=progress.pauses)
        _conclude(record, result)
        await self._open.records.save(record)
        return result

    async def _keep_unfinished_calls(self, record: RunRecord, compiled: Compiled, governor: Governor) -> None:
        """Save the run record with the requests of this execution that no checkpoint holds."""
        saved = {c.get("id") for c in await self._open.reading.spent_calls(record, compiled)}
        record.unfinished_calls += [dict(c) for c in governor.records if c.get("id") not in saved]
        await self._open.records.save(record)


def _failed(record: RunRecord, exc: Exception) -> RunFailedError:
    """Say in the record that an execution failed, and why; the error to raise."""
    record.status, record.stop_reason = RunStatus.FAILED, StopReason.ERROR.value
    record.error = f"{type(exc).__name__}: {first_line(exc)}"[:500]
    return RunFailedError(record.run_id, exc)


def _conclude(record: RunRecord, result: RunResult) -> None:
    """Say in the record how an execution ended: paused (why), at a breakpoint, or done."""
    if result.pauses:
        record.status = RunStatus.INTERRUPTED
        record.stop_reason = str(result.pauses[0].get("stop_reason", "human"))
    elif result.next:
        record.status, record.stop_reason = RunStatus.INTERRUPTED, "breakpoint"
    else:
        record.status = RunStatus.DONE
        record.stop_reason = result.state.get("stop_reason") or "completed"


def _checkpointed(record: RunRecord) -> RunRecord:
    """`record`, if its run has checkpoints here (a run on Temporal has its history there)."""
    if record.temporal is not None:
        raise UsageError(
            f"run {record.run_id} ran on Temporal: it has no checkpoints to read or fork from "
            f"(its steps: graphswarm history {record.run_id})"
        )
    return record


def check_swarm_size(agents: int) -> None:
    """Refuse a swarm of more agents than `GRAPHSWARM_MAX_AGENTS` (default 5000)."""
    raw = os.environ.get(MAX_AGENTS_ENV, "").strip()
    try:
        limit = int(raw) if raw else DEFAULT_MAX_AGENTS
    except ValueError:
        raise ConfigError(f"{MAX_AGENTS_ENV} must be a whole number, got {raw!r}") from None
    if agents > limit:
        raise ConfigError(
            f"{agents} agents is over the limit of {limit} agents per swarm: "
            f"raise it with the environment variable {MAX_AGENTS_ENV}={agents}"
        )


def _graph_to_run(record: RunRecord, *, base_url: str | None = None, model: str | None = None) -> Graph:
    """The run's graph rebuilt from its record, with its models (another `model` or
    `base_url` if given), to resume it."""
    if not record.spec:
        raise python_graph_needed(record.run_id)
    if not record.spec.get("recordable", True):
        raise UsageError(
            f"run {record.run_id} used model instances or tools that a record cannot hold: "
            "resume it from Python with the same graph"
        )
    data = dict(record.spec)
    if base_url:
        data["base_url"] = base_url
    if model:
        data["model"] = model
    spec = SwarmSpec.from_record(data)
    spec.check_models()
    return spec.build()


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


def _known_nodes(graph: Graph, names: Sequence[str]) -> list[str]:
    for name in names:
        if name not in graph.nodes:
            raise ConfigError(f"unknown node {name!r} (this graph's nodes: {', '.join(graph.nodes)})")
    return list(names)


def _emit_token(chunk: Any, on_token: TokenHandler | None) -> None:
    message, metadata = chunk
    if getattr(message, "name", None) == ANSWER_AUTHOR:  # the final answer, already streamed as tokens
        return
    text = getattr(message, "text", "")
    if on_token and isinstance(text, str) and text:
        on_token(str(metadata.get("graphswarm_agent", "")), str(metadata.get("langgraph_node", "")), text)


def run_swarm(swarm: SwarmSpec | Graph, objective: str, *, db: str | None = None, **kwargs: Any) -> RunResult:
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
