"""Structured output that works on every backend.

Servers differ: OpenAI takes a JSON schema, many OpenAI-compatible servers reject it
but do tool calls, some do neither. For each model we try the methods it may support
in order, remember per server which ones it refused, and fall back to asking for JSON
in the prompt and parsing it leniently. Output that does not fit the schema is
re-asked with the validation error, then fails with `StructuredOutputError`.

A refusal is any answer saying the request's shape is not supported: most 4xx, and
the 5xx some servers send for a request they failed to validate (llama-cpp-python's
server answers `response_format: json_schema` with HTTP 500). A refused method moves
on to the next at once, with no retries; real transient errors (429, 503, timeouts,
dropped connections) are raised for the graph's RetryPolicy.

Every request goes through `send`, so that the caller (the budget governor) admits
and records each one: every method tried, every re-ask.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ValidationError

from graphswarm.errors import StructuredOutputError

__all__ = [
    "StructuredMethod",
    "StructuredReply",
    "ainvoke_structured",
    "forget_refusals",
    "is_refusal",
    "methods_for",
    "parse_json_reply",
]

T = TypeVar("T", bound=BaseModel)

MAX_REASKS = 2

SCHEMA_INSTRUCTIONS = "Reply with one JSON object that matches this JSON schema, and nothing else:\n{schema}"
REASK_TEMPLATE = (
    "Your previous reply could not be used: {error}\n"
    "Previous reply:\n{reply}\n"
    "Reply again with only a JSON object that matches the schema."
)


class StructuredMethod(StrEnum):
    NATIVE = "native"
    """The model's own `with_structured_output` default."""
    JSON_SCHEMA = "json_schema"
    FUNCTION_CALLING = "function_calling"
    JSON_MODE = "json_mode"
    PROMPT = "prompt"
    """Schema in the prompt, JSON parsed leniently from free text."""


@dataclass
class StructuredReply:
    value: Any
    method: StructuredMethod


Send = Callable[[Runnable, list[BaseMessage]], Awaitable[Any]]
"""Sends one request: `await send(runnable, messages)` is `runnable.ainvoke(messages, ...)`."""

# Methods a server refused, by server.
_refused: dict[tuple[str, str, str], set[StructuredMethod]] = {}


def methods_for(model: BaseChatModel) -> list[StructuredMethod]:
    """The methods worth trying for this model, best first, minus those its server refused."""
    from langchain_openai.chat_models.base import BaseChatOpenAI

    if isinstance(model, BaseChatOpenAI):
        candidates = [
            StructuredMethod.JSON_SCHEMA,
            StructuredMethod.FUNCTION_CALLING,
            StructuredMethod.JSON_MODE,
            StructuredMethod.PROMPT,
        ]
    else:
        candidates = [StructuredMethod.NATIVE, StructuredMethod.PROMPT]
    refused = _refused.get(_server_key(model), set())
    return [m for m in candidates if m not in refused]


def _server_key(model: BaseChatModel) -> tuple[str, str, str]:
    base_url = getattr(model, "openai_api_base", None) or ""
    name = getattr(model, "model_name", None) or getattr(model, "model_path", None) or ""
    return (type(model).__name__, str(base_url), str(name))


# 4xx codes that say nothing about the request's shape: auth, timeouts, conflicts, rate limits.
_NOT_REFUSALS = {401, 403, 408, 409, 429}
# Words of a 5xx body that blame the request's shape rather than the server's health.
_SHAPE_WORDS = re.compile(r"response_format|json_schema|tool_choice|\btools\b|validation error|not supported", re.I)


def is_refusal(exc: BaseException) -> bool:
    """Whether an error answer means "this server does not do this request shape"."""
    if isinstance(exc, NotImplementedError):
        return True
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return False
    if 400 <= status < 500:
        return status not in _NOT_REFUSALS
    if status == 501:
        return True
    return status >= 500 and status != 503 and bool(_SHAPE_WORDS.search(f"{exc} {getattr(exc, 'body', '')}"))


async def ainvoke_structured(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: type[T],
    *,
    agent: str,
    config: RunnableConfig | None = None,
    send: Send | None = None,
) -> StructuredReply:
    """Ask `model` for an instance of `schema`, falling back across methods.

    `send` makes each request (default: `runnable.ainvoke(messages, config)`).
    """

    async def invoke(runnable: Runnable, request: list[BaseMessage]) -> Any:
        return await runnable.ainvoke(request, config)

    last_error: BaseException | None = None
    for method in methods_for(model):
        try:
            return await _ask(model, messages, schema, method, agent=agent, send=send or invoke)
        except StructuredOutputError as exc:
            # The server took the method but the model never fit the schema: try the next one.
            last_error = exc
        except Exception as exc:
            if not is_refusal(exc):
                raise
            _refused.setdefault(_server_key(model), set()).add(method)
            last_error = exc
    if isinstance(last_error, StructuredOutputError):
        raise last_error
    raise StructuredOutputError(agent, schema.__name__, f"every method was refused (last: {last_error})")


def forget_refusals() -> None:
    """Forget which servers refused which methods (for tests, or after a server upgrade)."""
    _refused.clear()


async def _ask(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: type[T],
    method: StructuredMethod,
    *,
    agent: str,
    send: Send,
) -> StructuredReply:
    if method in (StructuredMethod.JSON_MODE, StructuredMethod.PROMPT):
        messages = _with_schema_instructions(messages, schema)
    runnable: Runnable
    if method is StructuredMethod.PROMPT:
        runnable = model
    elif method is StructuredMethod.NATIVE:
        runnable = model.with_structured_output(schema, include_raw=True)
    else:
        runnable = model.with_structured_output(schema, method=method.value, include_raw=True)

    error = ""
    for _ in range(1 + MAX_REASKS):
        try:
            out = await send(runnable, messages)
        except (ValidationError, OutputParserException, json.JSONDecodeError) as exc:
            # Some clients (OpenAI's json_schema path) parse inside the call and raise.
            out = {"raw": AIMessage(content=""), "parsed": None, "parsing_error": exc}
        if method is StructuredMethod.PROMPT:
            raw, (parsed, error) = out, _parse(out, schema)
        else:
            raw, parsed = out["raw"], out["parsed"]
            error = str(out.get("parsing_error") or "no structured output in the reply")
            if parsed is None and isinstance(raw, AIMessage):
                # Small models often wrap valid JSON in chatter that strict parsers reject.
                parsed, _ = _parse(raw, schema)
        if parsed is not None:
            return StructuredReply(value=parsed, method=method)
        messages = [*messages, HumanMessage(REASK_TEMPLATE.format(error=_short(error), reply=_short(_text(raw))))]
    raise StructuredOutputError(agent, schema.__name__, _short(error))


def _with_schema_instructions(messages: list[BaseMessage], schema: type[BaseModel]) -> list[BaseMessage]:
    note = SCHEMA_INSTRUCTIONS.format(schema=json.dumps(schema.model_json_schema()))
    return [*messages, SystemMessage(note)] if not messages else [*messages[:-1], SystemMessage(note), messages[-1]]


def _parse(message: Any, schema: type[T]) -> tuple[T | None, str]:
    try:
        return parse_json_reply(_text(message), schema), ""
    except ValueError as exc:
        return None, str(exc)


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def parse_json_reply(text: str, schema: type[T]) -> T:
    """Find a JSON value in real model text (fences, chatter around it) that fits `schema`.

    Raises ValueError saying what was wrong.
    """
    errors: list[str] = []
    for candidate in _json_candidates(text):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as exc:
            errors.append(f"invalid JSON ({exc.msg})")
            continue
        data = _fit_shape(data, schema)
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            errors.append(_validation_summary(exc))
    if not errors:
        raise ValueError("no JSON object found in the reply")
    raise ValueError(errors[0])


def _json_candidates(text: str) -> list[str]:
    candidates = [m.strip() for m in _FENCE.findall(text)]
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        candidates.append(stripped)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            candidates.append(stripped[start : end + 1])
    return [c for c in dict.fromkeys(candidates) if c]


def _fit_shape(data: Any, schema: type[BaseModel]) -> Any:
    """Accept a bare list where the schema is an object with a single list field."""
    fields = schema.model_fields
    if isinstance(data, list) and len(fields) == 1:
        return {next(iter(fields)): data}
    return data


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "value"
        parts.append(f"{where}: {err['msg']}")
    return "schema mismatch (" + "; ".join(parts) + ")"


def _text(message: Any) -> str:
    if isinstance(message, BaseMessage):
        if message.content:
            return str(message.text)
        calls = getattr(message, "tool_calls", None)
        if calls:
            return json.dumps(calls[0].get("args", {}))
        return ""
    return str(message)


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
