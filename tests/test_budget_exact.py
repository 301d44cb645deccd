"""Budgets hold per request: `--max-calls N` lets at most N requests reach the server, and
`graphswarm show` accounts exactly what the server counted, per agent.

Every request counts: each structured-output method tried, each re-ask of a malformed
reply, each retry. The fake server counts what reaches it; each agent has its own model
name there, so the server's count per model is the count per agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MEMBERS = [
    {"name": "ann", "role": "researcher", "strengths": ["research"], "model": "ann-model"},
    {"name": "ben", "role": "writer", "strengths": ["writing"], "model": "ben-model"},
]
LEAD = {"name": "lead", "role": "leader", "model": "leader-model"}
JUDGE = {"name": "judge", "role": "judge", "model": "judge-model"}
AGENT_OF_MODEL = {a["model"]: a["name"] for a in [LEAD, JUDGE, *MEMBERS]}


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    """The team: a leader for hierarchical runs, a judge for competitive ones."""
    path = tmp_path / "agents.json"
    path.write_text(json.dumps({"leader": LEAD, "agents": MEMBERS}))
    (tmp_path / "judged.json").write_text(json.dumps({"judge": JUDGE, "agents": MEMBERS}))
    return path


def graphswarm(*args: str, db: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", db], capture_output=True, text=True, timeout=120, env=env
    )


def run(fake, agents_file: Path, db: str, *args: str, architecture: str = "hierarchical") -> str:
    """Start a run over the fake server; returns its id."""
    if architecture == "competitive":
        agents_file = agents_file.with_name("judged.json")
    proc = graphswarm(
        "run", architecture, "Plan a bakery website", "--agents-file", str(agents_file),
        "--base-url", fake.url, "--run-id", "r1", "--quiet", *args, db=db,
    )  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr
    return "r1"


def recorded_per_agent(run_id: str, db: str) -> dict[str, int]:
    proc = graphswarm("show", run_id, "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    usage = json.loads(proc.stdout)["usage"]["agents"]
    return {agent: int(row["calls"]) for agent, row in usage.items() if row["calls"]}


def server_per_agent(fake) -> dict[str, int]:
    return {AGENT_OF_MODEL[m]: s["requests"] for m, s in fake.stats()["by_model"].items() if s["requests"]}


@pytest.mark.parametrize("cap", [1, 2, 3, 5])
def test_a_server_refusing_json_schema_with_http_500_gets_at_most_the_cap(fake, agents_file, sqlite_db, cap):
    # llama-cpp-python's server answers response_format json_schema with HTTP 500.
    fake.configure(refuse_json_schema=True, refusal_status=500)
    run_id = run(fake, agents_file, sqlite_db, "--max-calls", str(cap))
    assert fake.stats()["requests"] <= cap
    assert recorded_per_agent(run_id, sqlite_db) == server_per_agent(fake)


def test_a_refusal_is_not_retried_and_the_run_finishes_on_the_next_method(fake, agents_file, sqlite_db):
    fake.configure(refuse_json_schema=True, refusal_status=500)
    run_id = run(fake, agents_file, sqlite_db)
    shown = json.loads(graphswarm("show", run_id, "--json", db=sqlite_db).stdout)
    assert shown["record"]["status"] == "done"
    # One refusal per server model that was asked for structured output; none retried.
    assert fake.stats()["failed"] == 1
    assert recorded_per_agent(run_id, sqlite_db) == server_per_agent(fake)
    refused = [c for c in shown["record"]["unfinished_calls"] + shown["state"]["calls"] if "error" in c]
    assert len(refused) == 1 and "json_object" in refused[0]["error"]


@pytest.mark.parametrize("cap", [1, 4])
def test_malformed_replies_are_re_asked_within_the_cap(fake, agents_file, sqlite_db, cap):
    fake.configure(malformed_rate=1.0)
    run_id = run(fake, agents_file, sqlite_db, "--max-calls", str(cap))
    assert fake.stats()["requests"] == cap
    recorded = recorded_per_agent(run_id, sqlite_db)
    assert recorded == server_per_agent(fake) == {"lead": cap}


def test_a_paused_run_resumed_with_a_raised_cap_still_matches_the_server(fake, agents_file, sqlite_db):
    fake.configure(refuse_json_schema=True, refusal_status=500, malformed_rate=0.5, seed=11)
    run_id = run(fake, agents_file, sqlite_db, "--max-calls", "3")
    assert fake.stats()["requests"] <= 3
    proc = graphswarm("resume", run_id, "--max-calls", "8", "--quiet", db=sqlite_db)
    assert proc.returncode in (0, 3), proc.stderr
    assert fake.stats()["requests"] <= 8
    assert recorded_per_agent(run_id, sqlite_db) == server_per_agent(fake)


@pytest.mark.parametrize("cap", [2, 4])
def test_competitive_judging_with_half_the_replies_malformed_stays_within_the_cap(fake, agents_file, sqlite_db, cap):
    fake.configure(malformed_rate=0.5, seed=5)
    run_id = run(
        fake, agents_file, sqlite_db, "--max-calls", str(cap), "--selection", "judge", architecture="competitive"
    )
    assert fake.stats()["requests"] <= cap
    assert recorded_per_agent(run_id, sqlite_db) == server_per_agent(fake)
