"""The list of architectures, shared by the CLI, the served graphs and `draw`.

A `SwarmSpec` says which architecture to build with which agents and options. It is
what a run records (without clients or keys), so a run can be rebuilt and resumed
from the CLI in another process.

Options: each architecture's module declares one pydantic Options model (a
`graphswarm.architectures.options.SwarmOptions`: defaults, ranges, types, help), named
here by `Architecture.options`. `SwarmSpec.build` validates `spec.options` with it
(``-o rounds=3`` arrives as text and is coerced; an unknown key or a bad value is a
one-line `ConfigError` naming the option) and passes the model to the builder. Some
fields accept objects as well as names: embeddings (an `Embeddings` instance or
"minilm"), a scoring function, a mapping of subgraphs. Which options a record keeps is
derived from the values, not from a list of names: an option given as plain data (JSON)
is recorded, one given as an object is used but not recorded, and it makes the spec
unrecordable (such a run is resumed from Python with the same graph).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphswarm.agents import Agent, make_workers
from graphswarm.architectures.base import Architecture, Role
from graphswarm.errors import ConfigError
from graphswarm.models import check_model, model_label, price_known, redact_url

if TYPE_CHECKING:
    from graphswarm.architectures.options import SwarmOptions

__all__ = ["Architecture", "ARCHITECTURES", "Role", "SwarmSpec", "get_architecture"]


_MODULES = ("hierarchical", "collaborative", "competitive", "particle", "debate", "task_loop", "orchestrator")
"""The architectures: each is the module `graphswarm.architectures.<name>`, which ends
with its `ARCHITECTURE` (see `graphswarm.architectures.base`)."""


class _Registry(Mapping[str, Architecture]):
    """The architectures by name; a module is imported when its architecture is asked for."""

    def __getitem__(self, name: str) -> Architecture:
        if name not in _MODULES:
            raise KeyError(name)
        return importlib.import_module(f"graphswarm.architectures.{name}").ARCHITECTURE

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


ARCHITECTURES: Mapping[str, Architecture] = _Registry()


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
    """Options of the architecture's Options model (or the model itself); checked by `build`."""

    @field_validator("options", mode="before")
    @classmethod
    def _options_given_as_a_model(cls, value: Any) -> Any:
        return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value

    @classmethod
    def with_workers(cls, architecture: str, count: int, **kwargs: Any) -> SwarmSpec:
        arch = get_architecture(architecture)
        if count < arch.min_agents:
            raise ConfigError(f"{architecture} needs at least {arch.min_agents} agent(s), got {count}")
        return cls(architecture=architecture, agents=make_workers(count), **kwargs)

    def checked_options(self) -> SwarmOptions:
        """`options` validated by the architecture's Options model (a `ConfigError` if they do not fit)."""
        return get_architecture(self.architecture).options.check(self.options)

    def build(self) -> StateGraph[Any, Any, Any, Any]:
        arch = get_architecture(self.architecture)
        if len(self.agents) < arch.min_agents:
            raise ConfigError(f"{arch.name} needs at least {arch.min_agents} agent(s), got {len(self.agents)}")
        options = self.checked_options()
        roles = self.roles
        for role in roles:
            if role not in arch.roles:
                raise ConfigError(f"{arch.name} has no {role} (its roles: {', '.join(arch.roles) or 'none'})")
        return arch.build(self.agents, model=self.model, base_url=self.base_url, options=options, **roles)

    @property
    def roles(self) -> dict[Role, Agent]:
        """The special agents given (leader, judge, moderator)."""
        return {role: agent for role in Role if (agent := getattr(self, role)) is not None}

    @property
    def members(self) -> list[Agent]:
        """Every agent of the swarm: the special roles first, then the members."""
        return [*self.roles.values(), *self.agents]

    def model_of(self, agent: Agent) -> Any:
        """The model an agent uses: its own, else the swarm's."""
        return agent.model if agent.model is not None else self.model

    def check_models(self) -> None:
        """Raise `ModelConfigError` (or `ConfigError`) if a member's model or the named
        embeddings cannot work, creating no client: a built graph resolves them only when
        its nodes first use them."""
        for agent in self.members:
            check_model(self.model_of(agent), base_url=self.base_url)
        options = self.checked_options()
        if options.needs_embeddings:
            from graphswarm.embeddings import check_embeddings

            check_embeddings(getattr(options, "embeddings", None), base_url=self.base_url)

    def check_prices(self) -> None:
        """Raise `ConfigError` naming the agents whose model has no known price: a cost cap
        cannot be kept for them (see `Budget.max_cost`)."""
        unpriced = [
            f"{a.name} ({model_label(self.model_of(a))})"
            for a in self.members
            if a.price is None and not price_known(self.model_of(a), base_url=self.base_url)
        ]
        if unpriced:
            raise ConfigError(
                f"a cost cap cannot be kept: no price is known for the model of {', '.join(unpriced)}; "
                'give those agents a "price" in the agents file, or run without --max-cost'
            )

    @property
    def recordable(self) -> bool:
        """Whether `to_record` keeps enough to rebuild (no model instances or tools)."""
        return (
            not isinstance(self.model, BaseChatModel)
            and all(not isinstance(a.model, BaseChatModel) and not a.tools for a in self.members)
            and self.checked_options().recordable
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
            **{role.value: agent(a) if (a := getattr(self, role)) else None for role in Role},
            "model": self.model if isinstance(self.model, str) or self.model is None else model_label(self.model),
            "base_url": redact_url(self.base_url) if self.base_url else None,
            "options": self.checked_options().recorded(),
            "recordable": self.recordable,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> SwarmSpec:
        data = {k: v for k, v in data.items() if k != "recordable"}
        return cls.model_validate(data)
