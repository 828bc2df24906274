import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flight.runtime.watchdog import NotifyConfigError, SystemdNotifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a short path (AF_UNIX paths are limited to 107 octets)."""
    directory = tempfile.mkdtemp(prefix="pn-")
    path = os.path.join(directory, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5.0)
    try:
        yield receiver, path
    finally:
        receiver.close()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


def test_without_notify_socket_the_notifier_does_nothing() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.status("ok") is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval_s() is None
    assert (notifier.sent, notifier.errors) == (0, 0)


def test_messages_arrive_on_the_socket_systemd_named(
    notify_socket: tuple[socket.socket, str],
) -> None:
    receiver, path = notify_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.status("3 components\nhealthy")
    assert notifier.watchdog()
    assert notifier.stopping()
    received = [receiver.recv(4096) for _ in range(4)]
    assert received == [b"READY=1", b"STATUS=3 components healthy", b"WATCHDOG=1", b"STOPPING=1"]
    assert notifier.sent == 4


def test_abstract_socket_names_starting_with_at_are_supported() -> None:
    name = f"penumbra-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(5.0)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert receiver.recv(4096) == b"WATCHDOG=1"


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier.from_environment(environ).watchdog_interval_s() == 15.0
    environ["WATCHDOG_PID"] = str(os.getpid())
    assert SystemdNotifier.from_environment(environ).watchdog_interval_s() == 15.0


def test_a_watchdog_meant_for_another_process_is_not_ours() -> None:
    environ = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    assert SystemdNotifier.from_environment(environ).watchdog_interval_s() is None


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_bad_watchdog_usec_is_refused_with_a_message(value: str) -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": value}
    with pytest.raises(NotifyConfigError, match="WatchdogSec="):
        SystemdNotifier.from_environment(environ)


def test_a_notify_socket_that_is_not_a_path_or_abstract_is_refused() -> None:
    with pytest.raises(NotifyConfigError, match="neither an absolute path nor an abstract"):
        SystemdNotifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"))
    assert notifier.watchdog() is False
    assert notifier.errors == 1
    assert notifier.last_error is not None
    assert str(tmp_path / "gone") in notifier.last_error
    assert "No such file" in notifier.last_error
