"""Answer quality per architecture and agent count, on a real model.

A swarm exists to answer better than one agent. This benchmark asks every architecture
the same generated questions and scores the final answers:

- the task set is generated here (``--task-seed``): small additions ("What is 17 + 25?"),
  simple facts with one checkable word ("What is the capital of France?") and multiple
  choice ("Which of these is a fruit? A) ... Answer with the letter.");
- the model is the bundled SmolLM2-135M in-process (``--model local``, the default), or any
  OpenAI-compatible server (``--base-url URL --model NAME``; ``python -m tools.llama_server``
  serves the bundled model through llama-cpp-python's server);
- each setup (``--setups collaborative:1,3,9,27 debate:3 ...``) answers every question
  once per run seed (``--seeds``); the run id (and so every agent's sampling seed,
  `graphswarm.agents.agent_seed`) is derived from question and seed only, so agent
  ``a1`` draws the same first answer in every setup: setups are compared paired.

A final answer is *extractable* when its answer, normalised against the question as the
swarms' own votes are (`graphswarm.aggregation.normalize`), is a number (additions), an
option's letter (multiple choice: the letter, or the text of exactly one option), or at
most four words (facts); it is *correct* when that answer is the expected one. Printed per
setup: accuracy with a 95 % Wilson interval, model calls and tokens per question, the
share of runs with no extractable final answer, the same share for the vote of the
agents' own answers that a verdict was checked against (of the runs checked), and the
share whose verdict fell back to that vote (`verdict_check`). The collaborative swarm is
the counted vote the other architectures are compared with.

Long runs go in chunks: ``--out FILE`` appends one JSON line per run, ``--offset`` and
``--questions`` pick the questions, and ``--table FILE ...`` prints the table of
everything the files hold.

Usage::

    flock /tmp/bench.lock python tools/bench/quality.py --questions 20 --setups collaborative:1,3
    python -m tools.llama_server --model $(python -c "from graphswarm.local import \
bundled_model_path as p; print(p())") --model_alias smollm2 --port 8011 &
    flock /tmp/bench.lock python tools/bench/quality.py --base-url http://127.0.0.1:8011/v1 \
--model smollm2 --questions 20 --setups debate:3 --out quality.jsonl
    python tools/bench/quality.py --table quality.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SETUPS = (
    "collaborative:1,3,9,27",
    "debate:3",
    "competitive:3",
    "hierarchical:3",
    "particle:3",
)
FACT_WORDS = 4
"""A fact's answer is extractable when it is at most this many words."""
Z95 = 1.959964

FACTS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "paris"),
    ("What is the capital of Italy?", "rome"),
    ("What is the capital of Japan?", "tokyo"),
    ("What is the capital of Germany?", "berlin"),
    ("What is the capital of Spain?", "madrid"),
    ("How many legs does a spider have?", "8"),
    ("How many days are in a week?", "7"),
    ("How many sides does a triangle have?", "3"),
    ("What colour is a clear daytime sky?", "blue"),
    ("What is the opposite of hot?", "cold"),
    ("What is the largest planet in the solar system?", "jupiter"),
    ("What gas do plants take in from the air?", "carbon dioxide"),
    ("What is frozen water called?", "ice"),
    ("How many months are in a year?", "12"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the chemical symbol for water?", "h2o"),
)
CHOICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Which of these is a fruit?", "apple", ("car", "chair", "rock")),
    ("Which of these animals can fly?", "eagle", ("dog", "fish", "horse")),
    ("Which of these is a colour?", "green", ("table", "river", "bread")),
    ("Which of these is a planet?", "mars", ("moon", "sun", "comet")),
    ("Which of these is a vegetable?", "carrot", ("hammer", "shoe", "cloud")),
    ("Which of these is a number?", "seven", ("blue", "happy", "tree")),
    ("Which of these lives in water?", "fish", ("cat", "cow", "sheep")),
    ("Which of these is used to write?", "pen", ("spoon", "pillow", "sock")),
)
LETTERS = "abcd"


# -- the task set -------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    id: int
    kind: str
    """"add", "fact" or "choice"."""
    question: str
    expected: str
    """The normalised correct answer (a choice: its letter)."""
    options: tuple[str, ...] = ()
    """Multiple choice: the options' texts, in letter order."""


def make_tasks(count: int, *, seed: int = 0, offset: int = 0) -> list[Task]:
    """Questions `offset` .. `offset + count - 1` of the set for `seed`: additions, facts
    and multiple choice in turn."""
    rng = random.Random(seed)
    tasks = []
    for index in range(offset + count):
        kind = ("add", "fact", "choice")[index % 3]
        if kind == "add":
            a, b = rng.randint(10, 49), rng.randint(10, 49)
            task = Task(index, kind, f"What is {a} + {b}?", str(a + b))
        elif kind == "fact":
            question, answer = FACTS[rng.randrange(len(FACTS))]
            task = Task(index, kind, question, answer)
        else:
            question, right, wrong = CHOICES[rng.randrange(len(CHOICES))]
            options = [right, *wrong]
            rng.shuffle(options)
            listing = " ".join(f"{letter.upper()}) {text}" for letter, text in zip(LETTERS, options))
            task = Task(
                index,
                kind,
                f"{question} {listing}. Answer with the letter.",
                LETTERS[options.index(right)],
                tuple(options),
            )
        if index >= offset:
            tasks.append(task)
    return tasks


def parse(task: Task, final: str | None) -> str | None:
    """The final answer in the task's terms, or None when it has no extractable answer."""
    from graphswarm.aggregation import extract_answer, normalize

    answer = extract_answer(final) if final else None
    # Read as the swarm's own vote reads it: against the question (`normalize` rules 6-7).
    label = normalize(answer, task.question) if answer else ""
    if not label:
        return None
    if task.kind == "add":
        return label if re.fullmatch(r"-?\d+(?:\.\d+)?", label) else None
    if task.kind == "choice":
        return label if label in LETTERS[: len(task.options)] else None
    return label if len(label.split()) <= FACT_WORDS else None


def correct(task: Task, parsed: str | None) -> bool:
    if parsed is None:
        return False
    if task.kind == "fact":
        return parsed == task.expected or bool(re.search(rf"\b{re.escape(task.expected)}\b", parsed))
    return parsed == task.expected


# -- running one setup ---------------------------------------------------------------


@dataclass
class Outcome:
    setup: str
    agents: int
    seed: int
    task: int
    kind: str
    expected: str
    final: str
    parsed: str | None
    correct: bool
    calls: int
    tokens: int
    fell_back: bool
    verdict: str | None
    """What the judge, moderator or leader said (None when unchecked), before any fallback."""
    vote: str | None
    """The counted vote's answer the verdict was checked against (None when unchecked)."""
    vote_answered: bool | None
    """Whether that vote's answer has an extractable answer (None when unchecked)."""
    seconds: float
    error: str = ""
    """Why the run failed ("" when it ended normally); a failed run has no answer."""


class OneSample:
    """One agent asked once, as the swarms ask each agent (the baseline of `collaborative:1`)."""

    def __init__(self, model: str, base_url: str | None, temperature: float, max_tokens: int) -> None:
        from graphswarm import Agent
        from graphswarm.nodes import Crew

        agent = Agent(name="a1", temperature=temperature, max_tokens=max_tokens)
        self._member = Crew([agent], model=model, base_url=base_url)["a1"]

    async def ainvoke(self, state: dict[str, Any], config: dict[str, Any], context: Any) -> dict[str, Any]:
        from graphswarm.architectures.blocks import answer_question

        text, calls = await answer_question(
            self._member, state["objective"], node="answer", runtime=None, config=config
        )
        return {"final_answer": text, "calls": calls}


def build(arch: str, count: int, *, model: str, base_url: str | None, temperature: float, max_tokens: int) -> Any:
    """The compiled graph of one setup: `count` agents sampling at `temperature`, replies
    of at most `max_tokens` tokens (judges too)."""
    from graphswarm import Agent
    from graphswarm.testing import KeywordEmbeddings

    agents = [Agent(name=f"a{i + 1}", temperature=temperature, max_tokens=max_tokens) for i in range(count)]
    judge = Agent(name="judge", max_tokens=max_tokens)
    common: dict[str, Any] = {"model": model, "base_url": base_url}
    if arch == "collaborative" and count == 1:
        return OneSample(model, base_url, temperature, max_tokens)
    if arch == "collaborative":
        from graphswarm.architectures.collaborative import create_collaborative

        graph = create_collaborative(agents, **common)
    elif arch == "debate":
        from graphswarm.architectures.debate import create_debate

        graph = create_debate(agents, judge=judge, **common)
    elif arch == "competitive":
        from graphswarm.architectures.competitive import create_competitive

        graph = create_competitive(agents, judge=judge, **common)
    elif arch == "hierarchical":
        from graphswarm.architectures.hierarchical import create_hierarchical

        graph = create_hierarchical(agents, leader=Agent(name="leader", max_tokens=max_tokens), **common)
    elif arch == "particle":
        from graphswarm.architectures.particle import create_particle

        # Lexical positions (no embedding model to load); 3 iterations instead of 5 for time.
        graph = create_particle(agents, judge=judge, embeddings=KeywordEmbeddings(), iterations=3, **common)
    else:
        raise SystemExit(f"unknown architecture {arch!r}: collaborative, debate, competitive, hierarchical, particle")
    return graph.compile()


async def run_setup(
    arch: str, count: int, tasks: Sequence[Task], seeds: Sequence[int], *, model: str, base_url: str | None,
    temperature: float, max_tokens: int, report: Callable[[Outcome], None],
) -> list[Outcome]:  # fmt: skip
    from graphswarm import SwarmContext

    graph = build(arch, count, model=model, base_url=base_url, temperature=temperature, max_tokens=max_tokens)
    outcomes = []
    for seed in seeds:
        for task in tasks:
            # The same run id in every setup: agent a1..aN samples with the same seed for a
            # question in all of them, so setups are compared on the same first answers.
            run_id = f"quality-t{task.id}-s{seed}"
            started = time.perf_counter()
            config = {"configurable": {"thread_id": run_id}, "recursion_limit": 500}
            try:
                state = await graph.ainvoke({"objective": task.question}, config=config, context=SwarmContext())
            except Exception as exc:  # a run that fails (e.g. a plan the model could not write) has no answer
                state = {"final_answer": "", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            calls = state.get("calls", [])
            final = state.get("final_answer") or ""
            parsed = parse(task, final)
            check = state.get("verdict_check") or {}
            vote = check.get("vote_answer")
            outcome = Outcome(
                setup=arch,
                agents=count,
                seed=seed,
                task=task.id,
                kind=task.kind,
                expected=task.expected,
                final=final[:300],
                parsed=parsed,
                correct=correct(task, parsed),
                calls=len(calls),
                tokens=sum(c["input_tokens"] + c["output_tokens"] for c in calls),
                fell_back=bool(check.get("fell_back")),
                verdict=check["verdict"][:300] if check else None,
                vote=vote,
                vote_answered=None if vote is None else parse(task, vote) is not None,
                seconds=round(time.perf_counter() - started, 2),
                error=state.get("error", ""),
            )
            report(outcome)
            outcomes.append(outcome)
    return outcomes


# -- the table -----------------------------------------------------------------------


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0, 0 for no trials)."""
    if total == 0:
        return 0.0, 0.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def table(outcomes: Sequence[dict[str, Any]]) -> str:
    """The markdown table of outcomes, one row per setup and agent count."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for o in outcomes:
        groups.setdefault((o["setup"], o["agents"]), []).append(o)
    order = {name.split(":")[0]: i for i, name in enumerate(DEFAULT_SETUPS)}
    lines = [
        "| setup | agents | runs | correct | accuracy [95% CI] | calls/q | tokens/q | no answer | own vote: no answer "
        "| fell back | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (setup, agents), rows in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        n = len(rows)
        right = sum(r["correct"] for r in rows)
        low, high = wilson(right, n)
        empty = sum(r["parsed"] is None for r in rows)
        fell = sum(r["fell_back"] for r in rows)
        # the vote of the agents' own answers that the verdict was checked against
        checked = [r["vote_answered"] for r in rows if r.get("vote_answered") is not None]
        own = f"{checked.count(False) / len(checked):.0%} of {len(checked)}" if checked else "-"
        lines.append(
            f"| {setup} | {agents} | {n} | {right} | {right / n:.0%} [{low:.0%}, {high:.0%}] "
            f"| {sum(r['calls'] for r in rows) / n:.1f} | {sum(r['tokens'] for r in rows) / n:.0f} "
            f"| {empty / n:.0%} | {own} | {fell / n:.0%} | {sum(bool(r.get('error')) for r in rows)} |"
        )
    return "\n".join(lines)


def parse_setups(specs: Sequence[str]) -> list[tuple[str, int]]:
    setups = []
    for spec in specs:
        arch, _, counts = spec.partition(":")
        for count in (counts or "3").split(","):
            if not count.strip().isdigit() or int(count) < 1:
                raise SystemExit(f"bad setup {spec!r}: use ARCH:N[,N...], e.g. collaborative:1,3,9")
            if arch != "collaborative" and int(count) < (1 if arch == "hierarchical" else 2):
                raise SystemExit(f"{arch} needs at least 2 agents, got {count}")
            setups.append((arch, int(count)))
    return setups


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local", help="local (in-process SmolLM2) or a model name on --base-url")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--offset", type=int, default=0, help="the first question's index")
    parser.add_argument("--task-seed", type=int, default=0, help="which task set")
    parser.add_argument("--seeds", type=int, default=1, help="runs per question, each with other sampling seeds")
    parser.add_argument("--temperature", type=float, default=0.8, help="the agents' sampling temperature")
    parser.add_argument(
        "--max-tokens", type=int, default=512, help="the longest reply (512: the bundled model's own cap)"
    )
    parser.add_argument("--setups", nargs="+", default=list(DEFAULT_SETUPS), help="ARCH:N[,N...] ...")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per run to this file")
    parser.add_argument(
        "--table", type=Path, nargs="+", default=None, help="print the table of these files, run nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per run")
    args = parser.parse_args(argv)

    if args.table:
        rows = [json.loads(line) for path in args.table for line in path.read_text().splitlines() if line.strip()]
        print(table(rows))
        return 0
    tasks = make_tasks(args.questions, seed=args.task_seed, offset=args.offset)
    setups = parse_setups(args.setups)
    where = args.base_url or "in-process"
    print(f"quality: {len(tasks)} questions x {args.seeds} seed(s), model {args.model} ({where}), "
          f"temperature {args.temperature}, replies of at most {args.max_tokens} tokens", flush=True)  # fmt: skip

    def report(outcome: Outcome) -> None:
        if args.out:
            with args.out.open("a") as out:
                out.write(json.dumps(asdict(outcome)) + "\n")
        if not args.quiet:
            mark = "ok " if outcome.correct else ("-- " if outcome.parsed is None else "no ")
            print(f"  {mark}{outcome.setup}:{outcome.agents} q{outcome.task} expected {outcome.expected!r} "
                  f"got {outcome.parsed!r} ({outcome.calls} calls, {outcome.seconds:.1f}s)", flush=True)  # fmt: skip

    outcomes: list[Outcome] = []
    for arch, count in setups:
        outcomes += asyncio.run(
            run_setup(arch, count, tasks, range(args.seeds), model=args.model, base_url=args.base_url,
                      temperature=args.temperature, max_tokens=args.max_tokens, report=report)
        )  # fmt: skip
    print(table([asdict(o) for o in outcomes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
