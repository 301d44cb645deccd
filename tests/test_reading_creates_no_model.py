"""Reading a run never needs a model: `show`, `history`, `report` and `draw` build each
architecture's graph shape only, and no chat model or embeddings client is created for them.

A graph resolves its agents' models when a node first calls one, so building it is free.
"""

from __future__ import annotations

import pytest

from graphswarm import embeddings, local, models
from graphswarm.cli import main
from graphswarm.registry import ARCHITECTURES

SMALL = {
    "hierarchical": ["--max-rounds", "1"],
    "collaborative": [],
    "competitive": [],
    "debate": ["--rounds", "1"],
    "particle": ["--iterations", "1"],
    "task_loop": ["-o", "max_tasks=1"],
    "orchestrator": ["-o", "max_tasks=2"],
}


def no_client(*args, **kwargs):
    raise AssertionError("a chat model was created while reading a run")


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_show_history_report_and_draw_create_no_chat_model(architecture, fake, tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "runs.sqlite")
    started = main(["run", architecture, "What is 2 + 2?", "--agents", "2", "--base-url", fake.url, "--model", "m",
                    "--run-id", "r", "--quiet", "--db", db, *SMALL[architecture]])  # fmt: skip
    assert started == 0, capsys.readouterr().err

    clients = [(models, "_openai_compatible"), (models, "_init_chat_model"), (local, "load_local_model")]
    for where, name in [*clients, (embeddings, "resolve_embeddings")]:
        monkeypatch.setattr(where, name, no_client)
    requests = fake.stats()["requests"], fake.stats()["embeddings"]
    for command in (
        ["show", "r"],
        ["show", "r", "--json"],
        ["history", "r"],
        ["report", "r", "-O", str(tmp_path / "r.html")],
    ):
        assert main([*command, "--db", db]) == 0, capsys.readouterr().err
    assert main(["draw", architecture]) == 0
    assert (fake.stats()["requests"], fake.stats()["embeddings"]) == requests


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_a_graph_is_built_without_resolving_its_models(architecture, monkeypatch):
    from graphswarm import SwarmSpec

    monkeypatch.setattr(models, "_openai_compatible", no_client)
    spec = SwarmSpec.with_workers(
        architecture,
        2,
        model="openai:gpt-4o-mini",
        options={"embeddings": "minilm"} if "embeddings" in ARCHITECTURES[architecture].options.model_fields else {},
    )
    assert spec.build().compile().get_graph().nodes  # no key needed, no client made


async def test_a_run_checks_its_models_before_it_starts(tmp_path):
    from graphswarm import ModelConfigError, Runner, SwarmSpec

    spec = SwarmSpec.with_workers("debate", 2, model="openai:gpt-4o-mini")
    async with Runner(str(tmp_path / "runs.sqlite")) as runner:
        with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
            await runner.start(spec, "2 + 2?")
        assert await runner.list() == []
