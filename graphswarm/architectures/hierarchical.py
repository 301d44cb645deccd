"""Hierarchical swarm: a leader plans, delegates by strengths, consolidates, reviews.

START -> plan --Send per task--> work (parallel) -> consolidate --+--> END
           ^                                                      |
           +------------------- feedback (next round) -----------+

A question (one short line with one "?") is not split: every worker answers it, so their
answers are a vote (`HierarchicalOptions.delegate`; "plan" always splits).

Workers do different tasks, so their results are a vote only where a clear majority of
them give the same answer, where each was given the objective itself, or where one
answer is a number, a yes/no or an option's letter and no other result is: then the leader's
consolidated answer gives way to the vote's answer when it has no extractable answer
(or not in that form) or contradicts a clear majority (the leader states no reason),
and `verdict_check` records it. A leader whose plan cannot be read (its model does not
give one that fits the schema) gives the objective itself to every worker; one whose
review cannot be read leaves the vote's answer, or else the workers' results, as the
round's answer.
"""

from __future__ import annotations

import operator
from collections import Counter
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

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import (
    VerdictCheck,
    VoteTable,
    answered_in_form,
    best_supported,
    check_verdict,
    clear_majority,
    is_question,
)
from graphswarm.architectures import blocks
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import (
    JoinPolicy,
    ObjectiveInput,
    answer_messages,
    reply_or_none,
    seeded,
    task_messages,
    verdict_line,
    vote_over,
    worker_outcome,
)
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.errors import ConfigError
from graphswarm.graph_nodes import add_node
from graphswarm.nodes import Crew, ask, model_retry_policy, prompt
from graphswarm.state import StopReason, SwarmState
from graphswarm.view import Block, Cell, Run, Table, Text, View, shorten, tasks_line

__all__ = [
    "create_hierarchical",
    "HierarchicalOptions",
    "Delegation",
    "HierarchicalState",
    "Task",
    "WorkerResult",
    "Review",
]

EVERYONE = "everyone"
"""`Task.assigned_by` of the tasks that give every worker the objective itself."""
OBJECTIVE_TASK = "The leader's plan could not be read, so every team member answers the objective itself."
"""What every worker is asked when the leader's plan could not be read."""
NO_REVIEW = "the leader's review could not be read"

DEFAULT_LEADER = Agent(name="leader", role="team leader", strengths=["planning", "synthesis"])
RESULTS = ("work",)
"""The notes the leader recalls from shared memory (each answer is posted under its node's name)."""
TEAM_NOTES = ("plan", "work", "consolidate")
"""The notes a worker recalls: the leader's plans and reviews, and the team's results."""


class Task(TypedDict):
    id: str
    round: int
    title: str
    description: str
    worker: str
    assigned_by: str
    """"leader" when the leader named a valid worker, "strengths" when it named none, and
    "everyone" when every worker was given the objective itself (see `Delegation`, and
    when the leader's plan could not be read)."""


class WorkerResult(TypedDict):
    task_id: str
    round: int
    worker: str
    output: str
    ok: bool
    error: str


class Approval(TypedDict):
    round: int
    action: str
    """"approve", "edit" or "reject"."""
    feedback: str


class Review(TypedDict):
    round: int
    answer: str
    approved: bool
    feedback: str


class HierarchicalState(SwarmState):
    round: int
    tasks: list[Task]
    """Every task of every round (written whole: an approval may replace a round's plan)."""
    approvals: Annotated[list[Approval], operator.add]
    """What a person decided about each plan, when plans need approval."""
    results: Annotated[list[WorkerResult], operator.add]
    reviews: Annotated[list[Review], operator.add]
    verdict_check: VerdictCheck | None
    """The leader's latest answer checked against the vote of that round's results; None
    when it was not checked (the workers did different tasks, no clear majority of them
    gave the same answer, and the winning one is text)."""


class Delegation(StrEnum):
    """How the leader hands the objective to its workers."""

    AUTO = "auto"
    """A question (`aggregation.is_question`: one short line with one "?") goes to every
    worker, whose answers are then a vote; anything else is planned."""
    PLAN = "plan"
    """The leader splits the objective into tasks and gives each to a worker."""
    EVERYONE = "everyone"
    """Every worker answers the objective itself (the leader makes no plan)."""


class HierarchicalOptions(SwarmOptions):
    """The hierarchical swarm's options (`graphswarm options hierarchical`)."""

    model_config = ConfigDict(extra="forbid", title="hierarchical")

    max_rounds: int = Field(2, ge=1, le=50, description="plan/work/review rounds before the last answer stands")
    max_tasks: int | None = Field(None, ge=1, le=1000, description="tasks per round (default: one per worker)")
    join: JoinPolicy = Field(
        JoinPolicy.CONTINUE, description="what a worker failing after its retries does to the round"
    )
    approve_plan: bool = Field(False, description="pause after each plan until a person approves, edits or rejects it")
    delegate: Delegation = Field(
        Delegation.AUTO,
        description="auto: a one-line question goes to every worker, anything else is planned; "
        "plan: always split into tasks; everyone: every worker answers the objective",
    )


class WorkerInput(ObjectiveInput):
    task: Task


class PlannedTask(blocks.PlannedTask):
    worker: str = Field("", description="the exact name of the team member who should do it")


class Plan(blocks.Plan):
    tasks: list[PlannedTask] = Field(min_length=1)


class LeaderReview(BaseModel):
    answer: str = Field(description="the complete final answer to the objective")
    approved: bool = Field(description="true if the answer fully meets the objective")
    feedback: str = Field("", description="what must change, when not approved")


def create_hierarchical(
    workers: Sequence[Agent],
    *,
    leader: Agent | None = None,
    model: Any = None,
    base_url: str | None = None,
    options: HierarchicalOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[HierarchicalState, SwarmContext, ObjectiveInput, HierarchicalState]:
    """Build a hierarchical swarm.

    Args:
        workers: the agents the leader delegates to (at least one).
        leader: the planning agent; a default "leader" when omitted.
        model: the model of every agent that names none (see `resolve_model`).
        base_url: an OpenAI-compatible server for model names given as strings.
        options: a `HierarchicalOptions`, or its fields as keyword arguments
            (`max_rounds=3, join="wait"`). With `approve_plan=True` each plan waits for
            `Runner.resume(run_id, decision={"action": "approve"})`, or
            `{"action": "edit", "tasks": [{"title": ..., "worker": ...}]}`, or
            `{"action": "reject", "feedback": ...}`, which ends the run.
    """
    opts = HierarchicalOptions.check(options, **kwargs)
    workers = check_agents(workers, what="workers")
    leader = leader or DEFAULT_LEADER
    check_agents([leader, *workers])
    max_tasks = len(workers) if opts.max_tasks is None else opts.max_tasks

    crew = Crew([leader, *workers], model=model, base_url=base_url)
    team = _Team(leader.name, [w.name for w in workers], opts.max_rounds, max_tasks, opts.join, opts.delegate)
    retry = model_retry_policy()

    graph = StateGraph(HierarchicalState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "plan", partial(plan, crew=crew, team=team), retry_policy=retry)
    add_node(graph, "work", partial(work, crew=crew, team=team), input_schema=WorkerInput, retry_policy=retry)
    add_node(graph, "consolidate", partial(consolidate, crew=crew, team=team), retry_policy=retry, defer=True)
    graph.add_edge(START, "plan")
    if opts.approve_plan:
        add_node(graph, "approve", partial(approve, team=team, crew=crew))
        graph.add_edge("plan", "approve")
        graph.add_conditional_edges("approve", dispatch, ["work", "consolidate", END])
    else:
        graph.add_conditional_edges("plan", dispatch, ["work", "consolidate"])
    graph.add_edge("work", "consolidate")
    graph.add_conditional_edges("consolidate", next_round, ["plan", END])
    return graph


@dataclass(frozen=True)
class _Team:
    """The static shape of one hierarchical swarm, bound into its nodes."""

    leader: str
    workers: list[str]
    max_rounds: int
    max_tasks: int
    join: JoinPolicy
    delegate: Delegation


async def plan(
    state: HierarchicalState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, team: _Team
) -> dict[str, Any]:
    round_ = state.get("round", 0) + 1
    members = [crew.agent(name) for name in team.workers]
    reviews = state.get("reviews", [])
    delegate = team.delegate
    if delegate is Delegation.AUTO:
        delegate = Delegation.EVERYONE if is_question(state["objective"]) else Delegation.PLAN
    if delegate is Delegation.EVERYONE:
        feedback = f"The leader's feedback on the last answer: {reviews[-1]['feedback']}" if reviews else ""
        tasks = _everyone(members, round_, feedback)
        return {"round": round_, "tasks": [*state.get("tasks", []), *tasks]}
    system = prompt("hierarchical_plan").format(
        leader=team.leader, max_tasks=team.max_tasks, team="\n".join(_describe(a) for a in members)
    )
    if reviews:
        system += "\n\n" + prompt("hierarchical_replan").format(
            answer=reviews[-1]["answer"], feedback=reviews[-1]["feedback"] or "(none given)"
        )
    messages = [SystemMessage(system), HumanMessage(f"Objective: {state['objective']}")]
    planned, calls = await reply_or_none(ask(
        crew[team.leader], messages, node="plan", runtime=runtime, config=config, schema=Plan,
        recall=RESULTS, post="plan",
    ))  # fmt: skip
    if planned is None:  # every worker answers the objective, so their answers are a vote
        tasks = _everyone(members, round_, "" if is_question(state["objective"]) else OBJECTIVE_TASK)
    else:
        tasks = assign_tasks(planned.tasks[: team.max_tasks], members, round_)
    return {"round": round_, "tasks": [*state.get("tasks", []), *tasks], "calls": calls}


def _everyone(members: Sequence[Agent], round_: int, description: str) -> list[Task]:
    """One task per worker: answer the objective itself."""
    return [
        Task(id=f"r{round_}-t{i}", round=round_, title="Answer the objective", description=description,
             worker=w.name, assigned_by=EVERYONE)
        for i, w in enumerate(members, start=1)
    ]  # fmt: skip


def approve(state: HierarchicalState, *, team: _Team, crew: Crew) -> dict[str, Any]:
    """Pause for a person to approve, edit or reject this round's plan (a separate node,
    so that resuming does not make the leader plan again)."""
    round_ = state["round"]
    current = [t for t in state["tasks"] if t["round"] == round_]
    decision = interrupt(
        {
            "stop_reason": StopReason.APPROVAL.value,
            "detail": f"the plan of round {round_} needs approval",
            "agent": team.leader,
            "node": "approve",
            "accepts": ["approve", "edit", "reject"],
            "plan": current,
        }
    )
    action = str(decision.get("action", "approve") if isinstance(decision, dict) else decision).lower()
    feedback = str(decision.get("feedback", "")) if isinstance(decision, dict) else ""
    record: Approval = {"round": round_, "action": action, "feedback": feedback}
    if action == "reject":
        return {"approvals": [record], "stop_reason": StopReason.REJECTED.value}
    if action == "edit":
        try:
            edited = [PlannedTask.model_validate(t) for t in decision.get("tasks", [])]
        except (AttributeError, ValueError) as exc:
            raise ConfigError(f"an edited plan is a list of tasks with a title and a worker: {exc}") from None
        if not edited:
            raise ConfigError("an edited plan needs at least one task")
        members = [crew.agent(name) for name in team.workers]
        kept = [t for t in state["tasks"] if t["round"] != round_]
        return {"approvals": [record], "tasks": [*kept, *assign_tasks(edited, members, round_)]}
    if action != "approve":
        raise ConfigError(f"unknown decision {action!r}: approve, edit or reject")
    return {"approvals": [record]}


def dispatch(state: HierarchicalState) -> list[Send] | str:
    if state.get("stop_reason"):
        return END
    current = [t for t in state.get("tasks", []) if t["round"] == state.get("round", 0)]
    if not current:
        return "consolidate"
    return [Send("work", {"objective": state["objective"], "task": task}) for task in current]


async def work(
    state: WorkerInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, team: _Team
) -> dict[str, Any]:
    task = state["task"]
    member = crew[task["worker"]]
    if task["assigned_by"] == EVERYONE and is_question(state["objective"]):
        # asked as it is, as any agent is asked a question (a task about it confuses small models)
        messages = answer_messages(member.agent, state["objective"], context=task["description"])
    else:
        messages = task_messages("hierarchical_work", member.agent, state["objective"], task)
    with seeded(config, member.name):  # workers do not all draw the same sample
        output, calls, error = await worker_outcome(
            ask(member, messages, node="work", runtime=runtime, config=config, recall=TEAM_NOTES, post="work"),
            agent=member.name, node="work", runtime=runtime, join=team.join,
        )  # fmt: skip
    result: WorkerResult = {
        "task_id": task["id"],
        "round": task["round"],
        "worker": member.name,
        "output": output,
        "ok": not error,
        "error": error,
    }
    return {"results": [result], "calls": calls}


async def consolidate(
    state: HierarchicalState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, team: _Team
) -> dict[str, Any]:
    round_ = state.get("round", 1)
    titles = {t["id"]: t["title"] for t in state.get("tasks", [])}
    sections = []
    for result in state.get("results", []):
        if result["round"] != round_:
            continue
        body = result["output"] if result["ok"] else f"(this task failed: {result['error']})"
        sections.append(f"### {titles.get(result['task_id'], result['task_id'])} ({result['worker']})\n{body}")
    messages = [
        SystemMessage(prompt("hierarchical_consolidate").format(leader=team.leader)),
        HumanMessage(f"Objective: {state['objective']}\n\nResults:\n" + "\n\n".join(sections)),
    ]
    verdict, calls = await reply_or_none(ask(
        crew[team.leader], messages, node="consolidate", runtime=runtime, config=config, schema=LeaderReview,
        recall=RESULTS, post="consolidate",
    ))  # fmt: skip
    if verdict is None:
        verdict = LeaderReview(answer="", approved=False, feedback=NO_REVIEW)
    vote, on_objective = _round_vote(state, round_)
    answer, check = verdict.answer, None  # an earlier round's check says nothing of this answer
    if clear_majority(vote) or on_objective or answered_in_form(vote, state["objective"]):
        check = check_verdict(verdict.answer, vote, question=state["objective"])
        answer = check["answer"]
    if not answer:  # no answer from the leader nor the vote: the results stand as they are
        answer = "\n\n".join(sections)
    review: Review = {
        "round": round_,
        "answer": verdict.answer or answer,
        "approved": verdict.approved,
        "feedback": verdict.feedback,
    }
    update: dict[str, Any] = {"reviews": [review], "final_answer": answer, "verdict_check": check, "calls": calls}
    if verdict.approved:
        update["stop_reason"] = StopReason.APPROVED.value
    elif round_ >= team.max_rounds:
        update["stop_reason"] = StopReason.MAX_ROUNDS.value
    return update


def _round_vote(state: HierarchicalState, round_: int) -> tuple[VoteTable, bool]:
    """The vote of the round's results, and whether every worker was given the objective.
    Rounds in which every worker answered the objective are like a debate's rounds: the
    best-supported of them counts (`best_supported`), so answers that degrade after the
    leader's feedback do not outvote a majority found before it."""

    def vote(r: int) -> VoteTable:
        outputs = [(x["worker"], x["output"]) for x in state.get("results", []) if x["round"] == r and x["ok"]]
        return vote_over(outputs, state["objective"])

    def on_objective(r: int) -> bool:
        assigned = [t["assigned_by"] for t in state.get("tasks", []) if t["round"] == r]
        return bool(assigned) and all(by == EVERYONE for by in assigned)

    if not on_objective(round_):
        return vote(round_), False
    rounds = [vote(r) for r in range(1, round_ + 1) if on_objective(r)]
    best = best_supported(rounds)
    return rounds[-1 if best is None else best], True


def next_round(state: HierarchicalState) -> str:
    return END if state.get("stop_reason") else "plan"


def assign_tasks(planned: Sequence[PlannedTask], workers: Sequence[Agent], round_: int) -> list[Task]:
    """Give each planned task to the worker the leader named, else to the best fit by strengths.

    Among equally good fits the least loaded worker wins, so work spreads out.
    """
    by_name = {w.name.lower(): w.name for w in workers}
    load: Counter[str] = Counter()
    tasks: list[Task] = []
    for index, item in enumerate(planned, start=1):
        named = by_name.get(item.worker.strip().lower())
        if named:
            worker, assigned_by = named, "leader"
        else:
            worker, assigned_by = _best_fit(f"{item.title} {item.description}", workers, load), "strengths"
        load[worker] += 1
        tasks.append(
            {
                "id": f"r{round_}-t{index}",
                "round": round_,
                "title": item.title.strip() or f"task {index}",
                "description": item.description.strip(),
                "worker": worker,
                "assigned_by": assigned_by,
            }
        )
    return tasks


def _best_fit(text: str, workers: Sequence[Agent], load: Counter[str]) -> str:
    text = text.lower()

    def score(agent: Agent) -> tuple[int, int]:
        matches = sum(1 for s in (*agent.strengths, agent.role.lower()) if s and s in text)
        return (matches, -load[agent.name])

    return max(workers, key=score).name


def _describe(agent: Agent) -> str:
    strengths = ", ".join(agent.strengths) or "general"
    return f"- {agent.name} ({agent.role}): strengths {strengths}"


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if node in ("plan", "approve") and update.get("tasks"):
        tasks = update["tasks"]
        return tasks_line([(t["title"], t["worker"]) for t in tasks if t["round"] == tasks[-1]["round"]])
    if node == "work" and update.get("results"):
        r = update["results"][0]
        return f"{r['task_id']} {'done' if r['ok'] else 'failed: ' + r['error']}"
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    if update.get("reviews"):
        return "review: " + ("approved" if update["reviews"][-1]["approved"] else "needs another round")
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """The plan with each task's worker and outcome, the approvals and the leader's reviews."""
    state = run.state
    if not state.get("tasks"):
        return []
    outcomes = {x["task_id"]: x for x in state.get("results", [])}
    for writes in run.pending.get("work", []):  # tasks finished in a step that did not complete
        for x in writes.get("results", []) if isinstance(writes, dict) else []:
            outcomes.setdefault(x["task_id"], x)
    if brief:
        rows: list[list[Cell]] = []
        for t in state["tasks"]:
            x = outcomes.get(t["id"])
            outcome = "pending" if x is None else ("ok" if x["ok"] else "failed")
            rows.append([str(t["round"]), shorten(t["title"], 50), t["worker"], t["assigned_by"], outcome])
        blocks: list[Block] = [
            Table(["round", "task", "worker", "assigned by", "result"], rows, title="plan and assignments")
        ]
        for review in state.get("reviews", []):
            verdict = "approved" if review["approved"] else f"not approved: {shorten(review['feedback'], 120)}"
            blocks.append(Text(f"round {review['round']} review: {verdict}"))
        if line := verdict_line(state.get("verdict_check")):
            blocks.append(Text(line))
        return blocks
    rows = []
    for task in state["tasks"]:
        done = outcomes.get(task["id"])
        status = "pending" if done is None else ("ok" if done["ok"] else "failed")
        output = "" if done is None else (done["output"] if done["ok"] else done["error"])
        title = task["title"] + (f"\n{task['description']}" if task.get("description") else "")
        rows.append(
            [str(task["round"]), task["id"], Text(title), task["worker"], task["assigned_by"], status, Text(output)]
        )
    header = ["round", "task", "title", "worker", "assigned by", "status", "output"]
    blocks = [Table(header, rows, title="Plan, assignments and results")]
    if state.get("approvals"):
        approvals: list[list[Cell]] = [
            [str(a["round"]), a["action"], Text(a.get("feedback", ""))] for a in state["approvals"]
        ]
        blocks.append(Table(["round", "decision", "feedback"], approvals, title="Plan approvals"))
    if state.get("reviews"):
        reviews: list[list[Cell]] = [
            [str(r["round"]), "approved" if r["approved"] else "another round", Text(r["feedback"]), Text(r["answer"])]
            for r in state["reviews"]
        ]
        blocks.append(Table(["round", "verdict", "feedback", "answer"], reviews, title="Leader's reviews"))
    if line := verdict_line(state.get("verdict_check")):
        blocks.append(Text(line))
    return blocks


ARCHITECTURE = Architecture(
    name="hierarchical",
    summary="a leader plans, delegates by strengths, consolidates and reviews in rounds",
    build=create_hierarchical,
    options=HierarchicalOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.LEADER,),
)
