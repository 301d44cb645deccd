"""Where runs are kept: a LangGraph checkpointer and store chosen by URL.

- a file path or ``sqlite:///path`` — SQLite (the default: ``.graphswarm/runs.sqlite``
  in the current directory, or ``$GRAPHSWARM_DB``);
- ``postgresql://user@host:5432/db`` — PostgreSQL, for teams;
- ``memory`` — in-process only, for tests and notebooks.

Checkpoints are serialised with LangGraph's msgpack serializer with the pickle
fallback off, so loading a checkpoint never unpickles anything. In SQLite a checkpoint
keeps only what its step changed (`graphswarm.flat_sqlite`): each channel value once per
version, and a list (the call ledger, answers, a task list) as what was appended or
changed since its previous version, so a long run's file grows with the work done,
not with its square. The tables are created
(and migrated) by one process at a time, so that many processes can open a new database
at once; beside them, `graphswarm.leases` keeps which process executes which run.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
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
from graphswarm.leases import CREATE_LEASE_TABLE, MemoryLeaseTable, RunLeases, SqlLeaseTable
from graphswarm.models import redact_url

if TYPE_CHECKING:
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["DEFAULT_DB", "Backend", "Database", "Persistence", "open_database", "parse_db_url"]

DEFAULT_DB = ".graphswarm/runs.sqlite"

SERDE = JsonPlusSerializer(pickle_fallback=False)

_SETUP_LOCK_KEY = 0x67726170687377  # "graphsw": the PostgreSQL advisory lock held while setting up tables


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
    """One open database: the checkpointer that holds runs' states, the store that
    holds their records, and the leases saying which process executes which run."""

    database: Database
    checkpointer: BaseCheckpointSaver
    store: BaseStore
    leases: RunLeases

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


_memory: dict[str, tuple[BaseCheckpointSaver, BaseStore, RunLeases]] = {}


@asynccontextmanager
async def open_database(url: str | Database | None = None) -> AsyncIterator[Persistence]:
    """Open the checkpointer and the run-record store for a database URL."""
    database = url if isinstance(url, Database) else parse_db_url(url)
    async with AsyncExitStack() as stack:
        if database.backend is Backend.MEMORY:
            checkpointer, store, leases = _memory_backend()
        elif database.backend is Backend.SQLITE:
            checkpointer, store, leases = await _sqlite(stack, database.location)
        else:
            checkpointer, store, leases = await _postgres(stack, database)
        yield Persistence(database, checkpointer, store, leases)


def _memory_backend() -> tuple[BaseCheckpointSaver, BaseStore, RunLeases]:
    # One in-memory database per process, so that a run can be resumed in the same session.
    if "memory" not in _memory:
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        _memory["memory"] = (InMemorySaver(serde=SERDE), InMemoryStore(), RunLeases(MemoryLeaseTable()))
    return _memory["memory"]


SQLITE_BUSY_SECONDS = 60.0
"""How long a SQLite connection waits for another process's write before it fails."""
SQLITE_SETUP_ATTEMPTS = 5
"""Times a database's tables are set up when SQLite answers "locked" without waiting."""


async def _sqlite(stack: AsyncExitStack, location: str) -> tuple[BaseCheckpointSaver, BaseStore, RunLeases]:
    import aiosqlite
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    from graphswarm.flat_sqlite import FlatSqliteSaver

    path = Path(location).expanduser()
    if path.is_dir():
        raise ConfigError(f"cannot open SQLite database {location!r}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Fail here, not in aiosqlite's thread (which then reports to a closed event loop).
        sqlite3.connect(str(path)).close()
        # Wait for another process's write as long as a loaded machine may need, not 5 s.
        wait = SQLITE_BUSY_SECONDS
        conn = await stack.enter_async_context(aiosqlite.connect(str(path), timeout=wait))
        store_conn = await stack.enter_async_context(aiosqlite.connect(str(path), isolation_level=None, timeout=wait))
        lease_conn = await stack.enter_async_context(aiosqlite.connect(str(path), isolation_level=None, timeout=wait))
        checkpointer = FlatSqliteSaver(conn, serde=SERDE)
        store = AsyncSqliteStore(store_conn)
        # A finished task's writes are committed on their own, one after the other: without
        # an fsync each (synchronous=NORMAL), 40 parallel tasks are saved in milliseconds, not
        # a tenth of a second. A commit still outlives the process (SIGKILL), not a power cut.
        async with _setting_up(path.parent):
            for attempt in range(1, SQLITE_SETUP_ATTEMPTS + 1):
                try:
                    await conn.execute("PRAGMA synchronous=NORMAL")
                    await conn.execute("PRAGMA journal_mode=WAL")
                    await checkpointer.setup()
                    await store.setup()
                    await lease_conn.execute(CREATE_LEASE_TABLE)
                    break
                except sqlite3.OperationalError as exc:
                    # SQLite answers "locked" at once, without waiting, in a few cases (a
                    # process recovering or removing the WAL as another opens it, which the
                    # first statement meets); setting up again is harmless: every statement
                    # is a setting or "if not exists".
                    if "locked" not in str(exc) or attempt == SQLITE_SETUP_ATTEMPTS:
                        raise
                    for connection in (conn, store_conn, lease_conn):
                        await connection.rollback()
                    await asyncio.sleep(0.2 * attempt)
    except (OSError, sqlite3.Error) as exc:  # aiosqlite's errors are sqlite3's
        raise ConfigError(f"cannot open SQLite database {location!r}: {exc}") from None
    return checkpointer, store, RunLeases(SqlLeaseTable(lease_conn))


@asynccontextmanager
async def _setting_up(directory: Path) -> AsyncIterator[None]:
    """Hold an exclusive lock on the database's directory while its tables are set up:
    LangGraph's migrations fail when two processes run them at once. (The database file
    itself is not locked: closing a descriptor of it would drop SQLite's own locks.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        yield
        return

    fd = os.open(directory, os.O_RDONLY)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # which releases the lock


async def _postgres(stack: AsyncExitStack, database: Database) -> tuple[BaseCheckpointSaver, BaseStore, RunLeases]:
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
        lease_conn = await stack.enter_async_context(
            await psycopg.AsyncConnection.connect(database.location, autocommit=True, connect_timeout=10)
        )
        # One process at a time sets up the tables (LangGraph's migrations fail when run
        # twice at once); the lock is released with the session if this process dies.
        # Waiting is polling, not `pg_advisory_lock`: a session blocked in it is a running
        # statement, which the holder's CREATE INDEX CONCURRENTLY would wait for forever.
        while not await _try_setup_lock(lease_conn):
            await asyncio.sleep(0.1)
        try:
            await checkpointer.setup()
            await store.setup()
            await lease_conn.execute(CREATE_LEASE_TABLE)
        finally:
            await lease_conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
    except psycopg.Error as exc:
        raise ConfigError(f"cannot use PostgreSQL database {database.label}: {first_line(exc)}") from None
    return checkpointer, store, RunLeases(SqlLeaseTable(lease_conn, placeholder="%s"))


async def _try_setup_lock(conn: Any) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
    row = await cursor.fetchone()
    return bool(row and row[0])
