"""Every architecture in langgraph.json, served by `langgraph dev` and run through `langgraph-sdk`.

One `langgraph dev` process serves the whole module (it takes a few seconds to start).
Its graphs are built from GRAPHSWARM_MODEL / GRAPHSWARM_BASE_URL / GRAPHSWARM_AGENTS
and call the session's fake OpenAI server, which runs in this pytest process on
127.0.0.1; everything stays on the loopback interface.

The server runs in a scratch directory that links to the repository's `langgraph.json`
and `graphs/`: `langgraph dev` keeps its in-memory state pickled in `./.langgraph_api/`
and reloads it at the next start, which must not land in (or be read from) the repo.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRAPH_IDS = list(json.loads((ROOT / "langgraph.json").read_text())["graphs"])
SERVED_MODEL = "served-model"
STARTUP_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 60.0
OBJECTIVE = "Suggest a name for a neighbourhood book club"

# Graph ids that the server cannot serve yet, with the reason (strict xfail: a fix is noticed).
KNOWN_BROKEN: dict[str, str] = {}


def _langgraph_executable() -> str | None:
    # Prefer the CLI installed next to this interpreter over whatever PATH finds first.
    beside = Path(sys.executable).with_name("langgraph")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("langgraph")


LANGGRAPH = _langgraph_executable()

pytestmark = [
    pytest.mark.skipif(
        LANGGRAPH is None, reason="the `langgraph` CLI is not installed (pip install 'langgraph-cli[inmem]')"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("langgraph_api") is None,
        reason="`langgraph dev` needs the in-memory server (pip install 'langgraph-cli[inmem]')",
    ),
    pytest.mark.skipif(importlib.util.find_spec("langgraph_sdk") is None, reason="langgraph-sdk is not installed"),
]

# Variables that could make the server reach beyond the loopback interface or use a real key.
_DROPPED_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
    "LANGGRAPH_AUTH",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(
        GRAPHSWARM_BASE_URL=base_url,
        GRAPHSWARM_MODEL=SERVED_MODEL,
        GRAPHSWARM_AGENTS="3",
        # Offline and quiet: no CLI analytics, no LangSmith tracing, no PyPI version check.
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_NO_VERSION_CHECK="true",
        HF_HUB_OFFLINE="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return _ANSI.sub("", path.read_text(errors="replace"))[-chars:]
    except OSError as exc:
        return f"(could not read the server log: {exc})"


@pytest.fixture(scope="module")
def langgraph_server(fake_server, tmp_path_factory) -> Iterator[str]:
    """`langgraph dev` serving langgraph.json on a free loopback port; yields its URL."""
    import httpx

    workdir = tmp_path_factory.mktemp("langgraph-dev")
    (workdir / "langgraph.json").symlink_to(ROOT / "langgraph.json")
    (workdir / "graphs").symlink_to(ROOT / "graphs", target_is_directory=True)
    log_path = workdir / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        LANGGRAPH,
        "dev",
        "--config",
        "langgraph.json",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
        "--server-log-level",
        "WARNING",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=_server_env(fake_server.url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"`langgraph dev` exited with code {proc.returncode} before answering.\n"
                        f"command: {' '.join(cmd)}\n--- its output ---\n{_tail(log_path)}",
                        pytrace=False,
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{url}/ok").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"`langgraph dev` did not answer GET /ok within {STARTUP_TIMEOUT_S:.0f}s.\n"
                        f"command: {' '.join(cmd)}\n--- its output ---\n{_tail(log_path)}",
                        pytrace=False,
                    )
                time.sleep(0.25)
        yield url
    finally:
        _stop(proc)


def _params():
    for graph_id in GRAPH_IDS:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[graph_id])] if graph_id in KNOWN_BROKEN else []
        yield pytest.param(graph_id, id=graph_id, marks=marks)


async def test_the_server_lists_every_graph_in_langgraph_json(langgraph_server):
    from langgraph_sdk import get_client

    client = get_client(url=langgraph_server)
    try:
        assistants = await client.assistants.search(limit=100)
    finally:
        await client.aclose()
    assert sorted({a["graph_id"] for a in assistants}) == sorted(GRAPH_IDS)


@pytest.mark.parametrize("graph_id", list(_params()))
async def test_a_served_architecture_runs_through_the_sdk(langgraph_server, fake, graph_id):
    from langgraph_sdk import get_client

    fake.reset()
    before = fake.stats()["by_model"].get(SERVED_MODEL, {}).get("succeeded", 0)
    client = get_client(url=langgraph_server)
    try:
        thread = await client.threads.create()
        output = await asyncio.wait_for(
            client.runs.wait(thread["thread_id"], assistant_id=graph_id, input={"objective": OBJECTIVE}),
            timeout=RUN_TIMEOUT_S,
        )
        state = await client.threads.get_state(thread["thread_id"])
    finally:
        await client.aclose()

    assert isinstance(output, dict) and "__error__" not in output, output
    assert isinstance(output.get("final_answer"), str) and output["final_answer"].strip(), output
    calls = output.get("calls", [])
    assert calls, "the graph recorded no model calls"
    assert {c["agent"] for c in calls} and all(c["node"] for c in calls)
    after = fake.stats()["by_model"].get(SERVED_MODEL, {})
    assert after.get("succeeded", 0) - before == len(calls), (after, len(calls))
    assert after.get("failed", 0) == 0, after
    # The run finished (no pause left behind) and the thread holds the same answer.
    assert state["next"] == [], state["next"]
    assert state["values"]["final_answer"] == output["final_answer"]


async def test_studio_can_read_what_a_swarm_is_configured_with(langgraph_server):
    from langgraph_sdk import get_client

    client = get_client(url=langgraph_server)
    try:
        [assistant] = await client.assistants.search(graph_id="collaborative", limit=1)
        schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    finally:
        await client.aclose()

    # Studio draws its assistant and run forms from the context schema.
    context = schemas["context_schema"]
    assert {"model", "base_url", "agents", "options", "budget"} <= set(context["properties"]), context
    assert not {"governor", "memory", "workspace"} & set(context["properties"])
    # The architecture's own options, with their defaults and ranges.
    options = context["$defs"]["CollaborativeOptions"]["properties"]
    assert {"rounds", "method", "threshold", "tie_break"} <= set(options)
    assert schemas["input_schema"]["properties"]["objective"]


async def test_an_assistant_configures_its_swarm_through_the_context(langgraph_server, fake):
    from langgraph_sdk import get_client

    fake.reset()
    client = get_client(url=langgraph_server)
    try:
        assistant = await client.assistants.create(
            "debate",
            context={"model": "assistant-model", "agents": 4, "options": {"rounds": 1}},
            name="four quick debaters",
        )
        thread = await client.threads.create()
        output = await asyncio.wait_for(
            client.runs.wait(
                thread["thread_id"], assistant_id=assistant["assistant_id"], input={"objective": OBJECTIVE}
            ),
            timeout=RUN_TIMEOUT_S,
        )
        capped = await client.threads.create()
        before = fake.stats()["succeeded"]
        paused = await asyncio.wait_for(
            client.runs.wait(
                capped["thread_id"],
                assistant_id="collaborative",
                input={"objective": OBJECTIVE},
                context={"budget": {"max_calls": 1}},
            ),
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        await client.aclose()

    assert "__error__" not in output, output
    argued = [c for c in output["calls"] if c["node"] == "argue"]
    assert len({c["agent"] for c in argued}) == 4 and len(output["rounds"]) == 1
    assert fake.stats()["by_model"]["assistant-model"]["succeeded"] == len(output["calls"])
    # A run's own context sets its budget: one call, then the run pauses at the cap.
    assert fake.stats()["succeeded"] - before == 1
    assert paused["__interrupt__"][0]["value"]["stop_reason"] == "call_cap"


async def test_a_chat_client_talks_to_a_swarm_in_messages(langgraph_server, fake):
    from langgraph_sdk import get_client

    client = get_client(url=langgraph_server)
    try:
        thread = await client.threads.create()
        output = await asyncio.wait_for(
            client.runs.wait(
                thread["thread_id"],
                assistant_id="collaborative",
                input={"messages": [{"role": "user", "content": OBJECTIVE}]},
            ),
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        await client.aclose()

    assert output["objective"] == OBJECTIVE
    question, answer = output["messages"]
    assert question["type"] == "human" and answer["type"] == "ai"
    assert answer["content"] == output["final_answer"]
