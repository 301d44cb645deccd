"""The collaborative swarm: parallel answers, sharing rounds, a counted vote."""

from __future__ import annotations

import pytest

from graphswarm import Agent, ConfigError, Runner, RunStatus, SwarmSpec
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

VOTERS = [Agent(name=f"v{i}") for i in range(1, 6)]


async def run(model, agents=VOTERS, **options):
    spec = SwarmSpec(architecture="collaborative", agents=agents, model=model, options=options)
    async with Runner("memory") as runner:
        return await runner.start(spec, "What is 17 + 25?")


async def test_the_plurality_of_normalised_answers_wins():
    model = ScriptedChatModel(
        {
            "v1": ["17 + 25 = 42.\nFinal answer: 42"],
            "v2": ["**Final Answer:** 42.0"],
            "v3": ["Final answer: 41"],
            "v4": ["I'm sorry, but I can't help with that."],
            "v5": ["Let me think... Final answer: 42"],
        }
    )
    result = await run(model)
    table = result.state["votes"][-1]
    assert result.status is RunStatus.DONE
    assert result.final_answer == "42"
    assert result.stop_reason == "majority"
    assert table["counts"] == {"42": 3, "41": 1}
    assert table["abstentions"] == ["v4"]
    assert table["agreement"] == pytest.approx(0.75)
    assert len(model.calls) == 5  # one call per agent, no more


async def test_a_unanimous_vote_is_a_consensus_and_skips_sharing_rounds():
    model = ScriptedChatModel({f"v{i}": ["Final answer: 42"] for i in range(1, 6)})
    result = await run(model, rounds=2)
    assert result.stop_reason == "consensus"
    assert len(model.calls) == 5


async def test_a_sharing_round_shows_each_agent_the_tally_and_its_own_answer():
    model = ScriptedChatModel(
        {
            "v1": ["Final answer: 42", "Final answer: 42"],
            "v2": ["Final answer: 41", "Having seen the others, Final answer: 42"],
        }
    )
    result = await run(model, agents=VOTERS[:2], rounds=1)
    assert result.final_answer == "42"
    assert result.stop_reason == "consensus"
    second = model.calls_for("v2")[1].prompt
    assert "- 42 (1 agents)" in second and "Your previous answer was: 41" in second
    assert [v["agreement"] for v in result.state["votes"]] == [0.5, 1.0]


async def test_a_tie_goes_to_the_first_answer_by_default():
    model = ScriptedChatModel({"v1": ["Final answer: blue"], "v2": ["Final answer: red"]})
    result = await run(model, agents=VOTERS[:2])
    assert result.final_answer == "blue"
    assert result.state["votes"][-1]["tie"] is True
    assert result.stop_reason == "tie_broken_by_first"  # not "majority": nobody had one


async def test_a_three_way_split_broken_by_the_first_answer_says_so():
    model = ScriptedChatModel({"v1": ["Final answer: 1"], "v2": ["Final answer: 2"], "v3": ["Final answer: 3"]})
    result = await run(model, agents=VOTERS[:3])
    table = result.state["votes"][-1]
    assert (result.final_answer, result.stop_reason) == ("1", "tie_broken_by_first")
    assert table["margin"] == 0 and table["tied"] == ["1", "2", "3"]


async def test_a_tie_left_for_a_new_round_with_none_left_is_broken_by_the_first_answer():
    model = ScriptedChatModel({"v1": ["Final answer: blue"], "v2": ["Final answer: red"]})
    result = await run(model, agents=VOTERS[:2], tie_break="new_round")
    assert (result.final_answer, result.stop_reason) == ("blue", "tie_broken_by_first")


async def test_a_unanimous_vote_has_a_margin_of_all_its_votes():
    model = ScriptedChatModel({f"v{i}": ["Final answer: 42"] for i in range(1, 4)})
    table = (await run(model, agents=VOTERS[:3])).state["votes"][-1]
    assert (table["margin"], table["agreement"]) == (3, 1.0)


async def test_by_default_agents_answer_once_and_never_see_the_tally():
    # README: "with `--rounds N` (default 0) they see the tally and may revise"
    model = ScriptedChatModel({"v1": ["Final answer: 1"], "v2": ["Final answer: 2"], "v3": ["Final answer: 2"]})
    result = await run(model, agents=VOTERS[:3])
    assert result.stop_reason == "majority" and len(model.calls) == 3
    assert all("tally" not in call.prompt.lower() for call in model.calls)


async def test_a_resumed_40_agent_vote_counts_every_agent_once(tmp_path):
    from graphswarm import Budget

    agents = [Agent(name=f"a{i:02d}") for i in range(40)]
    model = ScriptedChatModel({a.name: [f"Final answer: {41 if i % 4 == 0 else 42}"] for i, a in enumerate(agents)})
    spec = SwarmSpec(architecture="collaborative", agents=agents, model=model)
    async with Runner(str(tmp_path / "runs.sqlite")) as runner:
        paused = await runner.start(spec, "What is 17 + 25?", budget=Budget(max_calls=31))
        assert paused.status is RunStatus.INTERRUPTED and paused.stop_reason == "call_cap"
        result = await runner.resume(paused.run_id, graph=spec.build(), budget=Budget(max_calls=80))
    table = result.state["votes"][-1]
    assert result.status is RunStatus.DONE and len(model.calls) == 40  # no agent asked twice
    assert sorted(b["agent"] for b in table["ballots"]) == [a.name for a in agents]
    assert len(result.state["answers"]) == 40
    assert table["counts"] == {"42": 30, "41": 10}
    assert (table["agreement"], table["margin"]) == (0.75, 20)


async def test_a_tie_can_be_broken_by_a_judge():
    model = ScriptedChatModel(
        {
            "v1": ["Final answer: blue"],
            "v2": ["Final answer: red"],
            "judge": [{"answer": "red", "reason": "better argued"}],
        }
    )
    result = await run(model, agents=VOTERS[:2], tie_break="judge")
    assert result.final_answer == "red"
    assert result.stop_reason == "judged"
    assert "Answer 1: blue" in model.calls_for("judge")[0].prompt


async def test_a_judge_whose_reply_cannot_be_read_leaves_the_tie_to_the_first_answer():
    unreadable = ["I like both."] * 6  # fits no schema, however often it is asked
    model = ScriptedChatModel({"v1": ["Final answer: blue"], "v2": ["Final answer: red"], "judge": unreadable})
    result = await run(model, agents=VOTERS[:2], tie_break="judge")
    assert (result.final_answer, result.stop_reason) == ("blue", "tie_broken_by_first")
    assert len([c for c in result.state["calls"] if c["agent"] == "judge"]) == len(unreadable)


async def test_a_tie_can_trigger_a_new_round():
    model = ScriptedChatModel(
        {"v1": ["Final answer: blue", "Final answer: red"], "v2": ["Final answer: red", "Final answer: red"]}
    )
    result = await run(model, agents=VOTERS[:2], tie_break="new_round", rounds=1)
    assert result.final_answer == "red"
    assert len(result.state["votes"]) == 2


async def test_semantic_voting_groups_paraphrases():
    model = ScriptedChatModel(
        {
            "v1": ["Final answer: Paris is the capital of France"],
            "v2": ["Final answer: The capital of France is Paris"],
            "v3": ["Final answer: Berlin is the capital of Germany"],
        }
    )
    spec = SwarmSpec(
        architecture="collaborative",
        agents=VOTERS[:3],
        model=model,
        options={"method": "semantic", "threshold": 0.6, "embeddings": KeywordEmbeddings()},
    )
    async with Runner("memory") as runner:
        result = await runner.start(spec, "What is the capital of France?")
    assert result.final_answer == "Paris is the capital of France"
    assert result.state["votes"][-1]["agreement"] == pytest.approx(2 / 3)


async def test_weights_change_the_winner():
    model = ScriptedChatModel({"v1": ["Final answer: A"], "v2": ["Final answer: B"], "v3": ["Final answer: B"]})
    result = await run(model, agents=VOTERS[:3], method="weighted", weights={"v1": 3.0})
    assert result.final_answer == "A"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "loudest"}, "loudest"),
        ({"threshold": 1.5}, "threshold"),
        ({"rounds": -1}, "rounds"),
        ({"method": "semantic"}, "embeddings"),
        ({"topology": "ring"}, "has no option 'topology'"),
    ],
)
def test_bad_options_are_config_errors(options, message, monkeypatch):
    monkeypatch.setattr("graphswarm.embeddings.minilm_available", lambda: False)
    spec = SwarmSpec(architecture="collaborative", agents=VOTERS, model=ScriptedChatModel([]), options=options)
    with pytest.raises(ConfigError, match=message):  # all checked before a run starts, as Runner.start does
        spec.check_models()
        spec.build()


def test_a_vote_needs_two_agents():
    with pytest.raises(ConfigError, match="at least 2"):
        SwarmSpec(architecture="collaborative", agents=VOTERS[:1], model=ScriptedChatModel([])).build()
