"""Runs on Temporal: the same swarms, on any number of worker machines.

The official LangGraph plugin of the Temporal SDK (`temporalio.langgraph`) runs a
`StateGraph` inside a Temporal workflow and the nodes marked
``metadata={"execute_in": "activity"}`` as activities, on whichever worker polls the
task queue, with Temporal's retries, timeouts and history. Here:

- A **worker** (`graphswarm worker --temporal HOST:PORT`) hosts every architecture as
  a `configurable_graph`: built once from defaults, each run's swarm chosen by the
  plain-data context the run carries (its recorded `SwarmSpec` and `Budget`). Every
  node runs as an activity and rebuilds its agents and models from that spec on the
  worker it lands on; routing runs in the workflow.
- A **run** is a workflow (`SwarmWorkflow`, workflow id = run id). Temporal's history
  is its durable record: a finished activity (a node's model calls) is never run again,
  whichever worker dies.
- The **budget** is decided in one place, the workflow: each model request of every
  worker asks it (a workflow update) before it is sent and reports what it spent (a
  signal), so `max_calls` holds for the whole run however many workers share it.
- A **pause** (a cap reached, a plan to approve) keeps the workflow waiting for a
  `resume` signal with the decision.

Connection settings: the address, `TEMPORAL_NAMESPACE` (default "default"), and for a
Temporal Cloud or TLS cluster `TEMPORAL_API_KEY` / `TEMPORAL_TLS=1` from the environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.langgraph import LangGraphPlugin
from temporalio.langgraph import graph as registered_graph
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from graphswarm.budget import Budget, BudgetExhausted, Governor, SwarmContext
from graphswarm.configurable import configurable_graph
from graphswarm.errors import ConfigError, RunCancelledError
from graphswarm.inspection import Step
from graphswarm.records import RunRecord
from graphswarm.registry import ARCHITECTURES, SwarmSpec, get_architecture
from graphswarm.state import CallRecord, StopReason

__all__ = ["TemporalSettings", "TemporalEngine", "SwarmRun", "SwarmWorkflow", "connect", "run_worker", "worker_plugin"]

DEFAULT_TASK_QUEUE = "graphswarm"
WORKFLOW_NAME = "graphswarm"
NODE_TIMEOUT = timedelta(minutes=10)
"""The longest one node (an agent's calls, with their own retries) may take on a worker
before Temporal gives it to another."""
NODE_ATTEMPTS = 5
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
WORKER_WAIT_S = 5
SCHEDULED_AT_ONCE = 500
QUERY_TIMEOUT = timedelta(seconds=10)
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=60)
"""How long one step of the graph's loop may take in the workflow (Temporal's default
of 10 s is short for thousands of agents)."""
NOT_HOSTED = "ArchitectureNotHosted"


class TemporalSettings(BaseModel):
    """Where the Temporal service is and which task queue the swarm's workers poll."""

    address: str = Field(description="HOST:PORT of the Temporal frontend (a dev server: 127.0.0.1:7233).")
    namespace: str = Field(default_factory=lambda: os.environ.get("TEMPORAL_NAMESPACE", "default"))
    task_queue: str = DEFAULT_TASK_QUEUE
    node_timeout: timedelta = NODE_TIMEOUT


@dataclass
class SwarmRun:
    """A workflow's input: plain data only (it is kept in Temporal's history)."""

    run_id: str
    architecture: str
    objective: str
    spec: dict[str, Any]
    budget: dict[str, Any] = field(default_factory=dict)
    memory: str | None = None
    """A Chroma server's URL: the run's shared memory, reached from every worker."""
    embeddings: str | None = None
    """The memory's embeddings, by name ("minilm", "openai"...)."""


@dataclass
class RunSetup:
    """What a worker needs to build a run's agents: asked of the workflow once per worker."""

    spec: dict[str, Any]
    memory: str | None = None
    embeddings: str | None = None


@dataclass
class Admission:
    fingerprint: str
    priced: bool = True


@dataclass
class Refusal:
    stop_reason: str = ""
    detail: str = ""


@dataclass
class Progress:
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    pauses: list[Any] = field(default_factory=list)


@workflow.defn(name=WORKFLOW_NAME)
class SwarmWorkflow:
    """One run: the graph's loop, the run's budget, and its pauses."""

    def __init__(self) -> None:
        self._governor = Governor()
        self._decision: list[Any] = []
        self._pauses: list[Any] = []
        self._state: dict[str, Any] = {}
        self._updates: list[tuple[str, dict[str, Any]]] = []
        self._setup = RunSetup(spec={})

    @workflow.run
    async def run(self, run: SwarmRun) -> dict[str, Any]:
        self._governor = Governor(Budget.model_validate(run.budget))
        try:
            graph = registered_graph(run.architecture)
        except KeyError:
            raise ApplicationError(
                f"the workers of task queue {workflow.info().task_queue} do not host {run.architecture} "
                f"(start one with: graphswarm worker --architecture {run.architecture}, or without --architecture)",
                type=NOT_HOSTED,
                non_retryable=True,
            ) from None
        app = graph.compile(checkpointer=InMemorySaver())
        config: RunnableConfig = {
            "configurable": {"thread_id": run.run_id},
            "recursion_limit": 10_000,
            # Nodes started at once: what one workflow task schedules stays under gRPC's message limit.
            "max_concurrency": SCHEDULED_AT_ONCE,
        }
        # Every activity's input carries the context: the spec (which grows with the swarm)
        # is not in it, nodes ask the workflow for it once per worker (`_node_context`).
        self._setup = RunSetup(run.spec, run.memory, run.embeddings)
        _remember(workflow.info().run_id, self._setup)
        context = {"budget": run.budget, "run_id": run.run_id}
        step: Any = {"objective": run.objective}
        while True:
            async for update in app.astream(step, config, context=context, stream_mode="updates"):
                self._updates += [(node, values) for node, values in update.items() if isinstance(values, dict)]
            snapshot = await app.aget_state(config)
            self._state = snapshot.values
            self._pauses = [pause.value for pause in snapshot.interrupts]
            if not self._pauses:
                return self._state
            await workflow.wait_condition(lambda: bool(self._decision))
            decision = self._decision.pop()
            # No decision (a raised cap): the paused nodes run again and ask for their calls anew.
            step = Command(resume=decision) if decision is not None else None

    @workflow.update
    def admit(self, request: Admission) -> Refusal:
        """Reserve one model call for a worker, or say which cap it would break."""
        try:
            self._governor.admit(request.fingerprint, priced=request.priced)
        except BudgetExhausted as stop:
            return Refusal(stop.reason.value, stop.detail)
        return Refusal()

    @workflow.signal
    def spent(self, fingerprint: str, call: dict[str, Any]) -> None:
        self._governor.record(fingerprint, CallRecord(**call))  # type: ignore[typeddict-item]

    @workflow.update
    def resume(self, decision: Any, budget: dict[str, Any]) -> None:
        """Continue a paused run with a decision and its budget (raised, for a cap)."""
        if not self._pauses:
            raise ApplicationError("the run is not paused", non_retryable=True)
        self._governor.budget = Budget.model_validate(budget)
        self._pauses = []
        self._decision.append(decision)

    @workflow.query
    def setup(self) -> RunSetup:
        return self._setup

    @workflow.query
    def progress(self, since: int = 0) -> Progress:
        """The node updates from the `since`-th on, the state when paused, and the pauses."""
        return Progress(updates=self._updates[since:], state=self._state, pauses=self._pauses)


class _WorkflowGovernor(Governor):
    """A worker's view of the run's governor: every admission is the workflow's decision."""

    def __init__(self, budget: Budget, handle: WorkflowHandle[Any, Any]) -> None:
        super().__init__(budget)
        self._handle = handle
        self._reports: set[asyncio.Task[None]] = set()

    async def aadmit(self, fingerprint: str, *, priced: bool = True) -> None:
        refusal = await self._handle.execute_update(SwarmWorkflow.admit, Admission(fingerprint, priced))
        if refusal.stop_reason:
            raise BudgetExhausted(StopReason(refusal.stop_reason), refusal.detail)
        self._calls += 1

    def record(self, fingerprint: str, call: CallRecord) -> None:
        super().record(fingerprint, call)
        report = asyncio.get_running_loop().create_task(
            self._handle.signal(SwarmWorkflow.spent, args=[fingerprint, dict(call)])
        )
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)


_SETUPS: dict[str, RunSetup] = {}
"""The setup of each run whose workflow or nodes this process runs, by workflow run id."""
_FETCHES: dict[str, asyncio.Future[RunSetup]] = {}
"""Setups being asked of their workflows, by workflow run id (one query at a time)."""
_MEMORIES: dict[str, Any] = {}
"""The shared memory of each run whose nodes this process runs, by workflow run id."""
_KEPT = 256
_CAPS = {"max_calls", "max_tokens", "max_cost", "max_seconds"}


def _node_context(raw: Any) -> SwarmContext:
    """The context a node (or a routing function) runs with: the run's spec, and on a
    worker the workflow as its governor."""
    context = raw if isinstance(raw, SwarmContext) else SwarmContext.model_validate(raw or {})
    if workflow.in_workflow():
        # A copy: the context LangGraph holds goes into every activity's input, without the spec.
        return context.model_copy(update={"spec": _SETUPS[workflow.info().run_id].spec})
    elif activity.in_activity() and activity.info().workflow_id:
        info = activity.info()
        assert info.workflow_id is not None and info.workflow_run_id is not None
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        setup = _SETUPS[info.workflow_run_id]  # fetched by `_on_worker`
        context.spec = setup.spec
        context.memory = _memory(info.workflow_run_id, context.run_id or info.workflow_id, setup)
        if context.governor is None:
            # Without a cap there is nothing to decide: no round trip to the workflow.
            capped = context.budget.model_dump(include=_CAPS, exclude_none=True)
            context.governor = _WorkflowGovernor(context.budget, handle) if capped else Governor(context.budget)
    return context


def temporal_graph(architecture: str) -> StateGraph[Any, Any, Any, Any]:
    """The architecture as a worker hosts it: every node an activity, Temporal retrying."""
    arch = get_architecture(architecture)
    defaults = SwarmSpec.with_workers(architecture, arch.default_agents)
    return configurable_graph(
        defaults,
        node_metadata={"execute_in": "activity", "heartbeat_timeout": HEARTBEAT_TIMEOUT},
        retries=False,
        context=_node_context,
        around=_on_worker,
    )


@asynccontextmanager
async def _on_worker() -> AsyncIterator[None]:
    """While a node runs on a worker: its run's spec is at hand (asked of the workflow
    once per worker), and Temporal hears that the node is alive, so that a worker that
    dies has its nodes given to another within `HEARTBEAT_TIMEOUT`, not `NODE_TIMEOUT`."""
    if not activity.in_activity() or not activity.info().workflow_run_id:
        yield
        return
    info = activity.info()
    assert info.workflow_id is not None and info.workflow_run_id is not None

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_TIMEOUT.total_seconds() / 4)

    beating = asyncio.ensure_future(beat())
    try:
        if info.workflow_run_id not in _SETUPS:
            # One query per worker and run, however many of its nodes start at once.
            fetching = _FETCHES.get(info.workflow_run_id)
            if fetching is None:
                handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
                fetching = _FETCHES[info.workflow_run_id] = asyncio.ensure_future(_fetch_setup(handle))
            _remember(info.workflow_run_id, await asyncio.shield(fetching))
            _FETCHES.pop(info.workflow_run_id, None)
        yield
    finally:
        beating.cancel()


async def _fetch_setup(handle: WorkflowHandle[Any, Any]) -> RunSetup:
    """The run's setup, asked of its workflow (again while a busy workflow cannot answer)."""
    for attempt in range(1, 11):
        try:
            return await handle.query(SwarmWorkflow.setup, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:
            if attempt == 10:
                raise
            await asyncio.sleep(min(0.5 * attempt, 5))
    raise AssertionError("unreachable")


def _remember(workflow_run_id: str, setup: RunSetup) -> None:
    _SETUPS[workflow_run_id] = setup
    while len(_SETUPS) > _KEPT:
        _MEMORIES.pop(next(iter(_SETUPS)), None)
        _SETUPS.pop(next(iter(_SETUPS)))


def _memory(workflow_run_id: str, run_id: str, setup: RunSetup) -> Any:
    """The run's shared memory on this worker (None without one): its Chroma server,
    opened once per worker and run."""
    if setup.memory is None:
        return None
    if workflow_run_id not in _MEMORIES:
        from graphswarm.embeddings import resolve_embeddings
        from graphswarm.memory import SharedMemory, open_chroma

        embeddings = resolve_embeddings(setup.embeddings, base_url=setup.spec.get("base_url"))
        _MEMORIES[workflow_run_id] = SharedMemory(open_chroma(setup.memory), run_id, embeddings=embeddings)
    return _MEMORIES[workflow_run_id]


def worker_plugin(settings: TemporalSettings, architectures: list[str] | None = None) -> LangGraphPlugin:
    graphs = {name: temporal_graph(name) for name in architectures or list(ARCHITECTURES)}
    return LangGraphPlugin(
        graphs=graphs,
        default_activity_options={
            "start_to_close_timeout": settings.node_timeout,
            "retry_policy": RetryPolicy(maximum_attempts=NODE_ATTEMPTS, non_retryable_error_types=["ConfigError"]),
        },
    )


async def connect(settings: TemporalSettings) -> Client:
    """A client of the Temporal service, or a `ConfigError` saying why there is none."""
    api_key = os.environ.get("TEMPORAL_API_KEY") or None
    tls = bool(api_key) or os.environ.get("TEMPORAL_TLS", "").lower() in ("1", "true", "yes")
    try:
        client = await asyncio.wait_for(
            Client.connect(
                settings.address,
                namespace=settings.namespace,
                api_key=api_key,
                tls=tls,
                data_converter=pydantic_data_converter,
            ),
            timeout=15,
        )
        await client.workflow_service.describe_namespace(_describe(settings.namespace))
    except (TimeoutError, RuntimeError, OSError) as exc:
        raise ConfigError(f"cannot reach Temporal at {settings.address}: {_first_line(exc)}") from None
    except Exception as exc:
        if "not found" in str(exc).lower():
            raise ConfigError(
                f"Temporal at {settings.address} has no namespace {settings.namespace!r} "
                f"(create it with: temporal operator namespace create --namespace {settings.namespace})"
            ) from None
        raise ConfigError(f"Temporal at {settings.address} refused the connection: {_first_line(exc)}") from None
    return client


def _describe(namespace: str) -> Any:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    return DescribeNamespaceRequest(namespace=namespace)


def _first_line(exc: BaseException) -> str:
    from graphswarm.errors import first_line

    return first_line(exc)


async def run_worker(
    settings: TemporalSettings,
    *,
    max_concurrent: int | None = None,
    architectures: list[str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the task queue until cancelled: the runs' workflows and their nodes
    (`on_ready` is called once connected); SIGINT or SIGTERM stops it."""
    client = await connect(settings)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[SwarmWorkflow],
        plugins=[worker_plugin(settings, architectures)],
        max_concurrent_activities=max_concurrent,
        # Nodes and routing build agents from plain data; LangGraph runs outside the sandbox.
        workflow_runner=UnsandboxedWorkflowRunner(),
        # LangGraph may think for seconds between two awaits when thousands of agents
        # answer in one step: that is work, not the deadlock Temporal would report.
        debug_mode=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    async with worker:  # leaving it shuts the worker down: its nodes in flight go to other workers
        if on_ready is not None:
            on_ready()
        await stop.wait()


def _outcome(result: asyncio.Future[Any], run_id: str) -> dict[str, Any]:
    """A finished workflow's state, or our error when it was cancelled or its workers
    could not run it."""
    try:
        return result.result()
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, CancelledError):
            raise RunCancelledError(run_id) from None
        if isinstance(cause, ApplicationError) and cause.type == NOT_HOSTED:
            raise ConfigError(cause.message) from None
        raise


class TemporalEngine:
    """Executes a `Runner`'s runs on Temporal (`Runner(db, temporal=TemporalSettings(...))`).

    The run's record stays in the runner's database (so `runs`, `show` and `report`
    list and read it) with where it runs; its state is the workflow's."""

    POLL_S = 0.25

    def __init__(self, settings: TemporalSettings) -> None:
        self.settings = settings
        self._client: Client | None = None

    @classmethod
    def of(cls, record: RunRecord) -> TemporalEngine:
        if not record.temporal:
            raise ConfigError(f"run {record.run_id} did not run on Temporal")
        return cls(TemporalSettings.model_validate(record.temporal))

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    async def start(self, record: RunRecord, objective: str, *, embeddings: str | None = None) -> None:
        client = await self.client()
        await self._check_workers(client)
        run = SwarmRun(
            record.run_id, record.architecture, objective, record.spec, record.budget, record.memory, embeddings
        )
        await client.start_workflow(
            SwarmWorkflow.run,
            run,
            id=record.run_id,
            task_queue=self.settings.task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )

    async def _check_workers(self, client: Client) -> None:
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        queue = self.settings.task_queue
        request = DescribeTaskQueueRequest(namespace=self.settings.namespace, task_queue=TaskQueue(name=queue))
        # A worker that has just started may not have polled yet: give it a moment.
        for _ in range(WORKER_WAIT_S * 4):
            if (await client.workflow_service.describe_task_queue(request)).pollers:
                return
            await asyncio.sleep(0.25)
        raise ConfigError(
            f"no worker serves task queue {queue} at {self.settings.address}: start one with "
            f"graphswarm worker --temporal {self.settings.address} --task-queue {queue}"
        )

    async def resume(self, record: RunRecord, decision: Any) -> None:
        """Answer the run's pause (a running run is followed as it is)."""
        handle = (await self.client()).get_workflow_handle(record.run_id)
        progress = await handle.query(SwarmWorkflow.progress, 0)
        if progress.pauses:
            await handle.execute_update(SwarmWorkflow.resume, args=[decision, record.budget])

    async def follow(
        self, record: RunRecord, on_update: Callable[[str, dict[str, Any]], None] | None = None
    ) -> Progress:
        """Wait until the run ends or pauses, passing on its node updates as they come."""
        handle = (await self.client()).get_workflow_handle(record.run_id)
        result = asyncio.ensure_future(handle.result())
        seen = 0
        try:
            while True:
                finished = await asyncio.wait({result}, timeout=self.POLL_S)
                try:
                    progress = await handle.query(SwarmWorkflow.progress, seen, rpc_timeout=QUERY_TIMEOUT)
                except RPCError:  # a busy workflow answers later; its result is what counts
                    progress = Progress()
                for node, update in progress.updates:
                    if on_update is not None:
                        on_update(node, update)
                seen += len(progress.updates)
                if finished[0]:
                    return Progress(state=_outcome(result, record.run_id))
                if progress.pauses:
                    return progress
        finally:
            result.cancel()

    async def read(self, record: RunRecord) -> Progress:
        """The run's state and pauses as the workflow holds them."""
        handle = (await self.client()).get_workflow_handle(record.run_id)
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return Progress(state=await handle.result())
        progress = await handle.query(SwarmWorkflow.progress, 0)
        progress.updates = []
        return progress

    async def steps(self, record: RunRecord) -> list[Step]:
        """The run's history as `history` shows it: one step per node that finished (an
        activity completed in the workflow's history), with the model calls it made."""
        client = await self.client()
        scheduled: dict[int, str] = {}
        steps: list[Step] = []
        async for event in client.get_workflow_handle(record.run_id).fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                node = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = node.split(".", 1)[-1]
            elif event.HasField("activity_task_completed_event_attributes"):
                done = event.activity_task_completed_event_attributes
                [output] = await client.data_converter.decode(done.result.payloads) or [{}]
                update = (output or {}).get("result") or {}
                steps.append(
                    Step(
                        checkpoint_id=f"event {event.event_id}",
                        step=len(steps) + 1,
                        source=scheduled.get(done.scheduled_event_id, "?"),
                        next=[],
                        created_at=event.event_time.ToDatetime().isoformat(),
                        calls=update.get("calls", []) if isinstance(update, dict) else [],
                    )
                )
        return steps

    async def cancel(self, record: RunRecord) -> None:
        await (await self.client()).get_workflow_handle(record.run_id).cancel()
