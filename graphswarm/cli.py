"""The `graphswarm` command: parsing and presentation only.

Exit codes: 0 success, 1 a run failed (it is saved; the resume command is printed),
2 bad input (one line on stderr, no traceback), 130 interrupted by Ctrl-C (SIGINT),
143 stopped by SIGTERM (the run is saved in both cases; the resume command is printed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from graphswarm import view
from graphswarm.errors import (
    ConfigError,
    GraphswarmError,
    MissingExtraError,
    UnknownRunError,
    UsageError,
    first_line,
)
from graphswarm.progress import RunDisplay, run_display
from graphswarm.view import Block, shorten

if TYPE_CHECKING:
    from graphswarm.objectives import ObjectiveSettings

try:  # Typer >= 0.17 ships its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on plain click
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(
    name="graphswarm",
    help="LLM agent swarms as durable LangGraph graphs.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# Piped output is read by scripts and people alike: keep table rows on one line.
# Most of what is printed was written by a model or a person (answers, task titles,
# agent names, objectives): no Rich markup or emoji codes are read in it, so
# `[docs](https://x)` or `x[i]` print as they are. Styles are set with `Text` instead.
out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("graphswarm")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            from graphswarm import __version__ as number
        out.print(f"graphswarm {number}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """LLM agent swarms as durable LangGraph graphs."""


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL: a path, sqlite:///path, postgresql://... or memory.", envvar="GRAPHSWARM_DB"
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="openai:gpt-4o-mini, local, local:/path.gguf, or a name on --base-url."),
]
BaseUrlOption = Annotated[
    str | None, typer.Option("--base-url", help="An OpenAI-compatible server (vLLM, Ollama, TGI, ...).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Edit the state first: KEY=JSON (repeatable; a string needs quotes: KEY='\"text\"'), applied as if the "
        "node that wrote the state had written it (or --as-node). A list the graph appends to (a transcript, "
        "notes: a key with an adding reducer) gets the items of the JSON list appended (entries already there stay as "
        "they are); any other key is replaced. Unknown keys and values of the wrong type are refused.",
    ),
]


StreamOption = Annotated[
    bool,
    typer.Option("--stream", help="Print each agent's answer, whole, as soon as it is written (never interleaved)."),
]
StreamAgentOption = Annotated[
    str | None,
    typer.Option(
        "--stream-agent",
        metavar="AGENT",
        help="Print this agent's answer token by token as it is written (the others only in the phase lines).",
    ),
]


class Engine(StrEnum):
    """Where `run` executes a swarm."""

    LOCAL = "local"
    """In this process (the default)."""
    TEMPORAL = "temporal"
    """As a Temporal workflow, on the workers of a task queue (`graphswarm worker`)."""


TemporalOption = Annotated[
    str | None,
    typer.Option(
        "--temporal",
        metavar="HOST:PORT",
        envvar="GRAPHSWARM_TEMPORAL",
        help="The Temporal service (a dev server: 127.0.0.1:7233).",
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", envvar="TEMPORAL_NAMESPACE", help="The Temporal namespace.")
]
TaskQueueOption = Annotated[str, typer.Option("--task-queue", help="The task queue the swarm's workers poll.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the run as JSON (as `show RUN --json` does) instead of the answer.")
]


def _budget(max_calls, max_tokens, max_cost, max_seconds):
    from graphswarm.budget import Budget

    return Budget(max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost, max_seconds=max_seconds)


class _RunCommand(TyperCommand):
    """`run`, which also takes each architecture option as a flag of its own: `--max-rounds 3`
    is `-o max_rounds=3`. The flags are the fields of the architectures' Options models
    (`graphswarm options ARCH`); a flag of `run` itself wins (`--concurrency`, `--embeddings`:
    an architecture's own option of that name is given with -o)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _flags_as_options(args, _own_flags(self)))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)  # Typer's Rich help, printed
        own = _own_flags(self)
        flags = Table.grid(padding=(0, 2))
        for name, model in _options_models().items():
            flags.add_row(Text(name, style="bold"), Text(" ".join(_flag(f, own) for f in model.flags())))
        title = "Architecture options (--NAME VALUE or -o NAME=VALUE; see: graphswarm options ARCH)"
        Console(highlight=False).print(Panel(flags, title=title, title_align="left", border_style="dim"))


def _own_flags(command: Any) -> set[str]:
    return {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}


def _flag(flag: str, own: set[str]) -> str:
    """How an architecture option is given on the command line: its flag, or `-o` where
    `run` has a flag of that name itself."""
    return f"-o {flag[2:].replace('-', '_')}=..." if flag in own else flag


@app.command(cls=_RunCommand)
def run(
    architecture: Annotated[
        str,
        typer.Argument(help="The architecture (each is listed below, with its options)."),
    ],
    objective: Annotated[str | None, typer.Argument(help="The objective; '-' reads it from stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the objective from a file.")] = None,
    agents: Annotated[
        int,
        typer.Option("--agents", "--nodes", "-n", help="Number of member agents (workers, voters, or a pool's size)."),
    ] = 3,
    agents_file: Annotated[
        Path | None,
        typer.Option(
            "--agents-file",
            help='JSON: a list of agents, or {"agents": [...], "leader"/"judge"/"moderator": {...}} '
            '(without "agents", --agents makes them).',
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    db: DbOption = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Choose the run id (default: random).")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="An architecture option as KEY=VALUE (repeatable; or --KEY VALUE, e.g. --max-rounds 3). "
            "List them with: graphswarm options ARCH.",
        ),
    ] = None,
    max_calls: Annotated[int | None, typer.Option(help="Cap on model calls.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on tokens.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Cap on estimated cost in US dollars.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Cap on wall time.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Most model calls in flight at once.")] = None,
    pause_before: Annotated[list[str] | None, typer.Option(help="Pause before this node (repeatable).")] = None,
    pause_after: Annotated[list[str] | None, typer.Option(help="Pause after this node (repeatable).")] = None,
    stream: StreamOption = False,
    stream_agent: StreamAgentOption = None,
    as_json: JsonOption = False,
    engine: Annotated[
        Engine, typer.Option(help="Where the swarm runs: in this process, or on Temporal workers (needs --temporal).")
    ] = Engine.LOCAL,
    temporal: TemporalOption = None,
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "graphswarm",
    memory: Annotated[
        str | None, typer.Option(help="Shared memory: embedded, memory, or a Chroma server http://host:port.")
    ] = None,
    embeddings: Annotated[str | None, typer.Option(help="Embeddings for memory: minilm or openai.")] = None,
    chunk_tokens: Annotated[
        int | None, typer.Option(help="Long objectives (over 1000 tokens) are split into chunks of this size.")
    ] = None,
    max_objective_chars: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Refuse objectives longer than this (default: GRAPHSWARM_MAX_OBJECTIVE_CHARS, else 1,000,000).",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the answer (or --json), and on stderr only errors and pauses."),
    ] = False,
) -> None:
    """Run a swarm on an objective."""
    from graphswarm.checkpoint import parse_db_url
    from graphswarm.models import default_model_spec
    from graphswarm.registry import SwarmSpec, get_architecture
    from graphswarm.runs import check_swarm_size, new_run_id

    get_architecture(architecture)
    run_id = run_id or new_run_id()  # known here, so that Ctrl-C can name it
    parse_db_url(db)
    from graphswarm.objectives import ObjectiveSettings

    sizes = {"chunk_tokens": chunk_tokens, "max_chars": max_objective_chars}
    objectives = ObjectiveSettings(**{name: value for name, value in sizes.items() if value is not None})
    text = _read_objective(objective, file, objectives)
    roles, members = _read_agents(agents_file) if agents_file else ({}, None)
    check_swarm_size(len(roles) + (agents if members is None else len(members)))
    if members is None:  # no file, or a file giving only the leader/judge/moderator
        members = SwarmSpec.with_workers(architecture, agents).agents
    spec = SwarmSpec(
        architecture=architecture, agents=members, base_url=base_url, options=_parse_options(option or []), **roles
    )
    spec.checked_options()  # a bad option is refused before any model is looked for
    # Default roles, and every agent naming no model, use the default model.
    if model is None and base_url is None and (not roles or any(a.model is None for a in spec.members)):
        model = default_model_spec()
    spec.model = model
    _known_agent(stream_agent, [a.name for a in spec.members])
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
    budget = _budget(max_calls, max_tokens, max_cost, max_seconds)
    remote = _temporal_settings(engine, temporal, namespace, task_queue)

    async def main():
        from graphswarm.runs import Runner

        store = True if memory == "embedded" else memory
        async with Runner(
            db, max_concurrency=concurrency, memory=store, embeddings=embeddings, objectives=objectives, temporal=remote
        ) as runner:
            return await _run_with_progress(
                lambda on_update, on_token: runner.start(
                    spec,
                    text,
                    run_id=run_id,
                    budget=budget,
                    pause_before=pause_before or (),
                    pause_after=pause_after or (),
                    on_update=on_update,
                    on_token=on_token,
                ),
                db,
                run_display(
                    err,
                    architecture=spec.architecture,
                    agents=[a.name for a in spec.agents],
                    quiet=quiet,
                    stream=stream,
                    stream_agent=stream_agent,
                ),
            )

    _finish(_until_interrupted(main, run_id, db), db, quiet, as_json)


def _temporal_settings(engine: Engine, address: str | None, namespace: str, task_queue: str) -> Any:
    if engine is Engine.LOCAL:
        if address is not None:
            raise UsageError("--temporal is for --engine temporal")
        return None
    if not address:
        raise UsageError("--engine temporal needs --temporal HOST:PORT (or GRAPHSWARM_TEMPORAL)")
    try:
        from graphswarm.temporal import TemporalSettings
    except ImportError:
        raise MissingExtraError("running on Temporal", "temporal") from None
    return TemporalSettings(address=address, namespace=namespace, task_queue=task_queue)


@app.command()
def worker(
    temporal: TemporalOption = None,
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "graphswarm",
    max_concurrent: Annotated[
        int | None, typer.Option(help="Most nodes (agents' model calls) this worker runs at once.")
    ] = None,
    architecture: Annotated[
        list[str] | None, typer.Option(help="Host only this architecture (repeatable; default: all).")
    ] = None,
) -> None:
    """Serve swarms on Temporal: run the workflows and nodes of runs started with --engine temporal."""
    settings = _temporal_settings(Engine.TEMPORAL, temporal, namespace, task_queue)
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    from graphswarm.registry import get_architecture
    from graphswarm.temporal import run_worker

    for name in architecture or []:
        get_architecture(name)
    hosted = ", ".join(architecture) if architecture else "every architecture"

    def ready() -> None:
        where = f"{settings.address}, namespace {settings.namespace}, task queue {settings.task_queue}"
        err.print(f"worker for {hosted} on {where} (Ctrl-C stops it)")

    asyncio.run(run_worker(settings, max_concurrent=max_concurrent, architectures=architecture, on_ready=ready))
    err.print("worker stopped")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    db: DbOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    max_calls: Annotated[int | None, typer.Option(help="New cap on model calls.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="New cap on tokens.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="New cap on estimated cost.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="New cap on wall time.")] = None,
    set_: SetOption = None,
    as_node: Annotated[str | None, typer.Option(help="Apply --set edits as if this node wrote them.")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the plan the run is waiting on.")] = False,
    reject: Annotated[str | None, typer.Option(help="Reject the plan, with this feedback; ends the run.")] = None,
    edit_plan: Annotated[
        Path | None, typer.Option(help='Replace the plan: a JSON list of {"title", "worker"} tasks.')
    ] = None,
    answer: Annotated[str | None, typer.Option(help="Answer the question an agent asked.")] = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the run at this pause (a question or a tool call waiting).")
    ] = False,
    pause_before: Annotated[list[str] | None, typer.Option(help="New breakpoints (replace the run's).")] = None,
    pause_after: Annotated[list[str] | None, typer.Option(help="New breakpoints after nodes.")] = None,
    no_pause: Annotated[bool, typer.Option("--no-pause", help="Clear the run's breakpoints.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Take the run over from the process holding it (one that is gone, on another host)."
        ),
    ] = False,
    stream: StreamOption = False,
    stream_agent: StreamAgentOption = None,
    as_json: JsonOption = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the answer (or --json), and on stderr only errors and pauses."),
    ] = False,
) -> None:
    """Continue a paused, failed or killed run; finished calls are not made again."""
    from graphswarm.budget import Budget
    from graphswarm.runs import Runner

    updates = _parse_set(set_ or [])
    decision = _decision(approve, reject, edit_plan, answer, stop)
    before = [] if no_pause else pause_before
    after = [] if no_pause else pause_after

    async def main():
        async with Runner(db) as runner:
            record = await runner.get(run_id)
            _known_agent(stream_agent, record.agent_names)
            caps = {"max_calls": max_calls, "max_tokens": max_tokens, "max_cost": max_cost, "max_seconds": max_seconds}
            budget = Budget.model_validate({**record.budget, **{k: v for k, v in caps.items() if v is not None}})
            return await _run_with_progress(
                lambda on_update, on_token: runner.resume(
                    run_id,
                    budget=budget,
                    base_url=base_url,
                    model=model,
                    updates=updates,
                    as_node=as_node,
                    decision=decision,
                    pause_before=before,
                    pause_after=after,
                    on_update=on_update,
                    on_token=on_token,
                    force=force,
                ),
                db,
                run_display(
                    err,
                    architecture=record.architecture,
                    agents=[a["name"] for a in record.spec.get("agents", [])],
                    quiet=quiet,
                    stream=stream,
                    stream_agent=stream_agent,
                ),
            )

    _finish(_until_interrupted(main, run_id, db), db, quiet, as_json)


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    checkpoint: Annotated[str, typer.Option(help="The checkpoint to start from (see: graphswarm history).")],
    new_run_id: Annotated[str | None, typer.Option("--run-id", help="The new run's id.")] = None,
    set_: SetOption = None,
    as_node: Annotated[str | None, typer.Option(help="Apply --set edits as if this node wrote them.")] = None,
    db: DbOption = None,
) -> None:
    """Start a new run from one of a run's checkpoints; the original run is unchanged."""
    from graphswarm.runs import Runner

    updates = _parse_set(set_ or [])

    async def main():
        async with Runner(db) as runner:
            return await runner.fork(run_id, checkpoint, new_run_id=new_run_id, updates=updates, as_node=as_node)

    record = asyncio.run(main())
    out.print(record.run_id)
    err.print(f"forked {run_id} at {checkpoint}; continue it with: {_command('resume', record.run_id, db)}")


@app.command("runs")
def list_runs(db: DbOption = None) -> None:
    """List runs with their status."""
    from graphswarm.runs import Runner

    async def main():
        async with Runner(db) as runner:
            return await runner.list()

    records = asyncio.run(main())
    table = Table()
    for name in ("run id", "architecture", "status", "stop reason", "started", "agents"):
        table.add_column(name, no_wrap=True)
    table.add_column("objective", overflow="ellipsis", no_wrap=True)
    for r in records:
        table.add_row(
            r.run_id,
            r.architecture,
            r.effective_status.value,
            r.stop_reason or "",
            datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S"),
            str(len(r.agent_names)),
            shorten(r.objective, 60),
        )
    out.print(table if records else "no runs yet")


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="The run to stop.")], db: DbOption = None) -> None:
    """Stop a run that is executing: on Temporal it ends; in a process of this host it stops, saved."""

    async def main():
        from graphswarm.runs import Runner

        async with Runner(db) as runner:
            return await runner.cancel(run_id)

    record = asyncio.run(main())
    if record.temporal is not None:
        err.print(f"run {run_id} cancelled (its workflow ends)")
    else:
        err.print(
            f"run {run_id} is stopping (process {record.pid}); continue it with: {_command('resume', run_id, db)}"
        )


@app.command()
def show(
    run_id: Annotated[str, typer.Argument()],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record and state as JSON.")] = False,
    checkpoint: Annotated[str | None, typer.Option(help="Show the state at this checkpoint instead.")] = None,
) -> None:
    """Show a run: its result, plan, rounds and per-agent accounting."""
    from graphswarm.runs import Runner

    async def main():
        async with Runner(db) as runner:
            if checkpoint:
                return await runner.state_at(run_id, checkpoint)
            return await runner.result(run_id)

    result = asyncio.run(main())
    if as_json:
        out.print_json(_run_json(result))
        return
    _print_result(result)


@app.command()
def history(run_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """List a run's checkpoints: step, what ran next, and which agent made which call."""
    from graphswarm.runs import Runner

    async def main():
        async with Runner(db) as runner:
            return await runner.history(run_id)

    steps = asyncio.run(main())
    table = Table("step", "checkpoint", "source", "next", "calls in this step")
    for s in steps:
        calls = ", ".join(f"{c['agent']}@{c['node']}" for c in s.calls)
        table.add_row(str(s.step), s.checkpoint_id, s.source, ", ".join(s.next), calls)
    out.print(table)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("--output", "-O", help="The file to write: .html or .md.")],
    db: DbOption = None,
) -> None:
    """Export a run as a self-contained HTML or Markdown report (graph, timeline, who said what)."""
    from graphswarm.report import export_report

    try:
        path = export_report(run_id, output, db=db)
    except OSError as exc:
        raise ConfigError(f"cannot write report {str(output)!r}: {exc.strerror}") from None
    err.print(f"wrote {path}")


@app.command()
def draw(
    name: Annotated[str, typer.Argument(metavar="ARCHITECTURE|RUN_ID")],
    ascii: Annotated[bool, typer.Option("--ascii", help="ASCII art instead of mermaid.")] = False,
    svg: Annotated[
        Path | None, typer.Option("--svg", help="Write the picture as SVG to this file (a run's visited nodes filled).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Draw an architecture's graph, or a run's with the nodes it went through, offline."""
    from graphswarm.viz import draw_named

    text, picture = draw_named(name, db=db, ascii=ascii, svg=svg is not None)
    if svg is None:
        out.print(text, end="")
        return
    try:
        svg.write_text(picture, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(svg)!r}: {exc.strerror}") from None
    err.print(f"wrote {svg}")


@app.command("options")
def list_options(
    architecture: Annotated[str | None, typer.Argument(help="An architecture; all of them when omitted.")] = None,
) -> None:
    """List an architecture's options: name, flag, type, default, range and description."""
    from graphswarm.architectures.options import flag_of
    from graphswarm.registry import ARCHITECTURES, get_architecture

    own = _own_flags(typer.main.get_command(app).commands["run"])  # type: ignore[attr-defined]
    for name in [get_architecture(architecture).name] if architecture else list(ARCHITECTURES):
        table = Table("option", "flag", "type", "default", "range", "description", title=f"{name} options")
        for info in get_architecture(name).options.describe():
            flag = _flag(flag_of(info.name), own) if info.text else "(Python only)"
            table.add_row(info.name, flag, info.type, info.default, info.range, info.description)
        table.caption = f"graphswarm run {name} OBJECTIVE --NAME VALUE, or -o NAME=VALUE"
        out.print(table)


# -- helpers -------------------------------------------------------------------


def _read_objective(objective: str | None, file: Path | None, settings: ObjectiveSettings) -> str:
    """The objective from the argument, a file or stdin, refused when over `settings.max_chars`
    characters; a file or stdin is read no further than the limit can need."""
    from graphswarm.objectives import check_objective_size, objective_too_long

    max_chars = settings.max_chars
    # A character is at most 4 bytes in UTF-8: this many bytes always hold more than max_chars.
    most = 4 * (max_chars + 1)
    if file is not None:
        if objective is not None:
            raise ConfigError("give the objective as an argument or with --file, not both")
        try:
            with file.open("rb") as handle:
                data = handle.read(most)
        except OSError as exc:
            raise ConfigError(f"cannot read objective file {str(file)!r}: {exc.strerror}") from None
        if len(data) >= most:
            raise objective_too_long(f"more than {max_chars:,} characters", max_chars)
        text = _utf8(data, f"objective file {str(file)!r}")
    elif objective == "-" or (objective is None and not sys.stdin.isatty()):
        stdin = getattr(sys.stdin, "buffer", None)  # bytes, decoded strictly (not with surrogate escapes)
        data = stdin.read(most) if stdin is not None else sys.stdin.read(most).encode()
        if len(data) >= most:
            raise objective_too_long(f"more than {max_chars:,} characters", max_chars)
        text = _utf8(data, "the objective on stdin")
    elif objective is None:
        raise ConfigError("no objective: give it as an argument, with --file PATH, or on stdin")
    else:
        text = objective
    if not text.strip():
        raise ConfigError("the objective is empty")
    check_objective_size(text.strip(), settings)
    return text.strip()


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _split_pair(pair: str, flag: str) -> tuple[str, str]:
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} takes KEY=VALUE, got {pair!r}")
    return key.strip(), raw


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` architecture options: JSON values, anything else as a string (the
    architecture's Options model checks and coerces them)."""
    from graphswarm.architectures.options import parse_value

    options: dict[str, Any] = {}
    for pair in pairs:
        key, raw = _split_pair(pair, "--option")
        options[key.replace("-", "_")] = parse_value(raw)
    return options


def _options_models() -> dict[str, Any]:
    """Each architecture's Options model, by architecture name."""
    from graphswarm.registry import ARCHITECTURES

    return {name: arch.options for name, arch in ARCHITECTURES.items()}


def _flags_as_options(args: list[str], own: set[str]) -> list[str]:
    """`--max-rounds 3` (or `--max-rounds=3`) becomes `--option max_rounds=3` for every flag
    naming a field of some architecture's Options model that is not one of `own`; a flag
    of a true-or-false option takes no value (`--approve-plan`). Whether the chosen
    architecture has that option is checked with the rest of its options."""
    switches: dict[str, bool] = {}
    for model in _options_models().values():
        for name in model.model_fields:
            switches[name] = switches.get(name, False) or model.is_switch(name)
    rewritten: list[str] = []
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            rewritten += [token, *tokens]
            break
        flag, eq, value = token.partition("=")
        name = flag[2:].replace("-", "_")
        if not flag.startswith("--") or flag in own or name not in switches:
            rewritten.append(token)
            continue
        if not eq:
            if switches[name]:
                value = "true"
            else:
                following = next(tokens, None)
                if following is None or following.partition("=")[0] in own:
                    raise ConfigError(f"{flag} needs a value (or -o {name}=VALUE)")
                value = following
        rewritten += ["--option", f"{name}={value}"]
    return rewritten


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    """`--set KEY=JSON` state edits: the value must be JSON (the run checks keys and types)."""
    updates: dict[str, Any] = {}
    for pair in pairs:
        key, raw = _split_pair(pair, "--set")
        try:
            updates[key] = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"--set {key}: {raw!r} is not JSON (a string needs quotes: {key}='\"text\"')") from None
    return updates


def _decision(
    approve: bool, reject: str | None, edit_plan: Path | None, answer: str | None = None, stop: bool = False
) -> dict[str, Any] | None:
    """A person's answer to the pause a run waits on, checked before the run is touched."""
    given = (
        ("--approve", approve),
        ("--reject", reject is not None),
        ("--edit-plan", edit_plan),
        ("--answer", answer is not None),
        ("--stop", stop),
    )
    chosen = [name for name, on in given if on]
    if len(chosen) > 1:
        raise ConfigError(f"choose one of {', '.join(chosen)}")
    if stop:
        return {"action": "stop"}
    if answer is not None:
        return {"action": "answer", "text": answer}
    if approve:
        return {"action": "approve"}
    if reject is not None:
        return {"action": "reject", "feedback": reject}
    if edit_plan is None:
        return None
    try:
        tasks = json.loads(edit_plan.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read plan file {str(edit_plan)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"plan file {str(edit_plan)!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) and t.get("title") for t in tasks):
        raise ConfigError(f'plan file {str(edit_plan)!r} must be a list of {{"title": ..., "worker": ...}} tasks')
    return {"action": "edit", "tasks": tasks}


def _read_agents(path: Path):
    from graphswarm.agents import Agent
    from graphswarm.architectures.base import Role

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read agents file {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"agents file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    data = data if isinstance(data, dict) else {"agents": data}
    roles = {role.value: Agent.model_validate(data[role]) for role in Role if data.get(role)}
    members = data.get("agents")
    if members is None and roles:
        return roles, None  # --agents/--nodes generic members
    if not isinstance(members, list):
        raise ConfigError(f'agents file {str(path)!r} must hold a list of agents or {{"agents": [...]}}')
    return roles, [Agent.model_validate(m) for m in members]


_STOP_SIGNALS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}
"""What `run` and `resume` say, and their exit code, when a signal stops them."""


class _Terminated(BaseException):
    """SIGTERM outside a run's execution: exit 143 like an interrupted run (a
    `BaseException`, as `KeyboardInterrupt` is, so that no `except Exception` swallows it)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def _until_interrupted(main: Callable[[], Coroutine[Any, Any, Any]], run_id: str, db: str | None) -> Any:
    """Run `main()`; on Ctrl-C or SIGTERM stop it cleanly (the run is saved and marked
    interrupted), say how to continue it, and exit 130 (143 for SIGTERM).

    The signal cancels `main()` from the event loop, not from inside the signal handler
    (asyncio's own Ctrl-C handling cancels mid-step and sometimes breaks a future). A
    second signal cancels again: the run stops without waiting for its last save."""
    from graphswarm.checkpoint import Backend, parse_db_url

    received: list[int] = []

    async def cancellable() -> Any:
        loop, task = asyncio.get_running_loop(), asyncio.ensure_future(main())

        def stop(signum: int, frame: Any) -> None:
            received.append(signum)
            loop.call_soon_threadsafe(task.cancel)

        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS} if in_main_thread else {}
        try:
            return await task
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    try:
        return asyncio.run(cancellable())
    except (KeyboardInterrupt, asyncio.CancelledError, _Terminated) as exc:
        if isinstance(exc, asyncio.CancelledError) and not received:
            raise
        if received:
            how, code = _STOP_SIGNALS[signal.Signals(received[0])]
        else:
            how, code = _STOP_SIGNALS[signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT]
    if parse_db_url(db).backend is Backend.MEMORY:
        err.print(f"{how}; run {run_id} is gone with this process (an in-memory database keeps nothing)")
    elif asyncio.run(_is_saved(run_id, db)):
        err.print(f"{how}; run {run_id} is saved, continue it with: {_command('resume', run_id, db)}")
    else:
        err.print(f"{how} before run {run_id} was saved")
    raise typer.Exit(code)


async def _is_saved(run_id: str, db: str | None) -> bool:
    from graphswarm.runs import Runner

    async with Runner(db) as runner:
        try:
            await runner.get(run_id)
        except UnknownRunError:
            return False
    return True


async def _run_with_progress(start, db: str | None, display: RunDisplay):
    """Run `start(on_update, on_token)` with `display` showing it; a failed run exits 1."""
    from graphswarm.runs import RunFailedError

    try:
        with display:
            return await start(display.on_update, display.on_token if display.streams else None)
    except RunFailedError as exc:
        err.print(f"error: {exc}")
        err.print(f"the run is saved; continue it with: {_command('resume', exc.run_id, db)}")
        raise typer.Exit(1) from None


def _known_agent(name: str | None, agents: list[str]) -> None:
    """Refuse `--stream-agent NAME` for an agent the swarm does not have."""
    if name is not None and name not in agents:
        listed = ", ".join(agents[:8]) + (f", ... ({len(agents)} in all)" if len(agents) > 8 else "")
        raise ConfigError(f"--stream-agent: no agent {name!r} in this swarm (its agents: {listed})")


def _run_json(result) -> str:
    """A run's record, state, pauses and accounting as JSON (`show --json`, `run --json`)."""
    return json.dumps(
        {
            "record": {**result.record.model_dump(mode="json"), "status": result.status.value},
            "state": result.state,
            "pending": result.pending,
            "pauses": result.pauses,
            "next": result.next,
            "usage": result.usage,
        },
        default=str,
    )


def _finish(result, db: str | None, quiet: bool, as_json: bool = False) -> None:
    from graphswarm.runs import RunStatus

    if as_json:
        out.print_json(_run_json(result))
    if result.status is RunStatus.DONE:
        if not as_json:
            out.print(result.final_answer or "")
        if not quiet:
            err.print(
                f"run {result.run_id} done ({result.stop_reason}); details: {_command('show', result.run_id, db)}"
            )
        return
    pause = result.pauses[0] if result.pauses else {}
    detail = pause.get("detail") or (f"next: {', '.join(result.next)}" if result.next else "")
    err.print(f"run {result.run_id} paused: {result.stop_reason} - {detail}".rstrip(" -"))
    for task in pause.get("plan", []):
        err.print(f"  {task['id']}: {task['title']} -> {task['worker']}")
    if result.final_answer and not as_json:
        out.print(result.final_answer)
    if pause.get("question"):
        hint = " --answer TEXT | --stop"
    elif pause.get("tool_call"):
        hint = " --approve | --reject FEEDBACK | --stop"
    elif pause.get("plan"):
        hint = " --approve | --reject FEEDBACK | --edit-plan FILE"
    else:
        hint = _raised_cap(result.stop_reason, result.record.budget)
    err.print(f"continue it with: {_command('resume', result.run_id, db)}{hint}")
    raise typer.Exit(3)


_CAP_OPTIONS = {"call_cap": "max_calls", "token_cap": "max_tokens", "cost_cap": "max_cost", "time_cap": "max_seconds"}
"""The budget field behind each cap a run can pause on."""


def _raised_cap(stop_reason: str | None, budget: dict[str, Any]) -> str:
    """For a run paused on a budget cap, the resume option that doubles that cap (resuming
    with the same cap would pause again at once); "" for any other pause."""
    field = _CAP_OPTIONS.get(stop_reason or "")
    if field is None or budget.get(field) is None:
        return ""
    return f" --{field.replace('_', '-')} {budget[field] * 2:.12g}"


def _command(verb: str, run_id: str, db: str | None) -> str:
    """`graphswarm VERB RUN_ID`, with the database it was given."""
    from graphswarm.checkpoint import parse_db_url

    return f"graphswarm {verb} {run_id}" + (f" --db {parse_db_url(db).label}" if db else "")


def _print_result(result) -> None:
    from graphswarm.view import run_blocks

    r = result.record
    about = f" · {r.architecture} · {r.effective_status.value} · {r.stop_reason or ''}"
    out.print(Text.assemble((f"run {r.run_id}", "bold"), about))
    out.print(f"objective: {shorten(r.objective, 300)}")
    if r.error:
        out.print(f"error: {r.error}")
    for pause in result.pauses:
        out.print(f"paused: {pause.get('stop_reason')} - {pause.get('detail', '')}")
    _print_blocks(run_blocks(result, brief=True))
    usage = result.usage
    for kind in ("agent", "node"):
        table = Table(
            kind, "calls", "input tokens", "output tokens", "latency s", "cost $", title=f"accounting by {kind}"
        )
        for name, row in sorted(usage[f"{kind}s"].items()):
            table.add_row(name, *_usage_cells(row))
        table.add_row("total", *_usage_cells(usage["total"]), style="bold")
        out.print(table)
    if result.state.get("final_answer"):
        out.print("final answer", style="bold")
        out.print(result.state["final_answer"])


def _print_blocks(blocks: list[Block]) -> None:
    """A view's blocks in the terminal; text prints as written (the consoles read no markup)."""
    for block in blocks:
        if isinstance(block, view.Table):
            out.print(_rich_table(block))
        elif isinstance(block, view.Chart):
            out.print(_rich_table(_chart_table(block)))
        elif isinstance(block, view.Heading):
            out.print(block.text, style="bold")
        else:
            out.print(block.text)


def _rich_table(block: view.Table) -> Table:
    table = Table(*block.columns, title=block.title or None, caption=block.caption or None)
    for index, row in enumerate(block.rows):
        cells = [cell.text if isinstance(cell, view.Text) else cell for cell in row]
        table.add_row(*cells, style="bold" if index in block.strong else None)
    return table


def _chart_table(chart: view.Chart) -> view.Table:
    """A chart's points as a table: one row per x, one column per series."""
    series: dict[str, dict[Any, Any]] = {
        name: dict((v[0], v[1]) if isinstance(v, tuple | list) else (i, v) for i, v in enumerate(values, start=1))
        for name, values in chart.series.items()
    }
    xs = sorted({x for points in series.values() for x in points})
    rows: list[list[view.Cell]] = [[f"{x:g}", *(f"{s[x]:g}" if x in s else "" for s in series.values())] for x in xs]
    return view.Table([chart.x_label or "x", *series], rows, title=chart.title)


def _usage_cells(row: dict[str, Any]) -> list[str]:
    from graphswarm.state import format_cost

    return [
        str(int(row["calls"])),
        str(int(row["input_tokens"])),
        str(int(row["output_tokens"])),
        f"{row['latency_s']:.2f}",
        format_cost(row["cost"]),
    ]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        return f"invalid {exc.title} {where}: {e['msg']}"
    return first_line(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every error to an exit code and one line, never a traceback."""
    command = typer.main.get_command(app)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        # Without standalone mode, click returns the code of a `typer.Exit` instead of exiting.
        code = command.main(args=argv, prog_name="graphswarm", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        out.print(exc.format_message())
        return 0
    except click_errors.UsageError as exc:
        err.print(f"error: {exc.format_message()}")
        return 2
    except (typer.Abort, KeyboardInterrupt):  # `run` and `resume` say more about their run
        err.print("interrupted")
        return 130
    except _Terminated:
        err.print("terminated")
        return 143
    except (UsageError, ValidationError) as exc:
        err.print(f"error: {_one_line(exc)}")
        return 2
    except GraphswarmError as exc:
        err.print(f"error: {_one_line(exc)}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
