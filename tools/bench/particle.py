"""Particle swarm: iterations to convergence on a scripted task.

N particles (default 4) answer from a `ScriptedChatModel`: in iteration i particle p
says `min(T, step*(i-1) + p)` words of a target phrase of T words, padded with words
of its own, so every particle moves toward the target and, from some iteration on,
they all say exactly the target. Fitness is a `scorer` (share of the target's words in
the answer; no judge calls), positions are `KeywordEmbeddings`. The swarm is run by
`graphswarm.Runner("memory").start(SwarmSpec(architecture="particle", ...))`.

The scripted answers do not depend on the prompts, so the variants (inertia,
neighbours) change only the revision prompts, not the trajectory: they are shown to
confirm that, alongside a variant with a tighter patience. Printed per variant: best
fitness, mean fitness and diversity per iteration (`result.state["trace"]`), the stop
reason, the iterations run and the model calls (= particles x iterations run).
Asserts nothing about timings; exits 0 unless a run goes wrong.

Usage::

    python tools/bench/particle.py
    python tools/bench/particle.py --particles 6 --step 1 --iterations 12
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OBJECTIVE = "Write a slogan for a neighbourhood bakery"
TARGET = "fresh sourdough bread baked daily using local organic flour"
PADDING = (
    "cheap fast cakes party sugar icing candles balloons gifts",
    "coffee espresso latte beans roast cups mugs morning brew",
    "croissant butter pastry flaky french almond chocolate jam cream",
    "pizza pasta oven stone cheese basil tomato garlic olive",
    "vegan gluten free healthy salad seeds kale quinoa juice",
    "cookies biscuits crumbs tins jars ribbons boxes labels stamps",
    "donuts glaze sprinkles frosting filling custard fryer dozen treats",
    "tea scones clotted teapot saucer china lace doily afternoon",
)


def words(text: str) -> set[str]:
    return {w for w in text.lower().replace("final answer:", " ").split() if w.isalpha()}


def scorer(objective: str, answer: str) -> float:
    """Share of the target's words found in the answer (0..1)."""
    target = words(TARGET)
    return len(target & words(answer)) / len(target)


def answer_of(particle: int, iteration: int, step: int) -> str:
    target = TARGET.split()
    padding = PADDING[particle % len(PADDING)].split()
    if particle >= len(PADDING):
        padding = [f"{w}{particle}" for w in padding]  # still distinct from the other particles
    k = min(len(target), step * (iteration - 1) + particle)
    return "Final answer: " + " ".join(target[:k] + padding[: len(target) - k])


async def run_variant(args: argparse.Namespace, name: str, options: dict[str, Any]) -> dict[str, Any]:
    from graphswarm import Agent, Runner, RunStatus, SwarmSpec
    from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

    agents = [Agent(name=f"p{p}") for p in range(args.particles)]
    model = ScriptedChatModel(
        {f"p{p}": [answer_of(p, i, args.step) for i in range(1, args.iterations + 1)] for p in range(args.particles)}
    )
    spec = SwarmSpec(
        architecture="particle",
        agents=agents,
        model=model,
        options={
            "embeddings": KeywordEmbeddings(),
            "scorer": scorer,
            "iterations": args.iterations,
            "diversity_threshold": args.threshold,
            **options,
        },
    )
    started = time.perf_counter()
    async with Runner("memory") as runner:
        result = await runner.start(spec, OBJECTIVE, run_id=f"particle-{name}")
    wall = time.perf_counter() - started
    if result.status is not RunStatus.DONE:
        raise RuntimeError(f"variant {name} went wrong: {result.status} {result.record.error}")
    trace = result.state.get("trace", [])
    return {
        "name": name,
        "options": options,
        "trace": trace,
        "stop_reason": result.stop_reason,
        "iterations": len(trace),
        "calls": len(model.calls),
        "neighbour_prompts": sum("nearest neighbours" in c.prompt for c in model.calls),
        "answer": result.final_answer,
        "wall": wall,
    }


def report(r: dict[str, Any], particles: int) -> list[str]:
    opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults (inertia=0.5, neighbours=0, patience=2)"
    lines = [
        f"variant {r['name']}: {opts}",
        f"  {'iteration':>9} {'best fitness':>13} {'mean fitness':>13} {'diversity':>10}",
    ]
    for t in r["trace"]:
        lines.append(
            f"  {t['iteration']:>9} {t['best_fitness']:>13.3f} {t['mean_fitness']:>13.3f} {round(t['diversity'], 6) + 0.0:>10.3f}"
        )
    converged = r["stop_reason"] == "converged"
    expected = particles * r["iterations"]
    check = "" if r["calls"] == expected else f"  UNEXPECTED: not particles x iterations = {expected}"
    lines += [
        f"  stop reason {r['stop_reason']}; iterations run {r['iterations']}; "
        f"iterations to convergence: {r['iterations'] if converged else 'did not converge'}",
        f"  model calls {r['calls']} (particles x iterations = {particles} x {r['iterations']} = {expected}){check}; "
        f"final answer {r['answer']!r}; {r['wall']:.2f}s",
        f"  prompts showing neighbours' answers: {r['neighbour_prompts']} of {r['calls']}",
        "",
    ]
    return lines


async def main_async(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    variants = [
        ("baseline", {}),
        ("inertia-0.9-neighbours-2", {"inertia": 0.9, "neighbours": min(2, args.particles - 1)}),
        ("exploration-0.8-inertia-0.1", {"inertia": 0.1, "exploration": 0.8}),
        ("patience-1", {"patience": 1}),
    ]
    results = [await run_variant(args, name, options) for name, options in variants]
    print(
        f"particle swarm of {args.particles} scripted particles, target {TARGET!r} ({len(TARGET.split())} words), "
        f"particle p says min(T, {args.step}*(i-1)+p) target words in iteration i; scorer = share of target words "
        f"(no judge calls); KeywordEmbeddings; iterations={args.iterations}, diversity_threshold={args.threshold}\n"
    )
    for r in results:
        for line in report(r, args.particles):
            print(line)
    base = results[0]
    same = [
        r["name"]
        for r in results[1:]
        if [t for t in r["trace"]] == base["trace"] and r["stop_reason"] == base["stop_reason"]
    ]
    print(f"variants with the same trace and stop reason as baseline: {', '.join(same) or 'none'}")
    print(
        f"CONVERGENCE baseline: stop {base['stop_reason']} after {base['iterations']} iterations, "
        f"{base['calls']} model calls (max {args.particles * args.iterations} at iterations={args.iterations})"
    )
    print(f"total benchmark time {time.perf_counter() - began:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--particles", type=int, default=4, help="number of particles (default 4)")
    parser.add_argument("--iterations", type=int, default=10, help="most iterations (default 10)")
    parser.add_argument("--step", type=int, default=2, help="target words gained per iteration (default 2)")
    parser.add_argument("--threshold", type=float, default=0.05, help="diversity_threshold (default 0.05)")
    args = parser.parse_args(argv)
    if not 2 <= args.particles <= 20 or not 1 <= args.iterations <= 50 or args.step < 1:
        parser.error("particles in 2..20, iterations in 1..50, step >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
