"""Jobs and their persistent queue: one SQLite database (WAL, synchronous=FULL) surviving SIGKILL.

Every change of a job is one transaction, guarded by the state it expects, so a change that
already happened (before a crash, or by a racing cancel) cannot happen twice: in particular a job
becomes DONE, and its `completions` count grows, at most once.
"""

import contextlib
import math
import sqlite3
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

SCHEMA_VERSION = 1


class PayloadError(Exception):
    """Something the payload could not do, in words an operator can act on."""


class JobRefused(PayloadError):
    """A job (or model) refused at submission: the message is the reason."""


class JobStoreError(PayloadError):
    """The job database could not be read or written (a full disk, a corrupt file)."""


class JobState(IntEnum):
    """A job's state; DONE, FAILED, CANCELLED and EXPIRED are final."""

    QUEUED = 0
    RUNNING = 1
    PAUSED = 2
    DONE = 3
    FAILED = 4
    CANCELLED = 5
    EXPIRED = 6
    OFFLOADED = 7  # bound to another node over the ISL (flight.isl): it runs there, not here

    @property
    def final(self) -> bool:
        return self >= JobState.DONE


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})
FINAL_STATES = frozenset(JobState) - ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as others see it (the governor, telemetry, tests): a snapshot, never live."""

    job_id: int
    state: JobState
    priority: int
    deadline_tai_s: float
    value: float
    energy_estimate_j: float
    tiles_total: int
    tiles_done: int
    submitted_tai_s: float
    energy_used_j: float
    model_sha256: str
    input_name: str = ""  # the uploaded file's name, or the submitter's tag for in-memory tiles


@dataclass(slots=True)
class Job:
    """A job as the payload keeps it: the persisted fields, then what only this run knows."""

    job_id: int
    model_sha256: str
    input_name: str
    priority: int
    deadline_tai_s: float
    value: float
    energy_estimate_j: float
    submitted_tai_s: float
    tiles_total: int
    batch_tiles: int
    state: JobState = JobState.QUEUED
    batches_done: int = 0
    energy_used_j: float = 0.0  # persisted: up to the last checkpoint or state change
    reason: str = ""
    result_sha256: str = ""
    completions: int = 0
    # Not persisted: the batch in progress.
    live_tiles: int = 0
    live_energy_j: float = 0.0
    retry_after_s: float = -math.inf  # loop time before which the job is not restarted

    @property
    def batches_total(self) -> int:
        return -(-self.tiles_total // self.batch_tiles)

    @property
    def tiles_checkpointed(self) -> int:
        return min(self.batches_done * self.batch_tiles, self.tiles_total)

    def batch_range(self, batch: int) -> range:
        """The tile indices of batch `batch`."""
        start = batch * self.batch_tiles
        return range(start, min(start + self.batch_tiles, self.tiles_total))

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            state=self.state,
            priority=self.priority,
            deadline_tai_s=self.deadline_tai_s,
            value=self.value,
            energy_estimate_j=self.energy_estimate_j,
            tiles_total=self.tiles_total,
            tiles_done=min(self.tiles_checkpointed + self.live_tiles, self.tiles_total),
            submitted_tai_s=self.submitted_tai_s,
            energy_used_j=self.energy_used_j + self.live_energy_j,
            model_sha256=self.model_sha256,
            input_name=self.input_name,
        )


_COLUMNS = (
    "job_id",
    "model_sha256",
    "input_name",
    "priority",
    "deadline_tai_s",
    "value",
    "energy_estimate_j",
    "submitted_tai_s",
    "tiles_total",
    "batch_tiles",
    "state",
    "batches_done",
    "energy_used_j",
    "reason",
    "result_sha256",
    "completions",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    model_sha256 TEXT NOT NULL,
    input_name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    deadline_tai_s REAL NOT NULL,
    value REAL NOT NULL,
    energy_estimate_j REAL NOT NULL,
    submitted_tai_s REAL NOT NULL,
    tiles_total INTEGER NOT NULL,
    batch_tiles INTEGER NOT NULL,
    state INTEGER NOT NULL,
    batches_done INTEGER NOT NULL DEFAULT 0,
    energy_used_j REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    result_sha256 TEXT NOT NULL DEFAULT '',
    completions INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT OR IGNORE INTO totals (name, value) VALUES ('tiles', 0), ('energy_j', 0)",
)

_ACTIVE = f"state IN ({', '.join(str(int(s)) for s in sorted(ACTIVE_STATES))})"


class JobStore:
    """The job table and the payload's lifetime totals, in `path` (SQLite, WAL, fsync'd commits).

    Not thread-safe: the node's loop is its only user. Each method is one transaction.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise JobStoreError(
                    f"{self.path} has job schema {version}; this software reads "
                    f"{SCHEMA_VERSION} (written by other software: move it aside to start empty)"
                )
            with self._transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as error:
            raise self._error("cannot open", error) from None

    def _error(self, doing: str, error: sqlite3.Error) -> JobStoreError:
        text = str(error)
        if "full" in text:
            text += "; free space on that file system"
        elif "malformed" in text or "not a database" in text:
            text += "; move the file aside to start with an empty queue"
        return JobStoreError(f"payload job database {self.path}: {doing}: {text}")

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # -- reading -----------------------------------------------------------------------------------

    def load(self) -> list[Job]:
        """Every job, by id."""
        try:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY job_id"
            ).fetchall()
        except sqlite3.Error as error:
            raise self._error("cannot read the jobs", error) from None
        jobs = []
        for row in rows:
            fields = dict(zip(_COLUMNS, row, strict=True))
            fields["state"] = JobState(fields["state"])
            jobs.append(Job(**fields))
        return jobs

    def totals(self) -> dict[str, float]:
        """Lifetime totals: "tiles" (kept tile outputs) and "energy_j" (spent by jobs)."""
        try:
            return dict(self._db.execute("SELECT name, value FROM totals").fetchall())
        except sqlite3.Error as error:
            raise self._error("cannot read the totals", error) from None

    def completions(self, job_id: int) -> int:
        row = self._db.execute("SELECT completions FROM jobs WHERE job_id = ?", (job_id,))
        found = row.fetchone()
        return 0 if found is None else int(found[0])

    # -- writing -----------------------------------------------------------------------------------

    def insert(self, job: Job) -> None:
        values = [getattr(job, name) for name in _COLUMNS]
        values[_COLUMNS.index("state")] = int(job.state)
        try:
            with self._transaction():
                self._db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    values,
                )
        except sqlite3.Error as error:
            raise self._error(f"job {job.job_id} not queued", error) from None

    def set_state(
        self,
        job: Job,
        state: JobState,
        *,
        reason: str = "",
        energy_j: float = 0.0,
    ) -> bool:
        """Move an active job to `state`, adding `energy_j` spent since its last record.

        False (nothing written) if the job is already final in the database.
        """
        try:
            with self._transaction():
                changed = self._db.execute(
                    f"UPDATE jobs SET state = ?, reason = ?, energy_used_j = energy_used_j + ? "
                    f"WHERE job_id = ? AND {_ACTIVE}",
                    (int(state), reason, energy_j, job.job_id),
                ).rowcount
                if changed:
                    self._add_totals(0, energy_j)
        except sqlite3.Error as error:
            raise self._error(f"job {job.job_id} not set {state.name}", error) from None
        return bool(changed)

    def checkpoint(self, job: Job, batch: int, tiles: int, energy_j: float) -> bool:
        """Record batch `batch` of `job` as kept (its file is written), with the `tiles` and
        `energy_j` it took. False if it was already recorded or the job is no longer active."""
        try:
            with self._transaction():
                changed = self._db.execute(
                    f"UPDATE jobs SET batches_done = ?, energy_used_j = energy_used_j + ? "
                    f"WHERE job_id = ? AND batches_done = ? AND {_ACTIVE}",
                    (batch + 1, energy_j, job.job_id, batch),
                ).rowcount
                if changed:
                    self._add_totals(tiles, energy_j)
        except sqlite3.Error as error:
            raise self._error(f"job {job.job_id} batch {batch} not recorded", error) from None
        return bool(changed)

    def complete(self, job: Job, result_sha256: str, energy_j: float) -> bool:
        """Make `job` DONE and count its completion, in one transaction and at most once: False
        if it is already DONE (or otherwise final)."""
        try:
            with self._transaction():
                changed = self._db.execute(
                    f"UPDATE jobs SET state = ?, result_sha256 = ?, reason = '', "
                    f"completions = completions + 1, energy_used_j = energy_used_j + ? "
                    f"WHERE job_id = ? AND state != ? AND {_ACTIVE}",
                    (int(JobState.DONE), result_sha256, energy_j, job.job_id, int(JobState.DONE)),
                ).rowcount
                if changed:
                    self._add_totals(0, energy_j)
        except sqlite3.Error as error:
            raise self._error(f"job {job.job_id} not recorded DONE", error) from None
        return bool(changed)

    def _add_totals(self, tiles: int, energy_j: float) -> None:
        self._db.execute("UPDATE totals SET value = value + ? WHERE name = 'tiles'", (tiles,))
        self._db.execute("UPDATE totals SET value = value + ? WHERE name = 'energy_j'", (energy_j,))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the body raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            with contextlib.suppress(sqlite3.Error):  # the original error says more
                self._db.execute("ROLLBACK")
