"""Checkpoints stay flat: what a SQLite database keeps per step follows what the step did.

A task loop's 40th task costs its checkpoints what its 5th did, though the task list and
the call ledger are eight times longer by then; and everything read from those
checkpoints (state, history, the ledger, forks, resumes) is whole.
"""

from __future__ import annotations

import asyncio
import json
import operator
from pathlib import Path
from typing import Annotated, Any

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphswarm import Agent, Runner, RunStatus, create_collaborative, create_task_loop
from graphswarm.flat_sqlite import FlatSqliteSaver
from graphswarm.state import merge_by_id
from graphswarm.testing import ScriptedChatModel

RESULT = ("The {title} nests in the reeds by the river and sings at dawn. " * 3).strip()


def task_titles(i: int) -> str:
    return f"Describe bird number {i}"


def planner_script(tasks: int, *, final: bool = True) -> list[Any]:
    """A plan of one task, then reviews each adding the next task, then the answer."""
    script: list[Any] = [{"tasks": [{"title": task_titles(1), "description": "one page", "assignee": ""}]}]
    for i in range(1, tasks + 1):
        new = [{"title": task_titles(i + 1), "description": "one page", "assignee": ""}]
        script.append({"objective_met": False, "new_tasks": new, "priorities": []})
    return [*script, "The field guide."] if final else script


def bird_loop(tasks: int, tmp_path: Path, model: ScriptedChatModel) -> Any:
    return create_task_loop(
        [Agent(name="doer", model=model)],
        leader=Agent(name="planner", model=model),
        workspace=tmp_path / "workspace",
        tools=["calculator"],
        max_tasks=tasks,
    )


def bird_model(tasks: int) -> ScriptedChatModel:
    return ScriptedChatModel(
        {"planner": planner_script(tasks), "doer": [RESULT.format(title=task_titles(i)) for i in range(1, tasks + 1)]}
    )


async def after_each_review(runner: Runner, run_id: str) -> list[str]:
    """The checkpoint ids of the steps that ran `review`, in order (one per task)."""
    return [
        step.checkpoint_id for step in await runner.history(run_id) if any(c["node"] == "review" for c in step.calls)
    ]


def test_a_task_loop_checkpoint_at_task_40_costs_what_one_at_task_5_did(tmp_path):
    tasks = 40
    model = bird_model(tasks)

    async def main() -> tuple[Any, dict[str, int], list[str], list[Any]]:
        async with Runner(str(tmp_path / "runs.sqlite")) as runner:
            result = await runner.start(bird_loop(tasks, tmp_path, model), "A field guide", run_id="guide")
            sizes = await runner.checkpoint_sizes("guide")
            return result, sizes, await after_each_review(runner, "guide"), await runner.history("guide")

    result, sizes, reviews, history = asyncio.run(main())

    assert result.status is RunStatus.DONE
    assert [t["status"] for t in result.state["tasks"]] == ["done"] * tasks + ["pending"]
    assert len(reviews) == tasks
    # One task's own content: what the 40th step adds to the run (its result, the next task).
    one_task = len(json.dumps(result.state["tasks"][-2])) + len(json.dumps(result.state["tasks"][-1]))
    at_5, at_40 = sizes[reviews[4]], sizes[reviews[39]]
    assert at_40 <= at_5 + one_task // 4, (at_5, at_40)
    # The whole run: every checkpoint about the size of the first tasks' ones.
    per_checkpoint = list(sizes.values())
    early, late = per_checkpoint[5:25], per_checkpoint[-25:-5]
    assert sum(late) / len(late) <= 1.1 * sum(early) / len(early)
    # And everything read back is whole: the ledger, and the calls of each step in the history.
    assert len(result.calls) == 2 * tasks + 2
    assert sum(len(step.calls) for step in history) == len(result.calls)
    assert [t["result"] for t in result.state["tasks"][:3]] == [RESULT.format(title=task_titles(i)) for i in (1, 2, 3)]
    model.assert_complete()


def test_a_task_loop_review_writes_only_the_tasks_it_changes(tmp_path):
    tasks = 12
    model = bird_model(tasks)
    updates: list[dict[str, Any]] = []

    async def main() -> Any:
        async with Runner(str(tmp_path / "runs.sqlite")) as runner:
            return await runner.start(
                bird_loop(tasks, tmp_path, model),
                "A field guide",
                on_update=lambda node, update: updates.append(update) if node == "review" else None,
            )

    result = asyncio.run(main())

    assert result.status is RunStatus.DONE
    # Task k's review: task k finished, task k+1 added, the pending task's priority: never the whole list.
    last = updates[-1]["tasks"]
    assert [t["id"] for t in last] == [tasks, tasks + 1, tasks + 1]
    assert last[0] == {"id": tasks, "status": "done", "result": RESULT.format(title=task_titles(tasks))}
    assert last[2] == {"id": tasks + 1, "priority": 1}


def test_state_history_forks_and_resumes_read_whole_values_from_flat_checkpoints(tmp_path):
    tasks = 8
    model = bird_model(tasks)
    db = str(tmp_path / "runs.sqlite")

    async def main() -> tuple[Any, Any, Any, Any]:
        async with Runner(db) as runner:
            graph = bird_loop(tasks, tmp_path, model)
            paused = await runner.start(graph, "A field guide", run_id="guide", pause_after=["review"])
            # Paused after task 1's review: resume, pausing again after each review, to the end.
            while paused.status is RunStatus.INTERRUPTED:
                paused = await runner.resume("guide", graph=graph)
            reviews = await after_each_review(runner, "guide")
            at_task_3 = await runner.state_at("guide", reviews[2], graph=graph)
            fork = await runner.fork("guide", reviews[2], new_run_id="fork", graph=graph)
            forked = await runner.result(fork.run_id, graph=graph)
            return paused, at_task_3, forked, await runner.checkpoint_sizes("guide")

    done, at_task_3, forked, sizes = asyncio.run(main())

    assert done.status is RunStatus.DONE
    assert [t["status"] for t in done.state["tasks"]] == ["done"] * tasks + ["pending"]
    assert len(done.calls) == 2 * tasks + 2  # each call once, across nine executions
    statuses = [t["status"] for t in at_task_3.state["tasks"]]
    assert statuses == ["done", "done", "done", "pending"]
    assert len(at_task_3.state["calls"]) == 1 + 2 * 3
    assert forked.state["tasks"] == at_task_3.state["tasks"]
    assert forked.state["calls"] == at_task_3.state["calls"]
    # Resuming in a new execution carries on with small checkpoints (no whole rewrite).
    assert max(sizes.values()) < 4 * sorted(sizes.values())[len(sizes) // 2]


def test_a_vote_stores_each_answer_and_call_once(tmp_path):
    async def stored(agents: int) -> tuple[int, list[int]]:
        model = ScriptedChatModel(
            {f"a{i}": [f"Six sevens.\nFinal answer: {42 if i % 3 else 41}"] for i in range(agents)}
        )
        graph = create_collaborative([Agent(name=f"a{i}", model=model) for i in range(agents)])
        async with Runner(str(tmp_path / f"{agents}.sqlite")) as runner:
            result = await runner.start(graph, "What is six times seven?", run_id="vote")
            assert result.final_answer == "42" and len(result.calls) == agents
            sizes = list((await runner.checkpoint_sizes("vote")).values())
            return sum(sizes), sizes

    small_total, _ = asyncio.run(stored(30))
    large_total, large = asyncio.run(stored(120))

    # Four times the agents, four times the bytes (not sixteen): nothing is stored per
    # agent more than once, and the last checkpoint holds the vote, not the answers again.
    assert large_total <= 4.4 * small_total
    assert large[-1] < large_total / 3


def test_merge_by_id_merges_partial_updates_and_appends_new_records():
    tasks = [{"id": 1, "status": "pending", "title": "a"}, {"id": 2, "status": "pending", "title": "b"}]

    merged = merge_by_id(tasks, [{"id": 2, "status": "done"}, {"id": 3, "status": "pending", "title": "c"}])

    assert merged == [
        {"id": 1, "status": "pending", "title": "a"},
        {"id": 2, "status": "done", "title": "b"},
        {"id": 3, "status": "pending", "title": "c"},
    ]
    assert tasks[1]["status"] == "pending"  # the old list is left as it was
    assert merge_by_id(None, {"id": 1, "title": "x"}) == [{"id": 1, "title": "x"}]


def test_checkpoint_sizes_are_measured_in_sqlite_only():
    from graphswarm import UsageError

    model = ScriptedChatModel({"a0": ["Final answer: 1"], "a1": ["Final answer: 1"]})
    graph = create_collaborative([Agent(name=f"a{i}", model=model) for i in range(2)])

    async def main() -> None:
        async with Runner("memory") as runner:
            await runner.start(graph, "One?", run_id="sizes-in-memory")
            with pytest.raises(UsageError, match="SQLite"):
                await runner.checkpoint_sizes("sizes-in-memory")

    asyncio.run(main())


class Counting(TypedDict):
    items: Annotated[list[int], operator.add]


def test_checkpoints_of_langgraphs_own_sqlite_saver_are_read_and_continued(tmp_path):
    graph = StateGraph(Counting)
    graph.add_node("add", lambda state: {"items": [len(state["items"])]})
    graph.add_edge(START, "add")
    graph.add_conditional_edges("add", lambda state: END if len(state["items"]) >= 6 else "add", ["add", END])
    config = {"configurable": {"thread_id": "counting"}}
    path = str(tmp_path / "plain.sqlite")

    async def main() -> tuple[Any, list[Any]]:
        async with AsyncSqliteSaver.from_conn_string(path) as plain:
            before = graph.compile(checkpointer=plain, interrupt_after=["add"])
            await before.ainvoke({"items": []}, config)
            await before.ainvoke(None, config)  # two items, written by the plain saver
        async with aiosqlite.connect(path) as conn:
            after = graph.compile(checkpointer=FlatSqliteSaver(conn))
            state = await after.ainvoke(None, config)
            return state, [s.values async for s in after.aget_state_history(config)]

    state, history = asyncio.run(main())

    assert state["items"] == [0, 1, 2, 3, 4, 5]
    assert [len(values.get("items", [])) for values in history] == [6, 5, 4, 3, 2, 1, 0, 0]


def test_a_large_swarms_record_keeps_its_agents_names_not_their_defaults(tmp_path):
    import sqlite3

    from graphswarm import SwarmSpec

    model = ScriptedChatModel({f"a{i}": ["Final answer: 42"] for i in range(200)})
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name=f"a{i}", model=model) for i in range(199)]
        + [Agent(name="a199", model=model, role="critic")],
    )
    db = tmp_path / "runs.sqlite"

    async def main() -> Any:
        async with Runner(str(db)) as runner:
            await runner.start(spec, "What is six times seven?", run_id="big")
            return await runner.get("big")

    record = asyncio.run(main())

    # Read back whole: every field of every agent, as the spec recorded it.
    assert record.spec["agents"] == spec.to_record()["agents"]
    assert record.spec["agents"][-1]["role"] == "critic" and record.spec["agents"][0]["role"] == "assistant"
    assert record.unfinished_calls == []  # the calls are in the checkpoints' ledger, not here
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT length(value) FROM store WHERE key = 'big'").fetchone()
    assert stored < len(json.dumps(record.spec)) / 2  # the agents' names and models, not their defaults
