"""The `graphswarm` command: runs over the fake server, inspection, bad input, kill -9 and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from graphswarm.cli import main
from graphswarm.registry import ARCHITECTURES

AGENTS = {
    "leader": {"name": "lead", "role": "leader", "model": "leader-model"},
    "agents": [
        {"name": "fast1", "role": "researcher", "strengths": ["research"], "model": "fast-1"},
        {"name": "fast2", "role": "writer", "strengths": ["writing"], "model": "fast-2"},
        {"name": "slow1", "role": "engineer", "strengths": ["code"], "model": "slow-1"},
        {"name": "slow2", "role": "critic", "strengths": ["review"], "model": "slow-2"},
    ],
}
WORKER_NAMES = [a["name"] for a in AGENTS["agents"]]


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(AGENTS))
    return path


def script_leader(fake) -> None:
    tasks = [{"title": f"part of {name}", "description": "", "worker": name} for name in WORKER_NAMES]
    fake.script("leader-model", [{"json": {"tasks": tasks}}, {"json": {"answer": "the final site", "approved": True}}])


def cli(*args: str, db: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start_cli(*args: str, db: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.Popen(
        [sys.executable, "-m", "graphswarm", *args, "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill_9_when(proc: subprocess.Popen, ready: Callable[[], bool], failure: str) -> None:
    """Wait (up to a minute) until `ready()`, let finished work reach the checkpoint, then
    kill -9 the process; the test fails with `failure` when `ready()` never holds."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if time.monotonic() > deadline:
                pytest.fail(failure)
            time.sleep(0.05)
        time.sleep(1.0)  # finished tasks' writes reach the checkpoint as pending writes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def one_line_error(proc: subprocess.CompletedProcess | tuple[int, str]) -> str:
    code, stderr = (proc.returncode, proc.stderr) if hasattr(proc, "returncode") else proc
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def answered_once(fake, *models: str) -> bool:
    """Whether each of `models` has answered once."""
    by_model = fake.stats()["by_model"]
    return all(by_model.get(m, {}).get("succeeded") == 1 for m in models)


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_run_show_history_and_runs(fake, agents_file, sqlite_db):
    script_leader(fake)
    run = cli(
        "run",
        "hierarchical",
        "Make a website",
        "--agents-file",
        str(agents_file),
        "--base-url",
        fake.url,
        "--run-id",
        "site-1",
        db=sqlite_db,
        check=True,
    )
    assert run.stdout.strip() == "the final site"
    assert "graphswarm show site-1" in run.stderr

    show = cli("show", "site-1", "--json", db=sqlite_db, check=True)
    data = json.loads(show.stdout)
    assert data["record"]["status"] == "done"
    assert {t["worker"] for t in data["state"]["tasks"]} == set(WORKER_NAMES)
    assert data["usage"]["agents"]["lead"]["calls"] == 2

    history = cli("history", "site-1", db=sqlite_db, check=True)
    assert "lead@plan" in history.stdout and "fast1@work" in history.stdout

    runs = cli("runs", db=sqlite_db, check=True)
    assert "site-1" in runs.stdout and "done" in runs.stdout


def test_objective_from_a_file_and_from_stdin(fake, sqlite_db, tmp_path):
    objective = tmp_path / "objective.txt"
    objective.write_text("Plan a launch\n")
    ok = cli(
        "run",
        "hierarchical",
        "--file",
        str(objective),
        "--agents",
        "1",
        "--base-url",
        fake.url,
        "--run-id",
        "from-file",
        db=sqlite_db,
        check=True,
    )
    assert ok.returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphswarm",
            "run",
            "hierarchical",
            "-",
            "--agents",
            "1",
            "--base-url",
            fake.url,
            "--run-id",
            "from-stdin",
            "--db",
            sqlite_db,
        ],
        input="Plan a party",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert piped.returncode == 0, piped.stderr
    shown = json.loads(cli("show", "from-stdin", "--json", db=sqlite_db, check=True).stdout)
    assert shown["record"]["objective"] == "Plan a party"


def test_draw_prints_mermaid_offline(capsys):
    assert main(["draw", "hierarchical"]) == 0
    mermaid = capsys.readouterr().out
    assert "graph TD;" in mermaid and "plan -.-> work" in mermaid


def test_draw_ascii(capsys):
    assert main(["draw", "hierarchical", "--ascii"]) == 0
    assert "consolidate" in capsys.readouterr().out


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_mermaid_has_no_html(capsys, architecture):
    assert main(["draw", architecture]) == 0
    mermaid = capsys.readouterr().out
    assert "graph TD;" in mermaid and "__start__([start]):::first" in mermaid
    assert "<" not in mermaid and "&nbsp" not in mermaid, mermaid


def test_ascii_lists_the_loop_edge_it_cannot_draw(capsys):
    assert main(["draw", "hierarchical", "--ascii"]) == 0
    picture, _, below = capsys.readouterr().out.partition("edges back up the graph (loops), not drawn above")
    assert "| consolidate |" in picture and "| plan |" in picture
    assert below.splitlines()[1:] == ["  consolidate -.-> plan"]
    assert main(["draw", "competitive", "--ascii"]) == 0  # no loop: nothing listed
    assert "not drawn above" not in capsys.readouterr().out


def test_draw_a_run_as_svg_marks_the_nodes_it_went_through(capsys, sqlite_db, tmp_path):
    from graphswarm import Agent, JoinPolicy, RunFailedError, SwarmSpec, run_swarm
    from graphswarm.testing import ScriptedChatModel

    model = ScriptedChatModel(
        {"leader": [{"tasks": [{"title": "copy", "worker": "writer"}]}], "writer": [ValueError("writer broke")]}
    )
    spec = SwarmSpec(
        architecture="hierarchical", agents=[Agent(name="writer")], model=model, options={"join": JoinPolicy.FAIL_FAST}
    )
    with pytest.raises(RunFailedError):
        run_swarm(spec, "objective", db=sqlite_db, run_id="drawn")
    out = tmp_path / "drawn.svg"
    assert main(["draw", "drawn", "--svg", str(out), "--db", sqlite_db]) == 0
    svg = out.read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "<script" not in svg
    classes = dict((name, cls) for cls, name in re.findall(r'<g class="(node[^"]*)"><title>([^<]+)</title>', svg))
    assert classes == {
        "__start__": "node visited",
        "plan": "node visited",
        "work": "node current",
        "consolidate": "node",
        "__end__": "node",
    }
    assert main(["draw", "drawn", "--db", sqlite_db]) == 0  # mermaid, with the same nodes marked
    assert "class __start__,plan visited\n" in capsys.readouterr().out
    line = one_line_error(run_main(capsys, "draw", "nothing", "--db", sqlite_db))
    assert "unknown architecture or run 'nothing'" in line and "hierarchical" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "swarmy", "x"], "unknown architecture 'swarmy'"),
        (["run", "hierarchical", "x", "--agents", "0"], "at least 1 agent"),
        (["run", "hierarchical", "x", "--agents", "many"], "Invalid value for '--agents'"),
        (["run", "hierarchical", "x", "--db", "mysql://db"], "unsupported database URL"),
        (["run", "hierarchical", "x", "--model", "openai:gpt-4o-mini"], "needs OPENAI_API_KEY"),
        (["run", "hierarchical", "x", "--model", "gpt-4o"], "unknown model 'gpt-4o'"),
        (["run", "hierarchical", "x", "--model", "nosuch:model"], "unknown model provider 'nosuch'"),
        (["run", "hierarchical", "x", "--model", "anthropic:claude"], "pip install langchain-anthropic"),
        (["run", "hierarchical", "x", "--model", "local:/nowhere/model.gguf"], "/nowhere/model.gguf"),
        (["run", "hierarchical", "x", "--base-url", "ftp://host"], "base URL must be http"),
        (["run", "hierarchical", "x", "--join", "sometimes"], "option join must be one of fail_fast, continue, wait"),
        (["run", "hierarchical", "x", "--max-calls", "0", "--base-url", "http://127.0.0.1:9/v1"], "max_calls"),
        (["run", "hierarchical", "   "], "objective is empty"),
        (["show", "no-such-run"], "no run with id 'no-such-run'"),
        (["resume", "no-such-run"], "no run with id 'no-such-run'"),
        (["history", "no-such-run"], "no run with id 'no-such-run'"),
        (["draw", "swarmy"], "unknown architecture"),
        (
            ["run", "debate", "x", "-o", "rounds=many", "--base-url", "http://127.0.0.1:9/v1"],
            "option rounds must be a whole number, got 'many'",
        ),
        (
            ["run", "particle", "x", "-o", "inertia=high", "--base-url", "http://127.0.0.1:9/v1"],
            "option inertia must be a number, got 'high'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, sqlite_db, args, message):
    extra = [] if args[0] == "draw" or "--db" in args else ["--db", sqlite_db]
    line = one_line_error(run_main(capsys, *args, *extra))
    assert message in line


def test_no_model_at_all_says_what_to_install_or_set(capsys, monkeypatch, sqlite_db):
    monkeypatch.setattr("graphswarm.local.local_model_available", lambda: False)
    line = one_line_error(run_main(capsys, "run", "hierarchical", "x", "--db", sqlite_db))
    assert "OPENAI_API_KEY" in line and "graphswarm[local]" in line


def test_bad_input_leaves_an_existing_run_unchanged(fake, capsys, sqlite_db):
    assert (
        main(
            ["run", "hierarchical", "x", "--agents", "1", "--base-url", fake.url, "--run-id", "keep", "--db", sqlite_db]
        )
        == 0
    )
    before = json.loads(cli("show", "keep", "--json", db=sqlite_db, check=True).stdout)
    capsys.readouterr()
    one_line_error(
        run_main(
            capsys,
            "run",
            "hierarchical",
            "y",
            "--agents",
            "1",
            "--base-url",
            fake.url,
            "--run-id",
            "keep",
            "--db",
            sqlite_db,
        )
    )
    one_line_error(run_main(capsys, "resume", "keep", "--db", sqlite_db))  # already done
    one_line_error(run_main(capsys, "resume", "keep", "--max-calls", "-1", "--db", sqlite_db))
    after = json.loads(cli("show", "keep", "--json", db=sqlite_db, check=True).stdout)
    assert after == before


def test_a_failed_run_exits_1_with_the_resume_command_and_resumes(fake, agents_file, sqlite_db):
    script_leader(fake)
    fake.configure(fail_models=["slow-2"])
    failed = cli(
        "run",
        "hierarchical",
        "Make a website",
        "--agents-file",
        str(agents_file),
        "--join",
        "fail_fast",
        "--base-url",
        fake.url,
        "--run-id",
        "flaky",
        db=sqlite_db,
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert f"graphswarm resume flaky --db {sqlite_db}" in failed.stderr

    fake.configure(fail_models=[])
    resumed = cli("resume", "flaky", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "the final site"


def test_kill_9_while_workers_are_in_flight_then_resume_repeats_no_finished_call(fake, agents_file, sqlite_db):
    script_leader(fake)
    fake.configure(model_latency_ms={"slow-1": 30_000, "slow-2": 30_000})
    proc = start_cli(
        "run",
        "hierarchical",
        "Make a website",
        "--agents-file",
        str(agents_file),
        "--base-url",
        fake.url,
        "--run-id",
        "k9",
        db=sqlite_db,
    )
    kill_9_when(proc, lambda: answered_once(fake, "fast-1", "fast-2"), "the fast workers never finished")

    runs = cli("runs", db=sqlite_db, check=True)
    assert "interrupted" in runs.stdout

    fake.configure(model_latency_ms={})
    resumed = cli("resume", "k9", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "the final site"

    stats = fake.stats()
    completed = Counter(c["fingerprint"] for c in stats["completed"])
    assert max(completed.values()) == 1, "a call that had finished before the kill was made again"
    succeeded = {m: s["succeeded"] for m, s in stats["by_model"].items()}
    assert succeeded == {"leader-model": 2, "fast-1": 1, "fast-2": 1, "slow-1": 1, "slow-2": 1}
    resumed_state = json.loads(cli("show", "k9", "--json", db=sqlite_db, check=True).stdout)["state"]

    # The same run without a kill gives the same result.
    script_leader(fake)
    cli(
        "run",
        "hierarchical",
        "Make a website",
        "--agents-file",
        str(agents_file),
        "--base-url",
        fake.url,
        "--run-id",
        "no-kill",
        db=sqlite_db,
        check=True,
    )
    reference = json.loads(cli("show", "no-kill", "--json", db=sqlite_db, check=True).stdout)["state"]
    assert resumed_state["final_answer"] == reference["final_answer"]
    outputs = lambda state: {r["task_id"]: r["output"] for r in state["results"]}  # noqa: E731
    assert outputs(resumed_state) == outputs(reference)


# -- what a first user meets -----------------------------------------------------------

BRACKETED = ["see [docs](https://x)", "x[i]", "[gpt-4o-mini] answer"]
"""Model answers that Rich markup would mangle: a link loses its text, x[i] its index,
the prefix vanishes."""


def streamed_answers(stderr: str) -> dict[str, str]:
    """Each agent's streamed answer, from its `agent (answer): text` block (`--stream`
    prints each answer whole, never interleaved with another agent's)."""
    said: dict[str, str] = {}
    for line in stderr.splitlines():
        agent, sep, text = line.partition(" (answer): ")
        if sep:
            assert agent not in said, f"{agent}'s answer came in pieces:\n{stderr}"
            said[agent] = text
    return said


def test_model_and_user_text_prints_exactly_as_written(fake, sqlite_db, tmp_path):
    team = tmp_path / "team.json"
    team.write_text(json.dumps({"agents": [{"name": n, "model": f"m-{n}"} for n in ("a", "b", "c")]}))
    for name, answer in zip("abc", BRACKETED):
        fake.script(f"m-{name}", [{"content": answer}])

    run = cli(
        "run",
        "collaborative",
        "Pick [one] of x[i]",
        "--agents-file",
        str(team),
        "--base-url",
        fake.url,
        "--run-id",
        "marks",
        "--stream",
        db=sqlite_db,
        check=True,
    )
    assert streamed_answers(run.stderr) == dict(zip("abc", BRACKETED))
    assert "leading: see [docs](https://x)" in run.stderr  # the progress line
    assert run.stdout.strip() == "see [docs](https://x)"

    show = cli("show", "marks", db=sqlite_db, check=True).stdout
    assert "objective: Pick [one] of x[i]" in show
    vote_rows = [line for line in show.splitlines() if line.startswith("│")]
    for answer in BRACKETED:
        assert any(row.startswith(f"│ {answer} ") for row in vote_rows), show
    assert "winner: see [docs](https://x)" in show

    assert "Pick [one] of x[i]" in cli("runs", db=sqlite_db, check=True).stdout


def continue_command(stderr: str) -> list[str]:
    """The arguments of the `continue it with: graphswarm ...` line."""
    line = next(line for line in stderr.splitlines() if line.startswith("continue it with: "))
    return line.removeprefix("continue it with: graphswarm ").split()


def test_a_budget_pause_prints_a_resume_command_with_the_cap_raised(fake, sqlite_db):
    paused = cli(
        "run",
        "debate",
        "q",
        "--agents",
        "2",
        "--base-url",
        fake.url,
        "--run-id",
        "capped",
        "--max-calls",
        "3",
        db=sqlite_db,
    )
    assert paused.returncode == 3, paused.stderr
    assert "paused: call_cap" in paused.stderr
    command = continue_command(paused.stderr)
    assert command == ["resume", "capped", "--db", sqlite_db, "--max-calls", "6"]

    resumed = subprocess.run(
        [sys.executable, "-m", "graphswarm", *command], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr  # the raised cap does not pause at once again


@pytest.mark.parametrize(
    "stop_reason, budget, option",
    [
        ("call_cap", {"max_calls": 3}, " --max-calls 6"),
        ("token_cap", {"max_tokens": 4_000_000}, " --max-tokens 8000000"),
        ("cost_cap", {"max_cost": 0.1}, " --max-cost 0.2"),
        ("time_cap", {"max_seconds": 1.5}, " --max-seconds 3"),
        ("stall", {"max_calls": 3}, ""),  # not a cap: the same command
        ("breakpoint", {}, ""),
    ],
)
def test_the_raised_cap_doubles_the_cap_that_was_reached(stop_reason, budget, option):
    from graphswarm.cli import _raised_cap

    assert _raised_cap(stop_reason, budget) == option


def interrupt_when_asked(proc: subprocess.Popen, fake, requests: int) -> tuple[str, str]:
    """Send Ctrl-C (SIGINT) once `requests` requests have reached the (slow) fake server;
    the process's stdout and stderr."""
    deadline = time.monotonic() + 60
    try:
        while fake.stats()["requests"] < requests:
            if time.monotonic() > deadline:
                pytest.fail("the run never reached the model")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_says_the_run_is_saved_and_how_to_continue_it(fake, sqlite_db):
    fake.configure(latency_ms=30_000)
    run = start_cli("run", "debate", "q", "--agents", "2", "--base-url", fake.url, "--run-id", "cc", db=sqlite_db)
    _, stderr = interrupt_when_asked(run, fake, requests=2)
    assert run.returncode == 130
    saved = f"interrupted; run cc is saved, continue it with: graphswarm resume cc --db {sqlite_db}"
    assert stderr.strip().splitlines()[-1] == saved
    assert "Traceback" not in stderr

    runs = cli("runs", db=sqlite_db, check=True).stdout
    rows = [[cell.strip() for cell in line.split("│")[1:4]] for line in runs.splitlines()]
    assert ["cc", "debate", "interrupted"] in rows
    assert cli("show", "cc", db=sqlite_db, check=True).stdout.startswith("run cc · debate · interrupted · cancelled")

    resume = start_cli("resume", "cc", db=sqlite_db)
    _, stderr = interrupt_when_asked(resume, fake, requests=4)
    assert resume.returncode == 130
    assert stderr.strip().splitlines()[-1] == saved

    fake.configure(latency_ms=0)
    cli("resume", "cc", db=sqlite_db, check=True)


def priced_team(tmp_path: Path, **worker_price) -> Path:
    """AGENTS with the leader on gpt-4o-mini (genai-prices knows it) and workers on models
    no price list knows; `worker_price` gives the workers a price of their own."""
    team = json.loads(json.dumps(AGENTS))
    team["leader"]["model"] = "gpt-4o-mini"
    for agent in team["agents"]:
        if worker_price:
            agent["price"] = worker_price
    path = tmp_path / "priced.json"
    path.write_text(json.dumps(team))
    return path


def test_show_prices_known_models_and_says_unknown_for_the_rest(fake, tmp_path, sqlite_db):
    tasks = [{"title": f"part of {name}", "description": "", "worker": name} for name in WORKER_NAMES]
    fake.script("gpt-4o-mini", [{"json": {"tasks": tasks}}, {"json": {"answer": "the final site", "approved": True}}])
    team = priced_team(tmp_path)
    cli("run", "hierarchical", "Make a website", "--agents-file", str(team), "--base-url", fake.url,
        "--run-id", "prices", db=sqlite_db, check=True)  # fmt: skip

    usage = json.loads(cli("show", "prices", "--json", db=sqlite_db, check=True).stdout)["usage"]
    lead = usage["agents"]["lead"]
    expected = (lead["input_tokens"] * 0.15 + lead["output_tokens"] * 0.60) / 1e6  # genai-prices' gpt-4o-mini
    assert lead["cost"] == pytest.approx(expected) and lead["cost"] > 0
    assert usage["agents"]["fast1"]["cost"] is None and usage["total"]["cost"] is None

    rows = {line.split("│")[1].strip(): line for line in cli("show", "prices", db=sqlite_db, check=True).stdout.splitlines()
            if line.startswith("│")}  # fmt: skip
    assert rows["lead"].rstrip(" │").endswith(f"{expected:.4f}")
    assert rows["fast1"].rstrip(" │").endswith("unknown")
    assert rows["total"].rstrip(" │").endswith("unknown")
    assert "0.0000" not in rows["fast1"]


def test_max_cost_refuses_a_swarm_with_unpriced_models(fake, tmp_path, sqlite_db):
    run = cli("run", "hierarchical", "x", "--agents-file", str(priced_team(tmp_path)), "--base-url", fake.url,
              "--max-cost", "0.5", db=sqlite_db)  # fmt: skip
    assert run.returncode == 2  # bad input: nothing started
    assert "cost cap cannot be kept" in run.stderr and "fast1 (fast-1)" in run.stderr and "lead" not in run.stderr
    assert fake.stats()["requests"] == 0
    assert "hierarchical" not in cli("runs", db=sqlite_db, check=True).stdout

    # a price of their own in the agents file wins: the cap can be kept
    script_leader_on = [{"title": f"part of {n}", "description": "", "worker": n} for n in WORKER_NAMES]
    fake.script("gpt-4o-mini", [{"json": {"tasks": script_leader_on}}, {"json": {"answer": "done", "approved": True}}])
    team = priced_team(tmp_path, input_per_mtok=1.0, output_per_mtok=2.0)
    ok = cli("run", "hierarchical", "x", "--agents-file", str(team), "--base-url", fake.url, "--max-cost", "0.5",
             "--run-id", "capped-ok", db=sqlite_db)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    usage = json.loads(cli("show", "capped-ok", "--json", db=sqlite_db, check=True).stdout)["usage"]
    assert usage["agents"]["fast1"]["cost"] > 0 and usage["total"]["cost"] > 0


def test_version(capsys):
    from graphswarm import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"graphswarm {__version__}"


def test_the_shell_completion_script_is_offered():
    # Typer guesses the shell from the parent processes unless told not to (under
    # `timeout` or a CI runner there may be no shell to find); then it takes the shell named.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "graphswarm.cli", "--show-completion", "bash"], capture_output=True, text=True, env=env
    )

    assert shown.returncode == 0 and "_graphswarm_completion" in shown.stdout
