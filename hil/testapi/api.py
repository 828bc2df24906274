"""F Prime's integration-test API in asyncio: commands, telemetry and events via a station.

    async with IntegrationApi(station) as api:
        await api.send_and_assert_command("health.SET_PING_PERIOD", {"period_ms": 500})
        await api.await_telemetry("health.CPU_PERCENT", less_than(80), timeout_s=5)
        await api.await_event_sequence(["mode.MODE_CHANGED", "health.ALL_HEALTHY"])

Everything the station receives after the API is created is kept in `history`, in arrival order.
`await_*` look only at what arrives after the call (or after `start=`, a position from `mark()`);
`assert_*` look at the whole history since the API started (or since `clear_histories()`), and
wait only `timeout_s` (default 0) for more. A miss is an AssertionError that says what was awaited
and what arrived instead. Timeouts run on the loop's clock (`asyncio.timeout`), never on signals,
so a test on the virtual-time loop waits no wall-clock time at all.
"""

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ground.dictionary import EventMessage, RequestKey, Stage, TelemetrySample, Verification
from ground.station import GroundStation, StationAlert, UplinkError
from hil.testapi.predicates import as_predicate, describe

DEFAULT_TIMEOUT_S = 10.0
HISTORY_DEPTH = 1_000_000  # items kept before the oldest go (counted in `dropped`)
SHOWN = 8  # items quoted in a failure message

EventSpec = str | tuple[str, Mapping[str, Any]]
"""An event in a sequence: its name, or (name, {argument: value or predicate})."""


class IntegrationApi:
    """The test vocabulary over one connected `GroundStation`; an async context manager."""

    def __init__(self, station: GroundStation, *, default_timeout_s: float = DEFAULT_TIMEOUT_S):
        self.station = station
        self.dictionary = station.dictionary
        self.default_timeout_s = default_timeout_s
        self.history: list[Any] = []
        self._subscription = station.subscribe(depth=HISTORY_DEPTH)
        self._base = 0

    async def __aenter__(self) -> "IntegrationApi":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._subscription.close()

    # -- history -----------------------------------------------------------------------------------

    def mark(self) -> int:
        """The current end of the history: pass it as `start=` to look only at what follows."""
        self._drain()
        return len(self.history)

    def clear_histories(self) -> None:
        """Make `assert_*` forget what arrived so far (F Prime's clear_histories)."""
        self._base = self.mark()

    @property
    def dropped(self) -> int:
        """Items lost because the history was full (HISTORY_DEPTH): a test should see 0."""
        return self._subscription.dropped

    def telemetry(self, channel: str | None = None, *, start: int | None = None) -> list[Any]:
        """Telemetry samples in the history (of one channel)."""
        self._drain()
        return [
            item
            for item in self.history[self._base if start is None else start :]
            if isinstance(item, TelemetrySample) and (channel is None or item.channel == channel)
        ]

    def events(self, name: str | None = None, *, start: int | None = None) -> list[EventMessage]:
        """Events in the history (of one name)."""
        self._drain()
        return [
            item
            for item in self.history[self._base if start is None else start :]
            if isinstance(item, EventMessage) and (name is None or item.qualified_name == name)
        ]

    def _drain(self) -> None:
        while self._subscription.pending:
            self.history.append(self._subscription.get_nowait())

    # -- commands ----------------------------------------------------------------------------------

    async def send_command(
        self, command: str, args: Mapping[str, Any] | None = None, /, **arguments: Any
    ) -> RequestKey:
        """Send a command by name; returns its request id once it is onboard."""
        return await self.station.send_command(command, {**(args or {}), **arguments})

    async def send_and_assert_command(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        timeout_s: float | None = None,
        **arguments: Any,
    ) -> list[Verification]:
        """Send a command and wait for its acceptance and completion success; returns its reports.

        AssertionError, quoting what did arrive, if a report says failure or the completion does
        not come within `timeout_s`. The refusal of a copy of its frame (a duplicate on the link:
        `Verification.refuses_a_copy`) is not a failure of the command.
        """
        values = {**(args or {}), **arguments}
        start = self.mark()
        what = _call_text(command, values)
        try:
            request = await self.station.send_command(command, values)
        except UplinkError as error:
            raise AssertionError(f"{what} was not delivered: {error}") from None
        completion = await self._await_report(request, Stage.COMPLETION, start, timeout_s, what)
        reports = self._reports(request, start)
        if not completion.success:
            raise AssertionError(f"{what} failed: {completion}{_listing('its reports', reports)}")
        accepted = [r for r in reports if r.stage is Stage.ACCEPTANCE and not r.refuses_a_copy]
        if not accepted or not all(r.success for r in accepted):
            raise AssertionError(
                f"{what}: completion without an acceptance success"
                + _listing("its reports", reports)
            )
        return reports

    async def await_verification(
        self,
        request: RequestKey,
        stage: Stage | str = Stage.COMPLETION,
        *,
        timeout_s: float | None = None,
        start: int | None = None,
    ) -> Verification:
        """The request's report for `stage` (success or failure), or its first failure before it.

        Looks at the whole history by default: reports often arrive before `send_command`
        returns.
        """
        stage = Stage(stage)
        label = f"request {request}"
        first = self._base if start is None else start
        return await self._await_report(request, stage, first, timeout_s, label)

    async def _await_report(
        self, request: RequestKey, stage: Stage, start: int, timeout_s: float | None, what: str
    ) -> Verification:
        def match(item: Any) -> bool:
            return (
                isinstance(item, Verification)
                and item.request == request
                and (item.stage is stage or not (item.success or item.refuses_a_copy))
            )

        found = await self._find(match, start, timeout_s)
        if found is None:
            reports = self._reports(request, start)
            raise AssertionError(
                f"{what} {request}: no {stage} report within {self._timeout(timeout_s)} s"
                + (_listing("its reports", reports) if reports else "; no report for it at all")
                + self._alerts(start)
            )
        return found

    def _reports(self, request: RequestKey, start: int) -> list[Verification]:
        self._drain()
        return [
            item
            for item in self.history[start:]
            if isinstance(item, Verification) and item.request == request
        ]

    # -- telemetry ---------------------------------------------------------------------------------

    async def await_telemetry(
        self,
        channel: str,
        predicate: Any = None,
        *,
        timeout_s: float | None = None,
        start: int | None = None,
    ) -> TelemetrySample:
        """The first sample of `channel` (component.NAME) arriving from now (or `start`) whose
        value satisfies `predicate` (a predicate, or a value meaning equal_to)."""
        return await self._telemetry(channel, predicate, timeout_s, self._start(start, now=True))

    async def assert_telemetry(
        self,
        channel: str,
        predicate: Any = None,
        *,
        timeout_s: float = 0.0,
        start: int | None = None,
    ) -> TelemetrySample:
        """A sample of `channel` satisfying `predicate` is in the history, or arrives in time."""
        return await self._telemetry(channel, predicate, timeout_s, self._start(start, now=False))

    async def _telemetry(
        self, channel: str, predicate: Any, timeout_s: float | None, start: int
    ) -> TelemetrySample:
        self.dictionary.channel(channel)  # UnknownNameError, with suggestions, for a typo
        test = None if predicate is None else as_predicate(predicate)

        def match(item: Any) -> bool:
            return (
                isinstance(item, TelemetrySample)
                and item.channel == channel
                and (test is None or test(item.value))
            )

        found = await self._find(match, start, timeout_s)
        if found is None:
            condition = "" if test is None else f" {describe(test)}"
            seen = [s for s in self._items(start) if isinstance(s, TelemetrySample)]
            own = [s for s in seen if s.channel == channel]
            message = f"no telemetry {channel}{condition} within {self._timeout(timeout_s)} s; " + (
                f"{len(own)} samples of it arrived" + _listing("the last", own[-SHOWN:])
                if own
                else f"no sample of it arrived ({len(seen)} samples of other channels)"
            )
            raise AssertionError(message + self._alerts(start))
        return found

    # -- events ------------------------------------------------------------------------------------

    async def await_event(
        self,
        name: str,
        predicate: Any = None,
        *,
        args: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        start: int | None = None,
    ) -> EventMessage:
        """The first event `name` (component.NAME) arriving from now (or `start`) whose arguments
        match `args` (each a value or a predicate) and which satisfies `predicate`."""
        return await self._event(name, predicate, args, timeout_s, self._start(start, now=True))

    async def assert_event(
        self,
        name: str,
        predicate: Any = None,
        *,
        args: Mapping[str, Any] | None = None,
        timeout_s: float = 0.0,
        start: int | None = None,
    ) -> EventMessage:
        """Such an event is in the history, or arrives within `timeout_s`."""
        return await self._event(name, predicate, args, timeout_s, self._start(start, now=False))

    async def await_event_sequence(
        self,
        events: Sequence[EventSpec],
        *,
        timeout_s: float | None = None,
        start: int | None = None,
    ) -> list[EventMessage]:
        """These events in this order (others may come between), within `timeout_s` in all."""
        first = self._start(start, now=True)
        found: list[EventMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout(timeout_s)
        position = first
        for index, spec in enumerate(events):
            name, args = (spec, None) if isinstance(spec, str) else spec
            try:
                event = await self._event(
                    name, None, args, max(0.0, deadline - loop.time()), position
                )
            except AssertionError as error:
                done = ", ".join(e.qualified_name for e in found) or "none"
                raise AssertionError(
                    f"event sequence stopped at item {index + 1} of {len(events)} "
                    f"(found so far: {done}): {error}"
                ) from None
            found.append(event)
            position = self.history.index(event, position) + 1
        return found

    async def _event(
        self,
        name: str,
        predicate: Any,
        args: Mapping[str, Any] | None,
        timeout_s: float | None,
        start: int,
    ) -> EventMessage:
        definition = self.dictionary.event(name)
        declared = {argument.name for argument in definition.arguments}
        unknown = sorted(set(args or {}) - declared)
        if unknown:
            raise AssertionError(
                f"event {name} has no argument {unknown[0]!r}; its arguments: "
                f"{', '.join(sorted(declared)) or 'none'}"
            )
        tests = {key: as_predicate(value) for key, value in (args or {}).items()}
        whole = None if predicate is None else as_predicate(predicate)

        def match(item: Any) -> bool:
            return (
                isinstance(item, EventMessage)
                and item.qualified_name == name
                and all(test(item.args.get(key)) for key, test in tests.items())
                and (whole is None or whole(item))
            )

        found = await self._find(match, start, timeout_s)
        if found is None:
            conditions = [f"{key} {describe(test)}" for key, test in tests.items()]
            if whole is not None:
                conditions.append(describe(whole))
            condition = f" with {' and '.join(conditions)}" if conditions else ""
            seen = [e for e in self._items(start) if isinstance(e, EventMessage)]
            raise AssertionError(
                f"no event {name}{condition} within {self._timeout(timeout_s)} s; "
                + (
                    f"{len(seen)} events arrived" + _listing("the last", seen[-SHOWN:])
                    if seen
                    else "no event arrived at all"
                )
                + self._alerts(start)
            )
        return found

    # -- the wait ----------------------------------------------------------------------------------

    def _start(self, start: int | None, *, now: bool) -> int:
        if start is not None:
            return start
        return self.mark() if now else self._base

    def _timeout(self, timeout_s: float | None) -> float:
        return self.default_timeout_s if timeout_s is None else timeout_s

    def _items(self, start: int) -> list[Any]:
        self._drain()
        return self.history[start:]

    def _alerts(self, start: int) -> str:
        alerts = [item for item in self._items(start) if isinstance(item, StationAlert)]
        dropped = f"; {self.dropped} items were dropped from the history" if self.dropped else ""
        return (
            _listing("station alerts meanwhile", alerts[-SHOWN:]) + dropped if alerts else dropped
        )

    async def _find(
        self, match: Callable[[Any], bool], start: int, timeout_s: float | None
    ) -> Any | None:
        """The first history item from `start` that matches, waiting up to the timeout."""
        index = start
        try:
            async with asyncio.timeout(self._timeout(timeout_s)):
                while True:
                    self._drain()
                    while index < len(self.history):
                        item = self.history[index]
                        index += 1
                        if match(item):
                            return item
                    await self._subscription.wait()
                    if not self._subscription.pending:
                        return None  # the station stopped: nothing more will come
        except TimeoutError:
            return None


def _call_text(command: str, values: Mapping[str, Any]) -> str:
    args = " ".join(f"{key}={value!r}" for key, value in values.items())
    return f"{command} {args}".rstrip()


def _listing(title: str, items: Iterable[object]) -> str:
    lines = [f"\n    {item}" for item in items]
    return f"; {title}:" + "".join(lines) if lines else ""
