"""The particle swarm: fitness, personal and global bests, diversity, convergence."""

from __future__ import annotations

import pytest

from graphswarm import Agent, ConfigError, Runner, RunStatus, SwarmSpec
from graphswarm.architectures.particle import diversity
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

PARTICLES = [Agent(name="p1"), Agent(name="p2"), Agent(name="p3")]


def scores(*values: float) -> dict:
    return {"scores": [{"candidate": i, "score": v, "rationale": ""} for i, v in enumerate(values, start=1)]}


def spec(model, **options) -> SwarmSpec:
    return SwarmSpec(
        architecture="particle",
        agents=PARTICLES,
        model=model,
        options={"embeddings": KeywordEmbeddings(), **options},
    )


async def run(swarm: SwarmSpec):
    async with Runner("memory") as runner:
        return await runner.start(swarm, "Name a slogan for a bakery")


async def test_particles_converge_when_their_answers_meet():
    model = ScriptedChatModel(
        {
            "p1": ["Final answer: fresh bread daily", "Final answer: warm bread every morning"],
            "p2": ["Final answer: cakes for every party", "Final answer: warm bread every morning"],
            "p3": ["Final answer: the best croissants in town", "Final answer: warm bread every morning"],
            "judge": [scores(6, 4, 5), scores(8, 8, 8)],
        }
    )
    result = await run(spec(model, iterations=5))
    assert result.status is RunStatus.DONE
    assert result.stop_reason == "converged"
    assert [t["iteration"] for t in result.state["trace"]] == [1, 2]
    assert result.state["trace"][0]["diversity"] > 0.5 > result.state["trace"][1]["diversity"]
    assert result.final_answer == "warm bread every morning"
    model.assert_complete()


async def test_each_particle_is_guided_by_its_own_best_and_the_global_best():
    model = ScriptedChatModel(
        {
            "p1": ["Final answer: alpha", "Final answer: alpha two"],
            "p2": ["Final answer: beta", "Final answer: beta two"],
            "p3": ["Final answer: gamma", "Final answer: gamma two"],
            "judge": [scores(2, 9, 4), scores(3, 9, 5)],
        }
    )
    await run(spec(model, iterations=2))
    prompt = model.calls_for("p1")[1].prompt
    assert "Your current answer (score 2)" in prompt
    assert "The swarm's best answer so far (score 9):\nFinal answer: beta" in prompt


async def test_global_best_fitness_never_decreases_and_max_iterations_stops():
    model = ScriptedChatModel(
        {
            "p1": [f"Final answer: apple {i}" for i in range(3)],
            "p2": [f"Final answer: river {i}" for i in range(3)],
            "p3": [f"Final answer: castle {i}" for i in range(3)],
            "judge": [scores(5, 1, 1), scores(2, 3, 1), scores(7, 1, 1)],
        }
    )
    result = await run(spec(model, iterations=3, patience=5))
    trace = result.state["trace"]
    assert result.stop_reason == "max_rounds"
    assert [t["best_fitness"] for t in trace] == [5, 5, 7]
    assert [t["mean_fitness"] for t in trace] == pytest.approx([7 / 3, 2, 3])
    assert all(t["diversity"] > 0.3 for t in trace)


async def test_no_improvement_for_patience_iterations_stops():
    model = ScriptedChatModel(
        {
            "p1": [f"Final answer: apple {i}" for i in range(3)],
            "p2": [f"Final answer: river {i}" for i in range(3)],
            "p3": [f"Final answer: castle {i}" for i in range(3)],
            "judge": [scores(5, 1, 1), scores(2, 3, 1), scores(4, 1, 1)],
        }
    )
    result = await run(spec(model, iterations=10, patience=2))
    assert result.stop_reason == "no_improvement"
    assert len(result.state["trace"]) == 3


async def test_a_scoring_function_replaces_the_judge():
    model = ScriptedChatModel({"p1": ["Final answer: a"], "p2": ["Final answer: bb"], "p3": ["Final answer: ccc"]})
    result = await run(spec(model, iterations=1, scorer=lambda objective, answer: len(answer)))
    assert result.final_answer == "ccc"
    assert result.state["global_best"]["agent"] == "p3"


async def test_neighbours_are_the_most_similar_answers():
    model = ScriptedChatModel(
        {
            "p1": ["Final answer: warm fresh bread", "x"],
            "p2": ["Final answer: fresh warm bread daily", "y"],
            "p3": ["Final answer: football scores tonight", "z"],
            "judge": [scores(1, 2, 3), scores(1, 1, 1)],
        }
    )
    await run(spec(model, iterations=2, neighbours=1))
    prompt = model.calls_for("p1")[1].prompt
    assert "nearest neighbours' answers:\n- (score 2) Final answer: fresh warm bread daily" in prompt


def test_diversity_is_zero_for_identical_positions():
    assert diversity([[1.0, 0.0], [1.0, 0.0]]) == 0.0
    assert diversity([[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "options, message",
    [({"iterations": 0}, "iterations"), ({"inertia": 1.5}, "inertia"), ({"neighbours": 3}, "neighbours")],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        spec(ScriptedChatModel([]), **options).build()


async def test_embeddings_named_as_an_option_come_from_the_base_url_server(fake):
    # What `-o embeddings=openai:NAME` gives with --base-url: a name, which the swarm resolves.
    model = ScriptedChatModel(
        {"p1": ["Final answer: a"], "p2": ["Final answer: b"], "p3": ["Final answer: c"], "judge": [scores(3, 2, 1)]}
    )
    swarm = SwarmSpec(
        architecture="particle",
        agents=PARTICLES,
        model=model,
        base_url=fake.url,
        options={"embeddings": "openai:any-embedder", "iterations": 1},
    )
    result = await run(swarm)
    assert result.status is RunStatus.DONE
    assert fake.stats()["embeddings"] >= 1


def test_embeddings_named_as_an_option_are_kept_in_the_run_record():
    named = SwarmSpec(
        architecture="particle",
        agents=PARTICLES,
        model="m",
        base_url="http://127.0.0.1:9/v1",
        options={"embeddings": "minilm", "iterations": 1},
    )
    assert named.recordable  # so `graphswarm resume` rebuilds the run with the same embeddings
    assert named.to_record()["options"] == {"embeddings": "minilm", "iterations": 1}
    assert not spec(ScriptedChatModel([])).recordable  # an Embeddings object cannot be recorded


async def test_with_shared_memory_no_neighbours_means_a_particle_sees_no_other_particles_answer():
    # Each particle sees its own answers and the swarm's best (p1's here), nothing else:
    # shared memory must not hand it the others' answers through recalled notes.
    answers = {
        "p1": "Final answer: warm bread baked at dawn",
        "p2": "Final answer: bread cakes and buns for parties",
        "p3": "Final answer: the finest bread croissants in town",
    }
    model = ScriptedChatModel(
        {
            **{name: [text, f"Final answer: {name} again"] for name, text in answers.items()},
            "judge": [scores(9, 4, 5), scores(9, 4, 5)],
        }
    )
    async with Runner("memory", memory="memory", embeddings=KeywordEmbeddings()) as runner:
        result = await runner.start(spec(model, iterations=2, neighbours=0), "Name a slogan for a bread bakery")
    assert result.status is RunStatus.DONE
    for name in answers:
        prompt = model.calls_for(name)[1].prompt
        hidden = [other for other in answers if other not in (name, "p1")]  # p1 holds the swarm's best
        for other in hidden:
            assert answers[other] not in prompt, f"{name} saw {other}'s answer"
