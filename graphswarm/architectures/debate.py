"""Multi-agent debate: agents argue over rounds, seeing each other's answers, until they agree.

    START --Send per agent--> argue (parallel) -> assess --+--> verdict -> END
                                ^                          |--> moderate --+--> verdict
                                +--------- next round -----+---------------+

After every round the answers are counted; the debate stops early when agreement
reaches the threshold, or when the optional moderator calls it settled (MAD style).
A judge gives the final verdict, or else the majority answer stands.
References: Du et al. 2023 (3 agents, 2 rounds); Liang et al. 2023 (moderator, judge).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from enum import StrEnum
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import VoteMethod, VoteTable, count_votes, extract_answer, make_ballot
from graphswarm.architectures.collaborative import JudgeChoice
from graphswarm.budget import SwarmContext
from graphswarm.errors import ConfigError
from graphswarm.nodes import Crew, answer_messages, ask, model_retry_policy, prompt, send_each
from graphswarm.state import StopReason, SwarmState

__all__ = ["create_debate", "DebateState", "Topology", "Turn"]


class Topology(StrEnum):
    """Whose previous answers an agent sees."""

    FULL = "full"
    """Everyone's."""
    RING = "ring"
    """Only its two neighbours' (sparse debate: cheaper prompts, slower convergence)."""


class Turn(TypedDict):
    agent: str
    round: int
    text: str


class RoundOutcome(TypedDict):
    round: int
    agreement: float
    winner: str | None
    winning_answer: str | None
    votes: VoteTable


class DebateState(SwarmState):
    round: int
    transcript: Annotated[list[Turn], operator.add]
    rounds: Annotated[list[RoundOutcome], operator.add]
    """Agreement and the vote of each round."""
    moderator_notes: Annotated[list[str], operator.add]


class DebateInput(TypedDict):
    objective: str


class TurnInput(TypedDict):
    objective: str
    agent: str
    round: int
    others: str
    previous: str


class Settled(BaseModel):
    settled: bool = Field(description="true if the debate should stop now")
    reason: str = Field("", description="one sentence")


@dataclass(frozen=True)
class _Debate:
    """The static shape of one debate, bound into its nodes."""

    agents: list[str]
    rounds: int
    threshold: float
    topology: Topology
    moderator: str | None
    judge: str | None
    method: VoteMethod
    embeddings: Embeddings | None


def create_debate(
    agents: Sequence[Agent],
    *,
    model: Any = None,
    base_url: str | None = None,
    rounds: int = 2,
    threshold: float = 1.0,
    topology: Topology | str = Topology.FULL,
    moderator: Agent | None = None,
    judge: Agent | None = None,
    method: VoteMethod | str = VoteMethod.PLURALITY,
    embeddings: Embeddings | None = None,
) -> StateGraph:
    """Build a debate.

    Args:
        agents: the debaters (at least two).
        rounds: the most rounds, the first answers included.
        threshold: share of agents that must agree to stop early (1.0 = all).
        topology: everyone sees everyone ("full") or only neighbours ("ring").
        moderator: an agent asked after each round whether the debate is settled.
        judge: an agent that gives the final verdict; without one the majority answer stands.
        method: how answers are grouped to measure agreement (plurality or semantic).
        embeddings: for semantic grouping.
    """
    agents = check_agents(agents, minimum=2)
    try:
        topology, method = Topology(topology), VoteMethod(method)
    except ValueError as exc:
        raise ConfigError(f"{exc} (topologies: {', '.join(Topology)}; methods: {', '.join(VoteMethod)})") from None
    if not 1 <= rounds <= 20:
        raise ConfigError(f"rounds must be between 1 and 20, got {rounds}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    if method is VoteMethod.SEMANTIC and embeddings is None:
        raise ConfigError("semantic agreement needs embeddings: pass embeddings=... (any LangChain Embeddings)")
    referees = [a for a in (moderator, judge) if a is not None]
    crew = Crew([*agents, *referees], model=model, base_url=base_url)
    check_agents([*agents, *referees])
    debate = _Debate(
        [a.name for a in agents], rounds, threshold, topology,
        moderator.name if moderator else None, judge.name if judge else None, method, embeddings,
    )
    retry = model_retry_policy()

    graph = StateGraph(DebateState, context_schema=SwarmContext, input_schema=DebateInput)
    graph.add_node("argue", partial(argue, crew=crew), input_schema=TurnInput, retry_policy=retry)
    graph.add_node("assess", partial(assess, debate=debate), defer=True)
    graph.add_node("moderate", partial(moderate, crew=crew, debate=debate), retry_policy=retry)
    graph.add_node("verdict", partial(verdict, crew=crew, debate=debate), retry_policy=retry)
    graph.add_conditional_edges(START, partial(first_round, debate=debate), ["argue"])
    graph.add_edge("argue", "assess")
    graph.add_conditional_edges("assess", partial(after_assess, debate=debate), ["argue", "moderate", "verdict"])
    graph.add_conditional_edges("moderate", partial(after_moderate, debate=debate), ["argue", "verdict"])
    graph.add_edge("verdict", END)
    return graph


def first_round(state: DebateState, *, debate: _Debate) -> list[Send]:
    payload = {"objective": state["objective"], "round": 1, "others": "", "previous": ""}
    return send_each("argue", debate.agents, payload)


async def argue(state: TurnInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew) -> dict[str, Any]:
    member = crew[state["agent"]]
    context = ""
    if state["round"] > 1:
        context = prompt("debate_turn").format(round=state["round"], others=state["others"], own=state["previous"])
    messages = answer_messages(member.agent, state["objective"], context=context)
    text, calls = await ask(member, messages, node="argue", runtime=runtime, config=config)
    turn: Turn = {"agent": member.name, "round": state["round"], "text": text}
    return {"transcript": [turn], "calls": calls}


def assess(state: DebateState, *, debate: _Debate) -> dict[str, Any]:
    round_ = max(t["round"] for t in state["transcript"])
    latest = _latest(state, round_)
    ballots = [make_ballot(name, latest[name]) for name in debate.agents if name in latest]
    table = count_votes(ballots, method=debate.method, embeddings=debate.embeddings)
    outcome: RoundOutcome = {
        "round": round_,
        "agreement": table["agreement"],
        "winner": table["winner"],
        "winning_answer": table["winning_answer"],
        "votes": table,
    }
    update: dict[str, Any] = {"round": round_, "rounds": [outcome]}
    if table["winner"] is not None and table["agreement"] >= debate.threshold:
        update["stop_reason"] = StopReason.CONSENSUS.value
    elif round_ >= debate.rounds:
        update["stop_reason"] = StopReason.MAX_ROUNDS.value
    return update


def after_assess(state: DebateState, *, debate: _Debate) -> list[Send] | str:
    if state.get("stop_reason"):
        return "verdict"
    if debate.moderator:
        return "moderate"
    return _next_round(state, debate)


async def moderate(
    state: DebateState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, debate: _Debate
) -> dict[str, Any]:
    member = crew[debate.moderator]
    latest = _latest(state, state["round"])
    answers = "\n\n".join(f"{name}:\n{latest[name]}" for name in debate.agents if name in latest)
    messages = [
        SystemMessage(prompt("debate_moderator").format(name=member.name)),
        HumanMessage(f"Question: {state['objective']}\n\nRound {state['round']} answers:\n\n{answers}"),
    ]
    decision, calls = await ask(member, messages, node="moderate", runtime=runtime, config=config, schema=Settled)
    update: dict[str, Any] = {"moderator_notes": [f"round {state['round']}: {decision.reason}"], "calls": calls}
    if decision.settled:
        update["stop_reason"] = StopReason.MODERATOR.value
    return update


def after_moderate(state: DebateState, *, debate: _Debate) -> list[Send] | str:
    return "verdict" if state.get("stop_reason") else _next_round(state, debate)


async def verdict(
    state: DebateState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, debate: _Debate
) -> dict[str, Any]:
    last = state["rounds"][-1]
    if debate.judge is None:
        return {"final_answer": last["winning_answer"] or ""}
    member = crew[debate.judge]
    transcript = "\n\n".join(f"[round {t['round']}] {t['agent']}:\n{t['text']}" for t in state["transcript"])
    messages = [
        SystemMessage(prompt("judge").format(name=member.name)),
        HumanMessage(f"Question: {state['objective']}\n\nThe debate:\n\n{transcript}"),
    ]
    choice, calls = await ask(member, messages, node="verdict", runtime=runtime, config=config, schema=JudgeChoice)
    return {"final_answer": choice.answer, "calls": calls}


def _next_round(state: DebateState, debate: _Debate) -> list[Send]:
    latest = _latest(state, state["round"])
    names = debate.agents
    sends = []
    for i, name in enumerate(names):
        if debate.topology is Topology.RING:
            peers = {names[(i - 1) % len(names)], names[(i + 1) % len(names)]} - {name}
        else:
            peers = set(names) - {name}
        others = "\n\n".join(f"{p}: {latest[p]}" for p in names if p in peers and p in latest)
        payload = {
            "objective": state["objective"],
            "agent": name,
            "round": state["round"] + 1,
            "others": others,
            "previous": extract_answer(latest.get(name, "")) or "(none)",
        }
        sends.append(Send("argue", payload))
    return sends


def _latest(state: DebateState, round_: int) -> dict[str, str]:
    return {t["agent"]: t["text"] for t in state["transcript"] if t["round"] == round_}
