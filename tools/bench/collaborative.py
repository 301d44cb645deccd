"""Collaborative vote at scale: graphswarm vs a bare LangGraph graph, swarms and the SDK floor.

Every side runs in its own process (a worker this script starts and drives over a pipe)
against the same fake OpenAI server (``tools/fake_openai.py``, in a child process by
default), one run at a time, the sides taking turns:

- ``sdk``: the floor. ``openai.AsyncOpenAI`` (its default client) and ``asyncio.gather``
  of N ``chat.completions.create`` calls, the answers counted in a ``Counter``;
- ``bare``: a hand-written LangGraph graph of the same shape as graphswarm's (``Send``
  to N ``answer`` nodes calling ``langchain_openai.ChatOpenAI(...).ainvoke``, a deferred
  ``tally``), compiled per run with ``AsyncSqliteSaver`` on its own file and run with
  ``durability="sync"``; its chat model is made once per process, as a program would;
- ``graphswarm``: ``Runner(<sqlite file>).start(SwarmSpec(architecture="collaborative",
  agents=[Agent(name="a0"), ...], base_url=server.url, model="bench"))``;
- ``swarms`` (if the ``swarms`` package is importable in the worker):
  ``MajorityVoting(agents=[swarms.Agent(...)] * N).run(objective)``; its agents are
  made before the clock starts (their making is printed apart).

Each side's N answers are scripted on the server (two thirds "42", one third "41"), so
every side counts the same vote; the server's calls per run are checked (exactly N for
sdk, bare and graphswarm; swarms' own count is printed).

Per size, a fresh worker per side is started, so its first run is a **cold** run (a new
process: clients, connections, caches and the first graph compile all new; imports are
done before the clock, those of the OpenAI SDK and langchain-openai included). Then
``--reps`` **warm** runs per side follow in rounds whose order rotates. Reported: the cold time and the median of the warm runs per side, and
the ratios graphswarm/bare, swarms/graphswarm and graphswarm/sdk (the floor).

Usage::

    python tools/bench/collaborative.py                           # 40, 200, 1000 agents at 100 ms, 3 reps
    python tools/bench/collaborative.py --sizes 8,40 --reps 5 --latency-ms 50
    python tools/bench/collaborative.py --sides sdk,graphswarm    # only these sides
    python tools/bench/collaborative.py --server thread           # fake server in this process

Timings are printed, never asserted; the script exits 0 unless a run goes wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

from langgraph.types import Send
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.servers import ProcessServer, ThreadServer  # noqa: E402

SIDES = ("sdk", "bare", "graphswarm", "swarms")
MODELS = {"sdk": "bench-sdk", "bare": "bench-bare", "graphswarm": "bench", "swarms": "bench-swarms"}
EXACT_CALLS = {"sdk", "bare", "graphswarm"}
"""Sides that must make exactly N model calls per run (swarms' count is only printed)."""
TARGET_BARE = 1.15
"""graphswarm/bare at most this."""
TARGET_SWARMS = 2.0
"""swarms/graphswarm at least this (from 200 agents)."""
TARGET_FLOOR = 1.2
"""graphswarm/sdk at most this (from 200 agents)."""
TARGETS_FROM = 200
OBJECTIVE = "What is six times seven? Reply with the number."
SYSTEM = (
    "You are {name}, an assistant. Answer the question you are given. "
    "End your reply with one line of the form:\nFinal answer: <your answer>"
)


def vote_script(n: int) -> list[dict[str, Any]]:
    """N answers: two thirds say 42, the rest 41 (a clear majority, not unanimous)."""
    return [{"content": f"Six sevens.\nFinal answer: {41 if i % 3 == 2 else 42}"} for i in range(n)]


_FINAL = re.compile(r"final answer\s*:\s*(.+)", re.IGNORECASE)


def final_answer(text: str) -> str:
    found = _FINAL.findall(text)
    return (found[-1] if found else text).strip().rstrip(".").lower()


def majority(texts: list[str]) -> str:
    return Counter(final_answer(t) for t in texts).most_common(1)[0][0]


# --------------------------------------------------------------------------
# The sides, each run in its own worker process
# --------------------------------------------------------------------------


class Side:
    """One side in a worker: `run(n)` returns a short check of the result ("42" when right)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

    def run(self, n: int) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self.loop.close()


class SdkSide(Side):
    """The floor: the OpenAI SDK alone, its client made on the first run."""

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        import openai

        self.openai = openai
        self.client: Any = None

    async def _run(self, n: int) -> str:
        if self.client is None:
            self.client = self.openai.AsyncOpenAI(base_url=self.url, api_key="x", max_retries=2)
        replies = await asyncio.gather(
            *(
                self.client.chat.completions.create(
                    model=MODELS["sdk"],
                    messages=[
                        {"role": "system", "content": SYSTEM.format(name=f"a{i}")},
                        {"role": "user", "content": f"Question: {OBJECTIVE}"},
                    ],
                )
                for i in range(n)
            )
        )
        return majority([r.choices[0].message.content or "" for r in replies])

    def run(self, n: int) -> str:
        return self.loop.run_until_complete(self._run(n))


class BareState(TypedDict, total=False):
    objective: str
    answers: Annotated[list[dict[str, str]], operator.add]
    final_answer: str
    agreement: float


class BareAnswerInput(TypedDict):
    objective: str
    agent: str


class BareSide(Side):
    """A hand-written LangGraph graph of graphswarm's shape; the chat model is made once
    (on the first run), the graph built and compiled per run as `Runner.start` does."""

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.model: Any = None
        self._saver_cm = AsyncSqliteSaver.from_conn_string(str(workdir / "bare.sqlite"))
        self.saver = self.loop.run_until_complete(self._saver_cm.__aenter__())
        self.loop.run_until_complete(self.saver.setup())

    def build(self, names: list[str]) -> Any:
        from langchain_core.messages import HumanMessage, SystemMessage
        from langchain_openai import ChatOpenAI
        from langgraph.graph import END, START, StateGraph

        if self.model is None:
            # Client retries, as graphswarm retries transient errors through its RetryPolicy.
            self.model = ChatOpenAI(base_url=self.url, api_key="x", model=MODELS["bare"], max_retries=2)
        model = self.model

        def fan_out(state: BareState) -> list[Send]:
            return [Send("answer", {"objective": state["objective"], "agent": name}) for name in names]

        async def answer(state: BareAnswerInput) -> dict[str, Any]:
            messages = [SystemMessage(SYSTEM.format(name=state["agent"])), HumanMessage(f"Question: {OBJECTIVE}")]
            reply = await model.ainvoke(messages)
            return {"answers": [{"agent": state["agent"], "text": reply.text}]}

        def tally(state: BareState) -> dict[str, Any]:
            votes = Counter(final_answer(a["text"]) for a in state["answers"])
            winner, count = votes.most_common(1)[0]
            return {"final_answer": winner, "agreement": count / len(state["answers"])}

        graph = StateGraph(BareState)
        graph.add_node("answer", answer, input_schema=BareAnswerInput)
        graph.add_node("tally", tally, defer=True)
        graph.add_conditional_edges(START, fan_out, ["answer"])
        graph.add_edge("answer", "tally")
        graph.add_edge("tally", END)
        return graph

    async def _run(self, n: int) -> str:
        compiled = self.build([f"a{i}" for i in range(n)]).compile(checkpointer=self.saver)
        config = {"configurable": {"thread_id": f"bare-{n}-{uuid.uuid4().hex[:10]}"}}
        state = await compiled.ainvoke({"objective": OBJECTIVE}, config, durability="sync")
        if len(state.get("answers", [])) != n:
            return f"{len(state.get('answers', []))} answers"
        return str(state.get("final_answer"))

    def run(self, n: int) -> str:
        return self.loop.run_until_complete(self._run(n))

    def close(self) -> None:
        self.loop.run_until_complete(self._saver_cm.__aexit__(None, None, None))
        super().close()


class GraphswarmSide(Side):
    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        from graphswarm import Runner

        self.runner = self.loop.run_until_complete(Runner(str(workdir / "graphswarm.sqlite")).__aenter__())

    async def _run(self, n: int) -> str:
        from graphswarm import Agent, RunStatus, SwarmSpec

        spec = SwarmSpec(
            architecture="collaborative",
            agents=[Agent(name=f"a{i}") for i in range(n)],
            base_url=self.url,
            model=MODELS["graphswarm"],
        )
        result = await self.runner.start(spec, OBJECTIVE, run_id=f"gs-{n}-{uuid.uuid4().hex[:10]}")
        if result.status is not RunStatus.DONE or len(result.calls) != n:
            return f"{result.status} {len(result.calls)} calls {result.record.error}"
        return str(result.final_answer)

    def run(self, n: int) -> str:
        return self.loop.run_until_complete(self._run(n))

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.__aexit__(None, None, None))
        super().close()


class SwarmsSide(Side):
    """swarms' MajorityVoting (synchronous); it and its agents are made before the clock starts."""

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        os.chdir(workdir)  # swarms writes files of its own (agent states, logs) in the working directory
        from swarms import Agent, MajorityVoting

        self.agent_cls, self.voting_cls = Agent, MajorityVoting
        self.agents: list[Any] = []
        self.voting: Any = None
        self.made_s = 0.0

    def prepare(self, n: int) -> None:
        started = time.perf_counter()
        self.agents = [
            self.agent_cls(
                agent_name=f"a{i}",
                system_prompt=SYSTEM.format(name=f"a{i}"),
                model_name=f"openai/{MODELS['swarms']}",
                llm_base_url=self.url,
                llm_api_key="x",
                max_loops=1,
            )
            for i in range(n)
        ]
        # Its consensus agent (one more model call per run) asks the same server.
        self.voting = self.voting_cls(
            agents=self.agents,
            consensus_agent_model_name=f"openai/{MODELS['swarms']}",
            additional_consensus_agent_kwargs={"llm_base_url": self.url, "llm_api_key": "x"},
        )
        self.made_s = time.perf_counter() - started

    def run(self, n: int) -> str:
        out = self.voting.run(OBJECTIVE)
        return "42" if "42" in str(out) else f"no 42 in {str(out)[-120:]!r}"


SIDE_CLASSES: dict[str, Callable[[str, Path], Side]] = {
    "sdk": SdkSide,
    "bare": BareSide,
    "graphswarm": GraphswarmSide,
    "swarms": SwarmsSide,
}


def worker_main(side: str, url: str, workdir: Path) -> int:
    """A side's worker: reads {"n": N} lines, answers {"wall": s, "check": ...} lines.

    Its replies go to the original stdout; anything the libraries print goes to stderr.
    """
    replies: IO[str] = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        # Imports are not part of a run (tools/bench/import_time.py measures them): the
        # model client libraries that every side's first run would import come first.
        import langchain_openai  # noqa: F401
        import openai  # noqa: F401

        runner = SIDE_CLASSES[side](url, workdir)
    except ImportError as exc:
        replies.write(json.dumps({"unavailable": f"{type(exc).__name__}: {exc}"}) + "\n")
        replies.flush()
        return 0
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way during timed runs
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        n = json.loads(line)["n"]
        reply: dict[str, Any] = {}
        try:
            if isinstance(runner, SwarmsSide):
                runner.prepare(n)
                reply["made_s"] = runner.made_s
            gc.collect()
            started = time.perf_counter()
            reply["check"] = runner.run(n)
            reply["wall"] = time.perf_counter() - started
        except Exception as exc:
            reply["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    runner.close()
    return 0


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


class Worker:
    """A side's worker process, started fresh (so that its first run is cold)."""

    def __init__(self, side: str, url: str, workdir: Path) -> None:
        self.side = side
        self.dir = workdir / f"{side}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir()
        self.log = open(self.dir / "stderr.log", "w+b")  # noqa: SIM115 - closed in close()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--url", url, "--dir", str(self.dir)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        hello = self._read()
        self.unavailable: str | None = hello.get("unavailable")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{self.side} worker died: {tail}")
        return json.loads(line)

    def run(self, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"n": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


@dataclass
class Row:
    n: int
    cold: dict[str, float] = field(default_factory=dict)
    warm: dict[str, list[float]] = field(default_factory=dict)
    calls: dict[str, set[int]] = field(default_factory=dict)
    made_s: list[float] = field(default_factory=list)

    def med(self, side: str) -> float | None:
        values = self.warm.get(side)
        return statistics.median(values) if values else None

    def ratio(self, top: str, bottom: str) -> float | None:
        a, b = self.med(top), self.med(bottom)
        return a / b if a is not None and b else None


def timed_run(worker: Worker, server: Any, n: int, row: Row) -> float:
    side, model = worker.side, MODELS[worker.side]
    server.reset()
    server.script(model, vote_script(n) * (1 if side in EXACT_CALLS else 3))  # room for swarms' extra calls
    reply = worker.run(n)
    if "error" in reply or reply.get("check") != "42":
        raise RuntimeError(f"{side} N={n} went wrong: {reply.get('error') or reply.get('check')}")
    by_model = server.stats()["by_model"]
    got = {m: (s["succeeded"], s["failed"]) for m, s in by_model.items()}
    if side in EXACT_CALLS and got != {model: (n, 0)}:
        raise RuntimeError(f"{side} N={n}: unexpected model calls {got} (expected {{{model!r}: ({n}, 0)}})")
    row.calls.setdefault(side, set()).add(got.get(model, (0, 0))[0])
    if "made_s" in reply:
        row.made_s.append(reply["made_s"])
    return float(reply["wall"])


def measure(server: Any, sides: list[str], n: int, reps: int, workdir: Path, skipped: dict[str, str]) -> Row:
    row = Row(n)
    workers: list[Worker] = []
    try:
        for side in sides:
            if side in skipped:
                continue
            worker = Worker(side, server.url, workdir)
            if worker.unavailable:
                skipped[side] = worker.unavailable
                worker.close()
                continue
            workers.append(worker)
        for rep in range(reps + 1):
            k = rep % len(workers)
            for worker in workers[k:] + workers[:k]:  # the order rotates every round
                wall = timed_run(worker, server, n, row)
                if rep == 0:
                    row.cold[worker.side] = wall
                else:
                    row.warm.setdefault(worker.side, []).append(wall)
    finally:
        for worker in workers:
            worker.close()
    return row


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_tables(rows: list[Row], sides: list[str]) -> None:
    head = f"{'size':>5} " + " ".join(f"{s + ' warm':>16} {s + ' cold':>16}" for s in sides)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.n:>5} " + " ".join(f"{_s(r.med(s)):>16} {_s(r.cold.get(s)):>16}" for s in sides))
    print()
    head = f"{'size':>5} {'graphswarm/bare':>16} {'swarms/graphswarm':>18} {'graphswarm/sdk':>15} {'bare/sdk':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.n:>5} {_x(r.ratio('graphswarm', 'bare')):>16} {_x(r.ratio('swarms', 'graphswarm')):>18} "
            f"{_x(r.ratio('graphswarm', 'sdk')):>15} {_x(r.ratio('bare', 'sdk')):>9}"
        )


def print_details(rows: list[Row], sides: list[str]) -> None:
    print("\nwarm runs (min / median / max, seconds) and server calls per run:")
    for r in rows:
        for side in sides:
            values = r.warm.get(side)
            if values:
                calls = "/".join(str(c) for c in sorted(r.calls.get(side, ())))
                print(
                    f"  N={r.n:<5} {side:<10} {min(values):.3f} / {statistics.median(values):.3f} / "
                    f"{max(values):.3f}  (n={len(values)}; {calls} calls)"
                )
        if r.made_s:
            print(f"  N={r.n:<5} swarms: making its {r.n} agents took {statistics.median(r.made_s):.3f}s (untimed)")


def print_ratios(rows: list[Row], latency_ms: float) -> None:
    for r in rows:
        checks = [("graphswarm/bare", r.ratio("graphswarm", "bare"), TARGET_BARE, operator.le)]
        if r.n >= TARGETS_FROM:
            checks.append(("swarms/graphswarm", r.ratio("swarms", "graphswarm"), TARGET_SWARMS, operator.ge))
            checks.append(("graphswarm/sdk", r.ratio("graphswarm", "sdk"), TARGET_FLOOR, operator.le))
        for name, value, target, within in checks:
            if value is None:
                continue
            sign = "<=" if within is operator.le else ">="
            verdict = "met" if within(value, target) else "MISSED"
            print(f"RATIO latency={latency_ms:.0f}ms N={r.n}: {name} = {value:.3f}x ({verdict}: {sign} {target}x)")


def run_driver(args: argparse.Namespace) -> None:
    server = ProcessServer(args.latency_ms) if args.server == "process" else ThreadServer(args.latency_ms)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-collab-"))
    began = time.perf_counter()
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    try:
        for n in args.sizes:
            row = measure(server, args.sides, n, args.reps, workdir, skipped)
            rows.append(row)
            done = ", ".join(
                f"{s} {_s(row.med(s))}s (cold {_s(row.cold.get(s))}s)" for s in args.sides if s in row.warm
            )
            print(f"  measured N={n}: {done} ({time.perf_counter() - began:.0f}s elapsed)", flush=True)
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    sides = [s for s in args.sides if s not in skipped]
    print()
    print(
        f"collaborative vote, one process per side, fake server in a {args.server} at {args.latency_ms:.0f} ms; "
        f"per size a fresh worker per side: 1 cold run, then {args.reps} warm runs in rotating order "
        "(medians); seconds"
    )
    for side, why in skipped.items():
        print(f"{side}: skipped ({why})")
    print()
    print_tables(rows, sides)
    print_details(rows, sides)
    print()
    print_ratios(rows, args.latency_ms)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="40,200,1000", help="comma-separated agent counts (default 40,200,1000)")
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="model latency of the fake server (default 100)"
    )
    parser.add_argument("--reps", type=int, default=3, help="warm runs per side and size (default 3)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated sides (default {','.join(SIDES)})")
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake server in a child process (default) or a thread of this process",
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not args.sizes or min(args.sizes) < 2 or args.reps < 1:
        parser.error("sizes must be integers >= 2 (a vote needs two agents), reps >= 1")
    if unknown := [s for s in args.sides if s not in SIDES]:
        parser.error(f"unknown sides {unknown}: choose from {', '.join(SIDES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.url, Path(args.dir))
    run_driver(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
