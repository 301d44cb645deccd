"""A server that accepts the connection and never answers ends a run in bounded time,
saved and resumable: by the run's time cap (a pause) or by the client timeout (a failure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def graphswarm(*args: str, db: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", db],
        capture_output=True, text=True, timeout=120, env={**base, **(env or {})},
    )  # fmt: skip


def test_a_silent_server_ends_at_the_time_cap_as_a_resumable_pause(fake, sqlite_db):
    fake.configure(timeout_rate=1.0, hang_s=60)
    started = time.monotonic()
    proc = graphswarm(
        "run", "collaborative", "2+2?", "--agents", "2", "--base-url", fake.url, "--model", "m",
        "--max-seconds", "2", "--run-id", "silent", db=sqlite_db,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert proc.returncode == 3, proc.stderr
    assert "graphswarm resume silent" in proc.stdout + proc.stderr
    shown = json.loads(graphswarm("show", "silent", "--json", db=sqlite_db).stdout)
    assert shown["record"]["stop_reason"] == "time_cap"
    # The requests that were cut off are on the ledger, one per agent: every request the
    # server saw, and one that the cap cut off before it was sent, if any (a slow start).
    assert fake.stats()["requests"] <= shown["usage"]["total"]["calls"] == 2


def test_a_silent_server_fails_the_run_after_the_client_timeout_and_its_retries(fake, sqlite_db):
    fake.configure(timeout_rate=1.0, hang_s=60)
    started = time.monotonic()
    proc = graphswarm(
        "run", "collaborative", "2+2?", "--agents", "2", "--base-url", fake.url, "--model", "m",
        "--run-id", "silent", db=sqlite_db, env={"GRAPHSWARM_MODEL_TIMEOUT": "0.3"},
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, proc.stderr
    assert "graphswarm resume silent" in proc.stdout + proc.stderr

    fake.configure(timeout_rate=0.0)
    resumed = graphswarm("resume", "silent", db=sqlite_db)
    assert resumed.returncode == 0, resumed.stderr
