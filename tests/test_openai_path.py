"""Hierarchical runs through the real langchain-openai client against the loopback fake server."""

from __future__ import annotations

from collections import Counter

from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from graphswarm import Agent, Budget, Runner, RunStatus, StructuredMethod, SwarmSpec, resolve_model
from graphswarm.agents import ModelPrice
from graphswarm.structured import ainvoke_structured

# Heterogeneous agents: each on its own model name, so the server counts each apart.
LEADER = Agent(name="lead", role="leader", model="leader-model")
WORKERS = [
    Agent(name="alice", role="researcher", strengths=["research"], model="model-a"),
    Agent(name="bob", role="writer", strengths=["writing"], model="model-b"),
    Agent(name="carol", role="engineer", strengths=["code"], model="model-c"),
    Agent(name="dave", role="critic", strengths=["review"], model="model-d"),
]
MODEL_OF = {a.name: a.model for a in [LEADER, *WORKERS]}


def spec(fake, workers=WORKERS, **options) -> SwarmSpec:
    return SwarmSpec(architecture="hierarchical", agents=workers, leader=LEADER, base_url=fake.url, options=options)


def script_plan(fake, workers=WORKERS, approved=True) -> None:
    tasks = [{"title": f"task for {w.name}", "description": "do it", "worker": w.name} for w in workers]
    fake.script("leader-model", [{"json": {"tasks": tasks}}, {"json": {"answer": "final", "approved": approved}}])


def completed_twice(fake) -> list[str]:
    counts = Counter(c["fingerprint"] for c in fake.stats()["completed"])
    return [fp for fp, n in counts.items() if n > 1]


async def test_server_calls_match_the_graph(fake):
    script_plan(fake)
    async with Runner("memory") as runner:
        result = await runner.start(spec(fake), "Make a website")
    assert result.status is RunStatus.DONE
    stats = fake.stats()
    # one plan, one call per worker task, one consolidation
    assert stats["succeeded"] == 1 + len(WORKERS) + 1
    assert {m: s["succeeded"] for m, s in stats["by_model"].items()} == {
        "leader-model": 2,
        "model-a": 1,
        "model-b": 1,
        "model-c": 1,
        "model-d": 1,
    }
    assert {r["worker"] for r in result.state["results"]} == {w.name for w in WORKERS}


async def test_per_agent_accounting_matches_the_server(fake):
    script_plan(fake)
    async with Runner("memory") as runner:
        result = await runner.start(spec(fake), "Make a website")
    by_model = fake.stats()["by_model"]
    for agent, row in result.usage["agents"].items():
        server = by_model[MODEL_OF[agent]]
        assert (row["calls"], row["input_tokens"], row["output_tokens"]) == (
            server["succeeded"],
            server["prompt_tokens"],
            server["completion_tokens"],
        )


async def test_runs_complete_with_twenty_percent_injected_429_and_500(fake):
    fake.configure(fail_rate=0.2, seed=7)
    async with Runner("memory") as runner:
        for _ in range(3):
            script_plan(fake)
            result = await runner.start(spec(fake), "Make a website")
            assert result.status is RunStatus.DONE
            assert all(r["ok"] for r in result.state["results"])
    stats = fake.stats()
    assert stats["failed"] > 0
    assert stats["succeeded"] == 3 * (2 + len(WORKERS))


async def test_call_cap_pauses_with_partial_results_and_resumes_without_repeating_calls(fake):
    script_plan(fake)
    async with Runner("memory") as runner:
        paused = await runner.start(spec(fake), "Make a website", run_id="cap-1", budget=Budget(max_calls=3))
        assert paused.status is RunStatus.INTERRUPTED
        assert paused.stop_reason == "call_cap"
        finished = [r for w in paused.pending["work"] for r in w["results"]]
        assert len(finished) == 2  # the plan took one call, two workers the rest
        assert fake.stats()["succeeded"] == 3

        result = await runner.resume("cap-1", budget=Budget(max_calls=50))
    assert result.status is RunStatus.DONE
    assert fake.stats()["succeeded"] == 1 + len(WORKERS) + 1
    assert completed_twice(fake) == []
    assert result.usage["total"]["calls"] == fake.stats()["succeeded"]


async def test_token_cap_pauses_and_resumes_with_a_raised_cap(fake):
    script_plan(fake)
    async with Runner("memory") as runner:
        paused = await runner.start(spec(fake), "Make a website", run_id="tok-1", budget=Budget(max_tokens=50))
        assert paused.stop_reason == "token_cap"
        assert paused.state["calls"][0]["agent"] == "lead"
        result = await runner.resume("tok-1", budget=Budget(max_tokens=100_000))
    assert result.status is RunStatus.DONE
    assert completed_twice(fake) == []


async def test_cost_cap_uses_the_price_table(fake):
    priced = [Agent(name="w", model="gpt-4o", strengths=["x"])]
    fake.script("leader-model", [{"json": {"tasks": [{"title": "t", "worker": "w"}]}}])
    free_leader = LEADER.model_copy(update={"price": ModelPrice()})
    swarm = SwarmSpec(architecture="hierarchical", agents=priced, leader=free_leader, base_url=fake.url)
    async with Runner("memory") as runner:
        result = await runner.start(swarm, "x", budget=Budget(max_cost=1e-9))
    # the leader's own price is 0; the worker's gpt-4o call costs money (genai-prices), so consolidation waits
    assert result.stop_reason == "cost_cap"
    assert result.pauses[0]["node"] == "consolidate"
    assert result.usage["agents"]["w"]["cost"] > 0


class Verdict(BaseModel):
    answer: str


def client(fake, model="m1") -> ChatOpenAI:
    return resolve_model(model, base_url=fake.url)


async def test_structured_output_uses_json_schema_when_the_server_takes_it(fake):
    reply = await ainvoke_structured(client(fake), [HumanMessage("q")], Verdict, agent="a")
    assert reply.method is StructuredMethod.JSON_SCHEMA
    assert isinstance(reply.value, Verdict)


async def test_structured_output_falls_back_to_tool_calls_when_json_schema_is_refused(fake):
    fake.configure(refuse_json_schema=True)
    reply = await ainvoke_structured(client(fake), [HumanMessage("q")], Verdict, agent="a")
    assert reply.method is StructuredMethod.FUNCTION_CALLING
    assert isinstance(reply.value, Verdict)
    # the refusal is remembered: the next call goes straight to tool calling
    before = fake.stats()["failed"]
    await ainvoke_structured(client(fake), [HumanMessage("q2")], Verdict, agent="a")
    assert fake.stats()["failed"] == before


async def test_structured_output_falls_back_to_json_mode_without_tools(fake):
    fake.configure(refuse_json_schema=True, no_tools=True)
    reply = await ainvoke_structured(client(fake), [HumanMessage("q")], Verdict, agent="a")
    assert reply.method is StructuredMethod.JSON_MODE
    assert reply.value.answer.startswith("answer-")


async def test_malformed_structured_output_is_re_asked(fake):
    fake.script("m1", [{"malformed": True}, {"json": {"answer": "fixed"}}])
    reply = await ainvoke_structured(client(fake), [HumanMessage("q")], Verdict, agent="a")
    assert reply.value.answer == "fixed"
    assert fake.stats()["succeeded"] == 2


async def test_a_whole_run_works_when_the_server_refuses_json_schema(fake):
    fake.configure(refuse_json_schema=True)
    async with Runner("memory") as runner:
        result = await runner.start(spec(fake), "Make a website")
    assert result.status is RunStatus.DONE
    assert result.final_answer


async def test_runs_complete_when_some_calls_time_out(fake, monkeypatch):
    monkeypatch.setenv("GRAPHSWARM_MODEL_TIMEOUT", "0.5")
    fake.configure(timeout_rate=0.25, hang_s=3, seed=3)
    script_plan(fake)
    async with Runner("memory") as runner:
        result = await runner.start(spec(fake), "Make a website")
    assert result.status is RunStatus.DONE
    assert all(r["ok"] for r in result.state["results"])
    assert fake.stats()["failed"] > 0
