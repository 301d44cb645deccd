"""A verdict is never worse than the vote of the agents' own answers.

Debate, competitive, hierarchical consolidation and the particle swarm end with a
judge's, leader's or the swarm's best answer. When it has no extractable answer, or
overrules a clear majority of the agents without a reason, the counted vote stands, and
the run says so in `verdict_check` and in its view.
"""

from __future__ import annotations

import pytest

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.aggregation import best_supported, check_verdict, count_votes, make_ballot
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel, unreadable_replies

DEBATERS = [Agent(name="ann"), Agent(name="ben"), Agent(name="cat")]
QUESTION = "What is 17 + 25?"
RAMBLING = (
    "Well, this is an interesting question that many people have thought about for a long time, "
    "and there are several ways to look at numbers like seventeen and twenty-five in general."
)


PLANNED = {"delegate": "plan"}
"""A hierarchical leader plans even a question (else every worker is given it)."""


async def start(spec: SwarmSpec, objective: str = QUESTION):
    async with Runner("memory") as runner:
        return await runner.start(spec, objective)


async def debate(script: dict, **options):
    spec = SwarmSpec(
        architecture="debate", agents=DEBATERS, model=ScriptedChatModel(script), judge=Agent(name="judge"),
        options={"rounds": 1, **options},
    )  # fmt: skip
    result = await start(spec)
    return result


UNANIMOUS = {name: ["17 + 25 = 42. Final answer: 42"] for name in ("ann", "ben", "cat")}


async def test_a_rambling_judge_gives_way_to_the_vote_and_the_run_says_so():
    result = await debate({**UNANIMOUS, "judge": [{"answer": RAMBLING, "reason": "it is complicated"}]})
    assert result.final_answer == "42"
    check = result.state["verdict_check"]
    assert check["fell_back"] and check["reason"] == "no_answer"
    assert check["verdict"] == RAMBLING and check["votes"] == 3 and check["ballots"] == 3


async def test_a_judge_contradicting_a_unanimous_vote_without_a_reason_gives_way():
    result = await debate({**UNANIMOUS, "judge": [{"answer": "41", "reason": ""}]})
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "overruled_majority"


async def test_a_judge_who_states_why_may_overrule_the_majority():
    result = await debate({**UNANIMOUS, "judge": [{"answer": "41", "reason": "everyone added 17 and 25 wrong"}]})
    assert result.final_answer == "41"
    assert not result.state["verdict_check"]["fell_back"]


async def test_a_judge_who_agrees_keeps_its_own_words_and_nothing_is_recorded_as_fallen_back():
    result = await debate({**UNANIMOUS, "judge": [{"answer": "The answer is 42.", "reason": ""}]})
    assert result.final_answer == "The answer is 42."
    check = result.state["verdict_check"]
    assert not check["fell_back"] and check["reason"] is None and check["verdict_label"] == "42"


async def test_a_long_verdict_naming_one_of_the_answers_picks_that_answer():
    verdict = RAMBLING + " After all that, the sum the debaters found, 42, is what I would go with here."
    result = await debate({**UNANIMOUS, "judge": [{"answer": verdict, "reason": ""}]})
    assert result.final_answer == "42"
    assert not result.state["verdict_check"]["fell_back"]


async def test_the_view_of_a_run_shows_the_fallback():
    from graphswarm.architectures.debate import view_run
    from graphswarm.view import Text

    result = await debate({**UNANIMOUS, "judge": [{"answer": "", "reason": ""}]})
    run = type("RunLike", (), {"state": result.state, "record": None})()
    lines = [b.text for b in view_run(run, brief=True) if isinstance(b, Text)]  # type: ignore[arg-type]
    assert "verdict replaced by the agents' vote 42 (3 of 3): it had no extractable answer" in lines


async def test_debate_converges_when_answers_differ_only_in_formatting():
    script = {"ann": ["42"], "ben": ["The answer is 42."], "cat": ["**Final Answer:** 42"]}
    spec = SwarmSpec(architecture="debate", agents=DEBATERS, model=ScriptedChatModel(script), options={"rounds": 3})
    result = await start(spec)
    assert result.stop_reason == "consensus"
    assert [r["round"] for r in result.state["rounds"]] == [1]


async def test_a_debate_keeps_its_round_one_majority_when_the_next_round_degrades():
    script = {
        "ann": ["Final answer: 42", "I am not sure any more."],
        "ben": ["Final answer: 42", "Final answer: 41"],
        "cat": ["Final answer: 40", "Final answer: 39"],
    }
    spec = SwarmSpec(architecture="debate", agents=DEBATERS, model=ScriptedChatModel(script), options={"rounds": 2})
    result = await start(spec)
    assert result.stop_reason == "max_rounds"
    assert result.final_answer == "42"
    assert result.state["vote_round"] == 1


async def test_a_competitive_judge_picking_an_answerless_entry_gives_way_to_the_vote():
    agents = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
    scores = {"scores": [{"candidate": 1, "score": 9, "rationale": "thorough"}, {"candidate": 2, "score": 1}]}
    model = ScriptedChatModel({"r1": [""], "r2": ["Final answer: 42"], "r3": ["Final answer: 42"], "judge": [scores]})
    result = await start(SwarmSpec(architecture="competitive", agents=agents, model=model))
    assert result.state["winner"] == "r1"
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "no_answer"


async def test_a_judge_picking_a_list_where_the_agents_named_one_animal_gives_way_even_with_a_reason():
    agents = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
    wordy = "The Big Five: Lions, Elephants, Monkeys, Crocodiles, and Whales."
    scores = {"scores": [{"candidate": 1, "score": 9, "rationale": "it names the most animals"}]}
    script = {"r1": [f"Final answer: {wordy}"], "r2": ["Final answer: The lion."], "r3": ["lion"], "judge": [scores]}
    spec = SwarmSpec(architecture="competitive", agents=agents, model=ScriptedChatModel(script))
    result = await start(spec, "Which animal is known as the king of the jungle?")
    assert result.state["winner"] == "r1"
    assert result.final_answer == "The lion."
    assert result.state["verdict_check"]["reason"] == "no_answer"


async def test_a_judge_picking_a_list_in_a_three_way_tie_gives_way_to_the_short_answer():
    agents = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
    wordy = "The Big Five: Lions, Elephants, Monkeys, Crocodiles, and Whales."
    scores = {"scores": [{"candidate": 2, "score": 9, "rationale": "it names the most animals"}]}
    script = {"r1": ["Final answer: The lion."], "r2": [f"Final answer: {wordy}"], "r3": [RAMBLING], "judge": [scores]}
    spec = SwarmSpec(architecture="competitive", agents=agents, model=ScriptedChatModel(script))
    result = await start(spec, "Which animal is known as the king of the jungle?")
    assert result.final_answer == "The lion."  # the tie's answer before the rambles
    assert result.state["verdict_check"]["reason"] == "no_answer"


async def test_a_leader_contradicting_its_workers_agreeing_result_gives_way_to_it():
    workers = [Agent(name="w1"), Agent(name="w2"), Agent(name="w3")]
    plan = {"tasks": [{"title": f"add the numbers ({w.name})", "worker": w.name} for w in workers]}
    model = ScriptedChatModel(
        {
            "leader": [plan, {"answer": "41", "approved": True, "feedback": ""}],
            "w1": ["Final answer: 42"],
            "w2": ["Final answer: 42"],
            "w3": ["Final answer: 40"],
        }
    )
    result = await start(SwarmSpec(architecture="hierarchical", agents=workers, model=model, options=PLANNED))
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "overruled_majority"


async def test_a_leader_of_workers_who_do_different_things_is_not_second_guessed():
    workers = [Agent(name="w1"), Agent(name="w2")]
    plan = {"tasks": [{"title": "research", "worker": "w1"}, {"title": "write", "worker": "w2"}]}
    model = ScriptedChatModel(
        {
            "leader": [plan, {"answer": "the site", "approved": True, "feedback": ""}],
            "w1": ["three competitors"],
            "w2": ["<html>"],
        }
    )
    result = await start(SwarmSpec(architecture="hierarchical", agents=workers, model=model), "Build a site")
    assert result.final_answer == "the site"
    assert result.state.get("verdict_check") is None


async def test_a_leader_answering_no_number_where_a_worker_found_one_gives_way_to_it():
    workers = [Agent(name="w1"), Agent(name="w2")]
    plan = {"tasks": [{"title": "add the numbers", "worker": "w1"}, {"title": "check the sum", "worker": "w2"}]}
    review = {"answer": "I have combined the results of my team.", "approved": True, "feedback": ""}
    script = {"leader": [plan, review], "w1": ["17 + 25 = 42"], "w2": ["The sum looks right."]}
    model = ScriptedChatModel(script)
    result = await start(SwarmSpec(architecture="hierarchical", agents=workers, model=model, options=PLANNED))
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "no_answer"


async def test_the_particle_swarms_best_gives_way_to_a_clear_majority_its_judge_overruled():
    particles = [Agent(name="p1"), Agent(name="p2"), Agent(name="p3")]
    scores = {"scores": [{"candidate": 1, "score": 9}, {"candidate": 2, "score": 2}, {"candidate": 3, "score": 2}]}
    model = ScriptedChatModel(
        {"p1": ["Final answer: 41"], "p2": ["Final answer: 42"], "p3": ["Final answer: 42"], "judge": [scores]}
    )
    options = {"embeddings": KeywordEmbeddings(), "iterations": 1}
    result = await start(SwarmSpec(architecture="particle", agents=particles, model=model, options=options))
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "overruled_majority"


# -- a judge, moderator or leader whose reply cannot be read at all -----------------
# A small model often cannot write the JSON a verdict, a review or a plan asks for, even
# when re-asked. The run goes on without that reply, on the agents' own answers, and the
# requests it sent still count.

UNREADABLE = unreadable_replies()


def calls_of(result, agent: str) -> list[dict]:
    return [c for c in result.state["calls"] if c["agent"] == agent]


async def test_a_debate_judge_whose_reply_cannot_be_read_gives_way_to_the_vote():
    result = await debate({**UNANIMOUS, "judge": UNREADABLE})
    assert result.final_answer == "42"
    check = result.state["verdict_check"]
    assert check["fell_back"] and check["reason"] == "no_answer" and check["verdict"] == ""
    assert len(calls_of(result, "judge")) == len(UNREADABLE)


async def test_a_moderator_whose_reply_cannot_be_read_lets_the_debate_go_on():
    script = {
        "ann": ["Final answer: 42", "Final answer: 42"],
        "ben": ["Final answer: 42", "Final answer: 42"],
        "cat": ["Final answer: 40", "Final answer: 42"],
        "moderator": UNREADABLE,
    }
    spec = SwarmSpec(
        architecture="debate", agents=DEBATERS, model=ScriptedChatModel(script), moderator=Agent(name="moderator"),
        options={"rounds": 2},
    )  # fmt: skip
    result = await start(spec)
    assert result.state["moderator_notes"] == ["round 1: the moderator's reply could not be read"]
    assert result.stop_reason == "consensus" and result.final_answer == "42"


async def test_a_competitive_judge_whose_reply_cannot_be_read_leaves_the_entries_vote():
    agents = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
    script = {"r1": ["Final answer: 41"], "r2": ["Final answer: 42"], "r3": ["Final answer: 42"], "judge": UNREADABLE}
    result = await start(SwarmSpec(architecture="competitive", agents=agents, model=ScriptedChatModel(script)))
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "no_answer"
    assert {r["rationale"] for r in result.state["ranking"]} == {"the judge's reply could not be read"}
    assert len(calls_of(result, "judge")) == len(UNREADABLE)


async def test_a_leader_whose_plan_cannot_be_read_gives_every_worker_the_objective_and_their_vote_stands():
    workers = [Agent(name="w1"), Agent(name="w2"), Agent(name="w3")]
    script = {
        "leader": [*UNREADABLE, *UNREADABLE],  # neither the plan nor the review can be read
        "w1": ["17 + 25 = 42. Final answer: 42"],
        "w2": ["Final answer: 41"],
        "w3": ["The answer is 42."],
    }
    model = ScriptedChatModel(script)
    options = {**PLANNED, "max_rounds": 1}
    spec = SwarmSpec(architecture="hierarchical", agents=workers, model=model, options=options)
    result = await start(spec)
    tasks = result.state["tasks"]
    assert [(t["worker"], t["assigned_by"]) for t in tasks] == [
        ("w1", "everyone"),
        ("w2", "everyone"),
        ("w3", "everyone"),
    ]
    assert all(QUESTION in c.prompt for c in model.calls_for("w1"))
    assert result.final_answer == "42"
    check = result.state["verdict_check"]
    assert check["fell_back"] and check["reason"] == "no_answer" and check["votes"] == 2
    assert result.state["reviews"][-1]["feedback"] == "the leader's review could not be read"
    assert len(calls_of(result, "leader")) == 2 * len(UNREADABLE)
    model.assert_complete()


async def test_a_leader_whose_plan_cannot_be_read_still_consolidates_its_workers_answers():
    workers = [Agent(name="w1"), Agent(name="w2"), Agent(name="w3")]
    review = {"answer": "42", "approved": True, "feedback": ""}
    script = {"leader": [*UNREADABLE, review], "w1": ["Final answer: 41"], "w2": ["42"], "w3": ["I am not sure."]}
    model = ScriptedChatModel(script)
    result = await start(SwarmSpec(architecture="hierarchical", agents=workers, model=model, options=PLANNED))
    assert result.final_answer == "42" and result.stop_reason == "approved"
    assert not result.state["verdict_check"]["fell_back"]  # checked against the vote, and kept


async def test_a_leader_whose_review_cannot_be_read_over_different_tasks_leaves_the_results():
    workers = [Agent(name="w1"), Agent(name="w2")]
    plan = {"tasks": [{"title": "research", "worker": "w1"}, {"title": "write", "worker": "w2"}]}
    script = {"leader": [plan, *UNREADABLE], "w1": ["three competitors"], "w2": ["<html>"]}
    spec = SwarmSpec(
        architecture="hierarchical", agents=workers, model=ScriptedChatModel(script), options={"max_rounds": 1}
    )
    result = await start(spec, "Build a site")
    assert result.final_answer == "### research (w1)\nthree competitors\n\n### write (w2)\n<html>"
    assert result.state.get("verdict_check") is None and result.stop_reason == "max_rounds"


async def test_a_particle_judge_whose_reply_cannot_be_read_leaves_the_vote():
    particles = [Agent(name="p1"), Agent(name="p2"), Agent(name="p3")]
    script = {"p1": ["Final answer: 41"], "p2": ["Final answer: 42"], "p3": ["Final answer: 42"], "judge": UNREADABLE}
    options = {"embeddings": KeywordEmbeddings(), "iterations": 1}
    result = await start(
        SwarmSpec(architecture="particle", agents=particles, model=ScriptedChatModel(script), options=options)
    )
    assert [p["fitness"] for p in result.state["scored"]] == [0.0, 0.0, 0.0]
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "overruled_majority"


# -- the rules themselves ---------------------------------------------------------


def vote(*answers: str):
    return count_votes([make_ballot(f"a{i}", text) for i, text in enumerate(answers)])


@pytest.mark.parametrize(
    ("verdict", "reason", "expected", "fell_back"),
    [
        ("42", "", "42", False),
        (None, "", "42", True),
        ("I cannot answer that.", "because", "42", True),
        ("40", "", "40", False),  # 2 of 4 is no clear majority
    ],
)
def test_check_verdict_rules(verdict, reason, expected, fell_back):
    check = check_verdict(verdict, vote("42", "42", "40", "I don't know"), reason=reason)
    assert (check["answer"], check["fell_back"]) == (expected, fell_back)


def test_one_agent_is_no_majority_to_overrule():
    assert not check_verdict("the site", vote("three competitors"))["fell_back"]


def test_a_sentence_more_than_twice_as_long_as_the_votes_answer_is_no_answer():
    """Seen on the real model: the agents' vote "day 24 hours" (3 words) and a verdict
    that reads as 8 words naming none of the agents' answers."""
    question = "How many days are in a week?"
    answers = ["A day is 24 hours in a week.", "I am not sure what you mean, let me think about it"]
    table = count_votes([make_ballot(f"a{i}", text, question=question) for i, text in enumerate(answers)])
    check = check_verdict(
        "4, the last answer you provided is incorrect. You should have said", table, question=question
    )
    assert check["fell_back"] and check["answer"] == "A day is 24 hours in a week."


@pytest.mark.parametrize(
    ("verdict", "answer", "fell_back"),
    [
        ("Tokyo, a big modern city in Asia.", "Tokyo", False),  # names one answer: the agents' wording
        ("A big modern city in Asia.", "Tokyo", True),  # names none: the vote stands
        ("Tokyo, Japan.", "Tokyo, Japan.", False),  # not long-winded: kept as it is
    ],
)
def test_a_five_word_sentence_where_the_agents_answered_in_one_word_is_read_for_their_answer(
    verdict, answer, fell_back
):
    """A judge answering in a short sentence where the agents' vote is one word (debates
    over llama-cpp-python's server did; sentences of up to six words were kept whole)."""
    question = "What is the capital of Japan?"
    table = count_votes(
        [make_ballot(n, text, question=question) for n, text in zip("abc", ["Tokyo", "tokyo.", "Kyoto"])]
    )
    check = check_verdict(verdict, table, question=question, reason="the agents agree")
    assert (check["answer"], check["fell_back"]) == (answer, fell_back)


def test_best_supported_prefers_more_votes_then_no_tie_then_the_earlier_round():
    assert best_supported([vote("1", "1", "2"), vote("3", "4", "5")]) == 0
    assert best_supported([vote("1", "2", "3"), vote("3", "3", "5")]) == 1
    assert best_supported([vote("1", "1", "2"), vote("3", "3", "5")]) == 0
    assert best_supported([vote("1", "2"), vote("")]) == 0
    assert best_supported([vote(""), vote("")]) is None


async def test_a_competitive_judge_picking_a_rambling_entry_for_a_short_answer_question_gives_way():
    agents = [Agent(name="r1"), Agent(name="r2"), Agent(name="r3")]
    scores = {"scores": [{"candidate": 1, "score": 9, "rationale": "very thorough"}]}
    model = ScriptedChatModel(
        {"r1": [RAMBLING], "r2": ["Final answer: 42"], "r3": ["Final answer: 41"], "judge": [scores]}
    )
    result = await start(SwarmSpec(architecture="competitive", agents=agents, model=model))
    assert result.state["winner"] == "r1"
    assert result.final_answer == "42"  # the tied vote's first answer: at least an answer
    assert result.state["verdict_check"]["reason"] == "no_answer"


# --- answers read as the question asked them ----------------------------------------


async def test_a_split_debate_whose_judge_answers_in_words_gives_way_to_the_agents_number():
    # No majority to overrule, but the agents answered with numbers and the judge with none.
    split = {"ann": ["17 + 25 = 42"], "ben": ["The answer is: 32"], "cat": ["Your answer will appear soon."]}
    verdict = "Your order will appear next to your confirmation."
    result = await debate({**split, "judge": [{"answer": verdict, "reason": "it reads well"}]})
    assert result.final_answer == "42"
    check = result.state["verdict_check"]
    assert check["fell_back"] and check["reason"] == "no_answer" and check["vote_label"] == "42"


async def test_a_judge_picking_an_agents_sentence_over_the_agents_numbers_gives_way():
    split = {"ann": ["42"], "ben": ["It is a fun one to explain in detail."], "cat": ["43"]}
    pick = "It is a fun one to explain in detail."
    result = await debate({**split, "judge": [{"answer": pick, "reason": "the most thorough"}]})
    assert result.final_answer == "42"
    assert result.state["verdict_check"]["reason"] == "no_answer"


async def test_a_judge_may_pick_any_agents_answer_where_they_answered_in_words():
    split = {"ann": ["Paris"], "ben": ["It depends on the century"], "cat": ["Lyon"]}
    pick = "It depends on the century"
    spec = SwarmSpec(
        architecture="debate", agents=DEBATERS, judge=Agent(name="judge"), options={"rounds": 1},
        model=ScriptedChatModel({**split, "judge": [{"answer": pick, "reason": "the capital moved"}]}),
    )  # fmt: skip
    result = await start(spec, "What is the capital of France?")
    assert result.final_answer == pick
    assert not result.state["verdict_check"]["fell_back"]


async def test_a_verdict_that_is_no_option_gives_way_to_the_agents_letter():
    question = "Which of these is a fruit? A) car B) apple C) chair D) rock. Answer with the letter."
    split = {"ann": ["B) apple"], "ben": ["Apple"], "cat": ["A"]}
    spec = SwarmSpec(
        architecture="debate", agents=DEBATERS, judge=Agent(name="judge"), options={"rounds": 1},
        model=ScriptedChatModel({**split, "judge": [{"answer": "{round1}", "reason": "see above"}]}),
    )  # fmt: skip
    result = await start(spec, question)
    assert result.final_answer == "B) apple"
    check = result.state["verdict_check"]
    assert check["reason"] == "no_answer" and check["vote_label"] == "b" and check["votes"] == 2


async def test_a_tie_goes_to_an_answer_rather_than_to_a_ramble():
    table = count_votes([make_ballot("ann", RAMBLING), make_ballot("ben", "108"), make_ballot("cat", "42")])
    assert table["tie"] and table["winner"] == "108"
    assert [cluster["answers"][0] for cluster in table["clusters"]][-1] == RAMBLING


async def test_a_collaborative_vote_counts_sentences_that_repeat_the_question_as_one_answer():
    answers = {
        "ann": ["The capital of France is Paris."],
        "ben": ["Lyon"],
        "cat": ["Paris is the capital of France."],
    }
    spec = SwarmSpec(architecture="collaborative", agents=DEBATERS, model=ScriptedChatModel(answers))
    result = await start(spec, "What is the capital of France?")
    assert result.final_answer == "The capital of France is Paris."
    assert result.state["votes"][-1]["counts"] == {"paris": 2.0, "lyon": 1.0}
