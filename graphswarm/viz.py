"""Drawing architectures offline (mermaid text and ASCII; no web service involved)."""

from __future__ import annotations

from graphswarm.agents import make_workers
from graphswarm.registry import SwarmSpec, get_architecture

__all__ = ["draw"]


def draw(architecture: str, *, ascii: bool = False) -> str:
    """The graph of an architecture as mermaid text (default) or ASCII art."""
    from graphswarm.testing import ScriptedChatModel

    arch = get_architecture(architecture)
    # The shape does not depend on models: a stand-in avoids needing any credentials.
    spec = SwarmSpec(
        architecture=arch.name, agents=make_workers(arch.default_agents), model=ScriptedChatModel([])
    )
    graph = spec.build().compile().get_graph()
    return graph.draw_ascii() if ascii else graph.draw_mermaid()
