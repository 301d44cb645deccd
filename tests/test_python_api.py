"""The Python API feels like LangGraph: builders return graphs that run with `invoke`
as well as `ainvoke`, take chat `messages` and answer with one, and runs show
themselves in a notebook."""

from __future__ import annotations

from collections import Counter

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphswarm import (
    Agent,
    Budget,
    Runner,
    RunStatus,
    SwarmContext,
    SwarmSpec,
    UsageError,
    create_collaborative,
    create_debate,
)
from graphswarm.architectures.hierarchical import create_hierarchical
from graphswarm.testing import ScriptedChatModel

DEBATERS = [Agent(name=name) for name in ("ann", "ben", "cat")]
WORKERS = [Agent(name="researcher", strengths=["research"]), Agent(name="writer", strengths=["writing"])]


def debate():
    script = {"ann": ["Final answer: 41", "Final answer: 42"], "ben": ["Final answer: 42", "Final answer: 42"]}
    script["cat"] = ["Final answer: 40", "Final answer: 42"]
    return create_debate(DEBATERS, model=ScriptedChatModel(script), rounds=2)


def collaborative():
    script = {"ann": ["Final answer: 7"], "ben": ["Final answer: 7"], "cat": ["Final answer: 8"]}
    return create_collaborative(DEBATERS, model=ScriptedChatModel(script))


def team(model: ScriptedChatModel, **options):
    return create_hierarchical(WORKERS, model=model, leader=Agent(name="leader"), **options)


def plan(*tasks: tuple[str, str]) -> dict:
    return {"tasks": [{"title": title, "description": "", "worker": worker} for title, worker in tasks]}


def review(answer: str) -> dict:
    return {"answer": answer, "approved": True, "feedback": ""}


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def comparable(state: dict) -> dict:
    """A final state without what differs between two executions (call ids, latencies)."""
    calls = Counter((c["agent"], c["node"]) for c in state["calls"])
    return {**{k: v for k, v in state.items() if k != "calls"}, "calls": calls}


# -- sync invoke --------------------------------------------------------------------


@pytest.mark.parametrize("build", [debate, collaborative], ids=["debate", "collaborative"])
async def test_invoke_gives_the_same_final_state_as_ainvoke(build):
    inputs = {"objective": "What is 6 times 7?"}
    awaited = await build().compile(checkpointer=InMemorySaver()).ainvoke(inputs, thread("t"))
    # invoke from a worker thread too: this test itself runs in an event loop
    called = build().compile(checkpointer=InMemorySaver()).invoke(inputs, thread("t"))
    assert called["final_answer"] == awaited["final_answer"] != ""
    assert comparable(called) == comparable(awaited)


def test_a_sync_run_pauses_for_plan_approval_and_resumes_with_a_command():
    model = ScriptedChatModel({"leader": [plan(("facts", "researcher")), review("done")], "researcher": ["f"]})
    graph = team(model, approve_plan=True).compile(checkpointer=InMemorySaver())

    paused = graph.invoke({"objective": "Write a note"}, thread("approval"))
    assert [i.value["stop_reason"] for i in paused["__interrupt__"]] == ["approval"]
    assert "final_answer" not in paused

    finished = graph.invoke(Command(resume={"action": "approve"}), thread("approval"))
    assert finished["final_answer"] == "done"
    assert finished["approvals"] == [{"round": 1, "action": "approve", "feedback": ""}]
    model.assert_complete()


def test_a_sync_run_pauses_inside_an_async_node_and_resumes():
    """A worker's failure under `join="wait"` pauses in the (async) worker node itself;
    resuming runs that worker again, then the run finishes."""
    model = ScriptedChatModel(
        {"leader": [plan(("facts", "researcher")), review("done")], "researcher": [ValueError("no"), "facts"]}
    )
    graph = team(model, join="wait").compile(checkpointer=InMemorySaver())

    paused = graph.invoke({"objective": "Write a note"}, thread("wait"))
    assert [i.value["stop_reason"] for i in paused["__interrupt__"]] == ["worker_failed"]

    finished = graph.invoke(Command(resume=True), thread("wait"))
    assert finished["final_answer"] == "done"
    assert [r["output"] for r in finished["results"]] == ["facts"]
    model.assert_complete()


def test_stream_runs_a_graph_synchronously_node_by_node():
    nodes = [node for chunk in debate().compile().stream({"objective": "6 x 7?"}) for node in chunk]
    assert nodes == [*["argue"] * 3, "assess", *["argue"] * 3, "assess", "verdict"]


# -- a budget without a Runner -----------------------------------------------------------


async def test_a_graph_you_compile_yourself_takes_its_budget_in_the_context():
    graph = collaborative().compile(checkpointer=InMemorySaver())

    paused = await graph.ainvoke(
        {"objective": "What is 6 times 7?"}, thread("capped"), context=SwarmContext(budget=Budget(max_calls=2))
    )

    assert [i.value["stop_reason"] for i in paused["__interrupt__"]] == ["call_cap"]
    assert len(graph.get_state(thread("capped")).tasks) == 3  # two answered, one waits for a higher cap


# -- messages in and out --------------------------------------------------------------


async def test_a_debate_takes_chat_messages_and_answers_with_an_ai_message():
    chat = [HumanMessage("hello"), AIMessage("hi, what can we do?"), {"role": "user", "content": "What is 6 x 7?"}]
    state = await debate().compile().ainvoke({"messages": chat})
    assert state["objective"] == "What is 6 x 7?"
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert answer.text == state["final_answer"] == "42"
    assert len(state["messages"]) == 4  # the conversation, then the answer


async def test_a_hierarchical_swarm_takes_chat_messages_and_answers_with_one_ai_message():
    model = ScriptedChatModel({"leader": [plan(("facts", "researcher")), review("the note")], "researcher": ["f"]})
    state = await team(model).compile().ainvoke({"messages": [{"role": "user", "content": "Write a note"}]})
    assert "Objective: Write a note" in model.calls_for("leader")[0].prompt
    assert [(type(m), m.text) for m in state["messages"]] == [(HumanMessage, "Write a note"), (AIMessage, "the note")]


async def test_a_graph_without_objective_or_human_message_says_what_it_needs():
    with pytest.raises(UsageError, match="needs an objective"):
        await debate().compile().ainvoke({"messages": [AIMessage("hello")]})


async def test_the_answer_message_is_kept_in_a_saved_run(tmp_path):
    model = ScriptedChatModel({name: ["Final answer: 42"] for name in ("ann", "ben", "cat")})
    spec = SwarmSpec(architecture="debate", agents=DEBATERS, model=model)
    async with Runner(str(tmp_path / "runs.sqlite")) as runner:
        run_id = (await runner.start(spec, "6 x 7?")).run_id
    async with Runner(str(tmp_path / "runs.sqlite")) as runner:  # loaded back from the file, without pickle
        saved = await runner.result(run_id)
    assert [(type(m), m.text) for m in saved.state["messages"]] == [(AIMessage, "42")]


# -- notebooks ------------------------------------------------------------------------


async def test_a_runner_opened_across_cells_runs_and_closes():
    model = ScriptedChatModel({name: ["Final answer: 42"] for name in ("ann", "ben", "cat")})
    runner = await Runner.open("memory")
    result = await runner.start(SwarmSpec(architecture="debate", agents=DEBATERS, model=model), "6 x 7?")
    await runner.close()
    assert result.status is RunStatus.DONE
    with pytest.raises(RuntimeError, match="async with Runner"):
        await runner.list()


async def test_a_finished_run_shows_itself_in_a_notebook():
    model = ScriptedChatModel({name: ["Final answer: forty-two, <b>surely</b>"] for name in ("ann", "ben", "cat")})
    async with Runner("memory") as runner:
        result = await runner.start(SwarmSpec(architecture="debate", agents=DEBATERS, model=model), "6 x 7?")
    html = result._repr_html_()
    assert "forty-two, &lt;b&gt;surely&lt;/b&gt;" in html  # the answer, escaped
    assert "<svg" in html  # the graph, drawn here
    assert "<script" not in html
    assert "forty-two" in result._repr_markdown_()
