"""Checkpoint size: bytes per step and file size, graphswarm vs hand-written LangGraph graphs.

Two workloads, each run once per side against the same fake OpenAI server
(``tools/fake_openai.py``, in a child process, no latency: this measures bytes, not time),
each side on its own SQLite file:

- a task loop of ``--tasks`` tasks (default 50): graphswarm's ``task_loop``
  (``SwarmSpec(architecture="task_loop", ...)`` run by ``Runner(<file>).start``: plan,
  then per task pick -> think -> review, then finish), against a hand-written
  ``StateGraph`` of the same shape (plan -> pick -> think -> review -> pick ... -> finish,
  ``ChatOpenAI`` straight to the server, a ``tasks`` list the review node writes whole,
  as a graph written by hand does), compiled with ``AsyncSqliteSaver``. The planner's
  plan is one task and each review adds the next one, so both sides do exactly
  ``--tasks`` tasks with the same model calls (checked on the server).
- a collaborative vote of ``--agents`` agents (default 1000): graphswarm's
  ``collaborative`` against a hand-written vote (``Send`` to N answer nodes calling the
  server through ``ChatOpenAI``, a deferred tally; ``AsyncSqliteSaver``).

Bytes per checkpoint count what the database keeps for it: its row (checkpoint and
metadata), the channel values stored with it (graphswarm keeps them beside the
checkpoint), and the writes pending on it (what the tasks of the step after it wrote).
The file size is the SQLite file's, after the run, closed and checkpointed (WAL folded in).

Usage::

    python tools/bench/checkpoints.py                   # 50 tasks, 1000 agents
    python tools/bench/checkpoints.py --tasks 20 --agents 200

Prints the numbers side by side; asserts nothing about them, exits 0 unless a run goes wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import sqlite3
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langgraph.types import Send
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench.servers import ProcessServer, check_server  # noqa: E402

GS_MODEL, BARE_MODEL = "bench-vote", "bare-vote"
OBJECTIVE = "What is six times seven? Reply with the number."
PLANNER, DOER = "bench-planner", "bench-doer"
BARE_PLANNER, BARE_DOER = "bare-planner", "bare-doer"
LOOP_OBJECTIVE = "Write a field guide to the birds of one valley, one bird per task."
RESULT = "The {title} nests in the reeds by the river; it sings at dawn and eats seeds and insects. " * 2
VALUES_TABLE = "graphswarm_channel_values"


# --------------------------------------------------------------------------
# Measuring a database
# --------------------------------------------------------------------------


@dataclass
class Stored:
    """What one run left in its database."""

    per_checkpoint: list[int]
    """Bytes per checkpoint, oldest first."""
    tables: int
    """Bytes of every checkpoint, channel value and write of the run."""
    file: int
    """The SQLite file's size."""
    record: int = 0
    """graphswarm's run record in the store (0 for the bare graph: it has none)."""

    @property
    def checkpoints(self) -> int:
        return len(self.per_checkpoint)


def measure(path: Path, thread_id: str) -> Stored:
    """Read the sizes straight from the SQLite file, after the run (closed)."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        values = (
            f"""+ coalesce((SELECT sum(length(v.value)) FROM {VALUES_TABLE} AS v
                WHERE v.thread_id = c.thread_id AND v.checkpoint_ns = c.checkpoint_ns
                AND v.checkpoint_id = c.checkpoint_id), 0)"""
            if VALUES_TABLE in tables
            else ""
        )
        query = f"""
            SELECT length(c.checkpoint) + coalesce(length(c.metadata), 0) {values}
                + coalesce((SELECT sum(length(w.value)) FROM writes AS w
                    WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
                    AND w.checkpoint_id = c.checkpoint_id), 0)
            FROM checkpoints AS c WHERE c.thread_id = ? AND c.checkpoint_ns = '' ORDER BY c.checkpoint_id
        """
        per_checkpoint = [int(size) for (size,) in conn.execute(query, (thread_id,))]
        # Everything of the thread, subgraph namespaces included.
        total = conn.execute(
            "SELECT coalesce(sum(length(checkpoint) + coalesce(length(metadata), 0)), 0) FROM checkpoints "
            "WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()[0]
        total += conn.execute(
            "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?", (thread_id,)
        ).fetchone()[0]
        if VALUES_TABLE in tables:
            total += conn.execute(
                f"SELECT coalesce(sum(length(value)), 0) FROM {VALUES_TABLE} WHERE thread_id = ?", (thread_id,)
            ).fetchone()[0]
        record = 0
        if "store" in tables:
            row = conn.execute("SELECT length(value) FROM store WHERE key = ?", (thread_id,)).fetchone()
            record = int(row[0]) if row else 0
    finally:
        conn.close()
    return Stored(per_checkpoint, int(total), path.stat().st_size, record)


# --------------------------------------------------------------------------
# The task loop
# --------------------------------------------------------------------------


def bird(i: int) -> str:
    return f"bird number {i}"


def loop_script(tasks: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(planner, doer) replies: a plan of one task, then per task the doer's result and a
    review adding the next task (the last adds none more than the cap runs), then the answer."""
    planner: list[dict[str, Any]] = [
        {"json": {"tasks": [{"title": f"Describe {bird(1)}", "description": "one page", "assignee": ""}]}}
    ]
    for i in range(1, tasks + 1):
        new = [{"title": f"Describe {bird(i + 1)}", "description": "one page", "assignee": ""}]
        planner.append({"json": {"objective_met": False, "new_tasks": new, "priorities": []}})
    planner.append({"content": "The field guide: " + ", ".join(bird(i) for i in range(1, tasks + 1))})
    doer = [{"content": RESULT.format(title=bird(i))} for i in range(1, tasks + 1)]
    return planner, doer


async def gs_task_loop(server: Any, workdir: Path, tasks: int) -> Stored:
    from graphswarm import Agent, Runner, RunStatus, SwarmSpec

    server.reset()
    planner, doer = loop_script(tasks)
    server.script(PLANNER, planner)
    server.script(DOER, doer)
    path = workdir / "gs-loop.sqlite"
    run_id = f"loop-{uuid.uuid4().hex[:8]}"
    spec = SwarmSpec(
        architecture="task_loop",
        agents=[Agent(name="doer", model=DOER)],
        leader=Agent(name="planner", model=PLANNER),
        base_url=server.url,
        options={"max_tasks": tasks, "tools": ["calculator"], "workspace": str(workdir / "workspace")},
    )
    async with Runner(str(path)) as runner:
        result = await runner.start(spec, LOOP_OBJECTIVE, run_id=run_id)
    done = [t for t in result.state.get("tasks", []) if t["status"] == "done"]
    if result.status is not RunStatus.DONE or len(done) != tasks:
        raise RuntimeError(f"graphswarm task loop went wrong: {result.status} {len(done)} tasks done")
    check_server(server, {PLANNER: tasks + 2, DOER: tasks})
    return measure(path, run_id)


class BareTask(TypedDict):
    id: int
    title: str
    description: str
    priority: int
    status: str
    result: str


class BareLoopState(TypedDict, total=False):
    objective: str
    tasks: list[BareTask]
    current: int
    outcome: str
    executed: int
    final_answer: str


def build_bare_loop(url: str, max_tasks: int) -> Any:
    """The task loop written by hand: the review node writes the whole task list."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    planner = ChatOpenAI(base_url=url, api_key="x", model=BARE_PLANNER, max_retries=2)
    doer = ChatOpenAI(base_url=url, api_key="x", model=BARE_DOER, max_retries=2)

    def new_tasks(tasks: list[BareTask], items: list[dict[str, Any]]) -> list[BareTask]:
        start = max((t["id"] for t in tasks), default=0)
        return [
            {"id": start + i, "title": item["title"], "description": item.get("description", ""),
             "priority": start + i, "status": "pending", "result": ""}
            for i, item in enumerate(items, start=1)
        ]  # fmt: skip

    async def plan(state: BareLoopState) -> dict[str, Any]:
        reply = await planner.ainvoke([SystemMessage("Plan tasks as JSON."), HumanMessage(state["objective"])])
        return {"tasks": new_tasks([], json.loads(reply.text)["tasks"]), "executed": 0}

    def pick(state: BareLoopState) -> dict[str, Any]:
        pending = sorted((t for t in state["tasks"] if t["status"] == "pending"), key=lambda t: t["priority"])
        if not pending or state.get("executed", 0) >= max_tasks:
            return {"current": 0}
        return {"current": pending[0]["id"], "outcome": ""}

    async def think(state: BareLoopState) -> dict[str, Any]:
        task = next(t for t in state["tasks"] if t["id"] == state["current"])
        reply = await doer.ainvoke([SystemMessage(f"Do this task: {task['title']}"), HumanMessage(state["objective"])])
        return {"outcome": reply.text}

    async def review(state: BareLoopState) -> dict[str, Any]:
        tasks = [
            {**t, "status": "done", "result": state["outcome"]} if t["id"] == state["current"] else t
            for t in state["tasks"]
        ]
        listing = "\n".join(f"[{t['id']}] {t['title']}: {t['status']}" for t in tasks)
        reply = await planner.ainvoke([SystemMessage("Review the task list as JSON."), HumanMessage(listing)])
        verdict = json.loads(reply.text)
        tasks += new_tasks(tasks, verdict["new_tasks"])
        return {"tasks": tasks, "executed": state.get("executed", 0) + 1, "current": 0}

    async def finish(state: BareLoopState) -> dict[str, Any]:
        results = "\n".join(t["result"] for t in state["tasks"] if t["status"] == "done")
        reply = await planner.ainvoke([SystemMessage("Write the final answer."), HumanMessage(results)])
        return {"final_answer": reply.text}

    graph = StateGraph(BareLoopState)
    for name, node in (("plan", plan), ("pick", pick), ("think", think), ("review", review), ("finish", finish)):
        graph.add_node(name, node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "pick")
    graph.add_conditional_edges("pick", lambda s: "think" if s.get("current") else "finish", ["think", "finish"])
    graph.add_edge("think", "review")
    graph.add_edge("review", "pick")
    graph.add_edge("finish", END)
    return graph


async def bare_task_loop(server: Any, workdir: Path, tasks: int) -> Stored:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    server.reset()
    planner, doer = loop_script(tasks)
    server.script(BARE_PLANNER, planner)
    server.script(BARE_DOER, doer)
    path = workdir / "bare-loop.sqlite"
    thread_id = f"bare-loop-{uuid.uuid4().hex[:8]}"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        compiled = build_bare_loop(server.url, tasks).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}
        state = await compiled.ainvoke({"objective": LOOP_OBJECTIVE}, config, durability="sync")
    if len([t for t in state["tasks"] if t["status"] == "done"]) != tasks:
        raise RuntimeError("bare task loop went wrong")
    check_server(server, {BARE_PLANNER: tasks + 2, BARE_DOER: tasks})
    return measure(path, thread_id)


# --------------------------------------------------------------------------
# The collaborative vote
# --------------------------------------------------------------------------


def vote_script(n: int) -> list[dict[str, Any]]:
    """N answers: two thirds say 42, the rest 41."""
    return [{"content": f"Six sevens.\nFinal answer: {41 if i % 3 == 2 else 42}"} for i in range(n)]


class BareVoteState(TypedDict, total=False):
    objective: str
    answers: Annotated[list[dict[str, str]], operator.add]
    final_answer: str
    agreement: float


class BareVoter(TypedDict):
    objective: str
    agent: str


def build_bare(url: str, names: list[str]) -> Any:
    """The vote written by hand: `Send` to N answer nodes, then a deferred tally."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    model = ChatOpenAI(base_url=url, api_key="x", model=BARE_MODEL, max_retries=2)

    def fan_out(state: BareVoteState) -> list[Send]:
        return [Send("answer", {"objective": state["objective"], "agent": name}) for name in names]

    async def answer(state: BareVoter) -> dict[str, Any]:
        system = f"You are {state['agent']}. Answer, ending with a line 'Final answer: <answer>'."
        reply = await model.ainvoke([SystemMessage(system), HumanMessage(state["objective"])])
        return {"answers": [{"agent": state["agent"], "text": reply.text}]}

    def tally(state: BareVoteState) -> dict[str, Any]:
        votes = Counter(a["text"].rsplit(":", 1)[-1].strip() for a in state["answers"])
        winner, count = votes.most_common(1)[0]
        return {"final_answer": winner, "agreement": count / len(state["answers"])}

    graph = StateGraph(BareVoteState)
    graph.add_node("answer", answer, input_schema=BareVoter)
    graph.add_node("tally", tally, defer=True)
    graph.add_conditional_edges(START, fan_out, ["answer"])
    graph.add_edge("answer", "tally")
    graph.add_edge("tally", END)
    return graph


async def gs_vote(server: Any, workdir: Path, n: int) -> Stored:
    from graphswarm import Agent, Runner, RunStatus, SwarmSpec

    server.reset()
    server.script(GS_MODEL, vote_script(n))
    path = workdir / "gs-vote.sqlite"
    run_id = f"vote-{uuid.uuid4().hex[:8]}"
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name=f"a{i}") for i in range(n)],
        base_url=server.url,
        model=GS_MODEL,
    )
    async with Runner(str(path)) as runner:
        result = await runner.start(spec, OBJECTIVE, run_id=run_id)
    if result.status is not RunStatus.DONE or result.final_answer != "42" or len(result.calls) != n:
        raise RuntimeError(f"graphswarm vote went wrong: {result.status} {result.final_answer!r}")
    check_server(server, {GS_MODEL: n})
    return measure(path, run_id)


async def bare_vote(server: Any, workdir: Path, n: int) -> Stored:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    server.reset()
    server.script(BARE_MODEL, vote_script(n))
    path = workdir / "bare-vote.sqlite"
    thread_id = f"bare-vote-{uuid.uuid4().hex[:8]}"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        compiled = build_bare(server.url, [f"a{i}" for i in range(n)]).compile(checkpointer=saver)
        state = await compiled.ainvoke(
            {"objective": OBJECTIVE}, {"configurable": {"thread_id": thread_id}}, durability="sync"
        )
    if state.get("final_answer") != "42":
        raise RuntimeError("bare vote went wrong")
    check_server(server, {BARE_MODEL: n})
    return measure(path, thread_id)


# --------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------


def kb(size: float) -> str:
    return f"{size / 1024:.1f} KB"


def row(label: str, gs: float, bare: float, fmt: Any = kb) -> str:
    ratio = f"{gs / bare:.2f}x" if bare else "-"
    return f"| {label} | {fmt(gs)} | {fmt(bare)} | {ratio} |"


def growth(sizes: list[int]) -> float:
    """Least-squares slope of bytes per checkpoint against the checkpoint's index."""
    n = len(sizes)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(sizes) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(sizes))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def loop_table(tasks: int, gs: Stored, bare: Stored) -> list[str]:
    def per_task(stored: Stored, share: float) -> int:
        # The checkpoints of the task `share` of the way through the run: the mean of a window.
        sizes = stored.per_checkpoint
        middle = min(len(sizes) - 1, int(share * len(sizes)))
        window = sizes[max(0, middle - 3) : middle + 3]
        return round(sum(window) / len(window))

    def early_late(stored: Stored) -> tuple[float, float]:
        sizes = stored.per_checkpoint
        tenth = max(1, len(sizes) // 10)
        return sum(sizes[:tenth]) / tenth, sum(sizes[-tenth:]) / tenth

    g_early, g_late = early_late(gs)
    b_early, b_late = early_late(bare)
    return [
        f"Task loop, {tasks} tasks (graphswarm task_loop vs a hand-written LangGraph loop)",
        "",
        "| | graphswarm | LangGraph | graphswarm / LangGraph |",
        "|---|---|---|---|",
        row("checkpoints", gs.checkpoints, bare.checkpoints, lambda v: str(int(v))),
        row("bytes per checkpoint, first tenth of the run", g_early, b_early),
        row("bytes per checkpoint, last tenth of the run", g_late, b_late),
        row("late / early", g_late / g_early, b_late / b_early, lambda v: f"{v:.2f}x"),
        row(
            "growth per checkpoint (slope)",
            growth(gs.per_checkpoint),
            growth(bare.per_checkpoint),
            lambda v: f"{v:.0f} B",
        ),
        row("bytes per checkpoint, mid-run", per_task(gs, 0.5), per_task(bare, 0.5)),
        row("largest checkpoint", max(gs.per_checkpoint), max(bare.per_checkpoint)),
        row("all checkpoints, values and writes", gs.tables, bare.tables),
        row("per task", gs.tables / tasks, bare.tables / tasks),
        row("file size", gs.file, bare.file),
        row("run record (store)", gs.record, bare.record),
    ]


def vote_table(n: int, gs: Stored, bare: Stored) -> list[str]:
    return [
        f"Collaborative vote, {n} agents (graphswarm collaborative vs the hand-written vote)",
        "",
        "| | graphswarm | LangGraph | graphswarm / LangGraph |",
        "|---|---|---|---|",
        row("checkpoints", gs.checkpoints, bare.checkpoints, lambda v: str(int(v))),
        row("last checkpoint", gs.per_checkpoint[-1], bare.per_checkpoint[-1]),
        row("largest checkpoint", max(gs.per_checkpoint), max(bare.per_checkpoint)),
        row("all checkpoints, values and writes", gs.tables, bare.tables),
        row("bytes per agent call", gs.tables / n, bare.tables / n, lambda v: f"{v:.0f} B"),
        row("file size", gs.file, bare.file),
        row("file bytes per agent call", gs.file / n, bare.file / n, lambda v: f"{v:.0f} B"),
        row("run record (store)", gs.record, bare.record),
    ]


async def main(args: argparse.Namespace) -> None:
    server = ProcessServer(latency_ms=0)
    try:
        with tempfile.TemporaryDirectory(prefix="gs-bench-checkpoints-") as tmp:
            workdir = Path(tmp)
            lines: list[str] = []
            if args.tasks:
                gs, bare = (
                    await gs_task_loop(server, workdir, args.tasks),
                    await bare_task_loop(server, workdir, args.tasks),
                )
                lines += [*loop_table(args.tasks, gs, bare), ""]
                if args.per_checkpoint:
                    lines += [f"graphswarm per checkpoint: {gs.per_checkpoint}", ""]
                    lines += [f"LangGraph per checkpoint: {bare.per_checkpoint}", ""]
            if args.agents:
                gs, bare = await gs_vote(server, workdir, args.agents), await bare_vote(server, workdir, args.agents)
                lines += vote_table(args.agents, gs, bare)
                if args.per_checkpoint:
                    lines += ["", f"graphswarm per checkpoint: {gs.per_checkpoint}"]
                    lines += [f"LangGraph per checkpoint: {bare.per_checkpoint}"]
            print("\n".join(lines))
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50, help="tasks of the task loop (0: skip it)")
    parser.add_argument("--agents", type=int, default=1000, help="agents of the vote (0: skip it)")
    parser.add_argument("--per-checkpoint", action="store_true", help="also print every checkpoint's bytes")
    asyncio.run(main(parser.parse_args()))
