"""Parsing real model text into schemas, and re-asking when it does not fit."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from graphswarm import StructuredOutputError
from graphswarm.structured import ainvoke_structured, is_refusal, parse_json_reply
from graphswarm.testing import ScriptedChatModel


class Verdict(BaseModel):
    answer: str
    confidence: float = 0.5


class Steps(BaseModel):
    steps: list[str]


@pytest.mark.parametrize(
    "text",
    [
        '{"answer": "42"}',
        '```json\n{"answer": "42"}\n```',
        'Sure! Here is the JSON you asked for:\n```\n{"answer": "42"}\n```\nLet me know if you need more.',
        'The result is {"answer": "42", "confidence": 0.5} as requested.',
    ],
)
def test_json_is_found_in_fences_and_chatter(text):
    assert parse_json_reply(text, Verdict).answer == "42"


def test_a_bare_list_fills_a_single_list_field():
    assert parse_json_reply('["a", "b"]', Steps).steps == ["a", "b"]


def test_schema_mismatch_says_which_field():
    with pytest.raises(ValueError, match="answer"):
        parse_json_reply('{"confidence": 1}', Verdict)


def test_text_without_json_says_so():
    with pytest.raises(ValueError, match="no JSON object"):
        parse_json_reply("I cannot help with that.", Verdict)


async def test_invalid_output_is_re_asked_with_the_error():
    model = ScriptedChatModel(["I think it is 42.", '{"answer": "42"}'])
    reply = await ainvoke_structured(model, [HumanMessage("q")], Verdict, agent="a")
    assert reply.value.answer == "42"
    assert len(model.calls) == 2
    assert "could not be used" in model.calls[1].prompt


async def test_every_request_goes_through_send_re_asks_included():
    model = ScriptedChatModel(["not json", "still not", '{"answer": "42"}'])
    sent = []

    async def send(runnable, messages):
        sent.append(len(messages))
        return await runnable.ainvoke(messages)

    reply = await ainvoke_structured(model, [HumanMessage("q")], Verdict, agent="a", send=send)
    assert reply.value.answer == "42"
    assert sent == [1, 2, 3]  # each re-ask carries one more message


def test_a_request_shape_the_server_rejects_is_a_refusal_even_as_http_500():
    import httpx
    import openai

    def error(status: int, message: str) -> openai.APIStatusError:
        response = httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))
        return openai.APIStatusError(message, response=response, body={"error": {"message": message}})

    validation = "1 validation error: response_format.type: Input should be 'text' or 'json_object'"
    assert is_refusal(error(500, validation))
    assert is_refusal(error(400, "tools are not supported"))
    assert is_refusal(error(422, "unprocessable"))
    assert is_refusal(NotImplementedError())
    # Transient or unrelated errors keep the retry policy.
    assert not is_refusal(error(500, "internal server error"))
    assert not is_refusal(error(503, "response_format busy"))
    assert not is_refusal(error(429, "rate limited"))
    assert not is_refusal(error(401, "bad key"))


async def test_output_that_never_fits_fails_with_a_clear_error():
    model = ScriptedChatModel(["no"] * 6)
    with pytest.raises(StructuredOutputError, match="agent 'a' did not return a valid Verdict"):
        await ainvoke_structured(model, [HumanMessage("q")], Verdict, agent="a")
