"""Collaborative vote at scale: graphswarm vs a bare LangGraph graph of the same shape.

Both sides run, alternately and in the same process and event loop, against the same
fake OpenAI server (``tools/fake_openai.py``, in a child process by default) with
SQLite checkpoints:

- graphswarm: ``Runner(<sqlite file>).start(SwarmSpec(architecture="collaborative",
  agents=[Agent(name="a0"), ...], base_url=server.url, model="bench"))``: N voters
  answer in parallel (``Send`` fan-out), a deferred ``tally`` node counts the vote;
- bare: a hand-written ``StateGraph`` (``Send`` to N ``answer`` nodes, each calling the
  server through ``langchain_openai.ChatOpenAI(...).ainvoke``, then a deferred
  ``tally`` node counting the final-answer lines) compiled with ``AsyncSqliteSaver``
  on its own file and run with ``durability="sync"``.

Each side's N answers are scripted on the server (two thirds "42", one third "41"),
so both count the same vote and both must make exactly N model calls per run; the
server's call count per run is checked and printed for both sides.

Each timed run includes everything a fresh run costs on that side: for graphswarm
``Runner.start`` (graph build with the agents' chat models, compile, run records,
state reads), for bare building the chat model and the graph, compiling and
``ainvoke``. Reported per size: median wall time per side and the ratio
graphswarm/bare (target: within 1.15x at every size).

If the ``swarms`` package is importable, its ``MajorityVoting`` is timed on the same
server too (best effort; it is not a dependency and is never installed by this script).

Usage::

    python tools/bench/collaborative.py                         # sizes 8,40,200,1000 at 100 ms
    python tools/bench/collaborative.py --sizes 8,40 --reps 9 --latency-ms 50
    python tools/bench/collaborative.py --server thread         # fake server inside this process

Timings are printed, never asserted; the script exits 0 unless a run goes wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
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
GS_MODEL = "bench"
BARE_MODEL = "bench-bare"
SWARMS_MODEL = "bench-swarms"
OBJECTIVE = "What is six times seven? Reply with the number."
LARGE = 500
"""Sizes from here on use --reps-large timed reps (and no warm-up) to bound the time."""


# --------------------------------------------------------------------------
# The fake server, in a child process (default) or in a thread of this process
# --------------------------------------------------------------------------


def vote_script(n: int) -> list[dict[str, Any]]:
    """N answers: two thirds say 42, the rest 41 (a clear majority, not unanimous)."""
    return [{"content": f"Six sevens.\nFinal answer: {41 if i % 3 == 2 else 42}"} for i in range(n)]


def server_calls(server: Any, model: str, n: int) -> int:
    """The server's successful calls for `model` in this run; exactly N and no others, or an error."""
    by_model = server.stats()["by_model"]
    got = {m: (s["succeeded"], s["failed"]) for m, s in by_model.items()}
    if got != {model: (n, 0)}:
        raise RuntimeError(f"unexpected model calls: {got} (expected {{{model!r}: ({n}, 0)}})")
    return got[model][0]


# --------------------------------------------------------------------------
# The graphswarm side
# --------------------------------------------------------------------------


async def run_graphswarm(runner: Any, server: Any, n: int) -> tuple[float, int]:
    from graphswarm import Agent, RunStatus, SwarmSpec

    server.reset()
    server.script(GS_MODEL, vote_script(n))
    gc.collect()
    started = time.perf_counter()
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name=f"a{i}") for i in range(n)],
        base_url=server.url,
        model=GS_MODEL,
    )
    result = await runner.start(spec, OBJECTIVE, run_id=f"gs-{n}-{uuid.uuid4().hex[:10]}")
    wall = time.perf_counter() - started
    if result.status is not RunStatus.DONE or result.final_answer != "42" or len(result.calls) != n:
        raise RuntimeError(
            f"graphswarm run went wrong: {result.status} {result.final_answer!r} "
            f"{len(result.calls)} calls {result.record.error}"
        )
    return wall, server_calls(server, GS_MODEL, n)


# --------------------------------------------------------------------------
# The bare LangGraph side: the same shape, written by hand
# --------------------------------------------------------------------------


class BareState(TypedDict, total=False):
    objective: str
    answers: Annotated[list[dict[str, str]], operator.add]
    final_answer: str
    agreement: float


class BareAnswerInput(TypedDict):
    objective: str
    agent: str


_FINAL = re.compile(r"final answer\s*:\s*(.+)", re.IGNORECASE)


def _final_answer(text: str) -> str:
    found = _FINAL.findall(text)
    return (found[-1] if found else text).strip().rstrip(".").lower()


def build_bare(url: str, names: list[str]) -> Any:
    """The bare graph, uncompiled (built per run, like graphswarm's Runner.start does)."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    # A few client retries, as graphswarm retries transient errors through its RetryPolicy:
    # a pooled keep-alive connection that the server closes just as it is reused (both
    # sides idle for seconds while the other side runs) must not end the benchmark.
    model = ChatOpenAI(base_url=url, api_key="x", model=BARE_MODEL, max_retries=2)

    def fan_out(state: BareState) -> list[Send]:
        return [Send("answer", {"objective": state["objective"], "agent": name}) for name in names]

    async def answer(state: BareAnswerInput) -> dict[str, Any]:
        messages = [
            SystemMessage(
                f"You are {state['agent']}, an assistant. Answer the question you are given. "
                "End your reply with one line of the form:\nFinal answer: <your answer>"
            ),
            HumanMessage(f"Question: {state['objective']}"),
        ]
        reply = await model.ainvoke(messages)
        return {"answers": [{"agent": state["agent"], "text": reply.text}]}

    def tally(state: BareState) -> dict[str, Any]:
        votes = Counter(_final_answer(a["text"]) for a in state["answers"])
        winner, count = votes.most_common(1)[0]
        return {"final_answer": winner, "agreement": count / len(state["answers"])}

    graph = StateGraph(BareState)
    graph.add_node("answer", answer, input_schema=BareAnswerInput)
    graph.add_node("tally", tally, defer=True)
    graph.add_conditional_edges(START, fan_out, ["answer"])
    graph.add_edge("answer", "tally")
    graph.add_edge("tally", END)
    return graph


async def run_bare(saver: Any, server: Any, n: int) -> tuple[float, int]:
    names = [f"a{i}" for i in range(n)]
    server.reset()
    server.script(BARE_MODEL, vote_script(n))
    gc.collect()
    started = time.perf_counter()
    compiled = build_bare(server.url, names).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": f"bare-{n}-{uuid.uuid4().hex[:10]}"}}
    state = await compiled.ainvoke({"objective": OBJECTIVE}, config, durability="sync")
    wall = time.perf_counter() - started
    if len(state.get("answers", [])) != n or state.get("final_answer") != "42":
        raise RuntimeError(
            f"bare run went wrong: {len(state.get('answers', []))} answers, {state.get('final_answer')!r}"
        )
    return wall, server_calls(server, BARE_MODEL, n)


# --------------------------------------------------------------------------
# swarms' MajorityVoting (optional, best effort)
# --------------------------------------------------------------------------


def swarms_comparison(server: Any, sizes: list[int]) -> list[str]:
    """One MajorityVoting run per size on the same server, if `swarms` is importable."""
    try:
        import swarms  # noqa: F401
        from swarms import Agent as SwarmsAgent
        from swarms import MajorityVoting
    except ImportError:
        return ["swarms not installed: skipped"]
    lines = []
    for n in sizes:
        try:
            server.reset()
            server.script(SWARMS_MODEL, vote_script(n) * 3)  # room for any extra (consensus) calls
            agents = [
                SwarmsAgent(
                    agent_name=f"a{i}",
                    model_name=f"openai/{SWARMS_MODEL}",
                    llm_base_url=server.url,
                    llm_api_key="x",
                    max_loops=1,
                )
                for i in range(n)
            ]
            started = time.perf_counter()
            MajorityVoting(agents=agents).run(OBJECTIVE)
            wall = time.perf_counter() - started
            calls = server.stats()["by_model"].get(SWARMS_MODEL, {}).get("succeeded", 0)
            lines.append(f"swarms MajorityVoting N={n}: {wall:.3f}s (1 run), {calls} server calls")
        except Exception as exc:
            lines.append(f"swarms MajorityVoting N={n}: failed: {type(exc).__name__}: {str(exc)[:200]}")
    return lines


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    bare: list[float] = field(default_factory=list)
    gs: list[float] = field(default_factory=list)
    bare_calls: list[int] = field(default_factory=list)
    gs_calls: list[int] = field(default_factory=list)

    def median(self, side: str) -> float:
        return statistics.median(getattr(self, side))

    @property
    def ratio(self) -> float:
        return self.median("gs") / self.median("bare")


def plan_reps(n: int, args: argparse.Namespace) -> tuple[int, int]:
    """(timed reps, warm-up runs) per side for size n."""
    return (args.reps_large, 0) if n >= LARGE else (args.reps, args.warmup)


async def measure(runner: Any, saver: Any, server: Any, n: int, reps: int, warmup: int) -> Row:
    row = Row(n)
    for rep in range(warmup + reps):
        order = ("bare", "gs") if rep % 2 == 0 else ("gs", "bare")
        for side in order:
            if side == "bare":
                wall, calls = await run_bare(saver, server, n)
            else:
                wall, calls = await run_graphswarm(runner, server, n)
            if rep >= warmup:
                getattr(row, side).append(wall)
                getattr(row, f"{side}_calls").append(calls)
    return row


def _distinct(values: list[int]) -> str:
    return "/".join(str(v) for v in sorted(set(values)))


def print_table(rows: list[Row], latency_ms: float) -> None:
    head = (
        f"{'size':>5} {'reps':>4} {'bare med s':>11} {'gs med s':>10} {'gs/bare':>8} "
        f"{'bare calls/run':>15} {'gs calls/run':>13} {'ideal s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.n:>5} {len(r.gs):>4} {r.median('bare'):>11.3f} {r.median('gs'):>10.3f} {r.ratio:>7.3f}x "
            f"{_distinct(r.bare_calls):>15} {_distinct(r.gs_calls):>13} {latency_ms / 1000:>8.3f}"
        )


def print_spread(rows: list[Row]) -> None:
    print("\nspread of the timed runs (min / median / max, seconds):")
    for r in rows:
        for side, label in (("bare", "bare      "), ("gs", "graphswarm")):
            values = getattr(r, side)
            print(
                f"  N={r.n:<5} {label} {min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"
                f"  (n={len(values)})"
            )


def print_ratios(rows: list[Row], latency_ms: float) -> None:
    for r in rows:
        verdict = "within" if r.ratio <= TARGET_RATIO else "OVER"
        print(
            f"RATIO latency={latency_ms:.0f}ms N={r.n}: graphswarm/bare = {r.ratio:.3f}x "
            f"(bare {r.median('bare'):.3f}s, graphswarm {r.median('gs'):.3f}s; "
            f"calls/run bare {r.bare_calls[0]}, graphswarm {r.gs_calls[0]}; {verdict} target {TARGET_RATIO:.2f}x)"
        )


async def main_async(args: argparse.Namespace) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from graphswarm import Runner

    server = ProcessServer(args.latency_ms) if args.server == "process" else ThreadServer(args.latency_ms)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-collab-"))
    # Long-lived objects (imported modules) out of the collector's way, so that a full
    # collection does not land at random inside either side's timed runs.
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    rows: list[Row] = []
    try:
        async with (
            Runner(str(workdir / "graphswarm.sqlite")) as runner,
            AsyncSqliteSaver.from_conn_string(str(workdir / "bare.sqlite")) as saver,
        ):
            await saver.setup()
            for n in args.sizes:
                reps, warmup = plan_reps(n, args)
                row = await measure(runner, saver, server, n, reps, warmup)
                rows.append(row)
                print(
                    f"  measured N={n}: bare {row.median('bare'):.3f}s, graphswarm {row.median('gs'):.3f}s "
                    f"({reps} reps, {warmup} warm-up; {time.perf_counter() - began:.0f}s elapsed)",
                    flush=True,
                )
        swarms_lines = swarms_comparison(server, args.sizes)
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"graphswarm collaborative vote vs bare LangGraph (Send fan-out + deferred tally), SQLite checkpoints "
        f"(durability=sync), fake server in a {args.server} at {args.latency_ms:.0f} ms, alternating runs"
    )
    print(
        f"ideal = one model latency (all N answers in parallel); reps: {args.reps} (< {LARGE} agents, "
        f"after {args.warmup} warm-up), {args.reps_large} (>= {LARGE} agents, no warm-up)\n"
    )
    print_table(rows, args.latency_ms)
    print_spread(rows)
    print()
    for line in swarms_lines:
        print(line)
    print()
    print_ratios(rows, args.latency_ms)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8,40,200,1000", help="comma-separated agent counts (default 8,40,200,1000)")
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="model latency of the fake server (default 100)"
    )
    parser.add_argument("--reps", type=int, default=5, help=f"timed runs per side below {LARGE} agents (default 5)")
    parser.add_argument(
        "--reps-large", type=int, default=3, help=f"timed runs per side from {LARGE} agents (default 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help=f"untimed runs per side first, below {LARGE} agents (default 1)"
    )
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake server in a child process (default) or a thread of this process",
    )
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not args.sizes or min(args.sizes) < 2 or args.reps < 1 or args.reps_large < 1 or args.warmup < 0:
        parser.error("sizes must be integers >= 2 (a vote needs two agents), reps >= 1, warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
