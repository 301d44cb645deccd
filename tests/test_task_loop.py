"""The task loop: a BabyAGI task list, AutoGPT-style agents with tools, delegation, stops."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from graphswarm import (
    Agent,
    Budget,
    ConfigError,
    Runner,
    RunStatus,
    StopReason,
    UsageError,
    create_debate,
    create_task_loop,
)
from graphswarm.architectures.blocks import UNPLANNED_TASK
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel, unreadable_replies


def tasks(*titles: str, assignee: str = "") -> dict:
    return {"tasks": [{"title": t, "description": "", "assignee": assignee} for t in titles]}


def review(*, met: bool = False, new: tuple[str, ...] = (), order: tuple[int, ...] = ()) -> dict:
    return {
        "objective_met": met,
        "new_tasks": [{"title": t, "description": "", "assignee": ""} for t in new],
        "priorities": list(order),
    }


def tool_call(name: str, call_id: str = "c1", **args) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


def loop(model: ScriptedChatModel, workspace: Path, agents: tuple[str, ...] = ("doer",), **kwargs):
    return create_task_loop(
        [Agent(name=name, model=model) for name in agents],
        leader=Agent(name="planner", model=model),
        workspace=workspace,
        **kwargs,
    )


async def run(graph, objective: str = "Write a short report", *, db: str = "memory", **kwargs):
    async with Runner(db, **{k: kwargs.pop(k) for k in ("memory", "embeddings") if k in kwargs}) as runner:
        return await runner.start(graph, objective, **kwargs)


def titles(result, status: str) -> list[str]:
    return [t["title"] for t in result.state["tasks"] if t["status"] == status]


def test_tasks_are_created_executed_with_tools_and_the_objective_is_met(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Compute the total", "Write the report"),
                review(),
                review(met=True),
                "The total is 42; the report is in report.md.",
            ],
            "doer": [
                tool_call("calculator", expression="17 + 25"),
                "42",
                tool_call("write_file", path="report.md", content="Total: 42"),
                "written",
            ],
        }
    )
    result = asyncio.run(run(loop(model, workspace)))

    assert result.status is RunStatus.DONE
    assert result.stop_reason == StopReason.OBJECTIVE_MET
    assert result.final_answer == "The total is 42; the report is in report.md."
    assert titles(result, "done") == ["Compute the total", "Write the report"]
    assert [(u["tool"], u["output"]) for u in result.state["tool_uses"]] == [
        ("calculator", "42"),
        ("write_file", "wrote 9 characters to report.md"),
    ]
    assert (workspace / "report.md").read_text() == "Total: 42"
    # The agent saw the tool's result before answering.
    assert "42" in model.calls_for("doer")[1].messages[-1].content
    model.assert_complete()


def test_the_planner_adds_tasks_and_reorders_the_pending_ones(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Draft"),
                review(new=("Polish", "Fact-check"), order=(3, 2)),
                review(),
                review(),
                "final",
            ],
            "doer": ["draft", "checked", "polished"],
        }
    )
    result = asyncio.run(run(loop(model, workspace)))

    done = [t for t in result.state["tasks"] if t["status"] == "done"]
    assert [t["title"] for t in done] == ["Draft", "Polish", "Fact-check"]  # listed in id order
    order = [call.messages[-1].content for call in model.calls_for("doer")]
    assert ["Fact-check" in order[1], "Polish" in order[2]] == [True, True]
    assert result.stop_reason == StopReason.NO_TASKS


def test_a_task_with_the_same_text_as_another_is_dropped(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Write the intro"),
                review(new=("write the intro!", "Write the outro")),
                review(),
                "final",
            ],
            "doer": ["intro", "outro"],
        }
    )
    result = asyncio.run(run(loop(model, workspace)))

    dropped = [t for t in result.state["tasks"] if t["status"] == "dropped"]
    assert [(t["title"], t["duplicate_of"]) for t in dropped] == [("write the intro!", 1)]
    assert titles(result, "done") == ["Write the intro", "Write the outro"]


def test_a_task_close_in_meaning_to_another_is_dropped_by_memory_similarity(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Write the homepage copy"),
                review(new=("Write homepage copy", "Pick a colour palette")),
                review(),
                "final",
            ],
            "doer": ["copy", "palette"],
        }
    )
    graph = loop(model, workspace)
    result = asyncio.run(run(graph, memory="memory", embeddings=KeywordEmbeddings()))

    dropped = [t for t in result.state["tasks"] if t["status"] == "dropped"]
    assert [(t["title"], t["duplicate_of"]) for t in dropped] == [("Write homepage copy", 1)]
    assert titles(result, "done") == ["Write the homepage copy", "Pick a colour palette"]


def test_an_agent_sees_earlier_results_with_its_task(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Find the opening hours", "Write the opening hours page"),
                review(),
                review(met=True),
                "ok",
            ],
            "doer": ["The bakery opens at seven", "page written"],
        }
    )
    asyncio.run(run(loop(model, workspace)))

    second = model.calls_for("doer")[1].messages[-1].content
    assert "Results of earlier tasks:\n- Find the opening hours: The bakery opens at seven" in second


def test_with_memory_an_agent_recalls_the_earlier_results_closest_to_its_task(workspace):
    model = ScriptedChatModel(
        {
            "planner": [
                tasks("Find the bakery opening hours", "Write the bakery opening hours page"),
                review(),
                review(met=True),
                "ok",
            ],
            "doer": ["The bakery opening hours are seven to three", "page written"],
        }
    )
    asyncio.run(run(loop(model, workspace), memory="memory", embeddings=KeywordEmbeddings()))

    second = model.calls_for("doer")[1].messages[-1].content
    assert "(doer, result) The bakery opening hours are seven to three" in second
    assert "Results of earlier tasks" not in second


def test_a_step_run_again_after_a_crash_does_not_take_its_own_tasks_for_duplicates(workspace):
    from graphswarm.memory import SharedMemory, open_chroma

    # What the plan step posted before the process died: its task, in the run's memory.
    embeddings = KeywordEmbeddings()
    SharedMemory(open_chroma("memory"), "rerun", embeddings=embeddings).post(
        "Write the homepage copy", agent="planner", kind="task", task_id="1"
    )
    model = ScriptedChatModel({"planner": [tasks("Write the homepage copy"), review(), "final"], "doer": ["copy"]})
    result = asyncio.run(run(loop(model, workspace), memory="memory", embeddings=embeddings, run_id="rerun"))

    assert titles(result, "done") == ["Write the homepage copy"]
    assert titles(result, "dropped") == []


def test_an_agent_that_keeps_calling_tools_must_answer_after_max_steps(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Count"), review(met=True), "final"],
            "doer": [
                tool_call("calculator", "c1", expression="1+1"),
                tool_call("calculator", "c2", expression="2+2"),
                "4, finally",
            ],
        }
    )
    result = asyncio.run(run(loop(model, workspace, max_steps=3)))

    last = model.calls_for("doer")[-1]
    assert last.tools == []  # the last step offers no tools
    assert "used all your tool calls" in last.messages[-1].content
    assert result.state["tasks"][0]["result"] == "4, finally"


def test_the_same_tool_call_made_again_and_again_is_refused(workspace):
    again = [tool_call("calculator", f"c{i}", expression="2 + 2") for i in range(3)]
    model = ScriptedChatModel(
        {
            "planner": [tasks("Add"), review(met=True), "final"],
            "doer": [*again, "4"],
        }
    )
    result = asyncio.run(run(loop(model, workspace)))

    outputs = [u["output"] for u in result.state["tool_uses"]]
    assert outputs[:2] == ["4", "4"]
    assert outputs[2].startswith("Refused: you already made this exact call")


def test_a_task_can_be_handed_to_a_debate_subgraph(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Is 17 + 25 = 42?", assignee="debate"), review(met=True), "Yes: 42."],
            "ann": ["Final answer: 42"],
            "ben": ["Final answer: 42"],
        }
    )
    debate = create_debate([Agent(name="ann", model=model), Agent(name="ben", model=model)])
    result = asyncio.run(run(loop(model, workspace, subgraphs={"debate": debate})))

    task = result.state["tasks"][0]
    assert (task["assignee"], task["status"], task["result"]) == ("debate", "done", "42")
    # The debaters' calls are in the run's ledger, and were asked about the task.
    assert {c["agent"] for c in result.state["calls"]} >= {"ann", "ben"}
    assert "Is 17 + 25 = 42?" in model.calls_for("ann")[0].prompt
    assert result.final_answer == "Yes: 42."


def delegated_debate(workspace: Path) -> tuple[ScriptedChatModel, object]:
    """A loop whose one task goes to a debate that agrees in its second round."""
    model = ScriptedChatModel(
        {
            "planner": [tasks("Is it 42?", assignee="debate"), review(met=True), "yes"],
            "ann": ["Final answer: 41", "Final answer: 42"],
            "ben": ["Final answer: 42", "Final answer: 42"],
        }
    )
    debate = create_debate([Agent(name="ann", model=model), Agent(name="ben", model=model)], rounds=3)
    graph = loop(model, workspace, subgraphs={"debate": debate})
    return model, graph


def test_a_pause_inside_a_delegated_debate_resumes_inside_it(workspace):
    model, graph = delegated_debate(workspace)

    async def scenario():
        async with Runner("memory") as runner:
            paused = await runner.start(graph, "Check a sum", run_id="sub", budget=Budget(max_calls=3))
            return paused, await runner.resume("sub", graph=graph, budget=Budget(max_calls=20))

    paused, resumed = asyncio.run(scenario())
    assert paused.stop_reason == StopReason.CALL_CAP
    assert {p["node"] for p in paused.pauses} == {"argue"}  # paused in the debate's second round
    assert resumed.status is RunStatus.DONE
    # The debate's first round was not argued again.
    assert [c.key for c in model.calls] == ["planner", "ann", "ben", "ann", "ben", "planner", "planner"]
    model.assert_complete()


def test_caps_count_the_calls_a_paused_subgraph_already_made(workspace, db_url, run_id):
    model, graph = delegated_debate(workspace)

    async def scenario():
        async with Runner(db_url) as runner:
            await runner.start(graph, "Check a sum", run_id=run_id, budget=Budget(max_calls=3))
            # 3 calls made (the plan, the debate's first round): 2 more fit under a cap of 5.
            return await runner.resume(run_id, graph=graph, budget=Budget(max_calls=5))

    again = asyncio.run(scenario())
    assert again.stop_reason == StopReason.CALL_CAP
    assert len(model.calls) == 5
    # The paused debate's calls were read from its own checkpoints (found by the step
    # they run in, on every backend), so none of them is also kept as unfinished.
    assert len(again.calls) == 5


def test_architecture_names_build_subgraphs_from_the_loops_own_agents(workspace):
    graph = loop(ScriptedChatModel([]), workspace, agents=("ann", "ben"), subgraphs=["debate"])
    assert "delegate" in graph.nodes


def test_the_run_stops_when_no_tasks_are_left(workspace):
    model = ScriptedChatModel({"planner": [tasks("Only task"), review(), "final"], "doer": ["done"]})
    result = asyncio.run(run(loop(model, workspace)))
    assert result.stop_reason == StopReason.NO_TASKS


def test_the_run_stops_at_the_task_cap(workspace):
    model = ScriptedChatModel(
        {"planner": [tasks("One", "Two"), review(new=("Three",)), review(), "final"], "doer": ["1", "2"]}
    )
    result = asyncio.run(run(loop(model, workspace, max_tasks=2)))

    assert result.status is RunStatus.DONE
    assert result.stop_reason == StopReason.TASK_CAP
    assert titles(result, "pending") == ["Three"]


def test_the_run_stops_cleanly_between_tasks_at_the_token_cap(workspace):
    def script():
        return ScriptedChatModel({"planner": [tasks("One", "Two"), review(), review(), "final"], "doer": ["1", "2"]})

    uncapped = asyncio.run(run(loop(script(), workspace)))
    plan_, think = (c["input_tokens"] + c["output_tokens"] for c in uncapped.calls[:2])
    # The cap is crossed by the first review: no call is refused, the loop stops before task two.
    cap = plan_ + think + 1
    result = asyncio.run(run(loop(script(), workspace), budget=Budget(max_tokens=cap)))

    assert result.status is RunStatus.DONE
    assert result.stop_reason == StopReason.TOKEN_CAP
    assert titles(result, "pending") == ["Two"]
    assert len(result.calls) == 3
    assert result.final_answer == "## One\n1"  # the results so far, without another call


def test_the_run_stops_cleanly_between_tasks_at_the_time_cap(workspace):
    # The time runs out between two requests: here while the caller handles an update.
    def slow_after_review(node: str, update: dict) -> None:
        if node == "review":
            time.sleep(2.5)

    model = ScriptedChatModel({"planner": [tasks("One", "Two"), review()], "doer": ["1"]})
    result = asyncio.run(run(loop(model, workspace), budget=Budget(max_seconds=2), on_update=slow_after_review))

    assert result.stop_reason == StopReason.TIME_CAP
    assert titles(result, "pending") == ["Two"]


def test_a_request_still_running_at_the_time_cap_is_cut_off_and_the_run_pauses(workspace):
    class SlowReview(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            if run_manager and run_manager.metadata.get("langgraph_node") == "review":
                await asyncio.sleep(30)
            return self._generate(messages, stop, run_manager, **kwargs)

    model = SlowReview({"planner": [tasks("One", "Two"), review()], "doer": ["1"]})
    started = time.monotonic()
    result = asyncio.run(run(loop(model, workspace), budget=Budget(max_seconds=2)))

    assert time.monotonic() - started < 15
    assert (result.status, result.stop_reason) == (RunStatus.INTERRUPTED, StopReason.TIME_CAP)
    assert result.pauses[0]["node"] == "review"
    assert [c["node"] for c in result.calls if "error" in c] == ["review"]


def test_a_person_answers_an_agents_question(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Choose a name"), review(met=True), "It is called Crumbs."],
            "doer": [tool_call("ask_human", question="Which name do you like?"), "Crumbs"],
        }
    )

    async def scenario():
        async with Runner("memory") as runner:
            graph = loop(model, workspace)
            paused = await runner.start(graph, "Name the bakery", run_id="ask")
            return paused, await runner.resume("ask", graph=graph, decision={"action": "answer", "text": "Crumbs"})

    paused, resumed = asyncio.run(scenario())
    assert paused.status is RunStatus.INTERRUPTED and paused.stop_reason == StopReason.HUMAN
    assert paused.pauses[0]["question"] == "Which name do you like?"
    assert resumed.final_answer == "It is called Crumbs."
    assert model.calls_for("doer")[1].messages[-1].content == "Crumbs"
    assert resumed.state["decisions"][0]["action"] == "answer"


def test_a_person_can_stop_the_run_at_a_pause(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Ask first", "Never reached")],
            "doer": [tool_call("ask_human", question="Go on?")],
        }
    )

    async def scenario():
        async with Runner("memory") as runner:
            graph = loop(model, workspace)
            await runner.start(graph, "Do things", run_id="stop")
            return await runner.resume("stop", graph=graph, decision={"action": "stop"})

    result = asyncio.run(scenario())
    assert result.status is RunStatus.DONE
    assert result.stop_reason == StopReason.STOPPED
    assert titles(result, "pending") == ["Ask first", "Never reached"]
    model.assert_complete()


def test_risky_tools_wait_for_approval_and_a_refusal_reaches_the_agent(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Save the notes"), review(met=True), "final"],
            "doer": [tool_call("write_file", path="notes.md", content="secret plan"), "I could not save them"],
        }
    )

    async def scenario():
        async with Runner("memory") as runner:
            graph = loop(model, workspace, approve_tools=["write_file"])
            paused = await runner.start(graph, "Save notes", run_id="risky")
            return paused, await runner.resume("risky", graph=graph, decision={"action": "reject", "feedback": "no"})

    paused, resumed = asyncio.run(scenario())
    assert paused.stop_reason == StopReason.APPROVAL
    assert "write_file" in paused.pauses[0]["detail"]
    assert not (workspace / "notes.md").exists()
    assert "A person refused this call. no" in model.calls_for("doer")[1].messages[-1].content
    assert resumed.status is RunStatus.DONE


def test_a_decision_for_a_run_that_waits_for_none_is_refused_and_changes_nothing(workspace):
    model = ScriptedChatModel({"planner": [tasks("One"), review(met=True), "final"], "doer": ["1"]})

    async def scenario():
        async with Runner("memory") as runner:
            graph = loop(model, workspace)
            paused = await runner.start(graph, "Do one thing", run_id="capped", budget=Budget(max_calls=2))
            with pytest.raises(UsageError, match="not waiting for a decision .*call_cap"):
                await runner.resume("capped", graph=graph, decision={"action": "approve"})
            return paused, await runner.result("capped", graph=graph)

    paused, after = asyncio.run(scenario())
    assert after.state == paused.state and after.pauses == paused.pauses


def test_ask_human_is_a_tool_only_when_enabled(workspace):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Decide"), review(met=True), "final"],
            "doer": [tool_call("ask_human", question="Which?"), "decided alone"],
        }
    )
    result = asyncio.run(run(loop(model, workspace, tools=["calculator"])))

    assert result.status is RunStatus.DONE
    assert "no tool named 'ask_human'" in result.state["tool_uses"][0]["output"]


def test_file_tools_refuse_paths_outside_the_workspace(workspace, tmp_path):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Escape"), review(met=True), "final"],
            "doer": [tool_call("write_file", path="../escaped.txt", content="x"), "refused"],
        }
    )
    result = asyncio.run(run(loop(model, workspace)))

    use = result.state["tool_uses"][0]
    assert use["ok"] is False and "outside" in use["output"]
    assert not (tmp_path / "escaped.txt").exists()


def test_each_run_gets_its_own_workspace_beside_the_database(tmp_path):
    model = ScriptedChatModel(
        {
            "planner": [tasks("Save"), review(met=True), "final"],
            "doer": [tool_call("write_file", path="a.txt", content="hello"), "saved"],
        }
    )
    graph = create_task_loop([Agent(name="doer", model=model)], leader=Agent(name="planner", model=model))
    asyncio.run(run(graph, db=str(tmp_path / "runs.sqlite"), run_id="own"))
    assert (tmp_path / "workspaces" / "own" / "a.txt").read_text() == "hello"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tools": ["teleport"]}, "teleport"),
        ({"tools": ["shell"]}, "allow_shell"),
        ({"approve_tools": ["launch_rockets"]}, "launch_rockets"),
        ({"max_tasks": 0}, "max_tasks"),
        ({"subgraphs": ["chess"]}, "unknown subgraph 'chess'"),
    ],
)
def test_bad_settings_are_refused(workspace, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        loop(ScriptedChatModel([]), workspace, **kwargs)


def test_a_workspace_that_cannot_be_written_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="not writable"):
        loop(ScriptedChatModel([]), blocker / "workspace")


# -- over the fake OpenAI server, from the CLI ------------------------------------------

ROLES = {"leader": {"name": "planner", "model": "planner-model"}, "agents": [{"name": "doer", "model": "doer-model"}]}


@pytest.fixture
def roles_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(ROLES))
    return path


def json_reply(value: dict) -> dict:
    return {"json": value}


def calls_reply(name: str, **args) -> dict:
    return {"tool_calls": [{"name": name, "arguments": args}]}


def test_cli_a_tool_call_waits_for_approval_and_resume_approves_it(fake, sqlite_db, roles_file, tmp_path):
    from tests.test_cli import cli

    fake.script(
        "planner-model", [json_reply(tasks("Save the plan")), json_reply(review(met=True)), {"content": "Saved."}]
    )
    fake.script("doer-model", [calls_reply("write_file", path="plan.md", content="step 1"), {"content": "done"}])
    paused = cli(
        "run",
        "task_loop",
        "Save a plan",
        "--agents-file",
        str(roles_file),
        "--base-url",
        fake.url,
        "-o",
        'approve_tools=["write_file"]',
        "--run-id",
        "approve",
        db=sqlite_db,
    )
    assert paused.returncode == 3, paused.stderr
    assert 'doer wants to run write_file({"path": "plan.md"' in paused.stderr
    assert "--approve | --reject FEEDBACK | --stop" in paused.stderr
    workspace = tmp_path / "workspaces" / "approve"
    assert not (workspace / "plan.md").exists()

    resumed = cli("resume", "approve", "--approve", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "Saved."
    assert (workspace / "plan.md").read_text() == "step 1"


def test_cli_an_agents_question_is_answered_on_resume(fake, sqlite_db, roles_file):
    from tests.test_cli import cli

    fake.script(
        "planner-model", [json_reply(tasks("Pick a colour")), json_reply(review(met=True)), {"content": "Blue."}]
    )
    fake.script("doer-model", [calls_reply("ask_human", question="Which colour?"), {"content": "blue"}])
    paused = cli(
        "run",
        "task_loop",
        "Pick a colour",
        "--agents-file",
        str(roles_file),
        "--base-url",
        fake.url,
        "--run-id",
        "ask",
        db=sqlite_db,
    )
    assert paused.returncode == 3 and "Which colour?" in paused.stderr and "--answer TEXT" in paused.stderr

    wrong = cli("resume", "ask", "--approve", db=sqlite_db)
    assert (
        wrong.returncode == 2
        and wrong.stderr.strip() == "error: run ask waits for one of: answer, stop (got 'approve')"
    )

    resumed = cli("resume", "ask", "--answer", "blue", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "Blue."
    shown = cli("show", "ask", db=sqlite_db, check=True).stdout
    assert "task list" in shown and "question: Which colour? -> answer blue" in shown


def test_kill_9_mid_task_resumes_at_that_task_without_redoing_its_steps(fake, sqlite_db, roles_file, tmp_path):
    from tests.test_cli import cli, kill_9_when, start_cli

    fake.script("planner-model", [json_reply(tasks("Write notes")), json_reply(review(met=True))])
    # The agent's second call (after the tool ran) hangs until the kill.
    fake.script(
        "doer-model",
        [
            calls_reply("write_file", path="notes.md", content="first step"),
            {"content": "never sent", "latency_ms": 30_000},
        ],
    )
    proc = start_cli(
        "run",
        "task_loop",
        "Write notes",
        "--agents-file",
        str(roles_file),
        "--base-url",
        fake.url,
        "--run-id",
        "k9",
        db=sqlite_db,
    )
    notes = tmp_path / "workspaces" / "k9" / "notes.md"
    asked_twice = lambda: fake.stats()["by_model"].get("doer-model", {}).get("requests", 0) >= 2  # noqa: E731
    kill_9_when(proc, asked_twice, "the agent never made its second call")
    assert notes.exists(), "the first step never ran"
    notes.write_text("changed after the kill")  # a re-run of the tool would overwrite this

    cli("resume", "k9", db=sqlite_db, check=True)
    assert notes.read_text() == "changed after the kill"
    stats = fake.stats()
    assert max(Counter(c["fingerprint"] for c in stats["completed"]).values()) == 1
    assert stats["by_model"]["doer-model"]["succeeded"] == 2  # the tool call, then the answer
    state = json.loads(cli("show", "k9", "--json", db=sqlite_db, check=True).stdout)["state"]
    assert len(state["tool_uses"]) == 1 and state["stop_reason"] == "objective_met"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ('tools=["teleport"]', "unknown tool 'teleport'"),
        ('tools=["shell"]', "allow_shell"),
        ("workspace={blocked}/ws", "not writable"),
    ],
)
def test_cli_bad_task_loop_input_exits_2_with_one_line(capsys, sqlite_db, tmp_path, option, message):
    from graphswarm.cli import main

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = main(
        [
            "run",
            "task_loop",
            "Do it",
            "-o",
            option.format(blocked=blocked),
            "--model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--db",
            sqlite_db,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_over_the_fake_server_tasks_are_created_deduplicated_prioritised_run_with_tools_and_delegated(
    fake, sqlite_db, tmp_path
):
    fake.script(
        "planner-model",
        [
            json_reply(tasks("Compute the yearly budget", "Write the summary", assignee="doer")),
            json_reply(
                {
                    "objective_met": False,
                    "priorities": [4, 2],
                    "new_tasks": [
                        {"title": "compute the yearly budget!", "description": "", "assignee": ""},
                        {"title": "Is the budget realistic?", "description": "", "assignee": "debate"},
                    ],
                }
            ),
            json_reply(review()),
            json_reply(review(met=True)),
            {"content": "Budget 1440, realistic; summary in summary.md"},
        ],
    )
    fake.script(
        "doer-model",
        [
            calls_reply("calculator", expression="120 * 12"),
            {"content": "1440"},
            {"content": "Final answer: yes"},  # as a debater
            calls_reply("write_file", path="summary.md", content="Budget: 1440"),
            {"content": "summary written"},
        ],
    )
    fake.script("critic-model", [{"content": "Final answer: yes"}])
    graph = create_task_loop(
        [Agent(name="doer", model="doer-model"), Agent(name="critic", model="critic-model")],
        leader=Agent(name="planner", model="planner-model"),
        base_url=fake.url,
        subgraphs=["debate"],
        workspace=tmp_path / "ws",
    )
    result = asyncio.run(run(graph, "Plan the bakery's budget", db=sqlite_db))

    assert (result.status, result.stop_reason) == (RunStatus.DONE, StopReason.OBJECTIVE_MET)
    assert result.final_answer == "Budget 1440, realistic; summary in summary.md"
    by_id = {t["id"]: t for t in result.state["tasks"]}
    assert [(i, t["status"]) for i, t in by_id.items()] == [(1, "done"), (2, "done"), (3, "dropped"), (4, "done")]
    assert by_id[3]["duplicate_of"] == 1
    assert (by_id[4]["assignee"], by_id[4]["result"]) == ("debate", "yes")
    assert [u["tool"] for u in result.state["tool_uses"]] == ["calculator", "write_file"]
    assert (tmp_path / "ws" / "summary.md").read_text() == "Budget: 1440"
    # The debate (task 4) ran before task 2: the planner's priorities were followed.
    doer_calls = [c["kind"] for c in fake.stats()["completed"] if c["model"] == "doer-model"]
    assert doer_calls == ["tool", "text", "text", "tool", "text"]
    assert fake.stats()["by_model"]["critic-model"]["succeeded"] == 1  # delegated once


def test_a_planner_whose_replies_cannot_be_read_runs_the_objective_as_one_task(workspace):
    """A small model that cannot write the task list's JSON: the objective is the one
    task, and a review that cannot be read leaves the list as it is."""
    model = ScriptedChatModel(
        {"planner": [*unreadable_replies(), *unreadable_replies(), "the report"], "doer": ["drafted"]}
    )
    result = asyncio.run(run(loop(model, workspace)))
    assert result.status is RunStatus.DONE and result.stop_reason == StopReason.NO_TASKS
    assert titles(result, "done") == [UNPLANNED_TASK] and result.final_answer == "the report"
    model.assert_complete()
