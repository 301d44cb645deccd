"""The swarm-wide budget governor: caps across parallel agents, stalls, time."""

from __future__ import annotations

import pytest

from graphswarm import Agent, Budget, Runner, RunStatus, SwarmSpec
from graphswarm.budget import BudgetExhausted, Governor
from graphswarm.state import StopReason
from graphswarm.testing import ScriptedChatModel

CALL = {"agent": "a", "node": "n", "input_tokens": 10, "output_tokens": 5, "latency_s": 0.1, "cost": 0.01}


def test_the_call_cap_counts_reservations_across_parallel_callers():
    governor = Governor(Budget(max_calls=2))
    governor.admit("x")
    governor.admit("y")
    with pytest.raises(BudgetExhausted) as stop:
        governor.admit("z")
    assert stop.value.reason is StopReason.CALL_CAP


def test_a_failed_request_counts_as_a_call_but_not_as_a_repeat():
    governor = Governor(Budget(max_calls=3, max_repeats=1))
    governor.admit("x")
    governor.record("x", {**CALL, "error": "HTTP 500"})
    governor.admit("x")  # a retry of the same request is not a stall
    governor.record("x", CALL)
    assert governor.calls == 2 and len(governor.records) == 2
    with pytest.raises(BudgetExhausted) as stop:
        governor.admit("x")
    assert stop.value.reason is StopReason.STALL


def test_spent_calls_of_earlier_executions_count():
    governor = Governor(Budget(max_tokens=30), spent=[CALL, CALL])
    with pytest.raises(BudgetExhausted) as stop:
        governor.admit("x")
    assert stop.value.reason is StopReason.TOKEN_CAP


def test_cost_and_time_caps():
    with pytest.raises(BudgetExhausted, match="cost cap"):
        Governor(Budget(max_cost=0.01), spent=[CALL]).admit("x")
    with pytest.raises(BudgetExhausted, match="time cap"):
        Governor(Budget(max_seconds=1), elapsed_s=2).admit("x")


def test_the_same_call_repeated_is_a_stall():
    governor = Governor(Budget(max_repeats=2))
    for _ in range(2):
        governor.admit("same")
        governor.record("same", CALL)
    with pytest.raises(BudgetExhausted) as stop:
        governor.admit("same")
    assert stop.value.reason is StopReason.STALL
    governor.admit("different")


def test_caps_must_be_positive():
    with pytest.raises(ValueError):
        Budget(max_calls=0)


async def test_a_swarm_going_in_circles_stops_as_stalled():
    # The leader rejects every answer with the same feedback and plans the same task again.
    plan = {"tasks": [{"title": "draft", "worker": "w"}]}
    reject = {"answer": "draft", "approved": False, "feedback": "again"}
    model = ScriptedChatModel({"leader": [plan, reject] * 5, "w": ["same text"] * 5})
    spec = SwarmSpec(architecture="hierarchical", agents=[Agent(name="w")], model=model, options={"max_rounds": 10})
    async with Runner("memory") as runner:
        result = await runner.start(spec, "write", budget=Budget(max_repeats=2))
    assert result.status is RunStatus.INTERRUPTED
    assert result.stop_reason == "stall"
    assert result.state["reviews"], "partial results are kept"


def test_an_unpriced_call_cannot_pass_a_cost_cap():
    with pytest.raises(BudgetExhausted, match="cannot be kept") as caught:
        Governor(Budget(max_cost=1.0)).admit("x", priced=False)
    assert caught.value.reason is StopReason.COST_CAP
    Governor(Budget(max_calls=5)).admit("x", priced=False)  # no cost cap: nothing to keep
    unknown = {**CALL, "cost": None}
    governor = Governor(Budget(max_cost=0.015), spent=[unknown, CALL])  # unknown spent counts 0
    governor.admit("x")
    governor.record("x", unknown)


async def test_a_graph_run_outside_the_runner_pauses_before_an_unpriced_call():
    # Runner.start refuses such a swarm (see test_cli); a graph given to the runner pauses instead
    model = ScriptedChatModel(["answer"])
    graph = SwarmSpec(architecture="competitive", agents=[Agent(name="a"), Agent(name="b")], model=model).build()
    async with Runner("memory") as runner:
        result = await runner.start(graph, "x", budget=Budget(max_cost=1.0))
    assert result.status is RunStatus.INTERRUPTED and result.stop_reason == "cost_cap"
    assert model.calls == [] and "cannot be kept" in result.pauses[0]["detail"]
