"""Graphs whose swarm each run chooses: for a LangGraph server and for remote workers.

A graph built in Python closes over its agents and options. A graph served by
`langgraph dev` (Studio) or hosted by a Temporal worker is built once, before any run
is known, and must take from each run's context (`SwarmContext`: plain data) which
model, agents, options and budget that run uses.

`configurable_graph(defaults)` builds the architecture once, from `defaults`, as the
template of the graph's shape, and makes each node, and each routing function, run
the one of the same name in the swarm built for the run's context: built on first
use, once per distinct swarm, in the process the node runs in (a worker builds its own
agents and models from plain data; nothing crosses machines but the spec).

Settings that change the graph's shape rather than its behaviour (the task loop's
`subgraphs`) must be the same as the template's: a run that changes them gets a
one-line `ConfigError`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from functools import cache
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime, get_runtime
from pydantic import BaseModel, Field, create_model

from graphswarm.budget import SwarmContext
from graphswarm.errors import ConfigError
from graphswarm.registry import SwarmSpec, get_architecture

__all__ = ["configurable_graph", "context_schema", "spec_for"]

_CACHE_SIZE = 32
"""Distinct swarms kept built per graph (a swarm is cheap to build: no client is made)."""


def spec_for(context: SwarmContext | Mapping[str, Any] | None, defaults: SwarmSpec) -> SwarmSpec:
    """The swarm a run's context asks for: its whole `spec` if it has one, else `defaults`
    with the context's model, base URL, agent count and options laid over them."""
    if context is None:
        return defaults
    if not isinstance(context, SwarmContext):
        context = SwarmContext.model_validate(context)
    if context.spec is not None:
        spec = SwarmSpec.from_record(context.spec)
        if spec.architecture != defaults.architecture:
            raise ConfigError(f"this graph runs {defaults.architecture}, the run asks for {spec.architecture}")
        return spec
    changes: dict[str, Any] = {}
    if context.model:
        changes["model"] = context.model
    if context.base_url:
        changes["base_url"] = context.base_url
    options = context.options
    if isinstance(options, BaseModel):  # the architecture's own context schema checked them
        options = options.model_dump(exclude_unset=True)
    if options:
        changes["options"] = {**defaults.options, **options}
    spec = defaults.model_copy(update=changes)
    if context.agents is not None and context.agents != len(defaults.agents):
        arch = get_architecture(defaults.architecture)
        workers = SwarmSpec.with_workers(arch.name, context.agents).agents
        spec = spec.model_copy(update={"agents": workers})
    return spec


def configurable_graph(
    defaults: SwarmSpec,
    *,
    node_metadata: Mapping[str, Any] | None = None,
    retries: bool = True,
    context: Callable[[Any], SwarmContext] | None = None,
    around: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """The architecture of `defaults` as a graph whose swarm each run's context chooses.

    `node_metadata` is added to every node's metadata (a Temporal worker says where
    nodes run); `retries=False` drops LangGraph's retry policies (Temporal retries
    instead); `context` turns the context a node receives into the `SwarmContext` it
    runs with (a worker gives it a governor shared across machines); `around` is
    entered while each node runs (a worker tells Temporal the node is alive)."""
    template = defaults.build()
    swarms = _Swarms(defaults)
    as_context = context or _as_context
    graph = StateGraph(
        template.state_schema,
        context_schema=context_schema(defaults.architecture),
        input_schema=template.input_schema,
        output_schema=template.output_schema,
    )
    for name, node in template.nodes.items():
        graph.add_node(
            name,
            _run_node(name, swarms, as_context, around),
            input_schema=node.input_schema,
            defer=node.defer,
            destinations=node.ends,
            retry_policy=node.retry_policy if retries else None,
            metadata={**(node.metadata or {}), **(node_metadata or {})},
        )
    for start, end in template.edges:
        graph.add_edge(start, end)
    for starts, end in template.waiting_edges:
        graph.add_edge(list(starts), end)
    for source, branches in template.branches.items():
        for key, branch in branches.items():
            graph.add_conditional_edges(source, _route(source, key, swarms, as_context), branch.ends)
    return graph


@cache
def context_schema(architecture: str) -> type[SwarmContext]:
    """`SwarmContext` with `options` typed by the architecture's Options model, so that
    a form (Studio's) lists them and a run's bad option is refused when it starts."""
    options = get_architecture(architecture).options
    fields: dict[str, Any] = {
        "options": (options | None, Field(None, description=f"The {architecture} options (unset: the defaults)."))
    }
    name = f"{options.__name__.removesuffix('Options')}Context"
    model: type[SwarmContext] = create_model(name, __base__=SwarmContext, __doc__=SwarmContext.__doc__, **fields)
    return model


def _as_context(raw: Any) -> SwarmContext:
    if isinstance(raw, SwarmContext):
        return raw
    return SwarmContext.model_validate(raw or {})


class _Swarms:
    """The swarms built for runs of one configurable graph, by spec (most recent kept)."""

    def __init__(self, defaults: SwarmSpec) -> None:
        self.defaults = defaults
        self._template_shape: tuple[Any, ...] | None = None
        self._built: OrderedDict[Any, tuple[Any, StateGraph[Any, Any, Any, Any]]] = OrderedDict()

    def graph(self, context: SwarmContext) -> StateGraph[Any, Any, Any, Any]:
        """The swarm of the run whose context this is: built on first use. Every node of
        a run asks, so the lookup must not grow with the swarm: a whole spec is known by
        the object it is (the one dict a worker keeps per run), settings by their value."""
        if context.spec is not None:
            key: Any = ("spec", id(context.spec))
        else:
            settings = context.model_dump(include={"model", "base_url", "agents", "options"})
            key = json.dumps(settings, sort_keys=True, default=str)
        found = self._built.get(key)
        if found is not None:
            self._built.move_to_end(key)
            return found[1]
        spec = spec_for(context, self.defaults)
        graph = spec.build()
        if _shape(graph) != self._shape():
            raise ConfigError(
                f"the run's options change the shape of the {spec.architecture} graph; "
                "set them where the graph is served (GRAPHSWARM_OPTION_<NAME>) or the worker starts"
            )
        # The spec is kept with its graph: its id stays its own while it is a key.
        self._built[key] = (context.spec, graph)
        while len(self._built) > _CACHE_SIZE:
            self._built.popitem(last=False)
        return graph

    def _shape(self) -> tuple[Any, ...]:
        if self._template_shape is None:
            self._template_shape = _shape(self.defaults.build())
        return self._template_shape


def _shape(graph: StateGraph[Any, Any, Any, Any]) -> tuple[Any, ...]:
    branches = sorted((source, key) for source, by_key in graph.branches.items() for key in by_key)
    return tuple(sorted(graph.nodes)), tuple(sorted(graph.edges)), tuple(branches)


def _run_node(
    name: str,
    swarms: _Swarms,
    as_context: Callable[[Any], SwarmContext],
    around: Callable[[], AbstractAsyncContextManager[Any]] | None,
):
    async def run_node(state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        async with around() if around is not None else nullcontext():
            context = as_context(runtime.context)
            if context is not runtime.context:  # on a worker: the plain data rebuilt
                runtime = runtime.override(context=context)
            node: Any = swarms.graph(context).nodes[name].runnable  # a SwarmNode (graphswarm.graph_nodes)
            return await node.ainvoke(state, config, runtime=runtime)

    # A name of its own per graph and node (Temporal's plugin names activities by it).
    run_node.__name__ = name
    run_node.__qualname__ = f"{swarms.defaults.architecture}.{name}"
    return run_node


def _route(source: str, key: str, swarms: _Swarms, as_context: Callable[[Any], SwarmContext]) -> RunnableLambda:
    """The routing function of the run's swarm. Routing reads only the state: the run's
    context just picks the swarm. Both sides are plain calls: a Temporal workflow (async)
    has no threads to run a sync function in."""

    def route(state: Any, config: RunnableConfig) -> Hashable | list[Hashable]:
        path = swarms.graph(as_context(get_runtime().context)).branches[source][key].path
        return path.invoke(state, config)

    async def aroute(state: Any, config: RunnableConfig) -> Hashable | list[Hashable]:
        return route(state, config)

    return RunnableLambda(route, afunc=aroute, name=f"{source}_route")
