"""Competitive swarm: N agents answer independently; the best answer is selected.

    START --Send per agent--> compete (parallel) -> select -> END

Selection: a judge model scores every candidate (or compares them in pairs, knockout
style), a user scoring function, or the agents' self-reported confidence. State holds
the ranked table with scores and rationale; the winner's answer is the final answer,
unless it has no extractable answer or overrules a clear majority of the entries without
a rationale, or the judge's reply could not be read: then the counted vote of the
entries stands (`verdict_check` says so).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import VerdictCheck, check_verdict, extract_answer
from graphswarm.architectures.base import Architecture, Role
from graphswarm.architectures.blocks import (
    DEFAULT_JUDGE,
    AgentInput,
    ObjectiveInput,
    answer_question,
    judge_scores,
    reply_or_none,
    send_each,
    verdict_line,
    vote_over,
)
from graphswarm.architectures.options import SwarmOptions
from graphswarm.budget import SwarmContext
from graphswarm.graph_nodes import add_node, objective_of
from graphswarm.nodes import Crew, ask, model_retry_policy, prompt
from graphswarm.state import CallRecord, StopReason, SwarmState
from graphswarm.view import Block, Cell, Run, Table, Text, View, shorten

__all__ = ["create_competitive", "CompetitiveOptions", "CompetitiveState", "Selection", "Entry", "Ranked"]

CONFIDENCE_NOTE = "After the final answer line, add one line: Confidence: <a number from 0 to 1>"
UNREAD = "the judge's reply could not be read"
_CONFIDENCE = re.compile(r"confidence\s*[:=]\s*([0-9]*\.?[0-9]+)\s*(%?)", re.IGNORECASE)


class Selection(StrEnum):
    JUDGE = "judge"
    """A judge scores every candidate in one call."""
    PAIRWISE = "pairwise"
    """A judge compares candidates two at a time; winners go on (N - 1 judge calls)."""
    SCORER = "scorer"
    """A Python function `scorer(objective, answer) -> float` scores each answer."""
    CONFIDENCE = "confidence"
    """Each agent's own confidence, asked for in its answer."""


class Entry(TypedDict):
    agent: str
    text: str
    answer: str
    confidence: float | None


class Ranked(TypedDict):
    rank: int
    agent: str
    score: float
    rationale: str
    answer: str


class CompetitiveState(SwarmState):
    entries: Annotated[list[Entry], operator.add]
    ranking: list[Ranked]
    winner: str
    verdict_check: VerdictCheck
    """The top-ranked answer checked against the counted vote of all the entries."""


class CompetitiveOptions(SwarmOptions):
    """The competitive swarm's options (`graphswarm options competitive`)."""

    model_config = ConfigDict(extra="forbid", title="competitive")

    selection: Selection = Field(
        Selection.JUDGE, description="who picks the best answer: a judge, in pairs, a scorer, or confidence"
    )
    # Given from Python only: a served or remote run cannot send a function.
    scorer: SkipJsonSchema[Callable[[str, str], float] | None] = Field(
        None, description="scorer(objective, answer) -> float, higher is better (selection scorer; Python only)"
    )

    @model_validator(mode="after")
    def _scorer_for_scorer_selection(self) -> CompetitiveOptions:
        if self.selection is Selection.SCORER and self.scorer is None:
            raise ValueError("selection 'scorer' needs scorer=callable(objective, answer) -> float")
        return self


class PairVerdict(BaseModel):
    winner: str = Field(description='"A" or "B"')
    rationale: str = Field("", description="one sentence")


@dataclass(frozen=True)
class _Contest:
    """The static shape of one competitive swarm, bound into its nodes."""

    agents: list[str]
    selection: Selection
    judge: str | None
    scorer: Callable[[str, str], float] | None


def create_competitive(
    agents: Sequence[Agent],
    *,
    model: Any = None,
    base_url: str | None = None,
    judge: Agent | None = None,
    options: CompetitiveOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[CompetitiveState, SwarmContext, ObjectiveInput, CompetitiveState]:
    """Build a competitive swarm.

    Args:
        agents: the competitors (at least two).
        judge: the judging agent (selection judge or pairwise); a default one when omitted.
        options: a `CompetitiveOptions`, or its fields as keyword arguments
            (`selection="scorer", scorer=lambda objective, answer: ...`).
    """
    opts = CompetitiveOptions.check(options, **kwargs)
    agents = check_agents(agents, minimum=2)
    selection = opts.selection
    judges = [judge or DEFAULT_JUDGE] if selection in (Selection.JUDGE, Selection.PAIRWISE) else []
    crew = Crew([*agents, *judges], model=model, base_url=base_url)
    check_agents([*agents, *judges])
    contest = _Contest([a.name for a in agents], selection, judges[0].name if judges else None, opts.scorer)
    retry = model_retry_policy()

    graph = StateGraph(CompetitiveState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(
        graph, "compete", partial(compete, crew=crew, contest=contest), input_schema=AgentInput, retry_policy=retry
    )
    add_node(graph, "select", partial(select, crew=crew, contest=contest), retry_policy=retry, defer=True)
    graph.add_conditional_edges(START, partial(start_contest, contest=contest), ["compete"])
    graph.add_edge("compete", "select")
    graph.add_edge("select", END)
    return graph


def start_contest(state: CompetitiveState, *, contest: _Contest) -> list[Send]:
    return send_each("compete", contest.agents, {"objective": objective_of(state)})


async def compete(
    state: AgentInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, contest: _Contest
) -> dict[str, Any]:
    context = CONFIDENCE_NOTE if contest.selection is Selection.CONFIDENCE else ""
    text, calls = await answer_question(
        crew[state["agent"]], state["objective"], context=context, node="compete", runtime=runtime, config=config
    )
    entry: Entry = {
        "agent": state["agent"],
        "text": text,
        "answer": extract_answer(_without_confidence(text)) or text.strip(),
        "confidence": parse_confidence(text),
    }
    return {"entries": [entry], "calls": calls}


async def select(
    state: CompetitiveState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, contest: _Contest
) -> dict[str, Any]:
    order = {name: i for i, name in enumerate(contest.agents)}
    entries = sorted(state["entries"], key=lambda e: order[e["agent"]])
    calls: list[CallRecord] = []
    judge = contest.judge or ""  # the builder names a judge for the selections that need one
    readable = True
    if contest.selection is Selection.JUDGE:
        texts = [e["text"] for e in entries]
        scores, calls = await reply_or_none(
            judge_scores(crew[judge], state["objective"], texts, node="select", runtime=runtime, config=config)
        )
        readable = scores is not None
        scored = {e["agent"]: score for e, score in zip(entries, scores or [(0.0, UNREAD)] * len(entries))}
    elif contest.selection is Selection.PAIRWISE:
        scored, calls = await _knockout(entries, state["objective"], crew[judge], runtime, config)
    elif contest.selection is Selection.SCORER:
        assert contest.scorer is not None  # checked by CompetitiveOptions
        scored = {
            e["agent"]: (float(contest.scorer(state["objective"], e["answer"])), "scoring function") for e in entries
        }
    else:
        scored = {e["agent"]: (e["confidence"] or 0.0, "self-reported confidence") for e in entries}
    ranked = sorted(entries, key=lambda e: (-scored[e["agent"]][0], order[e["agent"]]))
    ranking: list[Ranked] = [
        {
            "rank": i,
            "agent": e["agent"],
            "score": scored[e["agent"]][0],
            "rationale": scored[e["agent"]][1],
            "answer": e["answer"],
        }
        for i, e in enumerate(ranked, start=1)
    ]
    vote = vote_over([(e["agent"], e["answer"]) for e in entries], state["objective"])
    top = ranking[0]
    check = check_verdict(
        top["answer"] if readable else None, vote, reason=top["rationale"], question=state["objective"]
    )
    return {
        "ranking": ranking,
        "winner": ranking[0]["agent"],
        "final_answer": check["answer"],
        "verdict_check": check,
        "stop_reason": StopReason.JUDGED.value,
        "calls": calls,
    }


async def _knockout(entries, objective, judge, runtime, config):
    """Pairwise comparisons, winners advance; a candidate's score is the rounds it survived."""
    wins = {e["agent"]: 0.0 for e in entries}
    notes = {e["agent"]: "lost in the first comparison" for e in entries}
    calls: list[CallRecord] = []
    field = list(entries)
    while len(field) > 1:
        next_field = []
        for a, b in zip(field[0::2], field[1::2]):
            messages = [
                SystemMessage(prompt("judge_pair").format(name=judge.name)),
                HumanMessage(f"Question: {objective}\n\nAnswer A:\n{a['text']}\n\nAnswer B:\n{b['text']}"),
            ]
            verdict, made = await reply_or_none(
                ask(judge, messages, node="select", runtime=runtime, config=config, schema=PairVerdict)
            )
            calls += made
            winner = b if verdict and verdict.winner.strip().upper().startswith("B") else a
            wins[winner["agent"]] += 1
            notes[winner["agent"]] = UNREAD if verdict is None else verdict.rationale or "won its comparison"
            next_field.append(winner)
        if len(field) % 2:
            next_field.append(field[-1])  # a bye
        field = next_field
    return {name: (wins[name], notes[name]) for name in wins}, calls


def parse_confidence(text: str) -> float | None:
    """The last "Confidence: x" in a reply, as a number in [0, 1] (percentages allowed)."""
    found = _CONFIDENCE.findall(text)
    if not found:
        return None
    number, percent = found[-1]
    value = float(number) / (100 if percent or float(number) > 1 else 1)
    return min(max(value, 0.0), 1.0)


def _without_confidence(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _CONFIDENCE.search(line))


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if update.get("winner"):
        return f"winner: {update['winner']}"
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """The ranking (the winner in bold) and every entry with its confidence."""
    state = run.state
    ranking, entries = state.get("ranking", []), state.get("entries", [])
    if brief:
        rows: list[list[Cell]] = [
            [str(r["rank"]), r["agent"], f"{r['score']:g}", shorten(r["rationale"], 60), shorten(r["answer"], 40)]
            for r in ranking
        ]
        verdict = [Text(line)] if (line := verdict_line(state.get("verdict_check"))) else []
        return (
            [Table(["rank", "agent", "score", "rationale", "answer"], rows, title="ranking"), *verdict]
            if ranking
            else []
        )
    blocks: list[Block] = []
    if ranking:
        rows = [
            [str(r["rank"]), r["agent"], f"{r['score']:g}", Text(r["rationale"]), Text(r["answer"])] for r in ranking
        ]
        winners = {i for i, r in enumerate(ranking) if r["agent"] == state.get("winner")}
        caption = f"winner: {state['winner']}" if state.get("winner") else ""
        if line := verdict_line(state.get("verdict_check")):
            caption = f"{caption}; {line}" if caption else line
        blocks.append(
            Table(
                ["rank", "agent", "score", "rationale", "answer"],
                rows,
                title="Ranking",
                caption=caption,
                strong=winners,
            )
        )
    if entries:
        listed: list[list[Cell]] = [
            [e["agent"], Text(e["text"]), "-" if e.get("confidence") is None else f"{e['confidence']:g}"]
            for e in entries
        ]
        blocks.append(Table(["agent", "answer", "confidence"], listed, title="Entries"))
    return blocks


ARCHITECTURE = Architecture(
    name="competitive",
    summary="agents answer independently and a judge, a scorer or their confidence picks the best",
    build=create_competitive,
    options=CompetitiveOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.JUDGE,),
    min_agents=2,
)
