"""Runs started from a graph built in Python: `show`, `history`, `runs` and `report` read
them from their checkpoints alone; only resuming needs the graph."""

from __future__ import annotations

import dataclasses
import json
import operator
from typing import Annotated

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt
from typing_extensions import TypedDict

from graphswarm import Agent, Runner, SwarmSpec, run_swarm
from graphswarm.cli import main
from graphswarm.testing import ScriptedChatModel


class NotesState(TypedDict, total=False):
    objective: str
    notes: Annotated[list[str], operator.add]
    answer: str


def notes_graph() -> StateGraph:
    """start -> write -> two `Send`s to read -> ask (waits for a person) -> end."""

    def write(state: NotesState) -> dict:
        return {"notes": ["see [docs](https://x)"]}

    def read(state: NotesState) -> dict:
        return {"notes": [f"read {state['objective']}"]}

    def ask(state: NotesState) -> dict:
        return {"answer": interrupt({"stop_reason": "human", "question": "which x[i]?"})}

    graph = StateGraph(NotesState)
    graph.add_node("write", write)
    graph.add_node("read", read)
    graph.add_node("ask", ask)
    graph.add_edge(START, "write")
    graph.add_conditional_edges("write", lambda s: [Send("read", {"objective": o}) for o in ("a", "b")], ["read"])
    graph.add_edge("read", "ask")
    graph.add_edge("ask", END)
    return graph


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_reads_a_run_from_a_graph_built_in_python(sqlite_db, capsys, tmp_path):
    paused = run_swarm(notes_graph(), "take notes", db=sqlite_db, run_id="mine")
    assert paused.pauses == [{"stop_reason": "human", "question": "which x[i]?"}]

    code, out, _ = cli(capsys, "show", "mine", "--db", sqlite_db)
    assert code == 0
    assert out.startswith("run mine · custom · interrupted · human")
    assert '│ notes     │ ["see [docs](https://x)", "read a", "read b"] │' in out

    code, out, _ = cli(capsys, "show", "mine", "--json", "--db", sqlite_db)
    shown = json.loads(out)
    assert shown["state"] == {"objective": "take notes", "notes": ["see [docs](https://x)", "read a", "read b"]}
    assert (shown["next"], shown["pauses"]) == (["ask"], paused.pauses)

    code, out, _ = cli(capsys, "history", "mine", "--db", sqlite_db)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert [(row[0], row[3]) for row in rows] == [
        ("-1", "__start__"),
        ("0", "write"),
        ("1", "read, read"),
        ("2", "ask"),
    ]

    code, out, _ = cli(capsys, "runs", "--db", sqlite_db)
    assert "mine" in out and "custom" in out and "interrupted" in out

    code, _, _ = cli(capsys, "report", "mine", "-O", str(tmp_path / "mine.md"), "--db", sqlite_db)
    report = (tmp_path / "mine.md").read_text()
    assert code == 0 and "> take notes" in report and "started from a graph built in Python" in report

    code, _, err = cli(capsys, "resume", "mine", "--db", sqlite_db)
    assert code == 2
    assert err.strip() == (
        "error: run mine was started from a graph built in Python: resume or edit it from Python, "
        "passing the same graph (graph=...)"
    )


def debate_graph() -> StateGraph:
    model = ScriptedChatModel({"ann": ["Final answer: 1", "Final answer: 2"], "ben": ["Final answer: 2"] * 2})
    return SwarmSpec(
        architecture="debate", agents=[Agent(name="ann"), Agent(name="ben")], model=model, options={"rounds": 3}
    ).build()


def approval_graph() -> StateGraph:
    plan = {"tasks": [{"title": "copy", "worker": "writer"}, {"title": "page", "worker": "coder"}]}
    model = ScriptedChatModel({"leader": [plan]})
    workers = [Agent(name="writer", strengths=["writing"]), Agent(name="coder", strengths=["code"])]
    return SwarmSpec(architecture="hierarchical", agents=workers, model=model, options={"approve_plan": True}).build()


def comparable(step) -> dict:
    return {**dataclasses.asdict(step), "next": sorted(step.next)}


def read(result) -> tuple:
    """What a reading shows: the state (without the empty lists a graph's reducers start
    from, which only the graph knows of), the next nodes and the pauses."""
    return {k: v for k, v in result.state.items() if v != []}, sorted(result.next), result.pauses


@pytest.mark.parametrize(
    "make_graph, pause_before",
    [(debate_graph, []), (debate_graph, ["assess"]), (approval_graph, []), (notes_graph, [])],
    ids=["debate done", "debate at a breakpoint", "hierarchical waiting for approval", "sends and an interrupt"],
)
async def test_checkpoints_alone_read_as_the_graph_reads_them(make_graph, pause_before):
    graph = make_graph()
    async with Runner("memory") as runner:
        run = await runner.start(graph, "objective", pause_before=pause_before)
        with_graph = await runner.history(run.run_id, graph=graph)
        without = await runner.history(run.run_id)
        assert [comparable(s) for s in without] == [comparable(s) for s in with_graph]
        for step in with_graph:
            then = await runner.state_at(run.run_id, step.checkpoint_id)
            assert read(then) == read(await runner.state_at(run.run_id, step.checkpoint_id, graph=graph))
        now = await runner.result(run.run_id)
        assert read(now) == read(await runner.result(run.run_id, graph=graph))
