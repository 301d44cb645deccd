"""The competitive swarm: independent answers, one selected by a judge, a scorer or confidence."""

from __future__ import annotations

import pytest

from graphswarm import Agent, ConfigError, Runner, SwarmSpec
from graphswarm.architectures.competitive import parse_confidence
from graphswarm.testing import ScriptedChatModel

RIVALS = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
ANSWERS = {"r1": ["Final answer: 41"], "r2": ["Final answer: 42"], "r3": ["Final answer: 40"]}


async def run(model, **options):
    spec = SwarmSpec(architecture="competitive", agents=RIVALS, model=model, options=options)
    async with Runner("memory") as runner:
        return await runner.start(spec, "What is 17 + 25?")


async def test_a_judge_scores_every_candidate_and_the_best_wins():
    scores = {
        "scores": [
            {"candidate": 1, "score": 3, "rationale": "off by one"},
            {"candidate": 2, "score": 10, "rationale": "correct"},
            {"candidate": 3, "score": 1, "rationale": "wrong"},
        ]
    }
    model = ScriptedChatModel({**ANSWERS, "judge": [scores]})
    result = await run(model)
    assert result.final_answer == "42"
    assert result.state["winner"] == "r2"
    assert [(r["rank"], r["agent"], r["score"]) for r in result.state["ranking"]] == [
        (1, "r2", 10),
        (2, "r1", 3),
        (3, "r3", 1),
    ]
    assert result.state["ranking"][0]["rationale"] == "correct"
    judge_prompt = model.calls_for("judge")[0].prompt
    assert "Candidate 2" in judge_prompt and "r2" not in judge_prompt  # judged blind


async def test_candidates_the_judge_skipped_score_zero():
    model = ScriptedChatModel({**ANSWERS, "judge": [{"scores": [{"candidate": 3, "score": 5}]}]})
    result = await run(model)
    assert result.state["winner"] == "r3"
    assert result.state["ranking"][-1]["rationale"] == "not scored by the judge"


async def test_pairwise_judging_is_a_knockout():
    model = ScriptedChatModel({**ANSWERS, "judge": [{"winner": "B", "rationale": "r2 is right"}, {"winner": "A"}]})
    result = await run(model, selection="pairwise")
    assert result.state["winner"] == "r2"
    assert len(model.calls_for("judge")) == 2  # N - 1 comparisons


async def test_a_scoring_function_selects_without_a_judge():
    model = ScriptedChatModel(ANSWERS)
    result = await run(model, selection="scorer", scorer=lambda objective, answer: -abs(int(answer) - 42))
    assert result.final_answer == "42"
    assert len(model.calls) == 3


async def test_self_reported_confidence_selects():
    model = ScriptedChatModel(
        {
            "r1": ["Final answer: 41\nConfidence: 0.4"],
            "r2": ["Final answer: 42\nConfidence: 95%"],
            "r3": ["Final answer: 40"],
        }
    )
    result = await run(model, selection="confidence")
    assert result.final_answer == "42"
    assert [r["score"] for r in result.state["ranking"]] == [0.95, 0.4, 0.0]
    assert "Confidence:" in model.calls_for("r1")[0].prompt


@pytest.mark.parametrize("text, value", [("Confidence: 0.8", 0.8), ("confidence = 80%", 0.8), ("none", None)])
def test_confidence_lines_are_parsed(text, value):
    assert parse_confidence(text) == value


def test_scorer_selection_needs_a_scorer():
    spec = SwarmSpec(
        architecture="competitive", agents=RIVALS, model=ScriptedChatModel([]), options={"selection": "scorer"}
    )
    with pytest.raises(ConfigError, match="scorer"):
        spec.build()
