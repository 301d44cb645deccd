"""Import time: ``import graphswarm`` vs ``import langgraph`` (and ``langgraph.graph``).

Each import is timed in a fresh interpreter: the wall time of ``python -c "import X"``
minus that of ``python -c "pass"``, median of ``--runs`` runs, the statements taken
in turns (the order rotates each round) so that machine noise hits all of them alike.
One untimed round first warms the bytecode caches.

Also shown: which heavy modules each statement leaves in ``sys.modules`` (graphswarm
is meant to be lazy: ``import graphswarm`` should load none of them), and the slowest
imports under ``python -X importtime`` for the graphswarm statements.

Usage::

    python tools/bench/import_time.py            # 7 runs each
    python tools/bench/import_time.py --runs 11

Timings are printed, never asserted; the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_DELTA_S = 0.15

STATEMENTS: dict[str, str] = {
    "baseline": "pass",
    "langgraph": "import langgraph",
    "langgraph.graph": "import langgraph.graph",
    "graphswarm": "import graphswarm",
    # What a program actually touches: the names resolve their modules on first use.
    "graphswarm Runner+SwarmSpec": "import graphswarm; graphswarm.Runner; graphswarm.SwarmSpec",
}

HEAVY = ["chromadb", "llama_cpp", "langchain_openai", "torch", "openai", "numpy", "langgraph", "langchain_core"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing that would change what or how Python imports.
    for key in ("PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP", "PYTHONVERBOSE", "PYTHONDEVMODE"):
        env.pop(key, None)
    return env


def time_statement(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True)
    return time.perf_counter() - started


def heavy_modules(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=_env(), check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def slowest_imports(code: str, top: int = 8) -> list[tuple[int, str]]:
    """The top-level imports with the largest cumulative import time (microseconds)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows: list[tuple[int, str]] = []
    for line in err.splitlines():
        # "import time: self [us] | cumulative | imported package"; nesting indents the name.
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        # Names directly after "| " are imported at the top level, so their times are disjoint.
        if not name.startswith("  "):
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="import graphswarm vs import langgraph, in fresh interpreters")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per statement (default 7)")
    args = parser.parse_args(argv)

    names = list(STATEMENTS)
    for name in names:  # warm-up: bytecode caches, the OS file cache
        time_statement(STATEMENTS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_statement(STATEMENTS[name]))

    base = statistics.median(times["baseline"])
    print(f"python {sys.version.split()[0]} ({sys.executable}), {args.runs} interleaved runs per statement")
    print("net = median wall time of `python -c STATEMENT` minus median of `python -c pass`\n")
    print(f"{'statement':<66} {'median s':>9} {'net s':>8} {'min s':>7} {'max s':>7}")
    for name in names:
        values = times[name]
        med = statistics.median(values)
        net = "" if name == "baseline" else f"{med - base:8.3f}"
        print(f"{STATEMENTS[name]:<66} {med:9.3f} {net:>8} {min(values):7.3f} {max(values):7.3f}")

    gs = statistics.median(times["graphswarm"]) - base
    lg = statistics.median(times["langgraph"]) - base
    lgg = statistics.median(times["langgraph.graph"]) - base
    used = statistics.median(times["graphswarm Runner+SwarmSpec"]) - base
    delta = gs - lg
    verdict = "within" if delta <= TARGET_DELTA_S else "OVER"
    print()
    print(f"import graphswarm       {gs:.3f} s net")
    print(f"import langgraph        {lg:.3f} s net")
    print(f"import langgraph.graph  {lgg:.3f} s net")
    print(f"DIFF import graphswarm - import langgraph = {delta:+.3f} s ({verdict} target +{TARGET_DELTA_S:.2f} s)")
    print(
        f"DIFF graphswarm.Runner + graphswarm.SwarmSpec - import langgraph.graph = {used - lgg:+.3f} s "
        f"(first use of the main names; {used:.3f} s net)"
    )

    print("\nheavy modules in sys.modules afterwards (checked: " + ", ".join(HEAVY) + "):")
    for name in ("langgraph", "langgraph.graph", "graphswarm", "graphswarm Runner+SwarmSpec"):
        found = heavy_modules(STATEMENTS[name])
        print(f"  {STATEMENTS[name]:<64} {', '.join(found) if found else '(none)'}")

    for name in ("graphswarm", "graphswarm Runner+SwarmSpec"):
        print(f"\nslowest top-level imports under -X importtime for `{STATEMENTS[name]}` (cumulative ms):")
        rows = slowest_imports(STATEMENTS[name])
        if not rows:
            print("  (none)")
        for cumulative_us, module in rows:
            print(f"  {cumulative_us / 1000:8.1f}  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
