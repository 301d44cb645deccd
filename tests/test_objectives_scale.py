"""Long objectives at scale: a size limit refused in one line, chunks embedded and stored in batches."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import sys
from pathlib import Path

import pytest

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.cli import main
from graphswarm.embeddings import resolve_embeddings
from graphswarm.errors import ConfigError, UnknownRunError
from graphswarm.memory import DEFAULT_BATCH_SIZE, SharedMemory, open_chroma
from graphswarm.objectives import (
    DEFAULT_MAX_OBJECTIVE_CHARS,
    MAX_OBJECTIVE_ENV,
    OBJECTIVE_KIND,
    ObjectiveSettings,
    prepare_objective,
    store_chunks,
)
from graphswarm.testing import KeywordEmbeddings

SMALL = ObjectiveSettings(max_inline_tokens=100, summary_tokens=50, chunk_tokens=60, overlap_tokens=10)
"""Small chunks, so that a few kilobytes make dozens of them."""


def spec_text(sentences: int) -> str:
    """A plain-English spec, the same every time: about 12 tokens a sentence."""
    topics = ["invoices", "harbour cranes", "storm warnings", "payroll", "customs seals", "dashboards"]
    lines = ["# Operations platform"]
    for i in range(sentences):
        lines.append(f"Rule {i}: every record about {topics[i % len(topics)]} is checked within {i % 24 + 1} hours.")
    return "\n".join(lines)


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class _Stdin(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def pipe_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(io.BytesIO(text.encode())))


# --- the size limit --------------------------------------------------------------------


def test_the_default_limit_is_a_million_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_OBJECTIVE_ENV, raising=False)
    assert ObjectiveSettings().max_chars == DEFAULT_MAX_OBJECTIVE_CHARS == 1_000_000


def test_an_objective_over_the_limit_is_refused_naming_the_limit_and_how_to_raise_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        prepare_objective("x" * 2001, run_dir=tmp_path, settings=ObjectiveSettings(max_chars=2000))
    assert str(refused.value) == (
        "the objective is 2,001 characters, over the limit of 2,000: raise it with --max-objective-chars N "
        "or GRAPHSWARM_MAX_OBJECTIVE_CHARS=N (ObjectiveSettings(max_chars=N) in Python)"
    )
    assert not (tmp_path / "objective.txt").exists()


def test_the_environment_variable_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_OBJECTIVE_ENV, "5_000")
    assert ObjectiveSettings().max_chars == 5000
    assert ObjectiveSettings(max_chars=9000).max_chars == 9000  # given beats the environment


@pytest.mark.parametrize(
    ("env", "options", "message"),
    [
        ("lots", {}, "GRAPHSWARM_MAX_OBJECTIVE_CHARS must be a whole number of characters, got 'lots'"),
        (None, {"max_chars": 10}, "the objective size limit must be at least 1000 characters (max_inline_tokens)"),
        (None, {"max_chars": "big"}, "objective setting max_chars: input should be a valid integer"),
    ],
)
def test_a_bad_limit_is_a_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch, env: str | None, options: dict, message: str
) -> None:
    if env is not None:
        monkeypatch.setenv(MAX_OBJECTIVE_ENV, env)
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as refused:
        ObjectiveSettings(**options)
    assert "\n" not in str(refused.value)


async def test_a_run_over_the_limit_saves_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    spec = SwarmSpec(architecture="hierarchical", agents=[Agent(name="w1")], base_url="http://127.0.0.1:9/v1")
    limit = ObjectiveSettings(max_chars=3000)
    async with Runner(db, memory="memory", embeddings=KeywordEmbeddings(), objectives=limit) as runner:
        with pytest.raises(ConfigError, match="over the limit of 3,000"):
            await runner.start(spec, spec_text(400), run_id="too-long")
        with pytest.raises(UnknownRunError):
            await runner.get("too-long")
    assert not (tmp_path / "objectives" / "too-long").exists()


def test_the_cli_refuses_a_long_objective_on_stdin_with_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipe_stdin(monkeypatch, "y" * 1_000_000)  # far beyond what a limit of 2000 reads
    code = main(["run", "hierarchical", "-", "--max-objective-chars", "2000", "--db", str(tmp_path / "r.sqlite")])
    line = one_line_error(code, capsys.readouterr().err)
    assert line == (
        "error: the objective is more than 2,000 characters, over the limit of 2,000: raise it with "
        "--max-objective-chars N or GRAPHSWARM_MAX_OBJECTIVE_CHARS=N (ObjectiveSettings(max_chars=N) in Python)"
    )


def test_the_cli_refuses_a_long_objective_file_set_by_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MAX_OBJECTIVE_ENV, "2000")
    objective = tmp_path / "objective.md"
    objective.write_text("é" * 2001)  # characters, not bytes: 4002 bytes
    code = main(["run", "hierarchical", "--file", str(objective), "--db", str(tmp_path / "r.sqlite")])
    assert "the objective is 2,001 characters, over the limit of 2,000" in one_line_error(code, capsys.readouterr().err)


def test_a_bad_limit_flag_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "hierarchical", "x", "--max-objective-chars", "5", "--db", str(tmp_path / "r.sqlite")])
    assert "the objective size limit must be at least 1000" in one_line_error(code, capsys.readouterr().err)


def test_a_higher_limit_accepts_the_objective_and_a_refusal_leaves_saved_runs_alone(
    fake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MAX_OBJECTIVE_ENV, "2000")
    db = str(tmp_path / "r.sqlite")
    objective = tmp_path / "objective.md"
    objective.write_text(spec_text(200))  # about 14,000 characters
    common = ["--agents", "1", "--base-url", fake.url, "--db", db, "--json"]
    args = ["run", "hierarchical", "--file", str(objective), *common]

    assert main([*args, "--run-id", "accepted", "--max-objective-chars", "20000"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["record"]["objective"] == objective.read_text().strip()

    one_line_error(main([*args, "--run-id", "refused"]), capsys.readouterr().err)
    assert main(["show", "accepted", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["record"] == saved["record"]
    assert main(["show", "refused", "--db", db]) == 2


# --- batches ---------------------------------------------------------------------------


def memory_on(fake, run_id: str, batch_size: int) -> SharedMemory:
    embeddings = resolve_embeddings(base_url=fake.url)
    return SharedMemory(open_chroma("memory"), run_id, embeddings=embeddings, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1, 8, DEFAULT_BATCH_SIZE])
async def test_chunks_reach_an_embeddings_server_one_request_per_batch(
    fake, tmp_path: Path, run_id: str, batch_size: int
) -> None:
    prepared = prepare_objective(spec_text(300), run_dir=tmp_path, settings=SMALL)
    chunks = len(prepared.chunks)
    assert chunks > 50
    memory = memory_on(fake, run_id, batch_size=batch_size)

    await store_chunks(memory, prepared)

    sizes = fake.stats()["embedding_inputs"]
    assert len(sizes) == fake.stats()["embeddings"] == math.ceil(chunks / batch_size)
    assert sizes == [batch_size] * (chunks // batch_size) + ([chunks % batch_size] if chunks % batch_size else [])
    assert memory.count() == chunks


async def test_a_run_embeds_its_long_objective_in_batches(fake, tmp_path: Path) -> None:
    spec = SwarmSpec(architecture="hierarchical", agents=[Agent(name="w1")], base_url=fake.url, model="m")
    async with Runner(str(tmp_path / "runs.sqlite"), memory="memory", objectives=SMALL) as runner:
        await runner.start(spec, spec_text(300), run_id="batched")
    chunks = len(prepare_objective(spec_text(300), run_dir=tmp_path, settings=SMALL).chunks)
    batches = math.ceil(chunks / DEFAULT_BATCH_SIZE)
    sizes = fake.stats()["embedding_inputs"]
    # First the chunks, a batch per request; then one query per task.
    assert sizes[:batches] == [DEFAULT_BATCH_SIZE] * (batches - 1) + [chunks - DEFAULT_BATCH_SIZE * (batches - 1)]
    assert set(sizes[batches:]) <= {1}


def note_id(run_id: str, task_id: str, text: str) -> str:
    """How a note's id has always been made: a hash of who posted what, where."""
    key = json.dumps([run_id, "objective", OBJECTIVE_KIND, 0, task_id, text], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def test_batches_store_the_same_notes_as_posting_each_chunk(tmp_path: Path, run_id: str) -> None:
    prepared = prepare_objective(spec_text(300), run_dir=tmp_path, settings=SMALL)
    client = open_chroma("memory")
    one_by_one = SharedMemory(client, run_id, embeddings=KeywordEmbeddings())
    singles = [
        one_by_one.post(chunk["text"], agent="objective", kind=OBJECTIVE_KIND, task_id=chunk["id"])
        for chunk in prepared.chunks
    ]
    client.delete_collection(one_by_one.name)
    batched = SharedMemory(client, run_id, embeddings=KeywordEmbeddings(), batch_size=16)

    ids = await store_chunks(batched, prepared)

    assert ids == singles == [note_id(run_id, c["id"], c["text"]) for c in prepared.chunks]
    assert batched.count() == len(prepared.chunks)
    notes = batched.get(ids)
    assert [n["task_id"] for n in notes] == [f"chunk-{i:03d}" for i in range(len(prepared.chunks))]
    assert [n["text"] for n in notes] == [c["text"] for c in prepared.chunks]
    assert {(n["agent"], n["kind"], n["round"], n["run_id"]) for n in notes} == {
        ("objective", OBJECTIVE_KIND, 0, run_id)
    }


async def test_storing_again_or_after_a_cancel_keeps_each_chunk_once(tmp_path: Path, run_id: str) -> None:
    prepared = prepare_objective(spec_text(300), run_dir=tmp_path, settings=SMALL)
    memory = SharedMemory(open_chroma("memory"), run_id, embeddings=KeywordEmbeddings(), batch_size=4)
    loop = asyncio.get_running_loop()
    second_batch = asyncio.Event()
    embed = memory.embeddings.embed_documents
    batches = 0

    def embed_and_count(texts: list[str]) -> list[list[float]]:
        nonlocal batches
        batches += 1
        if batches == 2:  # the first batch is written
            loop.call_soon_threadsafe(second_batch.set)
        return embed(texts)

    memory.embeddings.embed_documents = embed_and_count  # type: ignore[method-assign]
    storing = asyncio.create_task(store_chunks(memory, prepared))
    await second_batch.wait()
    storing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await storing
    assert 4 <= memory.count() <= 8 < len(prepared.chunks)  # stopped after the batch in hand

    assert await store_chunks(memory, prepared) == await store_chunks(memory, prepared)
    assert memory.count() == len(prepared.chunks)


def test_batches_larger_than_chromas_limit_are_written_in_parts(monkeypatch: pytest.MonkeyPatch, run_id: str) -> None:
    client = open_chroma("memory")
    monkeypatch.setattr(client, "get_max_batch_size", lambda: 3)
    embeddings = KeywordEmbeddings()
    memory = SharedMemory(client, run_id, embeddings=embeddings, batch_size=10)
    texts = [f"note {word}" for word in ["apple", "bread", "cheese", "dough", "eggs", "flour", "grain"]]

    ids = memory.post_many(texts, agent="a", task_ids=[f"t{i}" for i in range(7)])

    assert embeddings.calls == [texts]  # one embedding call for the batch
    assert [n["text"] for n in memory.get(ids)] == texts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_id": "t", "task_ids": ["a", "b"]}, "one task_id for all texts or task_ids, one per text, not both"),
        ({"task_ids": ["a"]}, r"task_ids must be a list of one task id per text \(2\)"),
    ],
)
def test_task_ids_must_match_the_texts(options: dict, message: str) -> None:
    memory = SharedMemory(open_chroma("memory"), "ids", embeddings=KeywordEmbeddings())
    with pytest.raises(ConfigError, match=message):
        memory.post_many(["one", "two"], agent="a", **options)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_a_bad_batch_size_is_a_config_error(size: object) -> None:
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        SharedMemory(open_chroma("memory"), "bad", embeddings=KeywordEmbeddings(), batch_size=size)  # type: ignore[arg-type]
