"""What an architecture is: the one object each architecture module ends with.

    ARCHITECTURE = Architecture(
        name="debate", summary="agents argue over rounds ...", build=create_debate,
        options=DebateOptions, view=View(view_update, view_run),
        roles=(Role.MODERATOR, Role.JUDGE), min_agents=2,
    )

The registry finds it by the module's name; nothing outside `architectures/` names an
architecture. Adding one is adding a module that ends like this (and naming it in the
registry's list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from graphswarm.architectures.options import SwarmOptions
    from graphswarm.view import View

__all__ = ["Architecture", "Role"]


class Role(StrEnum):
    """Special agents an architecture may take besides its members."""

    LEADER = "leader"
    """Plans, delegates and consolidates (hierarchical, task loop, orchestrator)."""
    JUDGE = "judge"
    """Scores, breaks ties or gives a verdict."""
    MODERATOR = "moderator"
    """Says when a debate is settled."""


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str
    """One line: what the graph does."""
    build: Callable[..., StateGraph[Any, Any, Any, Any]]
    """The builder: `build(agents, *, model=, base_url=, options=, <role>=...) -> StateGraph`."""
    options: type[SwarmOptions]
    """Its Options model: defaults, ranges, help; CLI flags and records derive from it."""
    view: View
    """How its progress and its runs are shown, as neutral blocks."""
    roles: tuple[Role, ...] = ()
    min_agents: int = 1
    default_agents: int = 3
