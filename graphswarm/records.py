"""Run records: what graphswarm keeps about a run besides its graph state.

A run is a LangGraph thread: its id is the thread id, its state lives in the
checkpointer. Beside it, a `RunRecord` in the LangGraph store says what was run, with
which agents and budget, and how it ended. `RunRecords` reads and writes them.

A record holds nothing the checkpoints hold (the calls are in the state's ledger; only
those of nodes that never finished, which no checkpoint has, are kept here), and its
swarm's agents are stored without their default fields: a thousand-agent swarm's record
is its agents' names, not a thousand copies of the defaults.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from enum import StrEnum
from typing import Any

from langgraph.store.base import BaseStore
from pydantic import BaseModel, Field

from graphswarm.agents import Agent
from graphswarm.architectures.base import Role
from graphswarm.errors import ConfigError, UnknownRunError
from graphswarm.leases import process_alive

__all__ = ["RunRecord", "RunRecords", "RunStatus", "checked_run_id", "new_run_id"]

NAMESPACE = ("graphswarm", "runs")
"""Where run records live in the LangGraph store."""
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_RUNS_LISTED = 10_000


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
    temporal: dict[str, Any] | None = None
    """Where a run on Temporal runs (`TemporalSettings`: address, namespace, task queue);
    None for a run executed in-process. Its state is the workflow's."""

    @property
    def effective_status(self) -> RunStatus:
        """`running` runs whose process is gone (killed, crashed) count as interrupted."""
        if self.status is RunStatus.RUNNING and self.host == socket.gethostname() and not process_alive(self.pid):
            return RunStatus.INTERRUPTED
        return self.status

    @property
    def agent_names(self) -> list[str]:
        roles = [self.spec[role] for role in Role if self.spec.get(role)]
        return [a["name"] for a in [*roles, *self.spec.get("agents", [])]]


class RunRecords:
    """The run records of one database, kept in its LangGraph store."""

    def __init__(self, store: BaseStore, db_label: str) -> None:
        self._store = store
        self._db_label = db_label

    async def load(self, run_id: str) -> RunRecord | None:
        item = await self._store.aget(NAMESPACE, run_id)
        return _loaded(item.value) if item else None

    async def get(self, run_id: str) -> RunRecord:
        """The run's record; `UnknownRunError` when there is no such run."""
        record = await self.load(run_id)
        if record is None:
            raise UnknownRunError(run_id, self._db_label)
        return record

    async def save(self, record: RunRecord) -> None:
        record.updated_at = time.time()
        await self._store.aput(NAMESPACE, record.run_id, _stored(record), index=False)

    async def list(self) -> list[RunRecord]:
        """Every run, newest first."""
        items = await self._store.asearch(NAMESPACE, limit=_MAX_RUNS_LISTED)
        records = [_loaded(item.value) for item in items]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    async def free_id(self, run_id: str | None) -> str:
        """`run_id` checked to be well-formed and unused, or a fresh one."""
        run_id = checked_run_id(run_id)
        if await self.load(run_id) is not None:
            raise ConfigError(f"run {run_id!r} already exists: resume it with graphswarm resume {run_id}")
        return run_id


def _agent_defaults() -> dict[str, Any]:
    """The fields of a recorded agent (`SwarmSpec.to_record`) that have a default, with it."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in Agent.model_fields.items()
        if not field.is_required() and name != "tools"
    }


def _stored(record: RunRecord) -> dict[str, Any]:
    """The record as the store keeps it: its spec's agents without their default fields."""
    data = record.model_dump(mode="json")
    spec = data.get("spec") or {}
    if isinstance(spec.get("agents"), list):
        defaults = _agent_defaults()
        spec["agents"] = [
            {k: v for k, v in agent.items() if k not in defaults or v != defaults[k]}
            if isinstance(agent, dict)
            else agent
            for agent in spec["agents"]
        ]
    return data


def _loaded(value: dict[str, Any]) -> RunRecord:
    """A record read from the store, its agents' default fields put back."""
    spec = value.get("spec") or {}
    if isinstance(spec.get("agents"), list):
        defaults = _agent_defaults()
        agents = [_expanded(agent, defaults) if isinstance(agent, dict) else agent for agent in spec["agents"]]
        value = {**value, "spec": {**spec, "agents": agents}}
    return RunRecord.model_validate(value)


def _expanded(agent: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    # In the order `SwarmSpec.to_record` writes an agent: its fields, then "model".
    order = [name for name in Agent.model_fields if name not in ("tools", "model")] + ["model"]
    whole = {name: agent.get(name, defaults.get(name)) for name in order if name in agent or name in defaults}
    return {**whole, **agent}


def new_run_id() -> str:
    """A fresh random run id, as `Runner.start` makes when it is given none."""
    return uuid.uuid4().hex[:12]


def checked_run_id(run_id: str | None) -> str:
    """`run_id` checked to be well-formed, or a fresh one."""
    if run_id is not None and not _RUN_ID.match(run_id):
        raise ConfigError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return run_id or new_run_id()
