"""systemd's notify protocol: READY, STOPPING, STATUS and the WATCHDOG=1 keep-alive.

A board runs `penumbra flight` as a systemd service with `Type=notify` and `WatchdogSec=`: the
node says when it is ready and strokes the watchdog while it is healthy, and systemd restarts it
when the strokes stop. Without NOTIFY_SOCKET (a laptop, a test) the notifier does nothing.
"""

import os
import socket
from collections.abc import Mapping


class NotifyConfigError(Exception):
    """NOTIFY_SOCKET or WATCHDOG_USEC in the environment is not something this notifier can use."""


class SystemdNotifier:
    """Sends sd_notify(3) messages to the socket systemd named in NOTIFY_SOCKET.

    Sending never raises: a message that cannot be delivered (systemd gone, socket full) is
    counted in `errors` with the reason in `last_error`, and the call returns False, because
    the node must go on running whatever happens to its supervisor.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self._target = _socket_address(address) if address is not None else None
        self._watchdog_usec = watchdog_usec
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "SystemdNotifier":
        """The notifier systemd asked for, or one that does nothing if NOTIFY_SOCKET is unset."""
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec = None
        text = environ.get("WATCHDOG_USEC")
        if text:
            try:
                watchdog_usec = int(text)
            except ValueError:
                watchdog_usec = -1
            if watchdog_usec <= 0:
                raise NotifyConfigError(
                    f"WATCHDOG_USEC={text!r} is not a positive number of microseconds; "
                    "fix WatchdogSec= in the service unit"
                )
            # systemd sets WATCHDOG_PID when the watchdog is meant for one process only.
            pid = environ.get("WATCHDOG_PID")
            if pid and pid != str(os.getpid()):
                watchdog_usec = None
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True if there is a socket to notify."""
        return self._target is not None

    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.

        None when systemd runs no watchdog for this process.
        """
        if self._watchdog_usec is None or self._target is None:
            return None
        return self._watchdog_usec / 2e6

    def notify(self, message: str) -> bool:
        """Send one notify message (`KEY=value` lines); True if the socket took it."""
        if self._target is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), self._target)
        except OSError as exc:
            self.errors += 1
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self.last_error = f"cannot notify systemd at {self.address}: {reason}"
            return False
        self.sent += 1
        return True

    def ready(self) -> bool:
        """Start-up is complete (Type=notify services count as started from here)."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Stroke the watchdog: every `watchdog_interval_s()` while healthy, never otherwise."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status for `systemctl status`."""
        # A newline would start a second assignment in the message: keep the text one line.
        return self.notify("STATUS=" + " ".join(text.splitlines()))


def _socket_address(address: str) -> str | bytes:
    """The sendto() address of NOTIFY_SOCKET: a path, or '@name' for a Linux abstract socket."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    raise NotifyConfigError(
        f"NOTIFY_SOCKET={address!r} is neither an absolute path nor an abstract socket ('@name'); "
        "this node supports only those (unset NOTIFY_SOCKET to run without systemd)"
    )
