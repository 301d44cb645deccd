"""Agent specs and how model names resolve to chat models."""

from __future__ import annotations

import subprocess
import sys

import pytest
from langchain_openai import ChatOpenAI
from pydantic import ValidationError

from graphswarm import Agent, ConfigError, ModelConfigError, resolve_model
from graphswarm.agents import check_agents, make_workers
from graphswarm.models import (
    LOCAL,
    check_model,
    default_model_spec,
    estimate_cost,
    model_label,
    price_known,
    redact_url,
)
from graphswarm.testing import ScriptedChatModel


def test_agent_names_must_be_identifiers():
    with pytest.raises(ValidationError):
        Agent(name="two words")


def test_agent_names_must_be_unique():
    with pytest.raises(ConfigError, match="'a' appears twice"):
        check_agents([Agent(name="a"), Agent(name="a")])


def test_strengths_are_normalised():
    assert Agent(name="a", strengths=[" Python ", "", "SQL"]).strengths == ["python", "sql"]


def test_make_workers_gives_varied_strengths():
    workers = make_workers(6)
    assert len({w.name for w in workers}) == 6
    assert len({tuple(w.strengths) for w in workers}) == 5


def test_a_chat_model_instance_is_used_as_is():
    model = ScriptedChatModel([])
    assert resolve_model(model) is model


def test_a_base_url_gives_an_openai_compatible_client():
    model = resolve_model("llama3", base_url="http://127.0.0.1:11434/v1")
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "llama3" and model.openai_api_base == "http://127.0.0.1:11434/v1"
    assert model.max_retries == 0  # retries belong to the graph's RetryPolicy


def test_openai_models_need_a_key_from_the_environment(monkeypatch):
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert resolve_model("openai:gpt-4o-mini").model_name == "gpt-4o-mini"


def test_other_providers_resolve_through_langchain():
    with pytest.raises(ModelConfigError, match="anthropic"):
        resolve_model("anthropic:claude-sonnet")


def test_a_provider_is_checked_before_a_run_starts():
    with pytest.raises(ModelConfigError, match="unknown model provider 'nosuch'"):
        check_model("nosuch:model")
    with pytest.raises(ModelConfigError, match="needs its LangChain package: pip install langchain-anthropic"):
        check_model("anthropic:claude-sonnet")
    check_model("azure_openai:gpt-4o")  # known, and langchain-openai is installed


def test_a_bare_name_without_a_server_is_rejected():
    with pytest.raises(ModelConfigError, match="unknown model 'gpt-4o'"):
        resolve_model("gpt-4o")


def test_default_model_prefers_openai_then_local(monkeypatch):
    assert default_model_spec({"OPENAI_API_KEY": "k"}) == "openai:gpt-4o-mini"
    monkeypatch.setattr("graphswarm.local.local_model_available", lambda: True)
    assert default_model_spec({}, notice=False) == LOCAL
    monkeypatch.setattr("graphswarm.local.local_model_available", lambda: False)
    with pytest.raises(ModelConfigError, match="graphswarm\\[local\\]"):
        default_model_spec({})


def test_labels_and_urls_hold_no_secrets():
    assert redact_url("http://user:pw@host:8000/v1") == "http://user@host:8000/v1"
    label = model_label(resolve_model("m", base_url="http://u:secret@127.0.0.1:1/v1"))
    assert "secret" not in label and label.startswith("ChatOpenAI:m@")


def test_import_graphswarm_loads_no_heavy_module():
    code = (
        "import sys, graphswarm; "
        "heavy = [m for m in ('chromadb', 'llama_cpp', 'langchain_openai', 'openai', 'torch', 'langgraph') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_costs_come_from_genai_prices_offline_and_unknown_is_none(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    # genai-prices ships its price data: no network (the tests reach nothing beyond 127.0.0.1)
    mini = ChatOpenAI(model="gpt-4o-mini", api_key="k")
    assert estimate_cost(mini, 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)
    served = ChatOpenAI(model="gpt-4o-mini", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert estimate_cost(served, 1_000_000, 0) == pytest.approx(0.15)  # looked up by name
    assert estimate_cost(ChatOpenAI(model="my-finetune-xyz", api_key="k"), 10, 10) is None
    assert estimate_cost(ScriptedChatModel(["x"]), 10, 10) is None
    assert price_known("openai:gpt-4o-mini") and price_known("local") and price_known("ollama:llama3")
    assert not price_known("my-finetune-xyz", base_url="http://127.0.0.1:9/v1")


def test_the_bundled_local_model_costs_nothing():
    pytest.importorskip("langchain_community.chat_models.llamacpp")
    from langchain_community.chat_models import ChatLlamaCpp

    local = ChatLlamaCpp.model_construct(model_path="/x.gguf")
    assert estimate_cost(local, 1000, 1000) == 0.0
