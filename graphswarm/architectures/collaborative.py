"""Collaborative swarm: agents answer in parallel, optionally revise, and a counted vote decides.

    START --Send per agent--> answer (parallel) -> tally --+--> END
                                ^                          |--> judge -> END   (tie, judge decides)
                                +--- sharing round --------+

With no sharing rounds this is sampling-and-voting ("More agents is all you need").
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import ConfigDict, Field

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import TieBreak, VoteMethod, VoteTable
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import (
    DEFAULT_JUDGE,
    AgentInput,
    ObjectiveInput,
    RoundAnswer,
    answer_question,
    count_round,
    judge_choice,
    reply_or_none,
    send_each,
)
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.embeddings import deferred_embeddings
from graphswarm.graph_nodes import add_node, objective_of
from graphswarm.nodes import Crew, model_retry_policy, prompt
from graphswarm.state import StopReason, SwarmState
from graphswarm.view import Block, Cell, Heading, Run, Table, Text, View, agreement_chart, vote_progress, vote_table

__all__ = ["create_collaborative", "CollaborativeOptions", "CollaborativeState", "AnswerRecord"]

AnswerRecord = RoundAnswer
"""One agent's answer in one round."""


class CollaborativeState(SwarmState):
    round: int
    answers: Annotated[list[AnswerRecord], operator.add]
    """Every answer of every round."""
    votes: Annotated[list[VoteTable], operator.add]
    """The vote table of each round."""


class CollaborativeOptions(SwarmOptions):
    """The collaborative swarm's options (`graphswarm options collaborative`)."""

    model_config = ConfigDict(extra="forbid", title="collaborative")

    rounds: int = Field(
        0, ge=0, le=20, description="sharing rounds after the first answers, each agent seeing its peers' tally"
    )
    method: VoteMethod = Field(
        VoteMethod.PLURALITY, description="plurality on normalised answers, semantic clusters, or weighted votes"
    )
    threshold: float = Field(
        0.85, gt=0, le=1, description="cosine similarity that puts two answers in one cluster (semantic)"
    )
    tie_break: TieBreak = Field(
        TieBreak.FIRST, description="first answer wins, a judge decides, or a new round (while rounds last)"
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="vote weight per agent name (weighted; default 1)"
    )
    embeddings: Embeddings | str | None = Field(
        None,
        description="for semantic voting: minilm, openai[:model], a name on --base-url (default: the best available)",
    )

    @property
    def needs_embeddings(self) -> bool:
        return self.method is VoteMethod.SEMANTIC


class AnswerInput(AgentInput):
    round: int
    tally: str
    """The previous round's answers with their counts ("" in round 1)."""
    previous: str
    """This agent's answer in the previous round ("" in round 1)."""


@dataclass(frozen=True)
class _Vote:
    """The static shape of one collaborative swarm, bound into its nodes."""

    agents: list[str]
    judge: str
    rounds: int
    method: VoteMethod
    threshold: float
    tie_break: TieBreak
    embeddings: Embeddings | None
    weights: dict[str, float]


def create_collaborative(
    agents: Sequence[Agent],
    *,
    model: Any = None,
    base_url: str | None = None,
    judge: Agent | None = None,
    options: CollaborativeOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[CollaborativeState, SwarmContext, ObjectiveInput, CollaborativeState]:
    """Build a collaborative swarm that decides by a counted vote.

    Args:
        agents: the voters (at least two; personas and models may differ).
        judge: the agent that breaks ties under `tie_break="judge"`.
        options: a `CollaborativeOptions`, or its fields as keyword arguments
            (`rounds=1, method="semantic", embeddings=...`): with `rounds` every agent
            sees the tally of its peers' answers and may revise (0 = independent answers
            only); semantic voting takes any LangChain `Embeddings` or a name.
    """
    opts = CollaborativeOptions.check(options, **kwargs)
    agents = check_agents(agents, minimum=2)
    method, tie_break = opts.method, opts.tie_break
    embeddings = deferred_embeddings(opts.embeddings, base_url=base_url) if method is VoteMethod.SEMANTIC else None
    judge = judge or DEFAULT_JUDGE
    crew = Crew([*agents, *([judge] if tie_break is TieBreak.JUDGE else [])], model=model, base_url=base_url)
    vote = _Vote(
        [a.name for a in agents],
        judge.name,
        opts.rounds,
        method,
        opts.threshold,
        tie_break,
        embeddings,
        dict(opts.weights),
    )
    retry = model_retry_policy()

    graph = StateGraph(CollaborativeState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "answer", partial(answer, crew=crew), input_schema=AnswerInput, retry_policy=retry)
    add_node(graph, "tally", partial(tally, vote=vote), defer=True)
    add_node(graph, "judge", partial(judge_tie, crew=crew, vote=vote), retry_policy=retry)
    graph.add_conditional_edges(START, partial(first_round, vote=vote), ["answer"])
    graph.add_edge("answer", "tally")
    graph.add_conditional_edges("tally", partial(after_tally, vote=vote), ["answer", "judge", END])
    graph.add_edge("judge", END)
    return graph


def first_round(state: CollaborativeState, *, vote: _Vote) -> list[Send]:
    return send_each("answer", vote.agents, {"objective": objective_of(state), "round": 1, "tally": "", "previous": ""})


async def answer(
    state: AnswerInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew
) -> dict[str, Any]:
    context = ""
    if state["tally"]:
        context = prompt("collaborative_share").format(tally=state["tally"], own=state["previous"] or "(none)")
    text, calls = await answer_question(
        crew[state["agent"]], state["objective"], context=context, node="answer", runtime=runtime, config=config
    )
    record: AnswerRecord = {"agent": state["agent"], "round": state["round"], "text": text}
    return {"answers": [record], "calls": calls}


def tally(state: CollaborativeState, *, vote: _Vote) -> dict[str, Any]:
    round_, table = count_round(
        state["answers"], vote.agents, question=objective_of(state), weights=vote.weights,
        method=vote.method, embeddings=vote.embeddings, threshold=vote.threshold, tie_break=vote.tie_break,
    )  # fmt: skip
    update: dict[str, Any] = {"round": round_, "votes": [table]}
    more_rounds = round_ <= vote.rounds
    if table["winner"] is None and not table["tie"]:
        update["stop_reason"] = StopReason.MAX_ROUNDS.value  # everyone abstained
    elif table["winner"] is None:
        # A tie left open for the judge or a new round; with no round left, the first answer stands.
        if vote.tie_break is TieBreak.NEW_ROUND and not more_rounds:
            update["final_answer"] = table["clusters"][0]["answers"][0]
            update["stop_reason"] = StopReason.TIE_BROKEN_BY_FIRST.value
    elif table["agreement"] >= 1.0 or not more_rounds:
        update["final_answer"] = table["winning_answer"]
        update["stop_reason"] = _decided_by(table).value
    return update


def _decided_by(table: VoteTable) -> StopReason:
    """Why a vote with a winner ends: all agreed, a tie broken by the `first` rule, or a majority."""
    if table["agreement"] >= 1.0:
        return StopReason.CONSENSUS
    return StopReason.TIE_BROKEN_BY_FIRST if table["tie"] else StopReason.MAJORITY


def after_tally(state: CollaborativeState, *, vote: _Vote) -> list[Send] | str:
    if state.get("stop_reason"):
        return END
    table = state["votes"][-1]
    if table["winner"] is None and vote.tie_break is TieBreak.JUDGE:
        return "judge"
    summary = "\n".join(f"- {c['answers'][0]} ({len(c['agents'])} agents)" for c in table["clusters"])
    previous = {b["agent"]: b["answer"] or "" for b in table["ballots"]}
    payload = {"objective": state["objective"], "round": state["round"] + 1, "tally": summary}
    return [Send("answer", {**payload, "agent": name, "previous": previous.get(name, "")}) for name in vote.agents]


async def judge_tie(
    state: CollaborativeState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, vote: _Vote
) -> dict[str, Any]:
    table = state["votes"][-1]
    tied = [c for c in table["clusters"] if c["label"] in table["tied"]]
    options = "\n\n".join(f"Answer {i}: {c['answers'][0]}" for i, c in enumerate(tied, start=1))
    choice, calls = await reply_or_none(judge_choice(
        crew[vote.judge], state["objective"], f"The vote is tied between:\n\n{options}",
        node="judge", runtime=runtime, config=config,
    ))  # fmt: skip
    if choice is None:  # the judge's reply could not be read: the first of the tied answers
        return {
            "final_answer": tied[0]["answers"][0],
            "stop_reason": StopReason.TIE_BROKEN_BY_FIRST.value,
            "calls": calls,
        }
    return {"final_answer": choice.answer, "stop_reason": StopReason.JUDGED.value, "calls": calls}


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if node == "tally" and update.get("votes"):
        return vote_progress(update["votes"][-1], update.get("stop_reason"))
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """Each round's answers and counted vote, and the agreement per round."""
    state = run.state
    votes = state.get("votes", [])
    if brief:
        return [vote_table(votes[-1], title=f"vote (round {state.get('round', 1)})", brief=True)] if votes else []
    if not state.get("answers") or not votes:
        return []
    blocks: list[Block] = []
    for number, table in enumerate(votes, start=1):
        ballots = {b["agent"]: b for b in table["ballots"]}
        rows: list[list[Cell]] = [
            [a["agent"], Text(a["text"]), ballots.get(a["agent"], {}).get("label") or "(abstained)"]
            for a in state["answers"]
            if a["round"] == number
        ]
        blocks += [Heading(f"Round {number}"), Table(["agent", "answer", "counted as"], rows), vote_table(table)]
    if len(votes) > 1:
        blocks.append(agreement_chart(votes))
    return blocks


ARCHITECTURE = Architecture(
    name="collaborative",
    summary="agents answer in parallel (with --rounds, revise after seeing the tally), and a counted vote decides",
    build=create_collaborative,
    options=CollaborativeOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.JUDGE,),
    min_agents=2,
    default_agents=5,
)
