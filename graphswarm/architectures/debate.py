"""Multi-agent debate: agents argue over rounds, seeing each other's answers, until they agree.

    START --Send per agent--> argue (parallel) -> assess --+--> verdict -> END
                                ^                          |--> moderate --+--> verdict
                                +--------- next round -----+---------------+

After every round the answers are counted; the debate stops early when agreement
reaches the threshold, or when the optional moderator calls it settled (MAD style).
The verdict is never worse than the agents' own vote: without a judge the best-supported
round's vote stands (`best_supported`: the round whose winner has the most votes, the
earliest among equals, so a round-1 majority survives later rounds that degrade); a judge's
verdict with no extractable answer, or one that overrules a clear majority of that vote
without a reason, gives way to it (`check_verdict`, recorded in `verdict_check`).
References: Du et al. 2023 (3 agents, 2 rounds); Liang et al. 2023 (moderator, judge).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import VerdictCheck, VoteMethod, VoteTable, best_supported, check_verdict, extract_answer
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import (
    AgentInput,
    ObjectiveInput,
    RoundAnswer,
    answer_question,
    count_round,
    judge_choice,
    latest_answers,
    reply_or_none,
    send_each,
    verdict_line,
)
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.embeddings import deferred_embeddings
from graphswarm.graph_nodes import add_node, objective_of
from graphswarm.nodes import Crew, ask, model_retry_policy, prompt
from graphswarm.state import StopReason, SwarmState
from graphswarm.view import (
    Block,
    Cell,
    Heading,
    Run,
    Table,
    Text,
    View,
    agreement_chart,
    shorten,
    vote_progress,
    vote_table,
)

__all__ = ["create_debate", "DebateOptions", "DebateState", "Topology", "Turn"]


class Topology(StrEnum):
    """Whose previous answers an agent sees."""

    FULL = "full"
    """Everyone's."""
    RING = "ring"
    """Only its two neighbours' (sparse debate: cheaper prompts, slower convergence)."""


Turn = RoundAnswer
"""One agent's argument in one round."""


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
    verdict_check: VerdictCheck
    """The verdict (the judge's, or none) checked against the best-supported round's vote."""
    vote_round: int
    """The round whose vote the verdict was checked against (`best_supported`)."""


class DebateOptions(SwarmOptions):
    """The debate's options (`graphswarm options debate`)."""

    model_config = ConfigDict(extra="forbid", title="debate")

    rounds: int = Field(2, ge=1, le=20, description="the most rounds, the first answers included")
    threshold: float = Field(1.0, gt=0, le=1, description="share of agents that must agree to stop early (1 = all)")
    topology: Topology = Field(Topology.FULL, description="everyone sees everyone (full) or only neighbours (ring)")
    method: VoteMethod = Field(VoteMethod.PLURALITY, description="how answers are grouped to measure agreement")
    embeddings: Embeddings | str | None = Field(
        None,
        description="for semantic agreement: minilm, openai[:model], a name on --base-url (default: the best available)",
    )

    @property
    def needs_embeddings(self) -> bool:
        return self.method is VoteMethod.SEMANTIC


class TurnInput(AgentInput):
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
    moderator: Agent | None = None,
    judge: Agent | None = None,
    options: DebateOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[DebateState, SwarmContext, ObjectiveInput, DebateState]:
    """Build a debate.

    Args:
        agents: the debaters (at least two).
        moderator: an agent asked after each round whether the debate is settled.
        judge: an agent that gives the final verdict; without one the majority answer stands.
        options: a `DebateOptions`, or its fields as keyword arguments
            (`rounds=3, threshold=0.67, topology="ring"`).
    """
    opts = DebateOptions.check(options, **kwargs)
    agents = check_agents(agents, minimum=2)
    method = opts.method
    embeddings = deferred_embeddings(opts.embeddings, base_url=base_url) if method is VoteMethod.SEMANTIC else None
    referees = [a for a in (moderator, judge) if a is not None]
    crew = Crew([*agents, *referees], model=model, base_url=base_url)
    check_agents([*agents, *referees])
    debate = _Debate(
        [a.name for a in agents],
        opts.rounds,
        opts.threshold,
        opts.topology,
        moderator.name if moderator else None,
        judge.name if judge else None,
        method,
        embeddings,
    )
    retry = model_retry_policy()

    graph = StateGraph(DebateState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "argue", partial(argue, crew=crew), input_schema=TurnInput, retry_policy=retry)
    add_node(graph, "assess", partial(assess, debate=debate), defer=True)
    add_node(graph, "moderate", partial(moderate, crew=crew, debate=debate), retry_policy=retry)
    add_node(graph, "verdict", partial(verdict, crew=crew, debate=debate), retry_policy=retry)
    graph.add_conditional_edges(START, partial(first_round, debate=debate), ["argue"])
    graph.add_edge("argue", "assess")
    graph.add_conditional_edges("assess", partial(after_assess, debate=debate), ["argue", "moderate", "verdict"])
    graph.add_conditional_edges("moderate", partial(after_moderate, debate=debate), ["argue", "verdict"])
    graph.add_edge("verdict", END)
    return graph


def first_round(state: DebateState, *, debate: _Debate) -> list[Send]:
    payload = {"objective": objective_of(state), "round": 1, "others": "", "previous": ""}
    return send_each("argue", debate.agents, payload)


async def argue(
    state: TurnInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew
) -> dict[str, Any]:
    context = ""
    if state["round"] > 1:
        context = prompt("debate_turn").format(round=state["round"], others=state["others"], own=state["previous"])
    text, calls = await answer_question(
        crew[state["agent"]], state["objective"], context=context, node="argue", runtime=runtime, config=config
    )
    turn: Turn = {"agent": state["agent"], "round": state["round"], "text": text}
    return {"transcript": [turn], "calls": calls}


def assess(state: DebateState, *, debate: _Debate) -> dict[str, Any]:
    round_, table = count_round(
        state["transcript"], debate.agents, question=objective_of(state),
        method=debate.method, embeddings=debate.embeddings,
    )  # fmt: skip
    outcome: RoundOutcome = {
        "round": round_,
        "agreement": table["agreement"],
        "winner": table["winner"],
        "winning_answer": table["winning_answer"],
        "votes": table,
    }
    update: dict[str, Any] = {"round": round_, "rounds": [outcome]}
    if table["winner"] is not None and not table["tie"] and table["agreement"] >= debate.threshold:
        update["stop_reason"] = StopReason.CONSENSUS.value
    elif round_ >= debate.rounds:
        # Without a judge a tied last round is settled by the `first` rule: say so.
        tie_broken = table["tie"] and debate.judge is None
        update["stop_reason"] = (StopReason.TIE_BROKEN_BY_FIRST if tie_broken else StopReason.MAX_ROUNDS).value
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
    assert debate.moderator is not None  # the node exists only with a moderator
    member = crew[debate.moderator]
    latest = latest_answers(state["transcript"], state["round"])
    answers = "\n\n".join(f"{name}:\n{latest[name]}" for name in debate.agents if name in latest)
    messages = [
        SystemMessage(prompt("debate_moderator").format(name=member.name)),
        HumanMessage(f"Question: {state['objective']}\n\nRound {state['round']} answers:\n\n{answers}"),
    ]
    decision, calls = await reply_or_none(
        ask(member, messages, node="moderate", runtime=runtime, config=config, schema=Settled)
    )
    reason = "the moderator's reply could not be read" if decision is None else decision.reason
    update: dict[str, Any] = {"moderator_notes": [f"round {state['round']}: {reason}"], "calls": calls}
    if decision is not None and decision.settled:
        update["stop_reason"] = StopReason.MODERATOR.value
    return update


def after_moderate(state: DebateState, *, debate: _Debate) -> list[Send] | str:
    return "verdict" if state.get("stop_reason") else _next_round(state, debate)


async def verdict(
    state: DebateState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, debate: _Debate
) -> dict[str, Any]:
    rounds = state["rounds"]
    index = best_supported([o["votes"] for o in rounds])
    chosen = rounds[-1] if index is None else rounds[index]
    update: dict[str, Any] = {"vote_round": chosen["round"]}
    if state.get("stop_reason") == StopReason.TIE_BROKEN_BY_FIRST and not chosen["votes"]["tie"]:
        update["stop_reason"] = StopReason.MAX_ROUNDS.value  # an earlier untied round's vote stands
    if debate.judge is None:
        # No verdict but the vote: the best-supported round's winner.
        check = check_verdict(chosen["winning_answer"], chosen["votes"], reason="the vote", question=state["objective"])
    else:
        transcript = "\n\n".join(f"[round {t['round']}] {t['agent']}:\n{t['text']}" for t in state["transcript"])
        choice, update["calls"] = await reply_or_none(judge_choice(
            crew[debate.judge], state["objective"], f"The debate:\n\n{transcript}",
            node="verdict", runtime=runtime, config=config,
        ))  # fmt: skip
        answer, reason = (choice.answer, choice.reason) if choice else (None, "")
        check = check_verdict(answer, chosen["votes"], reason=reason, question=state["objective"])
    return {**update, "final_answer": check["answer"], "verdict_check": check}


def _next_round(state: DebateState, debate: _Debate) -> list[Send]:
    latest = latest_answers(state["transcript"], state["round"])
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


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if node == "assess" and update.get("rounds"):
        return vote_progress(update["rounds"][-1]["votes"], update.get("stop_reason"))
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """The transcript round by round with each round's vote, the agreement per round
    (against the threshold that stops the debate early), and the moderator's notes."""
    state = run.state
    rounds = state.get("rounds", [])
    verdict: list[Block] = [Text(line)] if (line := verdict_line(state.get("verdict_check"))) else []
    if brief:
        return [
            Text(
                f"round {o['round']}: agreement {o['agreement']:.0%}, leading: {shorten(o['winning_answer'] or '-', 80)}"
            )
            for o in rounds
        ] + verdict
    if not state.get("transcript"):
        return []
    outcomes = {o["round"]: o for o in rounds}
    blocks: list[Block] = []
    for number in sorted({t["round"] for t in state["transcript"]}):
        turns: list[list[Cell]] = [[t["agent"], Text(t["text"])] for t in state["transcript"] if t["round"] == number]
        blocks.append(Table(["agent", "argument"], turns, title=f"Round {number}"))
        if outcome := outcomes.get(number):
            blocks.append(vote_table(outcome["votes"]))
    if rounds:
        threshold = (run.record.spec.get("options") or {}).get(
            "threshold", DebateOptions.model_fields["threshold"].default
        )
        agreement: list[list[Cell]] = [
            [str(o["round"]), f"{o['agreement']:.0%}", Text(o.get("winning_answer") or "-")] for o in rounds
        ]
        blocks += [
            Heading("Agreement per round"),
            agreement_chart(rounds, threshold=float(threshold)),
            Table(["round", "agreement", "leading answer"], agreement, compact=True),
        ]
    if state.get("moderator_notes"):
        notes: list[list[Cell]] = [[Text(n)] for n in state["moderator_notes"]]
        blocks.append(Table(["note"], notes, title="Moderator"))
    if verdict:
        blocks += [Heading("Verdict"), *verdict]
    return blocks


ARCHITECTURE = Architecture(
    name="debate",
    summary="agents argue over rounds, seeing each other's answers, until they agree; then a verdict",
    build=create_debate,
    options=DebateOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.MODERATOR, Role.JUDGE),
    min_agents=2,
)
