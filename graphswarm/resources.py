"""What a run gets besides its graph: shared memory, a workspace, a long objective.

`RunResources` holds a runner's settings for them and gives each execution of a run
its `SwarmContext`. The run's own files live beside the run database
(`objectives/RUN_ID`, `workspaces/RUN_ID`), in the temp directory for an in-memory
database, which keeps nothing either.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphswarm.budget import Governor, SwarmContext
from graphswarm.checkpoint import Backend, parse_db_url
from graphswarm.records import RunRecord

if TYPE_CHECKING:
    from graphswarm.memory import SharedMemory
    from graphswarm.objectives import ObjectiveSettings, PreparedObjective

__all__ = ["RunResources"]


class RunResources:
    """Memory, workspaces and objective handling for the runs of one database.

    `memory`: True for the embedded Chroma memory beside the database,
    "http://host:port" for a Chroma server, "memory" for an in-process one (None or
    False: no memory). `embeddings`: any LangChain `Embeddings` or a name ("minilm",
    "openai"). `objectives`: when an objective is too long for prompts (default
    `ObjectiveSettings()`).
    """

    def __init__(
        self,
        db: str | None,
        *,
        memory: str | bool | None = None,
        embeddings: Any = None,
        objectives: ObjectiveSettings | None = None,
    ) -> None:
        self._db = db
        self._memory = memory
        self._embeddings = embeddings
        self._objectives = objectives
        self._chroma: Any = None

    @property
    def embeddings_name(self) -> str | None:
        """The embeddings, when given by name (what a remote worker can build)."""
        return self._embeddings if isinstance(self._embeddings, str) else None

    @property
    def memory_setting(self) -> str | None:
        """What a new run's record says about its memory."""
        if not self._memory:
            return None
        return "embedded" if self._memory is True else str(self._memory)

    def prepare_objective(self, record: RunRecord) -> PreparedObjective | None:
        """Save and chunk an objective too long for prompts (switching the run's embedded
        memory on, where its chunks go); None when it fits."""
        from graphswarm.objectives import ObjectiveSettings, prepare_objective

        settings = self._objectives or ObjectiveSettings()
        if len(record.objective) <= settings.max_inline_tokens:  # a token is at least a character
            return None
        prepared = prepare_objective(
            record.objective, run_dir=self.run_dir("objectives", record.run_id), settings=settings
        )
        if prepared.inline:
            return None
        record.memory = record.memory or "embedded"
        return prepared

    async def context(
        self, record: RunRecord, governor: Governor, objective: PreparedObjective | None = None
    ) -> SwarmContext:
        """The context of one execution of the run: its governor, its memory (with a long
        objective's chunks stored in it) and its workspace."""
        memory = self.open_memory(record)
        if objective is not None and memory is not None:
            from graphswarm.objectives import store_chunks

            await store_chunks(memory, objective)
        return SwarmContext(
            budget=governor.budget,
            run_id=record.run_id,
            governor=governor,
            memory=memory,
            workspace=self.run_dir("workspaces", record.run_id),
        )

    def open_memory(self, record: RunRecord) -> SharedMemory | None:
        if not record.memory:
            return None
        from graphswarm.embeddings import resolve_embeddings
        from graphswarm.memory import SharedMemory, open_chroma

        if self._chroma is None:
            self._chroma = open_chroma(None if record.memory == "embedded" else record.memory, db=self._db)
        embeddings = resolve_embeddings(self._embeddings, base_url=record.spec.get("base_url"))
        return SharedMemory(self._chroma, record.run_id, embeddings=embeddings)

    def run_dir(self, kind: str, run_id: str) -> Path:
        """A run's own files of one kind ("objectives", "workspaces")."""
        if parse_db_url(self._db).backend is Backend.MEMORY:
            return Path(tempfile.gettempdir()) / "graphswarm-runs" / kind / run_id
        from graphswarm.memory import chroma_path

        return chroma_path(self._db).parent / kind / run_id
