"""A scripted chat model for testing swarms without any real model.

Answers are scripted per agent (or per graph node), never chosen by looking at the
prompt, so a test states exactly what each agent says. Every call is recorded.

Example:
    >>> from graphswarm.testing import ScriptedChatModel
    >>> model = ScriptedChatModel({"leader": [{"tasks": [{"title": "t"}]}], "writer": ["hello"]})
    >>> # Agent(name="leader", model=model), Agent(name="writer", model=model), ...
    >>> # after the run: model.assert_complete(); model.calls_for("writer")

Script steps:

- ``str`` — a plain text answer;
- ``dict`` or a pydantic object — the arguments of a tool call when a tool is forced
  (which is how structured output reaches this model), else the text of its JSON;
- an ``AIMessage`` — returned as it is (for example with ``tool_calls``);
- an exception instance — raised (to test retries and failures).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, PrivateAttr

__all__ = ["ScriptedChatModel", "ScriptedCall", "ScriptExhausted", "ANY", "unreadable_replies"]

ANY = "*"
"""Script key that serves any agent or node without its own queue."""


class ScriptExhausted(AssertionError):
    """The model was called more often than its script allows."""


@dataclass
class ScriptedCall:
    """One recorded call."""

    key: str
    """The script queue that answered: an agent name, a node name or `ANY`."""
    agent: str | None
    node: str | None
    messages: list[BaseMessage]
    tools: list[str] = field(default_factory=list)
    response: BaseMessage | None = None

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.content) for m in self.messages)


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays a script; see the module docstring."""

    __test__ = False  # not a pytest test class, despite the name

    script: Any
    """A list of steps (one queue for every caller) or a mapping key -> list of steps."""

    _queues: dict[str, list[Any]] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)

    def __init__(self, script: Sequence[Any] | Mapping[str, Sequence[Any]], **kwargs: Any) -> None:
        super().__init__(script=script, **kwargs)
        if isinstance(script, Mapping):
            self._queues = {key: list(steps) for key, steps in script.items()}
        else:
            self._queues = {ANY: list(script)}

    @property
    def _llm_type(self) -> str:
        return "graphswarm-scripted"

    @property
    def calls(self) -> list[ScriptedCall]:
        """Every call so far, in order."""
        return list(self._calls)

    def calls_for(self, key: str) -> list[ScriptedCall]:
        """The calls answered from one agent's (or node's) queue, or made by that agent."""
        return [c for c in self._calls if c.key == key or c.agent == key]

    def remaining(self) -> dict[str, int]:
        return {key: len(steps) for key, steps in self._queues.items() if steps}

    def assert_complete(self) -> None:
        """Fail when scripted steps were never used."""
        if left := self.remaining():
            raise AssertionError(f"scripted steps were not used: {left}")

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any):
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = run_manager.metadata if run_manager else {}
        agent, node = metadata.get("graphswarm_agent"), metadata.get("langgraph_node")
        tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
        with self._lock:
            key = next((k for k in (agent, node, ANY) if k and self._queues.get(k)), None)
            if key is None:
                raise ScriptExhausted(f"no scripted answer left for agent={agent!r} node={node!r}")
            step = self._queues[key].pop(0)
            call = ScriptedCall(key=key, agent=agent, node=node, messages=list(messages), tools=tools)
            self._calls.append(call)
        if isinstance(step, BaseException):
            raise step
        message = self._to_message(step, tools, kwargs.get("tool_choice"))
        message.usage_metadata = _word_usage(messages, message)
        call.response = message
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        # Answer on the event loop: no executor threads, so call order is what the graph did.
        return self._generate(messages, stop, run_manager, **kwargs)

    @staticmethod
    def _to_message(step: Any, tools: list[str], tool_choice: Any) -> AIMessage:
        if isinstance(step, AIMessage):
            return step.model_copy(deep=True)
        if isinstance(step, BaseModel):
            step = step.model_dump()
        if isinstance(step, dict):
            forced = _forced_tool(tools, tool_choice)
            if forced:
                return AIMessage(content="", tool_calls=[{"name": forced, "args": step, "id": f"call_{len(tools)}"}])
            return AIMessage(content=json.dumps(step))
        return AIMessage(content=str(step))


def unreadable_replies(reply: str = "I think it is fine.") -> list[str]:
    """Script steps for a judge, leader or planner whose structured reply cannot be read:
    a `reply` that fits no schema, once for every try a structured request to this model
    makes (each method, each re-ask)."""
    from graphswarm.structured import MAX_REASKS, methods_for

    return [reply] * (len(methods_for(ScriptedChatModel([]))) * (1 + MAX_REASKS))


def _forced_tool(tools: list[str], tool_choice: Any) -> str | None:
    if not tools or tool_choice in (None, "auto", "none"):
        return None
    if isinstance(tool_choice, str) and tool_choice in tools:
        return tool_choice
    if isinstance(tool_choice, dict):
        return tool_choice.get("function", {}).get("name") or tool_choice.get("name") or tools[0]
    return tools[0]  # "any" / "required" / True


def _word_usage(messages: list[BaseMessage], reply: AIMessage) -> UsageMetadata:
    inputs = sum(len(str(m.content).split()) for m in messages)
    outputs = len(str(reply.content).split()) + sum(len(json.dumps(c["args"]).split()) for c in reply.tool_calls)
    return UsageMetadata(input_tokens=inputs, output_tokens=outputs, total_tokens=inputs + outputs)


# Deterministic embeddings for semantic voting tests (graphswarm.aggregation).
import math  # noqa: E402
import re  # noqa: E402
import zlib  # noqa: E402

from langchain_core.embeddings import Embeddings  # noqa: E402

__all__ += ["KeywordEmbeddings"]


class KeywordEmbeddings(Embeddings):
    """Bag-of-words embeddings: texts sharing content words are close, others far.

    Each content word (lowercased, punctuation dropped, stop words removed) adds one to
    a hashed bucket and the vector is scaled to unit length, so the cosine similarity of
    two texts is the overlap of their content words. Hashing is crc32, not `hash()`, so
    vectors are the same in every process. Every `embed_documents` batch is recorded.

    Example:
        >>> emb = KeywordEmbeddings()
        >>> a, b = emb.embed_documents(["Paris is the capital of France", "The capital of France is Paris"])
        >>> round(sum(x * y for x, y in zip(a, b)), 6)
        1.0
    """

    __test__ = False  # not a pytest test class

    STOP_WORDS = frozenset(
        {
            "a",
            "an",
            "the",
            "is",
            "are",
            "was",
            "were",
            "be",
            "been",
            "being",
            "am",
            "of",
            "in",
            "on",
            "at",
            "to",
            "for",
            "from",
            "by",
            "with",
            "and",
            "or",
            "but",
            "it",
            "its",
            "this",
            "that",
            "these",
            "those",
            "as",
            "i",
            "you",
            "he",
            "she",
            "we",
            "they",
            "my",
            "your",
            "our",
            "their",
            "s",
        }
    )
    """Words that say nothing about the content."""

    def __init__(self, dims: int = 256) -> None:
        if dims < 1:
            raise ValueError(f"dims must be at least 1, got {dims}")
        self.dims = dims
        self.calls: list[list[str]] = []
        """The texts of every `embed_documents` call, in order."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text (zero vector for a text without content words)."""
        self.calls.append(list(texts))
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """The same vector `embed_documents` gives this text."""
        return self._embed(text)

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in re.findall(r"[^\W_]+", text.lower()):
            if word not in self.STOP_WORDS:
                vector[zlib.crc32(word.encode()) % self.dims] += 1.0
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector] if norm else vector
