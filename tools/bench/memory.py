"""Shared memory throughput and latency at 1k, 10k and 100k notes on embedded Chroma.

One `SharedMemory` on a `chromadb.PersistentClient` in a temporary directory (what
`open_chroma(None)` gives a run), with `KeywordEmbeddings` by default (deterministic,
no model) or `--embeddings minilm` (all-MiniLM-L6-v2 on the CPU; default sizes 1k,10k).
The collection grows from one size to the next; at each size:

- fill: `post_many` in batches up to the size (notes/s, embedding included);
- post: single `post` latency, p50/p95 over `--samples` new notes;
- query: `query(text, k=5)` latency, p50/p95 over `--samples` queries.

Prints a table and a SCALING line (p50 at the largest size / p50 at the smallest).
Asserts nothing about timings; exits 0 unless a step itself fails.

Usage::

    python tools/bench/memory.py
    python tools/bench/memory.py --sizes 1000,10000 --samples 50
    python tools/bench/memory.py --embeddings minilm
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORDS = [
    "bread",
    "starter",
    "flour",
    "oven",
    "crust",
    "yeast",
    "dough",
    "rye",
    "wheat",
    "salt",
    "water",
    "proof",
    "knead",
    "bake",
    "loaf",
    "river",
    "castle",
    "apple",
    "forest",
    "mountain",
    "engine",
    "signal",
    "protocol",
    "cache",
    "index",
    "vector",
    "memory",
    "agent",
    "swarm",
    "debate",
    "judge",
    "score",
    "answer",
    "planet",
    "orbit",
    "comet",
    "galaxy",
    "ocean",
    "tide",
    "storm",
    "cloud",
    "rain",
    "copper",
    "iron",
    "silver",
    "gold",
    "market",
    "price",
    "trade",
    "ledger",
    "coffee",
    "tea",
    "sugar",
    "honey",
    "garden",
    "seed",
    "root",
    "leaf",
    "branch",
    "bridge",
    "tunnel",
    "road",
    "train",
    "station",
    "ticket",
    "music",
    "guitar",
    "piano",
    "violin",
    "drum",
]


def note_text(rng: random.Random, serial: int) -> str:
    """A unique sentence of 8-14 vocabulary words (the serial keeps ids distinct)."""
    return " ".join(rng.choices(WORDS, k=rng.randint(8, 14))) + f" item{serial}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", choices=("keyword", "minilm"), default="keyword")
    parser.add_argument("--sizes", help="comma-separated note counts (default 1000,10000,100000; minilm 1000,10000)")
    parser.add_argument(
        "--samples", type=int, default=100, help="single posts and queries timed per size (default 100)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="post_many batch size when filling (default 1000)")
    args = parser.parse_args(argv)
    default_sizes = "1000,10000" if args.embeddings == "minilm" else "1000,10000,100000"
    sizes = sorted(int(s) for s in (args.sizes or default_sizes).split(","))

    import chromadb
    from chromadb.config import Settings

    from graphswarm.memory import SharedMemory

    if args.embeddings == "minilm":
        from graphswarm.embeddings import MiniLMEmbeddings

        embeddings = MiniLMEmbeddings()
        embeddings.embed_query("warm up")  # load the model outside the timings
    else:
        from graphswarm.testing import KeywordEmbeddings

        embeddings = KeywordEmbeddings()

    rng = random.Random(1234)
    workdir = Path(tempfile.mkdtemp(prefix="graphswarm-bench-memory-"))
    began = time.perf_counter()
    rows = []
    serial = 0
    try:
        client = chromadb.PersistentClient(path=str(workdir), settings=Settings(anonymized_telemetry=False))
        memory = SharedMemory(client, "bench-memory", embeddings=embeddings)
        for size in sizes:
            # Fill up to the size (the single posts of the previous size count too).
            need = size - memory.count()
            fill_started = time.perf_counter()
            filled = 0
            while filled < need:
                n = min(args.batch, need - filled)
                texts = [note_text(rng, serial + i) for i in range(n)]
                serial += n
                memory.post_many(texts, agent=f"a{filled % 7}", kind="note", round=filled // args.batch)
                filled += n
            fill_seconds = time.perf_counter() - fill_started
            at = memory.count()

            post_ms = []
            for _ in range(args.samples):
                text = note_text(rng, serial)
                serial += 1
                started = time.perf_counter()
                memory.post(text, agent="single", kind="note")
                post_ms.append(1000 * (time.perf_counter() - started))

            query_ms = []
            hits = 0
            for _ in range(args.samples):
                text = " ".join(rng.choices(WORDS, k=5))
                started = time.perf_counter()
                found = memory.query(text, k=5)
                query_ms.append(1000 * (time.perf_counter() - started))
                hits += len(found)
            if hits != 5 * args.samples:
                raise RuntimeError(f"queries at {at} notes returned {hits} notes, expected {5 * args.samples}")
            rows.append(
                {
                    "size": size,
                    "count": at,
                    "filled": filled,
                    "fill_rate": filled / fill_seconds if filled else float("nan"),
                    "fill_seconds": fill_seconds,
                    "post_p50": statistics.median(post_ms),
                    "post_p95": pct(post_ms, 0.95),
                    "query_p50": statistics.median(query_ms),
                    "query_p95": pct(query_ms, 0.95),
                }
            )
            print(f"  size {size}: done ({time.perf_counter() - began:.1f}s so far)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nshared memory on embedded Chroma (PersistentClient, temp dir, cosine HNSW), "
        f"{args.embeddings} embeddings; fill batch {args.batch}; {args.samples} single posts and "
        f"{args.samples} queries (k=5) per size; the collection grows from one size to the next\n"
    )
    header = f"{'notes':>8} {'filled':>8} {'fill notes/s':>13} {'fill s':>7} {'post p50 ms':>12} {'post p95 ms':>12} {'query p50 ms':>13} {'query p95 ms':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['count']:>8} {r['filled']:>8} {r['fill_rate']:>13.0f} {r['fill_seconds']:>7.1f} "
            f"{r['post_p50']:>12.2f} {r['post_p95']:>12.2f} {r['query_p50']:>13.2f} {r['query_p95']:>13.2f}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"\nSCALING {first['size']} -> {last['size']} notes: query p50 x{last['query_p50'] / first['query_p50']:.2f} "
        f"({first['query_p50']:.2f} -> {last['query_p50']:.2f} ms), post p50 x{last['post_p50'] / first['post_p50']:.2f} "
        f"({first['post_p50']:.2f} -> {last['post_p50']:.2f} ms)"
    )
    print(f"total benchmark time {time.perf_counter() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
