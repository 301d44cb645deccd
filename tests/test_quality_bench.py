"""The answer-quality benchmark (tools/bench/quality.py) runs and reports, in short.

The fake server's answers are not right, so only the report is checked here; the real
numbers come from running the benchmark by hand on the bundled model.
"""

from __future__ import annotations

import json

import pytest

from tools.bench.quality import Task, main, make_tasks, parse, wilson


def test_every_architecture_runs_on_a_few_questions_and_is_reported(fake, capsys, tmp_path):
    out = tmp_path / "quality.jsonl"
    setups = ["collaborative:1,3", "debate:3", "competitive:3", "hierarchical:3", "particle:3"]
    argv = ["--base-url", fake.url, "--model", "m", "--questions", "2", "--setups", *setups, "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| calls/q | tokens/q | no answer | own vote: no answer | fell back | failed |" in printed
    for row in ("| collaborative | 1 | 2 |", "| collaborative | 3 | 2 |", "| debate | 3 |", "| particle | 3 |"):
        assert row in printed
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(runs) == 12 and all(r["calls"] > 0 for r in runs)
    # a verdict's own vote is recorded with whether it has an answer; the plain vote has none
    assert {r["vote_answered"] for r in runs if r["setup"] == "collaborative"} == {None}
    assert all(isinstance(r["vote_answered"], bool) for r in runs if r["vote"] is not None)
    assert main(["--table", str(out)]) == 0
    assert "| hierarchical | 3 | 2 |" in capsys.readouterr().out


def test_the_task_set_is_generated_and_final_answers_are_parsed_in_its_terms():
    tasks = make_tasks(6, seed=1)
    assert [t.kind for t in tasks] == ["add", "fact", "choice"] * 2
    assert make_tasks(3, seed=1, offset=3) == tasks[3:]
    add = Task(0, "add", "What is 17 + 25?", "42")
    assert parse(add, "17 + 25 = 42") == "42" and parse(add, "I think it is forty") is None
    choice = Task(1, "choice", "Which is a fruit? A) car B) apple", "b", ("car", "apple"))
    assert parse(choice, "Final answer: (B)") == "b" and parse(choice, "apple") == "b"
    assert wilson(0, 0) == (0.0, 0.0) and wilson(10, 10)[1] == pytest.approx(1.0)
