"""The graphs in graphs/ that `langgraph dev` serves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_served(name: str):
    spec = importlib.util.spec_from_file_location(f"served_{name}", ROOT / "graphs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph


def test_langgraph_json_lists_every_served_graph():
    config = json.loads((ROOT / "langgraph.json").read_text())
    for name, target in config["graphs"].items():
        path, _, attr = target.partition(":")
        assert (ROOT / path).is_file() and attr == "graph", name


async def test_the_served_hierarchical_graph_runs_without_a_graphswarm_context(fake, monkeypatch):
    monkeypatch.setenv("GRAPHSWARM_BASE_URL", fake.url)
    monkeypatch.setenv("GRAPHSWARM_MODEL", "served-model")
    monkeypatch.setenv("GRAPHSWARM_AGENTS", "2")
    graph = load_served("hierarchical")
    state = await graph.ainvoke({"objective": "Plan a meetup"})
    assert state["final_answer"]
    assert fake.stats()["by_model"]["served-model"]["succeeded"] == len(state["calls"])
