"""The shapes the architectures are made of, written once.

An architecture module picks the shapes its graph is made of and names its nodes (its
runs, checkpoints and views refer to those names); the shapes themselves live here:

- `ObjectiveInput`: what every graph is started with; `AgentInput`: what each `Send` of
  a fan-out gives its node.
- An agent answering in a fan-out (`send_each`, `answer_question`): one `Send` per
  agent, and each agent answers on its own. It sees the question and the context its
  architecture gives it, and nothing recalled from the other agents' notes in shared
  memory, so what the topology hides (the other answers of an independent round, the
  far side of a ring, the particles a particle is not a neighbour of) stays hidden; it
  posts nothing.
- Counting a round of answers (`RoundAnswer`, `latest_answers`, `count_round`).
- A judge (`DEFAULT_JUDGE`): choosing the best answer (`judge_choice`) or scoring every
  candidate (`judge_scores`).
- A plan (`PlannedTask`, `Plan`), which an architecture extends with who does a task,
  and a task given to one agent (`task_messages`).
- A worker under a join policy (`JoinPolicy`, `worker_outcome`).
- A verdict never worse than the agents' own vote (`vote_over`, `verdict_line`), also
  when the judge's or leader's reply cannot be read at all (`reply_or_none`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Annotated, Any, NotRequired, TypeVar

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from graphswarm.agents import Agent, agent_seed, use_seed
from graphswarm.aggregation import VerdictCheck, VoteTable, count_votes, make_ballot
from graphswarm.budget import SwarmContext
from graphswarm.errors import StructuredOutputError
from graphswarm.nodes import MAX_ATTEMPTS, Member, Pause, ask, clip, final_attempt, is_transient, prompt
from graphswarm.state import CallRecord, StopReason

__all__ = [
    "DEFAULT_JUDGE",
    "AgentInput",
    "CandidateScore",
    "JoinPolicy",
    "JudgeChoice",
    "ObjectiveInput",
    "Plan",
    "PlannedTask",
    "RoundAnswer",
    "Scores",
    "answer_messages",
    "answer_question",
    "count_round",
    "judge_choice",
    "judge_scores",
    "latest_answers",
    "pause_for_failure",
    "reply_or_none",
    "seeded",
    "send_each",
    "task_messages",
    "verdict_line",
    "vote_over",
    "worker_outcome",
]

T = TypeVar("T")

DEFAULT_JUDGE = Agent(name="judge", role="impartial judge")
"""The judge of an architecture that is given none."""
FAILURE_CLIP = 300
"""Characters of a worker's error kept in state."""


class ObjectiveInput(TypedDict):
    """What every graph is started with: an objective, or chat messages (as LangGraph
    takes them: LangChain messages or dicts) whose last human message is the objective."""

    objective: NotRequired[str]
    """The question or goal the swarm works on."""
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    """A conversation; without `objective`, its last human message is the objective."""


class AgentInput(ObjectiveInput):
    """What one `Send` of a fan-out gives its node: the objective and the agent."""

    agent: str
    """The name of the agent that runs the node."""


# -- an agent answering in a fan-out ----------------------------------------------


class RoundAnswer(TypedDict):
    """One agent's answer in one round."""

    agent: str
    round: int
    text: str


def send_each(node: str, agents: Sequence[str], payload: dict[str, Any]) -> list[Send]:
    """One `Send` to `node` per agent, each with the same payload plus the agent's name."""
    return [Send(node, {**payload, "agent": name}) for name in agents]


def answer_messages(agent: Agent, question: str, *, context: str = "") -> list[BaseMessage]:
    """The messages asking one agent for an answer that ends with a final-answer line."""
    system = prompt("answer").format(name=agent.name, role=agent.role, instructions=agent.instructions)
    human = f"Question: {question}" + (f"\n\n{context}" if context else "")
    return [SystemMessage(system), HumanMessage(human)]


async def answer_question(
    member: Member,
    question: str,
    *,
    context: str = "",
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None = None,
) -> tuple[str, list[CallRecord]]:
    """One agent's answer to `question`, seeing only `context` besides it (its peers'
    answers, its own earlier one, guidance: whatever the architecture shows it).

    Nothing is recalled from or posted to shared memory but the objective's parts.
    The agent samples with its own seed in this run (`agent_seed`), so agents asked the
    same question do not all give the same sample.
    """
    messages = answer_messages(member.agent, question, context=context)
    with seeded(config, member.name):
        return await ask(member, messages, node=node, runtime=runtime, config=config)


def seeded(config: RunnableConfig | None, agent: str) -> AbstractContextManager[None]:
    """Model requests inside the block sample with `agent`'s seed in this run (the run id
    is the config's thread id): `agent_seed(run_id, agent)`."""
    run = str(((config or {}).get("configurable") or {}).get("thread_id", ""))
    return use_seed(agent_seed(run, agent))


def latest_answers(answers: Sequence[RoundAnswer], round_: int) -> dict[str, str]:
    """Each agent's answer in round `round_`."""
    return {a["agent"]: a["text"] for a in answers if a["round"] == round_}


def count_round(
    answers: Sequence[RoundAnswer],
    agents: Sequence[str],
    *,
    question: str | None = None,
    weights: Mapping[str, float] | None = None,
    **counting: Any,
) -> tuple[int, VoteTable]:
    """The latest round and its vote: a ballot per agent that answered in it, in the
    agents' order, normalised against `question`, counted by `count_votes(ballots, **counting)`."""
    round_ = max(a["round"] for a in answers)
    latest = latest_answers(answers, round_)
    weights = weights or {}
    ballots = [
        make_ballot(name, latest[name], weight=weights.get(name, 1.0), question=question)
        for name in agents
        if name in latest
    ]
    return round_, count_votes(ballots, **counting)


def vote_over(outputs: Sequence[tuple[str, str]], question: str | None = None) -> VoteTable:
    """The counted plurality vote over (agent, output) pairs, in their order, normalised
    against `question`: what a judge's or leader's verdict is checked against
    (`aggregation.check_verdict`)."""
    return count_votes([make_ballot(agent, output, question=question) for agent, output in outputs])


UNPLANNED_TASK = "Answer the objective (the plan could not be read)"
"""The one task of a run whose planner's reply could not be read: the objective itself."""


async def reply_or_none(asked: Awaitable[tuple[T, list[CallRecord]]]) -> tuple[T | None, list[CallRecord]]:
    """A judge's, moderator's, leader's or planner's structured reply, or None when the
    model could not give one that fits its schema even when re-asked
    (`StructuredOutputError`): the run then goes on without it (on the agents' own
    answers, or with the objective as the one task), and the requests it sent are still
    counted."""
    try:
        return await asked
    except StructuredOutputError as exc:
        return None, exc.calls


def verdict_line(check: VerdictCheck | None) -> str:
    """One line on a checked verdict for views: whether the vote replaced it, and why."""
    if not check:
        return ""
    vote = f"{check['vote_answer']} ({check['votes']:g} of {check['ballots']})" if check["vote_label"] else "none"
    if check["fell_back"]:
        why = {"no_answer": "it had no extractable answer", "overruled_majority": "it overruled a clear majority"}
        reason = why.get(check["reason"] or "", check["reason"] or "")
        return f"verdict replaced by the agents' vote {vote}: {reason}"
    return f"verdict kept; the agents' vote: {vote}"


# -- a judge ----------------------------------------------------------------------


class JudgeChoice(BaseModel):
    answer: str = Field(description="the best answer, in full")
    reason: str = Field("", description="why it is the best")


async def judge_choice(
    judge: Member,
    question: str,
    material: str,
    *,
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None = None,
) -> tuple[JudgeChoice, list[CallRecord]]:
    """A judge gives the best answer to `question` from `material` (a tied vote, a debate)."""
    messages = [
        SystemMessage(prompt("judge").format(name=judge.name)),
        HumanMessage(f"Question: {question}\n\n{material}"),
    ]
    return await ask(judge, messages, node=node, runtime=runtime, config=config, schema=JudgeChoice)


class CandidateScore(BaseModel):
    candidate: int = Field(description="the candidate id")
    score: float = Field(description="0 (worst) to 10 (best)")
    rationale: str = Field("", description="one sentence")


class Scores(BaseModel):
    scores: list[CandidateScore]


async def judge_scores(
    judge: Member,
    question: str,
    candidates: Sequence[str],
    *,
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None = None,
) -> tuple[list[tuple[float, str]], list[CallRecord]]:
    """A judge scores every candidate, unnamed, in one call: (score, rationale) per candidate.

    Candidates the judge skipped score 0.
    """
    listing = "\n\n".join(f"Candidate {i}:\n{text}" for i, text in enumerate(candidates, start=1))
    messages = [
        SystemMessage(prompt("judge_rank").format(name=judge.name)),
        HumanMessage(f"Question: {question}\n\n{listing}"),
    ]
    scores, calls = await ask(judge, messages, node=node, runtime=runtime, config=config, schema=Scores)
    by_id = {s.candidate: s for s in scores.scores}
    result = []
    for i in range(1, len(candidates) + 1):
        s = by_id.get(i)
        result.append((float(s.score), s.rationale) if s else (0.0, "not scored by the judge"))
    return result, calls


# -- a plan -----------------------------------------------------------------------
# (Structured-output models have no docstrings: a docstring would be sent to the model
# as the schema's description.) An architecture that says who does a task subclasses
# `PlannedTask` with that field and narrows `Plan.tasks` to its subclass.


class PlannedTask(BaseModel):
    title: str = Field(description="a short name for the task")
    description: str = Field("", description="what exactly to do")


class Plan(BaseModel):
    tasks: Sequence[PlannedTask] = Field(min_length=1)


def task_messages(
    template: str, agent: Agent, objective: str, task: Mapping[str, Any], *, context: str = ""
) -> list[BaseMessage]:
    """The messages giving `agent` one task (with a "title" and a "description"): the
    prompt `template`, filled with who the agent is and the objective, then the task
    and any `context`."""
    system = prompt(template).format(
        name=agent.name,
        role=agent.role,
        strengths=", ".join(agent.strengths) or "general",
        instructions=agent.instructions,
        objective=objective,
    )
    request = f"Your task: {task['title']}\n{task['description']}".strip()
    return [SystemMessage(system), HumanMessage(request + (f"\n\n{context}" if context else ""))]


# -- a worker under a join policy -------------------------------------------------


class JoinPolicy(StrEnum):
    """What happens when a parallel worker still fails after its retries."""

    FAIL_FAST = "fail_fast"
    """The run fails at once (in-flight siblings are cancelled); resume retries the failed worker."""
    CONTINUE = "continue"
    """The failure is recorded and the others' results are used."""
    WAIT = "wait"
    """The others finish, then the run pauses; resume retries only the failed workers."""


async def worker_outcome(
    work: Awaitable[tuple[str, list[CallRecord]]],
    *,
    agent: str,
    node: str,
    runtime: Runtime[SwarmContext],
    join: JoinPolicy = JoinPolicy.CONTINUE,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float | None = None,
) -> tuple[str, list[CallRecord], str]:
    """A worker's output, calls and error ("" when it succeeded) under a join policy.

    A transient error is raised again while the node has retries left (its
    `RetryPolicy` tries again); a failure after that fails the run (`fail_fast`), pauses
    it (`wait`) or is returned as the error (`continue`). `timeout` caps the work's
    seconds; running out counts as a transient failure ("timed out").
    """
    try:
        output, calls = await (asyncio.wait_for(work, timeout) if timeout else work)
    except GraphBubbleUp:  # an interrupt (a budget pause) must reach LangGraph
        raise
    except Exception as exc:
        if (is_transient(exc) and not final_attempt(runtime, max_attempts)) or join is JoinPolicy.FAIL_FAST:
            raise
        if join is JoinPolicy.WAIT:
            pause_for_failure(agent, node, exc)
        error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
        return "", [], clip(error, FAILURE_CLIP)
    return output, calls, ""


def pause_for_failure(agent: str, node: str, error: BaseException) -> None:
    """Pause the run over a worker's failure; resuming runs the worker again."""
    pause: Pause = {
        "stop_reason": StopReason.WORKER_FAILED.value,
        "detail": f"{type(error).__name__}: {error}",
        "agent": agent,
        "node": node,
    }
    interrupt(pause)
