"""A loopback, OpenAI-compatible fake server for tests and benchmarks.

Tests use it to drive the real ``langchain-openai`` client over HTTP, so the
whole request/response path (serialisation, streaming, structured output,
tool calls, error mapping, timeouts) is exercised without a real model.
Benchmarks use it as a model with configurable latency and failure rates.

Answers are deterministic: everything is derived from a fingerprint of the
request, so the same request always gets the same answer. Tests can queue
scripted answers per model name, and inject failures through the config.

In-process use::

    with FakeOpenAIServer(FakeServerConfig(latency_ms=50)) as server:
        llm = ChatOpenAI(base_url=server.url, api_key="x", model="m1")
        ...
        server.stats()["by_model"]["m1"]["prompt_tokens"]

Stand-alone use (serves until killed)::

    python tools/fake_openai.py --port 8765 --latency-ms 100 --fail-rate 0.2

This module deliberately imports nothing from graphswarm.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "MALFORMED_TEXT",
    "FakeOpenAIServer",
    "FakeServerConfig",
    "FakeState",
    "count_words",
    "create_app",
    "embed_text",
    "example_from_schema",
    "main",
    "request_fingerprint",
]

# Broken JSON wrapped in a markdown fence: the two most common ways a real
# model breaks structured output, in one string.
MALFORMED_TEXT = '```json\n{"oops": \n```'

DEFAULT_EMBEDDING_DIMS = 64

# Past this nesting depth the schema walker stops expanding optional parts, so
# recursive schemas (trees, linked lists) still produce a finite instance.
_MAX_SCHEMA_DEPTH = 8

CompletionKind = Literal["text", "json", "tool", "stream"]


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


class FakeServerConfig(BaseModel):
    """Behaviour knobs; all can be set at start and changed via ``/_config``."""

    # Unknown keys are rejected so a typo in a test fails loudly instead of
    # silently configuring nothing.
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    model_latency_ms: dict[str, float] = Field(default_factory=dict)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    hang_s: float = Field(default=30.0, ge=0)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    refuse_json_schema: bool = False
    no_tools: bool = False
    refusal_status: int = Field(default=400, ge=400, le=599)
    """The HTTP status refusing a request shape; llama-cpp-python's server answers 500."""
    fail_models: list[str] = Field(default_factory=list)
    seed: int = 0


# --------------------------------------------------------------------------
# Pure helpers: fingerprints, word counts, schema instances, embeddings
# --------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_fingerprint(body: dict[str, Any]) -> str:
    """sha256 hex of the parts of a chat request that determine its answer."""
    relevant = {key: body.get(key) for key in ("model", "messages", "tools", "tool_choice", "response_format")}
    return hashlib.sha256(_canonical_json(relevant).encode()).hexdigest()


def _content_text(content: Any) -> str:
    """Text of a message content, which is a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def count_words(text: str) -> int:
    """The fake 'tokenizer': whitespace-separated words."""
    return len(text.split())


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(count_words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _resolve_ref(root: dict[str, Any], ref: str) -> Any:
    # Only local JSON pointers ("#/$defs/Name") occur in tool/response schemas.
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for raw in ref.lstrip("#").strip("/").split("/"):
        if not raw:
            continue
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return {}
        node = node[key]
    return node


def _is_null_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _merge_all_of(branches: list[Any], root: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for branch in branches:
        if isinstance(branch, dict) and "$ref" in branch:
            branch = _resolve_ref(root, branch["$ref"])
        if not isinstance(branch, dict):
            continue
        for key, value in branch.items():
            if key == "properties" and isinstance(value, dict):
                merged.setdefault("properties", {}).update(value)
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _example_string(schema: dict[str, Any], seed: str, name: str) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        value = "2024-01-01T00:00:00Z"
    elif fmt == "date":
        value = "2024-01-01"
    elif fmt == "time":
        value = "12:00:00"
    elif fmt == "email":
        value = f"user-{seed}@example.com"
    elif fmt in ("uri", "url"):
        value = f"https://example.com/{name}-{seed}"
    elif fmt == "uuid":
        value = str(uuid.UUID(hashlib.md5(f"{name}:{seed}".encode()).hexdigest()))
    else:
        value = f"{name}-{seed}"
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(value) < min_length:
        value = value + "x" * (min_length - len(value))
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        value = value[:max_length]
    return value


def _example_number(schema: dict[str, Any], integer: bool) -> int | float:
    value: float
    if isinstance(schema.get("minimum"), (int, float)):
        value = schema["minimum"]
    elif isinstance(schema.get("exclusiveMinimum"), (int, float)):
        value = schema["exclusiveMinimum"] + 1
    else:
        value = 1
    maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(maximum, (int, float)) and value > maximum:
        value = maximum
    return math.ceil(value) if integer else value


def example_from_schema(
    schema: Any,
    seed: str,
    *,
    name: str = "text",
    root: dict[str, Any] | None = None,
    depth: int = 0,
) -> Any:
    """A deterministic instance of a JSON schema.

    ``seed`` (a short fingerprint) makes strings differ between requests;
    ``name`` (the property name) makes them differ between fields.
    """
    if root is None:
        root = schema if isinstance(schema, dict) else {}
    if not isinstance(schema, dict):
        # `true` / missing schemas accept anything; a string is the safest guess.
        return f"{name}-{seed}"
    deep = depth >= _MAX_SCHEMA_DEPTH

    if "$ref" in schema:
        target = _resolve_ref(root, schema["$ref"])
        return example_from_schema(target, seed, name=name, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if not _is_null_schema(b)]
            # Choosing null when deep is what terminates recursive schemas.
            if not non_null or (deep and len(non_null) < len(branches)):
                return None
            return example_from_schema(non_null[0], seed, name=name, root=root, depth=depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = _merge_all_of(schema["allOf"], root)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return example_from_schema({**merged, **rest}, seed, name=name, root=root, depth=depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        non_null_types = [t for t in kind if t != "null"]
        if not non_null_types or (deep and "null" in kind):
            return None
        kind = non_null_types[0]
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        else:
            kind = "string"

    if kind == "object":
        properties = schema.get("properties") or {}
        if deep:
            # Only what is required, to stop expanding recursive structures.
            required = set(schema.get("required") or [])
            properties = {k: v for k, v in properties.items() if k in required}
        return {
            prop: example_from_schema(sub, seed, name=prop, root=root, depth=depth + 1)
            for prop, sub in properties.items()
        }
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [
                example_from_schema(sub, seed, name=f"{name}{i + 1}", root=root, depth=depth + 1)
                for i, sub in enumerate(prefix)
            ]
        min_items = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        count = min_items if deep else max(min_items, 2)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        items = schema.get("items", {})
        return [
            example_from_schema(items, seed, name=f"{name}{i + 1}", root=root, depth=depth + 1) for i in range(count)
        ]
    if kind == "string":
        return _example_string(schema, seed, name)
    if kind == "integer":
        return _example_number(schema, integer=True)
    if kind == "number":
        return _example_number(schema, integer=False)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name}-{seed}"


def embed_text(text: str, dims: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """A deterministic, L2-normalised vector derived from a hash of ``text``."""
    values: list[float] = []
    block = 0
    while len(values) < dims:
        digest = hashlib.sha256(f"{block}\x00{text}".encode()).digest()
        # 16 unsigned shorts per digest, mapped onto [-1, 1].
        values.extend(v / 32767.5 - 1.0 for v in struct.unpack("<16H", digest))
        block += 1
    vector = values[:dims]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


# --------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class _Reply:
    content: str | None = None
    tool_calls: list[_ToolCall] = field(default_factory=list)
    kind: CompletionKind = "text"

    def completion_tokens(self) -> int:
        if self.tool_calls:
            return sum(count_words(call.arguments) for call in self.tool_calls)
        return count_words(self.content or "")


@dataclass
class _Failure:
    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def _http_failure(status: int) -> _Failure:
    if status == 429:
        return _Failure(429, "Rate limit reached (injected by fake server)", "requests", "rate_limit_exceeded")
    if status == 400:
        return _Failure(400, "Bad request (injected by fake server)", "invalid_request_error")
    if status >= 500:
        return _Failure(status, "The server had an error (injected by fake server)", "server_error")
    return _Failure(status, f"HTTP {status} (injected by fake server)", "invalid_request_error")


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function definition the request forces a call to, if any."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    if not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "required":
        return tools[0].get("function") or {}
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = (choice.get("function") or {}).get("name")
        for tool in tools:
            function = tool.get("function") or {}
            if function.get("name") == wanted:
                return function
        return {"name": wanted, "parameters": {}}
    return None


def _response_format_type(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        return response_format.get("type")
    return None


def _is_structured(body: dict[str, Any]) -> bool:
    return _forced_tool(body) is not None or _response_format_type(body) in ("json_schema", "json_object")


def _default_reply(body: dict[str, Any], fp: str) -> _Reply:
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    fp8 = fp[:8]
    forced = _forced_tool(body)
    if forced is not None:
        parameters = forced.get("parameters") or {"type": "object", "properties": {}}
        arguments = example_from_schema(parameters, fp8)
        call = _ToolCall(f"call_{fp[:12]}", str(forced.get("name", "")), json.dumps(arguments))
        return _Reply(tool_calls=[call], kind="tool")
    format_type = _response_format_type(body)
    if format_type == "json_schema":
        schema = (body["response_format"].get("json_schema") or {}).get("schema") or {}
        return _Reply(content=json.dumps(example_from_schema(schema, fp8)), kind="json")
    if format_type == "json_object":
        return _Reply(content=json.dumps({"answer": f"answer-{fp8}"}), kind="json")
    text = f"[{model}] answer {fp8}: {_last_user_text(messages)[:60]}"
    return _Reply(content=text, kind="text")


def _malformed_reply(body: dict[str, Any], fp: str) -> _Reply:
    # For a forced tool call the broken part is the arguments, which is where
    # a real model breaks it; otherwise it is the content.
    forced = _forced_tool(body)
    if forced is not None:
        return _Reply(
            tool_calls=[_ToolCall(f"call_{fp[:12]}", str(forced.get("name", "")), MALFORMED_TEXT)], kind="tool"
        )
    return _Reply(content=MALFORMED_TEXT, kind="json" if _is_structured(body) else "text")


def _validate_script_item(item: Any) -> None:
    if not isinstance(item, dict):
        raise ValueError(f"script item must be an object, got {item!r}")
    keys = set(item) & {"content", "json", "tool_calls", "error", "malformed"}
    if len(keys) != 1:
        raise ValueError(f"script item needs exactly one of content/json/tool_calls/error/malformed: {item!r}")
    if not isinstance(item.get("latency_ms", 0), (int, float)):
        raise ValueError(f"script latency_ms must be a number: {item!r}")
    if "error" in item and not isinstance(item["error"], int):
        raise ValueError(f"script error must be an HTTP status code: {item!r}")
    if "tool_calls" in item:
        calls = item["tool_calls"]
        if not isinstance(calls, list) or not all(isinstance(c, dict) and "name" in c for c in calls):
            raise ValueError(f"script tool_calls must be a list of {{name, arguments}}: {item!r}")


def _scripted_reply(item: dict[str, Any], body: dict[str, Any], fp: str) -> _Reply | _Failure:
    if "error" in item:
        return _http_failure(int(item["error"]))
    if item.get("malformed"):
        return _malformed_reply(body, fp)
    if "json" in item:
        return _Reply(content=json.dumps(item["json"]), kind="json")
    if "tool_calls" in item:
        calls = []
        for i, call in enumerate(item["tool_calls"]):
            arguments = call.get("arguments", {})
            # A string is passed through untouched so scripts can send broken arguments.
            arguments_text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append(_ToolCall(str(call.get("id") or f"call_{fp[:12]}_{i}"), str(call["name"]), arguments_text))
        return _Reply(tool_calls=calls, kind="tool")
    kind: CompletionKind = "json" if _is_structured(body) else "text"
    return _Reply(content=str(item.get("content", "")), kind=kind)


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------


@dataclass
class _Plan:
    """What happens to one chat request, decided when it arrives."""

    failure: _Failure | None = None
    hang_s: float = 0.0
    script_item: dict[str, Any] | None = None
    malformed: bool = False
    latency_s: float = 0.0


def _empty_model_stats() -> dict[str, int]:
    return {"requests": 0, "succeeded": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}


class FakeState:
    """Config, scripts and stats, shared by the app (event-loop thread) and the
    test or benchmark (its own thread); every access goes through one lock."""

    def __init__(self, config: FakeServerConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FakeServerConfig()
        self._rng = random.Random(self._config.seed)
        self._scripts: dict[str, deque[dict[str, Any]]] = {}
        self._stats = self._empty_stats()
        # Set on shutdown so hanging requests give up instead of delaying it.
        self.closing = threading.Event()

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
            "requests": 0,
            "succeeded": 0,
            "failed": 0,
            "embeddings": 0,
            "embedding_inputs": [],
            "by_model": {},
            "completed": [],
        }

    @property
    def config(self) -> FakeServerConfig:
        # The config object is replaced, never mutated, so handing it out is safe.
        with self._lock:
            return self._config

    def configure(self, changes: dict[str, Any]) -> FakeServerConfig:
        with self._lock:
            new = FakeServerConfig.model_validate({**self._config.model_dump(), **changes})
            if new.seed != self._config.seed:
                self._rng = random.Random(new.seed)
            self._config = new
            return new

    def reset(self) -> None:
        """Clear stats and scripts; re-seed the RNG so a reset run is reproducible."""
        with self._lock:
            self._scripts.clear()
            self._stats = self._empty_stats()
            self._rng = random.Random(self._config.seed)

    def script(self, model: str, responses: list[dict[str, Any]]) -> None:
        for item in responses:
            _validate_script_item(item)
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(copy.deepcopy(responses))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._stats)

    def known_models(self) -> list[str]:
        with self._lock:
            return sorted(set(self._stats["by_model"]) | set(self._scripts))

    # --- used by the app ---------------------------------------------------

    def _model_stats(self, model: str) -> dict[str, int]:
        return self._stats["by_model"].setdefault(model, _empty_model_stats())

    def _latency_s(self, model: str) -> float:
        config = self._config
        base = config.model_latency_ms.get(model, config.latency_ms)
        jitter = self._rng.uniform(0, config.jitter_ms) if config.jitter_ms > 0 else 0.0
        return (base + jitter) / 1000.0

    def _roll(self, rate: float) -> bool:
        # Only draw when the rate is fractional, so the random sequence (and
        # thus reproducibility) does not depend on knobs that are switched off.
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        return self._rng.random() < rate

    def latency_s(self, model: str) -> float:
        with self._lock:
            return self._latency_s(model)

    def begin_chat(self, model: str) -> None:
        with self._lock:
            self._stats["requests"] += 1
            self._model_stats(model)["requests"] += 1

    def plan_chat(self, model: str, structured: bool) -> _Plan:
        with self._lock:
            config = self._config
            plan = _Plan(latency_s=self._latency_s(model))
            if model in config.fail_models:
                plan.failure = _http_failure(500)
                return plan
            # Injected failures come before the script queue so that a retry
            # after a transient failure still gets the scripted answer.
            if self._roll(config.fail_rate):
                plan.failure = _http_failure(429 if self._rng.random() < 0.5 else 500)
                return plan
            if self._roll(config.timeout_rate):
                plan.hang_s = config.hang_s
            queue = self._scripts.get(model)
            if queue:
                plan.script_item = queue.popleft()
                # A scripted answer may carry its own delay, to hold one call of many.
                if "latency_ms" in plan.script_item:
                    plan.latency_s = float(plan.script_item["latency_ms"]) / 1000
            elif structured and self._roll(config.malformed_rate):
                plan.malformed = True
            return plan

    def record_failure(self, model: str) -> None:
        with self._lock:
            self._stats["failed"] += 1
            self._model_stats(model)["failed"] += 1

    def record_success(
        self,
        model: str,
        fp: str,
        kind: CompletionKind,
        prompt_tokens: int,
        completion_tokens: int,
        seed: int | None = None,
    ) -> None:
        with self._lock:
            self._stats["succeeded"] += 1
            per_model = self._model_stats(model)
            per_model["succeeded"] += 1
            per_model["prompt_tokens"] += prompt_tokens
            per_model["completion_tokens"] += completion_tokens
            # The request's sampling seed (None when it sent none): agents of one swarm send their own.
            self._stats["completed"].append({"model": model, "fingerprint": fp, "kind": kind, "seed": seed})

    def record_embeddings(self, inputs: int = 1) -> None:
        """One embeddings request; `embedding_inputs` lists how many texts each one held."""
        with self._lock:
            self._stats["embeddings"] += 1
            self._stats["embedding_inputs"].append(inputs)


# --------------------------------------------------------------------------
# HTTP app
# --------------------------------------------------------------------------


def _chat_response(model: str, fp: str, reply: _Reply, usage: dict[str, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{fp[:12]}-{uuid.uuid4().hex[:8]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": usage,
    }


def _split_words(text: str) -> list[str]:
    # Zero-width split between whitespace and the next word: pieces rejoin to
    # exactly the original text.
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


async def _stream_events(
    model: str, fp: str, reply: _Reply, usage: dict[str, int], include_usage: bool
) -> AsyncIterator[bytes]:
    completion_id = f"chatcmpl-{fp[:12]}-{uuid.uuid4().hex[:8]}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    if reply.tool_calls:
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            yield chunk({"tool_calls": [head]})
            # Arguments in a separate chunk so clients must accumulate them.
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
    else:
        for piece in _split_words(reply.content or ""):
            yield chunk({"content": piece})
            # Yield to the loop so chunks really leave as separate writes.
            await asyncio.sleep(0)
    yield chunk({}, finish_reason="tool_calls" if reply.tool_calls else "stop")
    if include_usage:
        usage_payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(usage_payload)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _refusal(body: dict[str, Any], config: FakeServerConfig) -> _Failure | None:
    status = config.refusal_status
    if config.refuse_json_schema and _response_format_type(body) == "json_schema":
        # Worded as a request validator (llama-cpp-python's server) words it.
        message = "1 validation error: response_format.type: Input should be 'text' or 'json_object'"
        return _Failure(status, message, "invalid_request_error", None, "response_format")
    if config.no_tools and body.get("tools"):
        return _Failure(status, "tools are not supported", "invalid_request_error", None, "tools")
    return None


async def _read_json(request: Request) -> dict[str, Any] | _Failure:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _Failure(400, "request body is not valid JSON", "invalid_request_error")
    if not isinstance(body, dict):
        return _Failure(400, "request body must be a JSON object", "invalid_request_error")
    return body


async def _hang(request: Request, seconds: float, state: FakeState) -> bool:
    """Sleep up to ``seconds``; False if the client gave up (or we shut down) first."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, remaining))
        if state.closing.is_set() or await request.is_disconnected():
            return False
    return True


def create_app(state: FakeState) -> FastAPI:
    """The FastAPI app serving the OpenAI-compatible and control endpoints."""
    app = FastAPI(title="fake-openai", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await _read_json(request)
        if isinstance(body, _Failure):
            return body.response()
        model = str(body.get("model", ""))
        state.begin_chat(model)

        refusal = _refusal(body, state.config)
        if refusal is not None:
            state.record_failure(model)
            return refusal.response()

        fp = request_fingerprint(body)
        messages = body.get("messages") or []
        plan = state.plan_chat(model, _is_structured(body))
        if plan.latency_s >= 1:
            # Long waits notice a client that went away (a killed run), so they end with it
            # and are not counted later, against whatever test runs by then.
            if not await _hang(request, plan.latency_s, state):
                state.record_failure(model)
                return _http_failure(504).response()
        elif plan.latency_s > 0:
            await asyncio.sleep(plan.latency_s)
        if plan.failure is not None:
            state.record_failure(model)
            return plan.failure.response()
        if plan.hang_s > 0 and not await _hang(request, plan.hang_s, state):
            state.record_failure(model)
            return _http_failure(504).response()
        # A client that timed out during the latency did not get an answer,
        # so it must not show up as completed.
        if await request.is_disconnected():
            state.record_failure(model)
            return _http_failure(504).response()

        if plan.script_item is not None:
            outcome = _scripted_reply(plan.script_item, body, fp)
        elif plan.malformed:
            outcome = _malformed_reply(body, fp)
        else:
            outcome = _default_reply(body, fp)
        if isinstance(outcome, _Failure):
            state.record_failure(model)
            return outcome.response()

        prompt_tokens = _prompt_tokens(messages if isinstance(messages, list) else [])
        completion_tokens = outcome.completion_tokens()
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        stream = bool(body.get("stream"))
        seed = body.get("seed") if isinstance(body.get("seed"), int) else None
        state.record_success(model, fp, "stream" if stream else outcome.kind, prompt_tokens, completion_tokens, seed)
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream_events(model, fp, outcome, usage, include_usage), media_type="text/event-stream"
            )
        return JSONResponse(_chat_response(model, fp, outcome, usage))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await _read_json(request)
        if isinstance(body, _Failure):
            return body.response()
        model = str(body.get("model", ""))
        raw = body.get("input", [])
        # A flat list of ints is one tokenised input; anything else that is a
        # list holds one input per element.
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
            inputs = [raw]
        elif isinstance(raw, list):
            inputs = raw
        else:
            return _Failure(400, "input must be a string or a list", "invalid_request_error", None, "input").response()
        dims = body.get("dimensions") or DEFAULT_EMBEDDING_DIMS
        if not isinstance(dims, int) or dims <= 0:
            return _Failure(
                400, "dimensions must be a positive integer", "invalid_request_error", None, "dimensions"
            ).response()
        latency = state.latency_s(model)
        if latency > 0:
            await asyncio.sleep(latency)

        base64_format = body.get("encoding_format") == "base64"
        data = []
        prompt_tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else str(item)
            prompt_tokens += count_words(text)
            vector = embed_text(text, dims)
            encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if base64_format else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        state.record_embeddings(len(inputs))
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        )

    @app.get("/v1/models")
    async def models() -> Response:
        names = sorted({"fake-model", *state.known_models()})
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fake-openai"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/_stats")
    async def stats() -> Response:
        return JSONResponse(state.stats())

    @app.post("/_reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    @app.post("/_config")
    async def config(request: Request) -> Response:
        body = await _read_json(request)
        if isinstance(body, _Failure):
            return body.response()
        try:
            new = state.configure(body)
        except ValidationError as exc:
            return _Failure(400, str(exc), "invalid_request_error").response()
        return JSONResponse(new.model_dump())

    @app.post("/_script")
    async def script(request: Request) -> Response:
        body = await _read_json(request)
        if isinstance(body, _Failure):
            return body.response()
        model, responses = body.get("model"), body.get("responses")
        if not isinstance(model, str) or not isinstance(responses, list):
            return _Failure(400, "body must be {model: str, responses: list}", "invalid_request_error").response()
        try:
            state.script(model, responses)
        except ValueError as exc:
            return _Failure(400, str(exc), "invalid_request_error").response()
        return JSONResponse({"ok": True, "queued": len(responses)})

    return app


# --------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------


def _listening_socket(host: str, port: int) -> socket.socket:
    # Binding ourselves (rather than letting uvicorn do it) is how port 0
    # becomes a known free port before the server thread even starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _uvicorn_config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        # Longer than clients keep idle connections (aiohttp: 15 s), as servers behind a proxy
        # do: with uvicorn's 5 s, a client reusing a connection idle 5-15 s finds it closed
        # ("Server disconnected") and the call fails or is retried.
        timeout_keep_alive=75,
        # Bounded so stop() cannot be held up by a request still sleeping.
        timeout_graceful_shutdown=2,
    )


class FakeOpenAIServer:
    """In-process handle: runs the app with uvicorn in a daemon thread."""

    def __init__(self, config: FakeServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = FakeState(config)
        self.app = create_app(self.state)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Base URL of the control endpoints (``/_stats`` etc.)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> FakeOpenAIServer:
        if self._thread is not None:
            return self
        sock = _listening_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.state.closing.clear()
        server = uvicorn.Server(_uvicorn_config(self.app))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("fake OpenAI server failed to start")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("fake OpenAI server did not start in time")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.state.closing.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    def configure(self, **changes: Any) -> None:
        self.state.configure(changes)

    def script(self, model: str, responses: list[dict[str, Any]]) -> None:
        self.state.script(model, responses)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Loopback OpenAI-compatible fake server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--refuse-json-schema", action="store_true")
    parser.add_argument("--no-tools", action="store_true")
    parser.add_argument("--refusal-status", type=int, default=400)
    parser.add_argument("--fail-models", default="", help="comma-separated model names that always get 500")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    config = FakeServerConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        fail_rate=args.fail_rate,
        timeout_rate=args.timeout_rate,
        hang_s=args.hang_s,
        malformed_rate=args.malformed_rate,
        refuse_json_schema=args.refuse_json_schema,
        no_tools=args.no_tools,
        refusal_status=args.refusal_status,
        fail_models=[m for m in args.fail_models.split(",") if m],
        seed=args.seed,
    )
    state = FakeState(config)
    sock = _listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    # The socket already listens, so a client reading this line can connect
    # right away (its connection waits in the backlog until uvicorn runs).
    print(f"fake-openai listening on http://{args.host}:{port}/v1", flush=True)
    uvicorn.Server(_uvicorn_config(create_app(state))).run(sockets=[sock])


if __name__ == "__main__":
    main()
