"""Soak test: kill -9, concurrent resumes, concurrent runs and signals, through the CLI.

Every run is ``python -m graphswarm.cli run ARCH ... --run-id ID --db DB`` against the
fake OpenAI server (``tools/fake_openai.py``, in a child process) with injected faults
(HTTP 429/500 and malformed structured replies), on SQLite and, when reachable,
PostgreSQL. The specs: collaborative (40 agents), debate, orchestrator (40 agents) and
the task loop. For each backend:

- reference: each spec run once, uninterrupted; its final answer is the one to match;
- kill -9: a run is SIGKILLed at a random point (after a random number of the server's
  answers), then two ``resume`` of it start at once: exactly one should proceed, the
  other exit 2 with "is being executed by ..."; a run that fails (faults beyond the
  retries: exit 1) is resumed again, up to ``MAX_RESUMES`` times;
- eight new runs at once on a new database;
- SIGTERM and SIGINT mid-run (exit 143 and 130), then ``resume`` finishes the run.

It prints a table (kills, resumed, same answer as the reference, finished calls made
again after a kill, lock losers with a clean exit 2, runs lost) and exits 1 when any
run is lost or a lock contest goes wrong. Answers are compared for the specs without
structured output only (`Spec.comparable`); the others must just finish. A finished call is one the server answered
at least ``GRACE_S`` before the kill (its result had time to reach the checkpoint).

Usage::

    python tools/soak/run.py                     # 50 kills, SQLite and PostgreSQL
    python tools/soak/run.py --kills 3 --no-postgres
    python tools/soak/run.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.servers import ProcessServer  # noqa: E402

OBJECTIVE = "What is six times seven?"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MAX_RESUMES = 5
"""Resumes of a run that keeps failing (faults beyond the retries) before it is lost."""
GRACE_S = 0.5
LOCK_HELD = "is being executed by"
ALREADY_DONE = "is already done"
KILL_BEFORE = 0.6
"""A kill waits for a random number of answers up to this share of the reference's."""
CONCURRENT_RUNS = 8
TIMEOUT_S = 300


@dataclass(frozen=True)
class Spec:
    """One kind of run: an architecture and its CLI arguments."""

    name: str
    args: tuple[str, ...]
    comparable: bool
    """Whether its answer is the reference's whatever the faults: not so when it asks for
    structured output (a plan), since a malformed reply is re-asked with a correction,
    which the fake server answers differently."""


SPECS = (
    Spec("collaborative", ("collaborative", OBJECTIVE, "--agents", "40"), comparable=True),
    Spec("debate", ("debate", OBJECTIVE), comparable=True),
    Spec("orchestrator", ("orchestrator", OBJECTIVE, "--agents", "40"), comparable=False),
    Spec("task_loop", ("task_loop", OBJECTIVE), comparable=False),
)


@dataclass
class Row:
    """One line of the table: what happened to the runs of one phase on one backend."""

    phase: str
    runs: int = 0
    interrupted: int = 0
    resumed: int = 0
    comparable: int = 0
    same_answer: int = 0
    repeated_calls: int = 0
    contests: int = 0
    clean_losers: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    def lose(self, run_id: str, why: str) -> None:
        self.lost += 1
        self.problems.append(f"{self.phase}: run {run_id} lost: {why}")


@dataclass
class Reference:
    answer: str
    succeeded: int


class Soak:
    """The runs of one backend against one fake server."""

    def __init__(self, server: ProcessServer, db: str, backend: str, rng: random.Random, workdir: Path) -> None:
        self.server, self.db, self.backend, self.rng, self.workdir = server, db, backend, rng, workdir
        self.references: dict[str, Reference] = {}

    # -- the CLI ---------------------------------------------------------------------

    def start(self, *args: str, db: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        return subprocess.Popen(
            [sys.executable, "-m", "graphswarm.cli", *args, "--db", db or self.db],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run_spec(self, spec: Spec, run_id: str, db: str | None = None) -> subprocess.Popen[str]:
        return self.start("run", *spec.args, "--base-url", self.server.url, "--run-id", run_id, db=db)

    def finish(self, proc: subprocess.Popen[str]) -> tuple[int, str]:
        _, stderr = proc.communicate(timeout=TIMEOUT_S)
        return proc.returncode, stderr

    def answer(self, run_id: str, db: str | None = None) -> str | None:
        """The run's final answer, None unless it is done."""
        code, out = self._show(run_id, db)
        if code != 0:
            return None
        shown = json.loads(out)
        if shown["record"].get("status") != "done":
            return None
        return str(shown["state"].get("final_answer"))

    def _show(self, run_id: str, db: str | None) -> tuple[int, str]:
        proc = self.start("show", run_id, "--json", db=db)
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        return proc.returncode, out

    def completed(self) -> list[str]:
        return [c["fingerprint"] for c in self.server.stats()["completed"]]

    # -- the phases ------------------------------------------------------------------

    def reference(self) -> None:
        for spec in SPECS:
            self.server.reset()
            run_id = self.new_id(f"ref-{spec.name}")
            code, stderr = self.finish(self.run_spec(spec, run_id))
            code = self.resume_until_done(run_id, code)
            answer = self.answer(run_id)
            if answer is None:
                raise SystemExit(f"the reference run of {spec.name} did not finish ({code}): {last_line(stderr)}")
            self.references[spec.name] = Reference(answer, self.server.stats()["succeeded"])

    def kill_9(self, row: Row) -> None:
        spec = self.rng.choice(SPECS)
        run_id = self.new_id(f"k9-{spec.name}")
        self.server.reset()
        row.runs += 1
        proc = self.run_spec(spec, run_id)
        answers = self.rng.randint(1, max(1, int(self.references[spec.name].succeeded * KILL_BEFORE)))
        while proc.poll() is None and self.server.stats()["succeeded"] < answers:
            time.sleep(0.02)
        finished_before = Counter(self.completed())
        time.sleep(self.rng.uniform(GRACE_S, GRACE_S + 0.3))
        if proc.poll() is not None:  # it finished first: nothing was killed
            self.check(row, spec, run_id, proc.wait())
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        row.interrupted += 1
        made_before = Counter(self.completed())

        first, second = self.start("resume", run_id), self.start("resume", run_id)
        results = [self.finish(first), self.finish(second)]
        if all(ALREADY_DONE in stderr for _, stderr in results):  # killed as it was exiting
            self.check(row, spec, run_id, 0)
            return
        row.contests += 1
        winners = [r for r in results if r[0] != 2 or LOCK_HELD not in r[1]]
        losers = [r for r in results if r[0] == 2 and LOCK_HELD in r[1]]
        if len(winners) == 1 and len(losers) == 1:
            row.clean_losers += 1
        elif len(losers) == 0 and any(code == 0 for code, _ in results):
            pass  # the first finished before the second looked: no contest, no harm
        else:
            exits = "; ".join(f"{c}: {last_line(e)}" for c, e in results)
            row.problems.append(f"kill -9: resumes of {run_id} exited {exits}")
        code = next((c for c, _ in winners), 1)
        code = self.resume_until_done(run_id, code)
        again = Counter(self.completed()) - made_before
        row.repeated_calls += sum(min(n, again[fp]) for fp, n in finished_before.items())
        row.resumed += 1
        self.check(row, spec, run_id, code)

    def concurrent(self, row: Row, db: str) -> None:
        self.server.reset()
        runs = [(SPECS[i % len(SPECS)], self.new_id(f"c{i}")) for i in range(CONCURRENT_RUNS)]
        procs = [self.run_spec(spec, run_id, db=db) for spec, run_id in runs]
        for (spec, run_id), proc in zip(runs, procs, strict=True):
            row.runs += 1
            code, _ = self.finish(proc)
            self.check(row, spec, run_id, self.resume_until_done(run_id, code, db=db), db=db)

    def signals(self, row: Row) -> None:
        for sig, expected in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            spec = SPECS[0]
            run_id = self.new_id(f"{sig.name.lower()}-{spec.name}")
            self.server.reset()
            row.runs += 1
            proc = self.run_spec(spec, run_id)
            while proc.poll() is None and self.server.stats()["succeeded"] < 1:
                time.sleep(0.02)
            if proc.poll() is None:
                proc.send_signal(sig)
                row.interrupted += 1
            code, stderr = self.finish(proc)
            if code != expected and code != 0:
                row.problems.append(f"{sig.name}: run {run_id} exited {code}, not {expected}: {last_line(stderr)}")
            if code == expected:
                row.resumed += 1
                code, _ = self.finish(self.start("resume", run_id))
            self.check(row, spec, run_id, self.resume_until_done(run_id, code))

    # -- helpers ---------------------------------------------------------------------

    def resume_until_done(self, run_id: str, code: int, db: str | None = None) -> int:
        """Resume a run that failed (exit 1: faults beyond the retries) until it is done."""
        for _ in range(MAX_RESUMES):
            if code != 1:
                return code
            code, _ = self.finish(self.start("resume", run_id, db=db))
        return code

    def check(self, row: Row, spec: Spec, run_id: str, code: int, db: str | None = None) -> None:
        answer = self.answer(run_id, db)
        if answer is None:
            row.lose(run_id, f"not done (last exit {code})")
        elif not spec.comparable:
            pass
        elif answer == self.references[spec.name].answer:
            row.comparable += 1
            row.same_answer += 1
        else:
            row.comparable += 1
            reference = self.references[spec.name].answer
            row.problems.append(f"{row.phase}: run {run_id} answered {answer[:300]!r}, not {reference[:300]!r}")

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def postgres_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def new_postgres_database(url: str) -> Iterator[str]:
    """A database of its own for the concurrent runs (dropped after), else `url` itself."""
    import psycopg

    name = f"soak_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error:
        yield url  # no right to create one: fresh run ids on the same database
        return
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def soak_backend(soak: Soak, kills: int, concurrent_db: str) -> list[Row]:
    soak.reference()
    killed, together, signalled = (
        Row(f"kill -9 ({soak.backend})"),
        Row(f"8 at once ({soak.backend})"),
        Row(f"SIGTERM/SIGINT ({soak.backend})"),
    )
    for _ in range(kills):
        soak.kill_9(killed)
    soak.concurrent(together, concurrent_db)
    soak.signals(signalled)
    return [killed, together, signalled]


def print_table(rows: list[Row]) -> None:
    header = ("phase", "runs", "kills", "resumed", "same answer", "calls repeated", "clean lock losers", "lost")
    lines = [
        (r.phase, r.runs, r.interrupted, r.resumed, f"{r.same_answer}/{r.comparable}", r.repeated_calls, f"{r.clean_losers}/{r.contests}", r.lost)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    for line in (header, *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs in all, spread over the backends")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL URL (skipped if unreachable)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--fail-rate", type=float, default=0.1, help="requests answered 429/500")
    parser.add_argument("--malformed-rate", type=float, default=0.1, help="structured replies that are not JSON")
    parser.add_argument("--latency-ms", type=float, default=100, help="server latency per call")
    parser.add_argument("--jitter-ms", type=float, default=600, help="random extra latency per call")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    backends = ["sqlite"]
    if not args.no_postgres:
        if postgres_reachable(args.postgres):
            backends.append("postgres")
        else:
            print(f"PostgreSQL at {args.postgres} is unreachable: SQLite only", file=sys.stderr)
    server = ProcessServer(latency_ms=args.latency_ms)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        server.configure(
            jitter_ms=args.jitter_ms, fail_rate=args.fail_rate, malformed_rate=args.malformed_rate, seed=args.seed
        )
        with tempfile.TemporaryDirectory(prefix="graphswarm-soak-") as tmp:
            workdir = Path(tmp)
            for i, backend in enumerate(backends):
                kills = args.kills // len(backends) + (i < args.kills % len(backends))
                if backend == "sqlite":
                    soak = Soak(server, str(workdir / "runs.sqlite"), backend, rng, workdir)
                    rows += soak_backend(soak, kills, str(workdir / "together.sqlite"))
                else:
                    with new_postgres_database(args.postgres) as together:
                        rows += soak_backend(Soak(server, args.postgres, backend, rng, workdir), kills, together)
    finally:
        server.close()
    print_table(rows)
    print(
        f"({time.monotonic() - started:.0f} s; faults: {args.fail_rate:.0%} failed, {args.malformed_rate:.0%} malformed)"
    )
    problems = [p for r in rows for p in r.problems]
    for problem in problems:
        print(problem, file=sys.stderr)
    lock_failures = [p for p in problems if "resumes of" in p]
    return 1 if sum(r.lost for r in rows) or lock_failures else 0


if __name__ == "__main__":
    sys.exit(main())
