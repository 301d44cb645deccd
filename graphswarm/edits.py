"""Editing a run's state (`resume --set`, `fork --set`): checked first, so a bad edit
changes nothing.

An edit is applied as if a node had written it (`as_node`): keys with a reducer are
combined through it (every list graphswarm keeps as a log, such as a
`transcript` or the `calls` ledger, gets the given items appended: past entries cannot
be changed), other keys are replaced. What runs next is decided again from that node's
edges, so by default the edit is applied as the node that wrote the state being edited,
and what runs next stays the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, Required, get_args, get_origin, get_type_hints

from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.constants import START
from langgraph.errors import InvalidUpdateError
from pydantic import TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError

from graphswarm.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["apply_edit", "checked_edit"]


async def checked_edit(
    compiled: Any, config: RunnableConfig, updates: dict[str, Any], as_node: str | None
) -> str | None:
    """The node to apply `updates` to the state at `config` as (`as_node`, or the node that
    wrote that state), after checking that every key is one the state has (or, as the
    input, one the input takes) and every value has the key's type.

    Raises `UsageError` naming the valid keys, or the type a value must have.
    """
    graph = compiled.builder
    if as_node is not None and as_node not in graph.nodes:
        raise ConfigError(f"unknown node {as_node!r} (this graph's nodes: {', '.join(graph.nodes)})")
    as_node = as_node or await _writer(compiled, config)
    state = graph.schemas[graph.state_schema]
    keys = graph.schemas[graph.input_schema] if as_node == START else state
    appended = {key for key, channel in state.items() if isinstance(channel, BinaryOperatorAggregate)}
    types = _key_types(graph.state_schema)
    for key, value in updates.items():
        if key not in keys:
            listed = ", ".join(k + (" (appended to)" if k in appended else "") for k in keys)
            whose = "the input's keys (no node has run yet)" if as_node == START else "this run's state keys"
            raise UsageError(f"cannot set {key!r}: {whose} are {listed}")
        if problem := _type_problem(types.get(key, Any), value):
            hint = " (give a list of the items to append)" if key in appended else ""
            raise UsageError(f"cannot set {key!r}: {problem}{hint}")
    return as_node


async def apply_edit(compiled: Any, config: RunnableConfig, updates: dict[str, Any], as_node: str | None) -> None:
    """Apply edits that `checked_edit` accepted."""
    try:
        await compiled.aupdate_state(config, updates, as_node=as_node)
    except InvalidUpdateError as exc:  # LangGraph could not tell which node to apply it as
        raise UsageError(f"cannot edit this state: {exc} (name the node with --as-node)") from None


async def _writer(compiled: Any, config: RunnableConfig) -> str | None:
    """The node whose writes made the checkpoint at `config`; None leaves it to LangGraph.

    LangGraph's own guess skips nodes reached by `Send` (one answer per agent, fanned
    out) and picks the node before them: the edit would then be
    filtered through that node's output and the step run again. A state made by an
    earlier edit was written as that edit's node; a fork's first checkpoint, whose
    step has no parent in its run, by the one node with an edge to what runs next.
    """
    snapshot = await compiled.aget_state(config)
    while (snapshot.metadata or {}).get("source") == "update" and snapshot.parent_config is not None:
        snapshot = await compiled.aget_state(snapshot.parent_config)
    source = (snapshot.metadata or {}).get("source")
    if source == "input":
        return START
    if source != "loop":
        return None
    if snapshot.parent_config is None:
        return _only_node_before(compiled.builder, snapshot.next)
    writers = sorted(set((await compiled.aget_state(snapshot.parent_config)).next))
    if len(writers) > 1:
        raise UsageError(f"nodes {', '.join(writers)} wrote this state together: name one with --as-node")
    return writers[0] if writers else None


def _only_node_before(graph: Any, following: Sequence[str]) -> str | None:
    """The one node with a fixed edge to the nodes in `following`, or None."""
    edges = set(graph.edges) | {(start, end) for starts, end in graph.waiting_edges for start in starts}
    before = {start for start, end in edges if end in following and start != START}
    return before.pop() if len(before) == 1 else None


def _key_types(schema: Any) -> dict[str, Any]:
    """Each state key's type, without `NotRequired` and reducer annotations."""
    try:
        hints = get_type_hints(schema, include_extras=True)
    except (NameError, TypeError):  # a schema whose annotations cannot be resolved: unchecked
        return {}
    bare = {}
    for key, annotation in hints.items():
        while get_origin(annotation) in (Annotated, NotRequired, Required):
            annotation = get_args(annotation)[0]
        bare[key] = annotation
    return bare


def _type_problem(annotation: Any, value: Any) -> str | None:
    """Why `value` is not of type `annotation` (strictly: "2" is no int), or None."""
    try:
        adapter = TypeAdapter(annotation)
    except PydanticSchemaGenerationError:  # a type pydantic cannot check: taken as it is
        return None
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = " ".join(f"item {part}" if isinstance(part, int) else str(part) for part in error["loc"])
        return f"{where + ': ' if where else ''}{error['msg'][0].lower()}{error['msg'][1:]}"
    return None
