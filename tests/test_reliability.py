"""Reliability of the `graphswarm` command: one owner per run, many processes opening a
new database at once, SIGTERM and Ctrl-C, swarm size limits, and bad input without a
traceback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graphswarm.checkpoint import open_database
from graphswarm.runs import RunOwnedError

POSTGRES_URL = os.environ.get("GRAPHSWARM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def graphswarm(*args: str, db: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    """`graphswarm ARGS --db DB`, finished; stdout and stderr as text."""
    proc = subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", db],
        input=stdin,
        capture_output=True,
        timeout=120,
        env=_environment(env),
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def start(*args: str, db: str, stdin: int | None = None) -> subprocess.Popen:
    """`graphswarm ARGS --db DB`, left running."""
    command = [sys.executable, "-m", "graphswarm", *args, "--db", db]
    return subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment()
    )


def reading_stdin(proc: subprocess.Popen) -> bool:
    """Whether the process waits for input on a pipe (always True where /proc cannot tell)."""
    try:
        return "pipe_read" in Path(f"/proc/{proc.pid}/wchan").read_text()
    except OSError:
        return True


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}, **(extra or {})}


def wait_until(ready: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.05)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def status_of(run_id: str, db: str) -> str:
    return json.loads(graphswarm("show", run_id, "--json", db=db).stdout)["record"]["status"]


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database URL on a schema of its own, with no tables yet."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    schema = f"gs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    return request.getfixturevalue("fresh_postgres")


# -- one owner per run -------------------------------------------------------------


def test_two_resumes_of_a_killed_run_one_runs_and_the_other_is_refused(fake, database):
    fake.configure(latency_ms=30_000)
    first = start("run", "debate", "q", "--agents", "2", "--base-url", fake.url, "--run-id", "owned", db=database)
    wait_until(lambda: fake.stats()["requests"] >= 1, "the run never reached the model")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    # Two resumes at once: one owns the run, the other says who does and exits at once.
    resumes = [start("resume", "owned", db=database) for _ in range(2)]
    try:
        wait_until(lambda: any(p.poll() is not None for p in resumes), "neither resume finished")
        loser = next(p for p in resumes if p.poll() is not None)
        owner = next(p for p in resumes if p is not loser)
        _, stderr = loser.communicate(timeout=10)
        refusal = one_line_error(subprocess.CompletedProcess(loser.args, loser.returncode, "", stderr))
        assert refusal.startswith(f"error: run owned is being executed by process {owner.pid} on ")
        assert "graphswarm resume owned --force" in refusal
        assert owner.poll() is None

        # A new run under that id is refused the same way.
        again = graphswarm("run", "debate", "q", "--base-url", fake.url, "--run-id", "owned", db=database)
        assert f"process {owner.pid}" in one_line_error(again)
    finally:
        for proc in resumes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)

    # Its owner killed with SIGKILL on this host: the run is free at once.
    fake.configure(latency_ms=0)
    resumed = graphswarm("resume", "owned", db=database)
    assert resumed.returncode == 0, resumed.stderr
    assert status_of("owned", database) == "done"


def test_resume_force_takes_a_run_over_from_the_process_holding_it(fake, sqlite_db):
    paused = graphswarm("run", "debate", "q", "--agents", "2", "--base-url", fake.url, "--max-calls", "1",
                        "--run-id", "held", db=sqlite_db)  # fmt: skip
    assert paused.returncode == 3, paused.stderr

    async def resume_while_held(*flags: str) -> subprocess.CompletedProcess:
        async with open_database(sqlite_db) as database, database.leases.hold("held"):
            return await asyncio.to_thread(graphswarm, "resume", "held", "--max-calls", "50", *flags, db=sqlite_db)

    refused = asyncio.run(resume_while_held())
    assert f"process {os.getpid()}" in one_line_error(refused)
    taken_over = asyncio.run(resume_while_held("--force"))
    assert taken_over.returncode == 0, taken_over.stderr
    assert status_of("held", sqlite_db) == "done"


def test_a_lease_is_refused_while_held_and_free_once_released(sqlite_db):
    async def scenario() -> None:
        async with open_database(sqlite_db) as database:
            leases = database.leases
            async with leases.hold("r1") as lease:
                with pytest.raises(RunOwnedError, match=f"process {lease.pid}"):
                    async with leases.hold("r1"):
                        pass
                async with leases.hold("r2"):  # another run is another lease
                    pass
            async with leases.hold("r1"):  # released on leaving the block
                pass

    asyncio.run(scenario())


# -- a new database opened by many processes at once ---------------------------------


def test_eight_runs_at_once_on_a_new_database_all_succeed(fake, database):
    # Each run reads its objective on stdin before it opens the database: the eight are
    # let go together, once all of them wait for it, so that they set the database up at once.
    runs = [
        start("run", "collaborative", "-", "--agents", "2", "--base-url", fake.url, "--model", "m",
              "--run-id", f"at-once-{i}", "--quiet", db=database, stdin=subprocess.PIPE)
        for i in range(8)
    ]  # fmt: skip
    try:
        wait_until(lambda: all(reading_stdin(proc) for proc in runs), "the runs never read their objective")
        for i, proc in enumerate(runs):
            assert proc.stdin is not None
            proc.stdin.write(f"question {i}")
            proc.stdin.close()
        for proc in runs:
            proc.wait(timeout=240)
        errors = [proc.stderr.read() if proc.stderr else "" for proc in runs]
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in runs] == [0] * 8, "\n".join(errors)
    listed = graphswarm("runs", db=database).stdout
    assert sorted(line.split("│")[1].strip() for line in listed.splitlines() if "at-once-" in line) == [
        f"at-once-{i}" for i in range(8)
    ]


# -- SIGTERM and Ctrl-C ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "code", "said"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_stops_the_run_cleanly_and_resume_finishes_it(fake, sqlite_db, sent, code, said):
    fake.configure(latency_ms=30_000)
    run = start("run", "debate", "q", "--agents", "2", "--base-url", fake.url, "--run-id", "sig", db=sqlite_db)
    try:
        wait_until(lambda: fake.stats()["requests"] >= 2, "the run never reached the model")
        run.send_signal(sent)
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"{said}; run sig is saved, continue it with: graphswarm resume sig --db {sqlite_db}"
    )
    assert "Traceback" not in stderr and "Exception" not in stderr
    assert status_of("sig", sqlite_db) == "interrupted"

    fake.configure(latency_ms=0)
    resumed = graphswarm("resume", "sig", db=sqlite_db)
    assert resumed.returncode == 0, resumed.stderr
    assert status_of("sig", sqlite_db) == "done"


# -- swarm size limits -------------------------------------------------------------


def test_a_swarm_over_the_agent_limit_is_refused_before_anything_is_written(fake, tmp_path):
    db = tmp_path / "runs.sqlite"
    refused = graphswarm("run", "collaborative", "q", "--agents", "100000", "--base-url", fake.url, db=str(db))
    assert one_line_error(refused) == (
        "error: 100000 agents is over the limit of 5000 agents per swarm: "
        "raise it with the environment variable GRAPHSWARM_MAX_AGENTS=100000"
    )
    assert not db.exists()

    lowered = {"GRAPHSWARM_MAX_AGENTS": "2"}
    refused = graphswarm("run", "collaborative", "q", "--agents", "3", "--base-url", fake.url, db=str(db), env=lowered)
    assert "over the limit of 2 agents" in one_line_error(refused)
    allowed = graphswarm("run", "collaborative", "q", "--agents", "2", "--base-url", fake.url, db=str(db), env=lowered)
    assert allowed.returncode == 0, allowed.stderr


# -- bad input -----------------------------------------------------------------------


def _not_utf8_file(tmp_path: Path) -> list[str]:
    path = tmp_path / "objective.txt"
    path.write_bytes(b"\xff\xfe not text")
    return ["run", "collaborative", "--file", str(path)]


@pytest.mark.parametrize(
    ("args", "stdin", "db", "expected"),
    [
        (lambda tmp: ["run", "task_loop", "q", "-o", "tools=5"], None, "runs.sqlite", "option tools"),
        (_not_utf8_file, None, "runs.sqlite", "is not UTF-8 text (byte 0xff at offset 0)"),
        (lambda tmp: ["run", "collaborative", "-"], b"\xff\xfe", "runs.sqlite", "stdin is not UTF-8 text"),
        (lambda tmp: ["run", "collaborative", "q"], None, ".", "it is a directory"),
        (lambda tmp: ["runs"], None, ".", "it is a directory"),
        (lambda tmp: ["run", "collaborative", "q", "-o", "x:smile:=1"], None, "runs.sqlite", "option 'x:smile:'"),
        (lambda tmp: ["run", "collaborative", "q", "--run-id", ":smile:"], None, "runs.sqlite", "':smile:'"),
    ],
    ids=["option-type", "file-not-utf8", "stdin-not-utf8", "db-directory", "runs-db-directory", "emoji-code",
         "emoji-code-run-id"],
)  # fmt: skip
def test_bad_input_is_one_line_without_a_traceback(fake, tmp_path, args, stdin, db, expected):
    argv = args(tmp_path)
    if argv[0] == "run":
        argv += ["--base-url", fake.url]
    proc = graphswarm(*argv, db=str(tmp_path / db), stdin=stdin)
    assert expected in one_line_error(proc)
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr


# -- SIGKILL: finished calls are kept ---------------------------------------------------


def test_calls_finished_before_a_kill_are_not_made_again_on_resume(fake, sqlite_db):
    # 34 answers finishing one every 4 ms, as a swarm's fan-out does, and 6 that never
    # come (the run cannot end before it is killed 0.3 s after the last answer). A run that
    # held its event loop at the first reply (loading prices) lost every answer meanwhile.
    answers = [{"content": "Final answer: 4", "latency_ms": 500 + 4 * i} for i in range(34)]
    fake.script("m", answers + [{"content": "never sent", "latency_ms": 30_000}] * 6)
    run = start("run", "collaborative", "q", "-n", "40", "--base-url", fake.url, "--model", "m",
                "--run-id", "killed", "--quiet", db=sqlite_db)  # fmt: skip
    try:
        while len(fake.stats()["completed"]) < 34 and run.poll() is None:
            time.sleep(0.002)
        time.sleep(0.3)  # the answers' way back to the run, not the seconds a held loop would take
        run.kill()
        run.communicate(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
    before = [call["fingerprint"] for call in fake.stats()["completed"]]
    assert len(before) == 34, "the run stopped before it could be killed"

    resumed = graphswarm("resume", "killed", db=sqlite_db)
    assert resumed.returncode == 0, resumed.stderr
    after = [call["fingerprint"] for call in fake.stats()["completed"]]
    made_again = [fingerprint for fingerprint in set(before) if after.count(fingerprint) > 1]
    assert not made_again, f"{len(made_again)} of {len(before)} finished calls were made again"


# -- an edit at a breakpoint continues from there ---------------------------------------


def latest_checkpoint(run_id: str, db: str) -> str:
    """The id of the run's last checkpoint (the last row of `graphswarm history`)."""
    rows = [line.split("│") for line in graphswarm("history", run_id, db=db).stdout.splitlines() if "│" in line]
    return rows[-1][2].strip()


def test_an_edit_at_a_breakpoint_of_a_fork_continues_from_the_breakpoint(fake, sqlite_db):
    paused = graphswarm("run", "debate", "Is tea better?", "--agents", "2", "--pause-before", "assess",
                        "--base-url", fake.url, "--run-id", "bp", "--quiet", db=sqlite_db)  # fmt: skip
    assert paused.returncode == 3, paused.stderr
    forked = graphswarm("fork", "bp", "--checkpoint", latest_checkpoint("bp", sqlite_db), "--run-id", "bp-2",
                        db=sqlite_db)  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    assert fake.stats()["requests"] == 2  # round 1 argued, not yet assessed

    resumed = graphswarm("resume", "bp-2", "--set", 'moderator_notes=["be brief"]', "--quiet", db=sqlite_db)
    assert resumed.returncode == 3, resumed.stderr  # at the breakpoint again, in round 2
    state = json.loads(graphswarm("show", "bp-2", "--json", db=sqlite_db).stdout)
    assert state["state"]["moderator_notes"] == ["be brief"]
    assert [turn["round"] for turn in state["state"]["transcript"]] == [1, 1, 2, 2]  # round 1 not argued again
    assert state["next"] == ["assess"]
    assert fake.stats()["requests"] == 4
