"""The one exception hierarchy of graphswarm.

`UsageError` and its subclasses are mistakes in what the caller asked for: the CLI
maps them to exit code 2. `RunError` and its subclasses happen while a run executes:
the run stays saved and can be resumed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GraphswarmError",
    "UsageError",
    "ConfigError",
    "ModelConfigError",
    "MissingExtraError",
    "UnknownRunError",
    "RunError",
    "StructuredOutputError",
    "ToolRefusedError",
    "first_line",
]


class GraphswarmError(Exception):
    """Root of every error raised by graphswarm."""


class UsageError(GraphswarmError):
    """The caller asked for something that cannot work: fix the input and try again."""


class ConfigError(UsageError):
    """An option, agent spec or URL is invalid."""


class ModelConfigError(UsageError):
    """No model could be resolved from what was given (or from the environment)."""


class MissingExtraError(UsageError):
    """An optional dependency is needed for what was asked."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f'{feature} requires the "{extra}" extra: pip install "graphswarm[{extra}]"')
        self.feature = feature
        self.extra = extra


class UnknownRunError(UsageError):
    """No run with this id exists in the database."""

    def __init__(self, run_id: str, db: str) -> None:
        super().__init__(f"no run with id {run_id!r} in {db} (list runs with: graphswarm runs)")
        self.run_id = run_id


class RunError(GraphswarmError):
    """A run failed while executing; its state is saved and it can be resumed."""


class RunCancelledError(RunError):
    """The run was cancelled (`graphswarm cancel`) while this process followed it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled")
        self.run_id = run_id


class StructuredOutputError(RunError):
    """A model kept answering with output that does not fit the requested schema."""

    def __init__(self, agent: str, schema: str, detail: str) -> None:
        super().__init__(f"agent {agent!r} did not return a valid {schema} after re-asking: {detail}")
        self.agent = agent
        self.schema = schema
        self.detail = detail
        self.calls: list[Any] = []
        """The call records of the requests sent for it (`nodes.ask` sets them), so that a
        caller going on without the reply still counts them."""


class ToolRefusedError(GraphswarmError):
    """A built-in tool refused a request (a path outside the workspace, code posing as
    arithmetic); the tool loop shows the message to the model, which may try again."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none): what a
    one-line error or a run record shows."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
