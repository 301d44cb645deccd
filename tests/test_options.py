"""One Options model per architecture: validation, coercion, records, CLI flags, `graphswarm options`, serving."""

from __future__ import annotations

import json

import pytest
import typer

from graphswarm import Agent, ConfigError, SwarmSpec, create_debate
from graphswarm.agents import make_workers
from graphswarm.architectures.debate import DebateOptions
from graphswarm.cli import _parse_options, app, main
from graphswarm.registry import ARCHITECTURES
from graphswarm.serving import options_from_env, served_graph
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

NOWHERE = ["--base-url", "http://127.0.0.1:9/v1"]

OUT_OF_RANGE = {
    "hierarchical": ("max_rounds=0", "option max_rounds must be a whole number from 1 to 50, got 0"),
    "collaborative": ("threshold=1.5", "option threshold must be a number in (0, 1], got 1.5"),
    "competitive": (
        "selection=loudest",
        "option selection must be one of judge, pairwise, scorer, confidence, got 'loudest'",
    ),
    "debate": ("rounds=21", "option rounds must be a whole number from 1 to 20, got 21"),
    "particle": ("inertia=2", "option inertia must be a number from 0 to 1, got 2"),
    "task_loop": ("max_steps=0", "option max_steps must be a whole number from 1 to 100, got 0"),
    "orchestrator": ("max_failures=0", "option max_failures must be a whole number from 1 to 1000, got 0"),
}


def one_line_exit_2(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_every_architecture_has_an_options_model():
    assert set(OUT_OF_RANGE) == set(ARCHITECTURES)
    for arch in ARCHITECTURES.values():
        model = arch.options
        assert model.model_config["extra"] == "forbid"
        assert all(field.description for field in model.model_fields.values()), arch.name


@pytest.mark.parametrize("architecture", sorted(OUT_OF_RANGE))
def test_an_out_of_range_option_is_one_line_exit_2(capsys, sqlite_db, architecture):
    pair, message = OUT_OF_RANGE[architecture]
    line = one_line_exit_2(capsys, "run", architecture, "x", "-o", pair, *NOWHERE, "--db", sqlite_db)
    assert line == f"error: {message}"


@pytest.mark.parametrize("architecture", sorted(OUT_OF_RANGE))
def test_an_unknown_option_is_one_line_exit_2_listing_the_options(capsys, sqlite_db, architecture):
    line = one_line_exit_2(capsys, "run", architecture, "x", "-o", "nonsense=1", *NOWHERE, "--db", sqlite_db)
    names = ", ".join(ARCHITECTURES[architecture].options.model_fields)
    assert line == f"error: {architecture} has no option 'nonsense' (its options: {names})"


def test_a_flag_of_another_architecture_is_refused_with_this_ones_options(capsys, sqlite_db):
    line = one_line_exit_2(capsys, "run", "debate", "x", "--join", "continue", *NOWHERE, "--db", sqlite_db)
    assert line == "error: debate has no option 'join' (its options: rounds, threshold, topology, method, embeddings)"


def test_a_flag_that_is_no_option_at_all_is_a_usage_error(capsys, sqlite_db):
    assert "No such option: --bogus" in one_line_exit_2(capsys, "run", "debate", "x", "--bogus", "1", "--db", sqlite_db)
    line = one_line_exit_2(capsys, "run", "debate", "x", "--rounds", "--db", sqlite_db)
    assert line == "error: --rounds needs a value (or -o rounds=VALUE)"


def run_args(*args: str) -> dict:
    """What `graphswarm run ARGS` parses to (nothing runs)."""
    command = typer.main.get_command(app).commands["run"]
    return command.make_context("run", list(args)).params


# Every flag `run` had before the Options models, and the README's examples.
OLD_FLAGS = [
    ("hierarchical", ["--max-rounds", "3"], {"max_rounds": 3}),
    ("hierarchical", ["--max-tasks", "2"], {"max_tasks": 2}),
    ("hierarchical", ["--join", "continue"], {"join": "continue"}),
    ("hierarchical", ["--max-rounds", "3", "--join", "continue"], {"max_rounds": 3, "join": "continue"}),
    ("collaborative", ["--rounds", "2"], {"rounds": 2}),
    ("collaborative", ["--method", "weighted"], {"method": "weighted"}),
    ("collaborative", ["--threshold", "0.7"], {"threshold": 0.7}),
    ("collaborative", ["--tie-break", "judge"], {"tie_break": "judge"}),
    ("competitive", ["--selection", "judge"], {"selection": "judge"}),
    ("debate", ["--rounds", "2"], {"rounds": 2}),
    ("debate", ["--threshold", "0.67"], {"threshold": 0.67}),
    ("debate", ["--topology", "ring"], {"topology": "ring"}),
    ("debate", ["--method", "plurality"], {"method": "plurality"}),
    ("particle", ["--iterations", "3"], {"iterations": 3}),
    (
        "particle",
        ["--iterations", "3", "-o", "inertia=0.5", "-o", "patience=2"],
        {"iterations": 3, "inertia": 0.5, "patience": 2},
    ),
]


@pytest.mark.parametrize(("architecture", "flags", "options"), OLD_FLAGS)
@pytest.mark.parametrize("where", ["after", "before"])
def test_every_old_flag_is_an_alias_of_its_option(architecture, flags, options, where):
    args = [architecture, "the objective", *flags] if where == "after" else [architecture, *flags, "the objective"]
    params = run_args(*args)
    assert params["objective"] == "the objective"
    spec = SwarmSpec(architecture=architecture, agents=make_workers(3), options=_parse_options(params["option"]))
    assert spec.checked_options().recorded() == options


def test_flags_with_an_equals_sign_and_switches():
    assert run_args("hierarchical", "x", "--join=wait", "--approve-plan")["option"] == [
        "join=wait",
        "approve_plan=true",
    ]
    assert run_args("task_loop", "x", "--allow-shell=false")["option"] == ["allow_shell=false"]


def test_nodes_is_the_pool_size_not_an_option():
    params = run_args("orchestrator", "x", "--nodes", "40", "-o", "concurrency=10")
    assert params["agents"] == 40 and params["option"] == ["concurrency=10"]


def test_flags_of_run_itself_win_over_options_of_the_same_name():
    params = run_args("orchestrator", "x", "--concurrency", "4", "--embeddings", "minilm")
    assert params["concurrency"] == 4 and params["embeddings"] == "minilm" and not params["option"]


def test_the_readme_debate_runs_with_flags_and_records_its_options(fake, capsys, sqlite_db):
    code = main(
        [
            "run",
            "debate",
            "What is 17 + 25?",
            "--rounds",
            "2",
            "--threshold",
            "0.67",
            "--topology",
            "ring",
            "--base-url",
            fake.url,
            "--model",
            "m",
            "--run-id",
            "d1",
            "--db",
            sqlite_db,
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["show", "d1", "--json", "--db", sqlite_db]) == 0
    record = json.loads(capsys.readouterr().out)["record"]
    assert record["spec"]["options"] == {"rounds": 2, "threshold": 0.67, "topology": "ring"}


@pytest.mark.parametrize("value", ["3", '"3"'])
def test_option_values_written_as_text_are_coerced(value):
    options = _parse_options([f"rounds={value}", "threshold=0.5", "topology=ring"])
    spec = SwarmSpec(architecture="debate", agents=make_workers(2), options=options)
    assert spec.to_record()["options"] == {"rounds": 3, "threshold": 0.5, "topology": "ring"}
    flags = SwarmSpec(architecture="hierarchical", agents=make_workers(2), options={"approve_plan": "true"})
    assert flags.checked_options().approve_plan is True


def test_graphswarm_options_lists_each_option_from_the_model(capsys):
    assert main(["options", "debate"]) == 0
    out = capsys.readouterr().out
    for info in DebateOptions.describe():
        assert info.name in out and info.description in out
    assert "--rounds" in out and "from 1 to 20" in out and "full | ring" in out and "plurality" in out
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name} options" in out for name in ARCHITECTURES)
    assert "(Python only)" in out and "-o concurrency=..." in out  # scorer; the orchestrator's concurrency
    assert "unknown architecture 'swarmy'" in one_line_exit_2(capsys, "options", "swarmy")


def test_run_help_lists_each_architectures_flags(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Architecture options" in out and "--max-rounds" in out and "--topology" in out


# -- from Python -----------------------------------------------------------------------

DEBATERS = [Agent(name="ann"), Agent(name="bob")]


def test_builders_take_keyword_options_or_the_model():
    by_keyword = create_debate(DEBATERS, model=ScriptedChatModel([]), rounds=3, topology="ring")
    by_model = create_debate(DEBATERS, model=ScriptedChatModel([]), options=DebateOptions(rounds=3, topology="ring"))
    assert set(by_keyword.nodes) == set(by_model.nodes)
    with pytest.raises(ConfigError, match=r"^option rounds must be a whole number from 1 to 20, got 0$"):
        create_debate(DEBATERS, model=ScriptedChatModel([]), rounds=0)
    with pytest.raises(ConfigError, match=r"^debate has no option 'rouns' \(its options: rounds, "):
        create_debate(DEBATERS, model=ScriptedChatModel([]), rouns=3)


def test_options_given_as_objects_are_used_but_not_recorded():
    scorer = SwarmSpec(
        architecture="competitive",
        agents=make_workers(2),
        model=ScriptedChatModel([]),
        options={"selection": "scorer", "scorer": lambda objective, answer: len(answer)},
    )
    scorer.build()
    assert not scorer.recordable and scorer.to_record()["options"] == {"selection": "scorer"}
    named = SwarmSpec(architecture="particle", agents=make_workers(2), options={"embeddings": "minilm"})
    given = SwarmSpec(architecture="particle", agents=make_workers(2), options={"embeddings": KeywordEmbeddings()})
    assert named.recordable and not given.recordable and given.to_record()["options"] == {}


def test_a_spec_takes_the_options_model_too():
    spec = SwarmSpec(architecture="debate", agents=make_workers(2), options=DebateOptions(rounds=4))
    assert spec.options == {"rounds": 4} and spec.to_record()["options"] == {"rounds": 4}


# -- langgraph dev -----------------------------------------------------------------------


def test_served_graphs_take_options_from_the_environment(monkeypatch):
    env = {"GRAPHSWARM_OPTION_ROUNDS": "3", "GRAPHSWARM_OPTION_JOIN": "wait", "GRAPHSWARM_OPTION_TOPOLOGY": "ring"}
    assert options_from_env("debate", env) == {"rounds": 3, "topology": "ring"}
    assert options_from_env("hierarchical", env) == {"join": "wait"}
    monkeypatch.setenv("GRAPHSWARM_MODEL", "m")
    monkeypatch.setenv("GRAPHSWARM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GRAPHSWARM_OPTION_APPROVE_PLAN", "true")
    assert "approve" in served_graph("hierarchical").get_graph().nodes
    monkeypatch.setenv("GRAPHSWARM_OPTION_MAX_ROUNDS", "0")
    with pytest.raises(ConfigError, match=r"^option max_rounds must be a whole number from 1 to 50, got 0$"):
        served_graph("hierarchical")
