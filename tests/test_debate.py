"""Multi-agent debate: rounds, seeing the others, early stop, moderator and judge."""

from __future__ import annotations

import pytest

from graphswarm import Agent, ConfigError, Runner, SwarmSpec
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

DEBATERS = [Agent(name="ann"), Agent(name="ben"), Agent(name="cat")]


async def run(model, agents=DEBATERS, judge=None, moderator=None, **options):
    spec = SwarmSpec(
        architecture="debate", agents=agents, model=model, judge=judge, moderator=moderator, options=options
    )
    async with Runner("memory") as runner:
        return await runner.start(spec, "What is 17 + 25?")


async def test_agreement_in_round_one_stops_the_debate_early():
    model = ScriptedChatModel({name: ["Final answer: 42"] for name in ("ann", "ben", "cat")})
    result = await run(model, rounds=3)
    assert result.stop_reason == "consensus"
    assert [r["round"] for r in result.state["rounds"]] == [1]
    assert len(model.calls) == 3  # no round-two calls at all
    assert result.final_answer == "42"


async def test_agents_see_the_others_answers_and_converge():
    model = ScriptedChatModel(
        {
            "ann": ["Final answer: 42", "Final answer: 42"],
            "ben": ["Final answer: 41", "Ann is right. Final answer: 42"],
            "cat": ["Final answer: 42", "Final answer: 42"],
        }
    )
    result = await run(model, rounds=3)
    assert result.stop_reason == "consensus"
    assert [r["agreement"] for r in result.state["rounds"]] == [pytest.approx(2 / 3), 1.0]
    ben_round_two = model.calls_for("ben")[1].prompt
    assert "ann: Final answer: 42" in ben_round_two and "Your previous answer was: 41" in ben_round_two


async def test_the_round_limit_ends_a_debate_without_agreement():
    model = ScriptedChatModel(
        {"ann": ["Final answer: 1"] * 2, "ben": ["Final answer: 2"] * 2, "cat": ["Final answer: 2"] * 2}
    )
    result = await run(model, rounds=2)
    assert result.stop_reason == "max_rounds"
    assert result.final_answer == "2"
    assert len(result.state["transcript"]) == 6


async def test_a_tied_last_round_without_a_judge_says_the_first_answer_broke_the_tie():
    agents = [Agent(name=n) for n in ("ann", "ben", "cat", "dan")]
    script = {
        "ann": ["Final answer: 1"],
        "ben": ["Final answer: 2"],
        "cat": ["Final answer: 2"],
        "dan": ["Final answer: 1"],
    }
    result = await run(ScriptedChatModel(script), agents=agents, rounds=1, threshold=0.5)
    assert result.stop_reason == "tie_broken_by_first"  # a 2-2 split is no consensus, even at threshold 0.5
    assert result.final_answer == "1"


async def test_a_tied_last_round_with_a_judge_is_judged_not_broken_by_rule():
    script = {"ann": ["Final answer: 1"], "ben": ["Final answer: 2"], "judge": [{"answer": "2", "reason": "right"}]}
    agents = [Agent(name="ann"), Agent(name="ben")]
    result = await run(ScriptedChatModel(script), agents=agents, judge=Agent(name="judge"), rounds=1)
    assert result.stop_reason == "max_rounds" and result.final_answer == "2"


async def test_a_lower_threshold_accepts_a_majority():
    model = ScriptedChatModel({"ann": ["Final answer: 1"], "ben": ["Final answer: 2"], "cat": ["Final answer: 2"]})
    result = await run(model, rounds=3, threshold=0.6)
    assert result.stop_reason == "consensus" and len(model.calls) == 3


async def test_in_a_ring_each_agent_sees_only_its_neighbours():
    names = ["a1", "a2", "a3", "a4"]
    model = ScriptedChatModel({n: [f"Final answer: {i}", "Final answer: 0"] for i, n in enumerate(names)})
    await run(model, agents=[Agent(name=n) for n in names], rounds=2, topology="ring")
    a1_round_two = model.calls_for("a1")[1].prompt
    assert "a2:" in a1_round_two and "a4:" in a1_round_two and "a3:" not in a1_round_two


async def test_with_shared_memory_a_ring_still_hides_the_far_side():
    names = ["a1", "a2", "a3", "a4"]
    answers = {n: f"The sum is {n} number. Final answer: {40 + i}" for i, n in enumerate(names)}
    model = ScriptedChatModel({n: [answers[n], "Final answer: 42"] for n in names})
    spec = SwarmSpec(
        architecture="debate",
        agents=[Agent(name=n) for n in names],
        model=model,
        options={"rounds": 2, "topology": "ring"},
    )
    async with Runner("memory", memory="memory", embeddings=KeywordEmbeddings()) as runner:
        await runner.start(spec, "What is the sum of 17 and 25?")
    a1_round_two = model.calls_for("a1")[1].prompt
    assert answers["a2"] in a1_round_two and answers["a4"] in a1_round_two
    assert answers["a3"] not in a1_round_two


async def test_a_moderator_can_settle_the_debate():
    model = ScriptedChatModel(
        {
            "ann": ["Final answer: 1"],
            "ben": ["Final answer: 2"],
            "cat": ["Final answer: 3"],
            "mod": [{"settled": True, "reason": "nobody will move"}],
        }
    )
    result = await run(model, rounds=3, moderator=Agent(name="mod"))
    assert result.stop_reason == "moderator"
    assert result.state["moderator_notes"] == ["round 1: nobody will move"]


async def test_a_judge_gives_the_final_verdict():
    model = ScriptedChatModel(
        {
            "ann": ["Final answer: 42"],
            "ben": ["Final answer: 42"],
            "cat": ["Final answer: 42"],
            "judge": [{"answer": "42, because 17 + 25 = 42", "reason": "all agree"}],
        }
    )
    result = await run(model, judge=Agent(name="judge"))
    assert result.final_answer == "42, because 17 + 25 = 42"
    assert "[round 1] ann" in model.calls_for("judge")[0].prompt


@pytest.mark.parametrize(
    "options, message",
    [({"rounds": 0}, "rounds"), ({"threshold": 0}, "threshold"), ({"topology": "star"}, "star")],
)
def test_bad_options_are_config_errors(options, message):
    spec = SwarmSpec(architecture="debate", agents=DEBATERS, model=ScriptedChatModel([]), options=options)
    with pytest.raises(ConfigError, match=message):
        spec.build()
