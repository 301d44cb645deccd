"""What `graphswarm run` and `resume` show while a run goes on: one line per phase, run
totals, live bars on a terminal, `--json`, and streamed answers that never interleave."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.cli import main
from graphswarm.progress import Verbosity, run_display
from graphswarm.testing import ScriptedChatModel

PHASE_LINE = re.compile(r"^✓ (\w+)  (\d+/\d+|\d+ updates?)  (\d+) calls?(?: \(\d+ failed\))?  \d+\.\d s")
TOTAL_LINE = re.compile(r"^total  (\d+) calls?  (\d+) tokens  cost (\S+)  (\d+) failed  \d+\.\d s$")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_40_agent_swarm_piped_prints_one_line_per_phase(fake, capsys, sqlite_db):
    code, out, err = run_cli(
        capsys, "run", "collaborative", "2+2?", "--agents", "40", "--rounds", "1",
        "--model", "m", "--base-url", fake.url, "--db", sqlite_db, "--run-id", "forty",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip()  # the answer, on stdout
    lines = err.strip().splitlines()
    assert len(lines) <= 12, err
    phases = [PHASE_LINE.match(line) for line in lines if line.startswith("✓")]
    assert [(m.group(1), m.group(2)) for m in phases if m] == [
        ("answer", "40/40"),  # each agent answers...
        ("tally", "1 update"),
        ("answer", "40/40"),  # ...sees the tally and answers again
        ("tally", "1 update"),
    ], err
    total = next(TOTAL_LINE.match(line) for line in lines if line.startswith("total"))
    assert total is not None and total.group(1) == "80" and total.group(3) == "unknown", err
    assert lines[-1] == f"run forty done ({json.loads(show_json(capsys, sqlite_db))['record']['stop_reason']}); " + (
        f"details: graphswarm show forty --db {sqlite_db}"
    )
    assert "__" not in err and "(-)" not in err


def show_json(capsys, db: str) -> str:
    code, out, _ = run_cli(capsys, "show", "forty", "--db", db, "--json")
    assert code == 0
    return out


def test_quiet_prints_nothing_on_stderr(fake, capsys, sqlite_db):
    code, out, err = run_cli(
        capsys, "run", "collaborative", "2+2?", "--agents", "3", "-q", "--model", "m", "--base-url", fake.url,
        "--db", sqlite_db,
    )  # fmt: skip
    assert code == 0 and out.strip()
    assert err == ""


async def test_on_a_terminal_a_live_bar_counts_the_answers_and_each_phase_leaves_one_line():
    agents = [Agent(name=f"v{i}") for i in range(1, 41)]
    model = ScriptedChatModel({a.name: [f"Final answer: {41 if i % 4 == 0 else 42}"] for i, a in enumerate(agents)})
    spec = SwarmSpec(architecture="collaborative", agents=agents, model=model)
    console = Console(file=io.StringIO(), record=True, force_terminal=True, width=100)
    display = run_display(console, architecture="collaborative", agents=[a.name for a in agents])
    assert display.verbosity is Verbosity.LIVE

    async with Runner("memory") as runner:
        with display:
            result = await runner.start(spec, "What is 17 + 25?", on_update=display.on_update)
    assert result.final_answer == "42"

    # Every frame of the live part (a bar, the totals so far), and the lines printed above it.
    text = console.export_text()
    assert "20/40" in text and "━" in text  # the bar counted the answers as they came
    summaries = list(re.finditer(PHASE_LINE.pattern.lstrip("^") + ".*", text))
    assert [m.group(1, 2, 3) for m in summaries] == [("answer", "40/40", "40"), ("tally", "1 update", "0")]
    assert "leading: 42" in summaries[1].group()  # a phase of few updates keeps the architecture's line
    last = text.splitlines()[-1]  # the live part is gone: the totals line is left last
    assert (totals := TOTAL_LINE.match(last)) and totals.group(1) == "40" and int(totals.group(2)) > 0, last
    assert "__" not in text and "(-)" not in text


def test_a_pipe_gets_plain_lines_and_no_bars():
    console = Console(file=io.StringIO(), record=True, force_terminal=False, width=100)
    display = run_display(console, agents=["a"])
    assert display.verbosity is Verbosity.LINES
    with display:
        display.on_update("answer", {"calls": [call("a", cost=0.25)]})
        display.on_update("__interrupt__", {})
    lines = console.export_text().splitlines()
    assert [line.split("  ")[:3] for line in lines] == [["✓ answer", "1/1", "1 call"], ["total", "1 call", "15 tokens"]]
    assert "cost $0.2500" in lines[1]


def test_failed_requests_are_counted():
    console = Console(file=io.StringIO(), record=True, width=100)
    with run_display(console, agents=["a", "b"]) as display:
        display.on_update("answer", {"calls": [call("a", error="timed out"), call("a")]})
    first, total = console.export_text().splitlines()
    assert first.startswith("✓ answer  1/2  2 calls (1 failed)")
    assert "  1 failed  " in total


def test_stream_prints_each_answer_whole_even_when_tokens_interleave():
    console = Console(file=io.StringIO(), record=True, width=100)
    with run_display(console, agents=["a", "b"], stream=True) as display:
        for piece_a, piece_b in zip(["the ", "answer ", "is 42"], ["I ", "say ", "41"]):
            display.on_token("a", "answer", piece_a)
            display.on_token("b", "answer", piece_b)
        display.on_update("answer", {"calls": [call("b")]})
        display.on_update("answer", {"calls": [call("a")]})
    lines = console.export_text().splitlines()
    assert lines[:2] == ["b (answer): I say 41", "a (answer): the answer is 42"]


def test_stream_agent_prints_only_that_agents_tokens():
    console = Console(file=io.StringIO(), record=True, width=100)
    with run_display(console, agents=["a", "b"], stream_agent="a") as display:
        display.on_token("a", "answer", "the ")
        display.on_token("b", "answer", "I say")
        display.on_token("a", "answer", "answer")
        display.on_update("answer", {"calls": [call("a")]})
        display.on_update("answer", {"calls": [call("b")]})
    lines = console.export_text().splitlines()
    assert lines[0] == "a (answer): the answer"
    assert "I say" not in console.export_text()


FAKE_ANSWERS = {
    "a": "Paris is the capital of France",
    "b": "the capital is Paris of course",
    "c": "I believe it is Paris",
}


def team(tmp_path) -> str:
    path = tmp_path / "team.json"
    path.write_text(json.dumps({"agents": [{"name": n, "model": f"m-{n}"} for n in FAKE_ANSWERS]}))
    return str(path)


def test_cli_stream_prints_whole_answers_one_block_each(fake, capsys, sqlite_db, tmp_path):
    for name, answer in FAKE_ANSWERS.items():
        fake.script(f"m-{name}", [{"content": answer}])  # the fake server streams it word by word
    code, _, err = run_cli(
        capsys, "run", "collaborative", "q", "--agents-file", team(tmp_path), "--base-url", fake.url,
        "--db", sqlite_db, "--stream",
    )  # fmt: skip
    assert code == 0, err
    said = [line for line in err.splitlines() if " (answer): " in line]
    assert sorted(said) == sorted(f"{name} (answer): {answer}" for name, answer in FAKE_ANSWERS.items())


def test_cli_stream_agent_prints_only_that_agent(fake, capsys, sqlite_db, tmp_path):
    for name, answer in FAKE_ANSWERS.items():
        fake.script(f"m-{name}", [{"content": answer}])
    code, _, err = run_cli(
        capsys, "run", "collaborative", "q", "--agents-file", team(tmp_path), "--base-url", fake.url,
        "--db", sqlite_db, "--stream-agent", "b",
    )  # fmt: skip
    assert code == 0, err
    assert [line for line in err.splitlines() if " (answer): " in line] == [f"b (answer): {FAKE_ANSWERS['b']}"]
    assert FAKE_ANSWERS["c"] not in err  # neither streamed nor leading the vote (a's answer, which is)

    code, _, err = run_cli(capsys, "run", "collaborative", "q", "--agents-file", team(tmp_path),
                           "--base-url", fake.url, "--db", sqlite_db, "--stream-agent", "zed")  # fmt: skip
    assert code == 2 and err.strip() == "error: --stream-agent: no agent 'zed' in this swarm (its agents: a, b, c)"


def test_json_prints_the_run_record_for_run_and_resume(fake, capsys, sqlite_db):
    code, out, err = run_cli(
        capsys, "run", "collaborative", "2+2?", "--agents", "3", "--model", "m", "--base-url", fake.url,
        "--db", sqlite_db, "--run-id", "js", "--pause-before", "tally", "--json",
    )  # fmt: skip
    assert code == 3, err  # paused at the breakpoint
    paused = json.loads(out)
    assert paused["record"]["status"] == "interrupted" and paused["next"] == ["tally"]
    assert "__" not in err  # LangGraph's __interrupt__ update is not shown

    code, out, err = run_cli(capsys, "resume", "js", "--db", sqlite_db, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["record"]["status"] == "done"
    assert done["state"]["final_answer"] and done["usage"]["total"]["calls"] == 3
    assert json.loads(show_json_of(capsys, "js", sqlite_db)) == done


def show_json_of(capsys, run_id: str, db: str) -> str:
    code, out, _ = run_cli(capsys, "show", run_id, "--db", db, "--json")
    assert code == 0
    return out


def call(agent: str, *, cost: float | None = None, error: str | None = None) -> dict:
    record = {"agent": agent, "node": "answer", "input_tokens": 10, "output_tokens": 5, "latency_s": 0.1}
    return {**record, "cost": cost, **({"error": error} if error else {})}
