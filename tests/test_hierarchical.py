"""The hierarchical swarm, driven by scripted models: plan, delegate, work, review."""

from __future__ import annotations

import openai
import pytest
from httpx import Request, Response
from langchain_core.messages import AIMessage

from graphswarm import Agent, ConfigError, JoinPolicy, RunFailedError, Runner, RunStatus, SwarmSpec
from graphswarm.nodes import MAX_TOOL_STEPS
from graphswarm.testing import ScriptedChatModel, unreadable_replies

WORKERS = [
    Agent(name="researcher", role="researcher", strengths=["research", "market"]),
    Agent(name="writer", role="writer", strengths=["copy", "writing"]),
    Agent(name="coder", role="engineer", strengths=["code", "html"]),
]


def plan(*tasks: tuple[str, str]) -> dict:
    return {"tasks": [{"title": title, "description": "", "worker": worker} for title, worker in tasks]}


def review(answer: str, approved: bool = True, feedback: str = "") -> dict:
    return {"answer": answer, "approved": approved, "feedback": feedback}


def spec_for(model: ScriptedChatModel, **options) -> SwarmSpec:
    return SwarmSpec(architecture="hierarchical", agents=WORKERS, model=model, options=options)


def server_error() -> openai.InternalServerError:
    response = Response(500, request=Request("POST", "http://127.0.0.1/v1/chat/completions"))
    return openai.InternalServerError("boom", response=response, body=None)


async def run(spec: SwarmSpec, objective: str = "Build a site") -> object:
    async with Runner("memory") as runner:
        return await runner.start(spec, objective)


async def test_leader_plan_is_delegated_and_consolidated():
    model = ScriptedChatModel(
        {
            "leader": [plan(("market research", "researcher"), ("landing page html", "coder")), review("the site")],
            "researcher": ["three competitors"],
            "coder": ["<html>"],
        }
    )
    result = await run(spec_for(model))
    assert result.status is RunStatus.DONE
    assert result.final_answer == "the site"
    assert result.stop_reason == "approved"
    assert {(t["title"], t["worker"], t["assigned_by"]) for t in result.state["tasks"]} == {
        ("market research", "researcher", "leader"),
        ("landing page html", "coder", "leader"),
    }
    assert sorted(r["output"] for r in result.state["results"]) == ["<html>", "three competitors"]
    model.assert_complete()


async def test_tasks_for_unknown_workers_go_to_the_best_strength_match():
    model = ScriptedChatModel(
        {
            "leader": [
                plan(("write the copy", "nobody"), ("research the market", ""), ("html code", "??")),
                review("ok"),
            ],
            "writer": ["copy"],
            "researcher": ["facts"],
            "coder": ["code"],
        }
    )
    result = await run(spec_for(model))
    assigned = {t["title"]: (t["worker"], t["assigned_by"]) for t in result.state["tasks"]}
    assert assigned == {
        "write the copy": ("writer", "strengths"),
        "research the market": ("researcher", "strengths"),
        "html code": ("coder", "strengths"),
    }


async def test_equal_fits_spread_over_the_least_loaded_workers():
    model = ScriptedChatModel(
        {
            "leader": [plan(("a", ""), ("b", ""), ("c", "")), review("ok")],
            "researcher": ["1"],
            "writer": ["2"],
            "coder": ["3"],
        }
    )
    result = await run(spec_for(model))
    assert sorted(t["worker"] for t in result.state["tasks"]) == ["coder", "researcher", "writer"]


async def test_workers_see_their_task_and_the_objective():
    model = ScriptedChatModel({"leader": [plan(("market research", "researcher")), review("ok")], "researcher": ["r"]})
    await run(spec_for(model), objective="Open a bakery")
    prompt = model.calls_for("researcher")[0].prompt
    assert "market research" in prompt and "Open a bakery" in prompt


async def test_rejected_review_sends_feedback_into_the_next_round():
    model = ScriptedChatModel(
        {
            "leader": [
                plan(("draft", "writer")),
                review("draft 1", approved=False, feedback="add prices"),
                plan(("prices", "researcher")),
                review("draft 2 with prices"),
            ],
            "writer": ["text"],
            "researcher": ["prices"],
        }
    )
    result = await run(spec_for(model, max_rounds=3))
    assert result.final_answer == "draft 2 with prices"
    assert [r["round"] for r in result.state["reviews"]] == [1, 2]
    replan_prompt = model.calls_for("leader")[2].prompt
    assert "add prices" in replan_prompt and "draft 1" in replan_prompt


async def test_round_limit_ends_with_the_last_answer():
    model = ScriptedChatModel(
        {"leader": [plan(("draft", "writer")), review("only draft", approved=False, feedback="more")], "writer": ["t"]}
    )
    result = await run(spec_for(model, max_rounds=1))
    assert result.status is RunStatus.DONE
    assert result.stop_reason == "max_rounds"
    assert result.final_answer == "only draft"


async def test_plans_longer_than_max_tasks_are_cut():
    model = ScriptedChatModel(
        {"leader": [plan(("a", "writer"), ("b", "writer"), ("c", "writer")), review("ok")], "writer": ["1", "2"]}
    )
    result = await run(spec_for(model, max_tasks=2))
    assert len(result.state["tasks"]) == 2


async def test_join_continue_records_the_failed_worker_and_uses_the_others():
    model = ScriptedChatModel(
        {
            "leader": [plan(("a", "writer"), ("b", "coder")), review("partial")],
            "writer": [ValueError("writer broke")],
            "coder": ["code"],
        }
    )
    result = await run(spec_for(model, join=JoinPolicy.CONTINUE))
    outcome = {r["worker"]: (r["ok"], r["error"]) for r in result.state["results"]}
    assert outcome == {"writer": (False, "ValueError: writer broke"), "coder": (True, "")}
    assert "this task failed" in model.calls_for("leader")[1].prompt


async def test_join_fail_fast_fails_the_run_and_resume_retries_only_the_failed_worker():
    model = ScriptedChatModel(
        {
            "leader": [plan(("a", "writer"), ("b", "coder")), review("done")],
            "writer": [ValueError("writer broke"), "fixed"],
            "coder": ["code"],
        }
    )
    spec = spec_for(model, join=JoinPolicy.FAIL_FAST)
    async with Runner("memory") as runner:
        with pytest.raises(RunFailedError, match="writer broke"):
            await runner.start(spec, "objective", run_id="ff-1")
        assert (await runner.get("ff-1")).status is RunStatus.FAILED
        result = await runner.resume("ff-1", graph=spec.build())
    assert result.status is RunStatus.DONE
    assert len(model.calls_for("coder")) == 1
    model.assert_complete()


async def test_join_wait_pauses_after_the_others_finish_and_resume_retries_the_failed_one():
    model = ScriptedChatModel(
        {
            "leader": [plan(("a", "writer"), ("b", "coder")), review("done")],
            "writer": [ValueError("writer broke"), "fixed"],
            "coder": ["code"],
        }
    )
    spec = spec_for(model, join=JoinPolicy.WAIT)
    async with Runner("memory") as runner:
        paused = await runner.start(spec, "objective", run_id="wait-1")
        assert paused.status is RunStatus.INTERRUPTED
        assert paused.stop_reason == "worker_failed"
        assert paused.pauses[0]["agent"] == "writer"
        assert paused.pending["work"][0]["results"][0]["output"] == "code"
        result = await runner.resume("wait-1", graph=spec.build())
    assert result.status is RunStatus.DONE
    assert sorted(r["output"] for r in result.state["results"]) == ["code", "fixed"]
    assert len(model.calls_for("coder")) == 1


async def test_transient_errors_are_retried_by_the_retry_policy():
    model = ScriptedChatModel(
        {"leader": [plan(("a", "writer")), review("ok")], "writer": [server_error(), server_error(), "third time"]}
    )
    result = await run(spec_for(model))
    assert result.state["results"][0]["output"] == "third time"
    assert len(model.calls_for("writer")) == 3


def test_builder_validates_its_options():
    with pytest.raises(ConfigError, match="max_rounds"):
        spec_for(ScriptedChatModel([]), max_rounds=0).build()
    with pytest.raises(ConfigError, match="option join must be one of"):
        spec_for(ScriptedChatModel([]), join="sometimes").build()
    with pytest.raises(ConfigError, match="option delegate must be one of"):
        spec_for(ScriptedChatModel([]), delegate="nobody").build()
    with pytest.raises(ConfigError, match="unique"):
        SwarmSpec(architecture="hierarchical", agents=[WORKERS[0], WORKERS[0]], model=ScriptedChatModel([])).build()
    with pytest.raises(ConfigError, match="at least 1"):
        SwarmSpec(architecture="hierarchical", agents=[], model=ScriptedChatModel([])).build()


def test_the_graph_draws_offline_as_mermaid():
    mermaid = spec_for(ScriptedChatModel([])).build().compile().get_graph().draw_mermaid()
    for edge in ("__start__ --> plan", "plan -.-> work", "work --> consolidate", "consolidate -.-> plan"):
        assert edge in mermaid


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


async def test_workers_with_tools_call_them_and_answer_with_the_result():
    tool_call = AIMessage(content="", tool_calls=[{"name": "word_count", "args": {"text": "a b c"}, "id": "c1"}])
    model = ScriptedChatModel(
        {"leader": [plan(("count words", "counter")), review("3 words")], "counter": [tool_call, "There are 3 words."]}
    )
    counter = Agent(name="counter", strengths=["counting"], tools=[word_count])
    spec = SwarmSpec(architecture="hierarchical", agents=[counter], model=model)
    result = await run(spec)
    assert result.state["results"][0]["output"] == "There are 3 words."
    second_call = model.calls_for("counter")[1]
    assert second_call.tools == ["word_count"]
    assert second_call.messages[-1].content == "3"  # the tool's result, shown to the model
    assert result.usage["agents"]["counter"]["calls"] == 2


async def test_a_tool_loop_is_bounded():
    looping = AIMessage(content="", tool_calls=[{"name": "word_count", "args": {"text": "x"}, "id": "c"}])
    steps = [looping] * (MAX_TOOL_STEPS - 1) + ["giving up: 1 word"]
    model = ScriptedChatModel({"leader": [plan(("count", "counter")), review("ok")], "counter": steps})
    counter = Agent(name="counter", tools=[word_count])
    result = await run(SwarmSpec(architecture="hierarchical", agents=[counter], model=model))
    assert result.state["results"][0]["output"] == "giving up: 1 word"
    assert "used all your tool calls" in model.calls_for("counter")[-1].prompt


async def test_a_question_goes_to_every_worker_and_the_leader_is_checked_against_their_vote():
    """A one-line question is not split into tasks: every worker answers it (no plan
    call), so their answers are a vote, and a leader that contradicts it gives way."""
    model = ScriptedChatModel(
        {
            "leader": [review("It is 60.")],
            "researcher": ["36 + 34 = 70\nFinal answer: 70"],
            "writer": ["Final answer: 70"],
            "coder": ["Final answer: 71"],
        }
    )
    result = await run(spec_for(model), objective="What is 36 + 34?")
    assert {(t["worker"], t["assigned_by"]) for t in result.state["tasks"]} == {
        ("researcher", "everyone"), ("writer", "everyone"), ("coder", "everyone"),
    }  # fmt: skip
    assert len(model.calls_for("leader")) == 1  # the review only
    assert "Question: What is 36 + 34?" in model.calls_for("writer")[0].prompt  # asked as it is
    assert result.final_answer == "70"
    assert result.state["verdict_check"]["fell_back"]
    model.assert_complete()


async def test_a_rejected_answer_to_a_question_sends_the_feedback_to_every_worker():
    model = ScriptedChatModel(
        {
            "leader": [review("7", approved=False, feedback="show the sum"), review("70")],
            "researcher": ["Final answer: 70", "Final answer: 70"],
            "writer": ["Final answer: 70", "Final answer: 70"],
            "coder": ["Final answer: 70", "Final answer: 70"],
        }
    )
    result = await run(spec_for(model, max_rounds=2), objective="What is 36 + 34?")
    assert result.final_answer == "70"
    assert "show the sum" in model.calls_for("writer")[1].prompt
    model.assert_complete()


async def test_a_majority_for_the_question_survives_a_later_round_that_degrades():
    model = ScriptedChatModel(
        {
            "leader": [review("69", approved=False, feedback="check it"), review("I cannot say.", approved=False)],
            "researcher": ["Final answer: 70", "The leader's feedback on the last answer: check it"],
            "writer": ["Final answer: 70", "Final answer: 68"],
            "coder": ["Final answer: 71", "I am ready for the next question."],
        }
    )
    result = await run(spec_for(model, max_rounds=2), objective="What is 36 + 34?")
    assert result.stop_reason == "max_rounds"
    assert result.final_answer == "70"
    assert result.state["verdict_check"]["votes"] == 2  # round 1's vote, the best supported
    model.assert_complete()


@pytest.mark.parametrize(
    ("delegate", "objective", "planned"),
    [
        ("auto", "Plan the launch of a small bakery's website", True),
        ("auto", "Which of these is a fruit? A) car B) apple C) rock. Answer with the letter.", False),
        ("plan", "What is 36 + 34?", True),
        ("everyone", "Plan the launch of a small bakery's website", False),
    ],
)
async def test_delegate_chooses_between_a_plan_and_the_objective_for_everyone(delegate, objective, planned):
    leader = [plan(("research", "researcher")), review("done")] if planned else [review("done")]
    answers = [] if planned else ["done"]
    model = ScriptedChatModel({"leader": leader, "researcher": ["done"], "writer": answers, "coder": answers})
    result = await run(spec_for(model, delegate=delegate), objective=objective)
    assert {t["assigned_by"] for t in result.state["tasks"]} == ({"leader"} if planned else {"everyone"})
    model.assert_complete()


async def test_a_question_whose_plan_cannot_be_read_is_asked_to_every_worker_as_it_is():
    model = ScriptedChatModel(
        {
            "leader": [*unreadable_replies(), review("70")],
            "researcher": ["Final answer: 70"],
            "writer": ["Final answer: 70"],
            "coder": ["Final answer: 71"],
        }
    )
    result = await run(spec_for(model, delegate="plan"), objective="What is 36 + 34?")
    assert {t["assigned_by"] for t in result.state["tasks"]} == {"everyone"}
    prompt = model.calls_for("writer")[0].prompt
    assert "Question: What is 36 + 34?" in prompt and "plan could not be read" not in prompt
    assert result.final_answer == "70"
    model.assert_complete()
