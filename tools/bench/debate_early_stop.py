"""Model calls saved by a debate's early stop: graphswarm vs the same debate run for fixed rounds.

A debate of 3 agents and ``rounds=3`` stops as soon as the agents agree (graphswarm's
default threshold 1.0: all of them). Each agent has its own model name on the fake
OpenAI server (``tools/fake_openai.py``), so each one's answers are scripted per round:

- ``agree-round-1``: everyone answers 42 from round 1 on;
- ``converge-round-2``: 42 / 41 / 40 in round 1, all 42 from round 2 on;
- ``never-agree``: 42 / 41 / 40 in every round (early stop cannot help; the control).

Each scenario runs twice against the same server, with the same scripts:

- graphswarm: ``Runner(<sqlite file>).start(SwarmSpec(architecture="debate", ...,
  options={"rounds": 3}))``, counting the calls the server actually answered;
- fixed rounds: a bare LangGraph debate of the same shape (``Send`` to one ``argue``
  node per agent, a deferred ``gather`` node, next round until ``rounds``; its own
  ``AsyncSqliteSaver``, ``durability="sync"``) with no agreement check, its calls
  counted on the server too; it must equal agents x rounds.

Printed per scenario: calls with early stop, calls with fixed rounds, the saving in
percent (target: at least 30 % fewer when agents agree in round 1) and the wall time
of both at the server's latency. The script asserts nothing about the numbers and
exits 0 unless a run goes wrong.

Usage::

    python tools/bench/debate_early_stop.py
    python tools/bench/debate_early_stop.py --rounds 5 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langgraph.types import Send
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_SAVING = 30.0
AGENTS = ("d1", "d2", "d3")
OBJECTIVE = "What is six times seven?"


def model_of(agent: str) -> str:
    return f"debater-{agent}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    answers: dict[str, list[str]]
    """Per agent, its answer in rounds 1, 2, ... (the last one repeats)."""
    expected_rounds: int | None
    """The round the debate should stop after with early stop (None: the last)."""

    def script(self, agent: str, rounds: int) -> list[dict[str, Any]]:
        seq = self.answers[agent]
        picks = [seq[min(i, len(seq) - 1)] for i in range(rounds)]
        return [{"content": f"Round {i + 1} reasoning.\nFinal answer: {a}"} for i, a in enumerate(picks)]


SCENARIOS = (
    Scenario(
        "agree-round-1",
        "all agents agree in round 1",
        {"d1": ["42"], "d2": ["42"], "d3": ["42"]},
        expected_rounds=1,
    ),
    Scenario(
        "converge-round-2",
        "agents disagree in round 1 and converge in round 2",
        {"d1": ["42"], "d2": ["41", "42"], "d3": ["40", "42"]},
        expected_rounds=2,
    ),
    Scenario(
        "never-agree",
        "agents never agree (control: early stop cannot save anything)",
        {"d1": ["42"], "d2": ["41"], "d3": ["40"]},
        expected_rounds=None,
    ),
)


def prepare(server: Any, scenario: Scenario, rounds: int) -> None:
    server.reset()
    for agent in AGENTS:
        server.script(model_of(agent), scenario.script(agent, rounds))


def server_calls(server: Any) -> int:
    """Successful chat calls since the last reset; any failed call is an error here."""
    by_model = server.stats()["by_model"]
    failed = {m: s["failed"] for m, s in by_model.items() if s["failed"]}
    unknown = set(by_model) - {model_of(a) for a in AGENTS}
    if failed or unknown:
        raise RuntimeError(f"unexpected calls on the server: failed {failed}, unknown models {sorted(unknown)}")
    return sum(s["succeeded"] for s in by_model.values())


# --------------------------------------------------------------------------
# graphswarm: early stop on agreement
# --------------------------------------------------------------------------


async def run_graphswarm(runner: Any, server: Any, scenario: Scenario, rounds: int) -> dict[str, Any]:
    from graphswarm import Agent, RunStatus, SwarmSpec

    prepare(server, scenario, rounds)
    spec = SwarmSpec(
        architecture="debate",
        agents=[Agent(name=a, model=model_of(a)) for a in AGENTS],
        base_url=server.url,
        options={"rounds": rounds},
    )
    started = time.perf_counter()
    result = await runner.start(spec, OBJECTIVE, run_id=f"debate-{scenario.name}-{uuid.uuid4().hex[:8]}")
    wall = time.perf_counter() - started
    if result.status is not RunStatus.DONE:
        raise RuntimeError(f"graphswarm debate went wrong: {result.status} {result.record.error}")
    calls = server_calls(server)
    if calls != len(result.calls):
        raise RuntimeError(f"the server answered {calls} calls but the run recorded {len(result.calls)}")
    outcomes = result.state.get("rounds", [])
    return {
        "calls": calls,
        "rounds": len(outcomes),
        "agreement": [round(o["agreement"], 2) for o in outcomes],
        "stop_reason": result.stop_reason,
        "answer": result.final_answer,
        "wall": wall,
    }


# --------------------------------------------------------------------------
# Fixed rounds: a bare LangGraph debate without an agreement check
# --------------------------------------------------------------------------


class Turn(TypedDict):
    agent: str
    round: int
    text: str


class FixedState(TypedDict, total=False):
    objective: str
    round: int
    transcript: Annotated[list[Turn], operator.add]


class FixedTurnInput(TypedDict):
    objective: str
    agent: str
    round: int
    others: str


def build_fixed(url: str, rounds: int) -> Any:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    models = {a: ChatOpenAI(base_url=url, api_key="x", model=model_of(a), max_retries=0) for a in AGENTS}

    def sends(state: FixedState, round_: int) -> list[Send]:
        latest = {t["agent"]: t["text"] for t in state.get("transcript", []) if t["round"] == round_ - 1}
        return [
            Send(
                "argue",
                {
                    "objective": state["objective"],
                    "agent": a,
                    "round": round_,
                    "others": "\n\n".join(f"{p}: {latest[p]}" for p in AGENTS if p != a and p in latest),
                },
            )
            for a in AGENTS
        ]

    async def argue(state: FixedTurnInput) -> dict[str, Any]:
        human = f"Question: {state['objective']}"
        if state["others"]:
            human += f"\n\nRound {state['round']}. The others answered:\n{state['others']}"
        messages = [
            SystemMessage(f"You are {state['agent']}. End with a line 'Final answer: <answer>'."),
            HumanMessage(human),
        ]
        reply = await models[state["agent"]].ainvoke(messages)
        return {"transcript": [{"agent": state["agent"], "round": state["round"], "text": reply.text}]}

    def gather(state: FixedState) -> dict[str, Any]:
        return {"round": max(t["round"] for t in state["transcript"])}

    def next_round(state: FixedState) -> list[Send] | str:
        return sends(state, state["round"] + 1) if state["round"] < rounds else END

    graph = StateGraph(FixedState)
    graph.add_node("argue", argue, input_schema=FixedTurnInput)
    graph.add_node("gather", gather, defer=True)
    graph.add_conditional_edges(START, lambda state: sends(state, 1), ["argue"])
    graph.add_edge("argue", "gather")
    graph.add_conditional_edges("gather", next_round, ["argue", END])
    return graph


async def run_fixed(saver: Any, server: Any, scenario: Scenario, rounds: int) -> dict[str, Any]:
    prepare(server, scenario, rounds)
    started = time.perf_counter()
    compiled = build_fixed(server.url, rounds).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": f"fixed-{uuid.uuid4().hex[:8]}"}}
    state = await compiled.ainvoke({"objective": OBJECTIVE}, config, durability="sync")
    wall = time.perf_counter() - started
    calls = server_calls(server)
    if len(state.get("transcript", [])) != calls or state.get("round") != rounds:
        raise RuntimeError(
            f"fixed-rounds debate went wrong: {len(state.get('transcript', []))} turns, round {state.get('round')}"
        )
    return {"calls": calls, "rounds": state["round"], "wall": wall}


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from graphswarm import Runner
    from tools.fake_openai import FakeOpenAIServer, FakeServerConfig

    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-debate-"))
    began = time.perf_counter()
    lines: list[str] = []
    try:
        with FakeOpenAIServer(FakeServerConfig(latency_ms=args.latency_ms)) as server:
            async with (
                Runner(str(workdir / "graphswarm.sqlite")) as runner,
                AsyncSqliteSaver.from_conn_string(str(workdir / "fixed.sqlite")) as saver,
            ):
                await saver.setup()
                # One untimed run per side first, so first-use costs (lazy imports, the
                # HTTP clients' connections) land in neither side's reported wall time.
                await run_graphswarm(runner, server, SCENARIOS[-1], args.rounds)
                await run_fixed(saver, server, SCENARIOS[-1], args.rounds)
                for scenario in SCENARIOS:
                    early = await run_graphswarm(runner, server, scenario, args.rounds)
                    fixed = await run_fixed(saver, server, scenario, args.rounds)
                    lines.extend(report(scenario, early, fixed, args.rounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"debate of {len(AGENTS)} agents, rounds={args.rounds}, graphswarm's default threshold (1.0: all agree), "
        f"no moderator or judge; fake server in this process at {args.latency_ms:.0f} ms; calls counted on the server;\n"
        "both sides checkpoint to SQLite (durability=sync); wall times are single runs after one warm-up per side\n"
    )
    for line in lines:
        print(line)
    print(f"total benchmark time {time.perf_counter() - began:.1f}s")


def report(scenario: Scenario, early: dict[str, Any], fixed: dict[str, Any], rounds: int) -> list[str]:
    product = len(AGENTS) * rounds
    saving = 100.0 * (fixed["calls"] - early["calls"]) / fixed["calls"]
    expected = scenario.expected_rounds or rounds
    notes = []
    if early["rounds"] != expected:
        notes.append(f"UNEXPECTED: stopped after round {early['rounds']}, expected {expected}")
    if fixed["calls"] != product:
        notes.append(f"UNEXPECTED: fixed rounds made {fixed['calls']} calls, not agents x rounds = {product}")
    if scenario.name == "agree-round-1":
        verdict = f"; target >= {TARGET_SAVING:.0f}%: {'met' if saving >= TARGET_SAVING else 'MISSED'}"
    else:
        verdict = ""
    early_line = (
        f"  graphswarm, early stop: {early['calls']:>2} calls, stopped after round {early['rounds']} "
        f"({early['stop_reason']}), agreement per round {early['agreement']}, answer {early['answer']!r}, "
        f"{early['wall']:.3f}s"
    )
    fixed_line = (
        f"  bare, fixed rounds:     {fixed['calls']:>2} calls ({fixed['rounds']} rounds; agents x rounds = {product}), "
        f"{fixed['wall']:.3f}s"
    )
    saving_line = (
        f"SAVING scenario={scenario.name}: {early['calls']} calls with early stop vs {fixed['calls']} with fixed rounds "
        f"= {saving:.1f}% fewer{verdict}"
    )
    return [
        f"scenario {scenario.name}: {scenario.description}",
        early_line,
        fixed_line,
        *(f"  {note}" for note in notes),
        saving_line,
        "",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="the debate's most rounds (default 3)")
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="model latency of the fake server (default 100)"
    )
    args = parser.parse_args(argv)
    if not 2 <= args.rounds <= 20:
        parser.error("rounds must be between 2 and 20 (the scenarios converge in round 2)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
