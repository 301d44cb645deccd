"""Agents of one swarm sample with their own seeds, so they do not all give the same sample.

Servers that honour `seed` (llama.cpp, vLLM, OpenAI) otherwise answer every agent asked
the same question alike, and a vote of 27 such agents is no better than one of them.
"""

from __future__ import annotations

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.agents import agent_seed

AGENTS = [Agent(name=f"a{i}") for i in range(5)]


async def seeds_sent(fake, run_id: str) -> list[int | None]:
    fake.reset()
    spec = SwarmSpec(architecture="collaborative", agents=AGENTS, base_url=fake.url)
    async with Runner("memory") as runner:
        await runner.start(spec, "What is 17 + 25?", run_id=run_id)
    return [c["seed"] for c in fake.stats()["completed"]]


async def test_the_server_sees_a_distinct_seed_from_each_agent_of_a_run(fake):
    seeds = await seeds_sent(fake, "seeds-1")
    assert len(seeds) == 5 and None not in seeds
    assert len(set(seeds)) == 5
    assert set(seeds) == {agent_seed("seeds-1", a.name) for a in AGENTS}


async def test_another_run_of_the_same_swarm_samples_with_other_seeds(fake):
    first = await seeds_sent(fake, "seeds-2")
    assert set(await seeds_sent(fake, "seeds-3")).isdisjoint(first)


def test_an_agent_seed_is_a_31_bit_number_recomputed_from_run_and_agent():
    assert agent_seed("run", "ann") == agent_seed("run", "ann")
    assert agent_seed("run", "ann") != agent_seed("run", "ben") != agent_seed("other", "ben")
    assert 0 <= agent_seed("run", "ann") < 2**31
