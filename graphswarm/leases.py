"""Run ownership: one process at a time executes a run.

Before a run is started or resumed, its executor takes the run's lease in the run
database: a row naming its process (pid and host) and until when it holds the run. The
lease is taken atomically (inserted, or swapped for a stale one by compare-and-set on
its token), renewed while the run executes and released when it ends. A lease is stale
when it has expired (its holder stopped renewing it: killed on another host) or when its
holder was a process on this host that is gone (killed with SIGKILL: freed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from graphswarm.errors import UsageError

__all__ = ["LEASE_SECONDS", "Lease", "LeaseTable", "MemoryLeaseTable", "RunLeases", "RunOwnedError", "SqlLeaseTable"]

LEASE_SECONDS = 60.0
"""How long a lease lasts without being renewed; its holder renews it every third of that."""

LEASE_TABLE = "graphswarm_leases"
CREATE_LEASE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
    run_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)
"""


@dataclass(frozen=True)
class Lease:
    """Who executes a run, and until when unless they renew."""

    run_id: str
    token: str
    """Unique to one taking of the lease: renewing and releasing check it."""
    pid: int
    host: str
    expires_at: float

    def is_stale(self) -> bool:
        """Whether the holder is gone: the lease expired, or its process on this host died."""
        if self.expires_at < time.time():
            return True
        return self.host == socket.gethostname() and not process_alive(self.pid)


class RunOwnedError(UsageError):
    """Another process executes the run (it holds the run's lease)."""

    def __init__(self, lease: Lease) -> None:
        until = datetime.fromtimestamp(lease.expires_at).strftime("%H:%M:%S")
        super().__init__(
            f"run {lease.run_id} is being executed by process {lease.pid} on {lease.host} "
            f"(lease renewed until {until}); if that process is gone, take the run over with: "
            f"graphswarm resume {lease.run_id} --force"
        )
        self.lease = lease


class LeaseTable(Protocol):
    """Where a database keeps leases; every method is one atomic statement."""

    async def read(self, run_id: str) -> Lease | None: ...

    async def insert(self, lease: Lease) -> bool:
        """Add the lease; False when the run already has one."""
        ...

    async def swap(self, old_token: str, lease: Lease) -> bool:
        """Replace the lease holding `old_token`; False when it holds another token now."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Move the lease's expiry; False when it was taken over."""
        ...

    async def delete(self, lease: Lease) -> None:
        """Release the lease, unless it was taken over."""
        ...


class SqlLeaseTable:
    """Leases in a table of a SQLite (aiosqlite) or PostgreSQL (psycopg) database, on an
    autocommit connection of their own."""

    def __init__(self, conn: Any, *, placeholder: str = "?") -> None:
        self._conn = conn
        self._placeholder = placeholder

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        return await self._conn.execute(sql.replace("?", self._placeholder), params)

    async def read(self, run_id: str) -> Lease | None:
        cursor = await self._execute(
            f"SELECT run_id, token, pid, host, expires_at FROM {LEASE_TABLE} WHERE run_id = ?", (run_id,)
        )
        row = await cursor.fetchone()
        return Lease(*row) if row else None

    async def insert(self, lease: Lease) -> bool:
        cursor = await self._execute(
            f"INSERT INTO {LEASE_TABLE} (run_id, token, pid, host, expires_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO NOTHING",
            (lease.run_id, lease.token, lease.pid, lease.host, lease.expires_at),
        )
        return bool(cursor.rowcount == 1)

    async def swap(self, old_token: str, lease: Lease) -> bool:
        cursor = await self._execute(
            f"UPDATE {LEASE_TABLE} SET token = ?, pid = ?, host = ?, expires_at = ? WHERE run_id = ? AND token = ?",
            (lease.token, lease.pid, lease.host, lease.expires_at, lease.run_id, old_token),
        )
        return bool(cursor.rowcount == 1)

    async def renew(self, lease: Lease) -> bool:
        cursor = await self._execute(
            f"UPDATE {LEASE_TABLE} SET expires_at = ? WHERE run_id = ? AND token = ?",
            (lease.expires_at, lease.run_id, lease.token),
        )
        return bool(cursor.rowcount == 1)

    async def delete(self, lease: Lease) -> None:
        await self._execute(f"DELETE FROM {LEASE_TABLE} WHERE run_id = ? AND token = ?", (lease.run_id, lease.token))


class MemoryLeaseTable:
    """Leases of an in-memory database, which only its own process can see."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}

    async def read(self, run_id: str) -> Lease | None:
        return self._leases.get(run_id)

    async def insert(self, lease: Lease) -> bool:
        return self._leases.setdefault(lease.run_id, lease) is lease

    async def swap(self, old_token: str, lease: Lease) -> bool:
        held = self._leases.get(lease.run_id)
        if held is None or held.token != old_token:
            return False
        self._leases[lease.run_id] = lease
        return True

    async def renew(self, lease: Lease) -> bool:
        return await self.swap(lease.token, lease)

    async def delete(self, lease: Lease) -> None:
        if (held := self._leases.get(lease.run_id)) is not None and held.token == lease.token:
            del self._leases[lease.run_id]


class RunLeases:
    """Takes, renews and releases the leases of one database's runs."""

    def __init__(self, table: LeaseTable, *, seconds: float = LEASE_SECONDS) -> None:
        self._table = table
        self._seconds = seconds

    @contextlib.asynccontextmanager
    async def hold(self, run_id: str, *, force: bool = False) -> AsyncIterator[Lease]:
        """Own the run for the duration of the block, renewing the lease as time passes.

        Raises `RunOwnedError` when a live process holds it; `force` takes over any lease
        (for a holder that is gone but whose lease has not expired yet)."""
        lease = await self._take(run_id, force=force)
        renewing = asyncio.create_task(self._keep(lease))
        try:
            yield lease
        finally:
            renewing.cancel()
            await asyncio.shield(self._release(renewing, lease))

    async def _take(self, run_id: str, *, force: bool) -> Lease:
        mine = Lease(run_id, uuid.uuid4().hex, os.getpid(), socket.gethostname(), time.time() + self._seconds)
        while True:  # each turn takes the lease, refuses, or saw another process take it first
            held = await self._table.read(run_id)
            if held is None:
                if await self._table.insert(mine):
                    return mine
            elif not force and not held.is_stale():
                raise RunOwnedError(held)
            elif await self._table.swap(held.token, mine):
                return mine
            force = False  # a process that took the lease meanwhile is live

    async def _keep(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self._seconds / 3)
            lease = replace(lease, expires_at=time.time() + self._seconds)
            try:
                if not await self._table.renew(lease):
                    return  # taken over (resume --force): the new holder owns the run
            except Exception:  # a database hiccup: the lease lasts; try again later
                continue

    async def _release(self, renewing: asyncio.Task[None], lease: Lease) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(Exception):  # an expired lease frees the run anyway
            await self._table.delete(lease)


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this host."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
