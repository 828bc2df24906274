"""Power drivers: how the bench cuts and restores a target's supply (a process, a relay, a hand)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hil.testapi.targets import ProcessTarget

COMMAND_TIMEOUT_S = 30.0  # a relay or uhubctl answers in well under a second
OUTPUT_SHOWN = 2000  # characters of a failed command's output quoted in the error


class PowerError(Exception):
    """The supply could not be switched; the message says which command or step and why."""


@runtime_checkable
class PowerDriver(Protocol):
    """Switches the target's supply. `cut` returns once the power is off, `restore` once it is
    back on (the node then boots by itself; the bench waits for its telemetry)."""

    name: str

    async def cut(self) -> None: ...

    async def restore(self) -> None: ...


class ProcessPower:
    """A subprocess target's power: SIGKILL (nothing saved, nothing flushed, as a pulled plug),
    and a restart of the same `penumbra flight` on the same work directory, state, key and pty."""

    name = "process"

    def __init__(self, target: ProcessTarget) -> None:
        self.target = target
        self.cuts = 0

    async def cut(self) -> None:
        await self.target.kill()
        self.cuts += 1

    async def restore(self) -> None:
        await self.target.restart()


class CommandPower:
    """Shell commands that switch the supply: a USB relay, `uhubctl -a off/on`, `gpioset`, a
    smart plug's CLI. A command that exits non-zero or hangs is a PowerError with its output."""

    name = "command"

    def __init__(
        self,
        cut_cmd: str,
        restore_cmd: str,
        *,
        timeout_s: float = COMMAND_TIMEOUT_S,
        cwd: Path | None = None,
    ) -> None:
        for what, command in (("cut", cut_cmd), ("restore", restore_cmd)):
            if not command.strip():
                raise PowerError(f"the power {what} command is empty; give the shell command")
        if not timeout_s > 0:
            raise PowerError(f"the power command timeout must be above 0 s, not {timeout_s}")
        self.cut_cmd = cut_cmd
        self.restore_cmd = restore_cmd
        self.timeout_s = timeout_s
        self.cwd = cwd

    async def cut(self) -> None:
        await self._run("cut", self.cut_cmd)

    async def restore(self) -> None:
        await self._run("restore", self.restore_cmd)

    async def _run(self, what: str, command: str) -> None:
        try:
            process = await asyncio.create_subprocess_shell(
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as error:
            raise PowerError(f"power {what} command `{command}` did not start: {error}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            # The shell and whatever it started: a child left holding the pipe would hang us.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise PowerError(
                f"power {what} command `{command}` did not finish within {self.timeout_s:g} s"
            ) from None
        if process.returncode != 0:
            text = output.decode(errors="replace").strip()[-OUTPUT_SHOWN:]
            raise PowerError(
                f"power {what} command `{command}` exited with status {process.returncode}"
                + (f":\n{text}" if text else " and printed nothing")
            )


Ask = Callable[[str], Awaitable[None]]
"""Shows the operator a request and returns once they confirm it was done."""


class ManualPower:
    """An operator switches the supply: the bench says what to do and waits for Enter.

    `ask` replaces the terminal exchange (the pytest plugin passes one that suspends output
    capture first). Without an operator (standard input closed) it is a PowerError.
    """

    name = "manual"

    def __init__(
        self,
        *,
        ask: Ask | None = None,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
    ) -> None:
        self._ask = ask or self._terminal
        self._stdin = stdin
        self._stdout = stdout

    async def cut(self) -> None:
        await self._ask("Cut the target's power now (switch off its supply), then press Enter.")

    async def restore(self) -> None:
        await self._ask("Restore the target's power now (switch its supply on), then press Enter.")

    async def _terminal(self, request: str) -> None:
        stdin = self._stdin or sys.stdin
        stdout = self._stdout or sys.stderr
        stdout.write(f"\n>>> bench: {request}\n")
        stdout.flush()
        # A thread: the loop keeps running (the link, the environment) while the operator acts.
        answer = await asyncio.to_thread(stdin.readline)
        if answer == "":
            raise PowerError(
                "the manual power driver needs an operator at the terminal, but standard input "
                "is closed; run interactively or give a [power] command driver in bench.toml"
            )
