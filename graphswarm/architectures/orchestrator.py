"""Orchestrator: one orchestrator and a pool of N agents working through tasks.

    START -> plan -> schedule --Send per assignment--> work (in parallel) --+
                       ^   |                                               |
                       |   +-------------------------------------(defer)---+
                       |   +--> check --+--> END
                       +----------------+  (follow-up tasks)

`schedule` is the pool's bookkeeping, run between waves of work: it folds the last
wave's outcomes into the task list and the per-agent statistics, puts failed tasks
back to be reassigned to another agent, marks agents that keep failing as down, and
gives pending tasks to the least-loaded agents that are up, at most `concurrency` at
once. Each task runs as its own `Send`, so tasks finished before a crash are kept by
the checkpointer and never run again.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents, make_workers
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import AgentInput, ObjectiveInput, Plan, PlannedTask, task_messages, worker_outcome
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.errors import ConfigError
from graphswarm.graph_nodes import add_node
from graphswarm.nodes import Crew, ask, clip, memory_of, model_retry_policy, prompt
from graphswarm.state import StopReason, SwarmState
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
RESULTS = ("work",)
"""The notes recalled from shared memory, by the agents and the final check: the agents'
results (posted by `work`; the tasks are posted as they are planned)."""


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
    wave: int
    """The wave it was last assigned in."""
    attempts: int
    failed_agents: list[str]
    result: str


class Attempt(TypedDict):
    """What one agent did with one task in one wave."""

    task_id: str
    agent: str
    wave: int
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
    wave: int
    tasks: list[PoolTask]
    """Every task (written whole by `plan`, `schedule` and `check`)."""
    attempts: Annotated[list[Attempt], operator.add]
    folded: int
    """How many `attempts` `schedule` has already folded into tasks and statistics."""
    agent_stats: dict[str, AgentStats]


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


class WorkInput(AgentInput):
    task: PoolTask


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
    concurrency = len(agents) if opts.concurrency is None else opts.concurrency
    max_tasks = max(10, 2 * len(agents)) if opts.max_tasks is None else opts.max_tasks
    max_attempts = opts.max_attempts

    crew = Crew([leader, *agents], model=model, base_url=base_url)
    pool = _Pool(
        orchestrator=leader.name,
        agents=[a.name for a in agents],
        concurrency=concurrency,
        max_tasks=max_tasks,
        max_rounds=opts.max_rounds,
        max_failures=opts.max_failures,
        max_attempts=max_attempts,
        max_task_attempts=opts.max_task_attempts,
        task_timeout=opts.task_timeout,
    )
    graph = StateGraph(OrchestratorState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "plan", partial(plan, crew=crew, pool=pool), retry_policy=model_retry_policy())
    add_node(graph, "schedule", partial(schedule, pool=pool), defer=True)
    add_node(
        graph,
        "work",
        partial(work, crew=crew, pool=pool),
        input_schema=WorkInput,
        retry_policy=model_retry_policy(max_attempts),
    )
    add_node(graph, "check", partial(check, crew=crew, pool=pool), retry_policy=model_retry_policy())
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "schedule")
    graph.add_conditional_edges("schedule", dispatch, ["work", "check"])
    graph.add_edge("work", "schedule")
    graph.add_conditional_edges("check", after_check, ["schedule", END])
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
    planned, calls = await ask(
        crew[pool.orchestrator], messages, node="plan", runtime=runtime, config=config, schema=Plan
    )
    tasks = _new_tasks(planned.tasks[: pool.max_tasks], round_=1, start=1)
    await _post_tasks(tasks, pool, runtime)
    stats: dict[str, AgentStats] = {
        name: {"assigned": 0, "tasks": 0, "failures": 0, "consecutive_failures": 0, "latency_s": 0.0, "up": True}
        for name in pool.agents
    }
    return {"round": 1, "wave": 0, "tasks": tasks, "folded": 0, "agent_stats": stats, "calls": calls}


def schedule(state: OrchestratorState, *, pool: _Pool) -> dict[str, Any]:
    """Fold the last wave's outcomes in, then assign the next wave."""
    tasks = {t["id"]: PoolTask(**{**t, "failed_agents": list(t["failed_agents"])}) for t in state["tasks"]}
    stats = {name: AgentStats(**s) for name, s in state["agent_stats"].items()}
    attempts = state.get("attempts", [])
    for attempt in attempts[state.get("folded", 0) :]:
        _fold(attempt, tasks, stats, pool)

    pending = [t for t in tasks.values() if t["status"] == PoolTaskStatus.PENDING]
    if pending and not any(s["up"] for s in stats.values()):
        interrupt(
            {
                "stop_reason": StopReason.WORKER_FAILED.value,
                "detail": f"all {len(stats)} agents are down with {len(pending)} tasks left; resume to try them again",
                "agent": "",
                "node": "schedule",
                "accepts": ["retry"],
                "resume": {"action": "retry"},
            }
        )
        for s in stats.values():
            s["up"], s["consecutive_failures"] = True, 0

    wave = state.get("wave", 0) + 1
    busy: set[str] = set()
    order = {name: i for i, name in enumerate(pool.agents)}
    for task in pending[: pool.concurrency]:
        free = [n for n in pool.agents if stats[n]["up"] and n not in busy]
        fresh = [n for n in free if n not in task["failed_agents"]] or free
        if not fresh:
            break
        # Least loaded first; among equals, the pool's order keeps assignment deterministic.
        agent = min(fresh, key=lambda n: (stats[n]["assigned"], order[n]))
        busy.add(agent)
        stats[agent]["assigned"] += 1
        task.update(
            {"status": PoolTaskStatus.RUNNING.value, "agent": agent, "wave": wave, "attempts": task["attempts"] + 1}
        )
    return {"tasks": list(tasks.values()), "agent_stats": stats, "folded": len(attempts), "wave": wave}


def _fold(attempt: Attempt, tasks: dict[str, PoolTask], stats: dict[str, AgentStats], pool: _Pool) -> None:
    task = tasks.get(attempt["task_id"])
    # Only the outcome of the assignment in force counts: a task is never done twice.
    if task is None or task["status"] != PoolTaskStatus.RUNNING or task["agent"] != attempt["agent"]:
        return
    agent = stats[attempt["agent"]]
    agent["latency_s"] = round(agent["latency_s"] + attempt["latency_s"], 4)
    if attempt["ok"]:
        task.update({"status": PoolTaskStatus.DONE.value, "result": attempt["output"]})
        agent["tasks"] += 1
        agent["consecutive_failures"] = 0
        return
    agent["failures"] += 1
    agent["consecutive_failures"] += 1
    if agent["consecutive_failures"] >= pool.max_failures:
        agent["up"] = False
    task["failed_agents"].append(attempt["agent"])
    given_up = task["attempts"] >= pool.max_task_attempts
    task.update(
        {"status": (PoolTaskStatus.FAILED if given_up else PoolTaskStatus.PENDING).value, "result": attempt["error"]}
    )


def dispatch(state: OrchestratorState) -> list[Send] | str:
    wave = state.get("wave", 0)
    running = [t for t in state.get("tasks", []) if t["status"] == PoolTaskStatus.RUNNING and t["wave"] == wave]
    if not running:
        return "check"
    return [Send("work", {"objective": state["objective"], "task": t, "agent": t["agent"]}) for t in running]


async def work(
    state: WorkInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, pool: _Pool
) -> dict[str, Any]:
    task, member = state["task"], crew[state["agent"]]
    messages = task_messages("orchestrator_work", member.agent, state["objective"], task)
    started = time.perf_counter()
    # A failure is the pool's to handle (the task goes to another agent): the join policy is "continue".
    output, calls, error = await worker_outcome(
        ask(member, messages, node="work", runtime=runtime, config=config, recall=RESULTS, post="work"),
        agent=member.name, node="work", runtime=runtime, max_attempts=pool.max_attempts, timeout=pool.task_timeout,
    )  # fmt: skip
    attempt: Attempt = {
        "task_id": task["id"],
        "agent": member.name,
        "wave": task["wave"],
        "ok": not error,
        "output": output,
        "error": error,
        "latency_s": round(time.perf_counter() - started, 4),
    }
    return {"attempts": [attempt], "calls": calls}


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
    verdict, calls = await ask(
        crew[pool.orchestrator], messages, node="check", runtime=runtime, config=config, schema=Check, recall=RESULTS
    )
    update: dict[str, Any] = {"final_answer": verdict.answer, "calls": calls}
    follow_ups = [t for t in verdict.follow_up_tasks if t.title.strip()][: pool.max_tasks]
    if follow_ups and round_ < pool.max_rounds:
        new = _new_tasks(follow_ups, round_=round_ + 1, start=len(state["tasks"]) + 1)
        await _post_tasks(new, pool, runtime)
        update.update(round=round_ + 1, tasks=[*state["tasks"], *new])
    else:
        update["stop_reason"] = (StopReason.MAX_ROUNDS if follow_ups else StopReason.COMPLETED).value
    return update


def after_check(state: OrchestratorState) -> str:
    return END if state.get("stop_reason") else "schedule"


def _new_tasks(planned: Sequence[PlannedTask], *, round_: int, start: int) -> list[PoolTask]:
    return [
        {
            "id": f"t{start + i}",
            "round": round_,
            "title": item.title.strip() or f"task {start + i}",
            "description": item.description.strip(),
            "status": PoolTaskStatus.PENDING.value,
            "agent": "",
            "wave": 0,
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
    """One progress line about a node's update."""
    if node == "plan" and update.get("tasks"):
        tasks = update["tasks"]
        return tasks_line([(t["title"], "") for t in tasks if t["round"] == tasks[-1]["round"]])
    if node == "work" and update.get("attempts"):
        a = update["attempts"][0]
        return f"{a['task_id']} by {a['agent']}: " + ("done" if a["ok"] else "failed: " + a["error"])
    if node == "schedule" and update.get("tasks"):
        running = [t for t in update["tasks"] if t["status"] == PoolTaskStatus.RUNNING]
        done = sum(t["status"] == PoolTaskStatus.DONE for t in update["tasks"])
        down = [n for n, s in update.get("agent_stats", {}).items() if not s["up"]]
        return f"wave {update.get('wave')}: {len(running)} assigned, {done}/{len(update['tasks'])} done" + (
            f", down: {', '.join(down)}" if down else ""
        )
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
