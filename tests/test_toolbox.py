"""The task loop's built-in tools: a workspace nothing leaves, safe arithmetic, memory,
questions to a person, and a shell that only runs when enabled."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from graphswarm import toolbox
from graphswarm.errors import ConfigError, ToolRefusedError
from graphswarm.memory import SharedMemory, open_chroma
from graphswarm.testing import KeywordEmbeddings
from graphswarm.toolbox import (
    BUILTIN_TOOLS,
    Workspace,
    builtin_tools,
    calculate,
    check_tool_names,
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace, which no tool may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("the secret")
    return path


@pytest.fixture
def workspace(tmp_path: Path, outside: Path) -> Workspace:
    return Workspace(tmp_path / "workspace")


def tools(workspace: Workspace, *names: str, **kwargs) -> dict:
    """The tools asked for by name (all but the shell when none is named)."""
    names = names or tuple(name for name in BUILTIN_TOOLS if name != "shell")
    built = builtin_tools(names, workspace=workspace, **kwargs)
    return {tool.name: tool for tool in built}


# --- the workspace -------------------------------------------------------------------


def test_a_file_written_in_new_directories_reads_back(workspace: Workspace) -> None:
    said = workspace.write("notes/drafts/a.md", "# Plan\nbake bread")

    assert said == "wrote 17 characters to notes/drafts/a.md"
    assert workspace.read("notes/drafts/a.md") == "# Plan\nbake bread"
    assert (workspace.root / "notes" / "drafts" / "a.md").is_file()


def test_list_files_shows_paths_relative_to_the_workspace_with_dirs_ending_in_a_slash(
    workspace: Workspace,
) -> None:
    workspace.write("b.txt", "b")
    workspace.write("notes/a.md", "a")

    assert workspace.list() == "b.txt\nnotes/\nnotes/a.md"
    assert workspace.list("notes") == "notes/a.md"


def test_the_workspace_is_made_with_its_parents(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "runs" / "r1" / "workspace")

    assert workspace.root == (tmp_path / "runs" / "r1" / "workspace").resolve()
    assert workspace.root.is_dir()
    assert workspace.list() == "(nothing in .)"


def test_a_workspace_that_cannot_be_made_is_a_one_line_config_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "file.txt").write_text("a file, not a directory")

    with pytest.raises(ConfigError, match="is not writable: Not a directory") as error:
        Workspace(tmp_path / "file.txt" / "ws")
    assert "\n" not in str(error.value)
    assert str(tmp_path / "file.txt" / "ws") in str(error.value)


def test_reading_a_missing_file_is_refused_with_its_name(workspace: Workspace) -> None:
    with pytest.raises(ToolRefusedError, match="no file 'plan.md' in the workspace"):
        workspace.read("plan.md")


def test_a_long_file_is_cut_with_a_note(workspace: Workspace) -> None:
    workspace.write("long.txt", "x" * 50)

    text = workspace.read("long.txt", max_chars=10)

    assert text == "x" * 10 + "\n[... cut at 10 characters; the file has 50 bytes]"


def test_a_symlink_that_stays_inside_the_workspace_is_followed(
    workspace: Workspace,
) -> None:
    workspace.write("real.md", "inside")
    (workspace.root / "link.md").symlink_to(workspace.root / "real.md")

    assert workspace.read("link.md") == "inside"


# --- nothing leaves the workspace ----------------------------------------------------

ESCAPES = ["../escape.txt", "a/../../escape.txt", "../outside/secret.txt", "", "~/x"]


@pytest.mark.parametrize("path", ESCAPES)
def test_a_write_that_would_leave_the_workspace_is_refused(workspace: Workspace, outside: Path, path: str) -> None:
    with pytest.raises(ToolRefusedError, match="workspace"):
        workspace.write(path, "escaped")

    assert not (outside.parent / "escape.txt").exists()
    assert (outside / "secret.txt").read_text() == "the secret"


@pytest.mark.parametrize("path", ["../outside/secret.txt", "a/../../outside/secret.txt"])
def test_a_read_that_would_leave_the_workspace_is_refused(workspace: Workspace, path: str) -> None:
    with pytest.raises(ToolRefusedError, match="leads outside the workspace"):
        workspace.read(path)


def test_an_absolute_path_is_refused_even_inside_the_workspace(workspace: Workspace, outside: Path) -> None:
    for path in (outside / "new.txt", workspace.root / "new.txt"):
        with pytest.raises(ToolRefusedError, match="is not relative to the workspace"):
            workspace.write(str(path), "escaped")
        assert not path.exists()


def test_a_symlinked_directory_pointing_outside_is_refused(workspace: Workspace, outside: Path) -> None:
    (workspace.root / "shared").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ToolRefusedError, match="'shared/new.txt' leads outside"):
        workspace.write("shared/new.txt", "escaped")
    with pytest.raises(ToolRefusedError, match="leads outside"):
        workspace.read("shared/secret.txt")
    with pytest.raises(ToolRefusedError, match="leads outside"):
        workspace.list("shared")
    assert workspace.list() == "shared/"  # the link is shown, never what it points to
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_a_symlinked_file_pointing_outside_can_be_neither_written_nor_read(workspace: Workspace, outside: Path) -> None:
    (workspace.root / "notes.txt").symlink_to(outside / "secret.txt")

    with pytest.raises(ToolRefusedError, match="'notes.txt' leads outside"):
        workspace.write("notes.txt", "overwritten")
    with pytest.raises(ToolRefusedError, match="'notes.txt' leads outside"):
        workspace.read("notes.txt")
    assert (outside / "secret.txt").read_text() == "the secret"


def test_a_symlink_swapped_in_after_the_check_is_not_written_through(
    workspace: Workspace, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the link appeared between resolve() and open(): O_NOFOLLOW refuses it.
    (workspace.root / "race.txt").symlink_to(outside / "secret.txt")
    monkeypatch.setattr(Workspace, "resolve", lambda self, path: self.root / path)

    with pytest.raises(ToolRefusedError, match="cannot write 'race.txt'"):
        workspace.write("race.txt", "overwritten")
    assert (outside / "secret.txt").read_text() == "the secret"


def test_file_tools_report_refusals_as_tool_refused_errors(
    workspace: Workspace,
) -> None:
    file_tools = tools(workspace, "read_file", "write_file", "list_files")

    file_tools["write_file"].invoke({"path": "a/b.txt", "content": "hello"})

    assert file_tools["read_file"].invoke({"path": "a/b.txt"}) == "hello"
    assert file_tools["list_files"].invoke({}) == "a/\na/b.txt"
    with pytest.raises(ToolRefusedError):
        file_tools["write_file"].invoke({"path": "../b.txt", "content": "escaped"})


# --- the calculator ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("17 + 25", "42"),
        ("2**10", "1024"),
        ("sqrt(16)", "4"),
        ("(1+2)*3/4", "2.25"),
        ("-7 // 2", "-4"),
        ("round(pi, 2)", "3.14"),
        ("max(3, 10 % 4) * -1", "-3"),
    ],
)
def test_the_calculator_computes_arithmetic(expression: str, value: str) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "a.b",
        '"x"*3',
        "[x for x in (1, 2)]",
        "lambda: 1",
        "True + 1",
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ToolRefusedError, match="is not arithmetic"):
        calculate(expression)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("9**9**9", "the exponent 387420489 is too large"),
        ("(10**900)**900", "more than 3000 digits"),
        ("exp(1000)", "too large"),
        ("1" * 501, "longer than 500 characters"),
    ],
)
def test_the_calculator_refuses_blow_ups_at_once(expression: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolRefusedError, match=reason):
        calculate(expression)
    assert time.monotonic() - started < 1


def test_division_by_zero_is_refused() -> None:
    with pytest.raises(ToolRefusedError, match="^division by zero$"):
        calculate("1 / (2 - 2)")


# --- choosing tools ------------------------------------------------------------------


def test_an_unknown_tool_is_a_one_line_config_error_listing_the_built_ins() -> None:
    with pytest.raises(ConfigError, match="unknown tool 'browser'") as error:
        check_tool_names(["calculator", "browser"], allow_shell=False)
    assert "\n" not in str(error.value)
    assert ", ".join(BUILTIN_TOOLS) in str(error.value)


def test_the_shell_is_refused_unless_enabled(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="enable it explicitly with allow_shell=True"):
        check_tool_names(["shell"], allow_shell=False)
    with pytest.raises(ConfigError, match="allow_shell=True"):
        builtin_tools(["shell"], workspace=workspace)
    assert "shell" not in tools(workspace)


def test_tools_come_in_the_order_asked_without_repeats(workspace: Workspace) -> None:
    built = builtin_tools(["write_file", "calculator", "write_file"], workspace=workspace)

    assert [tool.name for tool in built] == ["write_file", "calculator"]
    assert built[1].invoke({"expression": "17 + 25"}) == "42"


def test_an_enabled_shell_runs_in_the_workspace(workspace: Workspace) -> None:
    workspace.write("report.md", "done")
    shell = tools(workspace, "shell", allow_shell=True)["shell"]

    output = shell.invoke({"command": "pwd; ls; echo oops >&2; exit 3"})

    assert output == f"exit code 3\nstdout:\n{workspace.root}\nreport.md\nstderr:\noops"


def test_shell_commands_do_not_see_api_keys(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("GRAPHSWARM_PLAIN", "visible")
    shell = tools(workspace, "shell", allow_shell=True)["shell"]

    output = shell.invoke({"command": "env"})

    assert "GRAPHSWARM_PLAIN=visible" in output
    assert "sk-should-not-leak" not in output


def test_a_shell_command_that_runs_too_long_is_stopped_with_its_children(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toolbox, "SHELL_TIMEOUT_S", 0.5)
    shell = tools(workspace, "shell", allow_shell=True)["shell"]

    started = time.monotonic()
    with pytest.raises(ToolRefusedError, match="ran longer than 0.5s and was stopped"):
        # The shell forks sleep, which holds the output pipe: killing the shell alone would hang.
        shell.invoke({"command": "sleep 20; echo never"})
    assert time.monotonic() - started < 5


# --- shared memory -------------------------------------------------------------------


@pytest.fixture
def memory() -> Iterator[SharedMemory]:
    client = open_chroma("memory")
    memory = SharedMemory(client, f"toolbox-{uuid.uuid4().hex[:8]}", embeddings=KeywordEmbeddings())
    yield memory
    client.delete_collection(memory.name)  # the in-memory store outlives a test


def test_memory_search_lists_the_closest_notes_with_who_posted_them(workspace: Workspace, memory: SharedMemory) -> None:
    memory.post("Sourdough starter must be fed flour daily", agent="baker", kind="finding")
    memory.post("Football tickets sold out", agent="fan")
    search = tools(workspace, "memory_search", memory=memory)["memory_search"]

    found = asyncio.run(search.ainvoke({"query": "how is sourdough starter fed?"}))

    assert found.splitlines()[0] == "- (baker, finding) Sourdough starter must be fed flour daily"
    assert found.splitlines()[1] == "- (fan, note) Football tickets sold out"


def test_memory_search_in_an_empty_memory_finds_nothing(workspace: Workspace, memory: SharedMemory) -> None:
    search = tools(workspace, "memory_search", memory=memory)["memory_search"]

    assert search.invoke({"query": "sourdough"}) == "Nothing found."


def test_memory_search_without_a_memory_says_so(workspace: Workspace) -> None:
    search = tools(workspace, "memory_search")["memory_search"]

    assert asyncio.run(search.ainvoke({"query": "anything"})) == "The run has no shared memory."


# --- asking a person -----------------------------------------------------------------


class AskState(TypedDict):
    answer: str


def ask_graph(workspace: Workspace):
    ask_human = tools(workspace, "ask_human", agent="doer")["ask_human"]

    async def ask(state: AskState) -> dict:
        return {"answer": await ask_human.ainvoke({"question": "Ship it?"})}

    builder = StateGraph(AskState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=InMemorySaver())


def test_ask_human_pauses_the_graph_with_the_question(workspace: Workspace) -> None:
    graph = ask_graph(workspace)

    paused = asyncio.run(graph.ainvoke({"answer": ""}, {"configurable": {"thread_id": "t"}}))

    assert paused["__interrupt__"][0].value == {
        "stop_reason": "human",
        "detail": "Ship it?",
        "agent": "doer",
        "node": "ask",
        "question": "Ship it?",
    }


@pytest.mark.parametrize("reply", ["yes", {"text": "yes"}, {"answer": "yes"}])
def test_the_persons_answer_is_what_ask_human_returns(workspace: Workspace, reply: str | dict) -> None:
    graph = ask_graph(workspace)
    config = {"configurable": {"thread_id": "t"}}

    async def scenario() -> dict:
        await graph.ainvoke({"answer": ""}, config)
        return await graph.ainvoke(Command(resume=reply), config)

    assert asyncio.run(scenario()) == {"answer": "yes"}


def test_ask_human_outside_a_graph_is_refused(workspace: Workspace) -> None:
    ask_human = tools(workspace, "ask_human")["ask_human"]

    with pytest.raises(ToolRefusedError, match="only inside a LangGraph node"):
        ask_human.invoke({"question": "Anyone there?"})
