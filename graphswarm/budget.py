"""The swarm-wide budget governor.

One `Governor` per execution of a run is shared by every node, parallel ones
included, through LangGraph's runtime context. It is asked before every request that
reaches a model (each structured-output attempt, re-ask, tool step and retry) and told
after it, failed or not, so caps hold exactly, across all agents at once. A refused call does not
raise through the graph: the node pauses the run with a LangGraph interrupt, which
lets parallel siblings finish and keeps everything resumable with a higher cap.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from graphswarm.state import CallRecord, StopReason

__all__ = ["Budget", "BudgetExhausted", "Governor", "SwarmContext"]


class Budget(BaseModel):
    """Caps for one run. `None` means no cap."""

    model_config = ConfigDict(frozen=True)

    max_calls: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)
    """Estimated US dollars (an agent's `price`, else genai-prices' bundled price data).
    A call whose price is unknown cannot be kept under this cap, so it is never made:
    `Runner.start` refuses such a swarm, and a node pauses with `cost_cap` before the call."""
    max_seconds: float | None = Field(None, gt=0)
    """Wall time spent running, summed over every start and resume."""
    max_repeats: int = Field(3, ge=1)
    """How often one agent may make the very same call before the run counts as stalled."""


class BudgetExhausted(Exception):
    """Raised by `Governor.admit` when a call would break a cap; nodes turn it into a pause."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Governor:
    """Counts calls, tokens, cost and time for one execution of a run; thread-safe."""

    def __init__(self, budget: Budget | None = None, *, spent: Sequence[CallRecord] = (), elapsed_s: float = 0.0):
        self.budget = budget or Budget()
        self._lock = threading.Lock()
        self._calls = len(spent)
        self._tokens = sum(c["input_tokens"] + c["output_tokens"] for c in spent)
        # Calls of unknown price made before a cost cap was set count as 0.
        self._cost = sum(c.get("cost") or 0.0 for c in spent)
        self._started = time.monotonic() - elapsed_s
        self._repeats: Counter[str] = Counter()
        self.records: list[CallRecord] = []
        """Every request recorded in this execution, in order (the runner keeps those whose
        node never finished: they reached a server but not the state's ledger)."""

    def admit(self, fingerprint: str, *, priced: bool = True) -> None:
        """Reserve one model call, or raise `BudgetExhausted` saying which cap it hit;
        `priced=False` (no price known for the call's model) breaks any cost cap."""
        with self._lock:
            stop = self._cap_reached()
            if stop is None and not priced and self.budget.max_cost is not None:
                stop = BudgetExhausted(
                    StopReason.COST_CAP,
                    f"cost cap of ${self.budget.max_cost:.4f} cannot be kept: no price is known for this "
                    "agent's model (give the agent a price, or run without a cost cap)",
                )
            if stop is None and self._repeats[fingerprint] >= self.budget.max_repeats:
                stop = BudgetExhausted(
                    StopReason.STALL, f"the same call was made {self._repeats[fingerprint]} times: the swarm is stalled"
                )
            if stop is not None:
                raise stop
            self._calls += 1

    async def aadmit(self, fingerprint: str, *, priced: bool = True) -> None:
        """`admit`, for nodes: a governor shared across machines (a Temporal run's) asks
        the one place that decides."""
        self.admit(fingerprint, priced=priced)

    def exhausted(self) -> BudgetExhausted | None:
        """The cap already reached, if any, without reserving a call (for loops that
        would rather stop cleanly between tasks than pause inside one)."""
        with self._lock:
            return self._cap_reached()

    def _cap_reached(self) -> BudgetExhausted | None:
        b = self.budget
        if b.max_calls is not None and self._calls >= b.max_calls:
            return BudgetExhausted(StopReason.CALL_CAP, f"call cap of {b.max_calls} reached")
        if b.max_tokens is not None and self._tokens >= b.max_tokens:
            return BudgetExhausted(StopReason.TOKEN_CAP, f"token cap of {b.max_tokens} reached ({self._tokens} used)")
        if b.max_cost is not None and self._cost >= b.max_cost:
            return BudgetExhausted(StopReason.COST_CAP, f"cost cap of ${b.max_cost:.4f} reached")
        if b.max_seconds is not None and self.elapsed_s >= b.max_seconds:
            return BudgetExhausted(StopReason.TIME_CAP, f"time cap of {b.max_seconds:.0f}s reached")
        return None

    def record(self, fingerprint: str, call: CallRecord) -> None:
        """Account an admitted request; a failed one counts as a call, not as a repeat."""
        with self._lock:
            self._tokens += call["input_tokens"] + call["output_tokens"]
            self._cost += call.get("cost") or 0.0
            if "error" not in call:
                self._repeats[fingerprint] += 1
            self.records.append(call)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def seconds_left(self) -> float | None:
        """Time left under the time cap (None: no time cap)."""
        if self.budget.max_seconds is None:
            return None
        return max(self.budget.max_seconds - self.elapsed_s, 0.0)

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def tokens(self) -> int:
        return self._tokens


class SwarmContext(BaseModel):
    """What a run is given besides its input, handed to every node by LangGraph.

    Two kinds of fields. Settings (plain data: Studio shows them as the assistant's and
    the run's context form, a remote worker receives them) choose the swarm of a graph
    built by `graphswarm.configurable.configurable_graph`: `model`, `base_url`,
    `agents`, `options`, `budget` (a graph built from a spec in Python ignores all but
    `budget`). The run's live objects (`governor`, `memory`, `workspace`) are never
    serialized or shown; a context without a governor makes one from `budget` on first use.

    For a graph you compile yourself, `SwarmContext(budget=Budget(max_calls=20))` is the
    whole of it: `await graph.ainvoke(input, context=...)`.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        title="swarm",
        # What Studio shows above the form (the docstring is for Python readers).
        json_schema_extra={"description": "The swarm this run uses: unset fields keep the server's defaults."},
    )

    model: str | None = Field(None, description='The swarm\'s model, "provider:name" (e.g. "openai:gpt-4o-mini").')
    base_url: str | None = Field(None, description="An OpenAI-compatible server for the swarm's model.")
    agents: int | None = Field(None, ge=1, description="How many agents (members) the swarm has.")
    options: dict[str, Any] | None = Field(
        default_factory=dict, description="The architecture's options (`graphswarm options ARCH` lists them)."
    )
    budget: Budget = Field(default_factory=Budget, description="Caps for the run.")
    spec: SkipJsonSchema[dict[str, Any] | None] = None
    """A whole recorded swarm (`SwarmSpec.to_record()`); when given, it wins over the
    settings above (a remote run is sent its spec this way)."""
    run_id: SkipJsonSchema[str | None] = None

    governor: SkipJsonSchema[Governor | None] = Field(None, exclude=True)
    memory: SkipJsonSchema[Any] = Field(None, exclude=True)
    """The run's shared memory (a `SharedMemory`), when the run has one."""
    workspace: SkipJsonSchema[Path | None] = Field(None, exclude=True)
    """The run's own directory for agents' files, when the runner gives one."""

    def governor_for_run(self) -> Governor:
        """The run's governor: the one given, else one made from `budget` (kept: every
        node of the execution shares it)."""
        if self.governor is None:
            self.governor = Governor(self.budget)
        return self.governor
