"""Stepping through runs: breakpoints, state edits, time travel, forks, approvals, streaming."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from graphswarm import Agent, ConfigError, Runner, RunStatus, SwarmSpec, UsageError
from graphswarm.cli import main
from graphswarm.testing import ScriptedChatModel

DEBATERS = [Agent(name="ann"), Agent(name="ben")]


def debate(model, **options) -> SwarmSpec:
    return SwarmSpec(architecture="debate", agents=DEBATERS, model=model, options={"rounds": 3, **options})


def team(model, **options) -> SwarmSpec:
    workers = [Agent(name="writer", strengths=["writing"]), Agent(name="coder", strengths=["code"])]
    return SwarmSpec(architecture="hierarchical", agents=workers, model=model, options=options)


PLAN = {"tasks": [{"title": "copy", "worker": "writer"}, {"title": "page", "worker": "coder"}]}
REVIEW = {"answer": "site", "approved": True, "feedback": ""}


async def test_a_breakpoint_pauses_then_resume_continues():
    model = ScriptedChatModel({"ann": ["Final answer: 1", "Final answer: 2"], "ben": ["Final answer: 2"] * 2})
    spec = debate(model)
    async with Runner("memory") as runner:
        paused = await runner.start(spec, "q", run_id="bp-1", pause_after=["assess"])
        assert (paused.status, paused.stop_reason) == (RunStatus.INTERRUPTED, "breakpoint")
        assert paused.state["rounds"][0]["agreement"] == 0.5
        assert len(model.calls) == 2  # round one only
        result = await runner.resume("bp-1", graph=spec.build(), pause_after=[])
    assert result.status is RunStatus.DONE
    assert result.stop_reason == "consensus" and result.final_answer == "2"


async def test_state_can_be_edited_at_a_breakpoint():
    model = ScriptedChatModel(
        {"ann": ["Final answer: 1", "Final answer: 1"], "ben": ["Final answer: 2", "Final answer: 1"]}
    )
    spec = debate(model)
    async with Runner("memory") as runner:
        await runner.start(spec, "q", run_id="edit-1", pause_before=["argue"])
        # the objective of the debate is changed before anyone argues
        result = await runner.resume("edit-1", graph=spec.build(), updates={"objective": "What is 1?"}, pause_before=[])
    assert "What is 1?" in model.calls[0].prompt
    assert result.status is RunStatus.DONE


async def test_unknown_breakpoint_nodes_are_config_errors():
    async with Runner("memory") as runner:
        with pytest.raises(ConfigError, match="unknown node 'vote'"):
            await runner.start(debate(ScriptedChatModel([])), "q", pause_before=["vote"])


async def test_time_travel_shows_the_state_at_any_checkpoint():
    model = ScriptedChatModel({"ann": ["Final answer: 1", "Final answer: 2"], "ben": ["Final answer: 2"] * 2})
    spec = debate(model)
    async with Runner("memory") as runner:
        await runner.start(spec, "q", run_id="tt-1")
        steps = await runner.history("tt-1", graph=spec.build())
        after_round_one = next(s for s in steps if s.next == ["argue", "argue"] and s.step > 1)
        then = await runner.state_at("tt-1", after_round_one.checkpoint_id, graph=spec.build())
        with pytest.raises(UsageError, match="no checkpoint 'nope'"):
            await runner.state_at("tt-1", "nope", graph=spec.build())
    assert [r["round"] for r in then.state["rounds"]] == [1]
    assert "final_answer" not in then.state


async def test_a_fork_continues_from_a_checkpoint_and_leaves_the_original_intact():
    original = ScriptedChatModel({"ann": ["Final answer: 1", "Final answer: 2"], "ben": ["Final answer: 2"] * 2})
    spec = debate(original)
    async with Runner("memory") as runner:
        done = await runner.start(spec, "q", run_id="orig-1")
        steps = await runner.history("orig-1", graph=spec.build())
        branch_point = next(s for s in steps if s.next == ["argue", "argue"] and s.step > 1)

        # In the fork, round two goes differently: ann sticks to 1, ben moves to 1.
        other = ScriptedChatModel({"ann": ["Final answer: 1"], "ben": ["Final answer: 1"]})
        fork = await runner.fork("orig-1", branch_point.checkpoint_id, new_run_id="fork-1")
        assert fork.forked_from == f"orig-1@{branch_point.checkpoint_id}"
        forked = await runner.resume("fork-1", graph=debate(other).build())
        again = await runner.result("orig-1", graph=spec.build())
    assert forked.final_answer == "1" and done.final_answer == "2"
    assert again.final_answer == "2" and again.state == done.state
    assert len(other.calls) == 2  # round one was not run again in the fork


async def test_a_plan_waits_for_approval():
    model = ScriptedChatModel({"leader": [PLAN, REVIEW], "writer": ["text"], "coder": ["html"]})
    spec = team(model, approve_plan=True)
    async with Runner("memory") as runner:
        paused = await runner.start(spec, "site", run_id="ap-1")
        assert paused.stop_reason == "approval"
        assert [t["title"] for t in paused.pauses[0]["plan"]] == ["copy", "page"]
        assert not model.calls_for("writer")
        result = await runner.resume("ap-1", graph=spec.build(), decision={"action": "approve"})
    assert result.status is RunStatus.DONE
    assert len(model.calls_for("leader")) == 2  # resuming did not plan again
    assert result.state["approvals"] == [{"round": 1, "action": "approve", "feedback": ""}]


async def test_an_edited_plan_replaces_the_leaders():
    model = ScriptedChatModel({"leader": [PLAN, REVIEW], "coder": ["html only"]})
    spec = team(model, approve_plan=True)
    async with Runner("memory") as runner:
        await runner.start(spec, "site", run_id="ap-2")
        edited = {"action": "edit", "tasks": [{"title": "just the page", "worker": "coder"}]}
        result = await runner.resume("ap-2", graph=spec.build(), decision=edited)
    assert [t["title"] for t in result.state["tasks"]] == ["just the page"]
    assert [r["output"] for r in result.state["results"]] == ["html only"]


async def test_a_rejected_plan_ends_the_run():
    model = ScriptedChatModel({"leader": [PLAN]})
    spec = team(model, approve_plan=True)
    async with Runner("memory") as runner:
        await runner.start(spec, "site", run_id="ap-3")
        result = await runner.resume("ap-3", graph=spec.build(), decision={"action": "reject", "feedback": "too big"})
    assert (result.status, result.stop_reason) == (RunStatus.DONE, "rejected")
    assert result.state["approvals"][0]["feedback"] == "too big"


async def test_tokens_stream_in_the_order_agents_speak_and_before_their_node_finishes():
    model = ScriptedChatModel({"ann": ["Final answer: 2"], "ben": ["Final answer: 2"]})
    events: list[tuple[str, str]] = []
    async with Runner("memory") as runner:
        await runner.start(
            debate(model),
            "q",
            on_token=lambda agent, node, text: events.append(("token", agent)),
            on_update=lambda node, update: events.append(("node", node)),
        )
    tokens = [who for kind, who in events if kind == "token"]
    assert sorted(tokens) == ["ann", "ben"]
    assert events.index(("node", "assess")) > max(i for i, e in enumerate(events) if e[0] == "token")


def test_cli_pause_approve_and_fork(fake, sqlite_db, capsys, tmp_path: Path):
    plan = {"tasks": [{"title": "copy", "worker": "writer-2"}, {"title": "research", "worker": "researcher-1"}]}
    fake.script("default", [{"json": plan}])
    base = ["--db", sqlite_db]
    code = main(
        [
            "run",
            "hierarchical",
            "site",
            "--agents",
            "2",
            "--base-url",
            fake.url,
            "--run-id",
            "c1",
            "-o",
            "approve_plan=true",
            *base,
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "paused: approval" in err and "--approve" in err

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps([{"title": "only research", "worker": "researcher-1"}]))
    assert main(["resume", "c1", "--edit-plan", str(plan_file), "--quiet", *base]) == 0
    capsys.readouterr()

    assert main(["history", "c1", *base]) == 0
    history = capsys.readouterr().out
    checkpoint = next(line.split("│")[2].strip() for line in history.splitlines() if "approve" in line and "│" in line)
    assert main(["fork", "c1", "--checkpoint", checkpoint, "--run-id", "c1-fork", *base]) == 0
    assert capsys.readouterr().out.strip() == "c1-fork"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "debate", "q", "--agents", "2", "--pause-before", "vote"], "unknown node 'vote'"),
        (["fork", "no-such-run", "--checkpoint", "x"], "no run with id 'no-such-run'"),
        (["show", "RUN", "--checkpoint", "nope"], "no checkpoint 'nope'"),
        (["fork", "RUN", "--checkpoint", "nope"], "no checkpoint 'nope'"),
        (["resume", "RUN", "--approve", "--reject", "no"], "choose one of"),
        (["resume", "RUN", "--set", "oops"], "--set takes KEY=VALUE"),
    ],
)
def test_bad_stepping_input_exits_2_with_one_line(fake, sqlite_db, capsys, args, message):
    assert (
        main(
            [
                "run",
                "debate",
                "q",
                "--agents",
                "2",
                "--base-url",
                fake.url,
                "--run-id",
                "RUN",
                "--quiet",
                "--db",
                sqlite_db,
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main([*args, "--db", sqlite_db] if args[0] != "run" else [*args, "--base-url", fake.url, "--db", sqlite_db])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


async def test_a_fork_from_the_very_start_runs_everything_again():
    first = ScriptedChatModel({"ann": ["Final answer: 2"], "ben": ["Final answer: 2"]})
    async with Runner("memory") as runner:
        await runner.start(debate(first), "q", run_id="orig-2")
        start = (await runner.history("orig-2", graph=debate(first).build()))[0]
        second = ScriptedChatModel({"ann": ["Final answer: 3"], "ben": ["Final answer: 3"]})
        await runner.fork("orig-2", start.checkpoint_id, new_run_id="fork-2")
        result = await runner.resume("fork-2", graph=debate(second).build())
    assert result.final_answer == "3" and len(second.calls) == 2


# -- editing state from the command line ---------------------------------------------


def show_json(capsys, run_id: str, db: str, *args: str) -> dict:
    assert main(["show", run_id, "--json", *args, "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def checkpoint_before(capsys, run_id: str, db: str, node: str) -> str:
    """The id of the run's first checkpoint after which `node` runs (from `graphswarm history`)."""
    assert main(["history", run_id, "--db", db]) == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in capsys.readouterr().out.splitlines()]
    return next(row[1] for row in rows if len(row) == 5 and row[3] == node)


def paused_debate(fake, capsys, db: str, run_id: str, *pause: str) -> None:
    """A debate of two agents on the fake server, paused at a breakpoint."""
    assert (
        main(
            [
                "run",
                "debate",
                "q",
                "--agents",
                "2",
                "--base-url",
                fake.url,
                "--run-id",
                run_id,
                *pause,
                "--quiet",
                "--db",
                db,
            ]
        )
        == 3
    )
    capsys.readouterr()


DEBATE_KEYS = (
    "objective, calls (appended to), final_answer, stop_reason, messages (appended to), round, transcript (appended to), "
    "rounds (appended to), moderator_notes (appended to)"
)


@pytest.mark.parametrize("command", ["resume", "fork"])
@pytest.mark.parametrize(
    "edit, message",
    [
        ("moderator_notes=not json", "--set moderator_notes: 'not json' is not JSON (a string needs quotes"),
        ("bogus=1", f"cannot set 'bogus': this run's state keys are {DEBATE_KEYS}"),
        (
            'moderator_notes="be brief"',
            "cannot set 'moderator_notes': input should be a valid list (give a list of the items to append)",
        ),
        ('round="2"', "cannot set 'round': input should be a valid integer"),
        ('transcript=[{"agent": "ann"}]', "cannot set 'transcript': item 0 round: field required"),
    ],
)
def test_a_bad_edit_exits_2_with_one_line_and_changes_nothing(fake, sqlite_db, capsys, command, edit, message):
    paused_debate(fake, capsys, sqlite_db, "ed", "--pause-after", "assess")
    before = show_json(capsys, "ed", sqlite_db)
    at = []
    if command == "fork":
        at = ["--checkpoint", checkpoint_before(capsys, "ed", sqlite_db, "assess"), "--run-id", "ed-fork"]

    code = main([command, "ed", *at, "--set", edit, "--db", sqlite_db])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]

    assert show_json(capsys, "ed", sqlite_db) == before
    assert main(["show", "ed-fork", "--db", sqlite_db]) == 2  # no fork was made


def test_an_edit_appends_to_the_lists_the_graph_appends_to_and_replaces_other_keys(fake, sqlite_db, capsys):
    paused_debate(fake, capsys, sqlite_db, "ed", "--pause-after", "assess")
    checkpoint = checkpoint_before(capsys, "ed", sqlite_db, "assess")  # both agents have argued round 1
    then = show_json(capsys, "ed", sqlite_db, "--checkpoint", checkpoint)
    note = {"agent": "moderator", "round": 1, "text": "cite [sources]"}

    assert (
        main(
            [
                "fork",
                "ed",
                "--checkpoint",
                checkpoint,
                "--run-id",
                "ed-2",
                "--set",
                f"transcript=[{json.dumps(note)}]",
                "--set",
                'objective="q, asked again"',
                "--db",
                sqlite_db,
            ]
        )
        == 0
    )
    capsys.readouterr()
    fork = show_json(capsys, "ed-2", sqlite_db)
    assert fork["state"]["transcript"] == [*then["state"]["transcript"], note]
    assert fork["state"]["objective"] == "q, asked again"
    assert fork["next"] == ["assess"]  # what runs next is what ran next there

    assert main(["resume", "--help"]) == 0
    help_text = re.sub("[│╭╮╰╯─]", " ", capsys.readouterr().out)  # Rich help draws boxes around the options
    assert "gets the items of the JSON list appended" in " ".join(help_text.split())


def test_an_edit_on_resume_lands_and_does_not_run_the_step_again(fake, sqlite_db, capsys):
    paused_debate(fake, capsys, sqlite_db, "ed", "--pause-before", "assess")  # round 1 argued, not yet assessed
    assert fake.stats()["requests"] == 2

    assert (
        main(["resume", "ed", "--set", 'moderator_notes=["be brief"]', "--no-pause", "--quiet", "--db", sqlite_db]) == 0
    )
    capsys.readouterr()
    state = show_json(capsys, "ed", sqlite_db)["state"]
    assert state["moderator_notes"] == ["be brief"]
    assert [turn["round"] for turn in state["transcript"]] == [1, 1, 2, 2]
    assert fake.stats()["requests"] == 4  # two rounds of two agents: round 1 was not argued again
