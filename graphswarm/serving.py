"""Graphs for the LangGraph server, configured from the environment."""

from __future__ import annotations

import os

from langgraph.graph.state import CompiledStateGraph

from graphswarm.errors import ConfigError
from graphswarm.registry import SwarmSpec, get_architecture

__all__ = ["served_graph"]


def served_graph(architecture: str) -> CompiledStateGraph:
    """Build `architecture` with GRAPHSWARM_MODEL, GRAPHSWARM_BASE_URL and GRAPHSWARM_AGENTS."""
    arch = get_architecture(architecture)
    raw_count = os.environ.get("GRAPHSWARM_AGENTS", str(arch.default_agents))
    try:
        count = int(raw_count)
    except ValueError:
        raise ConfigError(f"GRAPHSWARM_AGENTS must be a whole number, got {raw_count!r}") from None
    spec = SwarmSpec.with_workers(
        architecture,
        count,
        model=os.environ.get("GRAPHSWARM_MODEL") or None,
        base_url=os.environ.get("GRAPHSWARM_BASE_URL") or None,
    )
    return spec.build().compile(name=f"graphswarm-{architecture}")
