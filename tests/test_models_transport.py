"""The one HTTP client every OpenAI-compatible model shares: it works from any event loop.

Runs use several loops in one process (each `asyncio.run`, the background loop of a
synchronous invoke, a notebook's, a Temporal worker's), and a model is made once and
cached, so the same chat model must answer from each of them, also at once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

from graphswarm import resolve_model


def ask(model, n: int = 1) -> list[str]:
    async def go() -> list[str]:
        replies = await asyncio.gather(*(model.ainvoke(f"question {i}") for i in range(n)))
        return [r.text for r in replies]

    return asyncio.run(go())


def test_one_model_answers_from_one_event_loop_after_another(fake):
    model = resolve_model("m1", base_url=fake.url)
    assert resolve_model("m1", base_url=fake.url) is model  # cached: the same client each time
    for _ in range(3):  # a closed loop's connections are never reused by the next one
        assert ask(model) == ["[m1] answer " + ask(model)[0].split("answer ")[1]]
    assert len(ask(model, 40)) == 40
    assert fake.stats()["by_model"]["m1"]["succeeded"] == 46


def test_two_threads_with_their_own_loops_share_a_model_at_once(fake):
    model = resolve_model("m2", base_url=fake.url)
    results: dict[int, list[str]] = {}

    def worker(k: int) -> None:
        results[k] = ask(model, 20)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1] and all(len(r) == 20 for r in results.values())


def test_a_finished_loop_leaves_no_unclosed_connection_behind(fake):
    # In a child process, where what the HTTP library reports at garbage collection shows.
    code = (
        "import asyncio, gc; from graphswarm import resolve_model; "
        f"model = resolve_model('m3', base_url={fake.url!r}); "
        "[asyncio.run(model.ainvoke('hi')) for _ in range(2)]; gc.collect(); print('asked twice')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "asked twice", done.stderr[-2000:]
    assert "Unclosed" not in done.stderr
