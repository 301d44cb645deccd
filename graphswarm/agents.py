"""Agent specs: who takes part in a swarm, with which model and which strengths."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphswarm.errors import ConfigError

__all__ = ["Agent", "ModelPrice", "agent_seed", "check_agents", "make_workers", "sampling_seed", "use_seed"]

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens; used for cost estimates."""

    model_config = ConfigDict(frozen=True)

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class Agent(BaseModel):
    """One member of a swarm.

    Example:
        >>> Agent(name="coder", role="software engineer", strengths=["python", "tests"])
        Agent(name='coder', role='software engineer', ...)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=NAME_PATTERN)
    """Unique within a swarm; used in state, logs and the CLI."""
    role: str = "assistant"
    """A short title, e.g. "researcher"; tells the leader and the agent what it is for."""
    instructions: str = ""
    """Extra system-prompt text for this agent."""
    model: Any = None
    """A LangChain chat model, a model string (see `graphswarm.resolve_model`), or None
    for the swarm's default model."""
    tools: list[Any] = Field(default_factory=list)
    """LangChain tools this agent may call."""
    strengths: list[str] = Field(default_factory=list)
    """What this agent is good at; a leader assigns tasks by them."""
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    """The most tokens one reply may have (None: the model's default; the bundled model's is
    512, an OpenAI-compatible server's may be its whole context)."""
    price: ModelPrice | None = None
    """Overrides the built-in price table for cost estimates."""

    @field_validator("tools")
    @classmethod
    def _as_tools(cls, value: list[Any]) -> list[Any]:
        if not value:
            return value
        from langchain_core.tools import BaseTool, tool

        # Plain functions become tools, with their docstring as the description.
        return [t if isinstance(t, BaseTool) else tool(t) for t in value]

    @field_validator("strengths")
    @classmethod
    def _clean_strengths(cls, value: list[str]) -> list[str]:
        return [s.strip().lower() for s in value if s.strip()]

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, role={self.role!r}, ...)"

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for run records: never holds a client or a key."""
        from graphswarm.models import model_label

        return {
            "name": self.name,
            "role": self.role,
            "strengths": list(self.strengths),
            "model": model_label(self.model),
            "tools": [getattr(t, "name", str(t)) for t in self.tools],
        }


def check_agents(agents: Iterable[Agent], *, minimum: int = 1, what: str = "agents") -> list[Agent]:
    """Validate a list of agents: the right type, enough of them, names unique."""
    agents = list(agents)
    for agent in agents:
        if not isinstance(agent, Agent):
            raise ConfigError(f"{what} must be graphswarm.Agent instances, got {type(agent).__name__}")
    if len(agents) < minimum:
        raise ConfigError(f"need at least {minimum} {what}, got {len(agents)}")
    seen: set[str] = set()
    for agent in agents:
        if agent.name in seen:
            raise ConfigError(f"agent names must be unique: {agent.name!r} appears twice")
        seen.add(agent.name)
    return agents


_DEFAULT_STRENGTHS: Sequence[tuple[str, list[str]]] = (
    ("researcher", ["research", "facts", "analysis"]),
    ("writer", ["writing", "copy", "summary"]),
    ("engineer", ["code", "design", "technical"]),
    ("critic", ["review", "risks", "quality"]),
    ("planner", ["planning", "strategy", "organisation"]),
)


def make_workers(count: int, *, model: Any = None) -> list[Agent]:
    """`count` generic workers with varied roles and strengths (what `--agents N` builds)."""
    if count < 1:
        raise ConfigError(f"agent count must be at least 1, got {count}")
    workers = []
    for i in range(count):
        role, strengths = _DEFAULT_STRENGTHS[i % len(_DEFAULT_STRENGTHS)]
        workers.append(Agent(name=f"{role}-{i + 1}", role=role, strengths=strengths, model=model))
    return workers


# -- sampling seeds: agents of one swarm must not all draw the same sample ------------

_SAMPLING_SEED: ContextVar[int | None] = ContextVar("graphswarm_sampling_seed", default=None)


def agent_seed(run: str, agent: str) -> int:
    """The sampling seed of `agent` in run `run` (a 31-bit number).

    Derived from the run id and the agent's name, both kept in the run record, so a run's
    seeds can be recomputed: the same run samples the same way, and two agents of one run,
    or one agent in two runs, sample differently. Servers that honour `seed` (llama.cpp,
    vLLM, OpenAI) would otherwise give every agent asked the same question the same answer.
    """
    digest = hashlib.sha256(f"{run}\x00{agent}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def sampling_seed() -> int | None:
    """The seed the model request being made now should sample with (None: the model's own)."""
    return _SAMPLING_SEED.get()


@contextmanager
def use_seed(seed: int | None) -> Iterator[None]:
    """Requests made inside the block (in this task or thread) sample with `seed`.

    The OpenAI-compatible client and the bundled local model send it with each request,
    unless the model was given a seed of its own.
    """
    token = _SAMPLING_SEED.set(seed)
    try:
        yield
    finally:
        _SAMPLING_SEED.reset(token)
