"""State pieces every architecture shares: the call ledger and why a run stopped.

State is the run's record: plain, JSON-like values only (no clients, no keys), so
checkpoints load without pickle and `show`/`history` can print them.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, NotRequired, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

__all__ = ["StopReason", "CallRecord", "SwarmState", "merge_by_id", "summarize_calls", "format_cost"]

Item = TypeVar("Item", bound=Mapping[str, Any])


class StopReason(StrEnum):
    """Why a run ended or paused."""

    APPROVED = "approved"
    """The leader (or judge) accepted the answer."""
    MAX_ROUNDS = "max_rounds"
    """The round limit was reached; the last answer stands."""
    CONSENSUS = "consensus"
    """Agreement reached the threshold (an early stop, a unanimous vote)."""
    MAJORITY = "majority"
    """The vote was counted and the largest group won."""
    TIE_BROKEN_BY_FIRST = "tie_broken_by_first"
    """The vote ended tied and, by the `first` rule, the answer given first among the tied won."""
    JUDGED = "judged"
    """A judge (or a scoring function) chose the answer."""
    MODERATOR = "moderator"
    """The moderator declared the question settled."""
    CONVERGED = "converged"
    """The agents' answers came close together (low diversity)."""
    NO_IMPROVEMENT = "no_improvement"
    """The best answer stopped getting better."""
    CALL_CAP = "call_cap"
    TOKEN_CAP = "token_cap"
    COST_CAP = "cost_cap"
    TIME_CAP = "time_cap"
    STALL = "stall"
    """An agent kept making the same call: the swarm was going in circles."""
    APPROVAL = "approval"
    """Paused for a person to approve, edit or reject a plan."""
    REJECTED = "rejected"
    """A person rejected the plan."""
    WORKER_FAILED = "worker_failed"
    """A worker failed after its retries and the join policy is `wait` (or every pool agent is down)."""
    OBJECTIVE_MET = "objective_met"
    """The planner judged the objective met."""
    NO_TASKS = "no_tasks"
    """The task list ran empty."""
    TASK_CAP = "task_cap"
    """The most tasks a run may execute were executed."""
    HUMAN = "human"
    """Paused for a person to answer an agent's question."""
    STOPPED = "stopped"
    """A person stopped the run at a pause."""
    COMPLETED = "completed"
    """Every task is done and the answer is consolidated."""
    ERROR = "error"


class CallRecord(TypedDict):
    """One request that reached a model, as the budget governor and accounting see it."""

    id: NotRequired[str]
    """Unique per request: tells the ledger's calls from those of a node that never finished."""
    agent: str
    node: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost: float | None
    """Estimated US dollars; None when no price is known for the agent's model."""
    error: NotRequired[str]
    """Set when the request failed (refused, timed out, malformed); it still counts."""


class SwarmState(TypedDict):
    """Fields every architecture's state has."""

    objective: str
    """What the swarm is asked to do."""
    calls: NotRequired[Annotated[list[CallRecord], operator.add]]
    """Every finished model call, in order of completion."""
    final_answer: NotRequired[str]
    stop_reason: NotRequired[str]
    """A `StopReason` value once the run has ended."""
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    """The conversation the run was started with (if any), then the final answer as an
    AI message, so chat UIs and LangGraph supervisors read it like any agent's reply."""


def merge_by_id(current: Sequence[Item] | None, update: Sequence[Item] | Item | None) -> list[Item]:
    """A reducer for lists of records keyed by their "id": an update whose id is already
    listed is merged into that record (so `{"id": 3, "status": "done"}` changes one field),
    any other is appended; the order is kept and nothing is removed.

    A node then writes only the records it changed or added, not the whole list, and the
    write a checkpoint keeps for its step is as large as what the step did:

        tasks: Annotated[list[Task], merge_by_id]
        ...
        return {"tasks": [{"id": task["id"], "status": "done", "result": text}]}
    """
    merged = list(current or [])
    if update is None:
        return merged
    updates: Sequence[Item] = [update] if isinstance(update, Mapping) else update
    where = {item["id"]: i for i, item in enumerate(merged)}
    for item in updates:
        index = where.get(item["id"])
        if index is None:
            where[item["id"]] = len(merged)
            merged.append(item)
        else:
            merged[index] = {**merged[index], **item}  # type: ignore[assignment]
    return merged


def summarize_calls(calls: list[CallRecord]) -> dict[str, Any]:
    """Per-agent, per-node and total calls, tokens, latency and estimated cost; a row's
    cost is None ("unknown") when any of its calls has no known price."""

    def empty() -> dict[str, Any]:
        return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "latency_s": 0.0, "cost": 0.0}

    by_agent: dict[str, dict[str, Any]] = {}
    by_node: dict[str, dict[str, Any]] = {}
    total = empty()
    for call in calls:
        for row in (
            by_agent.setdefault(call["agent"], empty()),
            by_node.setdefault(call["node"], empty()),
            total,
        ):
            row["calls"] += 1
            row["input_tokens"] += call["input_tokens"]
            row["output_tokens"] += call["output_tokens"]
            row["latency_s"] += call["latency_s"]
            cost = call.get("cost")
            row["cost"] = None if cost is None or row["cost"] is None else row["cost"] + cost
    return {"agents": by_agent, "nodes": by_node, "total": total}


def format_cost(cost: float | None, prefix: str = "") -> str:
    """A cost for tables: "0.0123" (with `prefix`, e.g. "$"), or "unknown" when None."""
    return "unknown" if cost is None else f"{prefix}{cost:.4f}"
