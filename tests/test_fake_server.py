"""The loopback fake OpenAI server, exercised through the real langchain-openai client.

Each test documents one behaviour that other tests and the benchmarks rely on.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Literal

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

# The repo root holds the `tools` package; make it importable even without a
# pytest `pythonpath` setting.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.fake_openai import (  # noqa: E402
    MALFORMED_TEXT,
    FakeOpenAIServer,
    FakeServerConfig,
    example_from_schema,
)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18)
    tags: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_server(server: FakeOpenAIServer) -> None:
    # One server for the module (fast), but every test starts from defaults.
    server.configure(**FakeServerConfig().model_dump())
    server.reset()


def chat(server: FakeOpenAIServer, **kwargs: object) -> ChatOpenAI:
    options: dict[str, object] = {"model": "m1", "max_retries": 0, "timeout": 10}
    options.update(kwargs)
    return ChatOpenAI(base_url=server.url, api_key="test-key", **options)


def embeddings(server: FakeOpenAIServer, **kwargs: object) -> OpenAIEmbeddings:
    # check_embedding_ctx_length=False keeps tiktoken (which downloads files) out of it.
    return OpenAIEmbeddings(
        base_url=server.url, api_key="test-key", check_embedding_ctx_length=False, max_retries=0, **kwargs
    )


# --- default answers ------------------------------------------------------


def test_plain_answer_is_deterministic_and_quotes_the_question(server: FakeOpenAIServer) -> None:
    llm = chat(server)
    first = llm.invoke("What is the capital of France?")
    second = llm.invoke("What is the capital of France?")

    assert first.content == second.content
    assert first.content.startswith("[m1] answer ")
    assert first.content.endswith(": What is the capital of France?")


def test_different_requests_get_different_answers(server: FakeOpenAIServer) -> None:
    llm = chat(server)
    assert llm.invoke("question one").content != llm.invoke("question two").content
    assert chat(server, model="m2").invoke("question one").content.startswith("[m2] ")


def test_streaming_yields_word_chunks_that_join_to_the_plain_answer(server: FakeOpenAIServer) -> None:
    llm = chat(server)
    chunks = [chunk.content for chunk in llm.stream("tell me a short story")]

    assert len([c for c in chunks if c]) > 3
    assert "".join(chunks) == llm.invoke("tell me a short story").content
    assert [c["kind"] for c in server.stats()["completed"]] == ["stream", "text"]


def test_streaming_reports_usage_when_the_client_asks_for_it(server: FakeOpenAIServer) -> None:
    merged = None
    for chunk in chat(server, stream_usage=True).stream("count these four words"):
        merged = chunk if merged is None else merged + chunk

    assert merged is not None and merged.usage_metadata is not None
    assert merged.usage_metadata["input_tokens"] == 4
    assert merged.usage_metadata["output_tokens"] == len(merged.content.split())


def test_json_schema_structured_output_returns_a_valid_object(server: FakeOpenAIServer) -> None:
    person = chat(server).with_structured_output(Person, method="json_schema").invoke("make a person")

    assert isinstance(person, Person)
    assert person.age == 18  # the schema's minimum
    assert len(person.tags) == 2
    assert server.stats()["completed"][-1]["kind"] == "json"


def test_function_calling_structured_output_parses_the_forced_tool_call(server: FakeOpenAIServer) -> None:
    result = chat(server).with_structured_output(Person, method="function_calling", include_raw=True).invoke("make one")

    assert isinstance(result["parsed"], Person)
    assert result["raw"].tool_calls[0]["name"] == "Person"
    assert result["raw"].tool_calls[0]["id"].startswith("call_")
    assert result["raw"].response_metadata["finish_reason"] == "tool_calls"


def test_json_mode_returns_an_answer_object(server: FakeOpenAIServer) -> None:
    result = chat(server).with_structured_output(None, method="json_mode").invoke("reply in JSON")

    assert set(result) == {"answer"}
    assert result["answer"].startswith("answer-")


def test_tools_without_a_forced_choice_get_a_plain_answer(server: FakeOpenAIServer) -> None:
    reply = chat(server).bind_tools([Person]).invoke("hello")

    assert reply.tool_calls == []
    assert reply.content.startswith("[m1] answer ")


def test_schema_instances_cover_refs_enums_optionals_and_literals() -> None:
    class Colour(str, Enum):  # noqa: UP042 - a str mix-in enum, as users write them
        RED = "red"
        BLUE = "blue"

    class Node(BaseModel):
        label: str
        colour: Colour
        weight: float = Field(ge=0.5)
        note: str | None = None
        mode: Literal["fast", "slow"]
        children: list[Node] = Field(default_factory=list, max_length=3)

    instance = example_from_schema(Node.model_json_schema(), "abcd1234")
    node = Node.model_validate(instance)

    assert node.colour is Colour.RED
    assert node.mode == "fast"
    assert node.weight == 0.5
    assert node.note is not None and "abcd1234" in node.note
    assert len(node.children) == 2


# --- scripted responses ---------------------------------------------------


def test_scripted_responses_come_in_order_then_defaults_resume(server: FakeOpenAIServer) -> None:
    server.script("m1", [{"content": "first"}, {"json": {"k": 1}}])
    llm = chat(server)

    assert llm.invoke("q").content == "first"
    assert llm.invoke("q").content == '{"k": 1}'
    assert llm.invoke("q").content.startswith("[m1] answer ")


def test_scripts_are_per_model(server: FakeOpenAIServer) -> None:
    server.script("m2", [{"content": "for m2 only"}])

    assert chat(server).invoke("q").content.startswith("[m1] ")
    assert chat(server, model="m2").invoke("q").content == "for m2 only"


def test_scripted_tool_calls_reach_the_client(server: FakeOpenAIServer) -> None:
    server.script("m1", [{"tool_calls": [{"name": "search", "arguments": {"query": "cats"}}]}])
    reply = chat(server).invoke("find cats")

    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("search", {"query": "cats"})]


def test_scripted_errors_raise_and_count_as_failures(server: FakeOpenAIServer) -> None:
    server.script("m1", [{"error": 429}, {"error": 500}])
    llm = chat(server)

    with pytest.raises(openai.RateLimitError):
        llm.invoke("q")
    with pytest.raises(openai.InternalServerError):
        llm.invoke("q")
    assert server.stats()["failed"] == 2


def test_scripted_malformed_answer_is_fenced_broken_json(server: FakeOpenAIServer) -> None:
    server.script("m1", [{"malformed": True}])

    assert chat(server).invoke("q").content == MALFORMED_TEXT


# --- failure injection ----------------------------------------------------


def test_refuse_json_schema_answers_400(server: FakeOpenAIServer) -> None:
    server.configure(refuse_json_schema=True)

    with pytest.raises(openai.BadRequestError, match="Input should be 'text' or 'json_object'"):
        chat(server).with_structured_output(Person, method="json_schema").invoke("make a person")
    # Other structured-output methods still work, which is what a fallback needs.
    assert isinstance(chat(server).with_structured_output(Person, method="function_calling").invoke("x"), Person)


def test_refusals_can_come_as_http_500_as_llama_cpp_pythons_server_sends_them(server: FakeOpenAIServer) -> None:
    server.configure(refuse_json_schema=True, refusal_status=500)

    with pytest.raises(openai.InternalServerError, match="validation error"):
        chat(server).with_structured_output(Person, method="json_schema").invoke("make a person")


def test_no_tools_answers_400_to_requests_with_tools(server: FakeOpenAIServer) -> None:
    server.configure(no_tools=True)

    with pytest.raises(openai.BadRequestError):
        chat(server).bind_tools([Person]).invoke("hello")
    assert chat(server).invoke("hello").content.startswith("[m1] ")


def test_fail_models_always_get_500(server: FakeOpenAIServer) -> None:
    server.configure(fail_models=["broken"])

    with pytest.raises(openai.InternalServerError):
        chat(server, model="broken").invoke("hello")
    assert chat(server, model="m1").invoke("hello").content


def test_fail_rate_one_fails_every_call_with_429_or_500(server: FakeOpenAIServer) -> None:
    server.configure(fail_rate=1.0)
    statuses = set()
    for i in range(12):
        with pytest.raises(openai.APIStatusError) as error:
            chat(server).invoke(f"q{i}")
        statuses.add(error.value.status_code)

    assert statuses == {429, 500}
    assert server.stats()["failed"] == 12
    assert server.stats()["completed"] == []


def test_timeout_rate_makes_the_client_time_out(server: FakeOpenAIServer) -> None:
    server.configure(timeout_rate=1.0, hang_s=2)

    with pytest.raises(openai.APITimeoutError):
        chat(server, timeout=0.5).invoke("hello")
    # The abandoned request is a failure, never a completion.
    time.sleep(0.3)
    assert server.stats()["failed"] == 1
    assert server.stats()["completed"] == []


def test_malformed_rate_surfaces_as_a_parsing_error(server: FakeOpenAIServer) -> None:
    server.configure(malformed_rate=1.0)
    result = chat(server).with_structured_output(Person, method="json_mode", include_raw=True).invoke("make one")

    assert result["parsed"] is None
    assert result["parsing_error"] is not None
    assert result["raw"].content == MALFORMED_TEXT


def test_malformed_forced_tool_call_has_broken_arguments(server: FakeOpenAIServer) -> None:
    # langchain-openai does not report this as a parsing_error: the broken call
    # lands in `invalid_tool_calls` and `parsed` is silently None.
    server.configure(malformed_rate=1.0)
    result = chat(server).with_structured_output(Person, method="function_calling", include_raw=True).invoke("x")

    assert result["parsed"] is None
    assert result["raw"].invalid_tool_calls[0]["args"] == MALFORMED_TEXT


def test_malformed_rate_leaves_plain_text_alone(server: FakeOpenAIServer) -> None:
    server.configure(malformed_rate=1.0)

    assert chat(server).invoke("hello").content.startswith("[m1] answer ")


def test_latency_delays_every_answer(server: FakeOpenAIServer) -> None:
    server.configure(latency_ms=200)
    started = time.perf_counter()
    chat(server).invoke("hello")

    assert time.perf_counter() - started >= 0.2


def test_hundreds_of_concurrent_requests_are_served(server: FakeOpenAIServer) -> None:
    server.configure(latency_ms=50)
    llm = chat(server)

    async def run_all() -> list[AIMessage]:
        return await asyncio.gather(*(llm.ainvoke(f"question {i}") for i in range(300)))

    replies = asyncio.run(run_all())

    assert len({r.content for r in replies}) == 300
    assert server.stats()["succeeded"] == 300


# --- embeddings -----------------------------------------------------------


def test_embeddings_are_deterministic_and_normalised(server: FakeOpenAIServer) -> None:
    first = embeddings(server).embed_documents(["alpha", "beta"])
    again = embeddings(server).embed_query("alpha")

    assert first[0] == pytest.approx(again)
    assert first[0] != pytest.approx(first[1])
    assert len(again) == 64
    assert math.sqrt(sum(v * v for v in again)) == pytest.approx(1.0, abs=1e-5)
    assert server.stats()["embeddings"] == 2


def test_embeddings_honour_the_requested_dimensions(server: FakeOpenAIServer) -> None:
    vector = embeddings(server, model="text-embedding-3-small", dimensions=256).embed_query("alpha")

    assert len(vector) == 256


def test_embeddings_endpoint_accepts_a_single_string_as_floats(server: FakeOpenAIServer) -> None:
    reply = httpx.post(f"{server.url}/embeddings", json={"model": "e", "input": "one two three"}).json()

    assert len(reply["data"]) == 1
    assert len(reply["data"][0]["embedding"]) == 64
    assert reply["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


# --- stats and control endpoints -----------------------------------------


def test_stats_tokens_match_what_the_client_reports(server: FakeOpenAIServer) -> None:
    llm = chat(server)
    replies = [
        llm.invoke([SystemMessage("You are terse."), HumanMessage("Name three colours please")]),
        llm.with_structured_output(Person, method="function_calling", include_raw=True).invoke("a person")["raw"],
        chat(server, model="m2").invoke("hi"),
    ]
    m1_replies, m2_replies = replies[:2], replies[2:]
    stats = server.stats()

    assert stats["requests"] == stats["succeeded"] == 3
    for model, model_replies in (("m1", m1_replies), ("m2", m2_replies)):
        per_model = stats["by_model"][model]
        assert per_model["prompt_tokens"] == sum(r.usage_metadata["input_tokens"] for r in model_replies)
        assert per_model["completion_tokens"] == sum(r.usage_metadata["output_tokens"] for r in model_replies)
    assert replies[0].usage_metadata["input_tokens"] == 7  # 3 system words + 4 user words


def test_completed_lists_fingerprints_so_duplicates_are_detectable(server: FakeOpenAIServer) -> None:
    llm = chat(server)
    llm.invoke("same")
    llm.invoke("same")
    llm.invoke("other")
    fingerprints = [c["fingerprint"] for c in server.stats()["completed"]]

    assert len(fingerprints) == 3
    assert len(set(fingerprints)) == 2


def test_control_endpoints_work_over_http(server: FakeOpenAIServer) -> None:
    root = server.url.removesuffix("/v1")
    with httpx.Client(base_url=root) as client:
        assert client.post("/_config", json={"latency_ms": 5}).json()["latency_ms"] == 5
        assert client.post("/_config", json={"no_such_knob": 1}).status_code == 400
        assert client.post("/_script", json={"model": "m1", "responses": [{"content": "scripted"}]}).status_code == 200
        assert chat(server).invoke("q").content == "scripted"
        assert client.get("/_stats").json()["requests"] == 1
        assert "m1" in [m["id"] for m in client.get("/v1/models").json()["data"]]
        client.post("/_reset")
        assert client.get("/_stats").json()["requests"] == 0
    assert server.state.config.latency_ms == 5  # reset keeps the config


def test_cli_serves_until_killed() -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tools" / "fake_openai.py"), "--port", "0", "--latency-ms", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("fake-openai listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        reply = ChatOpenAI(base_url=url, api_key="test-key", model="cli", max_retries=0, timeout=10).invoke("hi")
        assert reply.content.startswith("[cli] answer ")
    finally:
        process.terminate()
        process.wait(timeout=10)
