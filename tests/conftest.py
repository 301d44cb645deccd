"""Shared fixtures: the loopback fake OpenAI server, databases, and a network guard."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

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
