"""The list of architectures, shared by the CLI, the served graphs and `draw`.

A `SwarmSpec` says which architecture to build with which agents and options. It is
what a run records (without clients or keys), so a run can be rebuilt and resumed
from the CLI in another process.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from graphswarm.agents import Agent, make_workers
from graphswarm.errors import ConfigError
from graphswarm.models import model_label, redact_url

__all__ = ["Architecture", "ARCHITECTURES", "SwarmSpec", "get_architecture"]

_UNRECORDABLE = frozenset({"embeddings", "scorer"})
"""Options that may hold objects (functions, clients) a run record cannot keep; a name
(``-o embeddings=minilm``) is kept."""


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: str
    """"module:function" of the builder, imported only when needed."""
    summary: str
    options: tuple[str, ...] = ()
    """The builder's options that the CLI may set."""
    roles: tuple[str, ...] = ()
    """Special agents the builder takes besides its members (leader, judge, moderator)."""
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
            options=("max_rounds", "max_tasks", "join", "approve_plan"),
            roles=("leader",),
        ),
        Architecture(
            "collaborative",
            "graphswarm.architectures.collaborative:create_collaborative",
            "agents answer in parallel, may revise after seeing the tally, and a counted vote decides",
            options=("rounds", "method", "threshold", "tie_break"),
            roles=("judge",),
            min_agents=2,
            default_agents=5,
        ),
        Architecture(
            "competitive",
            "graphswarm.architectures.competitive:create_competitive",
            "agents answer independently and a judge, a scorer or their confidence picks the best",
            options=("selection",),
            roles=("judge",),
            min_agents=2,
        ),
        Architecture(
            "particle",
            "graphswarm.architectures.particle:create_particle",
            "particles revise their answers toward the best found so far, moving through embedding space",
            options=("iterations", "inertia", "exploration", "diversity_threshold", "patience", "neighbours"),
            roles=("judge",),
            min_agents=2,
            default_agents=4,
        ),
        Architecture(
            "debate",
            "graphswarm.architectures.debate:create_debate",
            "agents argue over rounds, seeing each other's answers, until they agree; then a verdict",
            options=("rounds", "threshold", "topology", "method"),
            roles=("moderator", "judge"),
            min_agents=2,
        ),
        Architecture(
            "task_loop",
            "graphswarm.architectures.task_loop:create_task_loop",
            "a planner keeps a task list; agents do the tasks with tools, or hand them to another swarm",
            options=(
                "tools", "allow_shell", "approve_tools", "workspace", "subgraphs",
                "max_tasks", "max_steps", "duplicate_similarity",
            ),
            roles=("leader",),
            default_agents=2,
        ),
        Architecture(
            "orchestrator",
            "graphswarm.architectures.orchestrator:create_orchestrator",
            "an orchestrator spreads tasks over a pool of agents, reassigning the work of those that fail",
            options=(
                "concurrency", "max_tasks", "max_rounds", "max_failures", "max_attempts",
                "max_task_attempts", "task_timeout",
            ),
            roles=("leader",),
            default_agents=8,
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
    judge: Agent | None = None
    moderator: Agent | None = None
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
        unknown = sorted(set(self.options) - set(arch.options) - {"embeddings", "weights", "scorer"})
        if unknown:
            raise ConfigError(
                f"{arch.name} has no option {unknown[0]!r} (its options: {', '.join(arch.options) or 'none'})"
            )
        kwargs = dict(self.options)
        for role in ("leader", "judge", "moderator"):
            agent = getattr(self, role)
            if agent is not None:
                if role not in arch.roles:
                    raise ConfigError(f"{arch.name} has no {role} (its roles: {', '.join(arch.roles) or 'none'})")
                kwargs[role] = agent
        if arch.name == "particle" or kwargs.get("method") == "semantic" or "embeddings" in kwargs:
            from graphswarm.embeddings import resolve_embeddings

            # None: the best available; a name (-o embeddings=minilm) becomes the embeddings.
            kwargs["embeddings"] = resolve_embeddings(kwargs.get("embeddings"), base_url=self.base_url)
        builder = arch.load_builder()
        return builder(self.agents, model=self.model, base_url=self.base_url, **_typed_options(builder, kwargs))

    @property
    def members(self) -> list[Agent]:
        """Every agent of the swarm: the special roles first, then the members."""
        return [a for a in (self.leader, self.judge, self.moderator) if a is not None] + list(self.agents)

    @property
    def recordable(self) -> bool:
        """Whether `to_record` keeps enough to rebuild (no model instances or tools)."""
        return (
            not isinstance(self.model, BaseChatModel)
            and all(not isinstance(a.model, BaseChatModel) and not a.tools for a in self.members)
            and not any(k in _UNRECORDABLE and not isinstance(v, str) for k, v in self.options.items())
            and not isinstance(self.options.get("subgraphs"), Mapping)
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
            "judge": agent(self.judge) if self.judge else None,
            "moderator": agent(self.moderator) if self.moderator else None,
            "model": self.model if isinstance(self.model, str) or self.model is None else model_label(self.model),
            "base_url": redact_url(self.base_url) if self.base_url else None,
            "options": {
                k: (v.value if hasattr(v, "value") else v)
                for k, v in self.options.items()
                if (k not in _UNRECORDABLE or isinstance(v, str)) and not (k == "subgraphs" and isinstance(v, Mapping))
            },
            "recordable": self.recordable,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> SwarmSpec:
        data = {k: v for k, v in data.items() if k != "recordable"}
        return cls.model_validate(data)


_NUMBERS = {int: "a whole number", float: "a number", bool: "true or false"}


def _typed_options(builder: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Options of the builder's number and flag parameters, checked and converted
    (``"3"`` becomes 3), so a wrong value is a one-line `ConfigError`, not a `TypeError`."""
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # hints naming types the module only imports for type checkers
        return options
    checked = dict(options)
    for key, value in options.items():
        hint = hints.get(key)
        plain = [t for t in typing.get_args(hint) if t is not type(None)] if typing.get_args(hint) else [hint]
        if len(plain) != 1 or plain[0] not in _NUMBERS or (value is None and hint is not plain[0]):
            continue
        try:
            checked[key] = TypeAdapter(plain[0]).validate_python(value)
        except ValidationError:
            raise ConfigError(f"option {key} must be {_NUMBERS[plain[0]]}, got {value!r}") from None
    return checked
