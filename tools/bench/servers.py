"""The fake OpenAI server for benchmarks: in a child process (default) or a thread."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ProcessServer:
    """``tools/fake_openai.py`` in a child process, driven through its control endpoints.

    Its own CPU work (FastAPI, JSON for up to a thousand requests at once) then runs on
    the other core instead of sharing this process's GIL with the code being measured.
    """

    def __init__(self, latency_ms: float) -> None:
        import httpx

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        cmd = [
            sys.executable,
            str(ROOT / "tools" / "fake_openai.py"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
        ]
        self._proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if "listening on" not in line:
            self._proc.kill()
            self._proc.wait()
            self._stderr.seek(0)
            raise RuntimeError(f"fake server did not start: {line!r} {self._stderr.read().decode()[-2000:]}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        self._http = httpx.Client(base_url=self.url.removesuffix("/v1"), timeout=60, trust_env=False)

    def _post(self, path: str, body: Any = None) -> Any:
        response = self._http.post(path, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> None:
        self._post("/_config", changes)

    def reset(self) -> None:
        self._post("/_reset")

    def script(self, model: str, responses: list[dict[str, Any]]) -> None:
        self._post("/_script", {"model": model, "responses": responses})

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_stats")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._stderr.close()


class ThreadServer:
    """The in-process ``FakeOpenAIServer`` (shares this process's GIL with the client)."""

    def __init__(self, latency_ms: float) -> None:
        from tools.fake_openai import FakeOpenAIServer, FakeServerConfig

        self._server = FakeOpenAIServer(FakeServerConfig(latency_ms=latency_ms)).start()
        self.url = self._server.url

    def configure(self, **changes: Any) -> None:
        self._server.configure(**changes)

    def reset(self) -> None:
        self._server.reset()

    def script(self, model: str, responses: list[dict[str, Any]]) -> None:
        self._server.script(model, responses)

    def stats(self) -> dict[str, Any]:
        return self._server.stats()

    def close(self) -> None:
        self._server.stop()


def check_server(server: Any, want: dict[str, int]) -> None:
    """Exactly `want` successful calls per model and no failed ones, or an error."""
    by_model = server.stats()["by_model"]
    got = {m: (s["succeeded"], s["failed"]) for m, s in by_model.items()}
    expected = {m: (n, 0) for m, n in want.items()}
    if got != expected:
        raise RuntimeError(f"unexpected model calls: {got} (expected {expected})")
