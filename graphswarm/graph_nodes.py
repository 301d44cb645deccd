"""How every architecture adds its nodes: one helper, so that every graph behaves alike.

`add_node(graph, name, action, ...)` adds `action` (a node function, sync or async)
wrapped in a `SwarmNode`, which gives every graph three things:

- **sync and async.** `graph.compile().invoke(...)` and `.stream(...)` work as well as
  `ainvoke` / `astream`. Called synchronously, an async node runs on ONE shared
  background event loop (a daemon thread), with the caller's context variables (the
  LangGraph config that `interrupt()` and streaming rely on), so async model clients
  are always used from that same loop. Interrupts, `Send` fan-out and checkpoints work
  the same either way.
- **`messages` in.** A graph started with `{"messages": [...]}` and no objective works
  on the last human message's text (`objective_of`); the objective is then written to
  the state by the first node that reads the whole state.
- **`messages` out.** When a node writes a `final_answer`, it is also added to the
  state's `messages` as an AI message (`answer_message`), so chat UIs and LangGraph
  supervisors read the swarm's answer where they read any agent's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import uuid
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime, get_runtime

from graphswarm.errors import UsageError

__all__ = ["ANSWER_AUTHOR", "SwarmNode", "add_node", "answer_message", "objective_of", "run_coroutine"]

ANSWER_AUTHOR = "graphswarm"
"""The `name` of the AI message that carries a swarm's final answer."""
_ANSWER_IDS = uuid.UUID("6f1d3c1e-6a57-4b59-9a53-1b2f2f6b9c11")
"""Namespace of the final-answer message ids (one id per thread and objective: a later
answer to the same objective replaces the earlier one instead of piling up)."""


def add_node(graph: StateGraph[Any, Any, Any, Any], name: str, action: Any, **options: Any) -> None:
    """Add `action` to `graph` as the node `name` (a `SwarmNode`); `options` are those of
    `StateGraph.add_node` (`input_schema`, `retry_policy`, `defer`, ...)."""
    graph.add_node(name, SwarmNode(action, name), **options)


class SwarmNode(Runnable[Any, Any]):
    """A node function that runs from sync and async graphs, reads its objective from
    `messages` when none is given, and answers in `messages` too (see the module)."""

    def __init__(self, action: Any, name: str) -> None:
        self.action = action
        self.name = name
        target = action.func if isinstance(action, partial) else action
        self.is_async = inspect.iscoroutinefunction(target)
        self._wants = {key for key in ("runtime", "config") if key in inspect.signature(action).parameters}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        state, options = self._arguments(input, config, kwargs.get("runtime"))
        if self.is_async:
            output = run_coroutine(self.action(state, **options))
        else:
            output = self.action(state, **options)
        return _with_messages(input, state, output, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        state, options = self._arguments(input, config, kwargs.get("runtime"))
        if self.is_async:
            output = await self.action(state, **options)
        else:
            output = await run_in_executor(config, self.action, state, **options)
        return _with_messages(input, state, output, config)

    def _arguments(
        self, input: Any, config: RunnableConfig | None, runtime: Runtime[Any] | None
    ) -> tuple[Any, dict[str, Any]]:
        """The node's state and keyword arguments; `runtime`, when given, replaces the
        run's (a configurable graph gives its nodes the context it made)."""
        options: dict[str, Any] = {}
        if "config" in self._wants:
            options["config"] = config
        if "runtime" in self._wants:
            options["runtime"] = runtime or get_runtime()
        if isinstance(input, Mapping) and "objective" not in input and "messages" in input:
            input = {**input, "objective": objective_of(input)}
        return input, options


def objective_of(state: Mapping[str, Any]) -> str:
    """The objective of a graph's input or state: its `objective`, else the text of the
    last human message in its `messages`."""
    if state.get("objective"):
        return str(state["objective"])
    for message in reversed(state.get("messages") or []):
        if isinstance(message, HumanMessage) or (isinstance(message, Mapping) and message.get("role") == "user"):
            text = message.text if isinstance(message, BaseMessage) else str(message.get("content", ""))
            if text.strip():
                return text
    raise UsageError('a swarm needs an objective: start it with {"objective": ...} or {"messages": [human message]}')


def answer_message(answer: str, objective: str, config: RunnableConfig | None) -> AIMessage:
    """The AI message that carries a final answer (`ANSWER_AUTHOR`); its id is the same
    for the same thread and objective, so a revised answer replaces the earlier one."""
    thread = str(((config or {}).get("configurable") or {}).get("thread_id", ""))
    message_id = str(uuid.uuid5(_ANSWER_IDS, f"{thread}\n{objective}"))
    return AIMessage(answer, name=ANSWER_AUTHOR, id=message_id)


def _with_messages(input: Any, state: Any, output: Any, config: RunnableConfig | None) -> Any:
    """A node's update, with the objective it read from `messages` and its final answer
    as an AI message."""
    if not isinstance(output, dict) or not isinstance(state, Mapping):
        return output
    update = dict(output)
    if "objective" not in input and "objective" in state:
        update.setdefault("objective", state["objective"])
    answer = update.get("final_answer")
    if answer and "messages" not in update:
        update["messages"] = [answer_message(str(answer), str(state.get("objective", "")), config)]
    return update


# -- async nodes from sync graphs: one background event loop --------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="graphswarm-sync-nodes", daemon=True)
            _loop_thread.start()
        return _loop


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the shared background event loop with the caller's context
    variables, and wait for its result (or its exception, raised here)."""
    loop = _background_loop()
    if threading.current_thread() is _loop_thread:
        coro.close()
        raise UsageError("a graph cannot be invoked synchronously from inside a graphswarm node: use `await ainvoke`")
    context = contextvars.copy_context()
    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
    started: list[asyncio.Task[Any]] = []

    def start() -> None:
        task = loop.create_task(coro, context=context)
        task.add_done_callback(partial(_copy_outcome, outcome))
        started.append(task)

    loop.call_soon_threadsafe(start)
    try:
        return outcome.result()
    except BaseException:
        if not outcome.done():  # the caller gave up (Ctrl-C): stop the node too
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
        raise


def _copy_outcome(outcome: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        outcome.set_exception(asyncio.CancelledError())
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
