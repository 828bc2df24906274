"""The file service onboard: CFDP class 1 files up into `state_dir/files`, and down on TM VC FILE.

Up: the uplink hands every Space Packet of APID 0x7F0 (`icd.Apid.CFDP`, one PDU each, carried in
authenticated AD frames of TC VC COMMAND under COP-1) to `receive_pdu`. A `cfdp.FileReceiver`
writes the file beside its destination and renames it into place only once it is whole and its
CRC-32 checks; then FILE_RECEIVED goes down and every listener hears of it. A PDU that does not
decode is counted and announced, never fatal. Transfers idle for INACTIVITY_TIMEOUT_S end as
failed (FILE_FAILED, with the missing octet ranges): class 1 cannot resume, the ground sends again.

Down: `downlink(path, name)` queues a class 1 transaction. Its PDUs are made one at a time as the
downlink has room (`take_packets`), one per TM Space Packet sized to fill a frame, so a lost frame
loses about one PDU (the Metadata PDU goes twice, first and before the EOF, so that a ground which
lost one still knows the name); they go after realtime TM and before playback, and only while the
link is up. The queue is bounded in PDUs; beyond it `downlink` raises FileQueueFull. Transaction
sequence numbers come from a persisted counter, so they never repeat, not even across a reboot.

Entity ids (CFDP, 2 octets): the node is its spacecraft id, the ground is GROUND_ENTITY_ID.
"""

import asyncio
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.protocol import icd
from flight.protocol.cfdp import (
    ConditionCode,
    DirectiveCode,
    EofPdu,
    FileReceiver,
    FileSender,
    MetadataPdu,
    PduHeader,
    TransactionId,
    TransferResult,
    decode_pdu,
    file_data_capacity,
)
from flight.protocol.errors import ProtocolError
from flight.protocol.spacepacket import (
    MAX_SEQUENCE_COUNT,
    PRIMARY_HEADER_LENGTH,
    PacketType,
    SpacePacket,
)
from flight.protocol.tm_frame import data_field_length
from flight.runtime.component import (
    Arg,
    CommandError,
    Component,
    Event,
    Parameter,
    Severity,
    Telemetry,
    Value,
    command,
    rate_group,
)
from flight.runtime.store import Counter, Store, StoreError

GROUND_ENTITY_ID = 1
"""The CFDP entity id of the ground (any station); a node's is its spacecraft id."""

DIRECTORY_NAME = "files"
"""Received files land in `state_dir / DIRECTORY_NAME`."""

MAX_PENDING_PDUS = 4096
"""Default bound of the downlink queue: about 4.4 MB of file data waiting for contact."""

MAX_NAME_OCTETS = 255  # a CFDP file name is an LV: one octet of length
LIST_LIMIT = 32  # FILE_LISTED events per LIST_FILES: the rest is counted, not listed
SEQUENCE_RECORD = "cfdp_sequence"
SEQUENCE_RESERVE = 16  # transaction numbers reserved per store write
_TM_PACKET_OCTETS = data_field_length(icd.TM_FRAME_LENGTH, True)  # one packet fills one frame
_WRAP32 = 0xFFFF_FFFF
_NAME = Arg("string", max_length=MAX_NAME_OCTETS)
_REASON = Arg("string", max_length=160)


class FileError(Exception):
    """A file that cannot be sent or named as asked; the message says why and what to do."""


class FileQueueFull(FileError):
    """The downlink queue has no room for another transaction until some of it has gone down."""


@dataclass(slots=True, eq=False)
class _Outgoing:
    """One queued downlink transaction: its PDUs, made as they are taken."""

    name: str
    path: Path
    sender: FileSender
    pdus: Iterator[bytes]
    remaining: int  # PDUs not yet taken
    offset: int = 0  # file octets taken so far (for an abandoning EOF)


@dataclass(slots=True)
class _Counts:
    pdus_received: int = 0
    pdus_refused: int = 0
    files_received: int = 0
    files_failed: int = 0
    octets_received: int = 0
    downlinks_queued: int = 0
    downlinks_sent: int = 0
    downlinks_failed: int = 0
    downlinks_refused: int = 0
    pdus_sent: int = 0


def check_name(name: object) -> str:
    """`name` if it is a plain file name for the files directory; ValueError saying why not."""
    if not isinstance(name, str) or not name:
        raise ValueError("a file name must not be empty")
    if name in (".", ".."):
        raise ValueError(f"file name {name!r} is not allowed: give a plain name such as model.onnx")
    for bad, what in (("/", "'/'"), ("\\", "'\\'"), ("\x00", "NUL")):
        if bad in name:
            raise ValueError(
                f"file name {name!r} contains {what}: give a plain name, without directories "
                "(every file lives in the node's files directory)"
            )
    if name.startswith("."):
        raise ValueError(
            f"file name {name!r} starts with '.': such names are the receiver's partial files"
        )
    try:
        octets = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"file name {name!r} is not valid Unicode text") from None
    if octets > MAX_NAME_OCTETS:
        raise ValueError(f"file name of {octets} UTF-8 octets: at most {MAX_NAME_OCTETS} fit CFDP")
    return name


class FileTransfer(Component):
    """CFDP class 1 file transfer: files up into the files directory, files down on TM VC FILE."""

    PDUS_RECEIVED = Telemetry("u32", doc="CFDP PDUs the uplink delivered.")
    PDUS_REFUSED = Telemetry("u32", doc="Uplinked PDUs that did not decode or were misaddressed.")
    DUPLICATE_PDUS = Telemetry("u32", doc="Uplinked PDUs already received (ignored).")
    FILES_RECEIVED = Telemetry("u32", doc="Files received whole and checked.")
    FILES_FAILED = Telemetry("u32", doc="Uplink transfers that ended without a file.")
    OCTETS_RECEIVED = Telemetry("u64", units="B", doc="Octets of the files received.")
    ACTIVE_TRANSACTIONS = Telemetry("u16", doc="Uplink transfers in progress.")
    DOWNLINKS_QUEUED = Telemetry("u32", doc="Files queued for downlink.")
    DOWNLINKS_SENT = Telemetry("u32", doc="Downlink transactions whose EOF PDU went down.")
    DOWNLINKS_FAILED = Telemetry("u32", doc="Downlink transactions abandoned (file unreadable).")
    DOWNLINKS_REFUSED = Telemetry("u32", doc="Downlinks refused: queue full or file missing.")
    DOWNLINK_PDUS_PENDING = Telemetry("u32", doc="File PDUs waiting for the downlink.")
    FILES_STORED = Telemetry("u16", doc="Files in the files directory.")

    FILE_RECEIVED = Event(
        Severity.INFORMATIVE, "file {name} received: {size} octets", name=_NAME, size=Arg("u64")
    )
    FILE_FAILED = Event(
        Severity.LOW, "file {name} not received: {reason}", name=_NAME, reason=_REASON
    )
    PDU_REFUSED = Event(Severity.LOW, "file PDU refused: {reason}", reason=_REASON)
    DOWNLINK_QUEUED = Event(
        Severity.INFORMATIVE,
        "file {name} queued for downlink as transaction {transaction}: {size} octets",
        name=_NAME,
        transaction=Arg("u32"),
        size=Arg("u64"),
    )
    DOWNLINK_SENT = Event(
        Severity.INFORMATIVE,
        "file {name} sent down (transaction {transaction})",
        name=_NAME,
        transaction=Arg("u32"),
    )
    DOWNLINK_FAILED = Event(
        Severity.MEDIUM,
        "downlink of {name} abandoned: {reason}",
        name=_NAME,
        reason=_REASON,
    )
    FILE_LISTED = Event(Severity.INFORMATIVE, "{name}: {size} octets", name=_NAME, size=Arg("u64"))
    FILES_LISTED = Event(
        Severity.INFORMATIVE,
        "{listed} of {total} files listed",
        listed=Arg("u16"),
        total=Arg("u32"),
    )
    FILE_DELETED = Event(Severity.INFORMATIVE, "file {name} deleted", name=_NAME)
    STORE_UNUSABLE = Event(Severity.HIGH, "file store unusable: {reason}", reason=_REASON)

    INACTIVITY_TIMEOUT_S = Parameter(
        "u32",
        default=600,
        minimum=10,
        maximum=86_400,
        doc="An uplink transfer idle this long ends as failed (class 1 cannot resume it).",
    )

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        entity_id: int = icd.SPACECRAFT_ID,
        ground_entity_id: int = GROUND_ENTITY_ID,
        store: Store | None = None,
        max_pending_pdus: int = MAX_PENDING_PDUS,
        tm_packet_octets: int = _TM_PACKET_OCTETS,
        name: str = "files",
    ) -> None:
        super().__init__(name)
        if max_pending_pdus < 3:
            raise ValueError(f"max_pending_pdus {max_pending_pdus}: a transaction needs 3 at least")
        self.state_dir = None if state_dir is None else Path(state_dir)
        self.entity_id = entity_id
        self.ground_entity_id = ground_entity_id
        self.max_pending_pdus = max_pending_pdus
        self.tm_packet_octets = tm_packet_octets
        self.listeners: list[Callable[[Path, TransferResult], None]] = []
        self.on_pending: Callable[[], None] = lambda: None  # the downlink's wake-up
        self._store = store
        self._node: Any = None
        self._receiver: FileReceiver | None = None
        self._problem: str | None = None
        self._directory_made = False
        self._sequence: Counter | None = None
        self._names: dict[TransactionId, str] = {}  # uplink transaction -> destination name
        self._outgoing: deque[_Outgoing] = deque()
        self._returned: deque[bytes] = deque()  # taken, not sent: they go first
        self._eofs: dict[bytes, tuple[str, int]] = {}  # EOF packet -> (name, transaction)
        self._pending_pdus = 0
        self._packet_count = 0
        self._counts = _Counts()
        self._published: tuple[int, ...] = ()

    def bind_node(self, node: Any) -> None:
        self._node = node
        if self.state_dir is None:
            self.state_dir = Path(node.config.node.state_dir)

    # -- where files live --------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Where received files land, and where DOWNLINK_FILE, DELETE_FILE and LIST_FILES look;
        made on first use (the node's start uses it)."""
        if self.state_dir is None:
            raise FileError("the file service has no state directory: give state_dir=")
        directory = self.state_dir / DIRECTORY_NAME
        if not self._directory_made:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                self._directory_made = True
            except OSError:
                pass  # the caller's own use of it fails with the reason; STORE_UNUSABLE says it
        return directory

    def path(self, name: str) -> Path:
        """The file `name` in the files directory; ValueError with words for an unsafe name."""
        return self.directory / check_name(name)

    def _ensure_receiver(self) -> FileReceiver | None:
        """The CFDP receiver, made with its directory on first use; None if the store failed."""
        if self._receiver is None and self._problem is None:
            try:
                directory = self.directory
                directory.mkdir(parents=True, exist_ok=True)  # again, for the reason if it fails
                self._receiver = FileReceiver(
                    directory,
                    entity_id=self.entity_id,
                    inactivity_timeout_s=float(self.parameters.INACTIVITY_TIMEOUT_S),
                )
            except (OSError, FileError) as error:
                self._problem = f"{self.state_dir}/{DIRECTORY_NAME}: {_words(error)}"
                self.emit(self.STORE_UNUSABLE, reason=self._problem)
        return self._receiver

    async def run(self) -> None:
        """Make the files directory at start, so a store problem shows at boot, not at first use."""
        self._ensure_receiver()

    def parameter_changed(self, parameter: Parameter, value: Value) -> None:
        if parameter is self.INACTIVITY_TIMEOUT_S and self._receiver is not None:
            self._receiver.inactivity_timeout_s = float(value)

    # -- up: PDUs from the uplink ------------------------------------------------------------------

    def receive_pdu(self, pdu: bytes) -> None:
        """One CFDP PDU from an uplinked Space Packet; never raises."""
        self._counts.pdus_received += 1
        receiver = self._ensure_receiver()
        if receiver is None:
            self._refuse(f"file store unusable: {self._problem}")
            return
        key: TransactionId | None = None
        try:
            decoded = decode_pdu(pdu)
            key = decoded.header.transaction_id
            if isinstance(decoded, MetadataPdu):  # the name, for a FILE_FAILED event later
                self._names.setdefault(
                    key, decoded.destination_file_name.decode("utf-8", "replace")
                )
            result = receiver.receive(pdu, now=_now())
        except ProtocolError as error:
            self._refuse(str(error))
            result = None
        except Exception as error:  # a bug must not stop the uplink
            self.log.exception("receiving a CFDP PDU")
            self._refuse(f"internal error {type(error).__name__}: {error}")
            result = None
        if result is not None:
            self._ended(result)
        elif key is not None and key not in receiver.active_transactions:
            self._names.pop(key, None)  # ended earlier, or refused: nothing to name later

    def _refuse(self, reason: str) -> None:
        self._counts.pdus_refused += 1
        self.emit(self.PDU_REFUSED, reason=reason)

    def _ended(self, result: TransferResult) -> None:
        name = self._names.pop(result.transaction_id, "")
        if result.success:
            assert result.path is not None
            self._counts.files_received += 1
            self._counts.octets_received += result.file_size
            self.emit(self.FILE_RECEIVED, name=result.path.name, size=result.file_size)
            path = result.path
        else:
            self._counts.files_failed += 1
            self.emit(self.FILE_FAILED, name=name or "?", reason=result.reason)
            path = self.directory / name if name else self.directory
        for listener in list(self.listeners):
            try:
                listener(path, result)
            except Exception:  # a listener's bug must not lose the next file
                self.log.exception("file listener %r failed", listener)

    @rate_group("1Hz")
    def tick(self) -> None:
        """End idle uplink transfers, and refresh the telemetry."""
        if self._receiver is not None and self._receiver.active_transactions:
            for result in self._receiver.expire(_now()):
                self._ended(result)
        self.update_telemetry()

    # -- down: queued transactions -----------------------------------------------------------------

    def downlink(self, path: Path, destination_name: str) -> int:
        """Queue `path` to go down as `destination_name`; return its transaction sequence number.

        FileError (FileQueueFull when the queue has no room) with words when it cannot be queued.
        """
        try:
            check_name(destination_name)
            path = Path(path)
            if not path.is_file():
                raise FileError(f"cannot downlink {path}: not a regular file, or missing")
            size = path.stat().st_size
        except (ValueError, FileError, OSError) as error:
            self._counts.downlinks_refused += 1
            if isinstance(error, FileError):
                raise
            raise FileError(f"cannot downlink {path}: {_words(error)}") from None
        large = size > _WRAP32
        probe = PduHeader(self.entity_id, 0, self.ground_entity_id, large_file_flag=large)
        segment = file_data_capacity(probe, self.tm_packet_octets - PRIMARY_HEADER_LENGTH)
        pdus = 3 + -(-size // segment)  # Metadata twice, the data, EOF
        if self._pending_pdus + pdus > self.max_pending_pdus:
            self._counts.downlinks_refused += 1
            raise FileQueueFull(
                f"file queue full: {destination_name} needs {pdus} PDUs, "
                f"{self.max_pending_pdus - self._pending_pdus} of {self.max_pending_pdus} free; "
                "try again once queued files have gone down"
            )
        transaction = self._next_transaction()
        try:
            sender = FileSender(
                self.entity_id,
                self.ground_entity_id,
                transaction,
                path,
                segment,
                destination_name=destination_name,
                source_name=path.name,
                large_file_flag=large,
            )
        except (OSError, ProtocolError) as error:  # gone meanwhile; the number is spent, harmless
            self._counts.downlinks_refused += 1
            raise FileError(f"cannot downlink {path}: {_words(error)}") from None
        self._outgoing.append(
            _Outgoing(destination_name, path, sender, _metadata_again(sender), pdus)
        )
        self._pending_pdus += pdus
        self._counts.downlinks_queued += 1
        self.emit(self.DOWNLINK_QUEUED, name=destination_name, transaction=transaction, size=size)
        self.on_pending()
        return transaction

    def _next_transaction(self) -> int:
        try:
            if self._sequence is None:
                store = self._store
                if store is None and self._node is not None:
                    store = self._node.store
                if store is None:
                    if self.state_dir is None:
                        raise FileError("the file service has no state directory: give state_dir=")
                    store = self._store = Store(self.state_dir)
                self._sequence = Counter(
                    store, SEQUENCE_RECORD, reserve=SEQUENCE_RESERVE, modulus=_WRAP32 + 1
                )
            return self._sequence.next()
        except StoreError as error:
            self._counts.downlinks_refused += 1
            raise FileError(
                f"cannot persist the file transaction number ({error}); a repeated number would "
                "mix two files at the ground"
            ) from None

    def queued(self, path: Path) -> bool:
        """Whether `path` waits in the downlink queue (or is going down now)."""
        path = Path(path)
        return any(outgoing.path == path for outgoing in self._outgoing)

    # The downlink's side (flight.runtime.downlink.FileSource): it takes packets while in contact,
    # returns those it could not send, and says which went.

    def packets_waiting(self) -> bool:
        return bool(self._returned or self._outgoing)

    def take_packets(self, max_octets: int) -> list[bytes]:
        """TM packets of queued file PDUs in order: at least one if any wait, up to `max_octets`."""
        packets: list[bytes] = []
        octets = 0
        while self._returned and (not packets or octets + len(self._returned[0]) <= max_octets):
            packet = self._returned.popleft()
            packets.append(packet)
            octets += len(packet)
        while self._outgoing and (not packets or octets + self.tm_packet_octets <= max_octets):
            packet = self._next_packet()
            if packet is None:
                continue
            packets.append(packet)
            octets += len(packet)
        return packets

    def _next_packet(self) -> bytes | None:
        outgoing = self._outgoing[0]
        header = outgoing.sender.header
        try:
            pdu = next(outgoing.pdus)
        except StopIteration:  # not reached: the EOF ends a transaction first
            self._finish(outgoing)
            return None
        except (OSError, ProtocolError) as error:
            return self._abandon(outgoing, _words(error))
        outgoing.remaining -= 1
        self._pending_pdus -= 1
        if pdu[0] & 0x10:  # File Data: its octets count towards the offset an abandoning EOF gives
            outgoing.offset += len(pdu) - header.length - header.fss_octets
        packet = self._packet(pdu)
        if _is_eof(pdu, header.length):
            self._eofs[packet] = (outgoing.name, header.transaction_sequence_number)
            self._finish(outgoing)
        return packet

    def _finish(self, outgoing: _Outgoing) -> None:
        """Take a transaction off the queue, with what is left of its PDU count."""
        self._outgoing.popleft()
        outgoing.pdus.close()  # closes the file if it was being read
        self._pending_pdus -= max(outgoing.remaining, 0)
        outgoing.remaining = 0

    def _abandon(self, outgoing: _Outgoing, reason: str) -> bytes:
        """End a transaction whose file went away: an EOF with an error tells the ground so."""
        self._finish(outgoing)
        self._counts.downlinks_failed += 1
        self.emit(self.DOWNLINK_FAILED, name=outgoing.name, reason=reason)
        eof = EofPdu(
            outgoing.sender.header,
            0,
            outgoing.offset,
            ConditionCode.FILESTORE_REJECTION,
            fault_location=self.entity_id,
        )
        return self._packet(eof.encode())

    def _packet(self, pdu: bytes) -> bytes:
        count = self._packet_count
        self._packet_count = (count + 1) & MAX_SEQUENCE_COUNT
        return SpacePacket(PacketType.TM, icd.Apid.CFDP, count, pdu).encode()

    def return_packets(self, packets: list[bytes]) -> None:
        """Packets taken but not sent (contact lost): they go first at the next contact."""
        self._returned.extendleft(reversed(packets))

    def packets_sent(self, packets: list[bytes]) -> None:
        """These packets went down in frames."""
        self._counts.pdus_sent += len(packets)
        for packet in packets:
            done = self._eofs.pop(packet, None)
            if done is not None:
                self._counts.downlinks_sent += 1
                self.emit(self.DOWNLINK_SENT, name=done[0], transaction=done[1])

    # -- commands ----------------------------------------------------------------------------------

    @command
    def LIST_FILES(self) -> None:
        """An event per file in the files directory (name, size; the first 32 by name), then a
        count."""
        entries = self._entries()
        for name, size in entries[:LIST_LIMIT]:
            self.emit(self.FILE_LISTED, name=name, size=size)
        self.emit(self.FILES_LISTED, listed=min(len(entries), LIST_LIMIT), total=len(entries))

    @command(name=_NAME)
    def DELETE_FILE(self, name: str) -> None:
        """Delete a file from the files directory."""
        path = self._existing(name)
        if self.queued(path):
            raise CommandError(f"{name} is queued for downlink; delete it once DOWNLINK_SENT")
        try:
            path.unlink()
        except OSError as error:
            raise CommandError(f"cannot delete {name}: {_words(error)}") from None
        self.emit(self.FILE_DELETED, name=name)

    @command(name=_NAME)
    def DOWNLINK_FILE(self, name: str) -> None:
        """Send a file of the files directory to the ground (class 1: if the ground reports it
        failed, send this command again)."""
        path = self._existing(name)
        try:
            self.downlink(path, name)
        except FileError as error:
            raise CommandError(str(error)) from None

    def _existing(self, name: str) -> Path:
        try:
            path = self.path(name)
        except (ValueError, FileError) as error:
            raise CommandError(str(error)) from None
        if not path.is_file():
            raise CommandError(f"no file {name} on board: LIST_FILES shows what there is")
        return path

    def _entries(self) -> list[tuple[str, int]]:
        try:
            directory = self.directory
            with os.scandir(directory) as scan:
                found = []
                for entry in scan:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    try:
                        found.append((entry.name, entry.stat().st_size))
                    except OSError:
                        continue  # deleted while listing
        except FileNotFoundError:
            return []
        except (OSError, FileError) as error:
            raise CommandError(f"cannot list the files: {_words(error)}") from None
        return sorted(found)

    # -- telemetry ---------------------------------------------------------------------------------

    def update_telemetry(self) -> None:
        """The channels from the counts, when they moved (a node idles most of its life)."""
        counts, receiver = self._counts, self._receiver
        state = (
            counts.pdus_received,
            counts.pdus_refused,
            counts.files_received,
            counts.files_failed,
            counts.octets_received,
            counts.downlinks_queued,
            counts.downlinks_sent,
            counts.downlinks_failed,
            counts.downlinks_refused,
            self._pending_pdus + len(self._returned),
            0 if receiver is None else receiver.duplicate_pdus,
            0 if receiver is None else len(receiver.active_transactions),
        )
        if state == self._published:
            return
        self._published = state
        t = self.telemetry
        t.PDUS_RECEIVED = state[0] & _WRAP32
        t.PDUS_REFUSED = state[1] & _WRAP32
        t.FILES_RECEIVED = state[2] & _WRAP32
        t.FILES_FAILED = state[3] & _WRAP32
        t.OCTETS_RECEIVED = state[4] & 0xFFFF_FFFF_FFFF_FFFF
        t.DOWNLINKS_QUEUED = state[5] & _WRAP32
        t.DOWNLINKS_SENT = state[6] & _WRAP32
        t.DOWNLINKS_FAILED = state[7] & _WRAP32
        t.DOWNLINKS_REFUSED = state[8] & _WRAP32
        t.DOWNLINK_PDUS_PENDING = min(state[9], _WRAP32)
        t.DUPLICATE_PDUS = state[10] & _WRAP32
        t.ACTIVE_TRANSACTIONS = min(state[11], 0xFFFF)

    @rate_group("0.1Hz")
    def count_files(self) -> None:
        """FILES_STORED: other components write into the directory too, so it is counted."""
        try:
            with os.scandir(self.directory) as scan:
                count = sum(1 for entry in scan if not entry.name.startswith("."))
        except (OSError, FileError):
            return
        self.telemetry.FILES_STORED = min(count, 0xFFFF)

    def reset_counters(self) -> None:
        self._counts = _Counts()
        self._published = ()
        if self._receiver is not None:
            self._receiver.duplicate_pdus = 0


def _metadata_again(sender: FileSender) -> Iterator[bytes]:
    """The sender's PDUs with the Metadata PDU once more just before the EOF: a ground that lost
    the first still learns the file's name, and can say which file failed."""
    pdus = sender.pdus()
    metadata = next(pdus)
    yield metadata
    for pdu in pdus:
        if _is_eof(pdu, sender.header.length):
            yield metadata
        yield pdu


def _is_eof(pdu: bytes, header_length: int) -> bool:
    return (
        not pdu[0] & 0x10 and len(pdu) > header_length and pdu[header_length] == DirectiveCode.EOF
    )


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # called outside a loop (a unit test): expiry then needs `now` anyway
        return 0.0


def _words(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error)
