"""Particle swarm: agents move through embedding space toward the best answers found so far.

    START --Send per particle--> move (parallel) -> evaluate --+--> END
                                   ^                           |
                                   +------ next iteration -----+

Each particle holds a candidate answer; its position is the answer's embedding (kept
in the run's Chroma memory when the run has one). Every iteration a judge (or a scoring
function) gives each answer a fitness; each particle knows its personal best, the
swarm's global best and, optionally, its nearest neighbours' answers, and writes a
revised answer that keeps some of its own direction (inertia) and tries something new
(exploration). The swarm stops when it has converged — mean pairwise cosine distance
below a threshold — when the best fitness has not improved for `patience` iterations,
or after `iterations`.

The swarm's best is never worse than the particles' own vote: the best-fitness answer is
checked against the best-supported iteration's counted vote (`best_supported`), and gives
way to it when it has no extractable answer, or when a judge's pick overrules a clear
majority (a judge's scores state no reason; a scoring function's choice stands).
`verdict_check` records it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from typing import Annotated, Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypedDict

from graphswarm.agents import Agent, check_agents
from graphswarm.aggregation import VerdictCheck, VoteTable, best_supported, check_verdict, cosine, extract_answer
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
from graphswarm.embeddings import deferred_embeddings
from graphswarm.errors import ConfigError
from graphswarm.graph_nodes import add_node, objective_of
from graphswarm.nodes import Crew, model_retry_policy, post_note, prompt
from graphswarm.state import CallRecord, StopReason, SwarmState
from graphswarm.view import Block, Cell, Chart, Heading, Run, Table, Text, View

__all__ = ["create_particle", "ParticleOptions", "ParticleState", "Position", "IterationStats", "diversity"]


class Position(TypedDict):
    agent: str
    iteration: int
    text: str
    fitness: float


class Best(TypedDict):
    agent: str
    iteration: int
    text: str
    fitness: float


class IterationStats(TypedDict):
    iteration: int
    best_fitness: float
    """The global best so far: never decreases."""
    mean_fitness: float
    diversity: float
    """Mean pairwise cosine distance of this iteration's answers."""


class ParticleState(SwarmState):
    iteration: int
    moves: Annotated[list[Position], operator.add]
    """Every answer of every particle (fitness 0 until evaluated)."""
    scored: Annotated[list[Position], operator.add]
    """Every answer with its fitness, in evaluation order."""
    personal_best: dict[str, Best]
    global_best: Best
    trace: Annotated[list[IterationStats], operator.add]
    """Fitness and diversity per iteration, for plots."""
    guidance: dict[str, str]
    """Each particle's revision prompt for the next iteration."""
    verdict_check: VerdictCheck
    """The swarm's best checked against the best-supported iteration's vote."""


class ParticleOptions(SwarmOptions):
    """The particle swarm's options (`graphswarm options particle`)."""

    model_config = ConfigDict(extra="forbid", title="particle")

    iterations: int = Field(5, ge=1, le=50, description="the most iterations, the first answers included")
    inertia: float = Field(0.5, ge=0, le=1, description="how much of its own answer a particle keeps")
    exploration: float = Field(0.2, ge=0, le=1, description="how much it tries what nobody tried")
    diversity_threshold: float = Field(
        0.05, ge=0, lt=2, description="converged when the mean pairwise cosine distance falls below it"
    )
    patience: int = Field(2, ge=1, description="iterations without a better global best before stopping")
    neighbours: int = Field(
        0, ge=0, description="how many nearest other particles each one sees (fewer than the particles)"
    )
    embeddings: Embeddings | str | None = Field(
        None,
        description="positions are answer embeddings: minilm, openai[:model], a name on --base-url (default: the best available)",
    )
    # Given from Python only: a served or remote run cannot send a function.
    scorer: SkipJsonSchema[Callable[[str, str], float] | None] = Field(
        None, description="scorer(objective, answer) -> float instead of a judge (Python only)"
    )

    @property
    def needs_embeddings(self) -> bool:
        return True


class MoveInput(AgentInput):
    iteration: int
    guidance: str
    """The revision prompt ("" in the first iteration)."""


@dataclass(frozen=True)
class _Swarm:
    """The static shape of one particle swarm, bound into its nodes."""

    agents: list[str]
    judge: str | None
    scorer: Callable[[str, str], float] | None
    embeddings: Embeddings
    iterations: int
    inertia: float
    exploration: float
    threshold: float
    patience: int
    neighbours: int


def create_particle(
    agents: Sequence[Agent],
    *,
    model: Any = None,
    base_url: str | None = None,
    judge: Agent | None = None,
    options: ParticleOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> StateGraph[ParticleState, SwarmContext, ObjectiveInput, ParticleState]:
    """Build a particle swarm.

    Args:
        agents: the particles (at least two).
        judge: the agent that scores answers (default: a judge on the default model),
            unless `scorer(objective, answer) -> float` is given.
        options: a `ParticleOptions`, or its fields as keyword arguments
            (`embeddings=..., iterations=3, inertia=0.5`); embeddings are any LangChain
            `Embeddings` or a name, by default the best available.
    """
    opts = ParticleOptions.check(options, **kwargs)
    agents = check_agents(agents, minimum=2)
    if opts.neighbours >= len(agents):
        raise ConfigError(f"option neighbours must be fewer than the {len(agents)} particles, got {opts.neighbours}")
    embeddings = deferred_embeddings(opts.embeddings, base_url=base_url)
    judges = [] if opts.scorer is not None else [judge or DEFAULT_JUDGE]
    check_agents([*agents, *judges])
    crew = Crew([*agents, *judges], model=model, base_url=base_url)
    swarm = _Swarm(
        [a.name for a in agents],
        judges[0].name if judges else None,
        opts.scorer,
        embeddings,
        opts.iterations,
        opts.inertia,
        opts.exploration,
        opts.diversity_threshold,
        opts.patience,
        opts.neighbours,
    )
    retry = model_retry_policy()

    graph = StateGraph(ParticleState, context_schema=SwarmContext, input_schema=ObjectiveInput)
    add_node(graph, "move", partial(move, crew=crew), input_schema=MoveInput, retry_policy=retry)
    add_node(graph, "evaluate", partial(evaluate, crew=crew, swarm=swarm), retry_policy=retry, defer=True)
    graph.add_conditional_edges(START, partial(first_moves, swarm=swarm), ["move"])
    graph.add_edge("move", "evaluate")
    graph.add_conditional_edges("evaluate", next_moves, ["move", END])
    return graph


def first_moves(state: ParticleState, *, swarm: _Swarm) -> list[Send]:
    return send_each("move", swarm.agents, {"objective": objective_of(state), "iteration": 1, "guidance": ""})


async def move(
    state: MoveInput, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew
) -> dict[str, Any]:
    # A particle sees its guidance (its own answers, the swarm's best, its neighbours) and nothing else.
    text, calls = await answer_question(
        crew[state["agent"]], state["objective"], context=state["guidance"], node="move", runtime=runtime, config=config
    )
    position: Position = {"agent": state["agent"], "iteration": state["iteration"], "text": text, "fitness": 0.0}
    return {"moves": [position], "calls": calls}


async def evaluate(
    state: ParticleState, config: RunnableConfig, runtime: Runtime[SwarmContext], *, crew: Crew, swarm: _Swarm
) -> dict[str, Any]:
    iteration = max(m["iteration"] for m in state["moves"])
    order = {name: i for i, name in enumerate(swarm.agents)}
    current = sorted((m for m in state["moves"] if m["iteration"] == iteration), key=lambda m: order[m["agent"]])
    fitness, calls = await _fitness(state["objective"], current, crew, swarm, runtime, config)
    scored = [Position(**{**m, "fitness": f}) for m, f in zip(current, fitness)]
    # A position is where the answer itself lies, not the reasoning around it.
    vectors = await swarm.embeddings.aembed_documents([extract_answer(m["text"]) or m["text"] for m in scored])
    await _remember_positions(runtime, scored)

    personal = dict(state.get("personal_best") or {})
    for m in scored:
        if m["agent"] not in personal or m["fitness"] > personal[m["agent"]]["fitness"]:
            personal[m["agent"]] = _best(m)
    previous_best = state.get("global_best")
    leader = max(scored, key=lambda m: m["fitness"])
    best = _best(leader) if previous_best is None or leader["fitness"] > previous_best["fitness"] else previous_best
    stats: IterationStats = {
        "iteration": iteration,
        "best_fitness": best["fitness"],
        "mean_fitness": sum(fitness) / len(fitness),
        "diversity": diversity(vectors),
    }
    update: dict[str, Any] = {
        "iteration": iteration,
        "scored": scored,
        "personal_best": personal,
        "global_best": best,
        "trace": [stats],
        "calls": calls,
    }
    update |= _checked_best(best, [*state.get("scored", []), *scored], swarm, state["objective"])
    trace = [*state.get("trace", []), stats]
    if stats["diversity"] < swarm.threshold:
        update["stop_reason"] = StopReason.CONVERGED.value
    elif _stalled(trace, swarm.patience):
        update["stop_reason"] = StopReason.NO_IMPROVEMENT.value
    elif iteration >= swarm.iterations:
        update["stop_reason"] = StopReason.MAX_ROUNDS.value
    else:
        update["guidance"] = await _guidance(scored, vectors, personal, best, swarm, iteration + 1)
    return update


def _checked_best(best: Best, scored: Sequence[Position], swarm: _Swarm, objective: str) -> dict[str, Any]:
    """The final answer: the swarm's best, unless the best-supported iteration's vote beats it."""
    tables: list[VoteTable] = []
    for iteration in sorted({p["iteration"] for p in scored}):
        tables.append(vote_over([(p["agent"], p["text"]) for p in scored if p["iteration"] == iteration], objective))
    index = best_supported(tables)
    answer = extract_answer(best["text"]) or best["text"]
    if index is None:
        return {"final_answer": answer}
    check = check_verdict(answer, tables[index], reason="scoring function" if swarm.scorer else "", question=objective)
    return {"final_answer": check["answer"], "verdict_check": check}


def next_moves(state: ParticleState) -> list[Send] | str:
    if state.get("stop_reason"):
        return END
    guidance = state.get("guidance", {})
    iteration = state["iteration"] + 1
    return [
        Send("move", {"objective": state["objective"], "agent": agent, "iteration": iteration, "guidance": text})
        for agent, text in guidance.items()
    ]


async def _fitness(
    objective: str, current: list[Position], crew: Crew, swarm: _Swarm, runtime, config
) -> tuple[list[float], list[CallRecord]]:
    if swarm.scorer is not None:
        return [float(swarm.scorer(objective, extract_answer(m["text"]) or m["text"])) for m in current], []
    assert swarm.judge is not None  # the builder gives a judge to a swarm without a scorer
    scores, calls = await reply_or_none(
        judge_scores(
            crew[swarm.judge], objective, [m["text"] for m in current], node="evaluate", runtime=runtime, config=config
        )
    )
    return [score for score, _ in scores] if scores else [0.0] * len(current), calls  # unread: no one is better


async def _remember_positions(runtime: Runtime[SwarmContext] | None, scored: Sequence[Position]) -> None:
    """Keep the positions in the run's memory; no particle recalls them (it sees only its guidance)."""
    for m in scored:
        await post_note(runtime, m["text"], agent=m["agent"], kind="position", round=m["iteration"])


async def _guidance(scored, vectors, personal, best, swarm: _Swarm, iteration: int) -> dict[str, str]:
    """The revision prompt of each particle for the next iteration."""
    guidance = {}
    for i, m in enumerate(scored):
        near = ""
        if swarm.neighbours:
            ranked = sorted((j for j in range(len(scored)) if j != i), key=lambda j: -cosine(vectors[i], vectors[j]))[
                : swarm.neighbours
            ]
            near = (
                "\nYour nearest neighbours' answers:\n"
                + "\n".join(f"- (score {scored[j]['fitness']:g}) {scored[j]['text']}" for j in ranked)
                + "\n"
            )
        own_best = personal[m["agent"]]
        guidance[m["agent"]] = prompt("particle_move").format(
            iteration=iteration,
            own=m["text"],
            own_score=f"{m['fitness']:g}",
            personal=own_best["text"],
            personal_score=f"{own_best['fitness']:g}",
            best=best["text"],
            global_score=f"{best['fitness']:g}",
            neighbours=near,
            inertia=swarm.inertia,
            exploration=swarm.exploration,
        )
    return guidance


def _best(position: Position) -> Best:
    return {k: position[k] for k in ("agent", "iteration", "text", "fitness")}  # type: ignore[return-value]


def _stalled(trace: list[IterationStats], patience: int) -> bool:
    if len(trace) <= patience:
        return False
    return trace[-1]["best_fitness"] <= trace[-1 - patience]["best_fitness"]


def diversity(vectors: Sequence[Sequence[float]]) -> float:
    """Mean pairwise cosine distance (0 = all the same answer)."""
    pairs = list(combinations(range(len(vectors)), 2))
    if not pairs:
        return 0.0
    return sum(1.0 - cosine(vectors[a], vectors[b]) for a, b in pairs) / len(pairs)


# -- view: how its updates and runs are shown (rendered by the CLI and the report) ----


def view_update(node: str, update: dict[str, Any]) -> str:
    """One progress line about a node's update."""
    if update.get("stop_reason"):
        return f"stop: {update['stop_reason']}"
    return ""


def view_run(run: Run, *, brief: bool = False) -> list[Block]:
    """Fitness and diversity per iteration (charts and a table), and every position."""
    state = run.state
    trace = state.get("trace", [])
    if not trace and not state.get("scored"):
        return []
    stats: list[list[Cell]] = [
        [str(t["iteration"]), f"{t['best_fitness']:g}", f"{t['mean_fitness']:.2f}", f"{t['diversity']:.3f}"]
        for t in trace
    ]
    columns = ["iteration", "best fitness", "mean fitness", "diversity"]
    verdict = [Text(line)] if (line := verdict_line(state.get("verdict_check"))) else []
    if brief:
        return [Table(columns, stats, title="particle swarm"), *verdict] if trace else []
    blocks: list[Block] = []
    if trace:
        fitness = {
            "best fitness": [(t["iteration"], t["best_fitness"]) for t in trace],
            "mean fitness": [(t["iteration"], t["mean_fitness"]) for t in trace],
        }
        blocks += [
            Heading("Particle trace"),
            Chart("Fitness per iteration", fitness, x_label="iteration"),
            Chart("Diversity per iteration", {"diversity": [(t["iteration"], t["diversity"]) for t in trace]},
                  x_label="iteration", y_range=(0, 1)),
            Table(columns, stats, compact=True),
        ]  # fmt: skip
    positions = state.get("scored") or state.get("moves") or []
    if positions:
        best = state.get("global_best") or {}
        rows: list[list[Cell]] = [
            [str(p["iteration"]), p["agent"], f"{p['fitness']:g}", Text(p["text"])] for p in positions
        ]
        strong = {
            i
            for i, p in enumerate(positions)
            if (p["agent"], p["iteration"]) == (best.get("agent"), best.get("iteration"))
        }
        caption = (
            f"swarm's best: {best['agent']} in iteration {best['iteration']} ({best['fitness']:g})" if best else ""
        )
        blocks.append(
            Table(
                ["iteration", "particle", "fitness", "answer"], rows, title="Positions", caption=caption, strong=strong
            )
        )
    return blocks + verdict


ARCHITECTURE = Architecture(
    name="particle",
    summary="particles revise their answers toward the best found so far, moving through embedding space",
    build=create_particle,
    options=ParticleOptions,
    view=View(update=view_update, run=view_run),
    roles=(Role.JUDGE,),
    min_agents=2,
    default_agents=4,
)
