"""The ground station: commands up through FOP-1 and SDLS, telemetry down, decoded and archived.

    async with link, GroundStation(link, dictionary, key=key, state_dir=state) as station:
        async with station.subscribe(Verification, EventMessage) as reports:
            request = await station.send_command("health.SET_PING_PERIOD", period_ms=500)
            print(await station.await_completion(request))

Uplink: each TC packet is one FDU on the AD service of FOP-1 (`cop1.FopDriver`, on the running
loop's clock). Every transmission, retransmissions included, is secured by SDLS just before it
leaves, with a fresh IV from a counter persisted in `state_dir` (ICD section 4), and only once the
link is up, so no IV is spent on a frame that cannot leave. TC packet sequence counts are persisted
the same way, so a restarted station neither repeats an IV nor reuses a request id.

Downlink: TM frames are checked by `TmReceiver`; the CLCW in a frame's OCF reaches FOP-1 only from
a frame whose master channel frame count is not behind the newest one (an MQTT path can redeliver
old frames, and an old CLCW would confuse FOP-1); packets are decoded with the dictionary, archived
and handed to subscribers.

Files (CFDP class 1, ICD 3.11): `put_file` sends a file's PDUs up one per TC packet (APID 0x7F0)
on the same AD service as commands, so FOP-1 retransmits what the link loses and the file arrives
whole. Files coming down on TM VC FILE are reassembled by a `cfdp.FileReceiver` in the downloads
directory; each transfer that ends there, delivered or failed, is a `FileDelivery` for subscribers
and `await_file`. Class 1 has no retransmission downlink: a failed file is asked for again.
"""

import asyncio
import contextlib
import hashlib
import os
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from flight.link.base import Link, LinkDown
from flight.protocol import icd
from flight.protocol.cfdp import (
    FileReceiver,
    FileSender,
    MetadataPdu,
    PduHeader,
    TransactionId,
    TransferResult,
    decode_pdu,
    file_data_capacity,
)
from flight.protocol.cop1 import (
    AlertNotification,
    Clcw,
    CopError,
    FduNotification,
    Fop,
    FopDirective,
    FopDriver,
    FopNotification,
    FopState,
    Response,
)
from flight.protocol.crc import crc16
from flight.protocol.errors import ProtocolError
from flight.protocol.pus import (
    AckFlags,
    CollectionInterval,
    FunctionSubtype,
    HousekeepingStructureIds,
    HousekeepingSubtype,
    ModifyCollectionIntervals,
    ParameterSubtype,
    PusTc,
    PusTm,
    Service,
    TestSubtype,
)
from flight.protocol.sdls import (
    KeyFileError,
    SecurityAssociation,
    TcSecurity,
    load_key,
    max_protected_data_length,
)
from flight.protocol.spacepacket import (
    MAX_SEQUENCE_COUNT,
    PRIMARY_HEADER_LENGTH,
    PacketType,
    SpacePacket,
)
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import NO_CLCW, TmReceiver
from flight.runtime.files import GROUND_ENTITY_ID, check_name
from flight.runtime.store import Counter, Store, StoreError
from ground.archive import Archive, to_json
from ground.dictionary import (
    Decoded,
    DecodeError,
    Dictionary,
    GroundError,
    HousekeepingReport,
    ParameterReport,
    PingReply,
    RequestKey,
    Stage,
    TelemetrySample,
    Verification,
)

IV_RESERVE = 8
"""IVs the persisted counter reserves per write. A restart skips at most this many, and the
uplink keeps them in hand (see `GroundStation._within_replay_window`)."""

DEFAULT_SLIDING_WINDOW = 8
"""FOP-1 window K: frames in flight unacknowledged. Eight 1-kB frames keep a 115200-baud link
busy for a round trip, and K times the transmission limit (40 IVs if every transmission is lost)
stays inside the onboard anti-replay window of 64 minus the counter's reserve."""

DEFAULT_T1_S = 5.0
DEFAULT_TRANSMISSION_LIMIT = 5
DEFAULT_SUBSCRIPTION_DEPTH = 10_000
DUPLICATE_WINDOW = 128  # recent downlink frames remembered to recognise a redelivered one
RESYNC_AFTER = 3  # consecutive fresh-content frames "behind" the count that mean the node restarted
REQUESTS_KEPT = 4096  # requests whose verification reports the station keeps for await_completion
DEFAULT_FILE_TIMEOUT_S = 60.0
"""A file coming down with no PDU for this long ends as failed: class 1 never fills a gap."""
FILE_EXPIRY_PERIOD_S = 1.0  # how often transfers in progress are checked for that
FILE_RETRY_ROUNDS = 10  # FOP-1 alerts an upload survives (each resends the unacknowledged PDUs)
CFDP_SEQUENCE_RESERVE = 16
_FIXED_APIDS = frozenset(int(apid) for apid in icd.Apid)


class UplinkError(GroundError):
    """A telecommand that FOP-1 could not deliver; the message says whether it may have arrived."""


class CommandFailed(GroundError):
    """The node reported a verification failure; `report` is the (1,2), (1,4) or (1,8)."""

    def __init__(self, report: Verification) -> None:
        super().__init__(str(report))
        self.report = report


class ResponseTimeout(GroundError, TimeoutError):
    """An expected report did not arrive in time."""


class StationClosed(GroundError):
    """The station stopped: no more reports will arrive."""


@dataclass(frozen=True, slots=True)
class StationAlert:
    """Something about the link itself the operator should see: a COP-1 alert, the uplink held."""

    kind: str  # "cop1", "uplink", "downlink"
    text: str

    def __str__(self) -> str:
        return f"{self.kind} alert: {self.text}"


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A TM packet that arrived but could not be read; archived raw with the reason."""

    reason: str
    octets: bytes

    def __str__(self) -> str:
        return f"undecodable TM packet ({len(self.octets)} octets): {self.reason}"


@dataclass(frozen=True, slots=True)
class FileDelivery:
    """A file transfer from the node that ended at this station: delivered, or failed and why.

    `name` is the destination name ("" if the Metadata PDU never arrived), `path` the file in the
    downloads directory when delivered, `missing` the [start, end) octet ranges never received.
    """

    name: str
    transaction: TransactionId
    success: bool
    reason: str
    path: Path | None = None
    size: int = 0
    missing: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        number = self.transaction.transaction_sequence_number
        if self.success:
            return (
                f"file {self.name} received ({self.size} octets, transaction {number}): {self.path}"
            )
        return (
            f"file {self.name or '?'} FAILED (transaction {number}): {self.reason}; "
            "ask for it again (files.DOWNLINK_FILE)"
        )


Item = Decoded | TelemetrySample | StationAlert | DecodeFailure | FileDelivery


@dataclass(slots=True)
class StationCounters:
    """What the station has seen and done since it started."""

    frames_received: int = 0  # downlink frames accepted by TmReceiver
    frames_rejected: int = 0  # failed length, FECF or header checks
    frames_duplicate: int = 0  # redelivered copies of frames already processed
    frames_stale: int = 0  # behind the master channel frame count: packets used, CLCW ignored
    clcws_used: int = 0
    packets_received: int = 0
    packets_undecodable: int = 0
    files_sent: int = 0  # files whose every PDU FARM-1 acknowledged
    file_pdus_sent: int = 0  # CFDP PDUs handed to FOP-1, resent ones included
    files_received: int = 0  # files delivered into the downloads directory
    files_failed: int = 0  # downlinked transfers that ended without a file
    file_pdus_refused: int = 0  # downlinked PDUs that did not decode or were misaddressed
    commands_sent: int = 0  # TC packets handed to FOP-1
    packets_sent: int = 0  # packets of send_packet handed to FOP-1
    packets_failed: int = 0  # packets of send_packet(wait=False) that FOP-1 gave up on
    transmissions: int = 0  # TC frames sent, retransmissions included
    transmissions_held: int = 0  # AD frames dropped before sending: the IV would leave the window
    cop1_alerts: int = 0
    subscriber_drops: int = 0


class _RequestState:
    __slots__ = ("changed", "label", "reports")

    def __init__(self, label: str) -> None:
        self.label = label
        self.reports: list[Verification] = []
        self.changed = asyncio.Event()


class Subscription:
    """Reports of some kinds, in arrival order: `async for item in sub`, or `await sub.get()`.

    Bounded: a subscriber that does not keep up loses the oldest items, counted in `dropped` (and
    in the station's `subscriber_drops`). Leave the `async with` to stop receiving.
    """

    def __init__(self, station: "GroundStation", kinds: tuple[type, ...], depth: int) -> None:
        self._station = station
        self.kinds = kinds
        self.depth = depth
        self.dropped = 0
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except StationClosed:
            raise StopAsyncIteration from None

    def wants(self, item: object) -> bool:
        return not self.kinds or isinstance(item, self.kinds)

    def put(self, item: object) -> None:
        if self._closed:
            return
        if len(self._items) >= self.depth:
            self._items.popleft()
            self.dropped += 1
            self._station.counters.subscriber_drops += 1
        self._items.append(item)
        self._ready.set()

    def get_nowait(self) -> Any:
        """The next item; IndexError if none is waiting."""
        item = self._items.popleft()
        if not self._items:
            self._ready.clear()
        return item

    async def get(self) -> Any:
        """The next item; StationClosed once the station stopped and nothing is left."""
        while not self._items:
            if self._closed:
                raise StationClosed("the ground station stopped")
            await self.wait()
        return self.get_nowait()

    async def wait(self) -> None:
        """Return once an item is waiting or the subscription is closed; takes nothing."""
        if not self._items and not self._closed:
            self._ready.clear()
            await self._ready.wait()

    @property
    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._station._unsubscribe(self)


class GroundStation:
    """One ground station for one node: an async context manager that owns its tasks.

    `link` is opened and closed by the caller. `key` is the SDLS key (32 octets, or the path of a
    key file). `state_dir` holds what must survive a restart: the IV counter, the TC sequence count
    and FOP-1's V(S); give each station its own and never copy it (two stations with one key and
    one counter would repeat IVs). `clock` stamps the archive (default: the loop's time; the CLI
    passes wall-clock time); FOP-1 always runs on the loop's clock. Files from the node land in
    `downloads_dir` (default `state_dir/downloads`); one that gets no PDU for `file_timeout_s`
    (loop clock) ends as failed.
    """

    def __init__(
        self,
        link: Link,
        dictionary: Dictionary,
        *,
        key: bytes | str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        clock: Callable[[], float] | None = None,
        archive: Archive | None = None,
        spi: int = icd.SECURITY_PARAMETER_INDEX,
        virtual_channel_id: int = icd.TcVirtualChannel.COMMAND,
        sliding_window: int = DEFAULT_SLIDING_WINDOW,
        t1_initial_s: float = DEFAULT_T1_S,
        transmission_limit: int = DEFAULT_TRANSMISSION_LIMIT,
        replay_window: int = icd.SDLS_REPLAY_WINDOW,
        tm_frame_length: int = icd.TM_FRAME_LENGTH,
        source_id: int = 0,
        downloads_dir: str | os.PathLike[str] | None = None,
        file_timeout_s: float = DEFAULT_FILE_TIMEOUT_S,
    ) -> None:
        self.link = link
        self.dictionary = dictionary
        self.archive = archive
        self.state_dir = Path(state_dir)
        self.counters = StationCounters()
        self.latest: dict[str, TelemetrySample] = {}  # newest sample of every channel seen
        self.virtual_channel_id = virtual_channel_id
        self.source_id = source_id
        self._clock = clock
        self._spi = spi
        # A path goes through load_key, whose KeyFileError says what is wrong with the file.
        key_octets = bytes(key) if isinstance(key, bytes | bytearray) else load_key(key)
        try:
            self._security = TcSecurity(
                [SecurityAssociation(spi, key_octets, virtual_channels={virtual_channel_id})]
            )
        except ValueError as error:
            raise KeyFileError(str(error)) from None
        if replay_window <= IV_RESERVE:
            raise ValueError(f"replay window {replay_window} must exceed the IV reserve")
        self._iv_budget = replay_window - IV_RESERVE
        self._fop = Fop(
            dictionary.spacecraft_id,
            virtual_channel_id,
            sliding_window=sliding_window,
            t1_initial_s=t1_initial_s,
            transmission_limit=transmission_limit,
            max_fdu_length=max_protected_data_length(),
        )
        self._receiver = TmReceiver(dictionary.spacecraft_id, frame_length=tm_frame_length)
        self._tm_frame_length = tm_frame_length
        self._subscriptions: list[Subscription] = []
        self._requests: OrderedDict[RequestKey, _RequestState] = OrderedDict()
        self._recent_frames: OrderedDict[bytes, None] = OrderedDict()
        self._last_mc_count: int | None = None
        self._behind_run: tuple[int, int] | None = None  # (count expected next, frames in the run)
        self._first_iv: dict[int, tuple[bytes, int]] = {}  # N(S) -> (frame data, first IV)
        self._acknowledged_iv = 0
        self._saved_v_s = 0
        self._holding = False  # the uplink is held for the replay window (alerted once)
        self._last_clcw: Clcw | None = None
        self._clcw_arrived = asyncio.Event()
        self._ad_ready = asyncio.Event()
        self._ad_lost = asyncio.Event()
        self._budget_changed = asyncio.Event()
        self._store: Store | None = None
        self._iv: Counter | None = None
        self._sequence: Counter | None = None
        self._driver: FopDriver | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._task_list: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._uplink_state_name = f"uplink_spi{spi}_vc{virtual_channel_id}"
        self.downloads_dir = (
            self.state_dir / "downloads" if downloads_dir is None else Path(downloads_dir)
        )
        if not file_timeout_s > 0:
            raise ValueError(f"file timeout {file_timeout_s} s must be above 0")
        self.file_timeout_s = file_timeout_s
        self.deliveries: list[FileDelivery] = []  # every file transfer from the node that ended
        self._file_receiver: FileReceiver | None = None
        self._file_names: dict[TransactionId, str] = {}
        self._files_active = asyncio.Event()
        self._delivered = asyncio.Event()
        self._cfdp_sequence: Counter | None = None
        self._cfdp_packets: Counter | None = None
        self._packet_counts: dict[int, Counter] = {}  # send_packet's sequence counts by APID

    # -- life cycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> "GroundStation":
        self._loop = asyncio.get_running_loop()
        try:
            self._store = Store(self.state_dir)
            self._iv = Counter(self._store, f"sdls_iv_spi{self._spi}", reserve=IV_RESERVE)
            self._iv.advance_to(1)  # ICD 2.6: the IV starts at 1
            self._sequence = Counter(
                self._store,
                f"tc_sequence_apid{self.dictionary.apid}",
                modulus=MAX_SEQUENCE_COUNT + 1,
            )
            uplink = self._store.load(self._uplink_state_name) or {}
            self._cfdp_sequence = Counter(
                self._store,
                f"cfdp_sequence_entity{GROUND_ENTITY_ID}",
                reserve=CFDP_SEQUENCE_RESERVE,
                modulus=1 << 32,
            )
            self._cfdp_packets = Counter(
                self._store, f"tc_sequence_apid{icd.Apid.CFDP}", modulus=MAX_SEQUENCE_COUNT + 1
            )
        except (StoreError, OSError) as error:
            raise GroundError(
                f"ground station state in {self.state_dir}: {error}. The state directory must be "
                "writable; never delete it while the node keeps its anti-replay state"
            ) from None
        try:
            self.downloads_dir.mkdir(parents=True, exist_ok=True)
            self._file_receiver = FileReceiver(
                self.downloads_dir,
                entity_id=GROUND_ENTITY_ID,
                inactivity_timeout_s=self.file_timeout_s,
            )
        except OSError as error:
            raise GroundError(
                f"downloads directory {self.downloads_dir}: {error.strerror or error}; give a "
                "writable directory"
            ) from None
        self._acknowledged_iv = _int(uplink.get("acknowledged_iv"), 0)
        self._saved_v_s = _int(uplink.get("v_s"), 0) % 256
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._driver = FopDriver(
            self._fop, self._transmit, encode=TcFrame.encode, on_notification=self._on_fop
        )
        await self._driver.__aenter__()
        self._task_list = [
            self._tasks.create_task(self._downlink(), name="ground downlink"),
            self._tasks.create_task(self._supervise_uplink(), name="ground uplink"),
            self._tasks.create_task(self._expire_files(), name="ground file expiry"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True
        for task in self._task_list:
            task.cancel()
        try:
            if self._driver is not None:
                await self._driver.__aexit__(None, None, None)
        finally:
            if self._tasks is not None:
                await self._tasks.__aexit__(None, None, None)
            self._save_uplink_state()
            if self._file_receiver is not None:
                self._file_receiver.close()  # partial files go: class 1 cannot resume them
            for subscription in list(self._subscriptions):
                subscription.close()
            for state in self._requests.values():
                state.changed.set()
            self._delivered.set()

    # -- subscribing -------------------------------------------------------------------------------

    def subscribe(self, *kinds: type, depth: int = DEFAULT_SUBSCRIPTION_DEPTH) -> Subscription:
        """Items of these kinds (Verification, EventMessage, TelemetrySample, HousekeepingReport,
        ParameterReport, PingReply, OtherPacket, StationAlert, DecodeFailure), or all of them.

        Register before sending what the reports answer: only items arriving later are delivered.
        """
        subscription = Subscription(self, tuple(kinds), depth)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _publish(self, item: object) -> None:
        for subscription in self._subscriptions:
            if subscription.wants(item):
                subscription.put(item)

    # -- commanding --------------------------------------------------------------------------------

    @property
    def ad_service_active(self) -> bool:
        """FOP-1 runs the AD service: commands go out now rather than wait for initiation."""
        return self._ad_ready.is_set()

    @property
    def fop(self) -> Fop:
        return self._fop

    async def send_command(
        self, command: str, args: Mapping[str, Any] | None = None, /, **arguments: Any
    ) -> RequestKey:
        """Send `component.COMMAND` with its arguments (a mapping, keywords, or both).

        Returns the request id (APID, sequence count) once FARM-1 has acknowledged the frame, that
        is once the command is onboard; its verification reports follow (`await_completion`).
        ArgumentError or UnknownNameError before anything is sent; UplinkError if FOP-1 gave up.
        """
        values = {**(args or {}), **arguments}
        definition, app_data = self.dictionary.encode_command(command, values)
        return await self._send_tc(
            Service.FUNCTION_MANAGEMENT,
            FunctionSubtype.PERFORM_FUNCTION,
            app_data,
            definition.qualified_name,
            values,
        )

    async def ping(self, *, timeout_s: float = 10.0) -> float:
        """TC(17,1) are-you-alive; returns the round trip to the (17,2) in clock seconds."""
        async with self.deadline(timeout_s, "ping"), self.subscribe(PingReply) as replies:
            start = self._now()
            request = await self._send_tc(Service.TEST, TestSubtype.ARE_YOU_ALIVE, b"", "ping", {})
            await self._first(replies, request, timeout_s, "a ping reply (17,2)")
            return self._now() - start

    async def get_parameters(self, *names: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """TC(20,1) for these parameters (`component.NAME`); their values from the (20,2)."""
        app_data = self.dictionary.encode_parameter_ids(names)
        async with (
            self.deadline(timeout_s, "parameter report"),
            self.subscribe(ParameterReport) as reports,
        ):
            request = await self._send_tc(
                Service.PARAMETER_MANAGEMENT,
                ParameterSubtype.REPORT_VALUES,
                app_data,
                "parameters.get",
                {"names": list(names)},
            )
            wanted = set(names)
            while True:
                report = await self._first(reports, request, timeout_s, "a parameter report")
                values = {sample.name: sample.value for sample in report.values}
                if wanted <= set(values):
                    return {name: values[name] for name in names}

    async def set_parameters(
        self, values: Mapping[str, Any] | None = None, /, *, timeout_s: float = 10.0, **named: Any
    ) -> list[Verification]:
        """TC(20,3) setting parameters (`{"health.PING_PERIOD_MS": 500}`); waits for completion.

        CommandFailed if the node refuses a value (failure 3 BAD_ARGUMENTS, 9 UNKNOWN_PARAMETER).
        """
        changes = {**(values or {}), **named}
        app_data = self.dictionary.encode_parameter_values(changes)
        async with self.deadline(timeout_s, "parameter set"):
            request = await self._send_tc(
                Service.PARAMETER_MANAGEMENT,
                ParameterSubtype.SET_VALUES,
                app_data,
                "parameters.set",
                changes,
            )
            return await self.await_completion(request, timeout_s=timeout_s)

    async def save_parameters(self, *, timeout_s: float = 10.0) -> list[Verification]:
        """`params.SAVE`: the node writes its parameters to its store (F Prime's PRM_SAVE)."""
        async with self.deadline(timeout_s, "params.SAVE"):
            request = await self.send_command("params.SAVE")
            return await self.await_completion(request, timeout_s=timeout_s)

    async def set_housekeeping_interval(
        self, component: str, interval_s: float, *, timeout_s: float = 10.0
    ) -> list[Verification]:
        """TC(3,31): `component`'s housekeeping every `interval_s` (sent in milliseconds)."""
        definition = self.dictionary.component(component)
        interval_ms = round(interval_s * 1000)
        if not 1 <= interval_ms <= 0xFFFF_FFFF:
            raise ValueError(f"housekeeping interval {interval_s} s outside 0.001..4294967 s")
        app_data = ModifyCollectionIntervals(
            (CollectionInterval(definition.id, interval_ms),)
        ).encode()
        async with self.deadline(timeout_s, "housekeeping interval"):
            request = await self._send_tc(
                Service.HOUSEKEEPING,
                HousekeepingSubtype.MODIFY_COLLECTION_INTERVAL,
                app_data,
                "housekeeping.interval",
                {"component": component, "interval_ms": interval_ms},
            )
            return await self.await_completion(request, timeout_s=timeout_s)

    async def enable_housekeeping(
        self, *components: str, enable: bool = True, timeout_s: float = 10.0
    ) -> list[Verification]:
        """TC(3,5) (or (3,6) with enable=False) for these components' periodic reports."""
        ids = tuple(self.dictionary.component(name).id for name in components)
        subtype = (
            HousekeepingSubtype.ENABLE_PERIODIC_REPORTS
            if enable
            else HousekeepingSubtype.DISABLE_PERIODIC_REPORTS
        )
        label = "housekeeping.enable" if enable else "housekeeping.disable"
        async with self.deadline(timeout_s, label):
            request = await self._send_tc(
                Service.HOUSEKEEPING,
                subtype,
                HousekeepingStructureIds(ids).encode(),
                label,
                {"components": list(components)},
            )
            return await self.await_completion(request, timeout_s=timeout_s)

    # -- raw packets -------------------------------------------------------------------------------

    async def send_packet(self, apid: int, data: bytes, *, wait: bool = True) -> None:
        """Send `data` up as one TC Space Packet (no secondary header) on `apid`, in an AD frame
        of the command channel under COP-1 and SDLS like a CFDP PDU: for APIDs the ICD gives a
        meaning of their own, such as a bench's simulated sensor records (APID 0x7F1).

        With `wait`, returns once FARM-1 has acknowledged the frame (UplinkError if FOP-1 gives
        up); without, once FOP-1 has queued it, and a packet FOP-1 then gives up on is counted
        in `counters.packets_failed`. GroundError for the node's command APID (`send_command`),
        the idle APID, or data too long for one frame.
        """
        if self._driver is None or self._store is None:
            raise GroundError("use the GroundStation as an async context manager")
        if apid == self.dictionary.apid or not 0 <= apid < icd.Apid.IDLE:
            raise GroundError(
                f"APID {apid:#05x}: send_packet takes 0x000..0x7FE other than the node's command "
                f"APID {self.dictionary.apid:#05x} (commands go with send_command)"
            )
        packet_length = PRIMARY_HEADER_LENGTH + len(data)
        if not data or packet_length > self._fop.max_fdu_length:
            raise GroundError(
                f"a packet of {len(data)} data octets on APID {apid:#05x}: a TC frame takes 1.."
                f"{self._fop.max_fdu_length - PRIMARY_HEADER_LENGTH} once secured"
            )
        try:
            count = self._packet_count(apid).next()
        except StoreError as error:
            raise GroundError(
                f"cannot persist the packet count of APID {apid:#05x}: {error}"
            ) from None
        packet = SpacePacket(PacketType.TC, apid, count, bytes(data)).encode()
        if self.archive is not None:
            kind = icd.Apid(apid).name if apid in _FIXED_APIDS else "RAW"
            self.archive.packet(
                self._now(), "up", packet, apid=apid, sequence_count=count, kind=kind, decoded=None
            )
        self.counters.packets_sent += 1
        while True:
            await self._ad_ready.wait()
            await self._wait_link_up()
            future = await self._driver.submit(packet)
            if not wait:
                future.add_done_callback(self._packet_settled)
                return
            try:
                await future
            except CopError as error:
                if error.response is Response.REJECT and not self._closed:
                    continue  # never sent: FOP-1 stopped meanwhile; send it once it runs again
                raise UplinkError(
                    f"packet on APID {apid:#05x}: not acknowledged by FARM-1 ({error}); it may or "
                    "may not have reached the node"
                ) from None
            return

    def _packet_count(self, apid: int) -> Counter:
        if apid == icd.Apid.CFDP and self._cfdp_packets is not None:
            return self._cfdp_packets  # one count per APID, whoever sends on it
        counter = self._packet_counts.get(apid)
        if counter is None:
            assert self._store is not None
            counter = Counter(
                self._store, f"tc_sequence_apid{apid}", modulus=MAX_SEQUENCE_COUNT + 1
            )
            self._packet_counts[apid] = counter
        return counter

    def _packet_settled(self, future: "asyncio.Future[int | None]") -> None:
        if future.cancelled() or future.exception() is not None:
            self.counters.packets_failed += 1

    # -- files -------------------------------------------------------------------------------------

    async def put_file(
        self,
        local_path: str | os.PathLike[str],
        remote_name: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> TransactionId:
        """Send a file to the node's files directory as `remote_name` (default: its own name).

        Returns the CFDP transaction once FARM-1 has acknowledged every PDU, that is once the
        whole file is onboard; the node then announces `files.FILE_RECEIVED` (or FILE_FAILED).
        GroundError for a bad name or an unreadable file, before anything is sent; UplinkError if
        FOP-1 keeps failing; ResponseTimeout after `timeout_s` for the whole upload.
        """
        path = Path(local_path)
        name = path.name if remote_name is None else remote_name
        try:
            check_name(name)
        except ValueError as error:
            raise GroundError(f"remote name: {error}") from None
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise GroundError(f"{path} is not a regular file: give a file to send")
            with path.open("rb"):
                pass
        except OSError as error:
            raise GroundError(f"cannot send {path}: {error.strerror or error}") from None
        if self._driver is None or self._cfdp_sequence is None:
            raise GroundError("use the GroundStation as an async context manager")
        try:
            sequence = self._cfdp_sequence.next()
        except StoreError as error:
            raise GroundError(f"cannot persist the file transaction number: {error}") from None
        large = size > 0xFFFF_FFFF
        header = PduHeader(
            GROUND_ENTITY_ID, sequence, self.dictionary.spacecraft_id, large_file_flag=large
        )
        segment = file_data_capacity(header, self._fop.max_fdu_length - PRIMARY_HEADER_LENGTH)
        sender = FileSender(
            GROUND_ENTITY_ID,
            self.dictionary.spacecraft_id,
            sequence,
            path,
            segment,
            destination_name=name,
            source_name=path.name,
            large_file_flag=large,
        )
        async with self.deadline(timeout_s, f"upload of {name}"):
            await self._send_pdus(sender, name)
        self.counters.files_sent += 1
        self._archive_transfer("up", name, sender.transaction_id, True, size, "sent", path)
        return sender.transaction_id

    async def _send_pdus(self, sender: FileSender, name: str) -> None:
        """Every PDU of `sender` through FOP-1, K at a time; the ones an alert took back go again
        (a PDU that arrives twice is counted by the receiver and ignored)."""
        in_flight: deque[tuple[bytes, asyncio.Future[int | None]]] = deque()
        again: list[bytes] = []
        try:
            for pdu in sender.pdus():
                in_flight.append(await self._submit_file_packet(self._file_packet(pdu)))
                _settle(in_flight, again)
            for _ in range(FILE_RETRY_ROUNDS + 1):
                if in_flight:
                    await asyncio.wait([future for _, future in in_flight])
                _settle(in_flight, again)
                if not again:
                    return
                resend, again = again, []
                for packet in resend:
                    in_flight.append(await self._submit_file_packet(packet))
        except OSError as error:
            raise GroundError(f"reading {name}: {error.strerror or error}") from None
        finally:
            for _, future in in_flight:  # left behind by an error: nobody waits for them now
                if future.done() and not future.cancelled():
                    future.exception()
                future.cancel()
        raise UplinkError(
            f"upload of {name}: FOP-1 gave up {FILE_RETRY_ROUNDS} times; the node drops the "
            "partial file after its inactivity timeout. Check the link and send it again"
        )

    def _file_packet(self, pdu: bytes) -> bytes:
        assert self._cfdp_packets is not None
        try:
            count = self._cfdp_packets.next()
        except StoreError as error:
            raise GroundError(f"cannot persist the CFDP packet count: {error}") from None
        packet = SpacePacket(PacketType.TC, icd.Apid.CFDP, count, pdu).encode()
        if self.archive is not None:
            self.archive.packet(
                self._now(),
                "up",
                packet,
                apid=icd.Apid.CFDP,
                sequence_count=count,
                kind="CFDP",
                decoded=None,
            )
        return packet

    async def _submit_file_packet(
        self, packet: bytes
    ) -> tuple[bytes, "asyncio.Future[int | None]"]:
        assert self._driver is not None
        await self._ad_ready.wait()
        await self._wait_link_up()
        self.counters.file_pdus_sent += 1
        return packet, await self._driver.submit(packet)

    def mark_files(self) -> int:
        """The current end of `deliveries`: pass it to `await_file` as `start=`."""
        return len(self.deliveries)

    async def await_file(
        self, name: str, *, start: int | None = None, timeout_s: float | None = 10.0
    ) -> FileDelivery:
        """The next transfer of `name` from the node that ends here (from `start`, a position
        in `deliveries`, or from now): check `.success`. ResponseTimeout if none ends in time."""
        index = len(self.deliveries) if start is None else start
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    while index < len(self.deliveries):
                        delivery = self.deliveries[index]
                        index += 1
                        if delivery.name == name:
                            return delivery
                    if self._closed:
                        raise StationClosed("the ground station stopped")
                    self._delivered.clear()
                    await self._delivered.wait()
        except TimeoutError:
            raise ResponseTimeout(
                f"no transfer of file {name} ended within {timeout_s} s: ask the node for it "
                "(files.DOWNLINK_FILE) and check the link"
            ) from None

    def _on_file_packet(self, octets: bytes) -> None:
        """One downlinked CFDP PDU into the file receiver."""
        receiver = self._file_receiver
        assert receiver is not None and self._loop is not None
        try:
            pdu = SpacePacket.decode(octets).data
            decoded = decode_pdu(pdu)
            key = decoded.header.transaction_id
            if isinstance(decoded, MetadataPdu):
                self._file_names.setdefault(
                    key, decoded.destination_file_name.decode("utf-8", "replace")
                )
            result = receiver.receive(pdu, now=self._loop.time())
        except ProtocolError as error:
            self.counters.file_pdus_refused += 1
            self._publish(DecodeFailure(f"CFDP PDU refused: {error}", octets))
            return
        if result is not None:
            self._file_ended(result)
        elif key not in receiver.active_transactions:
            self._file_names.pop(key, None)  # a PDU of a transfer already ended
        else:
            self._files_active.set()

    def _file_ended(
        self, result: TransferResult, missing: tuple[tuple[int, int], ...] = ()
    ) -> None:
        name = self._file_names.pop(result.transaction_id, "")
        if result.path is not None:
            name = result.path.name
        delivery = FileDelivery(
            name,
            result.transaction_id,
            result.success,
            result.reason,
            result.path,
            result.file_size,
            () if result.success else missing,
        )
        if delivery.success:
            self.counters.files_received += 1
        else:
            self.counters.files_failed += 1
        self.deliveries.append(delivery)
        self._delivered.set()
        self._archive_transfer(
            "down",
            name,
            result.transaction_id,
            result.success,
            result.file_size,
            result.reason,
            result.path,
        )
        self._publish(delivery)

    async def _expire_files(self) -> None:
        """End the downlinked transfers that stopped getting PDUs: class 1 will not fill a gap."""
        receiver = self._file_receiver
        assert receiver is not None and self._loop is not None
        while True:
            if not receiver.active_transactions:
                self._files_active.clear()
                await self._files_active.wait()
            await asyncio.sleep(FILE_EXPIRY_PERIOD_S)
            missing = receiver.missing_ranges()
            for result in receiver.expire(self._loop.time()):
                self._file_ended(result, missing.get(result.transaction_id, ()))

    def _archive_transfer(
        self,
        direction: str,
        name: str,
        transaction: TransactionId,
        success: bool,
        size: int,
        reason: str,
        path: Path | None,
    ) -> None:
        if self.archive is not None:
            self.archive.transfer(
                self._now(),
                direction,
                name,
                transaction.source_entity_id,
                transaction.transaction_sequence_number,
                success,
                size,
                reason,
                None if path is None else str(path),
            )

    def uplink_status(self) -> str:
        """Why commands may not be getting through, in words ("" when nothing stands out)."""
        problems = []
        if not self.link.up:
            reason = getattr(self.link, "last_error", "")
            problems.append(
                f"the link {self.link.name} is down" + (f" ({reason})" if reason else "")
            )
        if not self._ad_ready.is_set():
            problems.append(
                "the AD service is not running: no CLCW from the node yet, or FOP-1 is "
                "re-initiating after an alert"
            )
        return "; ".join(problems)

    @contextlib.asynccontextmanager
    async def deadline(self, timeout_s: float | None, what: str) -> AsyncIterator[None]:
        """Bound a whole exchange (sending included); ResponseTimeout saying what held it up."""
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except TimeoutError:
            status = self.uplink_status()
            raise ResponseTimeout(
                f"{what}: no answer within {timeout_s} s" + (f": {status}" if status else "")
            ) from None

    # -- verification ------------------------------------------------------------------------------

    def reports(self, request: RequestKey) -> list[Verification]:
        """The verification reports received so far for a request this station sent."""
        state = self._requests.get(request)
        return list(state.reports) if state else []

    async def await_completion(
        self, request: RequestKey, *, timeout_s: float | None = 10.0
    ) -> list[Verification]:
        """Wait for the request's completion success; return every report it got.

        CommandFailed at the first failure report (acceptance, start or completion) other than
        the refusal of a copy (`Verification.refuses_a_copy`); ResponseTimeout if the completion
        does not arrive within `timeout_s` (loop clock).
        """
        state = self._requests.get(request)
        if state is None:
            raise GroundError(f"request {request} was not sent by this station (or is too old)")
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for report in state.reports:
                        if report.refuses_a_copy:
                            continue
                        if not report.success:
                            raise CommandFailed(report)
                        if report.stage is Stage.COMPLETION:
                            return list(state.reports)
                    if self._closed:
                        raise StationClosed("the ground station stopped")
                    state.changed.clear()
                    await state.changed.wait()
        except TimeoutError:
            got = ", ".join(f"{r.stage} success" for r in state.reports) or "no report at all"
            raise ResponseTimeout(
                f"{state.label} {request}: no completion report within {timeout_s} s ({got})"
            ) from None

    # -- internals: uplink -------------------------------------------------------------------------

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        assert self._loop is not None, "use GroundStation as an async context manager"
        return self._loop.time()

    async def _send_tc(
        self, service: int, subtype: int, app_data: bytes, label: str, arguments: Mapping[str, Any]
    ) -> RequestKey:
        if self._driver is None or self._sequence is None:
            raise GroundError("use the GroundStation as an async context manager")
        try:
            sequence = self._sequence.next()
        except StoreError as error:
            raise GroundError(f"cannot persist the TC sequence count: {error}") from None
        tc = PusTc(
            self.dictionary.apid,
            sequence,
            service,
            subtype,
            app_data,
            source_id=self.source_id,
            ack_flags=AckFlags.ALL,
        )
        packet = tc.encode()
        if len(packet) > self._fop.max_fdu_length:
            raise UplinkError(
                f"{label}: a {len(packet)}-octet packet does not fit one TC frame "
                f"(at most {self._fop.max_fdu_length} octets once secured)"
            )
        request = RequestKey(self.dictionary.apid, sequence)
        self._requests[request] = _RequestState(label)
        while len(self._requests) > REQUESTS_KEPT:
            self._requests.popitem(last=False)
        if self.archive is not None:
            now = self._now()
            packet_id = self.archive.packet(
                now,
                "up",
                packet,
                apid=tc.apid,
                sequence_count=sequence,
                service=service,
                subtype=subtype,
                kind="TC",
                decoded=to_json({"command": label, "arguments": dict(arguments)}),
            )
            self.archive.command(now, request, label, arguments, packet_id=packet_id)
        self.counters.commands_sent += 1
        while True:
            await self._ad_ready.wait()
            # T1 starts at submission: while the link is down the command waits here instead,
            # so an outage longer than T1 times the transmission limit does not fail it.
            await self._wait_link_up()
            future = await self._driver.submit(packet)
            try:
                await future
            except CopError as error:
                if error.response is Response.REJECT and not self._closed:
                    continue  # never sent: FOP-1 stopped meanwhile; send it once it runs again
                raise UplinkError(
                    f"{label} {request}: not acknowledged by FARM-1 ({error}); it may or may not "
                    "have reached the node: look for its verification reports before resending"
                ) from None
            return request

    async def _wait_link_up(self) -> None:
        try:
            await self.link.wait_up()
        except LinkDown as error:
            raise UplinkError(f"the link is closed: {error}") from None

    async def _transmit(self, plain: bytes) -> None:
        """FopDriver's send: secure one transmission and put it on the link, once it is up.

        FopDriver's `encode` hands over the frame unsecured; securing here, after the link is up,
        spends an IV only on a frame that leaves.
        """
        frame = TcFrame.decode(plain)
        while True:
            try:
                await self.link.wait_up()
            except LinkDown as error:
                raise ConnectionError(str(error)) from None  # FopDriver: lower layer failure
            iv = None
            secured = frame
            if not frame.control_command_flag:
                if not await self._within_replay_window():
                    self.counters.transmissions_held += 1
                    return  # dropped like a lost frame; FOP-1 retransmits or alerts
                iv = self._take_iv()
                secured = self._security.apply(frame, iv=iv, spi=self._spi)
                self._note_first_iv(frame, iv)
            octets = secured.encode()
            try:
                await self.link.send(octets)
            except LinkDown:
                continue  # went down meanwhile: wait, then send it with a fresh IV
            self.counters.transmissions += 1
            if self.archive is not None:
                self.archive.frame(
                    self._now(),
                    "up",
                    "sent",
                    octets,
                    virtual_channel_id=frame.virtual_channel_id,
                    frame_count=frame.frame_sequence_number,
                    detail=f"{frame.frame_type}" + (f" IV {iv}" if iv is not None else ""),
                )
            return

    def _take_iv(self) -> int:
        assert self._iv is not None
        try:
            return self._iv.next()
        except StoreError as error:
            # No persisted IV, no frame: repeating an IV under one key breaks AES-GCM.
            raise OSError(f"cannot persist the SDLS IV counter: {error}") from None

    def _note_first_iv(self, frame: TcFrame, iv: int) -> None:
        known = self._first_iv.get(frame.frame_sequence_number)
        if known is None or known[0] != frame.data:  # a new frame, not a retransmission
            self._first_iv[frame.frame_sequence_number] = (frame.data, iv)

    async def _within_replay_window(self) -> bool:
        """Wait until the next IV is inside the onboard anti-replay window; False to drop.

        The node refuses an IV more than `replay_window` above the highest it accepted, for good:
        every later IV is higher still. The station knows a lower bound of that highest IV (the
        first IV of the newest frame FARM-1 acknowledged) and never sends beyond it plus the
        window, less the counter's reserve so that a restart cannot push it over.
        """
        assert self._iv is not None
        while self._iv.value > self._acknowledged_iv + self._iv_budget:
            if self._fop.state not in (FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT):
                return False
            if not self._holding:
                self._holding = True
                self._alert(
                    "uplink",
                    f"uplink held: {self._iv.value - self._acknowledged_iv} IVs since the last "
                    "one known accepted; more would leave the onboard anti-replay window. Waiting "
                    "for a CLCW that acknowledges a frame",
                )
            self._budget_changed.clear()
            await self._budget_changed.wait()
        if self._holding:
            self._holding = False
            self._alert("uplink", "uplink released: a CLCW acknowledged a frame")
        return True

    def _on_fop(self, notification: FopNotification) -> None:
        if isinstance(notification, AlertNotification):
            self.counters.cop1_alerts += 1
            self._ad_ready.clear()
            self._ad_lost.set()
            self._budget_changed.set()
            detail = f": {notification.detail}" if notification.detail else ""
            self._alert("cop1", f"FOP-1 alert {notification.alert}{detail}; re-initiating")
        elif (
            isinstance(notification, FduNotification)
            and notification.response is Response.POSITIVE_CONFIRM
        ):
            self._budget_changed.set()

    async def _supervise_uplink(self) -> None:
        """Start the AD service, and start it again after every FOP-1 alert."""
        first = True
        while True:
            self._ad_lost.clear()
            if await self._initiate(use_saved_v_s=first):
                first = False
                self._ad_ready.set()
                await self._ad_lost.wait()
            else:
                await asyncio.sleep(self._fop.t1_initial_s)

    async def _initiate(self, *, use_saved_v_s: bool) -> bool:
        """Initiate AD (232.1-B-2 5.2.14 via FopDriver); True once confirmed.

        With a fresh CLCW: V(S) := its report value, then Initiate AD with CLCW, or with Unlock if
        FARM-1 reports Lockout, Retransmit or Wait. At start-up, when no CLCW comes within T1:
        Initiate AD without CLCW from the V(S) saved at the last clean stop (the first CLCW
        corrects it through an alert).
        """
        assert self._driver is not None
        clcw = await self._wait_clcw(self._fop.t1_initial_s if use_saved_v_s else None)
        try:
            if clcw is None:
                await self._driver.directive(FopDirective.SET_VS, self._saved_v_s)
                await self._driver.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW)
                return True
            await self._driver.directive(FopDirective.SET_VS, clcw.report_value)
            if clcw.lockout or clcw.retransmit or clcw.wait:
                # Unlock clears all three; with them set, FOP-1 could never confirm the initiation
                # (Retransmit stays up until FARM-1 accepts a frame, and none can be sent yet).
                await self._driver.directive(FopDirective.INITIATE_AD_WITH_UNLOCK)
            else:
                await self._driver.directive(FopDirective.INITIATE_AD_WITH_CLCW)
            return True
        except CopError as error:
            self._alert("cop1", f"initiating the AD service failed: {error}; trying again")
            return False

    async def _wait_clcw(self, timeout_s: float | None) -> Clcw | None:
        self._clcw_arrived.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._clcw_arrived.wait()
        except TimeoutError:
            return None
        return self._last_clcw

    def _save_uplink_state(self) -> None:
        if self._store is None:
            return
        try:
            self._store.save(
                self._uplink_state_name,
                {"acknowledged_iv": self._acknowledged_iv, "v_s": self._fop.v_s},
            )
        except StoreError as error:
            self._alert("uplink", f"cannot save the uplink state: {error}")

    def _alert(self, kind: str, text: str) -> None:
        self._publish(StationAlert(kind, text))

    # -- internals: downlink -----------------------------------------------------------------------

    async def _downlink(self) -> None:
        while True:
            try:
                frame = await self.link.receive()
            except LinkDown as error:
                self._alert("downlink", f"the link closed: {error}")
                return
            self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> None:
        now = self._now()
        frame = bytes(frame)
        scid = self.dictionary.spacecraft_id
        if (
            len(frame) == self._tm_frame_length
            and crc16(frame) == 0
            and (int.from_bytes(frame[:2], "big") >> 4) & 0x3FF == scid
        ):
            digest = hashlib.blake2b(frame, digest_size=16).digest()
            if digest in self._recent_frames:
                self.counters.frames_duplicate += 1
                self._archive_frame(now, "duplicate", frame)
                return
            self._recent_frames[digest] = None
            if len(self._recent_frames) > DUPLICATE_WINDOW:
                self._recent_frames.popitem(last=False)
            mc_count = frame[2]
            if self._is_behind(mc_count):
                self._on_stale_frame(now, frame)
                return
        try:
            received = self._receiver.receive(frame)
        except ProtocolError as error:
            self.counters.frames_rejected += 1
            self._archive_frame(now, "rejected", frame, detail=str(error))
            return
        self.counters.frames_received += 1
        self._last_mc_count = received.master_channel_frame_count
        frame_id = self._archive_frame(
            now,
            "accepted",
            frame,
            virtual_channel_id=received.virtual_channel_id,
            frame_count=received.master_channel_frame_count,
        )
        if received.ocf is not None and received.ocf != NO_CLCW:
            self._on_clcw(received.ocf)
        for packet in received.packets:
            self._on_packet(now, packet, frame_id)

    def _is_behind(self, mc_count: int) -> bool:
        """Whether a valid frame's master channel count is not ahead of the newest one.

        Counts run modulo 256: 1..127 ahead is new (frames lost between), 0 or 128..255 is behind
        (a redelivered or reordered frame). A node that restarts counts from 0 again: a run of
        RESYNC_AFTER consecutive counts, all new content, is taken as that and followed.
        """
        if self._last_mc_count is None:
            return False
        ahead = (mc_count - self._last_mc_count) % 256
        if 1 <= ahead < 128:
            self._behind_run = None
            return False
        expected, run = self._behind_run or (mc_count, 0)
        run = run + 1 if mc_count == expected else 1
        if run >= RESYNC_AFTER:
            self._behind_run = None
            self._last_mc_count = None
            self._alert("downlink", "master channel frame count restarted: the node rebooted?")
            return False
        self._behind_run = ((mc_count + 1) % 256, run)
        return True

    def _on_stale_frame(self, now: float, frame: bytes) -> None:
        """A frame behind the count: its whole packets are used, its CLCW is not."""
        self.counters.frames_stale += 1
        scratch = TmReceiver(self.dictionary.spacecraft_id, frame_length=self._tm_frame_length)
        try:
            received = scratch.receive(frame)
        except ProtocolError as error:
            self._archive_frame(now, "rejected", frame, detail=str(error))
            return
        frame_id = self._archive_frame(
            now,
            "stale",
            frame,
            virtual_channel_id=received.virtual_channel_id,
            frame_count=received.master_channel_frame_count,
            detail="behind the master channel frame count: CLCW ignored",
        )
        for packet in received.packets:
            self._on_packet(now, packet, frame_id)

    def _on_clcw(self, word: int) -> None:
        try:
            clcw = Clcw.from_word(word)
        except ProtocolError:
            return
        if clcw.virtual_channel_identification != self.virtual_channel_id:
            return
        self.counters.clcws_used += 1
        self._last_clcw = clcw
        self._clcw_arrived.set()
        # FARM-1's V(R) passed N(R)-1: the newest frame with that N(S) was accepted, and with it
        # an IV at least as high as that frame's first.
        known = self._first_iv.get((clcw.report_value - 1) % 256)
        if known is not None and known[1] > self._acknowledged_iv:
            self._acknowledged_iv = known[1]
            self._save_uplink_state()
            self._budget_changed.set()
        assert self._driver is not None
        self._driver.receive_clcw(clcw)

    def _on_packet(self, now: float, octets: bytes, frame_id: int | None) -> None:
        self.counters.packets_received += 1
        apid = ((octets[0] & 0x07) << 8) | octets[1]
        if apid == icd.Apid.CFDP:
            # File data (CFDP PDUs), not PUS: archived as it came, then to the file receiver.
            if self.archive is not None:
                self.archive.packet(
                    now, "down", octets, frame_id=frame_id, apid=apid, kind="CFDP", decoded=None
                )
            self._on_file_packet(octets)
            return
        try:
            tm = PusTm.decode(octets)
        except ProtocolError as error:
            self._undecodable(now, octets, f"not a PUS TM packet: {error}", frame_id, None)
            return
        try:
            item = self.dictionary.decode(tm)
        except DecodeError as error:
            self._undecodable(now, octets, str(error), frame_id, tm)
            return
        if isinstance(item, Verification):
            state = self._requests.get(item.request)
            if state is not None:
                item = replace(item, command=state.label)
                state.reports.append(item)
                state.changed.set()
        packet_id = None
        if self.archive is not None:
            packet_id = self.archive.packet(
                now,
                "down",
                octets,
                frame_id=frame_id,
                apid=tm.apid,
                sequence_count=tm.sequence_count,
                service=tm.service,
                subtype=tm.subtype,
                mission_time_s=tm.time.seconds,
                kind=type(item).__name__,
                decoded=to_json(item),
            )
            self.archive.decoded(now, item, packet_id=packet_id)
        self._publish(item)
        if isinstance(item, HousekeepingReport):
            for sample in item.samples:
                self.latest[sample.channel] = sample
                self._publish(sample)

    def _undecodable(
        self, now: float, octets: bytes, reason: str, frame_id: int | None, tm: PusTm | None
    ) -> None:
        self.counters.packets_undecodable += 1
        if self.archive is not None:
            self.archive.packet(
                now,
                "down",
                octets,
                frame_id=frame_id,
                apid=None if tm is None else tm.apid,
                sequence_count=None if tm is None else tm.sequence_count,
                service=None if tm is None else tm.service,
                subtype=None if tm is None else tm.subtype,
                mission_time_s=None if tm is None else tm.time.seconds,
                kind="error",
                decoded=to_json({"error": reason}),
            )
        self._publish(DecodeFailure(reason, octets))

    def _archive_frame(self, now: float, status: str, frame: bytes, **details: Any) -> int | None:
        if self.archive is None:
            return None
        return self.archive.frame(now, "down", status, frame, **details)

    async def _first(
        self, subscription: Subscription, request: RequestKey, timeout_s: float, what: str
    ) -> Any:
        """The next item of a subscription; CommandFailed if the request fails first."""
        state = self._requests[request]
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for report in state.reports:
                        if report.refuses_a_copy:
                            continue
                        if not report.success:
                            raise CommandFailed(report)
                    if subscription.pending:
                        return subscription.get_nowait()
                    if self._closed:
                        raise StationClosed("the ground station stopped")
                    state.changed.clear()
                    await _either(subscription.wait(), state.changed.wait())
        except TimeoutError:
            raise ResponseTimeout(
                f"{state.label} {request}: no {what} within {timeout_s} s"
            ) from None


async def _either(*waits: Coroutine[Any, Any, Any]) -> None:
    """Return when the first of these waits returns; the others are cancelled and awaited."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _settle(
    in_flight: "deque[tuple[bytes, asyncio.Future[int | None]]]", again: list[bytes]
) -> None:
    """Drop the acknowledged PDUs from the front of `in_flight`; those FOP-1 gave back go to
    `again` (a negative confirm after an alert, or a reject while it re-initiated)."""
    while in_flight and in_flight[0][1].done():
        packet, future = in_flight.popleft()
        if future.cancelled():
            raise StationClosed("the ground station stopped")
        if future.exception() is not None:
            if not isinstance(future.exception(), CopError):
                raise future.exception()  # type: ignore[misc]
            again.append(packet)


def _int(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )
