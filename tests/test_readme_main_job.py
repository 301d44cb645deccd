"""The README's "Try it" command, word for word, as a new user runs it.

No API key, a fresh directory, the bundled SmolLM2 model in-process through llama.cpp.
This is the test that would have caught llama.cpp segfaulting on CPUs with AMX: the run
is a child process, so a crash shows up here as a signal instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from graphswarm.local import local_model_available
from graphswarm.models import LOCAL_MODEL_NOTICE

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not local_model_available(), reason='needs the bundled model: pip install -e ".[local]"'),
]

README = Path(__file__).resolve().parents[1] / "README.md"
MAIN_JOB = 'graphswarm run hierarchical "Plan the launch of a small bakery\'s website"'


def graphswarm_command() -> list[str]:
    """The installed `graphswarm` script of this Python (what `pip install -e .` puts on PATH)."""
    script = Path(sys.executable).with_name("graphswarm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "graphswarm"]


def test_the_readme_still_shows_this_command():
    assert f'pip install -e ".[local]" && {MAIN_JOB}' in README.read_text()


def test_the_main_job_runs_to_the_end_on_the_bundled_model(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "GRAPHSWARM_DB")}
    job = subprocess.run(
        [*graphswarm_command(), "run", "hierarchical", "Plan the launch of a small bakery's website"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    if job.returncode < 0:
        pytest.fail(f"the main job was killed by {signal.Signals(-job.returncode).name}:\n{job.stderr[-3000:]}")
    assert job.returncode == 0, job.stderr[-3000:]
    assert "Fatal Python error" not in job.stderr and "Segmentation fault" not in job.stderr
    assert LOCAL_MODEL_NOTICE in job.stderr  # no key, no flags: the bundled model
    assert job.stdout.strip(), "the final answer is printed"

    done = re.search(r"run (\S+) done \((\w+)\); details: graphswarm show \1", job.stderr)
    assert done, job.stderr[-3000:]
    # The run was saved where a new user looks for it: runs.sqlite in the current directory.
    shown = subprocess.run(
        [*graphswarm_command(), "show", done.group(1), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["record"]["status"] == "done"
    assert run["record"]["spec"]["model"] == "local"
    assert run["state"]["final_answer"].strip() == job.stdout.strip()
