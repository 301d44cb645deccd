"""Every architecture, end to end through the CLI, on a real OpenAI-compatible server.

The server is llama-cpp-python's own (`real_server` in conftest.py: started once per chat
format on 127.0.0.1, serving the bundled SmolLM2-135M). Nobody here wrote it, and it
behaves like servers do: it answers a `json_schema` response format with HTTP 500, its
default chat format calls a tool only when the request forces one (`chatml-function-calling`
also lets the model choose), and its model is tiny. So these tests check what each run records - it ended, every request the
server answered is accounted to an agent, and the architecture's own records (plan,
votes, ranking, rounds, tasks, tool calls) are there and consistent - never whether the
answers are right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.local_model

QUESTION = "What is 17 + 25?"
RUN = "conformance"

# The model's own chat template, and the format that gives the model tools and forced
# function calls by grammar. Every architecture runs on the first; the task loop's tool
# calls and a judge's structured answer run on both (on 2 cores, all of them on both
# would take twice as long for little more).
default_format = pytest.mark.parametrize("real_server", [None], indirect=True, ids=["default-format"])
both_chat_formats = pytest.mark.parametrize(
    "real_server", [None, "chatml-function-calling"], indirect=True, ids=["default-format", "chatml-function-calling"]
)


def graphswarm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: its own process, no API key, a database in `cwd`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "GRAPHSWARM_DB")}
    env["HF_HUB_OFFLINE"] = "1"  # the particle swarm's MiniLM embeddings load from the package
    return subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", str(cwd / "runs.sqlite")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


def requests_since(server, before: int, expected: int) -> int:
    """Chat requests the server logged since `before`; its access log can trail the reply
    by a moment, so wait (briefly) for `expected` of them."""
    deadline = time.monotonic() + 5
    while server.chat_requests() - before < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.chat_requests() - before


def run_to_the_end(
    server, tmp_path: Path, architecture: str, *options: str, objective: str = QUESTION
) -> dict[str, Any]:
    """Run `architecture` through `--base-url`; check it ended (exit 0, status done) and that
    `graphswarm show` accounts exactly the requests the server answered; return the shown run."""
    before = server.chat_requests()
    run = graphswarm(
        "run",
        architecture,
        objective,
        "--base-url",
        server.url,
        "--model",
        server.model,
        "--run-id",
        RUN,
        "--max-seconds",
        "180",
        *options,
        cwd=tmp_path,
    )
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stderr[-4000:]}"
    assert f"run {RUN} done" in run.stderr

    shown = graphswarm("show", RUN, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["record"]["status"] == "done"
    assert data["record"]["spec"]["base_url"] == server.url
    # What was printed is what was recorded (empty only when every agent abstained).
    assert run.stdout.strip() == (data["state"]["final_answer"] or "").strip()

    usage = data["usage"]
    assert usage["total"]["calls"] == sum(agent["calls"] for agent in usage["agents"].values())
    # Refused structured-output methods included: every request reached the ledger.
    assert requests_since(server, before, usage["total"]["calls"]) == usage["total"]["calls"]
    return data


def members(data: dict[str, Any]) -> list[str]:
    return [agent["name"] for agent in data["record"]["spec"]["agents"]]


def calls_of(data: dict[str, Any], agent: str) -> int:
    return data["usage"]["agents"].get(agent, {}).get("calls", 0)


def answers_of(records: list[dict[str, Any]], round_key: str, round_: int) -> list[str]:
    return sorted(r["agent"] for r in records if r[round_key] == round_)


@default_format
def test_hierarchical_plans_delegates_and_consolidates(real_server, tmp_path):
    data = run_to_the_end(
        real_server, tmp_path, "hierarchical", "--agents", "2", "--max-rounds", "1", "--max-tasks", "2",
        "--delegate", "plan",  # the question is planned, not given to every worker
    )  # fmt: skip
    state, workers = data["state"], members(data)

    assert 1 <= len(state["tasks"]) <= 2
    assert {t["worker"] for t in state["tasks"]} <= set(workers)
    assert sorted(r["task_id"] for r in state["results"]) == sorted(t["id"] for t in state["tasks"])
    assert all(r["ok"] for r in state["results"])
    assert data["record"]["stop_reason"] in ("max_rounds", "approved")
    assert calls_of(data, "leader") >= 2  # the plan and the consolidation
    for task in state["tasks"]:
        assert calls_of(data, task["worker"]) >= 1


@default_format
def test_collaborative_counts_a_vote_of_every_agent(real_server, tmp_path):
    data = run_to_the_end(real_server, tmp_path, "collaborative", "--agents", "3", "--rounds", "1")
    state, agents = data["state"], members(data)

    assert answers_of(state["answers"], "round", 1) == sorted(agents)
    vote = state["votes"][-1]
    voters = [b["agent"] for b in vote["ballots"]] + vote["abstentions"]
    assert sorted(voters) == sorted(agents)
    assert sum(c["votes"] for c in vote["clusters"]) == sum(b["weight"] for b in vote["ballots"])
    assert 0 <= vote["agreement"] <= 1
    assert data["record"]["stop_reason"] in ("majority", "consensus", "judged", "max_rounds", "tie_broken_by_first")
    assert all(calls_of(data, name) >= 1 for name in agents)


@both_chat_formats
def test_competitive_ranks_every_entry(real_server, tmp_path):
    data = run_to_the_end(real_server, tmp_path, "competitive", "--agents", "2", "--selection", "judge")
    state, agents = data["state"], members(data)

    assert sorted(e["agent"] for e in state["entries"]) == sorted(agents)
    assert [r["rank"] for r in state["ranking"]] == list(range(1, len(agents) + 1))
    assert sorted(r["agent"] for r in state["ranking"]) == sorted(agents)
    assert state["winner"] == state["ranking"][0]["agent"]
    assert calls_of(data, "judge") >= 1
    assert all(calls_of(data, name) >= 1 for name in agents)


@default_format
def test_debate_records_each_round(real_server, tmp_path):
    data = run_to_the_end(real_server, tmp_path, "debate", "--agents", "2", "--rounds", "1")
    state, agents = data["state"], members(data)

    assert answers_of(state["transcript"], "round", 1) == sorted(agents)
    assert [r["round"] for r in state["rounds"]] == [1]
    assert 0 <= state["rounds"][0]["agreement"] <= 1
    vote = state["rounds"][0]["votes"]
    assert sorted([b["agent"] for b in vote["ballots"]] + vote["abstentions"]) == sorted(agents)
    assert all(calls_of(data, name) >= 1 for name in agents)


@default_format
def test_particle_moves_and_traces_the_swarm(real_server, tmp_path):
    # A chat-only server has no usable embeddings endpoint (llama.cpp's gives per-token
    # vectors, and only with --embedding): positions come from the offline MiniLM.
    data = run_to_the_end(
        real_server, tmp_path, "particle", "--agents", "2", "--iterations", "1", "-o", "embeddings=minilm"
    )
    state, agents = data["state"], members(data)

    assert answers_of(state["moves"], "iteration", 1) == sorted(agents)
    assert [t["iteration"] for t in state["trace"]] == [1]
    assert state["trace"][0]["diversity"] >= 0
    assert state["global_best"]["agent"] in agents
    assert calls_of(data, "judge") >= 1
    assert all(calls_of(data, name) >= 1 for name in agents)


@default_format
def test_orchestrator_spreads_tasks_over_its_pool(real_server, tmp_path):
    data = run_to_the_end(
        real_server, tmp_path, "orchestrator", "--agents", "2", "-o", "max_tasks=2", "-o", "max_rounds=1"
    )
    state, agents = data["state"], members(data)

    assert 1 <= len(state["tasks"]) <= 2
    assert set(state["agent_stats"]) == set(agents)
    done = [t for t in state["tasks"] if t["status"] == "done"]
    assert done, state["tasks"]
    assert sum(s["tasks"] for s in state["agent_stats"].values()) == len(done)
    for task in done:
        assert calls_of(data, task["agent"]) >= 1
    assert calls_of(data, "orchestrator") >= 2  # the split and the check


@both_chat_formats
def test_task_loop_does_tasks_with_the_calculator(real_server, tmp_path):
    data = run_to_the_end(
        real_server,
        tmp_path,
        "task_loop",
        "--agents",
        "1",
        "-o",
        "max_tasks=2",
        "-o",
        "max_steps=2",
        "-o",
        'tools=["calculator"]',
        objective="Use the calculator to work out 1234 * 5678, then say the result in one sentence.",
    )
    state, [doer] = data["state"], members(data)

    # max_tasks caps the tasks done; the list may hold more (pending, or dropped as repeats).
    done = [t for t in state["tasks"] if t["status"] == "done"]
    assert 1 <= len(done) == state["executed"] <= 2
    assert all(t["result"].strip() and t["assignee"] == doer for t in done)
    assert {t["status"] for t in state["tasks"]} <= {"done", "pending", "dropped"}
    assert data["record"]["stop_reason"] in ("objective_met", "no_tasks", "task_cap")
    assert calls_of(data, "planner") >= 2  # the task list, and the review of a result

    # With max_steps=2 a task takes one model call, or two when the first one called tools:
    # so the doer's extra calls are exactly the tasks with a recorded tool call.
    thinking = [c for c in state["calls"] if c["agent"] == doer and c["node"] == "think" and not c.get("error")]
    with_tools = {use["task_id"] for use in state["tool_uses"]}
    assert len(thinking) - len(done) == len(with_tools)
    for use in state["tool_uses"]:
        assert use["tool"] == "calculator" and use["agent"] == doer
        assert use["task_id"] in {t["id"] for t in done}
        assert isinstance(use["args"], dict) and use["output"]
    if real_server.chat_format == "chatml-function-calling":
        # This format shows the model its tools only when the request says tool_choice
        # "auto" (OpenAI's default with tools); offered the calculator, SmolLM2 calls it.
        assert state["tool_uses"], "the doer was offered the calculator but never called it"


@default_format
async def test_an_agents_reply_cap_is_honoured_by_the_server(real_server):
    # LangChain names the cap `max_completion_tokens`; this server knows only `max_tokens`.
    from graphswarm import Agent, Runner, SwarmSpec

    agents = [Agent(name="brief", max_tokens=3), Agent(name="free")]
    spec = SwarmSpec(architecture="collaborative", agents=agents, base_url=real_server.url, model=real_server.model)
    async with Runner("memory") as runner:
        result = await runner.start(spec, "Describe the sea in a long paragraph.")
    tokens = {c["agent"]: c["output_tokens"] for c in result.state["calls"]}
    assert 1 <= tokens["brief"] <= 3
    assert tokens["free"] > 3
