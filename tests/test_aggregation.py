"""Counted votes over real LLM answers: extraction, normalisation, clustering, ties."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from graphswarm.aggregation import (
    TieBreak,
    VoteMethod,
    agreement,
    count_votes,
    extract_answer,
    make_ballot,
    normalize,
)
from graphswarm.errors import ConfigError
from graphswarm.testing import KeywordEmbeddings


def ballots(*outputs: str) -> list:
    """One ballot per output, from agents a, b, c, ... in order."""
    return [make_ballot(chr(ord("a") + i), output) for i, output in enumerate(outputs)]


# --- plurality --------------------------------------------------------------------


def test_plurality_counts_one_vote_per_ballot_on_normalised_answers():
    table = count_votes(ballots("Paris", "Berlin", "paris."))

    assert table["method"] == "plurality"
    assert table["counts"] == {"paris": 2.0, "berlin": 1.0}
    assert table["winner"] == "paris"
    assert table["winning_answer"] == "Paris"
    assert table["clusters"][0]["agents"] == ["a", "c"]
    assert table["clusters"][0]["answers"] == ["Paris", "paris."]
    assert table["tie"] is False


def test_answers_in_different_forms_count_as_one_vote():
    table = count_votes(ballots("**Final Answer:** $1,000", "1000.0", "#### 1,000", "999"))

    assert table["counts"] == {"1000": 3.0, "999": 1.0}


def test_vote_table_is_plain_json_for_graph_state():
    table = count_votes(ballots("yes", "no", "I don't know"))

    assert json.loads(json.dumps(table)) == table


# --- normalisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("PARIS", "paris"),
        ("  New   York\n City ", "new york city"),
        ("Paris.", "paris"),
        ('"Paris"', "paris"),
        ("“Paris”!", "paris"),
        ("(B)", "b"),
        ("1,000", "1000"),
        ("1000.0", "1000"),
        ("$1,000", "1000"),
        ("$1,000.00", "1000"),
        ("42.50", "42.5"),
        ("-3.0", "-3"),
        (".5", "0.5"),
        ("50%", "50%"),
        ("50.0 %", "50%"),
        ("The answer is 42.", "42"),
        ("It is $1,000.", "1000"),
        ("= 7", "7"),
        ("42 apples", "42 apples"),
        ("The answer is Paris", "the answer is paris"),
        ("The sum of 17 and 25 is 42.", "42"),
        ("17 + 25 equals 1,000", "1000"),
        ("it is not 42", "it is not 42"),
        ("the answer is 42 or 43", "the answer is 42 or 43"),
        ("Yes", "yes"),
        ("y", "yes"),
        ("TRUE", "yes"),
        ("Correct.", "yes"),
        ("affirmative", "yes"),
        ("No.", "no"),
        ("n", "no"),
        ("false", "no"),
        ("Incorrect", "no"),
        ("negative", "no"),
    ],
)
def test_normalize(answer, label):
    assert normalize(answer) == label


# --- extraction -------------------------------------------------------------------


class Verdict(BaseModel):
    answer: str
    confidence: float = 0.5


@pytest.mark.parametrize(
    ("output", "answer"),
    [
        ('Here is my reply:\n```json\n{"answer": "Paris", "reasoning": "capital"}\n```', "Paris"),
        ('{"final_answer": 42}', "42"),
        ("Let me think. 6 * 7 = 42, so\n\n**Final Answer:** 42", "42"),
        ("First guess.\nAnswer: 41\nOn reflection:\nFinal answer: 42", "42"),
        ("Ann is right. Final answer: 42", "42"),
        ("So the final answer is 42.", "42."),
        ("My answer: maybe 41, but the final answer is: **42**", "42"),
        ("The question's answer: unclear", "The question's answer: unclear"),
        ("Working...\n**Final Answer:**\n\n`42`", "42"),
        ("### Final Answer: **Paris**", "Paris"),
        ("Natalia sold 48 clips in April and 24 in May.\n#### 72", "72"),
        ("#### Step 1: read the question\nIt is 5", "Step 1: read the question\nIt is 5"),
        ("- **Paris**", "Paris"),
        ('"Paris"', "Paris"),
    ],
)
def test_extract_answer_from_model_text(output, answer):
    assert extract_answer(output) == answer


def test_extract_answer_from_a_dict():
    assert extract_answer({"answer": "Paris", "confidence": 0.9}) == "Paris"


def test_extract_answer_from_a_pydantic_object():
    assert extract_answer(Verdict(answer="Paris")) == "Paris"


def test_extract_answer_from_a_tool_call_message():
    message = AIMessage(content="", tool_calls=[{"name": "Verdict", "args": {"answer": "Paris"}, "id": "1"}])

    assert extract_answer(message) == "Paris"


def test_a_structured_value_without_an_answer_field_abstains():
    assert extract_answer({"reasoning": "hmm"}) is None


@pytest.mark.parametrize(
    "output",
    [
        None,
        "",
        "   \n ",
        "I cannot help with that request.",
        "I can’t help with that.",
        "I'm sorry, but I can't determine that.",
        "As an AI language model, I have no opinion.",
        "I don't know.",
        "**I do not know.**",
        "Unable to answer without more context.",
        {"answer": None},
        {"answer": "I don't know"},
    ],
)
def test_refusals_and_empty_outputs_are_abstentions(output):
    assert extract_answer(output) is None


def test_abstentions_are_listed_not_counted():
    table = count_votes(ballots("42", "I'm sorry, but I cannot answer that.", "41", "42", ""))

    assert table["abstentions"] == ["b", "e"]
    assert table["counts"] == {"42": 2.0, "41": 1.0}
    assert table["agreement"] == pytest.approx(2 / 3)


def test_an_answer_of_only_punctuation_is_an_abstention():
    ballot = make_ballot("a", "...")

    assert ballot["answer"] is None and ballot["label"] is None


# --- semantic clustering ----------------------------------------------------------


def test_semantic_voting_groups_paraphrases_apart_from_other_answers():
    table = count_votes(
        ballots("Paris is the capital of France", "Berlin", "The capital of France is Paris"),
        method=VoteMethod.SEMANTIC,
        embeddings=KeywordEmbeddings(),
    )

    assert table["counts"] == {"paris is the capital of france": 2.0, "berlin": 1.0}
    assert table["clusters"][0]["answers"] == ["Paris is the capital of France", "The capital of France is Paris"]
    assert table["winning_answer"] == "Paris is the capital of France"


def test_semantic_voting_embeds_all_distinct_labels_in_one_batch():
    embeddings = KeywordEmbeddings()

    count_votes(ballots("Paris", "paris", "Berlin", "PARIS."), method="semantic", embeddings=embeddings)

    assert embeddings.calls == [["paris", "berlin"]]


def test_threshold_decides_how_close_answers_must_be():
    answers = ballots("Paris", "Paris is the capital of France")  # cosine 1/sqrt(3) ≈ 0.58
    embeddings = KeywordEmbeddings()

    strict = count_votes(answers, method="semantic", embeddings=embeddings, threshold=0.85)
    loose = count_votes(answers, method="semantic", embeddings=embeddings, threshold=0.5)

    assert len(strict["clusters"]) == 2
    assert loose["counts"] == {"paris": 2.0}


# --- weighted ---------------------------------------------------------------------


def test_weights_change_the_winner():
    votes = [make_ballot("a", "Paris"), make_ballot("b", "Paris"), make_ballot("expert", "Lyon", weight=3.0)]

    assert count_votes(votes)["winner"] == "paris"
    assert count_votes(votes, method=VoteMethod.WEIGHTED)["counts"] == {"lyon": 3.0, "paris": 2.0}


def test_confidences_change_the_winner():
    votes = [
        make_ballot("a", "Paris", confidence=0.2),
        make_ballot("b", "Paris", confidence=0.3),
        make_ballot("c", "Lyon", confidence=0.9),
    ]

    table = count_votes(votes, method="weighted")

    assert table["winner"] == "lyon"
    assert table["counts"] == {"lyon": 0.9, "paris": 0.5}
    assert table["margin"] == pytest.approx(0.4)


# --- ties -------------------------------------------------------------------------


def test_tie_with_first_picks_the_first_appearing_answer():
    table = count_votes(ballots("Berlin", "Paris", "paris", "berlin"), tie_break=TieBreak.FIRST)

    assert table["winner"] == "berlin"
    assert table["tie"] is True
    assert table["tied"] == ["berlin", "paris"]
    assert table["margin"] == 0.0


@pytest.mark.parametrize("tie_break", [TieBreak.JUDGE, "new_round"])
def test_tie_with_judge_or_new_round_leaves_the_choice_to_the_graph(tie_break):
    table = count_votes(ballots("Berlin", "Paris", "paris", "berlin", "Rome"), tie_break=tie_break)

    assert table["winner"] is None
    assert table["winning_answer"] is None
    assert table["tie"] is True
    assert table["tied"] == ["berlin", "paris"]
    assert table["agreement"] == pytest.approx(0.4)


def test_weighted_votes_that_add_up_equal_are_a_tie():
    votes = [
        make_ballot("a", "Lyon", weight=0.1),
        make_ballot("b", "Lyon", weight=0.2),
        make_ballot("c", "Nice", weight=0.3),
    ]

    assert count_votes(votes, method="weighted", tie_break="judge")["tied"] == ["lyon", "nice"]


# --- margin and agreement ---------------------------------------------------------


def test_margin_and_agreement():
    table = count_votes(ballots("42", "42", "42", "41", "40"))

    assert table["margin"] == 2.0
    assert table["agreement"] == pytest.approx(0.6)


def test_unanimous_vote_has_full_agreement_and_a_margin_of_all_its_votes():
    table = count_votes(ballots("42", "42.0", "#### 42"))

    assert table["agreement"] == 1.0
    assert table["margin"] == 3.0  # 3 of 3: the runner-up has none


def test_margin_is_winner_minus_runner_up_and_abstentions_are_no_votes():
    assert count_votes(ballots("42", "42", "I don't know"))["margin"] == 2.0
    assert count_votes(ballots(*["42"] * 40))["margin"] == 40.0
    assert count_votes(ballots("a", "b", "c"), tie_break="first")["margin"] == 0.0  # a tie has no margin
    assert count_votes(ballots("a", "b"), tie_break="judge")["margin"] == 0.0
    assert count_votes(ballots("", "I don't know"))["margin"] == 0.0


def test_agreement_shortcut_for_early_stopping():
    assert agreement(ballots("yes", "True", "no", "correct")) == 0.75


def test_all_abstain_has_no_winner_and_no_tie():
    table = count_votes(ballots("", "I don't know", "As an AI, I cannot say."))

    assert table["winner"] is None
    assert table["agreement"] == 0.0
    assert table["tie"] is False
    assert table["clusters"] == []
    assert table["abstentions"] == ["a", "b", "c"]


# --- configuration errors ---------------------------------------------------------


def test_unknown_method_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"^unknown aggregation method 'x' \(use one of: plurality, semantic, weighted\)$"
    ):
        count_votes([], method="x")


def test_unknown_tie_break_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^unknown tie-break 'coin' \(use one of: first, judge, new_round\)$"):
        count_votes([], tie_break="coin")


@pytest.mark.parametrize("threshold", [0, -0.5, 1.5])
def test_threshold_outside_zero_to_one_is_a_config_error(threshold):
    with pytest.raises(ConfigError, match=rf"^threshold {threshold} is outside \(0, 1\]$"):
        count_votes([], threshold=threshold)


def test_semantic_voting_without_embeddings_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^semantic voting needs embeddings: pass embeddings="):
        count_votes(ballots("Paris"), method="semantic")


@pytest.mark.parametrize(
    ("weight", "confidence", "message"), [(-1.0, None, "weight -1.0"), (1.0, 1.5, "confidence 1.5")]
)
def test_bad_weight_or_confidence_is_a_config_error(weight, confidence, message):
    with pytest.raises(ConfigError, match=message):
        make_ballot("a", "Paris", weight=weight, confidence=confidence)


@pytest.mark.parametrize(
    "text, answer",
    [
        ("17 + 25 = 34\nThe answer is 34.", "34"),
        ("17 + 25 = 42.", "42"),
        ("The answer is Paris.", "paris"),
    ],
)
def test_small_model_habits_still_give_the_answer(text, answer):
    assert normalize(extract_answer(text)) == answer


# --- answers read against the question ---------------------------------------------

CAPITAL = "What is the capital of France?"
FRUIT = "Which of these is a fruit? A) car B) apple C) chair D) rock. Answer with the letter."


@pytest.mark.parametrize(
    ("question", "answer", "label"),
    [
        (CAPITAL, "The capital of France is Paris.", "paris"),
        (CAPITAL, "Paris is the capital of France", "paris"),
        (CAPITAL, "Paris", "paris"),
        (CAPITAL, "The capital of France is the capital of France.", "the capital of france is the capital of france"),
        ("How many legs does a spider have?", "A spider has 8 legs.", "8"),
        ("Is the sky blue?", "Yes, the sky is blue.", "yes"),
        (FRUIT, "B", "b"),
        (FRUIT, "(B)", "b"),
        (FRUIT, "B) apple", "b"),
        (FRUIT, "The answer is B.", "b"),
        (FRUIT, "Answer: b) Apple is a fruit", "b"),
        (FRUIT, "Apple.", "b"),
        (FRUIT, "An apple is a fruit", "b"),
        (FRUIT, "apple or car", "apple or car"),
        (FRUIT, "A fruit grows on trees", "grows trees"),
        # Of several clauses, the one that answers what was asked.
        ("What is the capital of Japan?", "The capital of Japan is Tokyo, known for its culture.", "tokyo"),
        ("What is the capital of Spain?", "In my time, I was a1. The capital of Spain is Madrid.", "madrid"),
        ("What is 19 + 12?", "19 + 12 = 32\nA quick online math operation.", "32"),
        (CAPITAL, "Paris, France", "paris"),
        (
            "What is 17 + 25?",
            "Well, this is a question about numbers in general.",
            "well question about numbers general",
        ),
    ],
)
def test_answers_are_read_against_the_question(question, answer, label):
    assert normalize(answer, question) == label


def test_a_long_answer_is_not_read_against_the_question():
    question = "Plan the launch of a small bakery's website"
    plan = "To plan the launch of a small bakery's website, start with the menu. " + "Then test every page. " * 10
    assert normalize(plan, question) == normalize(plan)  # a plan, not a stated answer: all of it counts


def test_an_answer_line_ends_with_its_sentence():
    assert extract_answer("The answer is 3. This is because a triangle has three corners.") == "3"
    assert extract_answer("Final answer: B. Apple is a fruit") == "B"
    assert extract_answer("Final answer: 3.5 apples") == "3.5 apples"


def test_sentences_that_repeat_the_question_vote_together():
    answers = ["The capital of France is Paris.", "Paris.", "Paris is the capital of France", "Lyon"]
    without = count_votes([make_ballot(f"a{i}", text) for i, text in enumerate(answers)])
    read = count_votes([make_ballot(f"a{i}", text, question=CAPITAL) for i, text in enumerate(answers)])
    assert without["counts"] == dict.fromkeys(without["counts"], 1.0)  # four different labels
    assert read["counts"] == {"paris": 3.0, "lyon": 1.0}
    assert read["winning_answer"] == "The capital of France is Paris."


def test_options_are_lettered_only_when_the_question_lists_them():
    assert normalize("B", "Which of these is a fruit?") == "b"
    assert normalize("Apple", "Which of these is a fruit?") == "apple"
    assert normalize("a", FRUIT) == "a"
