"""Where runs are kept: a LangGraph checkpointer and store chosen by URL.

- a file path or ``sqlite:///path`` — SQLite (the default: ``.graphswarm/runs.sqlite``
  in the current directory, or ``$GRAPHSWARM_DB``);
- ``postgresql://user@host:5432/db`` — PostgreSQL, for teams;
- ``memory`` — in-process only, for tests and notebooks.

Checkpoints are serialised with LangGraph's msgpack serializer with the pickle
fallback off, so loading a checkpoint never unpickles anything.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore

from graphswarm.errors import ConfigError, first_line
from graphswarm.models import redact_url

if TYPE_CHECKING:
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["DEFAULT_DB", "Backend", "Database", "Persistence", "open_database", "parse_db_url"]

DEFAULT_DB = ".graphswarm/runs.sqlite"

SERDE = JsonPlusSerializer(pickle_fallback=False)


class Backend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    MEMORY = "memory"


@dataclass(frozen=True)
class Database:
    """A parsed database URL."""

    backend: Backend
    location: str
    """A file path, a PostgreSQL conninfo URL, or "memory"."""

    @property
    def label(self) -> str:
        """How to name this database to a person, without any password."""
        if self.backend is Backend.POSTGRES:
            return redact_url(self.location)
        return self.location


def parse_db_url(url: str | None = None) -> Database:
    """Tell which backend a database URL names; raise `ConfigError` for anything else."""
    url = (url or os.environ.get("GRAPHSWARM_DB") or DEFAULT_DB).strip()
    if url in ("memory", "memory://", ":memory:"):
        return Database(Backend.MEMORY, "memory")
    if url.startswith(("postgresql://", "postgres://")):
        return Database(Backend.POSTGRES, url)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise ConfigError("sqlite URL needs a path: sqlite:///path/to/runs.sqlite")
        return Database(Backend.SQLITE, path)
    if "://" in url:
        raise ConfigError(
            f"unsupported database URL {redact_url(url)!r}: use a file path, sqlite:///path, "
            "postgresql://user@host:port/db or memory"
        )
    return Database(Backend.SQLITE, url)


@dataclass
class Persistence:
    """One open database: the checkpointer that holds runs' states and the store that
    holds their records."""

    database: Database
    checkpointer: BaseCheckpointSaver
    store: BaseStore

    def compile(
        self,
        graph: StateGraph[Any, Any, Any, Any],
        *,
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """`graph` compiled to keep its runs here, pausing before/after the nodes named."""
        return graph.compile(
            checkpointer=self.checkpointer,
            store=self.store,
            interrupt_before=list(interrupt_before) if interrupt_before else None,
            interrupt_after=list(interrupt_after) if interrupt_after else None,
        )


_memory: dict[str, tuple[BaseCheckpointSaver, BaseStore]] = {}


@asynccontextmanager
async def open_database(url: str | Database | None = None) -> AsyncIterator[Persistence]:
    """Open the checkpointer and the run-record store for a database URL."""
    database = url if isinstance(url, Database) else parse_db_url(url)
    async with AsyncExitStack() as stack:
        if database.backend is Backend.MEMORY:
            checkpointer, store = _memory_backend()
        elif database.backend is Backend.SQLITE:
            checkpointer, store = await _sqlite(stack, database.location)
        else:
            checkpointer, store = await _postgres(stack, database)
        yield Persistence(database, checkpointer, store)


def _memory_backend() -> tuple[BaseCheckpointSaver, BaseStore]:
    # One in-memory database per process, so that a run can be resumed in the same session.
    if "memory" not in _memory:
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        _memory["memory"] = (InMemorySaver(serde=SERDE), InMemoryStore())
    return _memory["memory"]


async def _sqlite(stack: AsyncExitStack, location: str) -> tuple[BaseCheckpointSaver, BaseStore]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    path = Path(location).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await stack.enter_async_context(aiosqlite.connect(str(path)))
        await conn.execute("PRAGMA journal_mode=WAL")
        store_conn = await stack.enter_async_context(aiosqlite.connect(str(path), isolation_level=None))
    except (OSError, aiosqlite.Error) as exc:
        raise ConfigError(f"cannot open SQLite database {location!r}: {exc}") from None
    checkpointer = AsyncSqliteSaver(conn, serde=SERDE)
    store = AsyncSqliteStore(store_conn)
    await checkpointer.setup()
    await store.setup()
    return checkpointer, store


async def _postgres(stack: AsyncExitStack, database: Database) -> tuple[BaseCheckpointSaver, BaseStore]:
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg.rows import DictRow, dict_row

    async def connect() -> psycopg.AsyncConnection[DictRow]:
        conn = await psycopg.AsyncConnection.connect(
            database.location, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10
        )
        return await stack.enter_async_context(conn)

    try:
        checkpointer = AsyncPostgresSaver(await connect(), serde=SERDE)
        store = AsyncPostgresStore(await connect())
        await checkpointer.setup()
        await store.setup()
    except psycopg.Error as exc:
        raise ConfigError(f"cannot use PostgreSQL database {database.label}: {first_line(exc)}") from None
    return checkpointer, store
