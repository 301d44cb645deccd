"""The list of architectures, shared by the CLI, the served graphs and `draw`.

A `SwarmSpec` says which architecture to build with which agents and options. It is
what a run records (without clients or keys), so a run can be rebuilt and resumed
from the CLI in another process.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from pydantic import BaseModel, ConfigDict, Field

from graphswarm.agents import Agent, make_workers
from graphswarm.errors import ConfigError
from graphswarm.models import model_label, redact_url

__all__ = ["Architecture", "ARCHITECTURES", "SwarmSpec", "get_architecture"]


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: str
    """"module:function" of the builder, imported only when needed."""
    summary: str
    min_agents: int = 1
    default_agents: int = 3

    def load_builder(self):
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture(
            "hierarchical",
            "graphswarm.architectures.hierarchical:create_hierarchical",
            "a leader plans, delegates by strengths, consolidates and reviews in rounds",
        ),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r} (available: {', '.join(ARCHITECTURES)})") from None


class SwarmSpec(BaseModel):
    """Everything needed to build one swarm's graph again."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    architecture: str
    agents: list[Agent] = Field(default_factory=list)
    leader: Agent | None = None
    model: Any = None
    """A model string, a chat model instance (not recordable), or None for the default."""
    base_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def with_workers(cls, architecture: str, count: int, **kwargs: Any) -> SwarmSpec:
        arch = get_architecture(architecture)
        if count < arch.min_agents:
            raise ConfigError(f"{architecture} needs at least {arch.min_agents} agent(s), got {count}")
        return cls(architecture=architecture, agents=make_workers(count), **kwargs)

    def build(self) -> StateGraph:
        arch = get_architecture(self.architecture)
        if len(self.agents) < arch.min_agents:
            raise ConfigError(f"{arch.name} needs at least {arch.min_agents} agent(s), got {len(self.agents)}")
        kwargs = dict(self.options)
        if self.leader is not None:
            kwargs["leader"] = self.leader
        return arch.load_builder()(self.agents, model=self.model, base_url=self.base_url, **kwargs)

    @property
    def recordable(self) -> bool:
        """Whether `to_record` keeps enough to rebuild (no model instances or tools)."""
        members = [*self.agents, *([self.leader] if self.leader else [])]
        return not isinstance(self.model, BaseChatModel) and all(
            not isinstance(a.model, BaseChatModel) and not a.tools for a in members
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe description: model instances become labels, URLs lose passwords."""

        def agent(a: Agent) -> dict[str, Any]:
            data = a.model_dump(exclude={"model", "tools"})
            data["model"] = a.model if isinstance(a.model, str) or a.model is None else model_label(a.model)
            return data

        return {
            "architecture": self.architecture,
            "agents": [agent(a) for a in self.agents],
            "leader": agent(self.leader) if self.leader else None,
            "model": self.model if isinstance(self.model, str) or self.model is None else model_label(self.model),
            "base_url": redact_url(self.base_url) if self.base_url else None,
            "options": {k: (v.value if hasattr(v, "value") else v) for k, v in self.options.items()},
            "recordable": self.recordable,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> SwarmSpec:
        data = {k: v for k, v in data.items() if k != "recordable"}
        return cls.model_validate(data)
