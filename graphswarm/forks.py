"""Forking a run: a new run that starts where another was at one of its checkpoints.

The new run's thread gets a copy of that checkpoint, through the checkpointer's public
`aget_tuple` / `aput` / `aput_writes`; the original run is unchanged. The fork is
paused: resuming it runs what came next from that checkpoint, with other agents or
options if it is resumed with another graph. Edits (`updates`) are checked before
anything is written, and a fork whose edit LangGraph refuses is deleted again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from graphswarm.edits import apply_edit, checked_edit
from graphswarm.errors import UsageError
from graphswarm.inspection import graph_shape, run_config
from graphswarm.records import RunRecord, RunRecords, RunStatus

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from graphswarm.checkpoint import Persistence
    from graphswarm.inspection import Graph

__all__ = ["copy_checkpoint", "fork_run"]


async def fork_run(
    persistence: Persistence,
    records: RunRecords,
    source: RunRecord,
    checkpoint_id: str,
    *,
    new_run_id: str | None = None,
    updates: dict[str, Any] | None = None,
    as_node: str | None = None,
    graph: Graph | None = None,
) -> RunRecord:
    """A new, paused run from `source`'s checkpoint `checkpoint_id` (which must exist),
    its state edited by `updates` as if `as_node` had written them; its record."""
    editor = None
    if updates:  # checked before anything is written
        editor = persistence.compile(graph or graph_shape(source))
        as_node = await checked_edit(editor, run_config(source.run_id, checkpoint_id), updates, as_node)
    new_run_id = await records.free_id(new_run_id)
    await copy_checkpoint(persistence.checkpointer, run_config(source.run_id, checkpoint_id), new_run_id)
    if editor is not None:
        try:
            await apply_edit(editor, run_config(new_run_id), updates or {}, as_node)
        except UsageError:
            await persistence.checkpointer.adelete_thread(new_run_id)  # no half-made fork
            raise
    record = source.model_copy(
        update={
            "run_id": new_run_id,
            "status": RunStatus.INTERRUPTED,
            "stop_reason": "forked",
            "error": None,
            "created_at": time.time(),
            "pid": None,
            "forked_from": f"{source.run_id}@{checkpoint_id}",
        }
    )
    await records.save(record)
    return record


async def copy_checkpoint(saver: BaseCheckpointSaver, source: RunnableConfig, thread_id: str) -> RunnableConfig:
    """Copy the checkpoint at `source` as the first checkpoint of the thread `thread_id`;
    the new checkpoint's config."""
    origin = await saver.aget_tuple(source)
    if origin is None:
        raise UsageError(f"no checkpoint at {source['configurable']}")
    target: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    copied = await saver.aput(target, origin.checkpoint, origin.metadata, origin.checkpoint["channel_versions"])
    # Writes pending on a checkpoint are the results of the step after it, which the
    # fork runs again; only the input checkpoint's writes are the input itself.
    if (origin.metadata or {}).get("source") == "input":
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in origin.pending_writes or []:
            by_task.setdefault(task_id, []).append((channel, value))
        for task_id, writes in by_task.items():
            await saver.aput_writes(copied, writes, task_id)
    return copied
