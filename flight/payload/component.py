"""The payload component: compute jobs queued, run on worker threads, checkpointed, accounted.

A job runs model M (by sha256) on the N tiles of one .npy input, one inference per tile, before a
deadline (mission TAI seconds). Jobs run as tasks of the component's `run()`, each tile through
the C core on a worker thread (`asyncio.to_thread`: the core releases the GIL). The power
governor decides how many run and which may start (`apply(plan)`) and can stop them all at once
(`shed`); with no governor on the node, up to `max_workers` run in (priority, deadline, id) order.

Every `batch_tiles` tiles the batch's outputs are written (atomically) and then recorded in the
job database, so a restart resumes a job from its last checkpoint and a killed batch is simply
run again with the same result. See docs/payload.md.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from flight.inference import InferenceError
from flight.payload import storage
from flight.payload.jobs import (
    ACTIVE_STATES,
    Job,
    JobRefused,
    JobState,
    JobStore,
    JobStoreError,
    JobView,
    PayloadError,
)
from flight.payload.models import ModelInfo, ModelLibrary, ModelRefused, check_sha256
from flight.payload.plan import PayloadPlan
from flight.runtime.clock import MissionClock
from flight.runtime.component import (
    Arg,
    CommandError,
    Component,
    Event,
    Severity,
    Telemetry,
    command,
    rate_group,
)
from flight.runtime.config import PayloadSection
from flight.runtime.files import FileError, check_name
from flight.runtime.store import Counter, Store, StoreError

MAX_ACTIVE_JOBS = 1024
"""Jobs queued, running or paused at once; a SUBMIT beyond is refused ("queue full")."""
LIST_MAX_JOBS = 16
"""JOB_STATUS events one LIST sends at most (active jobs first, in the order they would run)."""
CHECKPOINT_RETRY_S = 30.0
"""After a checkpoint could not be written (a full disk), the job waits this long to retry."""
DEFAULT_TILE_TIME_S = 1.0
"""`tile_time_s` before any tile was measured and with no simulated tile time configured."""
_ID_RESERVE = 16  # job ids reserved per counter write
_MAX_JOB_ID = 2**32 - 1  # job ids are u32 on the wire
_log = logging.getLogger("flight.payload")


class FileService(Protocol):
    """What the payload uses of the node's file service (flight.runtime.files.FileTransfer)."""

    @property
    def directory(self) -> Path: ...

    def path(self, name: str) -> Path: ...

    def downlink(self, path: Path, destination_name: str) -> int: ...


def _default_key(job: Job) -> tuple[int, float, int]:
    return (-job.priority, job.deadline_tai_s, job.job_id)


def _rows(output: np.ndarray) -> np.ndarray:
    """One tile's output as rows of the result: its batch axis of 1 dropped into the stack."""
    return output if output.shape[:1] == (1,) else output[np.newaxis]


class Payload(Component):
    """The compute payload: jobs queued, run through the inference core, checkpointed, stored."""

    JOBS_QUEUED = Telemetry("u16", doc="Jobs waiting to start for the first time.")
    JOBS_PAUSED = Telemetry("u16", doc="Jobs started and paused (plan, shed, restart, disk).")
    JOBS_RUNNING = Telemetry("u16", doc="Jobs running now.")
    JOBS_DONE = Telemetry("u32", doc="Jobs completed (their results are stored).")
    JOBS_FAILED = Telemetry("u32", doc="Jobs failed (an inference or input error).")
    JOBS_EXPIRED = Telemetry("u32", doc="Jobs whose deadline passed before they were done.")
    JOBS_CANCELLED = Telemetry("u32", doc="Jobs cancelled by command.")
    BUSY_WORKERS = Telemetry("u16", doc="Workers holding a job now.")
    PLAN_WORKERS = Telemetry("u16", doc="Workers the governor's plan allows (max_workers if none).")
    TILES_DONE = Telemetry("u64", doc="Tile outputs kept (checkpointed), lifetime.")
    ENERGY_J = Telemetry("f64", units="J", doc="Energy spent by jobs, lifetime.")
    LAST_JOB_ENERGY_J = Telemetry("f32", units="J", doc="Energy of the last job completed.")
    ENERGY_PER_TILE_J = Telemetry(
        "f32", units="J", doc="ENERGY_J / TILES_DONE: energy per kept inference, re-runs included."
    )
    PAYLOAD_POWER_W = Telemetry("f32", units="W", doc="What the payload draws now.")
    POWER_MEASURED = Telemetry("bool", doc="PAYLOAD_POWER_W is measured (else modelled).")
    MODELS = Telemetry("u16", doc="Models kept on board.")
    CHECKPOINT_FAILURES = Telemetry("u32", doc="Checkpoints not written (a full disk).")

    JOB_ACCEPTED = Event(
        Severity.INFORMATIVE,
        "job {job_id} accepted: {tiles} tiles of model {model}, priority {priority}",
        job_id=Arg("u32"),
        tiles=Arg("u32"),
        model=Arg("string", max_length=16),
        priority=Arg("u8"),
    )
    JOB_REFUSED = Event(Severity.LOW, "job refused: {reason}", reason=Arg("string", max_length=200))
    JOB_STARTED = Event(
        Severity.INFORMATIVE,
        "job {job_id} started at tile {tiles_done} of {tiles_total}",
        job_id=Arg("u32"),
        tiles_done=Arg("u32"),
        tiles_total=Arg("u32"),
    )
    JOB_PAUSED = Event(
        Severity.INFORMATIVE,
        "job {job_id} paused at tile {tiles_done}: {reason}",
        job_id=Arg("u32"),
        tiles_done=Arg("u32"),
        reason=Arg("string", max_length=120),
    )
    JOB_DONE = Event(
        Severity.INFORMATIVE,
        "job {job_id} done: {tiles} tiles, {energy_j:.1f} J, result sha256 {result}",
        job_id=Arg("u32"),
        tiles=Arg("u32"),
        energy_j=Arg("f32"),
        result=Arg("string", max_length=16),
    )
    JOB_FAILED = Event(
        Severity.MEDIUM,
        "job {job_id} failed: {reason}",
        job_id=Arg("u32"),
        reason=Arg("string", max_length=200),
    )
    JOB_EXPIRED = Event(
        Severity.LOW,
        "job {job_id} expired at tile {tiles_done} of {tiles_total}: its deadline passed",
        job_id=Arg("u32"),
        tiles_done=Arg("u32"),
        tiles_total=Arg("u32"),
    )
    JOB_CANCELLED = Event(
        Severity.INFORMATIVE,
        "job {job_id} cancelled at tile {tiles_done}",
        job_id=Arg("u32"),
        tiles_done=Arg("u32"),
    )
    JOB_STATUS = Event(
        Severity.INFORMATIVE,
        "job {job_id} {state}: {tiles_done}/{tiles_total} tiles, {energy_j:.1f} J, "
        "priority {priority}, deadline {deadline_tai_s:.0f}",
        job_id=Arg("u32"),
        state=Arg("enum", values=JobState),
        tiles_done=Arg("u32"),
        tiles_total=Arg("u32"),
        energy_j=Arg("f32"),
        priority=Arg("u8"),
        deadline_tai_s=Arg("f64"),
    )
    JOB_LIST = Event(
        Severity.INFORMATIVE,
        "{active} active jobs, {final} final; {shown} shown",
        active=Arg("u16"),
        final=Arg("u32"),
        shown=Arg("u16"),
    )
    RESULT_QUEUED = Event(
        Severity.INFORMATIVE,
        "result of job {job_id} queued for downlink as {name} (transaction {transaction})",
        job_id=Arg("u32"),
        name=Arg("string", max_length=64),
        transaction=Arg("u32"),
    )
    MODEL_ADDED = Event(
        Severity.INFORMATIVE,
        "model {model} added from {file_name}: input {input}, output {output}",
        model=Arg("string", max_length=16),
        file_name=Arg("string", max_length=100),
        input=Arg("string", max_length=80),
        output=Arg("string", max_length=80),
    )
    MODEL_REFUSED = Event(
        Severity.LOW,
        "model {file_name} refused: {reason}",
        file_name=Arg("string", max_length=100),
        reason=Arg("string", max_length=200),
    )
    PAYLOAD_SHED = Event(
        Severity.MEDIUM,
        "payload shed ({jobs} jobs stopped): {reason}",
        jobs=Arg("u16"),
        reason=Arg("string", max_length=120),
    )
    CHECKPOINT_FAILED = Event(
        Severity.MEDIUM,
        "job {job_id}: checkpoint not written, paused for {retry_s:.0f} s: {reason}",
        job_id=Arg("u32"),
        retry_s=Arg("f32"),
        reason=Arg("string", max_length=160),
    )
    STORE_FAILED = Event(
        Severity.HIGH,
        "payload job database: {reason}",
        reason=Arg("string", max_length=200),
    )
    JOB_OFFLOADED = Event(
        Severity.INFORMATIVE,
        "job {job_id} offloaded: {reason}",
        job_id=Arg("u32"),
        reason=Arg("string", max_length=120),
    )

    def __init__(
        self,
        config: PayloadSection | None = None,
        *,
        state_dir: Path,
        files: FileService | None = None,
        files_dir: Path | None = None,
        power_w: Callable[[], float | None] = lambda: None,
        clock: MissionClock | None = None,
        backend: str = "native",
        name: str = "payload",
    ) -> None:
        """`files` is the node's file service (taken from the node by `bind_node` if not given);
        `files_dir`, if given, is where uploads are looked up instead of its directory.
        `power_w` measures the payload's power where the board can (None: modelled instead).
        `clock` gives mission time when the payload is not hosted by a Node (tests)."""
        super().__init__(name)
        self.config = config = config or PayloadSection()
        self._files = files
        self._files_dir = None if files_dir is None else Path(files_dir)
        self._power_w = power_w
        self._clock = clock
        self._node: Any = None
        try:
            self.paths = storage.PayloadFiles(Path(state_dir) / "payload")
            self._ids = Counter(Store(self.paths.root), "job_id", reserve=_ID_RESERVE)
        except StoreError as error:
            raise PayloadError(str(error)) from None
        self.store = JobStore(self.paths.database)
        self.models = ModelLibrary(self.paths.models, backend=backend)
        self._jobs: dict[int, Job] = {job.job_id: job for job in self.store.load()}
        for job in self._jobs.values():
            if job.state is JobState.RUNNING:
                job.state = JobState.PAUSED  # it was running when the node stopped
                job.reason = "restart"
        self.paths.sweep(self._jobs)
        totals = self.store.totals()
        self._tiles_kept = int(totals.get("tiles", 0))
        self._energy_j = float(totals.get("energy_j", 0.0))
        self._plan: PayloadPlan | None = None
        self._order_index: dict[int, int] = {}  # job id -> place in the plan's order
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._pause_requests: dict[int, str] = {}
        self._held: set[int] = set()  # queued jobs being offered to another node (flight.isl)
        self._wake = asyncio.Event()
        self._tile_times: dict[str, tuple[int, float]] = {}  # model -> (tiles, seconds)
        # Energy accounting: the power and busy jobs sampled at the last `_account`.
        self._accounted_at_s: float | None = None
        self._accounted_power_w = 0.0
        self._accounted_jobs: tuple[Job, ...] = ()
        self._power_measured = False
        self._sensor_failed = False
        self._models_kept = len(self.models.known())
        self._publish()

    def bind_node(self, node: Any) -> None:
        self._node = node
        if self._files is None:
            self._files = getattr(node, "files", None)

    # -- what others use: the governor, the imaging pipeline, the emulator -------------------------

    def jobs(self, states: Collection[JobState] | None = None) -> list[JobView]:
        """Snapshots of the jobs (of `states`), by id."""
        return [job.view() for job in self._jobs.values() if states is None or job.state in states]

    @property
    def busy_workers(self) -> int:
        """Workers holding a job now (0 at once after `shed`)."""
        return len(self._tasks)

    @property
    def plan(self) -> PayloadPlan | None:
        """The last plan applied, or None if none ever was (then: all workers, priority order)."""
        return self._plan

    def modelled_power_w(self, busy: int | None = None) -> float:
        """The payload's power by the configured model with `busy` workers (default: now)."""
        config = self.config
        busy = self.busy_workers if busy is None else busy
        share = min(busy, config.max_workers) / config.max_workers
        return config.idle_power_w + (config.busy_power_w - config.idle_power_w) * share

    def power_w(self) -> float:
        """What the payload draws now: measured where the board can, else modelled."""
        measured = self._measured_w()
        return self.modelled_power_w() if measured is None else measured

    def _measured_w(self) -> float | None:
        try:
            measured = self._power_w()
        except Exception as error:  # a sensor that fails is no reason to stop: model it
            if not self._sensor_failed:
                _log.warning("payload power sensor failed (%s); modelled instead", error)
            self._sensor_failed = True
            return None
        self._sensor_failed = False
        return None if measured is None else float(measured)

    def tile_time_s(self, job: JobView | Job | str) -> float:
        """Seconds one tile of this job (or model hash) takes: the mean measured on board for its
        model, else for any model, else the configured simulated tile time, else 1 s."""
        model = job if isinstance(job, str) else job.model_sha256
        tiles, seconds = self._tile_times.get(model, (0, 0.0))
        if tiles:
            return seconds / tiles
        all_tiles = sum(n for n, _ in self._tile_times.values())
        if all_tiles:
            return sum(s for _, s in self._tile_times.values()) / all_tiles
        if self.config.simulated_tile_time_s > 0:
            return self.config.simulated_tile_time_s
        return DEFAULT_TILE_TIME_S

    def apply(self, plan: PayloadPlan) -> None:
        """Follow `plan`: start jobs from `plan.order` while fewer than `plan.workers` run; if
        more run, pause the lowest-ranked at their next tile boundary (checkpointed work kept)."""
        self._plan = plan
        self._order_index = {job_id: i for i, job_id in reversed(list(enumerate(plan.order)))}
        self._dispatch()
        self._publish()

    def shed(self, reason: str) -> None:
        """Stop every job now (under-voltage): `busy_workers` is 0 when this returns. The tiles
        in flight are discarded; the jobs are PAUSED and resume from their last checkpoint when
        a plan allows work again."""
        was_shed = self._plan is not None and self._plan.workers == 0 and not self._tasks
        self._plan = PayloadPlan(0, (), f"shed: {reason}")
        self._order_index = {}
        self._pause_requests.clear()
        stopped = 0
        for job_id in list(self._tasks):
            self._stop(self._jobs[job_id], JobState.PAUSED, f"shed: {reason}")
            stopped += 1
        if not was_shed:  # said once, not at every tick of a governor that keeps shedding
            self.emit(self.PAYLOAD_SHED, jobs=stopped, reason=reason)
        self._publish()

    def submit_job(
        self,
        model_sha256: str,
        input_name: str,
        *,
        priority: int,
        deadline_tai_s: float,
        value: float,
        energy_estimate_j: float,
    ) -> int:
        """Queue a job on the uploaded .npy file `input_name`; its id. JobRefused (and the event
        JOB_REFUSED) saying why if it cannot run."""
        try:
            return self._submit(
                model_sha256,
                input_name,
                None,
                priority=priority,
                deadline_tai_s=deadline_tai_s,
                value=value,
                energy_estimate_j=energy_estimate_j,
            )
        except PayloadError as error:
            self.emit(self.JOB_REFUSED, reason=str(error))
            raise JobRefused(str(error)) from None

    def submit_tiles(
        self,
        model_sha256: str,
        tiles: np.ndarray,
        *,
        priority: int,
        deadline_tai_s: float,
        value: float,
        energy_estimate_j: float,
        input_name: str = "<tiles>",
    ) -> int:
        """Queue a job on `tiles` (N tiles, as an input file would hold them): the onboard
        imaging pipeline and the emulator, which have their tiles in memory. `input_name` tags
        the job (JobView.input_name): the ISL names a job it runs for another node by it."""
        try:
            return self._submit(
                model_sha256,
                input_name,
                tiles,
                priority=priority,
                deadline_tai_s=deadline_tai_s,
                value=value,
                energy_estimate_j=energy_estimate_j,
            )
        except PayloadError as error:
            self.emit(self.JOB_REFUSED, reason=str(error))
            raise JobRefused(str(error)) from None

    async def add_model(self, source: Path, sha256: str) -> ModelInfo:
        """Verify the model file `source` against `sha256`, check that the core runs it and keep
        it (MODEL_ADDED); ModelRefused (and MODEL_REFUSED) with the reason otherwise."""
        name = Path(source).name
        try:
            info = await asyncio.to_thread(self.models.add, Path(source), sha256)
        except ModelRefused as error:
            self.emit(self.MODEL_REFUSED, file_name=name, reason=str(error))
            raise
        self.emit(
            self.MODEL_ADDED,
            model=info.sha256[:16],
            file_name=name,
            input=str(info.input),
            output=str(info.output),
        )
        self._models_kept = len(self.models.known())
        self._publish()
        return info

    def cancel(self, job_id: int) -> None:
        """Cancel a job that is not final yet (PayloadError saying why otherwise)."""
        job = self._job(job_id)
        if job.state.final:
            raise PayloadError(f"job {job_id} is already {job.state.name}")
        self._stop(job, JobState.CANCELLED, "cancelled")
        self._dispatch()
        self._publish()

    # -- offload (flight.isl): a queued job held, then handed to another node ----------------------

    def hold(self, job_id: int) -> None:
        """Do not start this queued job (it is being offered to another node) until `unhold`.
        PayloadError if it has started: a job that ran here is never offloaded."""
        job = self._job(job_id)
        if job.state is not JobState.QUEUED:
            raise PayloadError(f"job {job_id} is {job.state.name}; only a queued job is held")
        self._held.add(job_id)

    def unhold(self, job_id: int) -> None:
        """The offer came to nothing: the job may start here again."""
        self._held.discard(job_id)
        self._dispatch()

    def held(self, job_id: int) -> bool:
        return job_id in self._held

    def input_path(self, job_id: int) -> Path:
        """The input (.npy) of an active job (PayloadError once it is final: it is deleted)."""
        job = self._job(job_id)
        if job.state.final:
            raise PayloadError(f"job {job_id} is {job.state.name}; its input is deleted")
        return self.paths.input(job_id)

    def mark_offloaded(self, job_id: int, reason: str) -> None:
        """A held job now runs on another node: final here (OFFLOADED), never run, not missed.
        Does nothing if it already is."""
        job = self._job(job_id)
        self._held.discard(job_id)
        if job.state is JobState.OFFLOADED:
            return
        if job.state is not JobState.QUEUED:
            raise PayloadError(f"job {job_id} is {job.state.name}; only a queued job is offloaded")
        self._stop(job, JobState.OFFLOADED, reason, quiet=True)
        self.emit(self.JOB_OFFLOADED, job_id=job_id, reason=reason)
        self._dispatch()
        self._publish()

    def result_path(self, job_id: int) -> Path:
        """The result file of a DONE job (PayloadError saying why if there is none)."""
        job = self._job(job_id)
        if job.state is not JobState.DONE:
            raise PayloadError(f"job {job_id} is {job.state.name}; a result exists once DONE")
        return self.paths.result(job_id)

    # -- commands ----------------------------------------------------------------------------------

    @command(
        model_sha256=Arg("string", max_length=64, doc="The model's sha256 (ADD_MODEL first)."),
        input_name=Arg("string", max_length=100, doc="The uploaded .npy file of N tiles."),
        priority=Arg("u8", doc="Higher runs first."),
        deadline_tai_s=Arg("f64", doc="Mission time (TAI s) by which it must be done."),
        value=Arg("f32", minimum=0.0, doc="What completing it is worth (the governor weighs it)."),
        energy_estimate_j=Arg("f32", minimum=0.0, doc="The submitter's estimate of its energy."),
    )
    async def SUBMIT(
        self,
        model_sha256: str,
        input_name: str,
        priority: int,
        deadline_tai_s: float,
        value: float,
        energy_estimate_j: float,
    ) -> None:
        """Queue a job: run a model on every tile of an uploaded .npy file (JOB_ACCEPTED)."""
        try:
            self.submit_job(
                model_sha256,
                input_name,
                priority=priority,
                deadline_tai_s=deadline_tai_s,
                value=value,
                energy_estimate_j=energy_estimate_j,
            )
        except JobRefused as error:
            raise CommandError(str(error)) from None

    @command(job_id=Arg("u32"))
    async def CANCEL(self, job_id: int) -> None:
        """Cancel a job that is not final; its checkpoints and input are deleted."""
        try:
            self.cancel(job_id)
        except PayloadError as error:
            raise CommandError(str(error)) from None

    @command
    async def LIST(self) -> None:
        """JOB_LIST, then JOB_STATUS for the active jobs (running first, then in the order they
        would start), then the latest final ones, at most LIST_MAX_JOBS in all."""
        active = sorted(
            (j for j in self._jobs.values() if j.state in ACTIVE_STATES),
            key=lambda j: (j.job_id not in self._tasks, self._rank(j)),
        )
        final = sorted((j for j in self._jobs.values() if j.state.final), key=lambda j: -j.job_id)
        shown = (active + final)[:LIST_MAX_JOBS]
        self.emit(self.JOB_LIST, active=len(active), final=len(final), shown=len(shown))
        for job in shown:
            self._status(job)

    @command(job_id=Arg("u32"))
    async def STATUS(self, job_id: int) -> None:
        """JOB_STATUS of one job: state, tiles done of total, energy used."""
        try:
            self._status(self._job(job_id))
        except PayloadError as error:
            raise CommandError(str(error)) from None

    @command(job_id=Arg("u32"))
    async def GET_RESULT(self, job_id: int) -> None:
        """Downlink the result (.npy, the tiles' outputs stacked) of a DONE job by file transfer,
        as job_<id>.npy (RESULT_QUEUED)."""
        try:
            path = self.result_path(job_id)
        except PayloadError as error:
            raise CommandError(str(error)) from None
        if self._files is None:
            raise CommandError("no file service on this node: results cannot go down")
        name = f"job_{job_id}.npy"
        try:
            transaction = self._files.downlink(path, name)
        except (FileError, OSError) as error:
            raise CommandError(f"result of job {job_id} not queued: {error}") from None
        self.emit(self.RESULT_QUEUED, job_id=job_id, name=name, transaction=transaction)

    @command(
        file_name=Arg("string", max_length=100, doc="The uploaded ONNX file."),
        sha256=Arg("string", max_length=64, doc="Its sha256, checked before it is used."),
    )
    async def ADD_MODEL(self, file_name: str, sha256: str) -> None:
        """Keep an uploaded ONNX model after checking its sha256 and that the core runs it."""
        try:
            source = self._upload(file_name)
        except PayloadError as error:
            self.emit(self.MODEL_REFUSED, file_name=file_name, reason=str(error))
            raise CommandError(str(error)) from None
        try:
            await self.add_model(source, sha256)
        except ModelRefused as error:
            raise CommandError(str(error)) from None

    # -- rate groups -------------------------------------------------------------------------------

    @rate_group("10Hz")
    def account_energy(self) -> None:
        """Integrate the payload's power into the jobs' energy (O(busy workers))."""
        self._account()

    @rate_group("1Hz")
    def expire_jobs(self) -> None:
        """Jobs whose deadline passed before they were done become EXPIRED; telemetry."""
        try:
            now = self._now_tai()
        except PayloadError:
            now = None
        expired = [
            job
            for job in self._jobs.values()
            if now is not None and job.state in ACTIVE_STATES and job.deadline_tai_s <= now
        ]
        for job in expired:
            self._stop(job, JobState.EXPIRED, "deadline passed")
        if expired:
            self._dispatch()
        self._publish()

    # -- the executor ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch jobs as the plan allows; each runs as a task of this one."""
        self._tasks.clear()
        for job in self._jobs.values():
            if job.state is JobState.RUNNING:  # this task was restarted (health): they stopped
                job.state = JobState.PAUSED
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                while True:
                    self._wake.clear()
                    self._dispatch()
                    self._publish()
                    retries = [
                        job.retry_after_s
                        for job in self._jobs.values()
                        if job.state in ACTIVE_STATES and job.retry_after_s > loop.time()
                    ]
                    timeout = min(retries) - loop.time() if retries else None
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
        finally:
            self._group = None
            self._tasks.clear()
            self._pause_requests.clear()

    def _allowed_workers(self) -> int:
        if self._plan is None:
            return self.config.max_workers
        return max(0, min(self._plan.workers, self.config.max_workers))

    def _rank(self, job: Job) -> tuple[int, int, float, int]:
        """Lower runs first: place in the plan's order (jobs not in it after), then priority,
        deadline and id."""
        position = self._order_index.get(job.job_id, len(self._order_index))
        return (position, *_default_key(job))

    def _startable(self) -> Iterable[Job]:
        if self._plan is None:
            waiting = [
                job
                for job in self._jobs.values()
                if job.state in (JobState.QUEUED, JobState.PAUSED)
            ]
            return sorted(waiting, key=_default_key)
        return (self._jobs[i] for i in self._plan.order if i in self._jobs)

    def _dispatch(self) -> None:
        """Start what the plan allows; ask the lowest-ranked to pause if too many run."""
        if self._group is None:
            return
        workers = self._allowed_workers()
        running = sorted((self._jobs[i] for i in self._tasks), key=self._rank)
        excess = len(running) - workers
        reason = self._plan.reason if self._plan is not None else "fewer workers"
        self._pause_requests = {
            job.job_id: self._pause_requests.get(job.job_id, reason)
            for job in (running[len(running) - excess :] if excess > 0 else [])
        }
        if excess >= 0:
            return
        now = asyncio.get_running_loop().time()
        for job in self._startable():
            if len(self._tasks) >= workers:
                break
            if (
                job.job_id in self._tasks
                or job.job_id in self._held
                or job.state not in (JobState.QUEUED, JobState.PAUSED)
                or job.retry_after_s > now
            ):
                continue
            self._start(job)

    def _start(self, job: Job) -> None:
        assert self._group is not None
        try:
            self.store.set_state(job, JobState.RUNNING)
        except JobStoreError as error:
            self._store_failed(error)
            job.retry_after_s = asyncio.get_running_loop().time() + CHECKPOINT_RETRY_S
            return
        job.state = JobState.RUNNING
        job.reason = ""
        self.emit(
            self.JOB_STARTED,
            job_id=job.job_id,
            tiles_done=job.tiles_checkpointed,
            tiles_total=job.tiles_total,
        )
        self._tasks[job.job_id] = self._group.create_task(
            self._work(job), name=f"payload.job{job.job_id}"
        )
        self._account()

    def _finished(self, job: Job) -> None:
        """The job's own task is ending (done, failed, paused at a boundary): free its worker."""
        task = self._tasks.get(job.job_id)
        if task is not None and task is asyncio.current_task():
            self._account()
            del self._tasks[job.job_id]
            self._account()
            self._wake.set()

    async def _work(self, job: Job) -> None:
        """Run `job` from its last checkpoint to DONE, or until paused, stopped or failed."""
        loop = asyncio.get_running_loop()
        session = None
        try:
            session = await asyncio.to_thread(self.models.acquire, job.model_sha256)
            info = self.models.info(job.model_sha256)
            tiles = await asyncio.to_thread(storage.open_tiles, self.paths.input(job.job_id))
            storage.check_tiles(tiles, info.input.shape, info.input.dtype, "the job's input")
            while job.batches_done < job.batches_total:
                batch = job.batches_done
                rows = []
                for index in job.batch_range(batch):
                    if job.job_id in self._pause_requests:
                        self._pause_at_boundary(job)
                        return
                    started = loop.time()
                    tile = np.ascontiguousarray(tiles[index : index + 1])
                    outputs = await asyncio.to_thread(session.run, {info.input.name: tile})
                    remaining = self.config.simulated_tile_time_s - (loop.time() - started)
                    if remaining > 0:
                        await asyncio.sleep(remaining)
                    rows.append(_rows(outputs[info.output.name]))
                    job.live_tiles += 1
                    count, seconds = self._tile_times.get(job.model_sha256, (0, 0.0))
                    self._tile_times[job.model_sha256] = (
                        count + 1,
                        seconds + loop.time() - started,
                    )
                if not await self._checkpoint(job, batch, np.concatenate(rows)):
                    return
            await self._complete(job)
        except (InferenceError, ModelRefused, JobRefused, OSError, ValueError) as error:
            self._stop(job, JobState.FAILED, str(error))
        except asyncio.CancelledError:
            raise  # whoever cancelled it (shed, cancel, expiry, node stop) has set its state
        except Exception as error:  # a bug: the job fails, the payload goes on
            _log.exception("job %d", job.job_id)
            self._stop(job, JobState.FAILED, f"internal error {type(error).__name__}: {error}")
        finally:
            if session is not None:
                self.models.release(job.model_sha256, session)
            self._finished(job)

    def _pause_at_boundary(self, job: Job) -> None:
        reason = self._pause_requests.pop(job.job_id)
        self._stop(job, JobState.PAUSED, reason)

    async def _checkpoint(self, job: Job, batch: int, outputs: np.ndarray) -> bool:
        """Keep batch `batch`: its file first, then its row. False (job paused) if not kept."""
        try:
            await asyncio.to_thread(
                storage.write_batch, self.paths.batch(job.job_id, batch), outputs
            )
        except StoreError as error:
            self._checkpoint_failed(job, str(error))
            return False
        self._account()
        energy_j = job.live_energy_j
        try:
            self.store.checkpoint(job, batch, len(outputs), energy_j)
        except JobStoreError as error:
            self._checkpoint_failed(job, str(error))
            return False
        job.batches_done = batch + 1
        job.energy_used_j += energy_j
        job.live_energy_j = 0.0
        job.live_tiles = 0
        self._tiles_kept += len(outputs)
        self._energy_j += energy_j
        return True

    def _checkpoint_failed(self, job: Job, reason: str) -> None:
        self.telemetry.CHECKPOINT_FAILURES = (self.telemetry.CHECKPOINT_FAILURES + 1) & 0xFFFF_FFFF
        job.retry_after_s = asyncio.get_running_loop().time() + CHECKPOINT_RETRY_S
        self.emit(
            self.CHECKPOINT_FAILED, job_id=job.job_id, retry_s=CHECKPOINT_RETRY_S, reason=reason
        )
        self._stop(job, JobState.PAUSED, "checkpoint not written", quiet=True)

    async def _complete(self, job: Job) -> None:
        """Stack the batches into the result, write it, then record the job DONE (once)."""
        batches = [self.paths.batch(job.job_id, k) for k in range(job.batches_total)]

        def assemble() -> str:
            result = np.concatenate([storage.read_npy(path) for path in batches])
            return storage.write_npy(self.paths.result(job.job_id), result)

        try:
            result_sha256 = await asyncio.to_thread(assemble)
        except StoreError as error:
            self._checkpoint_failed(job, str(error))
            return
        if self._now_tai() > job.deadline_tai_s:
            self._stop(job, JobState.EXPIRED, "deadline passed")
            return
        self._account()
        energy_j = job.live_energy_j
        try:
            done = self.store.complete(job, result_sha256, energy_j)
        except JobStoreError as error:
            self._checkpoint_failed(job, str(error))
            return
        job.energy_used_j += energy_j
        self._energy_j += energy_j
        job.live_energy_j = 0.0
        job.live_tiles = 0
        job.result_sha256 = result_sha256
        job.state = JobState.DONE
        job.completions = self.store.completions(job.job_id)
        if done:
            self.telemetry.LAST_JOB_ENERGY_J = job.energy_used_j
            self.emit(
                self.JOB_DONE,
                job_id=job.job_id,
                tiles=job.tiles_total,
                energy_j=job.energy_used_j,
                result=result_sha256[:16],
            )
        self.paths.release(job)
        self._publish()

    def _stop(self, job: Job, state: JobState, reason: str, *, quiet: bool = False) -> None:
        """Move an active job to PAUSED or a final state now: its task (if another's) cancelled,
        the work in flight discarded, its energy so far recorded, the event sent."""
        self._account()
        task = self._tasks.get(job.job_id)
        if task is not None and task is not asyncio.current_task():
            del self._tasks[job.job_id]
            task.cancel()
        self._pause_requests.pop(job.job_id, None)
        energy_j = job.live_energy_j
        try:
            self.store.set_state(job, state, reason=reason, energy_j=energy_j)
        except JobStoreError as error:
            self._store_failed(error)  # kept in memory; a restart makes it PAUSED at worst
        tiles_done = job.tiles_checkpointed
        job.state = state
        job.reason = reason
        job.energy_used_j += energy_j
        self._energy_j += energy_j
        job.live_energy_j = 0.0
        job.live_tiles = 0
        self._account()
        if state.final:
            self.paths.release(job)
        if quiet:
            return
        if state is JobState.PAUSED:
            self.emit(self.JOB_PAUSED, job_id=job.job_id, tiles_done=tiles_done, reason=reason)
        elif state is JobState.FAILED:
            self.emit(self.JOB_FAILED, job_id=job.job_id, reason=reason)
        elif state is JobState.EXPIRED:
            self.emit(
                self.JOB_EXPIRED,
                job_id=job.job_id,
                tiles_done=tiles_done,
                tiles_total=job.tiles_total,
            )
        elif state is JobState.CANCELLED:
            self.emit(self.JOB_CANCELLED, job_id=job.job_id, tiles_done=tiles_done)

    def _account(self) -> None:
        """Credit the energy since the last call to the jobs that were busy then (power split
        equally), then sample the power for the jobs busy now. Called at every change of the
        busy set, so the power is piecewise constant between calls."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return
        if self._accounted_at_s is not None and self._accounted_jobs:
            share_j = self._accounted_power_w * (now - self._accounted_at_s)
            share_j /= len(self._accounted_jobs)
            for job in self._accounted_jobs:
                if job.state is JobState.RUNNING:
                    job.live_energy_j += share_j
        self._accounted_at_s = now
        self._accounted_jobs = tuple(self._jobs[i] for i in self._tasks)
        measured = self._measured_w()
        self._power_measured = measured is not None
        self._accounted_power_w = self.modelled_power_w() if measured is None else measured

    # -- submission --------------------------------------------------------------------------------

    def _upload(self, name: str) -> Path:
        """The uploaded file `name` (in the file service's directory)."""
        try:
            if self._files_dir is not None:
                return self._files_dir / check_name(name)
            if self._files is not None:
                return self._files.path(name)
        except (ValueError, FileError) as error:
            raise JobRefused(f"file {name!r}: {error}") from None
        raise JobRefused("no file service on this node: nothing can be uploaded")

    def _submit(
        self,
        model_sha256: str,
        input_name: str,
        tiles: np.ndarray | None,
        *,
        priority: int,
        deadline_tai_s: float,
        value: float,
        energy_estimate_j: float,
    ) -> int:
        sha256 = check_sha256(model_sha256)
        if not self.models.has(sha256):
            raise JobRefused(f"unknown model {sha256[:16]}...: ADD_MODEL it first")
        if not (isinstance(priority, int) and 0 <= priority <= 255):
            raise JobRefused(f"priority {priority!r} is not in 0..255")
        for name, number in (("value", value), ("energy_estimate_j", energy_estimate_j)):
            if not (math.isfinite(number) and number >= 0):
                raise JobRefused(f"{name} {number!r} must be a finite number >= 0")
        now = self._now_tai()
        if not math.isfinite(deadline_tai_s) or deadline_tai_s <= now:
            raise JobRefused(
                f"deadline {deadline_tai_s:.0f} has passed (mission time is {now:.0f} TAI s)"
            )
        active = sum(1 for job in self._jobs.values() if job.state in ACTIVE_STATES)
        if active >= MAX_ACTIVE_JOBS:
            raise JobRefused(f"queue full: {active} jobs active; cancel some or wait")
        info = self.models.info(sha256)
        if tiles is None:
            source = self._upload(input_name)
            count = storage.inspect_input(source, info.input.shape, info.input.dtype, input_name)
        else:
            count = storage.check_tiles(tiles, info.input.shape, info.input.dtype, "the tiles")
        try:
            job_id = self._ids.next() + 1
        except StoreError as error:
            raise JobRefused(f"no job id could be reserved: {error}") from None
        if job_id > _MAX_JOB_ID:
            raise JobRefused("job ids are exhausted (u32)")
        destination = self.paths.input(job_id)
        try:
            if tiles is None:
                storage.take_input(source, destination)
            else:
                storage.write_npy(destination, np.ascontiguousarray(tiles))
        except (StoreError, OSError) as error:
            raise JobRefused(f"input not kept: {error}") from None
        job = Job(
            job_id=job_id,
            model_sha256=sha256,
            input_name=input_name,
            priority=priority,
            deadline_tai_s=float(deadline_tai_s),
            value=float(value),
            energy_estimate_j=float(energy_estimate_j),
            submitted_tai_s=now,
            tiles_total=count,
            batch_tiles=self.config.batch_tiles,
        )
        try:
            self.store.insert(job)
        except JobStoreError as error:
            with contextlib.suppress(OSError):
                destination.unlink()
            raise JobRefused(str(error)) from None
        self._jobs[job_id] = job
        self.emit(
            self.JOB_ACCEPTED, job_id=job_id, tiles=count, model=sha256[:16], priority=priority
        )
        self._dispatch()
        self._publish()
        return job_id

    # -- helpers -----------------------------------------------------------------------------------

    def _job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise PayloadError(f"no job {job_id}")
        return job

    def _now_tai(self) -> float:
        clock = getattr(self._node, "clock", None) or self._clock
        if clock is None:
            raise PayloadError("no mission clock: host the payload in a started Node")
        return clock.now_tai_s()

    def _status(self, job: Job) -> None:
        view = job.view()
        self.emit(
            self.JOB_STATUS,
            job_id=view.job_id,
            state=view.state,
            tiles_done=view.tiles_done,
            tiles_total=view.tiles_total,
            energy_j=view.energy_used_j,
            priority=view.priority,
            deadline_tai_s=view.deadline_tai_s,
        )

    def _store_failed(self, error: JobStoreError) -> None:
        _log.error("%s", error)
        self.emit(self.STORE_FAILED, reason=str(error))

    def _publish(self) -> None:
        self._account()
        counts = dict.fromkeys(JobState, 0)
        for job in self._jobs.values():
            counts[job.state] += 1
        telemetry = self.telemetry
        telemetry.JOBS_QUEUED = min(counts[JobState.QUEUED], 0xFFFF)
        telemetry.JOBS_PAUSED = min(counts[JobState.PAUSED], 0xFFFF)
        telemetry.JOBS_RUNNING = min(counts[JobState.RUNNING], 0xFFFF)
        telemetry.JOBS_DONE = counts[JobState.DONE]
        telemetry.JOBS_FAILED = counts[JobState.FAILED]
        telemetry.JOBS_EXPIRED = counts[JobState.EXPIRED]
        telemetry.JOBS_CANCELLED = counts[JobState.CANCELLED]
        telemetry.BUSY_WORKERS = self.busy_workers
        telemetry.PLAN_WORKERS = self._allowed_workers()
        live_j = sum(job.live_energy_j for job in self._jobs.values())
        telemetry.TILES_DONE = self._tiles_kept
        telemetry.ENERGY_J = self._energy_j + live_j
        telemetry.ENERGY_PER_TILE_J = (
            (self._energy_j + live_j) / self._tiles_kept if self._tiles_kept else 0.0
        )
        telemetry.PAYLOAD_POWER_W = self._accounted_power_w
        telemetry.POWER_MEASURED = self._power_measured
        telemetry.MODELS = min(self._models_kept, 0xFFFF)

    def reset_counters(self) -> None:
        self.telemetry.CHECKPOINT_FAILURES = 0

    def close(self) -> None:
        """Close the job database (tests and tools that reopen the state)."""
        self.store.close()
