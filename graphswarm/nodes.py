"""Building blocks shared by every architecture: calling an agent, retrying, pausing,
and the one tool loop (`ToolLoop`) of an agent that uses tools.

Every model call in graphswarm goes through `ask`, which asks the budget governor
first, gets structured output where a schema is given, and returns a `CallRecord`
for the run's ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, interrupt
from typing_extensions import TypedDict

from graphswarm.agents import Agent
from graphswarm.budget import BudgetExhausted, Governor, SwarmContext
from graphswarm.errors import StructuredOutputError
from graphswarm.models import estimate_cost, resolve_model
from graphswarm.objectives import relevant_chunks
from graphswarm.state import CallRecord
from graphswarm.structured import ainvoke_structured
from graphswarm.toolbox import redact_secrets

__all__ = [
    "Member",
    "Crew",
    "Pause",
    "ask",
    "ask_once",
    "ToolLoop",
    "TOOL_LOOP",
    "run_tool",
    "model_retry_policy",
    "is_transient",
    "prompt",
    "memory_of",
    "post_note",
]

MAX_ATTEMPTS = 4
MEMORY_NOTES = 3
"""Notes recalled into a request that asks for them (`recall`)."""


class Pause(TypedDict):
    """The value of every interrupt graphswarm raises itself."""

    stop_reason: str
    detail: str
    agent: str
    node: str
    accepts: NotRequired[list[str]]
    """The actions of the decision a person may answer with (`Runner.resume(decision=
    {"action": ...})`); without it, a plain resume continues."""
    resume: NotRequired[dict[str, Any]]
    """The decision a plain resume (no decision given) answers with."""


@dataclass(frozen=True)
class Member:
    """An agent together with its resolved chat model."""

    agent: Agent
    model: BaseChatModel

    @property
    def name(self) -> str:
        return self.agent.name


class Crew:
    """The agents of one graph. Each agent's model is resolved when a node first calls
    it, so a graph is built, drawn and read without creating any model client."""

    def __init__(self, agents: Sequence[Agent], *, model: Any = None, base_url: str | None = None):
        self._agents = {agent.name: agent for agent in agents}
        self._model, self._base_url = model, base_url
        self._members: dict[str, Member] = {}

    def agent(self, name: str) -> Agent:
        return self._agents[name]

    def __getitem__(self, name: str) -> Member:
        member = self._members.get(name)
        if member is None:
            agent = self._agents[name]
            spec = agent.model if agent.model is not None else self._model
            model = resolve_model(
                spec, base_url=self._base_url, temperature=agent.temperature, max_tokens=agent.max_tokens
            )
            member = self._members[name] = Member(agent, model)
        return member

    def __iter__(self):
        return (self[name] for name in self._agents)

    def __len__(self) -> int:
        return len(self._agents)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed model call is worth retrying: rate limits, 5xx, timeouts, dropped connections."""
    import httpx
    import openai
    from langgraph.errors import NodeTimeoutError

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(
        exc,
        (
            openai.APITimeoutError,
            openai.APIConnectionError,
            httpx.TimeoutException,
            httpx.TransportError,
            NodeTimeoutError,
            TimeoutError,
            ConnectionError,
        ),
    )


def model_retry_policy(max_attempts: int = MAX_ATTEMPTS) -> RetryPolicy:
    """Backoff with jitter on transient model errors only."""
    return RetryPolicy(
        initial_interval=0.5, backoff_factor=2.0, max_interval=20.0, max_attempts=max_attempts, retry_on=is_transient
    )


def final_attempt(runtime: Runtime[Any], max_attempts: int = MAX_ATTEMPTS) -> bool:
    info = runtime.execution_info
    return info is None or info.node_attempt >= max_attempts


def governor_of(runtime: Runtime[SwarmContext] | None) -> Governor:
    context = getattr(runtime, "context", None)
    if isinstance(context, SwarmContext):
        return context.governor_for_run()
    # A graph run without a context: no caps, nothing shared to count.
    return Governor()


async def ask(
    member: Member,
    messages: list[BaseMessage],
    *,
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None = None,
    schema: type | None = None,
    recall: Sequence[str] = (),
    post: str | None = None,
) -> tuple[Any, list[CallRecord]]:
    """Call one agent's model: budget check, structured output or tools, accounting.

    Returns the answer (text, or an instance of `schema`) and the call records, one
    per request sent (structured-output fallbacks, re-asks and tool steps included).
    An agent with tools uses them first under the one tool loop (`TOOL_LOOP`): at most
    `MAX_TOOL_STEPS` model calls, the same call a third time refused, all in this node.
    When a cap is reached the run pauses here (a LangGraph interrupt); resuming with
    a higher cap continues from this very call.

    Shared memory is read and written only as the caller says, so that each
    architecture decides what its agents share: `recall` names the kinds of notes
    (anyone's in the run, the agent's own included) whose closest ones are added to
    the request, and `post` is the kind the answer is posted as. The one thing every
    request gets unasked is the objective: when it was too long for prompts, the parts
    of it closest to the request (every agent may read the objective).
    """
    messages, requests = await _prepare(member, messages, node, runtime, config, recall, schema)
    if schema is not None:
        try:
            reply = await ainvoke_structured(member.model, messages, schema, agent=member.name, send=requests.send)
        except StructuredOutputError as exc:
            exc.calls = requests.records
            raise
        value = reply.value
    elif member.agent.tools:
        value = await _with_tools(requests, messages)
    else:
        value = str((await requests.send(member.model, messages)).text)
    if post is not None:
        text = value if isinstance(value, str) else value.model_dump_json()
        await post_note(runtime, text, agent=member.name, kind=post)
    return value, requests.records


class _Requests:
    """Sends one agent's requests for one node: each is admitted by the governor before
    it is sent and recorded after it, whether it succeeded or not."""

    def __init__(self, governor: Governor, member: Member, node: str, config: RunnableConfig, schema: type | None):
        self.governor, self.member, self.node, self.config, self.schema = governor, member, node, config, schema
        self.records: list[CallRecord] = []

    async def send(self, runnable: Any, messages: list[BaseMessage]) -> Any:
        fingerprint = _fingerprint(self.member.name, messages, self.schema)
        priced = self.governor.budget.max_cost is None or _price_known(self.member)
        await _admit_or_pause(self.governor, fingerprint, self.member.name, self.node, priced=priced)
        started = time.perf_counter()
        try:
            # A server that takes the connection and never answers must not outlive the
            # run's time cap: the request ends with it (then the retry is refused: a pause).
            out = await asyncio.wait_for(runnable.ainvoke(messages, self.config), self.governor.seconds_left)
        except BaseException as exc:
            self._keep(fingerprint, None, messages, started, error=f"{type(exc).__name__}: {exc}")
            raise
        # Structured-output runnables answer {"raw": message, "parsed": ...}.
        self._keep(fingerprint, out["raw"] if isinstance(out, dict) else out, messages, started)
        return out

    def _keep(
        self, fingerprint: str, reply: Any, messages: list[BaseMessage], started: float, *, error: str = ""
    ) -> None:
        record = _record(self.member, self.node, reply, messages, time.perf_counter() - started)
        if error:
            record["error"] = clip(" ".join(error.split()), 300)
        self.records.append(record)
        self.governor.record(fingerprint, record)


async def _prepare(
    member: Member,
    messages: list[BaseMessage],
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None,
    recall: Sequence[str],
    schema: type | None = None,
) -> tuple[list[BaseMessage], _Requests]:
    """The request with what memory recalls added, and its sender, whose config names
    the agent (streamed tokens and scripted test models tell agents apart by it)."""
    memory = memory_of(runtime)
    if memory is not None:
        messages = await _recall(memory, messages, recall)
    call_config = merge_configs(config, {"metadata": {"graphswarm_agent": member.name}})
    return messages, _Requests(governor_of(runtime), member, node, call_config, schema)


def memory_of(runtime: Runtime[SwarmContext] | None) -> Any:
    """The run's shared memory, or None when the run has none."""
    return getattr(getattr(runtime, "context", None), "memory", None)


async def post_note(runtime: Runtime[SwarmContext] | None, text: str, *, agent: str, kind: str, **note: Any) -> None:
    """Post `text` to the run's shared memory as a note of `kind` (nothing without memory)."""
    memory = memory_of(runtime)
    if memory is not None:
        await memory.apost(text, agent=agent, kind=kind, **note)


async def _recall(memory: Any, messages: list[BaseMessage], kinds: Sequence[str] = ()) -> list[BaseMessage]:
    """Add to the request's last message what memory holds about it: the parts of a long
    objective closest to it, and the closest notes of the `kinds` asked for (none unasked)."""
    if not messages or not isinstance(messages[-1], HumanMessage):
        return messages
    request = str(messages[-1].content)
    if not request.strip():
        return messages
    chunks = await relevant_chunks(memory, request)
    notes = await memory.aquery(request, k=MEMORY_NOTES, where={"kind": {"$in": list(kinds)}}) if kinds else []
    parts = [chunks] if chunks else []
    if notes:
        parts.append("Notes from your team:\n" + "\n".join(f"- ({n['agent']}, {n['kind']}) {n['text']}" for n in notes))
    if not parts:
        return messages
    return [*messages[:-1], HumanMessage(request + "\n\n" + "\n\n".join(parts))]


async def ask_once(
    member: Member,
    messages: list[BaseMessage],
    *,
    node: str,
    runtime: Runtime[SwarmContext] | None,
    config: RunnableConfig | None = None,
    tools: Sequence[Any] = (),
    recall: Sequence[str] = (),
) -> tuple[AIMessage, list[CallRecord]]:
    """One governed model call offering `tools`; the reply may ask for tool calls, which
    the caller runs (one checkpointed step at a time). `recall` as in `ask`."""
    messages, requests = await _prepare(member, messages, node, runtime, config, recall)
    model = _with_tool_choice(member.model, tools) if tools else member.model
    return await requests.send(model, messages), requests.records


# -- one tool loop: an agent using tools, in every architecture ---------------------

MAX_TOOL_STEPS = 6
"""Model calls an agent may make while using tools; the last one offers no tools and
asks for the answer (`TOOL_STEPS_USED`)."""
MAX_SAME_CALL = 2
"""Times an agent may make the very same tool call (same tool, same arguments) in one
loop; later ones are refused (`REPEATED_CALL`: the AutoGPT failure mode of repeating an
action and expecting a different result)."""

TOOL_ERROR = "Error: {error}\nFix the arguments, or answer without this tool."
UNKNOWN_TOOL = "Error: there is no tool named {name!r}. Available tools: {known}."
TOOL_STEPS_USED = "You have used all your tool calls. Give your final answer now."
REPEATED_CALL = "Refused: you already made this exact call; its result is above. Use it, try something else, or answer."


@dataclass(frozen=True)
class ToolLoop:
    """How an agent uses tools, written once: each model call may ask for tool calls,
    which are run (`run_tool`) and shown to it; the same call (tool and arguments) made
    more than `max_same_call` times is refused; the last of `max_steps` model calls
    offers no tools and tells it to answer now.

    Two drivers run this policy. `ask` runs it for an agent with `Agent.tools` in any
    architecture, as one loop inside the node that asks (`_with_tools`): its steps are
    not checkpointed one by one, so a run stopped mid-loop does the node's loop again
    when resumed, and no call waits for a person. The task loop runs it one step per
    node run (`think` makes one model call, `act` runs its tool calls), each step
    checkpointed, and asks a person first where its approvals say so. Checkpointing
    every step for every architecture is out of scope here.
    """

    max_steps: int = MAX_TOOL_STEPS
    """Model calls allowed, the last one (without tools) included."""
    max_same_call: int = MAX_SAME_CALL
    """Times the same call (tool and arguments) is run; later ones are refused."""

    def request(self, conversation: list[BaseMessage], steps: int) -> tuple[list[BaseMessage], bool]:
        """The messages of the model call after `steps` calls, and whether it offers the
        tools: the last call allowed offers none and asks for the answer."""
        if steps + 1 >= self.max_steps:
            return [*conversation, HumanMessage(TOOL_STEPS_USED)], False
        return conversation, True

    async def run_calls(
        self,
        tools: Mapping[str, Any],
        conversation: Sequence[BaseMessage],
        config: RunnableConfig | None,
        *,
        answered: Mapping[str, ToolMessage] | None = None,
    ) -> list[ToolMessage]:
        """The results of the tool calls the conversation's last message asks for, in
        order: `answered` (by call id, e.g. a person's answer or refusal) as given, a call
        made more than `max_same_call` times in the conversation refused, the rest run."""
        answered = answered or {}
        results = []
        for call in getattr(conversation[-1], "tool_calls", []):
            if call["id"] in answered:
                result = answered[call["id"]]
            elif self.repeated(conversation, call):
                result = ToolMessage(REPEATED_CALL, tool_call_id=call["id"], name=call["name"], status="error")
            else:
                result = await run_tool(tools, call, config)
            results.append(result)
        return results

    def repeated(self, conversation: Sequence[BaseMessage], call: Mapping[str, Any]) -> bool:
        """Whether `call` (already in the conversation) was asked for too often."""
        same = (call["name"], json.dumps(call["args"], sort_keys=True))
        times = sum(
            (c["name"], json.dumps(c["args"], sort_keys=True)) == same
            for message in conversation
            if isinstance(message, AIMessage)
            for c in message.tool_calls
        )
        return times > self.max_same_call


TOOL_LOOP = ToolLoop()
"""The tool loop of an agent with tools that `ask` calls (any architecture)."""


async def _with_tools(requests: _Requests, messages: list[BaseMessage], loop: ToolLoop = TOOL_LOOP) -> str:
    """`loop` run inside one node: call, run the requested tools, show the results, repeat."""
    member = requests.member
    tools = {t.name: t for t in member.agent.tools}
    with_tools = _with_tool_choice(member.model, tools.values())
    conversation, steps = list(messages), 0
    while True:
        conversation, offered = loop.request(conversation, steps)
        reply = await requests.send(with_tools if offered else member.model, conversation)
        steps += 1
        if not offered or not reply.tool_calls:
            return str(reply.text)
        conversation.append(reply)
        conversation += await loop.run_calls(tools, conversation, requests.config)


def _with_tool_choice(model: BaseChatModel, tools: Any) -> Any:
    # "auto" said outright: servers differ on what no tool_choice means, and
    # llama-cpp-python's server takes it as "none" and never shows the model its tools.
    return model.bind_tools(list(tools), tool_choice="auto")


async def run_tool(tools: Mapping[str, Any], call: Mapping[str, Any], config: RunnableConfig | None) -> ToolMessage:
    """Run one requested tool call; failures become an error message the model can act on.
    Every result, an error's included, has its secrets redacted here (`redact_secrets`),
    before the model, the checkpoints or a report see it."""
    return _redacted(await _run_tool(tools, call, config))


async def _run_tool(tools: Mapping[str, Any], call: Mapping[str, Any], config: RunnableConfig | None) -> ToolMessage:
    from langgraph.errors import GraphBubbleUp

    tool = tools.get(call["name"])
    if tool is None:
        content = UNKNOWN_TOOL.format(name=call["name"], known=", ".join(tools))
        return ToolMessage(content, tool_call_id=call["id"], name=call["name"], status="error")
    try:
        result = await tool.ainvoke(call, config)
    except GraphBubbleUp:  # an interrupt (a tool asking a person) must reach LangGraph
        raise
    except Exception as exc:  # a failing tool is reported to the model, which may try again
        return ToolMessage(TOOL_ERROR.format(error=exc), tool_call_id=call["id"], name=call["name"], status="error")
    if isinstance(result, ToolMessage):
        return result
    return ToolMessage(str(result), tool_call_id=call["id"], name=call["name"])


def _redacted(message: ToolMessage) -> ToolMessage:
    content = message.content
    if isinstance(content, str):
        clean: Any = redact_secrets(content)
    else:  # content blocks: text strings, or dicts with a "text"
        clean = [
            redact_secrets(block)
            if isinstance(block, str)
            else {**block, "text": redact_secrets(block["text"])}
            if isinstance(block.get("text"), str)
            else block
            for block in content
        ]
    return message if clean == content else message.model_copy(update={"content": clean, "artifact": None})


def _price_known(member: Member) -> bool:
    return member.agent.price is not None or estimate_cost(member.model, 0, 0) is not None


async def _admit_or_pause(governor: Governor, fingerprint: str, agent: str, node: str, *, priced: bool = True) -> None:
    try:
        await governor.aadmit(fingerprint, priced=priced)
    except BudgetExhausted as stop:
        pause: Pause = {"stop_reason": stop.reason.value, "detail": stop.detail, "agent": agent, "node": node}
        interrupt(pause)
        # Resumed with a value (Command(resume=...)): try once more under the new caps.
        await governor.aadmit(fingerprint, priced=priced)


def _record(member: Member, node: str, reply: Any, messages: list[BaseMessage], latency: float) -> CallRecord:
    """The ledger's line for one request; `reply` is None when it failed (no tokens known)."""
    usage = getattr(reply, "usage_metadata", None) or {}
    if reply is None:
        input_tokens = output_tokens = 0
    else:
        input_tokens = int(usage.get("input_tokens") or _estimate_tokens(messages))
        output_tokens = int(
            usage.get("output_tokens") or _estimate_tokens([reply] if isinstance(reply, AIMessage) else [])
        )
    price = member.agent.price
    cost = (
        price.cost(input_tokens, output_tokens)
        if price is not None
        else estimate_cost(member.model, input_tokens, output_tokens)
    )
    return {
        "id": uuid.uuid4().hex[:12],
        "agent": member.name,
        "node": node,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_s": round(latency, 4),
        "cost": cost,
    }


def _estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    # About four characters a token; used only when a server reports no usage.
    return max(1, sum(len(str(m.content)) for m in messages) // 4)


def _fingerprint(agent: str, messages: list[BaseMessage], schema: type | None) -> str:
    digest = hashlib.sha256(agent.encode())
    for message in messages:
        digest.update(message.type.encode())
        digest.update(str(message.content).encode())
    digest.update(getattr(schema, "__name__", "").encode())
    return digest.hexdigest()


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cache
def prompt(name: str) -> str:
    """A prompt template shipped with the package (`graphswarm/prompts/NAME.md`)."""
    return resources.files("graphswarm.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8").strip()
