"""SQLite checkpoints whose size follows the work of their step, not the size of the state.

LangGraph's `AsyncSqliteSaver` stores each checkpoint as one blob holding every channel's
value, so a run's file grows with (steps x state): a call ledger or task list that grows
by a little at every step is written whole again at every step. `FlatSqliteSaver` keeps
the same tables and API and stores a checkpoint's channel values beside it, in
`graphswarm_channel_values`:

- a value once per channel version (a checkpoint whose step did not change a channel
  refers to the version an earlier checkpoint stored, as LangGraph's PostgreSQL saver does);
- a list as a delta from the version this saver stored before it: the items appended and
  those replaced. An append-only ledger then costs each step what the step appended;
- and when the items appended are exactly what the step's tasks wrote (a reducer such as
  `operator.add` concatenating their writes, which the `writes` table keeps anyway), the
  delta names those writes and their order instead of holding the items a second time.

Reading puts the values back, so `aget_tuple` and `alist` return whole checkpoints: the
graph, `Runner.history`, forks and edits see what they always saw (LangGraph 1.2's beta
`DeltaChannel` also keeps a channel as its writes, but only channels declared with it,
and its values need the graph to be read back; graphswarm reads runs without theirs).
The snapshots such a channel takes stay inside the checkpoint, where LangGraph looks. Checkpoints written by
the plain saver (values inside the checkpoint) are read as they are, and a run of such a
database resumed by this saver carries on with it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["FlatSqliteSaver", "VALUES_TABLE"]

VALUES_TABLE = "graphswarm_channel_values"
"""The table of channel values by (thread, namespace, channel, version)."""

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {VALUES_TABLE} (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    base TEXT,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
) WITHOUT ROWID
"""
# `base`: NULL when `value` is the whole value; else the version this delta applies to.
# `checkpoint_id`: the checkpoint that stored it (for `astored_sizes`).

_COLUMNS = "thread_id, checkpoint_ns, channel, version, checkpoint_id, base, type, value"
_INSERT = f"INSERT OR REPLACE INTO {VALUES_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_IF_NEW = f"INSERT OR IGNORE INTO {VALUES_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# A delta is only stored while its base is there (it always is, unless the thread was
# deleted meanwhile by another process): otherwise the whole value is.
_INSERT_DELTA = f"""
INSERT OR REPLACE INTO {VALUES_TABLE} ({_COLUMNS})
SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (
    SELECT 1 FROM {VALUES_TABLE} WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?
)
"""
# The rows that make up channel versions: each version asked for, then the bases of deltas.
_CHAINS = f"""
WITH RECURSIVE chain(channel, version, base, type, value) AS (
    SELECT channel, version, base, type, value FROM {VALUES_TABLE}
    WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND (channel, version) IN (
        SELECT json_extract(wanted.value, '$[0]'), json_extract(wanted.value, '$[1]') FROM json_each(?3) AS wanted
    )
    UNION
    SELECT v.channel, v.version, v.base, v.type, v.value FROM {VALUES_TABLE} AS v JOIN chain AS c
    ON v.thread_id = ?1 AND v.checkpoint_ns = ?2 AND v.channel = c.channel AND v.version = c.base
)
SELECT channel, version, base, type, value FROM chain
"""
_STEP_WRITES = """
SELECT task_id, idx, type, value FROM writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND channel = ?
ORDER BY task_id, idx
"""
_STEP_WRITE_KEYS = """
SELECT task_id, idx FROM writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND channel = ?
ORDER BY task_id, idx
"""
_Memo = dict[tuple[str, ...], Any]
"""Rows read for one `aget_tuple` or `alist`: (thread, namespace, channel, version) -> `_Row`,
and ("writes", thread, namespace, checkpoint id, channel) -> the lists the step wrote."""
_THREADS_CACHED = 16
"""Threads whose latest stored values this saver keeps in memory as bases for deltas."""


@dataclass
class _Stored:
    """What this saver knows it stored for one thread and namespace."""

    versions: dict[str, str] = field(default_factory=dict)
    """channel -> the version whose value is in the table."""
    lists: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    """channel -> (version, value) of list channels: the base of the next delta."""


@dataclass
class _Delta:
    """A list channel's value to store as a delta."""

    row: tuple[Any, ...]
    """thread, namespace, channel, version, checkpoint id."""
    base: str
    changes: dict[str, Any]
    written: list[tuple[str, int]] | None
    """The step's writes (task id, index) whose lists, concatenated, are `changes`' tail."""
    value: Any
    """The whole value, stored instead if the base is gone."""


@dataclass
class _Row:
    base: str | None
    type: str
    blob: bytes
    loaded: Any = None
    is_loaded: bool = False


class FlatSqliteSaver(AsyncSqliteSaver):
    """`AsyncSqliteSaver` storing each checkpoint's changed channels only, lists as deltas
    (see the module docstring). Same constructor, tables and methods."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values_ready = False
        self._stored: OrderedDict[tuple[str, str], _Stored] = OrderedDict()
        # (thread, namespace, checkpoint id) -> channel -> [(task id, idx, list written)]:
        # the list writes of the tasks of the step after that checkpoint, saved by this process.
        self._step_writes: OrderedDict[tuple[str, str, str], dict[str, list[tuple[str, int, list[Any]]]]] = (
            OrderedDict()
        )

    async def setup(self) -> None:
        await super().setup()
        if self._values_ready:
            return
        async with self.lock:
            if not self._values_ready:
                await self.conn.execute(_CREATE)
                await self.conn.commit()
                self._values_ready = True

    # -- writing ------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        await self.setup()
        thread_id = str(config["configurable"]["thread_id"])
        namespace = str(config["configurable"].get("checkpoint_ns", ""))
        stored = self._stored_for(thread_id, namespace)
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        key = (thread_id, namespace)
        parent = config["configurable"].get("checkpoint_id")
        step_writes = self._step_writes.pop((thread_id, namespace, str(parent)), {}) if parent else {}
        whole: list[tuple[Any, ...]] = []
        unknown: list[tuple[Any, ...]] = []
        deltas: list[_Delta] = []
        inline = {ch: v for ch, v in values.items() if type(v).__name__ == _DELTA_SNAPSHOT}
        for channel, value in values.items():
            version = str(versions.get(channel, ""))
            if channel in inline:
                continue
            if channel not in new_versions and stored.versions.get(channel) == version:
                continue  # stored with an earlier checkpoint
            row = (*key, channel, version, checkpoint["id"])
            delta = _delta(stored.lists.get(channel), value)
            if delta is not None:
                base, changes = delta
                written = _written_order(changes, step_writes.get(channel))
                deltas.append(_Delta(row, base, changes, written, value))
            elif channel in new_versions:
                whole.append((*row, None, *self.serde.dumps_typed(value)))
            else:
                # Not changed by this step, but not known to be stored either (this process
                # did not store it: a run resumed here, perhaps from a database written by
                # the plain saver): stored now unless it is there already.
                unknown.append((*row, None, *self.serde.dumps_typed(value)))
            stored.versions[channel] = version
            if isinstance(value, list):
                stored.lists[channel] = (version, list(value))
            else:
                stored.lists.pop(channel, None)
        for channel in new_versions:
            if channel not in values:  # emptied
                stored.versions.pop(channel, None)
                stored.lists.pop(channel, None)
        async with self.lock:
            for item in deltas:
                changes = item.changes
                if item.written is not None:
                    order = await self._rows_of(thread_id, namespace, str(parent), item.row[2], item.written)
                    if order is not None:
                        changes = {"changed": [], "tail": [], "writes": str(parent), "order": order}
                if item.base == _EMPTY:
                    # A channel's first value: worth a row of its own only if it names writes.
                    encoded = changes if "writes" in changes else None
                    whole.append(
                        (*item.row, _EMPTY if encoded else None, *self.serde.dumps_typed(encoded or item.value))
                    )
                    continue
                params = (*item.row, item.base, *self.serde.dumps_typed(changes), *key, item.row[2], item.base)
                cursor = await self.conn.execute(_INSERT_DELTA, params)
                if cursor.rowcount == 0:
                    whole.append((*item.row, None, *self.serde.dumps_typed(item.value)))
            if whole:
                await self.conn.executemany(_INSERT, whole)
            if unknown:
                await self.conn.executemany(_INSERT_IF_NEW, unknown)
        # The checkpoint itself keeps no values; the plain saver's aput commits the lot.
        return await super().aput(config, {**checkpoint, "channel_values": inline}, metadata, new_versions)

    async def _rows_of(
        self, thread_id: str, namespace: str, checkpoint_id: str, channel: str, written: list[tuple[str, int]]
    ) -> list[int] | None:
        """Where the writes `written` (task id, index) are among the rows the `writes`
        table returns for the step after `checkpoint_id` and `channel`; None if one is not there."""
        params = (thread_id, namespace, checkpoint_id, channel)
        async with self.conn.execute(_STEP_WRITE_KEYS, params) as cursor:
            where = {(str(task_id), int(idx)): i async for i, (task_id, idx) in _numbered(cursor)}
        rows = [where.get(w) for w in written]
        return None if None in rows else [r for r in rows if r is not None]

    async def aput_writes(self, config: RunnableConfig, writes: Any, task_id: str, task_path: str = "") -> None:
        # Noted before they are saved: LangGraph may put the step's checkpoint meanwhile
        # (it then names only the writes it finds saved, `_rows_of`).
        configurable = config["configurable"]
        key = (
            str(configurable["thread_id"]),
            str(configurable.get("checkpoint_ns", "")),
            str(configurable["checkpoint_id"]),
        )
        by_channel = self._step_writes.get(key)
        if by_channel is None:
            by_channel = self._step_writes[key] = {}
            while len(self._step_writes) > _THREADS_CACHED:
                self._step_writes.popitem(last=False)
        for idx, (channel, value) in enumerate(writes):
            if channel in WRITES_IDX_MAP or (isinstance(value, list) and not value):
                continue
            by_channel.setdefault(channel, []).append((task_id, idx, value if isinstance(value, list) else [value]))
        await super().aput_writes(config, writes, task_id)

    def _stored_for(self, thread_id: str, namespace: str) -> _Stored:
        key = (thread_id, namespace)
        stored = self._stored.get(key)
        if stored is None:
            stored = self._stored[key] = _Stored()
            while len(self._stored) > _THREADS_CACHED:
                self._stored.popitem(last=False)
        self._stored.move_to_end(key)
        return stored

    async def adelete_thread(self, thread_id: str) -> None:
        await super().adelete_thread(thread_id)
        for key in [k for k in self._stored if k[0] == str(thread_id)]:
            del self._stored[key]
        async with self.lock:
            await self.conn.execute(f"DELETE FROM {VALUES_TABLE} WHERE thread_id = ?", (str(thread_id),))
            await self.conn.commit()

    # -- reading ------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        saved = await super().aget_tuple(config)
        if saved is None:
            return None
        return await self._with_values(saved, {}, remember=True)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        rows: _Memo = {}  # shared by the checkpoints listed
        async for saved in super().alist(config, filter=filter, before=before, limit=limit):
            yield await self._with_values(saved, rows, remember=False)

    async def _with_values(self, saved: CheckpointTuple, rows: _Memo, *, remember: bool) -> CheckpointTuple:
        """`saved` with the values of its channels put back into its checkpoint."""
        checkpoint = saved.checkpoint
        inline = checkpoint["channel_values"]
        thread_id = str(saved.config["configurable"]["thread_id"])
        namespace = str(saved.config["configurable"].get("checkpoint_ns", ""))
        wanted = {ch: str(v) for ch, v in checkpoint["channel_versions"].items() if ch not in inline}
        if not wanted:
            return saved
        await self._fetch(thread_id, namespace, wanted, rows)
        values = dict(inline)
        for channel, version in wanted.items():
            found = await self._resolve(thread_id, namespace, channel, version, rows)
            if found is not _ABSENT:
                values[channel] = found
        checkpoint["channel_values"] = values
        if remember:
            # What was read is stored: a run resumed from it stores deltas from it.
            stored = self._stored_for(thread_id, namespace)
            for channel, value in values.items():
                if channel in inline:
                    continue
                stored.versions[channel] = wanted[channel]
                if isinstance(value, list):
                    stored.lists[channel] = (wanted[channel], list(value))
        return saved

    async def _fetch(self, thread_id: str, namespace: str, wanted: dict[str, str], rows: _Memo) -> None:
        missing = [[ch, v] for ch, v in wanted.items() if (thread_id, namespace, ch, v) not in rows]
        if not missing:
            return
        async with self.conn.execute(_CHAINS, (thread_id, namespace, json.dumps(missing))) as cursor:
            async for channel, version, base, type_, blob in cursor:
                rows[(thread_id, namespace, channel, version)] = _Row(base, type_, blob)

    async def _resolve(self, thread_id: str, namespace: str, channel: str, version: str, rows: _Memo) -> Any:
        """The value of `channel` at `version` from its rows: the whole value, or the
        deltas from the last whole one applied in order. `_ABSENT` when the channel
        holds nothing at that version."""
        chain: list[_Row] = []
        start: Any = _ABSENT
        row = rows.get((thread_id, namespace, channel, version))
        while row is not None:
            if row.base is None:
                start = self._load(row)
                break
            chain.append(row)
            if row.base == _EMPTY:
                start = []
                break
            row = rows.get((thread_id, namespace, channel, row.base))
        if start is _ABSENT:
            if chain:
                raise RuntimeError(f"checkpoint value of {channel!r} in thread {thread_id!r} is missing its base")
            return _ABSENT
        if not chain:
            return start
        value = list(start)
        for delta in reversed(chain):
            changes = self._load(delta)
            for index, item in changes["changed"]:
                value[index] = item
            value.extend(changes["tail"])
            if "writes" in changes:
                written = await self._written(thread_id, namespace, changes["writes"], channel, rows)
                for index in changes["order"]:
                    # As a Topic channel takes writes: a list's items, or the one value.
                    if isinstance(written[index], list):
                        value.extend(written[index])
                    else:
                        value.append(written[index])
        return value

    async def _written(
        self, thread_id: str, namespace: str, checkpoint_id: str, channel: str, rows: _Memo
    ) -> list[Any]:
        """What the tasks of the step after `checkpoint_id` wrote to `channel`, by task id."""
        key = ("writes", thread_id, namespace, checkpoint_id, channel)
        if key not in rows:
            params = (thread_id, namespace, checkpoint_id, channel)
            async with self.conn.execute(_STEP_WRITES, params) as cursor:
                rows[key] = [self.serde.loads_typed((type_, blob)) async for _, _, type_, blob in cursor]
        written: list[Any] = rows[key]
        return written

    def _load(self, row: _Row) -> Any:
        if not row.is_loaded:
            row.loaded, row.is_loaded = self.serde.loads_typed((row.type, row.blob)), True
        return row.loaded

    # -- measuring ----------------------------------------------------------------

    async def astored_sizes(self, thread_id: str, checkpoint_ns: str = "") -> dict[str, int]:
        """Bytes kept for each checkpoint of a thread, oldest first: its row (checkpoint and
        metadata), the channel values stored with it, and the writes pending on it (what
        the tasks of the step after it wrote)."""
        await self.setup()
        query = f"""
            SELECT c.checkpoint_id,
                length(c.checkpoint) + coalesce(length(c.metadata), 0)
                + coalesce((SELECT sum(length(v.value)) FROM {VALUES_TABLE} AS v
                    WHERE v.thread_id = c.thread_id AND v.checkpoint_ns = c.checkpoint_ns
                    AND v.checkpoint_id = c.checkpoint_id), 0)
                + coalesce((SELECT sum(length(w.value)) FROM writes AS w
                    WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
                    AND w.checkpoint_id = c.checkpoint_id), 0)
            FROM checkpoints AS c WHERE c.thread_id = ? AND c.checkpoint_ns = ? ORDER BY c.checkpoint_id
        """
        async with self.lock, self.conn.execute(query, (str(thread_id), checkpoint_ns)) as cursor:
            return {str(checkpoint_id): int(size) async for checkpoint_id, size in cursor}


_ABSENT = object()
_DELTA_SNAPSHOT = "_DeltaSnapshot"
"""The type of the snapshots LangGraph's `DeltaChannel` puts in a checkpoint's values."""
_EMPTY = ""
"""The `base` of a delta from no value (a list channel's first value, named by its writes)."""


def _written_order(
    changes: dict[str, Any], written: list[tuple[str, int, list[Any]]] | None
) -> list[tuple[str, int]] | None:
    """When the items a delta appends are lists the step's tasks wrote, concatenated (the
    very objects), those writes (task id, index) in that order; else None."""
    tail = changes["tail"]
    if changes["changed"] or not tail or not written:
        return None
    owner = {id(items[0]): i for i, (_, _, items) in enumerate(written)}
    order: list[tuple[str, int]] = []
    position = 0
    while position < len(tail):
        index = owner.pop(id(tail[position]), None)
        if index is None:
            return None
        task_id, idx, items = written[index]
        end = position + len(items)
        if end > len(tail) or any(a is not b for a, b in zip(items, tail[position:end], strict=True)):
            return None
        order.append((task_id, idx))
        position = end
    return order


async def _numbered(cursor: Any) -> AsyncIterator[tuple[int, Any]]:
    number = 0
    async for row in cursor:
        yield number, row
        number += 1


def _delta(previous: tuple[str, list[Any]] | None, value: Any) -> tuple[str, dict[str, Any]] | None:
    """(base version, changes) turning the `previous` value of a list channel into `value`:
    {"changed": [[index, item], ...], "tail": items appended}; None when the whole value is
    as small (not a list, shorter than before, or mostly rewritten)."""
    if not isinstance(value, list):
        return None
    if previous is None:
        return (_EMPTY, {"changed": [], "tail": value}) if value else None
    base, old = previous
    if not old or len(value) < len(old):
        return None
    changed: list[list[Any]] = []
    for index, (before, after) in enumerate(zip(old, value, strict=False)):
        if before is after:
            continue
        try:
            same = bool(before == after)
        except Exception:  # values whose equality is not a bool (arrays): count as changed
            same = False
        if not same:
            changed.append([index, after])
            if 2 * len(changed) > len(old):
                return None
    return base, {"changed": changed, "tail": value[len(old) :]}
