"""Counted votes over real LLM answers.

Asking a model to "reach consensus" is not a vote. Here every agent's output becomes a
`Ballot`: its answer is extracted from what the model actually said (a structured
value, JSON in the text, a "Final answer:" line, or the whole text), refusals become
abstentions, and the answer is normalised into a label so "1,000" and "1000.0" are the
same vote. `count_votes` groups the ballots into clusters (exact labels, embedding
similarity, or weighted) and returns a `VoteTable` of plain JSON-like values that can
go straight into graph state.

Example:
    >>> from graphswarm.aggregation import count_votes, make_ballot
    >>> ballots = [make_ballot("a", "**Final Answer:** 1,000"), make_ballot("b", "1000.0"),
    ...            make_ballot("c", "#### 999")]
    >>> table = count_votes(ballots)
    >>> table["winner"], table["agreement"]
    ('1000', 0.6666666666666666)
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from pydantic import BaseModel
from typing_extensions import TypedDict

from graphswarm.errors import ConfigError

# The lenient JSON finder of structured output: fences and chatter around the JSON.
from graphswarm.structured import _json_candidates

__all__ = [
    "VoteMethod",
    "TieBreak",
    "Ballot",
    "Cluster",
    "VoteTable",
    "REFUSAL_PREFIXES",
    "ANSWER_FIELDS",
    "YES_FORMS",
    "NO_FORMS",
    "NUMBER_PREFIXES",
    "SENTENCE_WORDS",
    "FILLER_WORDS",
    "QUESTION_READ_WORDS",
    "extract_answer",
    "normalize",
    "make_ballot",
    "count_votes",
    "agreement",
    "cosine",
    "FallbackReason",
    "VerdictCheck",
    "LONG_WINDED_WORDS",
    "check_verdict",
    "best_supported",
    "clear_majority",
    "answered_in_form",
    "is_question",
]


class VoteMethod(StrEnum):
    """How ballots are grouped into clusters and counted."""

    PLURALITY = "plurality"
    """One vote per ballot; ballots agree when their normalised labels are equal."""
    SEMANTIC = "semantic"
    """One vote per ballot; labels whose embeddings are within the threshold agree."""
    WEIGHTED = "weighted"
    """Like plurality, but a ballot counts `weight × confidence` (confidence defaults to 1)."""


class TieBreak(StrEnum):
    """What to do when several clusters share the most votes."""

    FIRST = "first"
    """The tied cluster whose first ballot came first in ballot order wins; a long-winded
    answer (`LONG_WINDED_WORDS`) wins a tie only when every tied answer is."""
    JUDGE = "judge"
    """No winner: the calling graph asks its judge to choose among `tied`."""
    NEW_ROUND = "new_round"
    """No winner: the calling graph runs another round."""


class Ballot(TypedDict):
    """One agent's vote."""

    agent: str
    answer: str | None
    """The extracted answer as the agent gave it; None when the agent abstained."""
    label: str | None
    """The normalised answer that is compared; None when the agent abstained."""
    weight: float
    """How much this agent's vote counts under weighted voting."""
    confidence: float | None
    """The agent's own confidence in [0, 1], if it gave one (weighted voting)."""


class Cluster(TypedDict):
    """Ballots that agree, and the votes they carry."""

    label: str
    """The label of the cluster's first ballot."""
    agents: list[str]
    answers: list[str]
    """The raw answers, in ballot order."""
    votes: float


class VoteTable(TypedDict):
    """The counted vote: every ballot, every cluster and the outcome."""

    method: str
    """The `VoteMethod` value used."""
    ballots: list[Ballot]
    clusters: list[Cluster]
    """Most votes first; among equal votes, answers that are not long-winded first, then
    the order of their first ballot."""
    counts: dict[str, float]
    """Votes per cluster label, in the order of `clusters`."""
    winner: str | None
    """The winning label; None when all abstained or a tie is left to the caller."""
    winning_answer: str | None
    """The first raw answer of the winning cluster."""
    margin: float
    """Winner's votes minus the runner-up's (none: 0), so a unanimous vote's margin is all
    its votes (3 of 3 -> 3); 0.0 for a tie or no winner."""
    agreement: float
    """Share of the non-abstaining votes held by the largest cluster (0.0 if none)."""
    abstentions: list[str]
    """Agents whose output held no answer (empty, or a refusal)."""
    tie: bool
    """Several clusters share the most votes (also when `TieBreak.FIRST` broke the tie)."""
    tied: list[str]
    """The labels of the tied clusters, in cluster order."""


REFUSAL_PREFIXES: tuple[str, ...] = (
    "i cannot help",
    "i can't help",
    "i can not help",
    "i cannot answer",
    "i can't answer",
    "i'm sorry, but",
    "i am sorry, but",
    "sorry, but i",
    "as an ai",
    "i don't know",
    "i do not know",
    "unable to answer",
    "i'm unable to answer",
    "i am unable to answer",
)
"""An output starting with one of these (lowercased, markdown stripped) is an abstention."""

ANSWER_FIELDS: tuple[str, ...] = ("answer", "final_answer")
"""Fields of a structured value (or of JSON in text) that hold the answer, in order."""

YES_FORMS = frozenset({"yes", "y", "true", "correct", "affirmative"})
NO_FORMS = frozenset({"no", "n", "false", "incorrect", "negative"})

NUMBER_PREFIXES: tuple[str, ...] = ("the final answer is", "the answer is", "answer is", "it is", "it's", "=")
"""Filler dropped before a number ("The answer is 42." -> "42"); only when a number follows."""

SENTENCE_WORDS = 16
"""The longest answer whose final stated number is taken as the answer (`normalize` rule 5)."""

QUESTION_READ_WORDS = 40
"""The longest answer, in words, that `normalize` rule 7 reads against the question."""

# fmt: off
FILLER_WORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "has", "have", "there", "it", "its", "it's", "of", "this", "that",
    "to", "in", "on", "at", "by", "for", "with", "and", "or", "as",
    "answer", "final", "correct", "right", "option", "choice", "letter",
    "what", "which", "who", "whom", "whose", "how", "many", "much", "when", "where", "why",
})
"""Words dropped, with the question's own words, from a sentence answer (`normalize` rule 7)."""
# fmt: on

_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})
_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("`", "`"))
_LEADING_MARKERS = re.compile(r"^(?:(?:[-*+>]|#{1,6})\s+)+")
_FENCE_OPENER = re.compile(r"```[\w-]*")
_ANSWER_LINE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer(?:\s+is\b\s*:?|\s*:)\s*(?P<value>.*)$", re.IGNORECASE)
# Small models often end on a worked sum ("17 + 25 = 42."): its result is the answer.
_RESULT_LINE = re.compile(r"^[^=]*=\s*(?P<value>[-+]?[$€£]?\d[\d,]*(?:\.\d+)?%?)\s*\.?\s*$")
# Models often end a sentence with it ("Ann is right. Final answer: 42"); the greedy
# prefix takes the last marker on the line. A bare "answer:" mid-sentence is too vague.
_FINAL_ANSWER_IN_LINE = re.compile(r"^.*\bfinal\s+answer(?:\s+is\b\s*:?|\s*:)\s*(?P<value>.*)$", re.IGNORECASE)
# GSM8K puts the answer after "####"; only a number, since "#### Step 1" is a heading.
_SENTENCE_END = re.compile(r"(?<=\S)[.!?]\s+(?=[A-Z])")
_GSM8K_LINE = re.compile(r"^\s*####\s*(?P<value>[-+]?[$€£]?[-+]?\d[\d,]*(?:\.\d+)?%?)\s*\.?\s*$")
_NUMBER = re.compile(
    r"(?P<sign>[-+]?)[$€£]?\s?(?P<sign2>[-+]?)"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"\s?(?P<percent>%?)"
)
# "the sum of 17 and 25 is 42": the number stated last, after a verb or "=".
_STATED_NUMBER = re.compile(r"^.*(?:\b(?:is|equals|makes|gives)\b|=)\s*(?P<value>[-+]?[$€£]?\s?[-+]?[\d.,]+\s?%?)$")
# Decimals (".5") and signs ("-5") start with punctuation, so the two ends differ.
_LEADING_PUNCT = "\"'`*,;:!? "
_TRAILING_PUNCT = "\"'`*.,;:!? "

E = TypeVar("E", bound=StrEnum)

# --- extraction -----------------------------------------------------------------


def extract_answer(output: str | Mapping[str, Any] | BaseModel | BaseMessage | None) -> str | None:
    """The answer in one agent's output, or None when the agent abstained.

    - a dict or pydantic object: its `answer` (else `final_answer`) field; no such field
      or a null value is an abstention;
    - a chat message: its text (or its first tool call's arguments when it has no text);
    - text: the `answer` field of JSON in it (fenced or not), else the LAST final-answer
      line (`Final answer: X`, `**Final Answer:** X`, `Answer: X`, `The answer is X`,
      `#### 42`; markdown tolerated, the answer may be on the next line; `final answer:` and
      `final answer is X` also count after other words on the line, `Answer:` only at
      its start, `####` only before a number), else the result of a last line like
      `17 + 25 = 42`, else the whole text with markdown
      stripped (`**`, backticks, code fences, leading `-`/`*`/`>`/`#` markers,
      surrounding quotes);
    - empty output, or output starting with a `REFUSAL_PREFIXES` phrase, is an abstention.
    """
    if output is None:
        return None
    if isinstance(output, BaseMessage):
        return _from_message(output)
    if isinstance(output, BaseModel):
        return _from_fields(output.model_dump())
    if isinstance(output, Mapping):
        return _from_fields(output)
    return _from_text(str(output))


def _from_message(message: BaseMessage) -> str | None:
    calls = getattr(message, "tool_calls", None)
    if not message.content and calls:
        # Structured output by tool call: the arguments are the structured value.
        return _from_fields(calls[0].get("args", {}))
    return _from_text(str(message.text))


def _from_fields(data: Mapping[str, Any]) -> str | None:
    for field in ANSWER_FIELDS:
        if field in data:
            value = data[field]
            if value is None:
                return None
            return _clean(value if isinstance(value, str) else json.dumps(value, default=str))
    return None


def _from_text(text: str) -> str | None:
    if _is_refusal(text):
        return None
    for candidate in _json_candidates(text):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and any(field in data for field in ANSWER_FIELDS):
            return _from_fields(data)
    line = _last_answer_line(text)
    if line is None:
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        if match := _RESULT_LINE.match(_strip_markdown_line(last)):
            line = match["value"]
    return _clean(line if line is not None else text)


def _last_answer_line(text: str) -> str | None:
    lines = text.splitlines()
    found: str | None = None
    for index, line in enumerate(lines):
        value = _answer_on_line(line)
        if value == "":
            # "**Final Answer:**" alone on its line: the answer is the next non-empty line.
            value = next((rest for rest in lines[index + 1 :] if rest.strip()), "")
        if value and value.strip():
            found = value
    return found


def _answer_on_line(line: str) -> str | None:
    plain = _strip_markdown_line(line)
    if match := _FINAL_ANSWER_IN_LINE.match(plain) or _ANSWER_LINE.match(plain):
        # "The answer is 3. This is because ...": the answer ends with its sentence.
        return _SENTENCE_END.split(match["value"].strip(), maxsplit=1)[0]
    if match := _GSM8K_LINE.match(line):
        return match["value"]
    return None


def _strip_markdown_line(line: str) -> str:
    line = line.replace("**", "").replace("`", "").strip()
    return _LEADING_MARKERS.sub("", line).strip()


def _strip_markdown(text: str) -> str:
    text = _FENCE_OPENER.sub("", text)
    lines = (_strip_markdown_line(line) for line in text.splitlines())
    text = "\n".join(line for line in lines if line).strip().strip("*").strip()
    return _unquote(text.translate(_QUOTES))


def _unquote(text: str) -> str:
    for opener, closer in _QUOTE_PAIRS:
        if len(text) >= 2 and text.startswith(opener) and text.endswith(closer):
            return text[1:-1].strip()
    return text


def _clean(text: str) -> str | None:
    if _is_refusal(text):
        return None
    return _strip_markdown(text) or None


def _is_refusal(text: str) -> bool:
    head = _strip_markdown(text).lower().lstrip("\"' ")
    return not head or head.startswith(REFUSAL_PREFIXES)


# --- normalisation --------------------------------------------------------------


def normalize(answer: str, question: str | None = None) -> str:
    """The label two answers must share to count as the same vote.

    Rules, in order:

    1. Unicode NFKC, curly quotes made straight, lowercase, whitespace collapsed.
    2. Surrounding quotes, backticks, `*` and `,;:!?` stripped from both ends, a trailing
       period too (a leading `.`, `-` or `+` is kept: `.5`, `-5`); one pair of brackets
       around the whole answer is dropped (`(B)` -> `b`).
    3. Yes/no forms: `yes y true correct affirmative` -> `yes`,
       `no n false incorrect negative` -> `no` (the whole answer only).
    4. Numbers, when the whole answer is a number, possibly after one `NUMBER_PREFIXES`
       filler (`the answer is`, `it is`, `=` ...): thousands commas, a leading `$`/`€`/`£`
       and a `+` sign dropped, trailing zeros removed (`$1,000.00` -> `1000`,
       `42.50` -> `42.5`, `-0.0` -> `0`). A percentage keeps its `%` (`50.0 %` -> `50%`),
       because `50%`, `0.5` and `50` are not safely the same answer. Numbers with units
       or words (`42 apples`) stay text.
    5. A short sentence (at most `SENTENCE_WORDS` words) that ends by stating a number
       after `is`, `equals`, `makes`, `gives` or `=` is that number
       (`The sum of 17 and 25 is 42.` -> `42`; `it is not 42` stays text).

    With the `question` known (the architectures pass their objective):

    6. Multiple choice: when the question lists options (`A) car B) apple`, at least
       two, lettered from A), an answer that starts with an option's letter
       (`B`, `(b)`, `B) apple`, `Answer: B.`) or names exactly one option's text
       (`Apple.`) is that letter.
    7. A sentence answer (2 to `QUESTION_READ_WORDS` words: not a plan or an essay)
       loses the words it repeats from the question and the `FILLER_WORDS`, and rules
       3 to 5 apply to what is left (`The capital of France is Paris.` -> `paris` for
       "What is the capital of France?"). Of an answer in
       several clauses (ending at `. , ; ! ?` or a line break), only the first clause
       that repeats a word of the question (not a filler word) and says more is read
       (`The capital of Japan is Tokyo, known for its culture.` -> `tokyo`). When no
       word is left, the answer keeps its words.
    """
    lines = [
        " ".join(line.split()) for line in unicodedata.normalize("NFKC", answer).translate(_QUOTES).lower().splitlines()
    ]
    text = _strip_edges(" ".join(line for line in lines if line))
    label = _plain_label(text)
    if question and label == text:
        # Read line by line too: a line break ends a clause.
        label = _against_question(text, "\n".join(line for line in lines if line), _question(question)) or text
    return label


def _plain_label(text: str) -> str:
    """Rules 3 to 5 on a text that rules 1 and 2 have cleaned."""
    if text in YES_FORMS:
        return "yes"
    if text in NO_FORMS:
        return "no"
    number = _as_number(text)
    if number is None and len(text.split()) <= SENTENCE_WORDS and (match := _STATED_NUMBER.match(text)):
        number = _as_number(_strip_edges(match["value"]))
    return number if number is not None else text


# "A) car B) apple" or one option a line: a letter, then ")", "." or ":", after a space.
_OPTION_MARK = re.compile(r"(?:^|(?<=\s))\(?([A-Ha-h])[).:]\s+")
# An option's text ends at its sentence's end ("D) rock. Answer with the letter.").
_OPTION_END = re.compile(r"[.?!](?:\s|$)|\n")
_ANSWER_PREFIX = re.compile(
    r"^(?:the\s+)?(?:correct\s+|right\s+|best\s+|final\s+)?(?:answer|option|choice|letter)\b(?:\s+is)?\s*:?\s*"
)
_CLAUSE_END = re.compile(r"[.,;!?]\s|\n")
_LETTER_FIRST = re.compile(r"\(?([a-h])(?:[).:,]\s*.*)?")


class _Question(NamedTuple):
    """What rules 6 and 7 of `normalize` need from a question."""

    words: frozenset[str]
    options: dict[str, str]


@functools.lru_cache(maxsize=64)
def _question(question: str) -> _Question:
    return _Question(frozenset(_words(question.lower())), _options(question))


def _options(question: str) -> dict[str, str]:
    marks = list(_OPTION_MARK.finditer(question))
    letters = "".join(mark[1].lower() for mark in marks)
    if len(marks) < 2 or not "abcdefgh".startswith(letters):
        return {}
    options = {}
    for mark, after in zip(marks, [*marks[1:], None]):
        text = question[mark.end() : after.start() if after else len(question)]
        text = _OPTION_END.split(text, maxsplit=1)[0]
        options[mark[1].lower()] = _strip_edges(" ".join(text.lower().split()))
    return options


def _words(text: str) -> list[str]:
    stripped = (_strip_edges(word) for word in text.split())
    return [word for word in stripped if word]


def _against_question(text: str, lines: str, question: _Question) -> str | None:
    """Rules 6 and 7 on a cleaned answer (`text`, and its `lines`); None when they give nothing."""
    if question.options:
        answer = _ANSWER_PREFIX.sub("", text)
        if (match := _LETTER_FIRST.fullmatch(answer)) and match[1] in question.options:
            return match[1]
        named = [letter for letter, option in question.options.items() if option and _names(text, option)]
        if named:
            # Naming several options answers none of them: the text stays as it is.
            return named[0] if len(named) == 1 else None
    if not 2 <= len(_words(text)) <= QUESTION_READ_WORDS:
        return None  # a word, or a text too long to be a stated answer (a plan, an essay)
    for clause in _CLAUSE_END.split(lines):
        words = _words(clause)
        kept = [word for word in words if word not in question.words and word not in FILLER_WORDS]
        if kept and any(word in question.words and word not in FILLER_WORDS for word in words):
            return _plain_label(" ".join(kept))  # the clause that answers what was asked
    kept = [word for word in _words(text) if word not in question.words and word not in FILLER_WORDS]
    return _plain_label(" ".join(kept)) if kept else None


def _names(text: str, words: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(words)}(?!\w)", text) is not None


def _strip_edges(text: str) -> str:
    while True:
        stripped = text.lstrip(_LEADING_PUNCT).rstrip(_TRAILING_PUNCT)
        if len(stripped) >= 2 and (stripped[0], stripped[-1]) in (("(", ")"), ("[", "]")):
            inner = stripped[1:-1]
            if not any(c in inner for c in "()[]"):
                stripped = inner.strip()
        if stripped == text:
            return text
        text = stripped


def _as_number(text: str) -> str | None:
    candidates = [text] + [_strip_edges(text[len(prefix) :]) for prefix in NUMBER_PREFIXES if text.startswith(prefix)]
    for candidate in candidates:
        if match := _NUMBER.fullmatch(candidate):
            return _canonical_number(match)
    return None


def _canonical_number(match: re.Match[str]) -> str:
    value = Decimal(match["digits"].replace(",", ""))
    if "-" in match["sign"] + match["sign2"]:
        value = -value
    text = "0" if value == 0 else format(value.normalize(), "f")
    return text + match["percent"]


# --- ballots and counting -------------------------------------------------------


def make_ballot(
    agent: str,
    output: str | Mapping[str, Any] | BaseModel | BaseMessage | None,
    *,
    weight: float = 1.0,
    confidence: float | None = None,
    question: str | None = None,
) -> Ballot:
    """One agent's ballot: its answer extracted from `output` and normalised (against
    the `question` when given: `normalize` rules 6 and 7).

    An answer that normalises to nothing (only punctuation) is an abstention too.
    Raises ConfigError for a negative weight or a confidence outside [0, 1].
    """
    _check_weight(agent, weight, confidence)
    answer = extract_answer(output)
    label = normalize(answer, question) if answer is not None else None
    if not label:
        answer = label = None
    return Ballot(
        agent=agent,
        answer=answer,
        label=label,
        weight=float(weight),
        confidence=None if confidence is None else float(confidence),
    )


def count_votes(
    ballots: Sequence[Ballot],
    *,
    method: VoteMethod | str = VoteMethod.PLURALITY,
    embeddings: Embeddings | None = None,
    threshold: float = 0.85,
    tie_break: TieBreak | str = TieBreak.FIRST,
) -> VoteTable:
    """Count the ballots into a `VoteTable`.

    Args:
        ballots: from `make_ballot`; abstentions are listed but carry no vote.
        method: `plurality` (equal labels), `semantic` (labels clustered greedily in
            ballot order: a label joins the first cluster whose first label has cosine
            similarity >= `threshold`, else starts a new one; all distinct labels are
            embedded in one `embed_documents` call) or `weighted` (equal labels, each
            ballot counting `weight × confidence`).
        embeddings: any LangChain `Embeddings`; required for `semantic`.
        threshold: cosine similarity in (0, 1] for `semantic`.
        tie_break: when clusters share the most votes, `first` picks the one whose
            first ballot came first; `judge` and `new_round` pick no winner
            (`winner=None`, `tie=True`, `tied=[labels]`) so the calling graph asks its
            judge or runs another round. `tie` and `tied` are set under `first` too.

    A winner needs more than zero votes: when everyone abstains (or every ballot weighs
    0) there is no winner, no tie and agreement is 0.0.

    Raises:
        ConfigError: unknown method or tie-break, threshold outside (0, 1], semantic
            voting without embeddings, or a ballot with a bad weight or confidence.
    """
    method = _choice(VoteMethod, method, "aggregation method")
    tie_break = _choice(TieBreak, tie_break, "tie-break")
    _check_threshold(threshold)
    if method is VoteMethod.SEMANTIC and embeddings is None:
        raise ConfigError("semantic voting needs embeddings: pass embeddings=<any LangChain Embeddings>")
    voting = [ballot for ballot in ballots if ballot["label"] is not None]
    if method is VoteMethod.SEMANTIC:
        key = _semantic_keys(voting, embeddings, threshold)
    else:
        key = _label_key
    groups = _group(voting, key)
    # sorted() is stable: clusters with equal votes keep the order of their first ballot,
    # but a rambling answer comes after the answers that are not.
    typical = _median_words(ballot["label"] for ballot in voting)
    clusters = sorted(
        (_cluster(label, members, method) for label, members in groups.items()),
        key=lambda cluster: (-cluster["votes"], _long_winded(cluster["label"], typical)),
    )
    return _table(method, list(ballots), clusters, tie_break)


def agreement(
    ballots: Sequence[Ballot],
    *,
    method: VoteMethod | str = VoteMethod.PLURALITY,
    embeddings: Embeddings | None = None,
    threshold: float = 0.85,
) -> float:
    """The largest cluster's share of the non-abstaining votes (an early stop)."""
    return count_votes(ballots, method=method, embeddings=embeddings, threshold=threshold)["agreement"]


def _label_key(ballot: Ballot) -> str:
    return ballot["label"] or ""


def _semantic_keys(voting: list[Ballot], embeddings: Embeddings | None, threshold: float) -> Callable[[Ballot], str]:
    labels = list(dict.fromkeys(_label_key(ballot) for ballot in voting))
    vectors = dict(zip(labels, embeddings.embed_documents(labels))) if labels and embeddings else {}
    representatives: list[str] = []
    cluster_of: dict[str, str] = {}
    for label in labels:
        near = (rep for rep in representatives if cosine(vectors[rep], vectors[label]) >= threshold)
        cluster_of[label] = next(near, label)
        if cluster_of[label] == label:
            representatives.append(label)
    return lambda ballot: cluster_of[_label_key(ballot)]


def _group(voting: list[Ballot], key: Callable[[Ballot], str]) -> dict[str, list[Ballot]]:
    groups: dict[str, list[Ballot]] = {}
    for ballot in voting:
        groups.setdefault(key(ballot), []).append(ballot)
    return groups


def _cluster(label: str, members: list[Ballot], method: VoteMethod) -> Cluster:
    # Rounded so that 0.1 + 0.2 ties with 0.3.
    votes = round(sum(_votes(ballot, method) for ballot in members), 9)
    return Cluster(
        label=label,
        agents=[ballot["agent"] for ballot in members],
        answers=[ballot["answer"] or "" for ballot in members],
        votes=votes,
    )


def _votes(ballot: Ballot, method: VoteMethod) -> float:
    if method is not VoteMethod.WEIGHTED:
        return 1.0
    _check_weight(ballot["agent"], ballot["weight"], ballot["confidence"])
    confidence = 1.0 if ballot["confidence"] is None else ballot["confidence"]
    return ballot["weight"] * confidence


def _table(method: VoteMethod, ballots: list[Ballot], clusters: list[Cluster], tie_break: TieBreak) -> VoteTable:
    top = clusters[0]["votes"] if clusters else 0.0
    total = sum(cluster["votes"] for cluster in clusters)
    tied = [cluster["label"] for cluster in clusters if cluster["votes"] == top] if top > 0 else []
    tie = len(tied) > 1
    winner = clusters[0] if top > 0 and (not tie or tie_break is TieBreak.FIRST) else None
    runner_up = clusters[1]["votes"] if len(clusters) > 1 else 0.0
    margin = top - runner_up if winner is not None else 0.0
    return VoteTable(
        method=method.value,
        ballots=ballots,
        clusters=clusters,
        counts={cluster["label"]: cluster["votes"] for cluster in clusters},
        winner=winner["label"] if winner else None,
        winning_answer=winner["answers"][0] if winner else None,
        margin=round(margin, 9),
        agreement=top / total if total > 0 else 0.0,
        abstentions=[ballot["agent"] for ballot in ballots if ballot["label"] is None],
        tie=tie,
        tied=tied if tie else [],
    )


# --- a verdict checked against the vote ------------------------------------------

LONG_WINDED_WORDS = 3
"""An answer longer than this many words, and than twice a typical answer, is long-winded.
In a tie, an answer long-winded against the agents' median answer wins only when every
tied answer is; a verdict long-winded against the vote's answer counts only when it
names exactly one of the agents' answers. (A judge picking "The Big Five: lions,
elephants, monkeys and whales" where the agents' vote is "the elephant" names none.)"""


class FallbackReason(StrEnum):
    """Why a verdict gave way to the counted vote of the agents' own answers."""

    NO_ANSWER = "no_answer"
    """The verdict had no extractable answer (empty, a refusal, long-winded text naming
    none or several of the agents' answers, or text where the agents' vote is a number,
    a yes/no or an option's letter)."""
    OVERRULED_MAJORITY = "overruled_majority"
    """The verdict contradicted a clear majority of the agents without a stated reason."""


class VerdictCheck(TypedDict):
    """A judge's, moderator's or leader's verdict, checked against the counted vote."""

    answer: str
    """The final answer: the verdict's, or the vote's winning answer when it fell back."""
    fell_back: bool
    """The vote replaced the verdict."""
    reason: str | None
    """The `FallbackReason` value when it fell back, else None."""
    verdict: str
    """What the verdict said (its answer text, unchanged)."""
    verdict_label: str | None
    """The verdict's normalised answer; None when it had none."""
    vote_label: str | None
    """The vote's winning label; None when the vote had no winner."""
    vote_answer: str | None
    """The vote's winning answer, as its first agent gave it."""
    votes: float
    """The winning cluster's votes."""
    ballots: int
    """The ballots cast, abstentions included."""


def clear_majority(table: VoteTable) -> bool:
    """Whether the vote's winner is held by at least two agents, holds more than half of
    all ballots (abstentions count against it) and is not tied."""
    if table["winner"] is None or table["tie"] or not table["clusters"] or len(table["clusters"][0]["agents"]) < 2:
        return False
    total = sum(cluster["votes"] for cluster in table["clusters"]) + len(table["abstentions"])
    return table["clusters"][0]["votes"] * 2 > total


def answered_in_form(table: VoteTable, question: str | None = None) -> bool:
    """Whether the vote's winner is a number, a yes/no or the letter of one of the
    `question`'s options (a form that `check_verdict` expects a verdict to share), and
    no other answer in the vote is of that form: agents doing different tasks who give
    one number, and otherwise text, found that number."""
    options = _question(question).options if question else {}
    winner = table["winner"]
    if winner is None or (form := _form(winner, options)) is _Form.TEXT:
        return False
    return all(_form(label, options) is not form for label in table["counts"] if label != winner)


def is_question(text: str) -> bool:
    """Whether `text` is one short question: a single line of at most
    `QUESTION_READ_WORDS` words with one question mark (lettered options and an
    instruction such as "Answer with the letter." may follow it). Such an objective has
    one answer that agents can vote on; a plan, a request or several questions have not.

    Example:
        >>> is_question("What is 36 + 34?"), is_question("Plan the launch of a website")
        (True, False)
    """
    text = text.strip()
    return "\n" not in text and text.count("?") == 1 and len(text.split()) <= QUESTION_READ_WORDS


def best_supported(tables: Sequence[VoteTable]) -> int | None:
    """The index of the best-supported vote among rounds of votes, or None if none had a winner.

    The rule: the round whose winner has the most votes; untied beats tied, and among
    equals the earliest round wins (its answers were given independently; a later round
    counts only when more agents came to agree). So a round-1 majority is kept when
    later rounds degrade (agents abstain, ramble or split), and agents that converge
    keep their converged answer.
    """
    best: tuple[float, bool, int] | None = None
    for index, table in enumerate(tables):
        if table["winner"] is None or not table["clusters"]:
            continue
        key = (table["clusters"][0]["votes"], not table["tie"], -index)
        if best is None or key > best:
            best = key
    return None if best is None else -best[2]


def check_verdict(
    verdict: str | None, table: VoteTable, *, reason: str = "", question: str | None = None
) -> VerdictCheck:
    """Check a verdict against the counted vote of the answers the agents gave.

    The vote replaces the verdict (`fell_back`) when the vote has a winner and
    - the verdict has no extractable answer (`no_answer`): it is empty or a refusal; or
      long-winded text (more than `LONG_WINDED_WORDS` words and twice the winner's) that
      names none or several of the agents' answers; or, where the winner is a number,
      a yes/no or the letter of one of the `question`'s options, not one of those (a
      sentence where the agents' vote is "72", even a sentence an agent gave); or
    - there is a `clear_majority`, the verdict picks another answer, and `reason` is
      blank (`overruled_majority`).

    The vote's answer is its winner's (of tied answers, the first that is not long-winded).
    A verdict whose normalised answer is one of the agents' answers, or long-winded text
    naming exactly one of them, picks that answer; in the second case the final answer
    is the agents' wording of it. Labels are compared exactly (also for semantic votes);
    pass the `question` the ballots were made with, so the verdict is normalised as they were.

    Example:
        >>> table = count_votes([make_ballot(n, "42") for n in "abc"])
        >>> check_verdict("41", table)["answer"], check_verdict("41", table, reason="17 + 25 = 41")["answer"]
        ('42', '41')
    """
    answer = extract_answer(verdict) if verdict else None
    label = normalize(answer, question) if answer else None
    winner, picked_answer = table["winner"], verdict or ""
    typical = len(winner.split()) if winner else _median_words(b["label"] for b in table["ballots"])
    if label and _long_winded(label, typical):
        named = _named_labels(label, table, typical)
        label = named[0] if len(named) == 1 else None
        if label is not None:
            picked_answer = _cluster_answer(table, label)
    options = _question(question).options if question else {}
    expected = _form(winner, options) if winner is not None else _Form.TEXT
    if label and expected is not _Form.TEXT and _form(label, options) is not expected:
        label = None  # "The answer will appear..." where the agents' vote is "72"
    fallback: FallbackReason | None = None
    if winner is not None and not label:
        fallback = FallbackReason.NO_ANSWER
    elif winner is not None and label != winner and clear_majority(table) and not reason.strip():
        fallback = FallbackReason.OVERRULED_MAJORITY
    top = table["clusters"][0] if winner is not None else None
    return VerdictCheck(
        answer=(top["answers"][0] if top else "") if fallback else picked_answer,
        fell_back=fallback is not None,
        reason=fallback.value if fallback else None,
        verdict=verdict or "",
        verdict_label=label or None,
        vote_label=top["label"] if top else None,
        vote_answer=top["answers"][0] if top else None,
        votes=top["votes"] if top else 0.0,
        ballots=len(table["ballots"]),
    )


class _Form(StrEnum):
    """The form of a normalised answer, which a verdict is expected to share with the vote."""

    NUMBER = "number"
    YES_NO = "yes_no"
    OPTION = "option"
    TEXT = "text"


def _form(label: str, options: Mapping[str, str]) -> _Form:
    """Whether a normalised answer (`normalize`) is a number, a yes/no, the letter of one
    of the question's `options`, or other text."""
    if label in ("yes", "no"):
        return _Form.YES_NO
    if label in options:
        return _Form.OPTION
    return _Form.NUMBER if _NUMBER.fullmatch(label) else _Form.TEXT


def _median_words(labels: Iterable[str | None]) -> float:
    lengths = sorted(len(label.split()) for label in labels if label)
    if not lengths:
        return 0.0
    middle = len(lengths) // 2
    return float(lengths[middle]) if len(lengths) % 2 else (lengths[middle - 1] + lengths[middle]) / 2


def _long_winded(label: str, typical: float) -> bool:
    words = len(label.split())
    return words > LONG_WINDED_WORDS and words > 2 * typical


def _named_labels(text: str, table: VoteTable, typical: float) -> list[str]:
    """The cluster labels `text` names as whole words, but those long-winded against `typical`."""
    named = []
    for cluster_label in table["counts"]:
        if _long_winded(cluster_label, typical):
            continue
        if re.search(rf"(?<![\w.]){re.escape(cluster_label)}(?![\w]|\.\d)", text):
            named.append(cluster_label)
    return named


def _cluster_answer(table: VoteTable, label: str) -> str:
    return next((c["answers"][0] for c in table["clusters"] if c["label"] == label), label)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


# --- validation -----------------------------------------------------------------


def _choice(enum_type: type[E], value: str, what: str) -> E:
    try:
        return enum_type(str(value).lower())
    except ValueError:
        options = ", ".join(member.value for member in enum_type)
        raise ConfigError(f"unknown {what} {value!r} (use one of: {options})") from None


def _check_threshold(threshold: float) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ConfigError(f"threshold {threshold!r} is outside (0, 1]")


def _check_weight(agent: str, weight: float, confidence: float | None) -> None:
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"weight {weight!r} of agent {agent!r} must be a finite number >= 0")
    if confidence is not None and (not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1):
        raise ConfigError(f"confidence {confidence!r} of agent {agent!r} must be in [0, 1]")
