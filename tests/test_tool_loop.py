"""One tool loop: an agent with tools gets the same repeat refusal and step cap in every
architecture, whether its loop runs inside one node (`ask`) or one node run per step
(the task loop's `think` and `act`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.nodes import MAX_TOOL_STEPS, REPEATED_CALL, TOOL_STEPS_USED
from graphswarm.testing import ScriptedCall, ScriptedChatModel

ARCHITECTURES = ["task_loop", "collaborative", "hierarchical"]


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def count_words(text: str, call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "word_count", "args": {"text": text}, "id": call_id}])


def others(architecture: str, answer: str) -> dict[str, list]:
    """The script of everyone but the counter: a planner/leader, or a second voter."""
    if architecture == "task_loop":
        planner = [{"tasks": [{"title": "Count", "description": "", "assignee": "counter"}]}]
        return {"planner": [*planner, {"objective_met": True, "new_tasks": [], "priorities": []}, answer]}
    if architecture == "hierarchical":  # a question goes to the worker as it is: no plan
        return {"leader": [{"answer": answer, "approved": True, "feedback": ""}]}
    return {"voter": [f"Final answer: {answer}"]}


async def run(architecture: str, model: ScriptedChatModel, workspace: Path) -> None:
    counter = Agent(name="counter", strengths=["counting"], tools=[word_count])
    agents = [counter, Agent(name="voter")] if architecture == "collaborative" else [counter]
    # The task loop's counter gets its own tool only (no built-in ones).
    options = {"tools": [], "workspace": workspace} if architecture == "task_loop" else {}
    spec = SwarmSpec(architecture=architecture, agents=agents, model=model, options=options)
    async with Runner("memory") as runner:
        await runner.start(spec, "How many words are in 'a b c'?")


def tool_results(call: ScriptedCall) -> list[tuple[str, str]]:
    """What the model was shown of its tool calls: (content, status) of each result."""
    return [(str(m.content), m.status) for m in call.messages if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
async def test_the_same_tool_call_a_third_time_is_refused_in_every_architecture(architecture, tmp_path):
    again = [count_words("a b c", f"c{i}") for i in range(3)]
    model = ScriptedChatModel({**others(architecture, "3"), "counter": [*again, "Final answer: 3"]})
    await run(architecture, model, tmp_path)

    calls = model.calls_for("counter")
    assert len(calls) == 4
    assert tool_results(calls[-1]) == [("3", "success"), ("3", "success"), (REPEATED_CALL, "error")]
    model.assert_complete()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
async def test_an_agent_that_keeps_calling_tools_must_answer_at_the_step_cap(architecture, tmp_path):
    # Different arguments every time: nothing is refused, only the cap stops the loop.
    calls = [count_words("x " * i, f"c{i}") for i in range(MAX_TOOL_STEPS - 1)]
    never_sent = count_words("one more", "late")
    model = ScriptedChatModel({**others(architecture, "5"), "counter": [*calls, "Final answer: 5", never_sent]})
    await run(architecture, model, tmp_path)

    made = model.calls_for("counter")
    assert len(made) == MAX_TOOL_STEPS
    assert [c.tools for c in made[:-1]] == [["word_count"]] * (MAX_TOOL_STEPS - 1)
    assert made[-1].tools == []  # the last call offers no tools and asks for the answer
    assert made[-1].messages[-1].content == TOOL_STEPS_USED
    assert model.remaining() == {"counter": 1}
