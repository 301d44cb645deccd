"""Orchestrator: one orchestrator and a pool of N agents working through tasks.

    START -> plan -> pool -----------> check --> END
                     ^  ^  |              |
                     |  |  +--> pause --+ |  (resumed)
                     |  +---------------+ |
                     +--------------------+  (follow-up tasks)

`pool` runs the tasks continuously: an agent that finishes a task gets the next one at
once (the least-loaded free agent that is up, at most `concurrency` tasks in flight), a
failed task goes back to be reassigned to another agent, and an agent that keeps
failing is marked down. There are no waves: LangGraph runs the `Send`s of one step
together and starts the next step only when the slowest has finished, so a pool made
of steps waits for its stragglers; this one node keeps every agent busy instead.

Every agent call is a LangGraph `@task` (the functional API) called from inside the
node: its result is saved in the checkpoint as soon as it returns, so after a crash
(kill -9) the node runs again and each finished call returns its saved result without
reaching a model. A called task is identified by its position among the node's calls,
not by its input, and a continuous pool does not dispatch in the same order twice, so
every result says which task, agent and attempt it was (`Attempt`), and a node that
runs again first replays what was saved (`_Calls.replay`) before it calls any model.

`pause` runs when the pool stopped with tasks left: every agent down, or a budget cap
reached (the calls in flight finish first). Resuming continues the pool.
"""

from __future__ import annotations

import asyncio
import operator
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, NotRequired, cast

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.func import task as durable_task
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents, make_workers
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import (
    UNPLANNED_TASK,
    ObjectiveInput,
    Plan,
    PlannedTask,
    reply_or_none,
    task_messages,
)
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.errors import ConfigError
from graphswarm.graph_nodes import add_node
from graphswarm.nodes import (
    Crew,
    Pause,
    ask,
    clip,
    governor_of,
    is_transient,
    memory_of,
    model_retry_policy,
    prompt,
)
from graphswarm.state import CallRecord, StopReason, SwarmState, merge_by_id
from graphswarm.view import Block, Cell, Run, Table, Text, View, shorten, tasks_line

__all__ = [
    "create_orchestrator",
    "OrchestratorOptions",
    "OrchestratorState",
    "PoolTask",
    "PoolTaskStatus",
    "AgentStats",
    "Attempt",
]

DEFAULT_ORCHESTRATOR = Agent(name="orchestrator", role="orchestrator", strengths=["planning", "synthesis"])
RESULT_CLIP = 800
"""Characters of each result the orchestrator reads when checking."""
FAILURE_CLIP = 300
"""Characters of a failed attempt's error kept in state."""
RESULTS = ("work",)
"""The notes recalled from shared memory, by the agents and the final check: the agents'
results (posted by `work`; the tasks are posted as they are planned)."""
RETRY = "retry"
"""The decision that resumes a paused pool."""
WORK = "work"
"""The name of the durable call that runs one task on one agent (and of its notes and
ledger lines)."""


class PoolTaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    """Failed on `max_task_attempts` agents: given up, and said so in the final check."""


class PoolTask(TypedDict):
    id: str
    round: int
    title: str
    description: str
    status: str
    agent: str
    """The agent doing it (or that did it, or failed it last)."""
    seq: int
    """The dispatch number of its last assignment (the pool's n-th call in the run)."""
    attempts: int
    failed_agents: list[str]
    result: str


class Attempt(TypedDict):
    """What one agent did with one task: the result of one durable call, which says
    itself whose it is (a call replayed after a crash is matched by what it says)."""

    task_id: str
    agent: str
    attempt: int
    """The task's n-th assignment (1 = its first)."""
    seq: int
    """The pool's dispatch number: its n-th call in the run (the order calls started in;
    replaces the waves of a pool made of supersteps)."""
    ok: bool
    output: str
    error: str
    latency_s: float


class AgentStats(TypedDict):
    assigned: int
    tasks: int
    """Tasks finished."""
    failures: int
    consecutive_failures: int
    latency_s: float
    """Time spent on tasks, failed ones included."""
    up: bool


class OrchestratorState(SwarmState):
    round: int
    tasks: Annotated[list[PoolTask], merge_by_id]
    """Every task, in plan order (`merge_by_id`: nodes write only the tasks they change)."""
    attempts: Annotated[list[Attempt], operator.add]
    agent_stats: dict[str, AgentStats]
    pause: NotRequired[Pause | None]
    """Why the pool stopped with tasks left, when a budget cap stopped it."""


class OrchestratorOptions(SwarmOptions):
    """The orchestrator's options (`graphswarm options orchestrator`); the pool's size
    is its number of agents (`--nodes N`), not an option."""

    model_config = ConfigDict(extra="forbid", title="orchestrator")

    concurrency: int | None = Field(
        None, ge=1, le=10_000, description="tasks in flight at once (default: one per agent)"
    )
    max_tasks: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="tasks the orchestrator may create per round (default: twice the pool, at least 10)",
    )
    max_rounds: int = Field(2, ge=1, le=50, description="check rounds; a round may add follow-up tasks")
    max_failures: int = Field(2, ge=1, le=1000, description="failures in a row after which an agent is marked down")
    max_attempts: int = Field(
        2, ge=1, le=20, description="tries of one model call on one agent before the task goes to another agent"
    )
    max_task_attempts: int = Field(3, ge=1, le=1000, description="agents a task is tried on before it is given up")
    task_timeout: float | None = Field(
        None, gt=0, description="seconds an agent may spend on a task before it counts as failed"
    )


class Check(BaseModel):
    answer: str = Field(description="the complete final answer to the objective, from the results")
    follow_up_tasks: list[PlannedTask] = Field(default_factory=list, description="essential work still missing")


def create_orchestrator(
    agents: Sequence[Agent] | int,
    *,
    leader: Agent | None = None,
    model: Any = None,
    base_url: str | None = None,
    options: OrchestratorOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[OrchestratorState, SwarmContext, ObjectiveInput, OrchestratorState]:
    """Build an orchestrator over a pool of agents.

    Example:
        >>> graph = create_orchestrator(40, model="gpt-4o-mini")  # doctest: +SKIP

    Args:
        agents: the pool: agents, or a number of generic agents to make.
        leader: the orchestrator, which plans, checks and consolidates (a default one when omitted).
        model: the model of every agent that names none (see `resolve_model`).
        base_url: an OpenAI-compatible server for model names given as strings.
        options: an `OrchestratorOptions`, or its fields as keyword arguments
            (`concurrency=10, max_failures=2, task_timeout=120`); `max_attempts` counts
            tries of one model call on transient errors.
    """
    opts = OrchestratorOptions.check(options, **kwargs)
    if isinstance(agents, int):
        if isinstance(agents, bool) or agents < 1:
            raise ConfigError(f"the pool needs at least 1 agent (nodes), got {agents}")
        agents = make_workers(agents)
    agents = check_agents(agents)
    leader = leader or DEFAULT_ORCHESTRATOR
    check_agents([leader, *agents])

    crew = Crew([leader, *agents], model=model, base_url=base_url)
    pool = _Pool(
        orchestrator=leader.name,
        agents=[a.name for a in agents],
        concurrency=len(agents) if opts.concurrency is None else opts.concurrency,
        max_tasks=max(10, 2 * len(agents)) if opts.max_tasks is None else opts.max_tasks,
        max_rounds=opts.max_rounds,
        max_failures=opts.max_failures,
        max_attempts=opts.max_attempts,
        max_task_attempts=opts.max_task_attempts,
        task_timeout=opts.task_timeout,
    )
    graph = StateGraph(OrchestratorState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "plan", partial(plan, crew=crew, pool=pool), retry_policy=model_retry_policy())
    add_node(graph, "pool", partial(run_pool, crew=crew, pool=pool))
    add_node(graph, "pause", partial(pause, pool=pool))
    add_node(graph, "check", partial(check, crew=crew, pool=pool), retry_policy=model_retry_policy())
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "pool")
    graph.add_conditional_edges("pool", after_pool, ["pause", "check"])
    graph.add_edge("pause", "pool")
    graph.add_conditional_edges("check", after_check, ["pool", END])
    return graph


@dataclass(frozen=True)
class _Pool:
    """The static shape of one pool, bound into its nodes."""

    orchestrator: str
    agents: list[str]
    concurrency: int
    max_tasks: int
    max_rounds: int
    max_failures: int
    max_attempts: int
    max_task_attempts: int
    task_timeout: float | None


async def plan(
    state: OrchestratorState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, pool: _Pool
) -> dict[str, Any]:
    system = prompt("orchestrator_plan").format(
        orchestrator=pool.orchestrator, agents=len(pool.agents), max_tasks=pool.max_tasks
    )
    messages = [SystemMessage(system), HumanMessage(f"Objective: {state['objective']}")]
    planned, calls = await reply_or_none(
        ask(crew[pool.orchestrator], messages, node="plan", runtime=runtime, config=config, schema=Plan)
    )
    planned_tasks = planned.tasks[: pool.max_tasks] if planned else [PlannedTask(title=UNPLANNED_TASK)]
    tasks = _new_tasks(planned_tasks, round_=1, start=1)
    await _post_tasks(tasks, pool, runtime)
    stats: dict[str, AgentStats] = {
        name: {"assigned": 0, "tasks": 0, "failures": 0, "consecutive_failures": 0, "latency_s": 0.0, "up": True}
        for name in pool.agents
    }
    return {"round": 1, "tasks": tasks, "agent_stats": stats, "calls": calls}


# -- the pool -----------------------------------------------------------------------


@dataclass
class _Dispatch:
    """A call in flight: which task, on which agent, as which attempt."""

    task_id: str
    agent: str
    attempt: int
    seq: int


@dataclass
class _Scheduler:
    """The pool's bookkeeping while the node runs: tasks, agents, what is in flight."""

    pool: _Pool
    tasks: dict[str, PoolTask]
    stats: dict[str, AgentStats]
    seq: int = 0
    running: dict[str, _Dispatch] = field(default_factory=dict)
    """The call in flight of each busy agent."""
    changed: set[str] = field(default_factory=set)
    """The ids of the tasks this node changed (all the update carries)."""

    @classmethod
    def of(cls, state: OrchestratorState, pool: _Pool) -> _Scheduler:
        tasks = {t["id"]: PoolTask(**{**t, "failed_agents": list(t["failed_agents"])}) for t in state["tasks"]}
        stats = {name: AgentStats(**s) for name, s in state["agent_stats"].items()}
        # A task left running by a node that never finished is run again.
        for t in tasks.values():
            if t["status"] == PoolTaskStatus.RUNNING:
                t["status"] = PoolTaskStatus.PENDING.value
        return cls(pool, tasks, stats, seq=max((t["seq"] for t in tasks.values()), default=0))

    def pending(self) -> list[PoolTask]:
        return [t for t in self.tasks.values() if t["status"] == PoolTaskStatus.PENDING]

    def assign(self) -> list[_Dispatch]:
        """Start pending tasks (in plan order) on the least-loaded free agents that are up,
        up to `concurrency` in flight; a task waits for an agent it has not failed on, while
        one is up."""
        order = {name: i for i, name in enumerate(self.pool.agents)}
        free = [n for n in self.pool.agents if self.stats[n]["up"] and n not in self.running]
        started: list[_Dispatch] = []
        for t in self.pending():
            if not free or len(self.running) >= self.pool.concurrency:
                break
            fresh = self._candidates(t, free)
            if not fresh:
                continue
            agent = min(fresh, key=lambda n: (self.stats[n]["assigned"], order[n]))
            free.remove(agent)
            started.append(self._start(t, agent))
        return started

    def _candidates(self, t: PoolTask, free: list[str]) -> list[str]:
        """The free agents `t` may go to now: while an agent that is up would be better (one
        it has not failed on; for a task that failed, one not failing itself), only those,
        so the task waits for one (an agent that fails fast is free first: without this,
        failing agents would pass failed tasks among themselves until they are given up)."""
        stats, failed = self.stats, t["failed_agents"]
        preferences = [lambda n: n not in failed, lambda n: True]
        if failed:
            preferences.insert(0, lambda n: n not in failed and stats[n]["consecutive_failures"] == 0)
        for better in preferences:
            if any(s["up"] and better(n) for n, s in stats.items()):
                return [n for n in free if better(n)]
        return []

    def _start(self, t: PoolTask, agent: str) -> _Dispatch:
        self.seq += 1
        self.stats[agent]["assigned"] += 1
        t.update(
            {"status": PoolTaskStatus.RUNNING.value, "agent": agent, "seq": self.seq, "attempts": t["attempts"] + 1}
        )
        self.changed.add(t["id"])
        dispatch = _Dispatch(t["id"], agent, t["attempts"], self.seq)
        self.running[agent] = dispatch
        return dispatch

    def release(self, dispatch: _Dispatch) -> None:
        """Take back a dispatch that was not carried out: its task is pending again."""
        self.running.pop(dispatch.agent, None)
        t = self.tasks[dispatch.task_id]
        if t["status"] == PoolTaskStatus.RUNNING and t["attempts"] == dispatch.attempt and t["agent"] == dispatch.agent:
            self.stats[dispatch.agent]["assigned"] -= 1
            t.update({"status": PoolTaskStatus.PENDING.value, "attempts": t["attempts"] - 1})

    def finish(self, dispatch: _Dispatch, attempt: Attempt) -> bool:
        """Fold the outcome of a call in flight; False when it was not this dispatch's (a
        result saved by an earlier run of the node, replayed at this call's position):
        the dispatch is taken back and the saved attempt folded instead."""
        if (attempt["task_id"], attempt["agent"], attempt["attempt"]) == (
            dispatch.task_id,
            dispatch.agent,
            dispatch.attempt,
        ):
            self.running.pop(dispatch.agent, None)
            return self._fold(attempt)
        self.release(dispatch)
        return self.replayed(attempt)

    def replayed(self, attempt: Attempt) -> bool:
        """Fold an attempt saved by an earlier run of this node, as it was then: the agent
        did that task. False (and nothing changes) if the task has moved on since."""
        t = self.tasks.get(attempt["task_id"])
        if t is None or t["status"] != PoolTaskStatus.PENDING or attempt["agent"] not in self.stats:
            return False
        self.stats[attempt["agent"]]["assigned"] += 1
        self.seq = max(self.seq, attempt["seq"])
        t.update(
            {
                "status": PoolTaskStatus.RUNNING.value,
                "agent": attempt["agent"],
                "seq": attempt["seq"],
                "attempts": attempt["attempt"],
            }
        )
        self.changed.add(t["id"])
        return self._fold(attempt)

    def _fold(self, attempt: Attempt) -> bool:
        t, agent = self.tasks[attempt["task_id"]], self.stats[attempt["agent"]]
        # Only the outcome of the assignment in force counts: a task is never done twice.
        if (t["status"], t["agent"], t["attempts"]) != (PoolTaskStatus.RUNNING, attempt["agent"], attempt["attempt"]):
            return False
        agent["latency_s"] = round(agent["latency_s"] + attempt["latency_s"], 4)
        if attempt["ok"]:
            t.update({"status": PoolTaskStatus.DONE.value, "result": attempt["output"]})
            agent["tasks"] += 1
            agent["consecutive_failures"] = 0
            return True
        agent["failures"] += 1
        agent["consecutive_failures"] += 1
        if agent["consecutive_failures"] >= self.pool.max_failures:
            agent["up"] = False
        t["failed_agents"].append(attempt["agent"])
        given_up = t["attempts"] >= self.pool.max_task_attempts
        status = PoolTaskStatus.FAILED if given_up else PoolTaskStatus.PENDING
        t.update({"status": status.value, "result": attempt["error"]})
        return True


class _Work(TypedDict):
    """What one durable call returns: a probe's token, or an attempt with its ledger
    lines, or the pause a budget cap called for (the task was not done)."""

    probe: NotRequired[str]
    attempt: NotRequired[Attempt]
    records: NotRequired[list[CallRecord]]
    pause: NotRequired[Pause]


class _Calls:
    """The pool's agent calls, each a LangGraph `@task` called from the pool node, so
    that its result is saved in the checkpoint as soon as it returns.

    A called task is known by its position among the node's calls. When the node runs
    again (after a crash, or a retry), the calls at the positions saved before return
    their saved results without running, whatever they are asked now; the others run.
    So a node that runs again first `replay`s: it calls no-op probes until it is past
    every saved position, and folds the saved attempts, before it starts any task.
    Outside a LangGraph run that can call tasks (a node run alone, as a Temporal
    activity: there the activity is what Temporal saves), the calls run directly.
    """

    def __init__(self, objective: str, crew: Crew, pool: _Pool, runtime: Runtime[SwarmContext], config: RunnableConfig):
        self.objective, self.crew, self.pool, self.runtime, self.config = objective, crew, pool, runtime, config
        self.token = uuid.uuid4().hex
        """This run of the node's probe token: a probe answering another one was saved before."""
        self.durable = True
        self._call: Any = durable_task(name=WORK)(self._run)  # type: ignore[arg-type]  # a bound method

    def start(self, dispatch: _Dispatch | None = None, task: PoolTask | None = None) -> asyncio.Future[_Work]:
        """Start one call: the dispatch's task on its agent, or a probe (no dispatch)."""
        request: dict[str, Any] = {"probe": self.token}
        if dispatch is not None and task is not None:
            request = {
                "task": {"id": task["id"], "title": task["title"], "description": task["description"]},
                "agent": dispatch.agent,
                "attempt": dispatch.attempt,
                "seq": dispatch.seq,
            }
        if self.durable:
            try:
                future = self._call(request)
                return cast(
                    "asyncio.Future[_Work]",
                    future if isinstance(future, asyncio.Future) else asyncio.wrap_future(future),
                )
            except (KeyError, RuntimeError):  # not inside a LangGraph run that calls tasks
                self.durable = False
        return asyncio.ensure_future(self._run(request))

    async def replay(self) -> list[_Work]:
        """What an earlier run of this node saved, in the order its calls were made."""
        first = await self.start()
        if not self.durable or first.get("probe") == self.token:
            return []  # the node's first run: nothing was saved
        # Positions not saved are the calls that were in flight when the node stopped (at
        # most `concurrency`, and the saves queued behind them): past twice that many
        # fresh probes in a row, nothing saved is left.
        batch, fresh, saved = self.pool.concurrency + 1, 0, [first]
        while fresh < 2 * batch:
            for work in await asyncio.gather(*(self.start() for _ in range(batch))):
                fresh = fresh + 1 if work.get("probe") == self.token else 0
                saved.append(work)
        return [work for work in saved if "attempt" in work]

    async def _run(self, request: dict[str, Any]) -> _Work:
        """The body of one call: a probe answers at once; a task is tried up to
        `max_attempts` times on transient errors, each try within `task_timeout`.

        (Retried here rather than by a `RetryPolicy`, so that a call that fails still
        returns an attempt saying whose it was: a saved exception would not.)
        """
        if "probe" in request:
            return {"probe": request["probe"]}
        pool, task, member = self.pool, request["task"], self.crew[request["agent"]]
        messages = task_messages("orchestrator_work", member.agent, self.objective, task)
        retry = model_retry_policy(pool.max_attempts)
        started = time.perf_counter()
        output, error, records = "", "", cast("list[CallRecord]", [])
        for n in range(1, pool.max_attempts + 1):
            asked = ask(
                member, messages, node=WORK, runtime=self.runtime, config=self.config, recall=RESULTS, post=WORK
            )
            try:
                output, records = await (asyncio.wait_for(asked, pool.task_timeout) if pool.task_timeout else asked)
                error = ""
                break
            except GraphInterrupt as stop:  # a budget cap: the pool stops, the run pauses
                return {"pause": _pause_value(stop, member.name)}
            except Exception as exc:
                error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
                if not is_transient(exc) or n == pool.max_attempts:
                    break
                interval = min(retry.max_interval, retry.initial_interval * retry.backoff_factor ** (n - 1))
                await asyncio.sleep(interval + (random.uniform(0, 1) if retry.jitter else 0))
        ok = not error
        attempt: Attempt = {
            "task_id": task["id"],
            "agent": member.name,
            "attempt": request["attempt"],
            "seq": request["seq"],
            "ok": ok,
            "output": output if ok else "",
            "error": "" if ok else clip(error, FAILURE_CLIP),
            "latency_s": round(time.perf_counter() - started, 4),
        }
        return {"attempt": attempt, "records": records if ok else []}


async def run_pool(
    state: OrchestratorState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, pool: _Pool
) -> dict[str, Any]:
    """Run the pending tasks until none is left that an agent can take, or a budget cap
    is reached (then the calls in flight finish and the run pauses in `pause`)."""
    scheduler = _Scheduler.of(state, pool)
    calls = _Calls(state["objective"], crew, pool, runtime, config)
    governor = governor_of(runtime)
    attempts: list[Attempt] = []
    records: list[CallRecord] = []
    # Whatever a call returns is the ledger's: it reached a model (now, or before a crash).
    for work in await calls.replay():  # a saved pause is not replayed: this governor decides
        records += work.get("records", [])
        if scheduler.replayed(work["attempt"]):
            attempts.append(work["attempt"])
    stopped: Pause | None = None
    in_flight = 0
    finished: asyncio.Queue[tuple[_Dispatch, asyncio.Future[_Work]]] = asyncio.Queue()
    while True:
        if stopped is None and (cap := governor.exhausted()) is not None:
            stopped = _budget_pause(cap.reason, cap.detail)
        if stopped is None:
            for dispatch in scheduler.assign():
                future = calls.start(dispatch, scheduler.tasks[dispatch.task_id])
                future.add_done_callback(partial(_put, finished, dispatch))
                in_flight += 1
        if not in_flight:
            break
        done = [await finished.get()]
        while not finished.empty():
            done.append(finished.get_nowait())
        in_flight -= len(done)
        # In the order they were started: an agent's calls fold in the order it made them.
        for dispatch, future in sorted(done, key=lambda d: d[0].seq):
            work = future.result()
            records += work.get("records", [])
            if "attempt" in work:
                if scheduler.finish(dispatch, work["attempt"]):
                    attempts.append(work["attempt"])
                continue
            scheduler.release(dispatch)
            if "pause" in work and stopped is None:
                stopped = work["pause"]
    return {
        "tasks": [scheduler.tasks[i] for i in scheduler.tasks if i in scheduler.changed],
        "agent_stats": scheduler.stats,
        "attempts": attempts,
        "calls": records,
        "pause": stopped,
    }


def _put(
    finished: asyncio.Queue[tuple[_Dispatch, asyncio.Future[_Work]]], dispatch: _Dispatch, future: asyncio.Future[_Work]
) -> None:
    finished.put_nowait((dispatch, future))


def after_pool(state: OrchestratorState) -> str:
    pending = any(t["status"] == PoolTaskStatus.PENDING for t in state["tasks"])
    return "pause" if pending else "check"


def pause(state: OrchestratorState, *, pool: _Pool) -> dict[str, Any]:
    """The pool stopped with tasks left: pause the run; resuming runs the pool again
    (under the caps given then, or with every agent up again)."""
    stopped = state.get("pause")
    if stopped:
        # A plain resume answers "retry": the pool runs again under the caps given then (and
        # stops here again if one is still reached).
        interrupt(Pause(**{**stopped, "accepts": [RETRY], "resume": {"action": RETRY}}))
        return {"pause": None}
    pending = [t for t in state["tasks"] if t["status"] == PoolTaskStatus.PENDING]
    down: Pause = {
        "stop_reason": StopReason.WORKER_FAILED.value,
        "detail": f"all {len(pool.agents)} agents are down with {len(pending)} tasks left; resume to try them again",
        "agent": "",
        "node": "pool",
        "accepts": [RETRY],
        "resume": {"action": RETRY},
    }
    interrupt(down)
    stats = {
        name: AgentStats(**{**s, "up": True, "consecutive_failures": 0}) for name, s in state["agent_stats"].items()
    }
    return {"agent_stats": stats}


def _budget_pause(reason: StopReason, detail: str, agent: str = "") -> Pause:
    return {"stop_reason": reason.value, "detail": detail, "agent": agent, "node": "pool"}


def _pause_value(stop: GraphInterrupt, agent: str) -> Pause:
    """The pause an agent's call asked for (`ask` pauses when a cap refuses a request)."""
    interrupts = stop.args[0] if stop.args else ()
    value = getattr(interrupts[0], "value", None) if interrupts else None
    if isinstance(value, dict) and "stop_reason" in value:
        return Pause(**value)  # type: ignore[typeddict-item]
    return _budget_pause(StopReason.CALL_CAP, str(value), agent)


async def check(
    state: OrchestratorState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, pool: _Pool
) -> dict[str, Any]:
    """The orchestrator checks the results, consolidates them, and may add follow-up tasks."""
    round_ = state.get("round", 1)
    sections = []
    for task in state["tasks"]:
        if task["status"] == PoolTaskStatus.DONE:
            sections.append(f"### {task['title']} ({task['agent']})\n{clip(task['result'], RESULT_CLIP)}")
        else:
            sections.append(f"### {task['title']}\n(failed on {len(task['failed_agents'])} agents: {task['result']})")
    messages = [
        SystemMessage(prompt("orchestrator_check").format(orchestrator=pool.orchestrator, max_tasks=pool.max_tasks)),
        HumanMessage(f"Objective: {state['objective']}\n\nResults:\n\n" + "\n\n".join(sections)),
    ]
    verdict, calls = await reply_or_none(ask(
        crew[pool.orchestrator], messages, node="check", runtime=runtime, config=config, schema=Check, recall=RESULTS,
    ))  # fmt: skip
    if verdict is None:  # the results, as they are (not clipped), are the answer
        results = [
            f"### {t['title']} ({t['agent']})\n{t['result']}"
            for t in state["tasks"]
            if t["status"] == PoolTaskStatus.DONE
        ]
        return {"final_answer": "\n\n".join(results), "calls": calls, "stop_reason": StopReason.COMPLETED.value}
    update: dict[str, Any] = {"final_answer": verdict.answer, "calls": calls}
    follow_ups = [t for t in verdict.follow_up_tasks if t.title.strip()][: pool.max_tasks]
    if follow_ups and round_ < pool.max_rounds:
        new = _new_tasks(follow_ups, round_=round_ + 1, start=len(state["tasks"]) + 1)
        await _post_tasks(new, pool, runtime)
        update.update(round=round_ + 1, tasks=new)
    else:
        update["stop_reason"] = (StopReason.MAX_ROUNDS if follow_ups else StopReason.COMPLETED).value
    return update


def after_check(state: OrchestratorState) -> str:
    return END if state.get("stop_reason") else "pool"


def _new_tasks(planned: Sequence[PlannedTask], *, round_: int, start: int) -> list[PoolTask]:
    return [
        {
            "id": f"t{start + i}",
            "round": round_,
            "title": item.title.strip() or f"task {start + i}",
            "description": item.description.strip(),
            "status": PoolTaskStatus.PENDING.value,
            "agent": "",
            "seq": 0,
            "attempts": 0,
            "failed_agents": [],
            "result": "",
        }
        for i, item in enumerate(planned)
    ]


async def _post_tasks(tasks: list[PoolTask], pool: _Pool, runtime: Runtime[SwarmContext]) -> None:
    """Tasks go into the shared memory too, where agents find what their teammates are doing."""
    memory = memory_of(runtime)
    if memory is not None and tasks:
        texts = [f"Task {t['id']}: {t['title']}. {t['description']}".strip() for t in tasks]
        await memory.apost_many(texts, agent=pool.orchestrator, kind="task")


def load_spread(stats: dict[str, AgentStats]) -> dict[str, float]:
    """Finished tasks per agent that is up: the least, the most, and the mean."""
    counts = [s["tasks"] for s in stats.values() if s["up"]] or [0]
    return {"min": min(counts), "max": max(counts), "mean": round(sum(counts) / len(counts), 2)}


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update: the plan, each task as it finishes (the
    pool's durable calls stream as `work` updates), and the pool's tally when it stops."""
    if node == "plan" and update.get("tasks"):
        tasks = update["tasks"]
        return tasks_line([(t["title"], "") for t in tasks if t["round"] == tasks[-1]["round"]])
    if node == WORK and update.get("attempt"):
        a = update["attempt"]
        return f"{a['task_id']} by {a['agent']} (call {a['seq']}): " + ("done" if a["ok"] else "failed: " + a["error"])
    if node == "pool" and "agent_stats" in update:
        stats = update["agent_stats"]
        finished = sum(s["tasks"] for s in stats.values())
        failures = sum(s["failures"] for s in stats.values())
        down = [n for n, s in stats.items() if not s["up"]]
        line = f"pool: {len(update.get('attempts', []))} calls, {finished} tasks done in all, {failures} failures"
        return line + (f", down: {', '.join(down)}" if down else "")
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """The tasks with who did them (and who failed them), and the pool's agents."""
    state = run.state
    stats = state.get("agent_stats")
    if not stats:
        return []
    tasks, agents = state.get("tasks", []), ["agent", "status", "assigned"]
    if brief:
        rows: list[list[Cell]] = [
            [t["id"], str(t["round"]), t["status"], t["agent"], str(t["attempts"]),
             shorten(", ".join(t["failed_agents"]), 30), shorten(t["title"], 50)]
            for t in tasks
        ]  # fmt: skip
        pool: list[list[Cell]] = [
            [name, "up" if s["up"] else "down", str(s["assigned"]), str(s["tasks"]), str(s["failures"]),
             f"{s['latency_s'] / max(1, s['tasks'] + s['failures']):.2f}"]
            for name, s in stats.items()
        ]  # fmt: skip
        spread = load_spread(stats)
        caption = f"tasks per agent that is up: min {spread['min']:g}, mean {spread['mean']:g}, max {spread['max']:g}"
        return [
            Table(["task", "round", "status", "agent", "attempts", "failed on", "title"], rows, title="tasks"),
            Table([*agents, "tasks", "failures", "mean latency s"], pool, title="agents", caption=caption),
        ]
    rows = [
        [t["id"], str(t["round"]), t["status"], t["agent"], str(t["attempts"]), ", ".join(t["failed_agents"]),
         Text(t["title"]), Text(t["result"])]
        for t in tasks
    ]  # fmt: skip
    pool = [
        [
            name,
            "up" if s["up"] else "down",
            str(s["assigned"]),
            str(s["tasks"]),
            str(s["failures"]),
            f"{s['latency_s']:.2f}",
        ]
        for name, s in stats.items()
    ]
    return [
        Table(["task", "round", "status", "agent", "attempts", "failed on", "title", "result"], rows, title="Tasks"),
        Table([*agents, "finished", "failures", "time s"], pool, title="Agents"),
    ]


ARCHITECTURE = Architecture(
    name="orchestrator",
    summary="an orchestrator spreads tasks over a pool of agents, reassigning the work of those that fail",
    build=create_orchestrator,
    options=OrchestratorOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.LEADER,),
    default_agents=8,
)
