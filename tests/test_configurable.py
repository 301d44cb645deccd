"""A configurable graph: one graph, built once, whose swarm each run's context chooses.

This is what `langgraph dev` serves and what a remote worker hosts: the run says which
model, how many agents, which options and which budget, as plain data.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from graphswarm import Budget, ConfigError, SwarmContext, SwarmSpec
from graphswarm.configurable import configurable_graph, spec_for

QUESTION = "What is 6 times 7?"


def defaults(fake, architecture: str = "collaborative", count: int = 3) -> SwarmSpec:
    return SwarmSpec.with_workers(architecture, count, model="default-model", base_url=fake.url)


async def test_the_context_chooses_the_model_and_the_number_of_agents(fake):
    graph = configurable_graph(defaults(fake)).compile()

    plain = await graph.ainvoke({"objective": QUESTION})
    chosen = await graph.ainvoke({"objective": QUESTION}, context={"model": "other-model", "agents": 5})

    assert len({c["agent"] for c in plain["calls"]}) == 3
    assert len({c["agent"] for c in chosen["calls"]}) == 5
    by_model = fake.stats()["by_model"]
    assert by_model["default-model"]["succeeded"] == len(plain["calls"])
    assert by_model["other-model"]["succeeded"] == len(chosen["calls"])


async def test_options_from_the_context_apply_to_routing_as_well_as_nodes(fake):
    graph = configurable_graph(defaults(fake, "debate", 2)).compile()

    default = await graph.ainvoke({"objective": QUESTION})
    three = await graph.ainvoke({"objective": QUESTION}, context=SwarmContext(options={"rounds": 3}))

    # The fake server's agents never agree: the round limit (checked by routing) decides.
    assert len(default["rounds"]) == 2
    assert len(three["rounds"]) == 3


async def test_a_budget_in_the_context_caps_the_run(fake):
    graph = configurable_graph(defaults(fake, count=4)).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "capped"}}

    paused = await graph.ainvoke({"objective": QUESTION}, config, context={"budget": {"max_calls": 2}})

    assert fake.stats()["succeeded"] == 2
    assert "__interrupt__" in paused
    assert paused["__interrupt__"][0].value["stop_reason"] == "call_cap"


def test_the_context_schema_is_plain_data():
    schema = SwarmContext.model_json_schema()

    assert set(schema["properties"]) == {"model", "base_url", "agents", "options", "budget"}
    assert SwarmContext(budget=Budget(max_calls=3)).governor_for_run().budget.max_calls == 3


def test_a_configurable_graph_checks_its_options_when_a_run_starts(fake):
    graph = configurable_graph(defaults(fake, "debate", 2)).compile()

    assert graph.get_context_jsonschema()["$defs"]["DebateOptions"]["properties"]["rounds"]["maximum"] == 20
    with pytest.raises(ValidationError, match="rounds"):
        asyncio.run(graph.ainvoke({"objective": QUESTION}, context={"options": {"rounds": 99}}))


def test_a_whole_spec_in_the_context_wins_over_the_settings(fake):
    spec = SwarmSpec.with_workers("collaborative", 2, model="spec-model")

    chosen = spec_for({"spec": spec.to_record(), "model": "ignored"}, defaults(fake))

    assert chosen.model == "spec-model" and len(chosen.agents) == 2


def test_a_spec_of_another_architecture_is_refused(fake):
    other = SwarmSpec.with_workers("debate", 2).to_record()

    with pytest.raises(ConfigError, match="runs collaborative"):
        spec_for({"spec": other}, defaults(fake))
