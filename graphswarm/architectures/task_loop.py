"""Task loop: a BabyAGI task list whose tasks AutoGPT-style agents do with tools.

    START -> plan -> pick --+--> think <--> act       an agent reasons, calls tools, sees results
                     ^      |      |
                     |      +--> delegate             the task goes to another architecture's graph
                     |      |      |
                     +------+-- review                result kept; new tasks, duplicates dropped,
                            |                          priorities set, "is the objective met?"
                            +--> finish -> END         objective met, no tasks, a cap, or a person

Every model call and every tool step is its own checkpointed node run, so a run killed
mid-task resumes at the step it was on. The loop cannot run away: it executes at most
`max_tasks` tasks, an agent gets `max_steps` model calls per task and the same tool call
a third time in a task is refused (the tool loop every architecture's agents use,
`nodes.ToolLoop`, run here one step per node), a task equal or close in meaning to an
existing one is dropped, and the run's `Budget` (tokens, cost, time) is checked before
each task.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any, Required, cast

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import normalize
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
    MAX_TOOL_STEPS,
    TOOL_LOOP,
    Crew,
    ToolLoop,
    ask,
    ask_once,
    clip,
    governor_of,
    memory_of,
    model_retry_policy,
    post_note,
    prompt,
)
from graphswarm.state import StopReason, SwarmState, merge_by_id
from graphswarm.toolbox import AllowShell, Workspace, builtin_tools, check_tool_names
from graphswarm.view import Block, Cell, Run, Table, Text, View, shorten, tasks_line

__all__ = ["create_task_loop", "TaskLoopOptions", "TaskLoopState", "LoopTask", "TaskStatus", "ToolUse", "DEFAULT_TOOLS"]

DEFAULT_PLANNER = Agent(name="planner", role="task planner", strengths=["planning", "prioritising"])
DEFAULT_TOOLS = ("memory_search", "calculator", "read_file", "write_file", "list_files", "ask_human")
"""Built-in tools every agent of a task loop gets unless told otherwise (no shell)."""
ASK_HUMAN = "ask_human"
RESULT_CLIP = 600
"""Characters of each finished task's result shown to the planner and the agents."""
RECENT_RESULTS = 3
"""Earlier results an agent sees with its task when the run has no memory to recall them from."""
RESULTS = ("result",)
"""The notes recalled from shared memory (by an agent doing a task and the planner's
review): finished tasks' results, which `review` posts; the planner posts each task."""


class TaskStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DROPPED = "dropped"
    """A duplicate of another task (same text, or close in meaning in the run's memory)."""


class LoopTask(TypedDict):
    id: int
    title: str
    description: str
    assignee: str
    """The agent, or the delegated graph, that does it."""
    priority: int
    """Lower runs first."""
    status: str
    result: str
    origin: int
    """The task whose review created it (0: the first plan)."""
    duplicate_of: int
    """For dropped tasks: the task it repeats (0 when none)."""


class ToolUse(TypedDict):
    task_id: int
    agent: str
    tool: str
    args: dict[str, Any]
    ok: bool
    output: str


class Decision(TypedDict):
    task_id: int
    kind: str
    """"question" or "approval"."""
    request: str
    action: str
    """"answer", "approve", "reject" or "stop"."""
    text: str


class TaskUpdate(TypedDict, total=False):
    """A change to one task of the list: its id and the fields that change (a new task
    has them all)."""

    id: Required[int]
    title: str
    description: str
    assignee: str
    priority: int
    status: str
    result: str
    origin: int
    duplicate_of: int


class TaskLoopState(SwarmState):
    tasks: Annotated[list[LoopTask], merge_by_id]
    """Every task ever created, dropped ones included. Nodes write only the tasks they
    add or change (`TaskUpdate`s, merged by id), so a step's write is as large as the
    step's work, not the list."""
    current: int
    """The id of the task in progress (0 between tasks)."""
    conversation: list[dict[str, Any]]
    """The current task's messages (LangChain message dicts), written whole."""
    steps: int
    """Model calls made on the current task."""
    outcome: str
    """The current task's result, once its agent (or graph) has answered."""
    executed: int
    tool_uses: Annotated[list[ToolUse], operator.add]
    decisions: Annotated[list[Decision], operator.add]
    """What a person answered or decided at each pause."""


class TaskLoopOptions(SwarmOptions):
    """The task loop's options (`graphswarm options task_loop`)."""

    model_config = ConfigDict(extra="forbid", title="task_loop")

    tools: tuple[str, ...] = Field(
        DEFAULT_TOOLS, description="built-in tools every agent gets besides its own (shell needs allow_shell)"
    )
    allow_shell: AllowShell = Field(
        False,
        description="let agents run shell commands in the workspace, in a sandbox (true), "
        "or without one where the machine has none (unsandboxed)",
    )
    approve_tools: tuple[str, ...] = Field((), description="tools whose every call waits for a person's approval")
    workspace: Path | None = Field(
        None, description="the directory file tools are confined to (default: one per run beside the database)"
    )
    subgraphs: tuple[str, ...] | dict[str, Any] = Field(
        (), description="graphs a task may be handed to: architecture names, or (Python) a mapping name -> graph"
    )
    max_tasks: int = Field(10, ge=1, le=1000, description="tasks executed before the run stops")
    max_steps: int = Field(
        MAX_TOOL_STEPS, ge=1, le=100, description="model calls an agent may make on one task before it must answer"
    )
    duplicate_similarity: float = Field(
        0.9, gt=0, le=1, description="a new task this close (cosine) to an existing one in memory is dropped"
    )

    @field_validator("tools", "approve_tools", "subgraphs", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """One name, or names separated by commas (`-o tools=calculator,read_file`), is a list."""
        return tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else value


class NewTask(PlannedTask):
    title: str = Field(description="a short, concrete task")
    assignee: str = Field("", description="the exact name of who should do it, or empty")


class TaskPlan(Plan):
    tasks: list[NewTask] = Field(min_length=1)


class TaskReview(BaseModel):
    objective_met: bool = Field(description="true only if the results so far meet the whole objective")
    new_tasks: list[NewTask] = Field(default_factory=list, description="tasks still needed, not already listed")
    priorities: list[int] = Field(default_factory=list, description="ids of the pending tasks, most important first")


def create_task_loop(
    agents: Sequence[Agent],
    *,
    leader: Agent | None = None,
    model: Any = None,
    base_url: str | None = None,
    options: TaskLoopOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[TaskLoopState, SwarmContext, ObjectiveInput, TaskLoopState]:
    """Build a task loop.

    Args:
        agents: the agents that do tasks with tools; the first is the default assignee.
        leader: the planner that keeps the task list (a default "planner" when omitted).
        model: the model of every agent that names none (see `resolve_model`).
        base_url: an OpenAI-compatible server for model names given as strings.
        options: a `TaskLoopOptions`, or its fields as keyword arguments. `tools` are
            built-in tools (`graphswarm.toolbox.BUILTIN_TOOLS`) every agent gets besides
            its own `Agent.tools`; a call of a tool in `approve_tools` waits for
            `Runner.resume(run_id, decision={"action": "approve"})`, or "reject" / "stop";
            `subgraphs` are architecture names (built with these agents, e.g.
            ["debate"]) or a mapping name -> graph you built; `max_tasks` ends the run
            with `task_cap`; equal task text is always a duplicate.
    """
    opts = TaskLoopOptions.check(options, **kwargs)
    agents = check_agents(agents)
    leader = leader or DEFAULT_PLANNER
    check_agents([leader, *agents])
    allow_shell, approve_tools, workspace = opts.allow_shell, opts.approve_tools, opts.workspace
    max_tasks, max_steps, duplicate_similarity = opts.max_tasks, opts.max_steps, opts.duplicate_similarity
    tool_names = check_tool_names(list(opts.tools), allow_shell=allow_shell)
    own_tools = {t.name for a in agents for t in a.tools}
    for name in approve_tools:
        if name not in {*tool_names, *own_tools}:
            raise ConfigError(f"approve_tools names {name!r}, which no agent has (tools: {', '.join(tool_names)})")
    fixed = Workspace(workspace) if workspace is not None else None

    graphs = _subgraphs(opts.subgraphs, agents, model=model, base_url=base_url)
    clash = set(graphs) & {a.name for a in (leader, *agents)}
    if clash:
        raise ConfigError(f"a subgraph and an agent share the name {sorted(clash)[0]!r}")

    crew = Crew([leader, *agents], model=model, base_url=base_url)
    loop = _Loop(
        planner=leader.name,
        agents=[a.name for a in agents],
        tools=tuple(tool_names),
        allow_shell=allow_shell,
        approve_tools=frozenset(approve_tools),
        workspace=fixed,
        subgraphs=graphs,
        max_tasks=max_tasks,
        tool_loop=ToolLoop(max_steps=max_steps),
        duplicate_similarity=duplicate_similarity,
    )
    retry = model_retry_policy()
    graph = StateGraph(TaskLoopState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "plan", partial(plan, crew=crew, loop=loop), retry_policy=retry)
    add_node(graph, "pick", partial(pick, loop=loop))
    add_node(graph, "think", partial(think, crew=crew, loop=loop), retry_policy=retry)
    add_node(graph, "act", partial(act, crew=crew, loop=loop))
    add_node(graph, "review", partial(review, crew=crew, loop=loop), retry_policy=retry)
    add_node(graph, "finish", partial(finish, crew=crew, loop=loop), retry_policy=retry)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "pick")
    graph.add_conditional_edges("pick", partial(after_pick, loop=loop), ["think", "delegate", "finish"])
    graph.add_conditional_edges("think", after_think, ["act", "review"])
    graph.add_conditional_edges("act", after_act, ["think", "finish"])
    add_node(graph, "delegate", partial(delegate, loop=loop))
    graph.add_edge("delegate", "review")
    graph.add_conditional_edges("review", after_review, ["pick", "finish"])
    graph.add_edge("finish", END)
    return graph


@dataclass(frozen=True)
class _Loop:
    """The static shape of one task loop, bound into its nodes."""

    planner: str
    agents: list[str]
    tools: tuple[str, ...]
    allow_shell: AllowShell
    approve_tools: frozenset[str]
    workspace: Workspace | None
    subgraphs: dict[str, Any] = field(default_factory=dict)
    max_tasks: int = 10
    tool_loop: ToolLoop = TOOL_LOOP
    """The one tool loop's caps (`max_steps` model calls per task, repeats refused),
    run here one checkpointed step per node run."""
    duplicate_similarity: float = 0.9

    def assignees(self) -> set[str]:
        return {*self.agents, *self.subgraphs}


def _subgraphs(subgraphs: Mapping[str, Any] | Sequence[str], agents: list[Agent], **build: Any) -> dict[str, Any]:
    """Compiled graphs by name; architecture names are built with the loop's own agents."""
    from graphswarm.registry import ARCHITECTURES, SwarmSpec

    if isinstance(subgraphs, str):
        subgraphs = [subgraphs]
    if not isinstance(subgraphs, Mapping):
        named: dict[str, Any] = {}
        for name in subgraphs:
            if name not in ARCHITECTURES or name == "task_loop":  # no loop inside a loop
                usable = [n for n in ARCHITECTURES if n != "task_loop"]
                raise ConfigError(f"unknown subgraph {name!r} (use one of: {', '.join(usable)})")
            named[name] = SwarmSpec(architecture=name, agents=agents, **build).build()
        subgraphs = named
    compiled = {}
    for name, graph in subgraphs.items():
        compiled[name] = graph.compile() if isinstance(graph, StateGraph) else graph
        if not hasattr(compiled[name], "ainvoke"):
            raise ConfigError(f"subgraph {name!r} must be a StateGraph or a compiled graph")
    return compiled


# -- the BabyAGI layer: the task list ----------------------------------------------


async def plan(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, loop: _Loop
) -> dict[str, Any]:
    system = prompt("task_loop_plan").format(planner=loop.planner, max_tasks=loop.max_tasks, team=_team(crew, loop))
    messages = [SystemMessage(system), HumanMessage(f"Objective: {state['objective']}")]
    planned, calls = await reply_or_none(
        ask(crew[loop.planner], messages, node="plan", runtime=runtime, config=config, schema=TaskPlan)
    )
    new = planned.tasks[: loop.max_tasks] if planned else [NewTask(title=UNPLANNED_TASK)]
    tasks = await _new_tasks([], new, origin=0, loop=loop, runtime=runtime)
    return {"tasks": tasks, "current": 0, "executed": 0, "calls": calls}


def pick(state: TaskLoopState, runtime: Runtime[SwarmContext], *, loop: _Loop) -> dict[str, Any]:
    """Take the most important pending task, unless the loop must stop first."""
    pending = _pending(state)
    if not pending:
        return {"stop_reason": StopReason.NO_TASKS.value, "current": 0}
    if state.get("executed", 0) >= loop.max_tasks:
        return {"stop_reason": StopReason.TASK_CAP.value, "current": 0}
    cap = governor_of(runtime).exhausted()
    if cap is not None:
        return {"stop_reason": cap.reason.value, "current": 0}
    return {"current": pending[0]["id"], "conversation": [], "steps": 0, "outcome": ""}


async def review(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, loop: _Loop
) -> dict[str, Any]:
    """Keep the finished task's result, then let the planner extend and reorder the list."""
    task = _current(state)
    outcome = state.get("outcome") or "(no result)"
    finished: TaskUpdate = {"id": task["id"], "status": TaskStatus.DONE.value, "result": outcome}
    tasks: list[LoopTask] = merge_by_id(state["tasks"], [cast(LoopTask, finished)])
    await post_note(runtime, outcome, agent=task["assignee"], kind="result", task_id=str(task["id"]))
    done = [t for t in tasks if t["status"] == TaskStatus.DONE]
    pending = [t for t in tasks if t["status"] == TaskStatus.PENDING]
    listing = "Done:\n" + "\n".join(f"- [{t['id']}] {t['title']}: {clip(t['result'], RESULT_CLIP)}" for t in done)
    listing += "\n\nPending:\n" + ("\n".join(f"- [{t['id']}] {t['title']}" for t in pending) or "(none)")
    messages = [
        SystemMessage(prompt("task_loop_review").format(planner=loop.planner, team=_team(crew, loop))),
        HumanMessage(f"Objective: {state['objective']}\n\n{listing}"),
    ]
    verdict, calls = await reply_or_none(ask(
        crew[loop.planner], messages, node="review", runtime=runtime, config=config, schema=TaskReview, recall=RESULTS,
    ))  # fmt: skip
    verdict = verdict or TaskReview(objective_met=False)  # unreadable: the list goes on as it is
    added = await _new_tasks(tasks, verdict.new_tasks, origin=task["id"], loop=loop, runtime=runtime)
    update: dict[str, Any] = {
        "tasks": [finished, *added, *_reprioritise([*tasks, *added], verdict.priorities)],
        "executed": state.get("executed", 0) + 1,
        "current": 0,
        "calls": calls,
    }
    if verdict.objective_met:
        update["stop_reason"] = StopReason.OBJECTIVE_MET.value
    return update


async def finish(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, loop: _Loop
) -> dict[str, Any]:
    """The final answer from the finished tasks' results.

    After a spending cap or a person's stop no model is called: the results are joined.
    """
    done = [t for t in state.get("tasks", []) if t["status"] == TaskStatus.DONE]
    results = "\n\n".join(f"## {t['title']}\n{t['result']}" for t in done)
    reason = state.get("stop_reason") or StopReason.NO_TASKS.value
    spent = reason in (
        StopReason.STOPPED,
        StopReason.CALL_CAP,
        StopReason.TOKEN_CAP,
        StopReason.COST_CAP,
        StopReason.TIME_CAP,
    )
    if spent or not done:
        return {"final_answer": results or "No task was finished.", "stop_reason": reason}
    messages = [
        SystemMessage(prompt("task_loop_finish").format(planner=loop.planner)),
        HumanMessage(f"Objective: {state['objective']}\n\nResults:\n\n{results}"),
    ]
    answer, calls = await ask(crew[loop.planner], messages, node="finish", runtime=runtime, config=config)
    return {"final_answer": answer, "stop_reason": reason, "calls": calls}


async def _new_tasks(
    tasks: list[LoopTask], new: Sequence[NewTask], *, origin: int, loop: _Loop, runtime: Runtime[SwarmContext]
) -> list[LoopTask]:
    """The `new` tasks to add to `tasks`; those repeating a task (listed or new) are kept
    as dropped duplicates.

    A repeat is the same text after normalisation, or - when the run has memory - a task
    whose meaning is within `duplicate_similarity` of one already posted there.
    """
    memory = memory_of(runtime)
    tasks = list(tasks)
    added: list[LoopTask] = []
    next_id = max((t["id"] for t in tasks), default=0) + 1
    next_priority = max((t["priority"] for t in tasks), default=0) + 1
    for item in new:
        title = item.title.strip()
        if not title:
            continue
        text = f"{title}. {item.description.strip()}".strip(". ")
        duplicate_of = next((t["id"] for t in tasks if normalize(t["title"]) == normalize(title)), 0)
        if not duplicate_of and memory is not None:
            close = await memory.aquery(text, k=1, kind="task")
            similar = close and 1 - (close[0].get("distance") or 0.0) >= loop.duplicate_similarity
            # Only a task on the list counts: a step re-run after a crash finds its own earlier post.
            if similar and int(close[0]["task_id"] or 0) in {t["id"] for t in tasks}:
                duplicate_of = int(close[0]["task_id"])
        assignee = _assignee(item.assignee, loop)
        task: LoopTask = {
            "id": next_id,
            "title": title,
            "description": item.description.strip(),
            "assignee": assignee,
            "priority": next_priority,
            "status": (TaskStatus.DROPPED if duplicate_of else TaskStatus.PENDING).value,
            "result": "",
            "origin": origin,
            "duplicate_of": duplicate_of,
        }
        if memory is not None and not duplicate_of:
            await memory.apost(text, agent=loop.planner, kind="task", task_id=str(next_id))
        tasks.append(task)
        added.append(task)
        next_id += 1
        next_priority += 1
    return added


def _reprioritise(tasks: list[LoopTask], order: Sequence[int]) -> list[TaskUpdate]:
    """The priority of every pending task: those named in `order` first, in that order,
    the rest in the order they had."""
    rank = {task_id: i for i, task_id in enumerate(dict.fromkeys(order))}
    pending = sorted(
        (t for t in tasks if t["status"] == TaskStatus.PENDING),
        key=lambda t: (rank.get(t["id"], len(rank)), t["priority"], t["id"]),
    )
    return [{"id": t["id"], "priority": i} for i, t in enumerate(pending, start=1)]


def _assignee(name: str, loop: _Loop) -> str:
    wanted = name.strip().lower()
    return next((known for known in sorted(loop.assignees()) if known.lower() == wanted), loop.agents[0])


# -- the AutoGPT layer: an agent reasons and uses tools ------------------------------


async def think(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, loop: _Loop
) -> dict[str, Any]:
    """One model call of the current task's agent; the reply either calls tools or is the result."""
    task = _current(state)
    member = crew[task["assignee"]]
    memory = memory_of(runtime)
    conversation = messages_from_dict(state.get("conversation") or []) or _first_messages(
        state, task, member.agent, with_results=memory is None
    )
    steps = state.get("steps", 0)
    conversation, offered = loop.tool_loop.request(conversation, steps)
    tools = await _tools(loop, member.agent, config, runtime) if offered else []
    # With memory, the first step recalls the earlier results closest to the task.
    reply, calls = await ask_once(
        member, conversation, node="think", runtime=runtime, config=config, tools=tools, recall=RESULTS
    )
    # Keep only what the conversation needs: no provider metadata in checkpoints.
    reply = AIMessage(content=reply.text, tool_calls=reply.tool_calls if tools else [])
    update: dict[str, Any] = {
        "conversation": messages_to_dict([*conversation, reply]),
        "steps": steps + 1,
        "calls": calls,
    }
    if not reply.tool_calls:
        update["outcome"] = reply.text.strip()
    return update


async def act(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, loop: _Loop
) -> dict[str, Any]:
    """Run the tool calls of the agent's last reply.

    Calls that need a person (a question, an approval) pause the run first, before any
    tool has side effects, so resuming after the pause runs nothing twice.
    """
    task = _current(state)
    agent = crew.agent(task["assignee"])
    conversation = messages_from_dict(state["conversation"])
    # The last message is the agent's reply asking for these tool calls.
    requested: list[dict[str, Any]] = list(getattr(conversation[-1], "tool_calls", []))
    answered: dict[str, ToolMessage] = {}
    decisions: list[Decision] = []
    for call in requested:
        asks_a_person = call["name"] == ASK_HUMAN and ASK_HUMAN in loop.tools
        if not asks_a_person and call["name"] not in loop.approve_tools:
            continue
        decision = _ask_person(call, task, agent.name)
        decisions.append(decision)
        if decision["action"] == "stop":
            return {"decisions": decisions, "stop_reason": StopReason.STOPPED.value}
        if asks_a_person:
            answered[call["id"]] = ToolMessage(decision["text"], tool_call_id=call["id"], name=call["name"])
        elif decision["action"] == "reject":
            refusal = f"A person refused this call. {decision['text']}".strip()
            answered[call["id"]] = ToolMessage(refusal, tool_call_id=call["id"], name=call["name"], status="error")
    tools = {t.name: t for t in await _tools(loop, agent, config, runtime)}
    results = await loop.tool_loop.run_calls(tools, conversation, config, answered=answered)
    uses: list[ToolUse] = [
        {
            "task_id": task["id"],
            "agent": agent.name,
            "tool": call["name"],
            "args": call["args"],
            "ok": result.status != "error",
            "output": clip(str(result.content), 2000),
        }
        for call, result in zip(requested, results, strict=True)
    ]
    return {"conversation": messages_to_dict([*conversation, *results]), "tool_uses": uses, "decisions": decisions}


def _ask_person(call: dict[str, Any], task: LoopTask, agent: str) -> Decision:
    if call["name"] == ASK_HUMAN:
        kind, request = "question", str(call["args"].get("question", ""))
        pause: dict[str, Any] = {"stop_reason": StopReason.HUMAN.value, "detail": request, "question": request}
    else:
        kind, request = "approval", f"{call['name']}({json.dumps(call['args'], ensure_ascii=False)})"
        pause = {
            "stop_reason": StopReason.APPROVAL.value,
            "detail": f"{agent} wants to run {request}",
            "tool_call": call,
        }
    accepts = list(_ACCEPTS[kind])
    answer = interrupt({**pause, "agent": agent, "node": "act", "task_id": task["id"], "accepts": accepts})
    action, text = _read_answer(answer, kind)
    return {"task_id": task["id"], "kind": kind, "request": request, "action": action, "text": text}


def _read_answer(answer: Any, kind: str) -> tuple[str, str]:
    """A person's reply: a dict {"action": ..., "text"/"feedback": ...} or plain text."""
    if isinstance(answer, dict):
        action = str(answer.get("action") or ("answer" if kind == "question" else "approve")).lower()
        text = str(answer.get("text") or answer.get("answer") or answer.get("feedback") or "")
    else:
        text = "" if answer is True else str(answer)
        action = (
            "answer"
            if kind == "question"
            else ("approve" if answer is True or text.lower() in ("approve", "yes", "y") else "reject")
        )
    if action not in _ACCEPTS[kind]:
        raise ConfigError(f"unknown decision {action!r} for a {kind}: use {' or '.join(_ACCEPTS[kind])}")
    return action, text


_ACCEPTS = {"question": ("answer", "stop"), "approval": ("approve", "reject", "stop")}


async def _tools(loop: _Loop, agent: Agent, config: RunnableConfig, runtime: Runtime[SwarmContext]) -> list[Any]:
    # Making the workspace touches the disk: off the event loop.
    workspace = loop.workspace
    if workspace is None:
        workspace = await asyncio.to_thread(_run_workspace, config, runtime)
    built = builtin_tools(
        loop.tools, workspace=workspace, memory=memory_of(runtime), agent=agent.name, allow_shell=loop.allow_shell
    )
    return [*built, *agent.tools]


def _run_workspace(config: RunnableConfig, runtime: Runtime[SwarmContext]) -> Workspace:
    """The run's own workspace: from the runner, else a temp dir named after the thread."""
    given = getattr(getattr(runtime, "context", None), "workspace", None)
    if given is None:
        thread = str(config.get("configurable", {}).get("thread_id", "default"))
        given = Path(tempfile.gettempdir()) / "graphswarm-workspaces" / thread
    return _workspace(os.fspath(given))


@cache
def _workspace(path: str) -> Workspace:
    # Made (and probed for writing) once per process, not at every step.
    return Workspace(path)


def _first_messages(state: TaskLoopState, task: LoopTask, agent: Agent, *, with_results: bool) -> list[BaseMessage]:
    """The task's opening messages; without memory to recall from, the latest results come along."""
    done = [t for t in state["tasks"] if t["status"] == TaskStatus.DONE][-RECENT_RESULTS:] if with_results else []
    context = ""
    if done:
        results = (f"- {t['title']}: {clip(t['result'], RESULT_CLIP)}" for t in done)
        context = "Results of earlier tasks:\n" + "\n".join(results)
    return task_messages("task_loop_work", agent, state["objective"], task, context=context)


# -- other agents' graphs ---------------------------------------------------------


async def delegate(
    state: TaskLoopState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, loop: _Loop
) -> dict[str, Any]:
    """Hand the current task to another architecture's graph; its answer is the task's result.

    The graph runs as a subgraph of this run: it shares the checkpointer (a resumed run
    continues inside it), the budget governor and the memory.
    """
    task = _current(state)
    question = f"{task['title']}\n{task['description']}".strip()
    question += f"\n\n(This is one task toward the objective: {state['objective']})"
    output = await loop.subgraphs[task["assignee"]].ainvoke({"objective": question}, config, context=runtime.context)
    return {"outcome": str(output.get("final_answer") or ""), "calls": list(output.get("calls", []))}


# -- routing (pure) ---------------------------------------------------------------


def after_pick(state: TaskLoopState, *, loop: _Loop) -> str:
    if state.get("stop_reason") or not state.get("current"):
        return "finish"
    return "delegate" if _current(state)["assignee"] in loop.subgraphs else "think"


def after_think(state: TaskLoopState) -> str:
    last = (state.get("conversation") or [{}])[-1].get("data", {})
    return "act" if last.get("tool_calls") else "review"


def after_act(state: TaskLoopState) -> str:
    return "finish" if state.get("stop_reason") else "think"


def after_review(state: TaskLoopState) -> str:
    return "finish" if state.get("stop_reason") else "pick"


# -- helpers ----------------------------------------------------------------------


def _current(state: TaskLoopState) -> LoopTask:
    current = state.get("current")
    return next(t for t in state["tasks"] if t["id"] == current)


def _pending(state: TaskLoopState) -> list[LoopTask]:
    pending = [t for t in state.get("tasks", []) if t["status"] == TaskStatus.PENDING]
    return sorted(pending, key=lambda t: (t["priority"], t["id"]))


def _team(crew: Crew, loop: _Loop) -> str:
    lines = []
    for name in loop.agents:
        agent = crew.agent(name)
        lines.append(f"- {name} ({agent.role}): strengths {', '.join(agent.strengths) or 'general'}")
    lines += [
        f"- {name}: a team that runs a {name} among the agents, for contested questions" for name in loop.subgraphs
    ]
    return "\n".join(lines)


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if node == "plan" and update.get("tasks"):
        return tasks_line([(t["title"], t["assignee"]) for t in update["tasks"] if t["status"] != TaskStatus.DROPPED])
    if node == "pick" and update.get("current"):
        return f"task {update['current']}"
    if node == "act" and update.get("tool_uses"):
        return ", ".join(f"{u['tool']}({'ok' if u['ok'] else 'error'})" for u in update["tool_uses"])
    if node == "review" and update.get("tasks"):
        # A review writes the priority of every pending task (and the new ones whole).
        pending = {t["id"] for t in update["tasks"] if t.get("status", TaskStatus.PENDING) == TaskStatus.PENDING}
        return f"{len(pending)} tasks pending" + (
            f"; stop: {update['stop_reason']}" if update.get("stop_reason") else ""
        )
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """The task list with each task's result, the tool calls, and a person's decisions."""
    state = run.state
    if not state.get("tasks"):
        return []
    uses, decisions = state.get("tool_uses", []), state.get("decisions", [])
    if brief:
        rows: list[list[Cell]] = []
        for t in sorted(state["tasks"], key=lambda t: (t["status"] != "done", t["status"] != "pending", t["priority"])):
            status = t["status"] + (f" (repeats {t['duplicate_of']})" if t["duplicate_of"] else "")
            rows.append(
                [
                    str(t["id"]),
                    status,
                    str(t["priority"]),
                    t["assignee"],
                    shorten(t["title"], 50),
                    shorten(t["result"], 50),
                ]
            )
        blocks: list[Block] = [
            Table(["task", "status", "priority", "assignee", "title", "result"], rows, title="task list")
        ]
        if uses:
            calls: list[list[Cell]] = [
                [str(u["task_id"]), u["agent"], u["tool"], shorten(json.dumps(u["args"], ensure_ascii=False), 50),
                 "yes" if u["ok"] else "no", shorten(u["output"], 50)]
                for u in uses
            ]  # fmt: skip
            blocks.append(Table(["task", "agent", "tool", "arguments", "ok", "output"], calls, title="tool calls"))
        for d in decisions:
            blocks.append(
                Text(
                    f"task {d['task_id']} {d['kind']}: {shorten(d['request'], 80)} -> {d['action']} {d['text']}".rstrip()
                )
            )
        return blocks
    rows = [
        [str(t["id"]), t["status"], str(t["priority"]), t["assignee"], Text(t["title"]), Text(t["result"])]
        for t in state["tasks"]
    ]
    blocks = [Table(["task", "status", "priority", "assignee", "title", "result"], rows, title="Task list")]
    if uses:
        calls = [
            [str(u["task_id"]), u["agent"], u["tool"], Text(json.dumps(u["args"], ensure_ascii=False)),
             "ok" if u["ok"] else "refused/failed", Text(u["output"])]
            for u in uses
        ]  # fmt: skip
        blocks.append(Table(["task", "agent", "tool", "arguments", "outcome", "output"], calls, title="Tool calls"))
    if decisions:
        made: list[list[Cell]] = [
            [str(d["task_id"]), d["kind"], Text(d["request"]), d["action"], Text(d["text"])] for d in decisions
        ]
        blocks.append(Table(["task", "kind", "request", "decision", "text"], made, title="A person's decisions"))
    return blocks


ARCHITECTURE = Architecture(
    name="task_loop",
    summary="a planner keeps a task list; agents do the tasks with tools, or hand them to another swarm",
    build=create_task_loop,
    options=TaskLoopOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.LEADER,),
    default_agents=2,
)
