"""The orchestrator: a pool of agents, least-loaded assignment, reassignment on failure."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from graphswarm import Agent, ConfigError, Runner, RunStatus, StopReason, SwarmSpec, create_orchestrator
from graphswarm.architectures.blocks import UNPLANNED_TASK
from graphswarm.architectures.orchestrator import load_spread
from graphswarm.testing import ScriptedChatModel, unreadable_replies


def plan(count: int, prefix: str = "task") -> dict:
    return {"tasks": [{"title": f"{prefix} {i}", "description": ""} for i in range(1, count + 1)]}


def check(answer: str = "the consolidated answer", follow_ups: list[str] = ()) -> dict:
    return {"answer": answer, "follow_up_tasks": [{"title": t, "description": ""} for t in follow_ups]}


def pool(model: ScriptedChatModel, size: int) -> list[Agent]:
    return [Agent(name=f"a{i}", model=model) for i in range(1, size + 1)]


def orchestrator(model: ScriptedChatModel) -> Agent:
    return Agent(name="boss", role="orchestrator", model=model)


async def run(graph, objective: str = "Build a website", db: str = "memory", **kwargs):
    async with Runner(db) as runner:
        return await runner.start(graph, objective, **kwargs)


def answers(name: str, count: int) -> list[str]:
    return [f"{name} result {k}" for k in range(1, count + 1)]


def test_every_task_is_done_once_and_the_answer_consolidated():
    model = ScriptedChatModel({"boss": [plan(6), check()], **{f"a{i}": answers(f"a{i}", 3) for i in range(1, 4)}})
    result = asyncio.run(run(create_orchestrator(pool(model, 3), leader=orchestrator(model))))

    assert result.status is RunStatus.DONE
    assert result.stop_reason == StopReason.COMPLETED
    assert result.final_answer == "the consolidated answer"
    assert [t["status"] for t in result.state["tasks"]] == ["done"] * 6
    assert sorted(a["task_id"] for a in result.state["attempts"]) == sorted(f"t{i}" for i in range(1, 7))
    # The orchestrator read every result when checking.
    check_prompt = model.calls_for("boss")[-1].prompt
    assert all(f"task {i}" in check_prompt for i in range(1, 7))


def test_tasks_go_to_the_least_loaded_agents_and_spread_evenly():
    model = ScriptedChatModel({"boss": [plan(8), check()], **{f"a{i}": answers(f"a{i}", 2) for i in range(1, 5)}})
    result = asyncio.run(run(create_orchestrator(pool(model, 4), leader=orchestrator(model))))

    stats = result.state["agent_stats"]
    assert {name: s["tasks"] for name, s in stats.items()} == {"a1": 2, "a2": 2, "a3": 2, "a4": 2}
    assert load_spread(stats) == {"min": 2, "max": 2, "mean": 2.0}
    model.assert_complete()


def test_no_more_tasks_are_in_flight_than_the_concurrency_limit():
    flight = {"now": 0, "peak": 0}

    class Counting(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            if run_manager and run_manager.metadata.get("graphswarm_agent") != "boss":
                flight["now"] += 1
                flight["peak"] = max(flight["peak"], flight["now"])
                await asyncio.sleep(0.01)
                flight["now"] -= 1
            return self._generate(messages, stop, run_manager, **kwargs)

    model = Counting({"boss": [plan(10), check()], **{f"a{i}": answers(f"a{i}", 10) for i in range(1, 6)}})
    graph = create_orchestrator(pool(model, 5), leader=orchestrator(model), concurrency=2)
    result = asyncio.run(run(graph))

    assert flight["peak"] == 2
    assert [t["status"] for t in result.state["tasks"]] == ["done"] * 10
    # The calls were started one after another (their dispatch numbers), never two for one task.
    assert sorted(a["seq"] for a in result.state["attempts"]) == list(range(1, 11))


def test_an_agent_that_finishes_gets_the_next_task_at_once():
    """No waves: while one agent is still on a long task, the others go through the rest."""
    second_done = asyncio.Event()

    class Straggler(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            agent = run_manager.metadata.get("graphswarm_agent") if run_manager else None
            if agent == "a1":  # a1's one task lasts until a2 and a3 have done five between them
                await asyncio.wait_for(second_done.wait(), 10)
            reply = self._generate(messages, stop, run_manager, **kwargs)
            if len(self.calls_for("a2")) + len(self.calls_for("a3")) == 5:
                second_done.set()
            return reply

    model = Straggler({"boss": [plan(6), check()], "a1": ["slow"], "a2": answers("a2", 5), "a3": answers("a3", 5)})
    result = asyncio.run(run(create_orchestrator(pool(model, 3), leader=orchestrator(model))))

    assert [t["status"] for t in result.state["tasks"]] == ["done"] * 6
    stats = result.state["agent_stats"]
    assert stats["a1"]["tasks"] == 1 and stats["a2"]["tasks"] + stats["a3"]["tasks"] == 5
    assert next(t for t in result.state["tasks"] if t["id"] == "t1")["agent"] == "a1"


def test_a_failed_task_is_reassigned_to_another_agent():
    model = ScriptedChatModel(
        {
            "boss": [plan(3), check()],
            "a1": [RuntimeError("model crashed")],
            "a2": answers("a2", 2),
            "a3": answers("a3", 2),
        }
    )
    graph = create_orchestrator(pool(model, 3), leader=orchestrator(model), max_attempts=1)
    result = asyncio.run(run(graph))

    first = next(t for t in result.state["tasks"] if t["id"] == "t1")
    assert first["status"] == "done"
    assert first["failed_agents"] == ["a1"]
    assert first["agent"] in ("a2", "a3")
    assert result.state["agent_stats"]["a1"]["failures"] == 1
    assert result.state["agent_stats"]["a1"]["up"] is True  # one failure is not yet "keeps failing"


def test_an_agent_that_keeps_failing_is_marked_down_and_gets_no_more_tasks():
    model = ScriptedChatModel(
        {
            "boss": [plan(8), check()],
            "a1": [RuntimeError("bad key")] * 2,
            "a2": answers("a2", 4),
            "a3": answers("a3", 4),
        }
    )
    graph = create_orchestrator(pool(model, 3), leader=orchestrator(model), max_attempts=1, max_failures=2)
    result = asyncio.run(run(graph))

    a1 = result.state["agent_stats"]["a1"]
    assert (a1["up"], a1["failures"], a1["assigned"], a1["tasks"]) == (False, 2, 2, 0)
    assert all(t["status"] == "done" for t in result.state["tasks"])
    model.assert_complete()


def test_a_task_that_fails_everywhere_is_given_up_and_reported():
    failing = [RuntimeError("cannot do this")]
    model = ScriptedChatModel({"boss": [plan(1), check("partial")], "a1": failing, "a2": failing, "a3": failing})
    graph = create_orchestrator(pool(model, 3), leader=orchestrator(model), max_attempts=1, max_task_attempts=3)
    result = asyncio.run(run(graph))

    task = result.state["tasks"][0]
    assert (task["status"], task["attempts"], sorted(task["failed_agents"])) == ("failed", 3, ["a1", "a2", "a3"])
    assert "failed on 3 agents" in model.calls_for("boss")[-1].prompt
    assert result.final_answer == "partial"


def test_a_task_over_its_timeout_counts_as_failed_and_moves_on():
    class Slow(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            if run_manager and run_manager.metadata.get("graphswarm_agent") == "a1":
                await asyncio.sleep(5)
            return self._generate(messages, stop, run_manager, **kwargs)

    model = Slow({"boss": [plan(2), check()], "a1": ["never seen"], "a2": answers("a2", 2)})
    graph = create_orchestrator(pool(model, 2), leader=orchestrator(model), task_timeout=0.3, max_attempts=1)
    result = asyncio.run(run(graph))

    first = next(t for t in result.state["tasks"] if t["id"] == "t1")
    assert (first["status"], first["agent"], first["failed_agents"]) == ("done", "a2", ["a1"])
    assert any(a["error"] == "timed out" for a in result.state["attempts"])


def test_follow_up_tasks_from_the_check_run_in_another_round():
    model = ScriptedChatModel(
        {
            "boss": [plan(2), check("draft", ["add a contact page"]), check("final")],
            "a1": answers("a1", 2),
            "a2": answers("a2", 1),
        }
    )
    result = asyncio.run(run(create_orchestrator(pool(model, 2), leader=orchestrator(model))))

    assert [(t["round"], t["title"]) for t in result.state["tasks"]][-1] == (2, "add a contact page")
    assert result.final_answer == "final"
    assert result.stop_reason == StopReason.COMPLETED


def test_when_every_agent_is_down_the_run_pauses_and_resume_tries_again(sqlite_db):
    model = ScriptedChatModel(
        {"boss": [plan(2), check("recovered")], "a1": [RuntimeError("down")], "a2": [RuntimeError("down")]}
    )
    graph = create_orchestrator(pool(model, 2), leader=orchestrator(model), max_attempts=1, max_failures=1)

    async def scenario():
        async with Runner(sqlite_db) as runner:
            paused = await runner.start(graph, "Build a website", run_id="down")
            model._queues.update({"a1": ["ok 1"], "a2": ["ok 2"]})  # the models are back
            return paused, await runner.resume("down", graph=graph)  # a plain resume retries

    paused, resumed = asyncio.run(scenario())
    assert paused.status is RunStatus.INTERRUPTED
    assert paused.stop_reason == StopReason.WORKER_FAILED
    assert "all 2 agents are down" in paused.pauses[0]["detail"]
    assert resumed.status is RunStatus.DONE
    assert resumed.final_answer == "recovered"
    assert all(t["status"] == "done" for t in resumed.state["tasks"])


def test_agents_find_their_teammates_results_in_shared_memory():
    from graphswarm.testing import KeywordEmbeddings

    model = ScriptedChatModel(
        {
            "boss": [
                {
                    "tasks": [
                        {"title": "Research bakery opening hours"},
                        {"title": "Write the bakery opening hours page"},
                    ]
                },
                check(),
            ],
            "a1": ["The bakery opens at seven every morning"],
            "a2": ["Page written"],
        }
    )
    graph = create_orchestrator(pool(model, 2), leader=orchestrator(model), concurrency=1)

    async def scenario():
        async with Runner("memory", memory="memory", embeddings=KeywordEmbeddings()) as runner:
            return await runner.start(graph, "Bakery website")

    asyncio.run(scenario())
    second = model.calls_for("a2")[0].prompt
    assert "Notes from your team:" in second and "(a1, work) The bakery opens at seven" in second


def test_a_pool_can_be_given_as_a_number_of_agents():
    model = ScriptedChatModel({"boss": [plan(2), check()], "*": ["done"] * 2})
    result = asyncio.run(run(create_orchestrator(5, leader=orchestrator(model), model=model)))

    assert len(result.state["agent_stats"]) == 5
    assert result.status is RunStatus.DONE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": 0}, "at least 1 agent"),
        ({"agents": 3, "concurrency": 0}, "concurrency must be"),
        ({"agents": 3, "max_failures": 0}, "max_failures must be"),
        ({"agents": 3, "task_timeout": -1}, "task_timeout must be"),
    ],
)
def test_bad_pool_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_orchestrator(model=ScriptedChatModel([]), **kwargs)


# -- over the fake OpenAI server (the real langchain-openai path) and the CLI -------------

FAILING = [f"pool-{i}" for i in (3, 11, 19, 27, 35)]


def test_40_agents_with_5_failing_finish_every_task_exactly_once(fake, sqlite_db):
    fake.script("orch-model", [{"json": plan(80)}, {"json": check("the website plan")}])
    fake.configure(fail_models=FAILING)
    agents = [Agent(name=f"agent-{i}", model=f"pool-{i}") for i in range(1, 41)]
    graph = create_orchestrator(agents, leader=Agent(name="boss", model="orch-model"), base_url=fake.url, max_tasks=80)
    result = asyncio.run(run(graph, "Make a business website for a marketing consultancy", db=sqlite_db))

    assert result.status is RunStatus.DONE and result.final_answer == "the website plan"
    tasks = result.state["tasks"]
    assert len(tasks) == 80 and all(t["status"] == "done" for t in tasks)
    # Exactly once: one successful attempt per task, and the server answered each task once.
    done = Counter(a["task_id"] for a in result.state["attempts"] if a["ok"])
    assert set(done) == {t["id"] for t in tasks} and set(done.values()) == {1}
    stats = fake.stats()
    pool_calls = [c for c in stats["completed"] if c["model"].startswith("pool-")]
    assert len(pool_calls) == 80
    assert max(Counter(c["fingerprint"] for c in pool_calls).values()) == 1
    # The failing agents did nothing (those that failed twice in a row are down: with a
    # continuous pool, one may run out of tasks to fail first); the others shared the load.
    agent_stats = result.state["agent_stats"]
    failing = {f"agent-{m.split('-')[1]}" for m in FAILING}
    assert all(agent_stats[name]["tasks"] == 0 and agent_stats[name]["failures"] >= 1 for name in failing)
    assert all(agent_stats[name]["up"] is (agent_stats[name]["failures"] < 2) for name in failing)
    working = [s for name, s in agent_stats.items() if name not in failing]
    assert all(s["up"] and s["failures"] == 0 for s in working)
    done_by = [s["tasks"] for s in working]
    assert sum(done_by) == 80 and max(done_by) - min(done_by) <= 1


def test_cli_runs_the_seeds_example_with_40_nodes(fake, sqlite_db, capsys, tmp_path):
    from graphswarm.cli import main

    fake.script("orch-model", [{"json": plan(40, "page")}, {"json": check("a site for the consultancy")}])
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"leader": {"name": "boss", "model": "orch-model"}}))
    code = main(
        [
            "run",
            "orchestrator",
            "Make a business website for a marketing consultancy",
            "--nodes",
            "40",
            "--model",
            "pool-model",
            "--base-url",
            fake.url,
            "--agents-file",
            str(roles),
            "--db",
            sqlite_db,
            "--run-id",
            "seed",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "a site for the consultancy"
    assert fake.stats()["by_model"]["pool-model"]["succeeded"] == 40

    assert main(["show", "seed", "--db", sqlite_db]) == 0
    shown = capsys.readouterr().out
    assert "agents" in shown and "tasks per agent that is up: min 1, mean 1, max 1" in shown


def test_kill_9_mid_run_then_resume_reexecutes_no_finished_task(fake, sqlite_db, tmp_path):
    from tests.test_cli import answered_once, cli, kill_9_when, start_cli

    agents = tmp_path / "agents.json"
    agents.write_text(
        json.dumps(
            {
                "leader": {"name": "boss", "model": "orch-model"},
                "agents": [{"name": f"w{i}", "model": f"pool-{i}"} for i in range(1, 7)],
            }
        )
    )
    fake.script("orch-model", [{"json": plan(6)}, {"json": check("all six done")}])
    fake.configure(model_latency_ms={"pool-5": 30_000, "pool-6": 30_000})
    proc = start_cli(
        "run",
        "orchestrator",
        "Make a website",
        "--agents-file",
        str(agents),
        "--base-url",
        fake.url,
        "--run-id",
        "k9",
        db=sqlite_db,
    )
    fast = [f"pool-{i}" for i in range(1, 5)]
    kill_9_when(proc, lambda: answered_once(fake, *fast), "the fast agents never finished")

    fake.configure(model_latency_ms={})
    resumed = cli("resume", "k9", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "all six done"
    stats = fake.stats()
    assert {m: s["succeeded"] for m, s in stats["by_model"].items() if m.startswith("pool-")} == {
        f"pool-{i}": 1 for i in range(1, 7)
    }
    assert max(Counter(c["fingerprint"] for c in stats["completed"]).values()) == 1
    state = json.loads(cli("show", "k9", "--json", db=sqlite_db, check=True).stdout)["state"]
    assert Counter(a["task_id"] for a in state["attempts"]) == Counter({f"t{i}": 1 for i in range(1, 7)})


def test_kill_9_mid_pool_then_resume_repeats_no_finished_call(fake, sqlite_db, tmp_path):
    """Killed while two stragglers hold their tasks and the fast agents have gone through
    the rest (each finished call saved as it returned, out of the order they started in),
    the resumed pool answers those from the checkpoint and calls only the stragglers' again."""
    from tests.test_cli import cli, kill_9_when, start_cli

    agents = tmp_path / "agents.json"
    agents.write_text(
        json.dumps(
            {
                "leader": {"name": "boss", "model": "orch-model"},
                "agents": [{"name": f"w{i}", "model": f"pool-{i}"} for i in range(1, 5)],
            }
        )
    )
    fake.script("orch-model", [{"json": plan(10)}, {"json": check("all ten done")}])
    fake.configure(model_latency_ms={"pool-3": 30_000, "pool-4": 30_000}, latency_ms=20, jitter_ms=30)
    proc = start_cli(
        "run", "orchestrator", "Make a website", "--agents-file", str(agents), "--base-url", fake.url,
        "--run-id", "k9pool", db=sqlite_db,
    )  # fmt: skip

    def fast_answered() -> int:
        by_model = fake.stats()["by_model"]
        return sum(by_model.get(m, {}).get("succeeded", 0) for m in ("pool-1", "pool-2"))

    # With waves this never holds: each wave would wait for the stragglers.
    kill_9_when(proc, lambda: fast_answered() == 8, "the fast agents did not go through the other tasks")

    fake.configure(model_latency_ms={})
    resumed = cli("resume", "k9pool", db=sqlite_db, check=True)
    assert resumed.stdout.strip() == "all ten done"
    stats = fake.stats()
    succeeded = {m: s["succeeded"] for m, s in stats["by_model"].items() if m.startswith("pool-")}
    assert succeeded["pool-1"] + succeeded["pool-2"] == 8
    assert (succeeded["pool-3"], succeeded["pool-4"]) == (1, 1)
    assert max(Counter(c["fingerprint"] for c in stats["completed"]).values()) == 1
    state = json.loads(cli("show", "k9pool", "--json", db=sqlite_db, check=True).stdout)["state"]
    assert Counter(a["task_id"] for a in state["attempts"]) == Counter({f"t{i}": 1 for i in range(1, 11)})
    assert all(t["status"] == "done" and t["attempts"] == 1 for t in state["tasks"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "at least 1 agent"),
        (["--nodes", "4", "-o", "concurrency=0"], "concurrency must be"),
        (["--nodes", "4", "-o", "task_timeout=soon"], "task_timeout must be"),
    ],
)
def test_cli_bad_pool_input_exits_2_with_one_line(capsys, sqlite_db, args, message):
    from graphswarm.cli import main

    code = main(
        [
            "run",
            "orchestrator",
            "Make a website",
            *args,
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


async def test_calls_finished_before_a_cancelled_pool_are_counted_once_after_resume(fake, sqlite_db):
    """A pool stopped gracefully (Ctrl-C, a cancelled task) keeps its finished calls among the
    run's unfinished ones; the resumed pool replays them into the ledger: each is counted once."""
    spec = SwarmSpec(
        architecture="orchestrator",
        leader=Agent(name="boss", model="orch-model"),
        agents=[Agent(name=f"w{i}", model=f"pool-{i}") for i in range(1, 5)],
        base_url=fake.url,
    )
    fake.script("orch-model", [{"json": plan(10)}, {"json": check("all ten done")}])
    fake.configure(model_latency_ms={"pool-3": 30_000, "pool-4": 30_000}, latency_ms=20)

    def fast_answered() -> int:
        by_model = fake.stats()["by_model"]
        return sum(by_model.get(m, {}).get("succeeded", 0) for m in ("pool-1", "pool-2"))

    async with Runner(sqlite_db) as runner:
        started = asyncio.create_task(runner.start(spec, "Make a website", run_id="cancelled-pool"))
        while fast_answered() < 8:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last answers' way back into the run
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
        fake.configure(model_latency_ms={})
        result = await runner.resume("cancelled-pool")

    assert result.final_answer == "all ten done"
    answered = sum(s["succeeded"] for s in fake.stats()["by_model"].values())
    assert answered == 12  # the plan, 8 fast answers, the stragglers' 2, the check
    assert len({c["id"] for c in result.calls}) == len(result.calls), "a call is counted twice"
    # ... and the stragglers' two requests cut off by the cancel, which count as spent.
    assert len(result.calls) == answered + 2, [(c["agent"], c.get("error", "")) for c in result.calls]


def test_an_orchestrator_whose_replies_cannot_be_read_runs_the_objective_as_one_task():
    """A small model that cannot write the plan's JSON: the objective is the one task,
    and when the check cannot be read either, the results are the answer."""
    long_result = "a1 result 1." + " More detail." * 100  # longer than the check's clipped copy
    model = ScriptedChatModel({"boss": [*unreadable_replies(), *unreadable_replies()], "a1": [long_result]})
    result = asyncio.run(run(create_orchestrator(pool(model, 2), leader=orchestrator(model))))
    assert result.status is RunStatus.DONE and result.stop_reason == StopReason.COMPLETED
    assert [(t["title"], t["status"]) for t in result.state["tasks"]] == [(UNPLANNED_TASK, "done")]
    assert result.final_answer.endswith(long_result)
    model.assert_complete()
