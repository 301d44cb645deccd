"""The shell tool cannot hand the API key to a run: it runs in a sandbox where the
graphswarm process is out of sight, and every tool result has secrets redacted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool

from graphswarm import Agent, ConfigError, Runner, RunStatus, create_task_loop, toolbox
from graphswarm.testing import ScriptedChatModel
from graphswarm.toolbox import REDACTED, Workspace, builtin_tools, redact_secrets, shell_sandbox
from tests.test_task_loop import ROLES, json_reply, review, tasks, tool_call

KEY = "sk-test-0123456789abcdef-do-not-leak"
# The parent's environment, only the line that matters (a long environment is clipped in the stored output).
ATTACKS = ("tr '\\0' '\\n' < /proc/$PPID/environ | grep OPENAI_API_KEY", "echo key=$OPENAI_API_KEY")
needs_sandbox = pytest.mark.skipif(shell_sandbox() is None, reason="no bwrap, or unshare + setpriv, on this machine")


def graphswarm(*args: str, db: str) -> subprocess.CompletedProcess:
    """The CLI, with the API key in its environment (and so in /proc/PID/environ)."""
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    return subprocess.run(
        [sys.executable, "-m", "graphswarm", *args, "--db", db], capture_output=True, text=True, timeout=120, env=env
    )


def stored_bytes(db: str) -> bytes:
    """The SQLite database and its write-ahead log, as bytes."""
    return b"".join(p.read_bytes() for p in Path(db).parent.glob(Path(db).name + "*"))


@pytest.mark.parametrize("allow_shell", [pytest.param("true", marks=needs_sandbox), "unsandboxed"])
def test_a_shell_reading_the_parents_environment_stores_no_key(fake, sqlite_db, tmp_path, allow_shell):
    fake.script("planner-model", [json_reply(tasks("Look around")), json_reply(review(met=True)), {"content": "ok"}])
    fake.script(
        "doer-model",
        [
            {"tool_calls": [{"name": "shell", "arguments": {"command": c}} for c in ATTACKS]},
            {"content": "looked"},
        ],
    )
    agents = tmp_path / "agents.json"
    agents.write_text(json.dumps(ROLES))
    options = ["-o", 'tools=["shell"]', "-o", f"allow_shell={allow_shell}"]
    run = graphswarm(
        "run", "task_loop", "Look", "--agents-file", str(agents), "--base-url", fake.url, *options, "--run-id", "leak",
        db=sqlite_db,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    shown = graphswarm("show", "leak", "--json", db=sqlite_db)
    report = tmp_path / "report.html"
    assert graphswarm("report", "leak", "-O", str(report), db=sqlite_db).returncode == 0
    outputs = [use["output"] for use in json.loads(shown.stdout)["state"]["tool_uses"]]
    if allow_shell == "true":  # the sandbox: the parent is out of sight, the key never read
        assert "No such file" in outputs[0]
    else:  # no sandbox: the key was read, and redacted before anything stored it
        assert f"OPENAI_API_KEY={REDACTED}" in outputs[0]
    assert outputs[1].endswith("key=")  # the shell's environment has no API keys
    assert KEY.encode() not in stored_bytes(sqlite_db)
    assert KEY not in shown.stdout
    assert KEY not in report.read_text()


def test_a_tool_returning_the_key_has_it_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    leaky = StructuredTool.from_function(lambda: f"the key is {KEY}", name="leaky", description="says the key")
    model = ScriptedChatModel(
        {
            "planner": [tasks("Ask the tool"), review(met=True), "done"],
            "doer": [tool_call("leaky"), "answered"],
        }
    )
    graph = create_task_loop(
        [Agent(name="doer", model=model, tools=[leaky])],
        leader=Agent(name="planner", model=model),
        workspace=tmp_path / "workspace",
    )
    db = str(tmp_path / "runs.sqlite")

    async def run():
        async with Runner(db) as runner:
            return await runner.start(graph, "Find the key")

    result = asyncio.run(run())

    assert result.status is RunStatus.DONE
    assert [u["output"] for u in result.state["tool_uses"]] == [f"the key is {REDACTED}"]
    assert model.calls_for("doer")[1].messages[-1].content == f"the key is {REDACTED}"  # the model never sees it
    assert KEY.encode() not in stored_bytes(db)


def test_only_secret_looking_values_of_eight_characters_or_more_are_redacted():
    environ = {
        "OPENAI_API_KEY": "sk-abcdefgh",
        "GITHUB_TOKEN": "ghp_12345678",
        "PGPASSWORD": "hunter22",
        "APP_SECRET": "s3cr3t-value",
        "SHORT_TOKEN": "abc",
        "HOME": "/root/home/dir",
    }
    text = "sk-abcdefgh ghp_12345678 hunter22 s3cr3t-value abc /root/home/dir"

    assert redact_secrets(text, environ) == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} abc /root/home/dir"


@needs_sandbox
def test_the_sandboxed_shell_cannot_see_the_graphswarm_process(tmp_path):
    shell = builtin_tools(["shell"], workspace=Workspace(tmp_path), allow_shell=True)[0]

    output = shell.invoke({"command": f"echo parent=$PPID; test -e /proc/{os.getpid()}/environ || echo hidden"})

    assert output == "exit code 0\nstdout:\nparent=0\nhidden"


def test_without_a_sandbox_the_shell_is_refused_unless_explicitly_unsandboxed(tmp_path, monkeypatch):
    monkeypatch.setattr(toolbox, "shell_sandbox", lambda: None)
    agents = [Agent(name="doer", model=ScriptedChatModel([]))]

    with pytest.raises(ConfigError, match="needs a sandbox") as error:
        create_task_loop(agents, tools=["shell"], allow_shell=True, workspace=tmp_path)
    assert "\n" not in str(error.value)
    assert "allow_shell=unsandboxed" in str(error.value)

    create_task_loop(agents, tools=["shell"], allow_shell="unsandboxed", workspace=tmp_path)
