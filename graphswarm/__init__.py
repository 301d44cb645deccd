"""graphswarm: LLM agent swarms as durable LangGraph graphs.

Names are imported on first use, so `import graphswarm` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Agent": "graphswarm.agents",
    "ModelPrice": "graphswarm.agents",
    "Budget": "graphswarm.budget",
    "SwarmContext": "graphswarm.budget",
    "configurable_graph": "graphswarm.configurable",
    "create_hierarchical": "graphswarm.architectures.hierarchical",
    "create_collaborative": "graphswarm.architectures.collaborative",
    "create_competitive": "graphswarm.architectures.competitive",
    "create_debate": "graphswarm.architectures.debate",
    "create_particle": "graphswarm.architectures.particle",
    "create_task_loop": "graphswarm.architectures.task_loop",
    "create_orchestrator": "graphswarm.architectures.orchestrator",
    "SwarmOptions": "graphswarm.architectures.options",
    "HierarchicalOptions": "graphswarm.architectures.hierarchical",
    "CollaborativeOptions": "graphswarm.architectures.collaborative",
    "CompetitiveOptions": "graphswarm.architectures.competitive",
    "DebateOptions": "graphswarm.architectures.debate",
    "ParticleOptions": "graphswarm.architectures.particle",
    "TaskLoopOptions": "graphswarm.architectures.task_loop",
    "OrchestratorOptions": "graphswarm.architectures.orchestrator",
    "Workspace": "graphswarm.toolbox",
    "BUILTIN_TOOLS": "graphswarm.toolbox",
    "Selection": "graphswarm.architectures.competitive",
    "Topology": "graphswarm.architectures.debate",
    "Delegation": "graphswarm.architectures.hierarchical",
    "VoteMethod": "graphswarm.aggregation",
    "TieBreak": "graphswarm.aggregation",
    "count_votes": "graphswarm.aggregation",
    "make_ballot": "graphswarm.aggregation",
    "extract_answer": "graphswarm.aggregation",
    "JoinPolicy": "graphswarm.architectures.blocks",
    "StopReason": "graphswarm.state",
    "resolve_model": "graphswarm.models",
    "SwarmSpec": "graphswarm.registry",
    "ARCHITECTURES": "graphswarm.registry",
    "Runner": "graphswarm.runs",
    "RunResult": "graphswarm.runs",
    "RunRecord": "graphswarm.runs",
    "RunStatus": "graphswarm.runs",
    "RunFailedError": "graphswarm.runs",
    "run_swarm": "graphswarm.runs",
    "resume_swarm": "graphswarm.runs",
    "open_database": "graphswarm.checkpoint",
    "StructuredMethod": "graphswarm.structured",
    "GraphswarmError": "graphswarm.errors",
    "UsageError": "graphswarm.errors",
    "ConfigError": "graphswarm.errors",
    "ModelConfigError": "graphswarm.errors",
    "MissingExtraError": "graphswarm.errors",
    "UnknownRunError": "graphswarm.errors",
    "RunError": "graphswarm.errors",
    "StructuredOutputError": "graphswarm.errors",
    "ToolRefusedError": "graphswarm.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from graphswarm.agents import Agent, ModelPrice
    from graphswarm.aggregation import TieBreak, VoteMethod, count_votes, extract_answer, make_ballot
    from graphswarm.architectures.blocks import JoinPolicy
    from graphswarm.architectures.collaborative import CollaborativeOptions, create_collaborative
    from graphswarm.architectures.competitive import CompetitiveOptions, Selection, create_competitive
    from graphswarm.architectures.debate import DebateOptions, Topology, create_debate
    from graphswarm.architectures.hierarchical import Delegation, HierarchicalOptions, create_hierarchical
    from graphswarm.architectures.options import SwarmOptions
    from graphswarm.architectures.orchestrator import OrchestratorOptions, create_orchestrator
    from graphswarm.architectures.particle import ParticleOptions, create_particle
    from graphswarm.architectures.task_loop import TaskLoopOptions, create_task_loop
    from graphswarm.budget import Budget, SwarmContext
    from graphswarm.checkpoint import open_database
    from graphswarm.configurable import configurable_graph
    from graphswarm.errors import (
        ConfigError,
        GraphswarmError,
        MissingExtraError,
        ModelConfigError,
        RunError,
        StructuredOutputError,
        ToolRefusedError,
        UnknownRunError,
        UsageError,
    )
    from graphswarm.models import resolve_model
    from graphswarm.registry import ARCHITECTURES, SwarmSpec
    from graphswarm.runs import (
        RunFailedError,
        Runner,
        RunRecord,
        RunResult,
        RunStatus,
        resume_swarm,
        run_swarm,
    )
    from graphswarm.state import StopReason
    from graphswarm.structured import StructuredMethod
    from graphswarm.toolbox import BUILTIN_TOOLS, Workspace


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphswarm' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
