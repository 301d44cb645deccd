"""Orchestrator throughput: tasks per second for a pool of N agents, against the ideal.

An orchestrator (``create_orchestrator(N, leader=Agent(name="orchestrator",
model="orch-model"), model="pool-model", base_url=server.url, max_tasks=T,
max_rounds=1)``) run by ``Runner(db).start(...)`` against the fake OpenAI server
(``tools/fake_openai.py``, in a child process by default). The orchestrator's model is
scripted on the server: a plan of exactly T = tasks-per-agent x N tasks, then a check
with no follow-up tasks, so every run does the same work: 1 plan call, T work calls
(one per task, on the pool's model), 1 check call. The orchestrator's model answers at
0 ms (per-model latency on the server), so only the pool's calls carry ``--latency-ms``.
The server's call counts are checked after every run, and every task must be done on
its first attempt.

Measured side by side, in the same process and event loop, runs alternating:

- graphswarm on each database of ``--db`` (default: a SQLite file in a temp dir, the
  durable default, and ``"memory"``);
- two client floors, no graph and no checkpoints: the same T calls through the same
  chat-model client graphswarm resolves (``resolve_model("floor-model",
  base_url=...)``, the shared HTTP client). ``floor`` keeps ``concurrency`` calls in
  flight (a semaphore): what the client stack and the server alone allow on this
  machine. ``waves`` sends them in waves of ``concurrency`` (``gather`` per wave), the
  orchestrator's shape: its excess over ``floor`` is the cost of the barrier, and the
  orchestrator's excess over ``waves`` is the graph's (LangGraph, graphswarm,
  checkpoints).

Reported per size (medians of the timed runs):

- wall s: ``Runner.start`` end to end (graph build and compile, plan, every wave,
  check, run records); tasks/s = T / wall;
- work s: from the plan node's update to the last ``schedule`` update (the one that
  finds no task left), taken from ``on_update``: the waves of work only;
- ideal s = T x latency / concurrency (concurrency = N unless ``--concurrency``);
  wall/ideal and work/ideal are measured against it in the same run;
- s/wave = work s / waves (the orchestrator runs a wave of at most ``concurrency``
  tasks, then a deferred ``schedule`` step: a barrier, ideal = one latency per wave);
- call s: mean time of one work call as the ``work`` node measured it (the
  ``latency_s`` of ``state["attempts"]``; for the floors, timed around ``ainvoke``);
  well above the server's latency means calls queue in this process;
- cpu s: CPU time of this process during the run (near wall s: it is CPU-bound);
- tasks per agent: ``load_spread(state["agent_stats"])``, min / mean / max.

Usage::

    python tools/bench/orchestrator.py                      # 10, 40, 200 agents, 4 tasks each, 100 ms
    python tools/bench/orchestrator.py --sizes 10,40 --tasks-per-agent 8 --latency-ms 50
    python tools/bench/orchestrator.py --agents 200 --db memory --reps 5
    python tools/bench/orchestrator.py --server thread      # fake server inside this process

Timings are printed, never asserted; the script exits 0 unless a run goes wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.servers import ProcessServer, ThreadServer  # noqa: E402 - after the path set-up above

ORCH_MODEL = "orch-model"
POOL_MODEL = "pool-model"
FLOOR_MODEL = "floor-model"
FLOOR = "floor"
WAVES = "waves"
OBJECTIVE = "Write the chapters of a field guide to the birds of one valley."


# --------------------------------------------------------------------------
# The fake server, in a child process (default) or in a thread of this process
# --------------------------------------------------------------------------


def orchestrator_script(tasks: int) -> list[dict[str, Any]]:
    """The orchestrator's two answers: a plan of exactly `tasks` tasks, then a check
    with no follow-up tasks."""
    plan = [{"title": f"chapter {i + 1}", "description": f"write chapter {i + 1}"} for i in range(tasks)]
    return [
        {"json": {"tasks": plan}},
        {"json": {"answer": "the field guide", "follow_up_tasks": []}},
    ]


def check_server(server: Any, want: dict[str, int]) -> None:
    """Exactly `want` successful calls per model and no failed ones, or an error."""
    by_model = server.stats()["by_model"]
    got = {m: (s["succeeded"], s["failed"]) for m, s in by_model.items()}
    expected = {m: (n, 0) for m, n in want.items()}
    if got != expected:
        raise RuntimeError(f"unexpected model calls: {got} (expected {expected})")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --------------------------------------------------------------------------
# One run of each side
# --------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float
    call: float
    """Mean seconds of one work call."""
    work: float | None = None
    waves: int | None = None
    spread: tuple[float, float, float] | None = None
    """Finished tasks per agent: min, mean, max."""


async def run_graphswarm(runner: Any, server: Any, n: int, tasks: int, concurrency: int | None) -> Sample:
    from graphswarm import Agent, RunStatus
    from graphswarm.architectures.orchestrator import create_orchestrator, load_spread

    server.reset()
    server.script(ORCH_MODEL, orchestrator_script(tasks))
    marks: list[tuple[str, float]] = []

    def on_update(node: str, update: dict[str, Any]) -> None:
        marks.append((node, time.perf_counter()))

    gc.collect()
    cpu = cpu_seconds()
    started = time.perf_counter()
    graph = create_orchestrator(
        n,
        leader=Agent(name="orchestrator", role="orchestrator", model=ORCH_MODEL),
        model=POOL_MODEL,
        base_url=server.url,
        concurrency=concurrency,
        max_tasks=tasks,
        max_rounds=1,
    )
    result = await runner.start(
        graph,
        OBJECTIVE,
        run_id=f"orch-{n}-{uuid.uuid4().hex[:10]}",
        architecture="orchestrator",
        on_update=on_update,
    )
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu

    state = result.state
    done = [t for t in state.get("tasks", []) if t["status"] == "done"]
    attempts = state.get("attempts", [])
    if (
        result.status is not RunStatus.DONE
        or len(state.get("tasks", [])) != tasks
        or len(done) != tasks
        or any(t["attempts"] != 1 for t in done)
        or len(attempts) != tasks
    ):
        raise RuntimeError(
            f"orchestrator run went wrong: {result.status} {len(done)}/{tasks} tasks done, "
            f"{len(attempts)} attempts, stop reason {result.stop_reason} {result.record.error}"
        )
    check_server(server, {ORCH_MODEL: 2, POOL_MODEL: tasks})

    plan_at = next(t for node, t in marks if node == "plan")
    last_schedule = max(t for node, t in marks if node == "schedule")
    spread = load_spread(state["agent_stats"])
    return Sample(
        wall=wall,
        cpu=cpu,
        call=statistics.fmean(a["latency_s"] for a in attempts),
        work=last_schedule - plan_at,
        waves=len({a["wave"] for a in attempts}),
        spread=(spread["min"], spread["mean"], spread["max"]),
    )


async def run_floor(server: Any, tasks: int, concurrency: int, *, waves: bool) -> Sample:
    """The same T calls through graphswarm's client for a served model, no graph:
    `concurrency` in flight at any time, or (`waves`) in waves of `concurrency`."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from graphswarm.models import resolve_model

    model = resolve_model(FLOOR_MODEL, base_url=server.url)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> float:
        messages = [
            SystemMessage(f"You are agent {i % concurrency}. Objective: {OBJECTIVE}"),
            HumanMessage(f"Your task: chapter {i + 1}\nwrite chapter {i + 1}"),
        ]
        async with gate:
            called = time.perf_counter()
            await model.ainvoke(messages)
            return time.perf_counter() - called

    step = concurrency if waves else tasks  # the semaphore alone bounds the floor
    starts = range(0, tasks, step)
    server.reset()
    gc.collect()
    cpu = cpu_seconds()
    started = time.perf_counter()
    latencies: list[float] = []
    for first in starts:
        ids = range(first, min(first + step, tasks))
        latencies += await asyncio.gather(*(one(i) for i in ids))
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    check_server(server, {FLOOR_MODEL: tasks})
    return Sample(
        wall=wall,
        cpu=cpu,
        call=statistics.fmean(latencies),
        work=wall,
        waves=len(starts) if waves else None,
    )


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    tasks: int
    concurrency: int
    latency_ms: float
    sides: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def ideal(self) -> float:
        return self.tasks * self.latency_ms / 1000 / self.concurrency

    def median(self, side: str, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.sides[side]]
        if any(v is None for v in values):
            return None
        return statistics.median(values)


async def measure(
    runners: dict[str, Any],
    server: Any,
    n: int,
    args: argparse.Namespace,
) -> Row:
    tasks = args.tasks_per_agent * n
    concurrency = args.concurrency or n
    row = Row(n, tasks, concurrency, args.latency_ms)
    sides = [*runners, *([] if args.no_floor else [FLOOR, WAVES])]
    row.sides = {side: [] for side in sides}
    for rep in range(args.warmup + args.reps):
        # Rotate the order, so that no side always runs first (or right after another).
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for side in order:
            if side in (FLOOR, WAVES):
                waves = side == WAVES
                sample = await run_floor(server, tasks, concurrency, waves=waves)
            else:
                sample = await run_graphswarm(runners[side], server, n, tasks, args.concurrency or None)
            if rep >= args.warmup:
                row.sides[side].append(sample)
    return row


def _num(value: float | None, width: int, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _spread(samples: list[Sample]) -> str:
    spreads = sorted({s.spread for s in samples if s.spread is not None})
    if not spreads:
        return "-"
    return " | ".join(f"{lo:g} / {mean:g} / {hi:g}" for lo, mean, hi in spreads)


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'size':>5} {'side':>7} {'tasks':>6} {'waves':>5} {'wall s':>7} "
        f"{'tasks/s':>8} {'work s':>7} {'ideal s':>7} {'wall/ideal':>10} "
        f"{'work/ideal':>10} {'s/wave':>7} {'call s':>7} {'cpu s':>6}  "
        f"tasks per agent min / mean / max"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        for side, samples in r.sides.items():
            wall = r.median(side, "wall")
            work = r.median(side, "work")
            waves = r.median(side, "waves")
            per_wave = None if work is None or not waves else work / waves
            print(
                f"{r.n:>5} {side:>7} {r.tasks:>6} "
                f"{'-' if waves is None else f'{waves:g}':>5} {wall:>7.3f} "
                f"{r.tasks / wall:>8.1f} {_num(work, 7)} {r.ideal:>7.3f} "
                f"{wall / r.ideal:>9.2f}x "
                f"{'-' if work is None else f'{work / r.ideal:.2f}x':>10} "
                f"{_num(per_wave, 7)} {r.median(side, 'call'):>7.3f} "
                f"{r.median(side, 'cpu'):>6.2f}  {_spread(samples)}"
            )


def print_spread(rows: list[Row]) -> None:
    print("\nspread of the timed runs (wall min / median / max, seconds):")
    for r in rows:
        for side, samples in r.sides.items():
            values = [s.wall for s in samples]
            print(
                f"  N={r.n:<4} {side:<7} {min(values):.3f} / "
                f"{statistics.median(values):.3f} / {max(values):.3f}  "
                f"(n={len(values)})"
            )


def print_throughput(rows: list[Row]) -> None:
    for r in rows:
        parts = []
        for side in r.sides:
            wall = r.median(side, "wall")
            parts.append(f"{side} {r.tasks / wall:.1f} ({wall / r.ideal:.2f}x ideal)")
        print(
            f"THROUGHPUT N={r.n} tasks={r.tasks} concurrency={r.concurrency}: "
            f"tasks/s {', '.join(parts)}; ideal {r.tasks / r.ideal:.1f}"
        )


def print_breakdown(rows: list[Row]) -> None:
    """Where the wall time goes, from the medians: client, barrier, graph."""
    for r in rows:
        if FLOOR not in r.sides or WAVES not in r.sides:
            continue
        floor, waves = r.median(FLOOR, "wall"), r.median(WAVES, "wall")
        graph = []
        for side in r.sides:
            if side in (FLOOR, WAVES):
                continue
            wall, work = r.median(side, "wall"), r.median(side, "work")
            per_task = (work - waves) / r.tasks * 1000
            graph.append(
                f"{side} {work - waves:+.3f}s in the waves ({per_task:+.2f} ms/task) + {wall - work:.3f}s outside them"
            )
        print(
            f"OVERHEAD N={r.n}: ideal {r.ideal:.3f}s; client and server (floor - ideal) "
            f"{floor - r.ideal:+.3f}s; wave barrier (waves - floor) {waves - floor:+.3f}s; "
            f"graph (work - waves; wall - work) {'; '.join(graph)}"
        )


async def measure_all(
    runners: dict[str, Any],
    server: Any,
    args: argparse.Namespace,
    rows: list[Row],
    began: float,
) -> None:
    for n in args.sizes:
        row = await measure(runners, server, n, args)
        rows.append(row)
        walls = ", ".join(f"{side} {row.median(side, 'wall'):.3f}s" for side in row.sides)
        print(
            f"  measured N={n} ({row.tasks} tasks): {walls} ({time.perf_counter() - began:.0f}s elapsed)",
            flush=True,
        )


async def main_async(args: argparse.Namespace) -> None:
    from graphswarm import Runner

    server = ProcessServer(args.latency_ms) if args.server == "process" else ThreadServer(args.latency_ms)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-orch-"))
    # Long-lived objects (imported modules) out of the collector's way, so that a full
    # collection does not land at random inside a timed run.
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    rows: list[Row] = []
    try:
        # Only the pool's calls carry the latency: the plan and the check answer at once.
        server.configure(model_latency_ms={ORCH_MODEL: 0.0})
        async with contextlib.AsyncExitStack() as stack:
            runners: dict[str, Any] = {}
            for db in args.db:
                target = str(workdir / "graphswarm.sqlite") if db == "sqlite" else db
                runners[db] = await stack.enter_async_context(Runner(target))
            await measure_all(runners, server, args, rows, began)
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)

    concurrency = f"{args.concurrency} tasks" if args.concurrency else "one task per agent"
    print()
    print(
        f"graphswarm orchestrator: {args.tasks_per_agent} tasks per agent, concurrency "
        f"{concurrency}, fake server in a {args.server} at {args.latency_ms:.0f} ms "
        f"(orchestrator's plan and check at 0 ms); {args.reps} timed reps per side "
        f"after {args.warmup} warm-up, alternating; medians"
    )
    print(
        "sides: sqlite = Runner(<sqlite file>), memory = Runner('memory'); no graph, the "
        "same calls through the same client: floor = concurrency in flight, waves = "
        "in waves of concurrency (floors: work = wall)"
    )
    print(
        "ideal = tasks x latency / concurrency; work = plan update -> last schedule "
        "update; s/wave = work / waves; call = mean seconds of one work call\n"
    )
    print_table(rows)
    print_spread(rows)
    print()
    print_throughput(rows)
    print_breakdown(rows)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        "--agents",
        nargs="+",
        default=["10,40,200"],
        help="agent counts, comma- or space-separated (default 10,40,200)",
    )
    parser.add_argument(
        "--tasks-per-agent",
        type=int,
        default=4,
        help="tasks planned per agent: T = this x N (default 4)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=100.0,
        help="model latency of the pool's calls on the fake server (default 100)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="tasks in flight at once (default 0: one per agent)",
    )
    parser.add_argument(
        "--db",
        default="sqlite,memory",
        help="comma-separated Runner databases: sqlite (a file), memory (default sqlite,memory)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the client floors (the same calls with no graph)",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed runs per side and size (default 3)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed runs per side and size first (default 1)",
    )
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake server in a child process (default) or a thread of this process",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for item in args.sizes for s in item.split(",") if s.strip()]
    except ValueError:
        parser.error(f"sizes must be integers, got {' '.join(args.sizes)!r}")
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    if not args.sizes or min(args.sizes) < 1 or args.tasks_per_agent < 1:
        parser.error("sizes and tasks-per-agent must be positive integers")
    if args.reps < 1 or args.warmup < 0 or args.concurrency < 0:
        parser.error("reps must be >= 1, warmup >= 0, concurrency >= 0")
    if not args.db or set(args.db) - {"sqlite", "memory"} or len(set(args.db)) < len(args.db):
        parser.error(f"--db takes sqlite and/or memory, got {','.join(args.db)!r}")
    if max(args.sizes) * args.tasks_per_agent > 10_000:
        parser.error("at most 10000 tasks per run (the orchestrator's max_tasks)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
