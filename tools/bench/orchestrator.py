"""Orchestrator throughput against an ideal continuous pool, uniform and with stragglers.

An orchestrator (``create_orchestrator(N, leader=Agent(name="orchestrator",
model="orch-model"), model="pool-model", base_url=server.url, max_tasks=T,
max_rounds=1)``) run by ``Runner(db).start(...)`` against the fake OpenAI server
(``tools/fake_openai.py``, in a child process by default). The orchestrator's model is
scripted on the server: a plan of exactly T tasks, then a check with no follow-up tasks,
both answering at 0 ms, so every run does the same work: 1 plan call, T work calls (one
per task, on the pool's model, each carrying the scenario's latency), 1 check call. The
server's call counts are checked after every run, and every task must be done on its
first attempt.

Two scenarios (``--scenarios``):

- ``uniform``: every work call takes ``--latency-ms`` (default 100), for each pool size
  of ``--sizes`` with ``--tasks-per-agent`` tasks per agent;
- ``stragglers``: every work call takes ``--straggler-latency-ms`` plus a uniform random
  jitter of up to ``--jitter-ms`` (defaults 200 ms + up to 2 s), ``--straggler-tasks``
  tasks (120) over ``--straggler-agents`` agents (40). The server draws the jitter from
  its seeded generator in the order requests arrive; every side of one repetition
  starts from the same seed (a new one per repetition), so they draw the same numbers.

Measured side by side, in the same process and event loop, runs alternating:

- graphswarm on each database of ``--db`` (default: a SQLite file in a temp dir, the
  durable default, and ``"memory"``);
- ``pool``, the reference: the ideal continuous pool, ``concurrency`` asyncio workers
  pulling the T tasks from a queue, each call through the same chat-model client
  graphswarm resolves (``resolve_model("floor-model", base_url=...)``, the shared HTTP
  client), with the same plan and check calls before and after; no graph, no
  checkpoints;
- ``waves``: the same calls in waves of ``concurrency`` (``gather`` per wave): the shape
  of a pool made of LangGraph supersteps (a ``Send`` per task), which waits for its
  slowest call before the next wave starts.

Reported per scenario and size (medians of the timed runs):

- wall s: end to end (for graphswarm ``Runner.start``: graph build and compile, plan,
  pool, check, run records); tasks/s = T / wall;
- work s: graphswarm from the plan node's update to the pool node's; the references
  from their first work call to their last answer;
- wall/pool and work/pool: against the ideal pool's median in the same run (the target
  is graphswarm/pool <= 1.2x under stragglers);
- ideal s (uniform only) = T x latency / concurrency;
- call s: mean time of one work call (graphswarm: ``latency_s`` of
  ``state["attempts"]``, which includes the agent's own retries; the references:
  timed around ``ainvoke``);
- cpu s: CPU time of this process during the run;
- tasks per agent: ``load_spread(state["agent_stats"])``, min / mean / max.

Usage::

    python tools/bench/orchestrator.py                              # both scenarios
    python tools/bench/orchestrator.py --scenarios stragglers --reps 5
    python tools/bench/orchestrator.py --scenarios uniform --sizes 10,40 --latency-ms 50
    python tools/bench/orchestrator.py --db memory --server thread  # fake server in this process

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

from tools.bench.servers import ProcessServer, ThreadServer, check_server  # noqa: E402 - after the path set-up above

ORCH_MODEL = "orch-model"
POOL_MODEL = "pool-model"
FLOOR_MODEL = "floor-model"
POOL = "pool"
WAVES = "waves"
REFERENCES = (POOL, WAVES)
UNIFORM = "uniform"
STRAGGLERS = "stragglers"
OBJECTIVE = "Write the chapters of a field guide to the birds of one valley."


@dataclass(frozen=True)
class Scenario:
    name: str
    agents: int
    tasks: int
    latency_ms: float
    jitter_ms: float
    concurrency: int

    @property
    def ideal(self) -> float | None:
        """Seconds a perfect pool needs when every call takes the same time."""
        if self.jitter_ms:
            return None
        return self.tasks * self.latency_ms / 1000 / self.concurrency


# --------------------------------------------------------------------------
# The fake server's scripts and checks
# --------------------------------------------------------------------------


def orchestrator_script(tasks: int) -> list[dict[str, Any]]:
    """The orchestrator's two answers, at 0 ms: a plan of exactly `tasks` tasks, then a
    check with no follow-up tasks."""
    plan = [{"title": f"chapter {i + 1}", "description": f"write chapter {i + 1}"} for i in range(tasks)]
    return [
        {"json": {"tasks": plan}, "latency_ms": 0},
        {"json": {"answer": "the field guide", "follow_up_tasks": []}, "latency_ms": 0},
    ]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --------------------------------------------------------------------------
# One run of each side
# --------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    work: float
    cpu: float
    call: float
    """Mean seconds of one work call."""
    spread: tuple[float, float, float] | None = None
    """Finished tasks per agent: min, mean, max."""


async def run_graphswarm(runner: Any, server: Any, s: Scenario) -> Sample:
    from graphswarm import Agent, RunStatus
    from graphswarm.architectures.orchestrator import create_orchestrator, load_spread

    server.script(ORCH_MODEL, orchestrator_script(s.tasks))
    marks: dict[str, float] = {}

    def on_update(node: str, update: dict[str, Any]) -> None:
        marks[node] = time.perf_counter()

    gc.collect()
    cpu = cpu_seconds()
    started = time.perf_counter()
    graph = create_orchestrator(
        s.agents,
        leader=Agent(name="orchestrator", role="orchestrator", model=ORCH_MODEL),
        model=POOL_MODEL,
        base_url=server.url,
        concurrency=s.concurrency,
        max_tasks=s.tasks,
        max_rounds=1,
    )
    result = await runner.start(
        graph,
        OBJECTIVE,
        run_id=f"orch-{s.name}-{s.agents}-{uuid.uuid4().hex[:10]}",
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
        or len(state.get("tasks", [])) != s.tasks
        or len(done) != s.tasks
        or any(t["attempts"] != 1 for t in done)
        or len(attempts) != s.tasks
    ):
        raise RuntimeError(
            f"orchestrator run went wrong: {result.status} {len(done)}/{s.tasks} tasks done, "
            f"{len(attempts)} attempts, stop reason {result.stop_reason} {result.record.error}"
        )
    check_server(server, {ORCH_MODEL: 2, POOL_MODEL: s.tasks})
    spread = load_spread(state["agent_stats"])
    return Sample(
        wall=wall,
        work=marks["pool"] - marks["plan"],
        cpu=cpu,
        call=statistics.fmean(a["latency_s"] for a in attempts),
        spread=(spread["min"], spread["mean"], spread["max"]),
    )


async def run_reference(server: Any, s: Scenario, *, waves: bool) -> Sample:
    """The same calls with no graph: a plan call, the T work calls through graphswarm's
    client for a served model (`concurrency` workers pulling from a queue, or `waves`
    of `concurrency`), a check call."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from graphswarm.models import resolve_model

    leader = resolve_model(ORCH_MODEL, base_url=server.url)
    model = resolve_model(FLOOR_MODEL, base_url=server.url)
    latencies: list[float] = []

    async def one(i: int, worker: int) -> None:
        messages = [
            SystemMessage(f"You are agent {worker}. Objective: {OBJECTIVE}"),
            HumanMessage(f"Your task: chapter {i + 1}\nwrite chapter {i + 1}"),
        ]
        called = time.perf_counter()
        await model.ainvoke(messages)
        latencies.append(time.perf_counter() - called)

    async def worker(queue: asyncio.Queue[int], name: int) -> None:
        while not queue.empty():
            await one(queue.get_nowait(), name)

    server.script(ORCH_MODEL, orchestrator_script(s.tasks))
    gc.collect()
    cpu = cpu_seconds()
    started = time.perf_counter()
    await leader.ainvoke([HumanMessage(f"Plan: {OBJECTIVE}")])
    work_started = time.perf_counter()
    if waves:
        for first in range(0, s.tasks, s.concurrency):
            ids = range(first, min(first + s.concurrency, s.tasks))
            await asyncio.gather(*(one(i, i - first) for i in ids))
    else:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(s.tasks):
            queue.put_nowait(i)
        await asyncio.gather(*(worker(queue, w) for w in range(s.concurrency)))
    work = time.perf_counter() - work_started
    await leader.ainvoke([HumanMessage(f"Check: {OBJECTIVE}")])
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    check_server(server, {ORCH_MODEL: 2, FLOOR_MODEL: s.tasks})
    return Sample(wall=wall, work=work, cpu=cpu, call=statistics.fmean(latencies))


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    sides: dict[str, list[Sample]] = field(default_factory=dict)

    def median(self, side: str, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.sides[side])


async def measure(runners: dict[str, Any], server: Any, s: Scenario, args: argparse.Namespace) -> Row:
    sides = [*runners, *REFERENCES]
    row = Row(s, {side: [] for side in sides})
    server.configure(latency_ms=s.latency_ms, jitter_ms=s.jitter_ms)
    for rep in range(args.warmup + args.reps):
        # Rotate the order, so that no side always runs first (or right after another).
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for side in order:
            # Every side of a repetition draws the same latencies (the same seed).
            server.configure(seed=rep)
            server.reset()
            if side in REFERENCES:
                sample = await run_reference(server, s, waves=side == WAVES)
            else:
                sample = await run_graphswarm(runners[side], server, s)
            if rep >= args.warmup:
                row.sides[side].append(sample)
    return row


def _spread(samples: list[Sample]) -> str:
    spreads = sorted({s.spread for s in samples if s.spread is not None})
    if not spreads:
        return "-"
    return " | ".join(f"{lo:g} / {mean:g} / {hi:g}" for lo, mean, hi in spreads)


def describe(s: Scenario) -> str:
    jitter = f" + up to {s.jitter_ms:.0f} ms jitter" if s.jitter_ms else ""
    return f"{s.name}: {s.tasks} tasks, {s.agents} agents, {s.concurrency} in flight, {s.latency_ms:.0f} ms{jitter}"


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'scenario':>10} {'size':>5} {'side':>7} {'tasks':>6} {'wall s':>7} {'tasks/s':>8} "
        f"{'work s':>7} {'wall/pool':>9} {'work/pool':>9} {'ideal s':>7} {'call s':>7} {'cpu s':>6}  "
        "tasks per agent min / mean / max"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        s = r.scenario
        pool_wall, pool_work = r.median(POOL, "wall"), r.median(POOL, "work")
        for side, samples in r.sides.items():
            wall, work = r.median(side, "wall"), r.median(side, "work")
            ideal = "-" if s.ideal is None else f"{s.ideal:.3f}"
            print(
                f"{s.name:>10} {s.agents:>5} {side:>7} {s.tasks:>6} {wall:>7.3f} {s.tasks / wall:>8.1f} "
                f"{work:>7.3f} {wall / pool_wall:>8.2f}x {work / pool_work:>8.2f}x {ideal:>7} "
                f"{r.median(side, 'call'):>7.3f} {r.median(side, 'cpu'):>6.2f}  {_spread(samples)}"
            )


def print_spread(rows: list[Row]) -> None:
    print("\nspread of the timed runs (wall min / median / max, seconds):")
    for r in rows:
        for side, samples in r.sides.items():
            values = [s.wall for s in samples]
            print(
                f"  {r.scenario.name:<10} N={r.scenario.agents:<4} {side:<7} {min(values):.3f} / "
                f"{statistics.median(values):.3f} / {max(values):.3f}  (n={len(values)})"
            )


def print_ratios(rows: list[Row]) -> None:
    """One line per scenario and size: graphswarm and the waves against the ideal pool."""
    for r in rows:
        pool = r.median(POOL, "wall")
        parts = [f"{side}/pool {r.median(side, 'wall') / pool:.2f}x" for side in r.sides if side != POOL]
        print(f"RATIO {describe(r.scenario)}: pool {pool:.3f}s; " + ", ".join(parts))


async def main_async(args: argparse.Namespace) -> None:
    from graphswarm import Runner

    scenarios = []
    for name in args.scenarios:  # in the order given
        if name == UNIFORM:
            for n in args.sizes:
                c = args.concurrency or n
                scenarios.append(Scenario(UNIFORM, n, args.tasks_per_agent * n, args.latency_ms, 0.0, c))
        else:
            n = args.straggler_agents
            c = args.concurrency or n
            s = Scenario(STRAGGLERS, n, args.straggler_tasks, args.straggler_latency_ms, args.jitter_ms, c)
            scenarios.append(s)

    server = ProcessServer(0.0) if args.server == "process" else ThreadServer(0.0)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-orch-"))
    # Long-lived objects (imported modules) out of the collector's way, so that a full
    # collection does not land at random inside a timed run.
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    rows: list[Row] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            runners: dict[str, Any] = {}
            for db in args.db:
                target = str(workdir / "graphswarm.sqlite") if db == "sqlite" else db
                runners[db] = await stack.enter_async_context(Runner(target))
            for s in scenarios:
                row = await measure(runners, server, s, args)
                rows.append(row)
                walls = ", ".join(f"{side} {row.median(side, 'wall'):.3f}s" for side in row.sides)
                print(f"  measured {describe(s)}: {walls} ({time.perf_counter() - began:.0f}s elapsed)", flush=True)
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"graphswarm orchestrator against the ideal continuous pool; fake server in a {args.server}; "
        f"{args.reps} timed reps per side after {args.warmup} warm-up, alternating; medians"
    )
    for s in scenarios:
        print(f"  {describe(s)}")
    print(
        "sides: sqlite = Runner(<sqlite file>), memory = Runner('memory'); no graph, the same calls "
        "through the same client: pool = the ideal continuous pool (workers pulling from a queue), "
        "waves = in waves of the concurrency (a pool of supersteps)"
    )
    print("work = plan -> pool update (references: first work call -> last answer); call = mean work call\n")
    print_table(rows)
    print_spread(rows)
    print()
    print_ratios(rows)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")


def _ints(parser: argparse.ArgumentParser, items: list[str]) -> list[int]:
    try:
        return [int(s) for item in items for s in item.split(",") if s.strip()]
    except ValueError:
        parser.error(f"sizes must be integers, got {' '.join(items)!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        default=f"{STRAGGLERS},{UNIFORM}",
        help=f"comma-separated, run in that order: {STRAGGLERS} and/or {UNIFORM} (default both)",
    )
    parser.add_argument(
        "--sizes",
        "--agents",
        nargs="+",
        default=["10,40,200"],
        help="uniform: agent counts, comma- or space-separated (default 10,40,200)",
    )
    parser.add_argument("--tasks-per-agent", type=int, default=4, help="uniform: tasks per agent (default 4)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="uniform: each work call's ms (default 100)")
    parser.add_argument("--straggler-agents", type=int, default=40, help="stragglers: agents (default 40)")
    parser.add_argument("--straggler-tasks", type=int, default=120, help="stragglers: tasks (default 120)")
    parser.add_argument(
        "--straggler-latency-ms", type=float, default=200.0, help="stragglers: base ms of a call (default 200)"
    )
    parser.add_argument(
        "--jitter-ms", type=float, default=2000.0, help="stragglers: up to this many ms more per call (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=0, help="tasks in flight at once (default 0: one per agent)")
    parser.add_argument(
        "--db",
        default="sqlite,memory",
        help="comma-separated Runner databases: sqlite (a file), memory (default sqlite,memory)",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed runs per side and size (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side and size first (default 1)")
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake server in a child process (default) or a thread of this process",
    )
    args = parser.parse_args(argv)
    args.sizes = _ints(parser, args.sizes)
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios or set(args.scenarios) - {UNIFORM, STRAGGLERS}:
        parser.error(f"--scenarios takes {UNIFORM} and/or {STRAGGLERS}, got {','.join(args.scenarios)!r}")
    if not args.sizes or min(args.sizes) < 1 or args.tasks_per_agent < 1:
        parser.error("sizes and tasks-per-agent must be positive integers")
    if args.straggler_agents < 1 or args.straggler_tasks < 1:
        parser.error("straggler-agents and straggler-tasks must be positive integers")
    if args.reps < 1 or args.warmup < 0 or args.concurrency < 0:
        parser.error("reps must be >= 1, warmup >= 0, concurrency >= 0")
    if not args.db or set(args.db) - {"sqlite", "memory"} or len(set(args.db)) < len(args.db):
        parser.error(f"--db takes sqlite and/or memory, got {','.join(args.db)!r}")
    if max(max(args.sizes) * args.tasks_per_agent, args.straggler_tasks) > 10_000:
        parser.error("at most 10000 tasks per run (the orchestrator's max_tasks)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
