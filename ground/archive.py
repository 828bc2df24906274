"""The ground archive: every frame received and sent, and what the packets said, in SQLite (WAL).

One file per station, created on first use. Raw frame octets are kept whatever happened to them
(accepted, rejected with the reason, stale, duplicate), so a decoder fixed later can replay them;
decoded packets are JSON; events, telemetry samples and verification reports have their own tables
so that an operator's question ("every RED value of health.CPU_PERCENT today") is one query.
"""

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, is_dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from flight.protocol.cuc import CucTime
from ground.dictionary import (
    Decoded,
    EventMessage,
    GroundError,
    HousekeepingReport,
    ParameterReport,
    RequestKey,
    Verification,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    ground_time_s REAL NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('up', 'down')),
    status TEXT NOT NULL,          -- down: accepted, rejected, stale, duplicate; up: sent, failed
    octets BLOB NOT NULL,
    virtual_channel_id INTEGER,
    frame_count INTEGER,           -- down: master channel frame count; up: N(S)
    detail TEXT                    -- why rejected; up: frame type and IV
);
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER REFERENCES frames(id),
    ground_time_s REAL NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('up', 'down')),
    apid INTEGER,
    sequence_count INTEGER,
    service INTEGER,
    subtype INTEGER,
    mission_time_s REAL,           -- TAI seconds since 1958 (CUC) for TM; NULL for TC
    octets BLOB NOT NULL,
    kind TEXT NOT NULL,            -- the decoded kind (Verification, EventMessage, ...) or error
    decoded TEXT                   -- JSON: the decoded packet, or {"error": why not}
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER REFERENCES packets(id),
    ground_time_s REAL NOT NULL,
    apid INTEGER NOT NULL,
    sequence_count INTEGER NOT NULL,
    name TEXT NOT NULL,            -- comp.COMMAND, or the PUS request (ping, parameter set, ...)
    arguments TEXT NOT NULL        -- JSON
);
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER REFERENCES packets(id),
    ground_time_s REAL NOT NULL,
    mission_time_s REAL,
    apid INTEGER NOT NULL,
    sequence_count INTEGER NOT NULL,
    command TEXT,
    stage TEXT NOT NULL,
    success INTEGER NOT NULL,
    failure_code INTEGER,
    failure_name TEXT,
    failure_data BLOB
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER REFERENCES packets(id),
    ground_time_s REAL NOT NULL,
    mission_time_s REAL,
    name TEXT NOT NULL,            -- comp.EVENT
    severity TEXT NOT NULL,
    text TEXT NOT NULL,
    arguments TEXT NOT NULL        -- JSON
);
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER REFERENCES packets(id),
    ground_time_s REAL NOT NULL,
    mission_time_s REAL,
    channel TEXT NOT NULL,         -- comp.CHANNEL
    value TEXT NOT NULL,           -- JSON
    units TEXT NOT NULL,
    limit_state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parameters (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER REFERENCES packets(id),
    ground_time_s REAL NOT NULL,
    mission_time_s REAL,
    name TEXT NOT NULL,
    value TEXT NOT NULL            -- JSON
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    ground_time_s REAL NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('up', 'down')),
    name TEXT NOT NULL,            -- the file's name at the receiver ('' if never learnt)
    source_entity_id INTEGER NOT NULL,
    transaction_sequence_number INTEGER NOT NULL,
    success INTEGER NOT NULL,      -- up: every PDU acknowledged; down: delivered and checked
    size INTEGER NOT NULL,         -- octets
    reason TEXT NOT NULL,          -- why it failed, or 'sent' / 'delivered'
    path TEXT                      -- the local file (sent, or saved in the downloads directory)
);
CREATE INDEX IF NOT EXISTS telemetry_by_channel ON telemetry (channel, id);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, id);
CREATE INDEX IF NOT EXISTS verifications_by_request ON verifications (apid, sequence_count, id);
"""


class ArchiveError(GroundError):
    """The archive file cannot be opened or written."""


def to_json(value: Any) -> str:
    """JSON of a decoded value: dataclasses as objects, bytes as hex, CUC times as seconds."""
    return json.dumps(_plain(value), sort_keys=True, allow_nan=True)


def _plain(value: Any) -> Any:
    if isinstance(value, CucTime):
        return value.seconds
    if isinstance(value, Enum):
        return value.name if not isinstance(value, str) else str(value)
    if is_dataclass(value) and not isinstance(value, type):
        out = {"kind": type(value).__name__}
        for key in value.__dataclass_fields__:  # type: ignore[attr-defined]
            out[key] = _plain(getattr(value, key))
        return out
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    return value


@dataclass(frozen=True, slots=True)
class ArchivedFrame:
    id: int
    ground_time_s: float
    direction: str
    status: str
    octets: bytes
    virtual_channel_id: int | None
    frame_count: int | None
    detail: str | None


class Archive:
    """The station's SQLite archive: a context manager; writes commit at once (WAL, NORMAL sync).

    NORMAL in WAL mode keeps every committed row across a process crash; a power cut may lose
    the last transactions, never corrupt the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> "Archive":
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                db.close()
                raise ArchiveError(
                    f"archive {self.path} has schema version {version}, this station writes "
                    f"{SCHEMA_VERSION}: give another --archive file"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as error:
            raise ArchiveError(
                f"cannot open archive {self.path}: {error}; check the path and its permissions, "
                "or give another --archive file"
            ) from None
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise ArchiveError(f"archive {self.path} is not open: use it as a context manager")
        return self._db

    def _insert(self, table: str, row: Mapping[str, Any]) -> int:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            cursor = self.db.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
            )
        except sqlite3.Error as error:
            raise ArchiveError(f"archive {self.path}: cannot write to {table}: {error}") from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- writing -----------------------------------------------------------------------------------

    def frame(
        self,
        ground_time_s: float,
        direction: str,
        status: str,
        octets: bytes,
        *,
        virtual_channel_id: int | None = None,
        frame_count: int | None = None,
        detail: str | None = None,
    ) -> int:
        return self._insert(
            "frames",
            {
                "ground_time_s": ground_time_s,
                "direction": direction,
                "status": status,
                "octets": bytes(octets),
                "virtual_channel_id": virtual_channel_id,
                "frame_count": frame_count,
                "detail": detail,
            },
        )

    def packet(
        self,
        ground_time_s: float,
        direction: str,
        octets: bytes,
        *,
        frame_id: int | None = None,
        apid: int | None = None,
        sequence_count: int | None = None,
        service: int | None = None,
        subtype: int | None = None,
        mission_time_s: float | None = None,
        kind: str,
        decoded: str | None,
    ) -> int:
        return self._insert(
            "packets",
            {
                "frame_id": frame_id,
                "ground_time_s": ground_time_s,
                "direction": direction,
                "apid": apid,
                "sequence_count": sequence_count,
                "service": service,
                "subtype": subtype,
                "mission_time_s": mission_time_s,
                "octets": bytes(octets),
                "kind": kind,
                "decoded": decoded,
            },
        )

    def command(
        self,
        ground_time_s: float,
        request: RequestKey,
        name: str,
        arguments: Mapping[str, Any],
        *,
        packet_id: int | None,
    ) -> int:
        return self._insert(
            "commands",
            {
                "packet_id": packet_id,
                "ground_time_s": ground_time_s,
                "apid": request.apid,
                "sequence_count": request.sequence_count,
                "name": name,
                "arguments": to_json(arguments),
            },
        )

    def decoded(self, ground_time_s: float, item: Decoded, *, packet_id: int | None) -> None:
        """The rows of one decoded TM packet in the table of its kind."""
        mission_time_s = item.time.seconds
        common = {
            "packet_id": packet_id,
            "ground_time_s": ground_time_s,
            "mission_time_s": mission_time_s,
        }
        if isinstance(item, Verification):
            self._insert(
                "verifications",
                {
                    **common,
                    "apid": item.request.apid,
                    "sequence_count": item.request.sequence_count,
                    "command": item.command,
                    "stage": str(item.stage),
                    "success": int(item.success),
                    "failure_code": item.failure_code,
                    "failure_name": item.failure_name,
                    "failure_data": item.failure_data,
                },
            )
        elif isinstance(item, EventMessage):
            self._insert(
                "events",
                {
                    **common,
                    "name": item.qualified_name,
                    "severity": item.severity.name,
                    "text": item.text,
                    "arguments": to_json(dict(item.args)),
                },
            )
        elif isinstance(item, HousekeepingReport):
            for sample in item.samples:
                self._insert(
                    "telemetry",
                    {
                        **common,
                        "channel": sample.channel,
                        "value": to_json(sample.value),
                        "units": sample.units,
                        "limit_state": str(sample.limit),
                    },
                )
        elif isinstance(item, ParameterReport):
            for value in item.values:
                self._insert(
                    "parameters", {**common, "name": value.name, "value": to_json(value.value)}
                )

    def transfer(
        self,
        ground_time_s: float,
        direction: str,
        name: str,
        source_entity_id: int,
        transaction_sequence_number: int,
        success: bool,
        size: int,
        reason: str,
        path: str | None,
    ) -> int:
        """One file transfer that ended: sent up whole, or come down (delivered or failed)."""
        return self._insert(
            "transfers",
            {
                "ground_time_s": ground_time_s,
                "direction": direction,
                "name": name,
                "source_entity_id": source_entity_id,
                "transaction_sequence_number": transaction_sequence_number,
                "success": int(success),
                "size": size,
                "reason": reason,
                "path": path,
            },
        )

    # -- reading: what tests and operators ask -----------------------------------------------------

    def frames(
        self, direction: str | None = None, status: str | None = None
    ) -> list[ArchivedFrame]:
        query = "SELECT * FROM frames WHERE 1"
        params: list[Any] = []
        if direction is not None:
            query += " AND direction = ?"
            params.append(direction)
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        rows = self.db.execute(query + " ORDER BY id", params).fetchall()
        return [ArchivedFrame(*row) for row in rows]

    def rows(self, table: str, where: str = "1", *params: Any) -> list[dict[str, Any]]:
        """Rows of one table as dicts (JSON columns parsed), in arrival order."""
        if table not in _TABLES:
            raise ArchiveError(f"no table {table!r} in the archive; tables: {', '.join(_TABLES)}")
        cursor = self.db.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", params)
        names = [column[0] for column in cursor.description]
        out = []
        for row in cursor.fetchall():
            record = dict(zip(names, row, strict=True))
            for key in _JSON_COLUMNS.get(table, ()):
                if record.get(key) is not None:
                    record[key] = json.loads(record[key])
            out.append(record)
        return out

    def telemetry(self, channel: str) -> list[dict[str, Any]]:
        return self.rows("telemetry", "channel = ?", channel)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return self.rows("events") if name is None else self.rows("events", "name = ?", name)

    def verifications(self, request: RequestKey | None = None) -> list[dict[str, Any]]:
        if request is None:
            return self.rows("verifications")
        return self.rows(
            "verifications", "apid = ? AND sequence_count = ?", request.apid, request.sequence_count
        )

    def commands(self) -> list[dict[str, Any]]:
        return self.rows("commands")

    def transfers(self, direction: str | None = None) -> list[dict[str, Any]]:
        if direction is None:
            return self.rows("transfers")
        return self.rows("transfers", "direction = ?", direction)

    def counts(self) -> dict[str, int]:
        """Rows per table: a quick look at what the archive holds."""
        return {
            table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in _TABLES
        }

    def iter_frames(self, direction: str = "down") -> Iterator[bytes]:
        """Raw frame octets in arrival order, for replaying them through a decoder."""
        for (octets,) in self.db.execute(
            "SELECT octets FROM frames WHERE direction = ? ORDER BY id", (direction,)
        ):
            yield bytes(octets)


_TABLES = (
    "frames",
    "packets",
    "commands",
    "verifications",
    "events",
    "telemetry",
    "parameters",
    "transfers",
)
_JSON_COLUMNS = {
    "packets": ("decoded",),
    "commands": ("arguments",),
    "events": ("arguments",),
    "telemetry": ("value",),
    "parameters": ("value",),
}
