"""The same durability behaviour on every database backend: SQLite, PostgreSQL, memory."""

from __future__ import annotations

import pickle

import pytest

from graphswarm import Agent, Budget, Runner, RunStatus, SwarmSpec, UnknownRunError
from graphswarm.checkpoint import Backend, parse_db_url
from graphswarm.errors import ConfigError
from graphswarm.testing import ScriptedChatModel

WORKERS = [Agent(name="a", strengths=["x"]), Agent(name="b", strengths=["y"])]


def scripted(worker_answers: dict[str, list]) -> ScriptedChatModel:
    plan = {"tasks": [{"title": "x task", "worker": "a"}, {"title": "y task", "worker": "b"}]}
    review = {"answer": "done", "approved": True, "feedback": ""}
    return ScriptedChatModel({"leader": [plan, review], **worker_answers})


def spec(model: ScriptedChatModel) -> SwarmSpec:
    return SwarmSpec(architecture="hierarchical", agents=WORKERS, model=model)


async def test_a_finished_run_is_recorded(db_url, run_id):
    async with Runner(db_url) as runner:
        result = await runner.start(spec(scripted({"a": ["1"], "b": ["2"]})), "objective", run_id=run_id)
        record = await runner.get(run_id)
    assert result.status is RunStatus.DONE
    assert record.architecture == "hierarchical"
    assert record.objective == "objective"
    assert record.agent_names == ["a", "b"]
    assert record.stop_reason == "approved"


async def test_state_survives_closing_the_database(db_url, run_id):
    model = scripted({"a": ["1"], "b": ["2"]})
    async with Runner(db_url) as runner:
        await runner.start(spec(model), "objective", run_id=run_id)
    async with Runner(db_url) as runner:
        result = await runner.result(run_id, graph=spec(model).build())
        listed = [r.run_id for r in await runner.list()]
    assert result.final_answer == "done"
    assert run_id in listed


async def test_a_failed_run_resumes_without_redoing_finished_workers(db_url, run_id):
    model = scripted({"a": ["1"], "b": [ValueError("b broke"), "2"]})
    async with Runner(db_url) as runner:
        with pytest.raises(Exception, match="b broke"):
            await runner.start(spec(model).model_copy(update={"options": {"join": "fail_fast"}}), "o", run_id=run_id)
        assert (await runner.get(run_id)).status is RunStatus.FAILED
    async with Runner(db_url) as runner:
        result = await runner.resume(
            run_id, graph=spec(model).model_copy(update={"options": {"join": "fail_fast"}}).build()
        )
    assert result.status is RunStatus.DONE
    assert len(model.calls_for("a")) == 1
    model.assert_complete()


async def test_a_budget_pause_resumes_with_a_raised_cap(db_url, run_id):
    model = scripted({"a": ["1"], "b": ["2"]})
    async with Runner(db_url) as runner:
        paused = await runner.start(spec(model), "o", run_id=run_id, budget=Budget(max_calls=2))
        assert (paused.status, paused.stop_reason) == (RunStatus.INTERRUPTED, "call_cap")
        assert (await runner.get(run_id)).budget == {"max_calls": 2, "max_repeats": 3}
        result = await runner.resume(run_id, graph=spec(model).build(), budget=Budget(max_calls=10))
    assert result.status is RunStatus.DONE
    assert result.usage["total"]["calls"] == 4
    model.assert_complete()


async def test_history_lists_every_step(db_url, run_id):
    model = scripted({"a": ["1"], "b": ["2"]})
    async with Runner(db_url) as runner:
        await runner.start(spec(model), "o", run_id=run_id)
        steps = await runner.history(run_id, graph=spec(model).build())
    assert [s.next for s in steps][:3] == [["__start__"], ["plan"], ["work", "work"]]
    made = [c["agent"] + "@" + c["node"] for s in steps for c in s.calls]
    assert made[0] == "leader@plan" and made[-1] == "leader@consolidate"
    assert sorted(made[1:3]) == ["a@work", "b@work"]


async def test_unknown_run_ids_are_usage_errors(db_url):
    async with Runner(db_url) as runner:
        with pytest.raises(UnknownRunError):
            await runner.get("does-not-exist")


async def test_checkpoints_load_without_pickle(db_url, run_id, monkeypatch):
    model = scripted({"a": ["1"], "b": ["2"]})
    async with Runner(db_url) as runner:
        await runner.start(spec(model), "o", run_id=run_id)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    async with Runner(db_url) as runner:
        steps = await runner.history(run_id, graph=spec(model).build())
        result = await runner.result(run_id, graph=spec(model).build())
    assert len(steps) >= 4
    assert result.final_answer == "done"


async def test_no_secret_reaches_state_or_records(db_url, run_id, monkeypatch, fake):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-do-not-store")
    fake.script("m", [{"json": {"tasks": [{"title": "t", "worker": "a"}]}}])
    remote = SwarmSpec(
        architecture="hierarchical",
        agents=WORKERS[:1],
        model="m",
        base_url=fake.url.replace("http://", "http://user:hunter2@"),
    )
    async with Runner(db_url) as runner:
        result = await runner.start(remote, "o", run_id=run_id)
        steps = await runner.history(run_id)
        dumped = repr(result.record.model_dump()) + repr(result.state) + repr([s.calls for s in steps])
    assert "sk-secret" not in dumped and "hunter2" not in dumped


@pytest.mark.parametrize(
    "url, backend",
    [
        ("runs.sqlite", Backend.SQLITE),
        ("sqlite:///tmp/x.sqlite", Backend.SQLITE),
        ("postgresql://u@127.0.0.1:5432/db", Backend.POSTGRES),
        ("memory", Backend.MEMORY),
    ],
)
def test_database_urls(url, backend):
    assert parse_db_url(url).backend is backend


def test_unsupported_database_urls_are_config_errors():
    with pytest.raises(ConfigError, match="unsupported database URL 'mysql://u@h/db'"):
        parse_db_url("mysql://u:pw@h/db")


async def test_an_unreachable_postgres_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot use PostgreSQL database postgresql://u@127.0.0.1:9/db"):
        async with Runner("postgresql://u:pw@127.0.0.1:9/db"):
            pass


async def test_finished_calls_of_an_unfinished_step_are_counted_once(db_url, run_id):
    model = scripted({"a": ["1"], "b": [ValueError("b broke")]})
    failing = spec(model).model_copy(update={"options": {"join": "fail_fast"}})
    async with Runner(db_url) as runner:
        with pytest.raises(Exception, match="b broke"):
            await runner.start(failing, "o", run_id=run_id)
        result = await runner.result(run_id, graph=failing.build())
    assert result.usage["agents"]["a"]["calls"] == 1
    # the plan, a's answer, and b's failed request, which counts too (it reached the model)
    assert result.usage["total"]["calls"] == 3
    assert [c["agent"] for c in result.calls if "error" in c] == ["b"]


async def test_a_task_loop_question_pauses_and_resumes_with_the_answer(db_url, run_id, tmp_path):
    from langchain_core.messages import AIMessage

    ask = AIMessage("", tool_calls=[{"name": "ask_human", "args": {"question": "Which colour?"}, "id": "q1"}])
    model = ScriptedChatModel(
        {
            "planner": [{"tasks": [{"title": "Pick a colour"}]}, {"objective_met": True}, "Blue it is."],
            "doer": [ask, "blue"],
        }
    )
    loop = SwarmSpec(
        architecture="task_loop",
        agents=[Agent(name="doer")],
        leader=Agent(name="planner"),
        model=model,
        options={"workspace": str(tmp_path)},
    )
    async with Runner(db_url) as runner:
        paused = await runner.start(loop, "Choose a colour", run_id=run_id)
    async with Runner(db_url) as runner:
        result = await runner.resume(run_id, graph=loop.build(), decision={"action": "answer", "text": "blue"})
    assert (paused.status, paused.stop_reason) == (RunStatus.INTERRUPTED, "human")
    assert (result.status, result.final_answer) == (RunStatus.DONE, "Blue it is.")
    assert result.state["decisions"][0]["text"] == "blue"
    model.assert_complete()


async def test_an_orchestrator_paused_mid_wave_resumes_without_redoing_finished_tasks(db_url, run_id):
    model = ScriptedChatModel(
        {
            "boss": [{"tasks": [{"title": "one"}, {"title": "two"}]}, {"answer": "both done"}],
            "p1": ["first"],
            "p2": ["second"],
        }
    )
    pool = SwarmSpec(
        architecture="orchestrator", agents=[Agent(name="p1"), Agent(name="p2")], leader=Agent(name="boss"), model=model
    )
    async with Runner(db_url) as runner:
        # The plan and one task fit the cap; the other task of the same wave pauses the run.
        paused = await runner.start(pool, "o", run_id=run_id, budget=Budget(max_calls=2))
    async with Runner(db_url) as runner:
        result = await runner.resume(run_id, graph=pool.build(), budget=Budget(max_calls=10))
    assert (paused.status, paused.stop_reason) == (RunStatus.INTERRUPTED, "call_cap")
    assert result.status is RunStatus.DONE and result.final_answer == "both done"
    assert [len(model.calls_for(p)) for p in ("p1", "p2")] == [1, 1]
    assert sorted(a["task_id"] for a in result.state["attempts"]) == ["t1", "t2"]
    model.assert_complete()
