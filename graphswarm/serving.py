"""Graphs for the LangGraph server (`langgraph dev`, Studio).

Each served graph is configurable per assistant and per run: its context schema
(`SwarmContext`) holds the model, base URL, agent count, options and budget, so Studio
shows them as a form and `langgraph-sdk` clients pass them as `context=`.

What a run leaves unset comes from the environment the server starts in:
GRAPHSWARM_MODEL, GRAPHSWARM_BASE_URL and GRAPHSWARM_AGENTS choose the model and the
number of agents; GRAPHSWARM_OPTION_<NAME> sets the option NAME of every served
architecture whose Options model has it (GRAPHSWARM_OPTION_ROUNDS=3,
GRAPHSWARM_OPTION_MAX_ROUNDS=2): a JSON value or plain text, checked like `-o NAME=VALUE`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graphswarm.architectures.options import parse_value
from graphswarm.configurable import configurable_graph
from graphswarm.errors import ConfigError
from graphswarm.registry import SwarmSpec, get_architecture

__all__ = ["served_graph", "options_from_env", "OPTION_PREFIX"]

OPTION_PREFIX = "GRAPHSWARM_OPTION_"


def served_graph(architecture: str) -> CompiledStateGraph:
    """`architecture` as a graph each run configures through its context, with
    GRAPHSWARM_MODEL, GRAPHSWARM_BASE_URL, GRAPHSWARM_AGENTS and its
    GRAPHSWARM_OPTION_<NAME> variables as the defaults."""
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
        options=options_from_env(architecture),
    )
    return configurable_graph(spec).compile(name=f"graphswarm-{architecture}")


def options_from_env(architecture: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options of `architecture` set as GRAPHSWARM_OPTION_<NAME> (its Options model's
    field names); variables naming options it does not have are left to the others."""
    environ = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    for name in get_architecture(architecture).options.model_fields:
        raw = environ.get(OPTION_PREFIX + name.upper())
        if raw is None:
            continue
        options[name] = parse_value(raw)
    return options
