"""Framework overhead per agent node: graphswarm vs a bare LangGraph graph of the same shape.

Both sides run, alternately and in the same process and event loop, against the same
fake OpenAI server (``tools/fake_openai.py``) with SQLite checkpointing:

- graphswarm: ``Runner(<sqlite file>).start(SwarmSpec(architecture="hierarchical", ...))``
  with N workers; the leader's plan is scripted so exactly N workers run in one round;
- bare: a hand-written ``StateGraph`` (plan -> ``Send`` to N workers -> deferred
  consolidate) compiled with ``AsyncSqliteSaver`` on its own file and run with
  ``durability="sync"``; its nodes call the server through ``ChatOpenAI`` directly.

Each timed run includes everything a fresh run costs on that side: for graphswarm
``Runner.start`` (graph build with one chat model per agent, compile, run records,
state reads), for bare building the two chat models and the graph, compiling and
``ainvoke``. Reported per size: median wall time per side, the ratio graphswarm/bare,
and overhead per agent node = (wall - ideal) / nodes, where ideal = 3 x latency (plan,
one worker, consolidate on the critical path) and nodes = N + 2.

The model latency is measured at ``--latency-ms`` (default 100) and, in the same run,
at 0 ms, where the ratio of medians is pure framework overhead.

Usage::

    python tools/bench/overhead.py                      # sizes 8,40; 100 ms and 0 ms
    python tools/bench/overhead.py --sizes 8,40,100 --reps 5 --latency-ms 50
    python tools/bench/overhead.py --server thread      # fake server inside this process
    python tools/bench/overhead.py --profile            # + cProfile of graphswarm at 0 ms

Timings are printed, never asserted; the script exits 0 unless a run goes wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import operator
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langgraph.types import Send
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.servers import ProcessServer, ThreadServer  # noqa: E402

TARGET_RATIO = 1.15
GS_LEADER_MODEL = "gs-leader"
GS_WORKER_MODEL = "gs-worker"
BARE_LEADER_MODEL = "bare-leader"
BARE_WORKER_MODEL = "bare-worker"
OBJECTIVE = "Write a one-page launch plan for a small open-source library."


# --------------------------------------------------------------------------
# The fake server, in a child process (default) or in a thread of this process
# --------------------------------------------------------------------------


def leader_script(worker_names: list[str]) -> list[dict[str, Any]]:
    """The leader's two answers: a plan with one task per worker, then an approved review."""
    tasks = [
        {"title": f"part {i + 1} of the plan", "description": f"write part {i + 1}", "worker": name}
        for i, name in enumerate(worker_names)
    ]
    return [
        {"json": {"tasks": tasks}},
        {"json": {"answer": "x", "approved": True, "feedback": ""}},
    ]


def check_server(server: Any, leader_model: str, worker_model: str, n: int) -> None:
    by_model = server.stats()["by_model"]
    got = {m: (s["succeeded"], s["failed"]) for m, s in by_model.items()}
    want = {leader_model: (2, 0), worker_model: (n, 0)}
    if got != want:
        raise RuntimeError(f"unexpected model calls: {got} (expected {want})")


# --------------------------------------------------------------------------
# The graphswarm side
# --------------------------------------------------------------------------


def gs_agents(n: int) -> tuple[Any, list[Any]]:
    from graphswarm import Agent

    leader = Agent(name="leader", role="team leader", strengths=["planning"], model=GS_LEADER_MODEL)
    workers = [Agent(name=f"worker-{i + 1}", role="writer", strengths=["writing"]) for i in range(n)]
    return leader, workers


def gs_spec(server: Any, leader: Any, workers: list[Any]) -> Any:
    from graphswarm import SwarmSpec

    return SwarmSpec(
        architecture="hierarchical",
        agents=workers,
        leader=leader,
        model=GS_WORKER_MODEL,
        base_url=server.url,
        options={"max_rounds": 1},
    )


async def run_graphswarm(runner: Any, server: Any, n: int) -> float:
    from graphswarm import RunStatus

    leader, workers = gs_agents(n)
    server.reset()
    server.script(GS_LEADER_MODEL, leader_script([w.name for w in workers]))
    gc.collect()
    started = time.perf_counter()
    spec = gs_spec(server, leader, workers)
    result = await runner.start(spec, OBJECTIVE, run_id=f"gs-{n}-{uuid.uuid4().hex[:10]}")
    wall = time.perf_counter() - started
    results = result.state.get("results", [])
    if result.status is not RunStatus.DONE or len(results) != n or not all(r["ok"] for r in results):
        raise RuntimeError(f"graphswarm run went wrong: {result.status} {len(results)} results {result.record.error}")
    if result.final_answer != "x":
        raise RuntimeError(f"graphswarm run gave {result.final_answer!r}")
    check_server(server, GS_LEADER_MODEL, GS_WORKER_MODEL, n)
    return wall


# --------------------------------------------------------------------------
# The bare LangGraph side: the same shape, written by hand
# --------------------------------------------------------------------------


class BareState(TypedDict, total=False):
    objective: str
    tasks: Annotated[list[dict[str, Any]], operator.add]
    results: Annotated[list[dict[str, Any]], operator.add]
    answer: str
    approved: bool


class BareWorkInput(TypedDict):
    objective: str
    task: dict[str, Any]


# The same schemas as graphswarm's, so both sides ask the server for identical JSON.
from graphswarm.architectures.hierarchical import LeaderReview as BareReview  # noqa: E402
from graphswarm.architectures.hierarchical import Plan as BarePlan  # noqa: E402


def build_bare(url: str, worker_names: list[str]) -> Any:
    """The bare graph, uncompiled (built per run, like graphswarm's Runner.start does)."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    leader = ChatOpenAI(base_url=url, api_key="x", model=BARE_LEADER_MODEL, max_retries=0)
    worker = ChatOpenAI(base_url=url, api_key="x", model=BARE_WORKER_MODEL, max_retries=0)
    planner = leader.with_structured_output(BarePlan, method="json_schema")
    reviewer = leader.with_structured_output(BareReview, method="json_schema")
    team = "\n".join(f"- {name} (writer): strengths writing" for name in worker_names)

    async def plan(state: BareState) -> dict[str, Any]:
        messages = [
            SystemMessage(f"You lead this team:\n{team}\nSplit the objective into one task per member."),
            HumanMessage(f"Objective: {state['objective']}"),
        ]
        result = await planner.ainvoke(messages)
        return {"tasks": [t.model_dump() for t in result.tasks]}

    def fan_out(state: BareState) -> list[Send]:
        return [Send("work", {"objective": state["objective"], "task": t}) for t in state["tasks"]]

    async def work(state: BareWorkInput) -> dict[str, Any]:
        task = state["task"]
        messages = [
            SystemMessage(f"You are {task['worker']}, a writer. The team's objective: {state['objective']}"),
            HumanMessage(f"Your task: {task['title']}\n{task['description']}"),
        ]
        reply = await worker.ainvoke(messages)
        return {"results": [{"worker": task["worker"], "title": task["title"], "output": reply.text}]}

    async def consolidate(state: BareState) -> dict[str, Any]:
        sections = "\n\n".join(f"### {r['title']} ({r['worker']})\n{r['output']}" for r in state["results"])
        messages = [
            SystemMessage("Merge the team's results into one answer and review it."),
            HumanMessage(f"Objective: {state['objective']}\n\nResults:\n{sections}"),
        ]
        review = await reviewer.ainvoke(messages)
        return {"answer": review.answer, "approved": review.approved}

    graph = StateGraph(BareState)
    graph.add_node("plan", plan)
    graph.add_node("work", work, input_schema=BareWorkInput)
    graph.add_node("consolidate", consolidate, defer=True)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["work"])
    graph.add_edge("work", "consolidate")
    graph.add_edge("consolidate", END)
    return graph


async def run_bare(saver: Any, server: Any, n: int) -> float:
    names = [f"worker-{i + 1}" for i in range(n)]
    server.reset()
    server.script(BARE_LEADER_MODEL, leader_script(names))
    gc.collect()
    started = time.perf_counter()
    compiled = build_bare(server.url, names).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": f"bare-{n}-{uuid.uuid4().hex[:10]}"}}
    state = await compiled.ainvoke({"objective": OBJECTIVE}, config, durability="sync")
    wall = time.perf_counter() - started
    if len(state.get("results", [])) != n or state.get("answer") != "x":
        raise RuntimeError(
            f"bare run went wrong: {len(state.get('results', []))} results, answer {state.get('answer')!r}"
        )
    check_server(server, BARE_LEADER_MODEL, BARE_WORKER_MODEL, n)
    return wall


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class Row:
    latency_ms: float
    n: int
    bare: list[float] = field(default_factory=list)
    gs: list[float] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        return self.n + 2

    @property
    def ideal(self) -> float:
        return 3 * self.latency_ms / 1000

    def median(self, side: str) -> float:
        return statistics.median(getattr(self, side))

    def per_node_ms(self, side: str) -> float:
        return (self.median(side) - self.ideal) / self.nodes * 1000

    @property
    def ratio(self) -> float:
        return self.median("gs") / self.median("bare")


async def measure(runner: Any, saver: Any, server: Any, latency_ms: float, n: int, reps: int, warmup: int) -> Row:
    server.configure(latency_ms=latency_ms)
    row = Row(latency_ms, n)
    for rep in range(warmup + reps):
        order = ("bare", "gs") if rep % 2 == 0 else ("gs", "bare")
        for side in order:
            if side == "bare":
                wall = await run_bare(saver, server, n)
            else:
                wall = await run_graphswarm(runner, server, n)
            if rep >= warmup:
                getattr(row, side).append(wall)
    return row


async def build_costs(server: Any, n: int, reps: int = 7) -> tuple[float, float]:
    """Median seconds to build and compile each side's graph (no run), for the breakdown."""
    from langgraph.checkpoint.memory import InMemorySaver

    leader, workers = gs_agents(n)
    names = [w.name for w in workers]
    saver = InMemorySaver()
    bare, gs = [], []
    for _ in range(reps):
        started = time.perf_counter()
        build_bare(server.url, names).compile(checkpointer=saver)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        gs_spec(server, leader, workers).build().compile(checkpointer=saver)
        gs.append(time.perf_counter() - started)
    return statistics.median(bare), statistics.median(gs)


async def profile_graphswarm(runner: Any, server: Any, n: int, runs: int = 3) -> str:
    server.configure(latency_ms=0)
    await run_graphswarm(runner, server, n)  # warm
    profiler = cProfile.Profile()
    for _ in range(runs):
        profiler.enable()
        await run_graphswarm(runner, server, n)
        profiler.disable()
    out = io.StringIO()
    out.write(f"\n--- cProfile of {runs} graphswarm runs, N={n}, latency 0 ms: top by own time ---\n")
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(20)
    out.write("--- functions of the graphswarm package by cumulative time ---\n")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(rf"{os.sep}graphswarm{os.sep}", 20)
    return out.getvalue()


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'latency':>8} {'size':>5} {'nodes':>5} {'bare med s':>11} {'gs med s':>10} {'gs/bare':>8} "
        f"{'bare ovh/node ms':>17} {'gs ovh/node ms':>15} {'gs extra/node ms':>17}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        extra = (r.median("gs") - r.median("bare")) / r.nodes * 1000
        print(
            f"{r.latency_ms:>6.0f}ms {r.n:>5} {r.nodes:>5} {r.median('bare'):>11.3f} {r.median('gs'):>10.3f} "
            f"{r.ratio:>7.3f}x {r.per_node_ms('bare'):>17.2f} {r.per_node_ms('gs'):>15.2f} {extra:>17.2f}"
        )


def print_spread(rows: list[Row]) -> None:
    print("\nspread of the timed runs (min / median / max, seconds):")
    for r in rows:
        for side, label in (("bare", "bare      "), ("gs", "graphswarm")):
            values = getattr(r, side)
            print(
                f"  {r.latency_ms:>4.0f}ms N={r.n:<4} {label} "
                f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}  (n={len(values)})"
            )


async def measure_all(runner: Any, saver: Any, server: Any, args: argparse.Namespace, began: float) -> list[Row]:
    latencies = [args.latency_ms] + ([0.0] if args.latency_ms != 0 and not args.no_zero else [])
    rows = []
    for latency in latencies:
        for n in args.sizes:
            row = await measure(runner, saver, server, latency, n, args.reps, args.warmup)
            rows.append(row)
            print(
                f"  measured latency={latency:.0f}ms N={n}: bare {row.median('bare'):.3f}s, "
                f"graphswarm {row.median('gs'):.3f}s ({time.perf_counter() - began:.0f}s elapsed)",
                flush=True,
            )
    return rows


def print_ratios(rows: list[Row], prefix: str = "RATIO") -> None:
    for r in rows:
        kind = "pure framework overhead" if r.latency_ms == 0 else "end to end"
        verdict = "within" if r.ratio <= TARGET_RATIO else "OVER"
        print(
            f"{prefix} latency={r.latency_ms:.0f}ms N={r.n}: graphswarm/bare = {r.ratio:.3f}x "
            f"({kind}; {verdict} target {TARGET_RATIO:.2f}x)"
        )


async def main_async(args: argparse.Namespace) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from graphswarm import Runner

    server = ProcessServer(args.latency_ms) if args.server == "process" else ThreadServer(args.latency_ms)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-"))
    # Long-lived objects (imported modules) out of the collector's way: a full collection
    # of them takes ~150 ms and would land at random inside either side's timed runs.
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    try:
        async with (
            Runner(str(workdir / "graphswarm.sqlite")) as runner,
            AsyncSqliteSaver.from_conn_string(str(workdir / "bare.sqlite")) as saver,
        ):
            await saver.setup()
            rows = await measure_all(runner, saver, server, args, began)
            builds = await build_costs(server, max(args.sizes))
            profile = await profile_graphswarm(runner, server, max(args.sizes)) if args.profile else ""
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"graphswarm hierarchical vs bare LangGraph, SQLite checkpoints (durability=sync), "
        f"fake server in a {args.server}, {args.reps} timed reps per side after {args.warmup} warm-up, alternating"
    )
    print("ideal = 3 x latency (plan, worker, consolidate on the critical path); nodes = N + 2")
    print("overhead per node = (median wall - ideal) / nodes; gs extra/node = (gs median - bare median) / nodes\n")
    print_table(rows)
    print_spread(rows)
    print(
        f"\ngraph build + compile only (no run), N={max(args.sizes)}: "
        f"bare {builds[0] * 1000:.1f} ms, graphswarm {builds[1] * 1000:.1f} ms "
        f"(included in the wall times above)"
    )
    print()
    print_ratios(rows)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")
    if profile:
        print(profile)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8,40", help="comma-separated worker counts (default 8,40)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="model latency of the fake server")
    parser.add_argument("--no-zero", action="store_true", help="skip the extra 0 ms latency variant")
    parser.add_argument("--reps", type=int, default=7, help="timed runs per side and size (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side and size first (default 1)")
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake server in a child process (default) or a thread of this process",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile graphswarm runs at 0 ms latency")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not args.sizes or min(args.sizes) < 1 or args.reps < 1 or args.warmup < 0:
        parser.error("sizes must be positive integers, reps >= 1, warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
