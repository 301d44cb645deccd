"""The swarm's shared memory: notes that agents post and find again by meaning, in Chroma.

Each run has its own collection (``graphswarm-run-<run_id>``), so runs never read each
other's notes; ``shared=True`` uses one collection for every run (``graphswarm-shared``),
each note tagged with its run id.

Chroma never embeds anything here: vectors come from the LangChain `Embeddings` given
to `SharedMemory` (Chroma's own default embedding function downloads a model at run
time). Note ids hash what the note is, and notes are written with ``upsert``, so a
resumed run that posts a note again does not duplicate it.

Many notes at once (`post_many`, a long objective's chunks) are embedded and written
`batch_size` at a time: one embeddings call per batch (one request to an embeddings
server, one forward pass of MiniLM), and one Chroma write, split further only where
Chroma's own maximum batch is smaller.

Example:
    >>> from graphswarm.memory import SharedMemory, open_chroma
    >>> from graphswarm.testing import KeywordEmbeddings
    >>> memory = SharedMemory(open_chroma("memory"), "doc-example", embeddings=KeywordEmbeddings())
    >>> _ = memory.post("Sourdough needs a starter fed daily", agent="baker")
    >>> memory.query("how is sourdough starter fed?", k=1)[0]["agent"]
    'baker'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NotRequired
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings
from typing_extensions import TypedDict

from graphswarm.checkpoint import Backend, parse_db_url
from graphswarm.embeddings import resolve_embeddings
from graphswarm.errors import ConfigError, first_line
from graphswarm.models import redact_url

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = ["Note", "SharedMemory", "open_chroma", "chroma_path", "collection_name", "SHARED_COLLECTION"]

SHARED_COLLECTION = "graphswarm-shared"
RUN_COLLECTION_PREFIX = "graphswarm-run-"
DEFAULT_CHROMA_DIR = ".graphswarm/chroma"
HEARTBEAT_TIMEOUT = 5.0
"""Seconds to wait for a Chroma server's heartbeat (its own client waits forever)."""
DEFAULT_BATCH_SIZE = 64
"""Notes embedded in one call by `post_many`: MiniLM's own batch, so one forward pass each."""

MetadataValue = str | int | float | bool
_RESERVED = frozenset({"agent", "kind", "round", "task_id", "run_id"})


class Note(TypedDict):
    """One note in shared memory."""

    id: str
    """Hash of (run_id, agent, kind, round, task_id, text): posting it again changes nothing."""
    text: str
    agent: str
    """The agent that posted it."""
    kind: str
    """What it is: "note", "finding", "chunk", ... (free text, for filtering)."""
    round: int
    task_id: str | None
    run_id: str
    metadata: dict[str, MetadataValue]
    """The caller's extra metadata."""
    distance: NotRequired[float | None]
    """Cosine distance to the query (0 = same direction); only on `query` results."""


def chroma_path(db: str | None = None) -> Path:
    """Where the embedded Chroma store lives: beside a SQLite run database, else .graphswarm/chroma."""
    database = parse_db_url(db)
    if database.backend is Backend.SQLITE:
        return Path(database.location).expanduser().parent / "chroma"
    return Path(DEFAULT_CHROMA_DIR)


def open_chroma(url: str | None = None, *, db: str | None = None) -> ClientAPI:
    """A Chroma client: embedded beside the run database (None), a server (http://host:port) or in memory."""
    import chromadb
    from chromadb.config import Settings

    # Same settings for every client: Chroma refuses a second client on the same store
    # with different settings. Telemetry off: runs must not phone home.
    settings = Settings(anonymized_telemetry=False)
    spec = (url or "").strip()
    try:
        if not spec:
            path = chroma_path(db)
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        if spec in ("memory", "ephemeral"):
            return chromadb.EphemeralClient(settings=settings)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot open Chroma store {spec or str(chroma_path(db))!r}: {first_line(exc)}") from None
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"unsupported Chroma URL {redact_url(spec)!r}: use http://host:port, memory, "
            "or nothing for an embedded store beside the run database"
        )
    return _http_client(spec, settings)


def _http_client(url: str, settings: Any) -> ClientAPI:
    import chromadb
    import httpx

    parts = urlsplit(url)
    ssl = parts.scheme == "https"
    try:
        port = parts.port or (443 if ssl else 8000)
        # Ask first, with a timeout: Chroma's HttpClient has none, so a dead host would hang it.
        httpx.get(f"{parts.scheme}://{parts.netloc}/api/v2/heartbeat", timeout=HEARTBEAT_TIMEOUT).raise_for_status()
        return chromadb.HttpClient(host=parts.hostname or "", port=port, ssl=ssl, settings=settings)
    except Exception as exc:
        raise ConfigError(f"cannot reach Chroma at {redact_url(url)}: {first_line(exc)}") from None


def collection_name(run_id: str) -> str:
    """The collection of one run, within Chroma's rules (3-512 of [a-zA-Z0-9._-], alphanumeric ends)."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-_")[:64]
    if clean != run_id:
        # Two run ids that clean to the same text must still get two collections.
        clean = f"{clean}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}".strip("-")
    return RUN_COLLECTION_PREFIX + clean


class SharedMemory:
    """Notes shared by the agents of a run, found again by meaning; see the module docstring."""

    def __init__(
        self,
        client: ClientAPI,
        run_id: str,
        *,
        embeddings: Embeddings | str | None = None,
        shared: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigError(f"shared memory needs a run id, got {run_id!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.run_id = run_id
        self.shared = shared
        self.batch_size = batch_size
        """Most notes `post_many` embeds in one call and writes at once."""
        self._client = client
        self._max_write: int | None = None
        self.embeddings = resolve_embeddings(embeddings)
        self.name = SHARED_COLLECTION if shared else collection_name(run_id)
        # embedding_function=None: Chroma's default one would download a model.
        self._collection = client.get_or_create_collection(
            self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )

    def post(
        self,
        text: str,
        *,
        agent: str,
        kind: str = "note",
        round: int = 0,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Store one note and return its id; posting the same note again changes nothing."""
        return self.post_many([text], agent=agent, kind=kind, round=round, task_id=task_id, metadata=metadata)[0]

    def post_many(
        self,
        texts: list[str],
        *,
        agent: str,
        kind: str = "note",
        round: int = 0,
        task_id: str | None = None,
        task_ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Store many notes (chunks of one document, say), `batch_size` per embedding call;
        their ids in order. `task_ids` gives each text its own task id, instead of one
        `task_id` for all. A note given twice is stored once."""
        ids, batches = self._batches(texts, agent, kind, round, task_id, task_ids, metadata)
        for batch in batches:
            self._write(batch)
        return ids

    def _batches(
        self,
        texts: list[str],
        agent: str,
        kind: str,
        round: int,
        task_id: str | None,
        task_ids: Sequence[str] | None,
        metadata: dict[str, Any] | None,
    ) -> tuple[list[str], list[list[_Pending]]]:
        """The notes' ids, in order, and the distinct notes in batches of `batch_size`."""
        if isinstance(texts, str) or not texts:
            raise ConfigError("post_many needs a non-empty list of texts")
        for text in texts:
            _check_text(text)
        if task_ids is None:
            each: Sequence[str | None] = [task_id] * len(texts)
        elif task_id is not None:
            raise ConfigError("give post_many one task_id for all texts or task_ids, one per text, not both")
        elif isinstance(task_ids, str) or len(task_ids) != len(texts):
            raise ConfigError(f"task_ids must be a list of one task id per text ({len(texts)}), got {task_ids!r:.80}")
        else:
            each = task_ids
        notes: dict[str, _Pending] = {}  # Chroma rejects a batch that repeats an id
        ids = []
        for text, one_task in zip(texts, each):
            note_id = self._note_id(agent, kind, round, one_task, text)
            ids.append(note_id)
            if note_id not in notes:
                notes[note_id] = _Pending(note_id, text, self._metadata(agent, kind, round, one_task, metadata))
        pending = list(notes.values())
        return ids, [pending[i : i + self.batch_size] for i in range(0, len(pending), self.batch_size)]

    def _write(self, batch: list[_Pending]) -> None:
        """Embed one batch of notes in one call and upsert it (in parts within Chroma's limit)."""
        vectors = self.embeddings.embed_documents([note.text for note in batch])
        if self._max_write is None:
            self._max_write = max(1, self._client.get_max_batch_size())
        for start in range(0, len(batch), self._max_write):
            part = batch[start : start + self._max_write]
            self._chroma(
                self._collection.upsert,
                ids=[note.id for note in part],
                documents=[note.text for note in part],
                embeddings=vectors[start : start + self._max_write],
                metadatas=[note.metadata for note in part],
            )

    def query(
        self,
        text: str,
        *,
        k: int = 5,
        where: dict[str, Any] | None = None,
        kind: str | None = None,
        agent: str | None = None,
        exclude_agent: str | None = None,
        run_id: str | None = None,
    ) -> list[Note]:
        """The `k` notes closest in meaning to `text`, closest first, among those the filters keep.

        `where` is a Chroma metadata filter; `run_id` narrows a shared memory to one run.
        """
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        _check_text(text)
        clauses = [where] if where else []
        clauses += [{key: value} for key, value in (("kind", kind), ("agent", agent), ("run_id", run_id)) if value]
        if exclude_agent:
            clauses.append({"agent": {"$ne": exclude_agent}})
        if self.count() == 0:
            return []  # nothing to find: skip the embedding call
        found = self._chroma(
            self._collection.query,
            query_embeddings=[self.embeddings.embed_query(text)],
            n_results=k,
            # Chroma's $and wants at least two clauses.
            where=(clauses[0] if len(clauses) == 1 else {"$and": clauses}) if clauses else None,
            include=["documents", "metadatas", "distances"],
        )
        rows = zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0])
        return [_note(id_, doc, meta, distance) for id_, doc, meta, distance in rows]

    def get(self, ids: list[str]) -> list[Note]:
        """The notes with these ids, in the order asked; unknown ids are left out."""
        if not ids:
            return []
        # Chroma rejects a repeated id, even in a read.
        found = self._chroma(self._collection.get, ids=list(dict.fromkeys(ids)), include=["documents", "metadatas"])
        by_id = {
            id_: _note(id_, doc, meta) for id_, doc, meta in zip(found["ids"], found["documents"], found["metadatas"])
        }
        return [by_id[id_] for id_ in ids if id_ in by_id]

    def count(self) -> int:
        """How many notes this memory holds (every run's, when shared)."""
        return self._chroma(self._collection.count)

    async def apost(self, text: str, **kwargs: Any) -> str:
        """`post` in a thread, so the event loop keeps running while it embeds and writes."""
        return await asyncio.to_thread(self.post, text, **kwargs)

    async def apost_many(
        self,
        texts: list[str],
        *,
        agent: str,
        kind: str = "note",
        round: int = 0,
        task_id: str | None = None,
        task_ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """`post_many`, each batch in a thread: the event loop keeps running, and a
        cancelled caller stops after the batch being written."""
        ids, batches = self._batches(texts, agent, kind, round, task_id, task_ids, metadata)
        for batch in batches:
            await asyncio.to_thread(self._write, batch)
        return ids

    async def aquery(self, text: str, **kwargs: Any) -> list[Note]:
        """`query` in a thread."""
        return await asyncio.to_thread(self.query, text, **kwargs)

    def _note_id(self, agent: str, kind: str, round: int, task_id: str | None, text: str) -> str:
        key = json.dumps([self.run_id, agent, kind, round, task_id or "", text], ensure_ascii=False)
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _metadata(
        self, agent: str, kind: str, round: int, task_id: str | None, extra: dict[str, Any] | None
    ) -> dict[str, MetadataValue]:
        if not isinstance(agent, str) or not agent:
            raise ConfigError(f"a note needs the name of the agent posting it, got {agent!r}")
        if not isinstance(round, int) or isinstance(round, bool):
            raise ConfigError(f"round must be an integer, got {round!r}")
        clash = sorted(_RESERVED & set(extra or {}))
        if clash:
            raise ConfigError(f"metadata key {clash[0]!r} is set by graphswarm: pass it as its own argument")
        values: dict[str, MetadataValue] = {}
        for key, value in (extra or {}).items():
            if value is None:
                continue  # Chroma cannot filter on None; a missing key says the same
            if not isinstance(value, str | int | float | bool):
                raise ConfigError(f"metadata {key!r} must be a str, int, float or bool, got {type(value).__name__}")
            values[key] = value
        # task_id "" for none: Chroma metadata cannot hold None and filters need a value.
        return values | {"agent": agent, "kind": kind, "round": round, "task_id": task_id or "", "run_id": self.run_id}

    def _chroma(self, method: Any, **kwargs: Any) -> Any:
        from chromadb.errors import InvalidArgumentError

        try:
            return method(**kwargs)
        except InvalidArgumentError as exc:
            if "dimension" not in str(exc):
                raise
            raise ConfigError(
                f"Chroma collection {self.name!r} was filled with other embeddings ({first_line(exc)}): "
                "use the same embeddings as before, or another run id"
            ) from None


class _Pending(NamedTuple):
    """A note on its way into Chroma."""

    id: str
    text: str
    metadata: dict[str, MetadataValue]


def _note(id_: str, text: str | None, meta: Any, distance: float | None = None) -> Note:
    meta = dict(meta or {})
    note = Note(
        id=id_,
        text=text or "",
        agent=str(meta.pop("agent", "")),
        kind=str(meta.pop("kind", "")),
        round=int(meta.pop("round", 0)),
        task_id=str(meta.pop("task_id", "")) or None,
        run_id=str(meta.pop("run_id", "")),
        metadata=meta,
    )
    if distance is not None:
        note["distance"] = float(distance)
    return note


def _check_text(text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a note needs non-empty text, got {text!r}")
