"""Test-wide settings and fixtures: Hypothesis without deadlines; a real MQTT broker; the
integration-test API plugin."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# The integration-test API: `--target` and the `integration_api` fixture (hil/testapi); the HIL
# bench: the `bench` fixture, `@pytest.mark.needs`, records and the summary (hil/bench).
pytest_plugins = ["hil.testapi.plugin", "hil.bench.plugin"]

# A test must not fail on timing: a busy CI machine or a slow fsync (the CFDP receiver's) can push
# one example past Hypothesis's default 200 ms deadline without anything being wrong.
settings.register_profile("penumbra", deadline=None)
settings.load_profile("penumbra")


# --- MQTT broker for the link and end-to-end tests -----------------------------------------------
# A real broker on a free loopback port: mosquitto where it is installed (CI installs it), else
# amqtt in a subprocess. In CI (CI set, or PENUMBRA_REQUIRE_MOSQUITTO=1) a missing mosquitto fails
# the tests instead of falling back. PENUMBRA_MQTT_BROKER=amqtt forces the fallback locally.

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
BROKER_START_TIMEOUT_S = 20.0  # safety net only: a broker normally listens within a second


def _mosquitto_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PENUMBRA_REQUIRE_MOSQUITTO") == "1"


def _broker_choice() -> tuple[str, str | None, str]:
    """(kind, executable or None, why) of the broker the tests will start."""
    forced = os.environ.get("PENUMBRA_MQTT_BROKER", "").strip().lower()
    mosquitto = shutil.which("mosquitto", path=_SBIN_PATH)
    if forced == "amqtt" and not _mosquitto_required():
        return "amqtt", None, "PENUMBRA_MQTT_BROKER=amqtt"
    if mosquitto:
        return "mosquitto", mosquitto, mosquitto
    why = "mosquitto is not installed (apt-get install mosquitto; .ci/run does it)"
    return "amqtt", None, why


def pytest_report_header(config: pytest.Config) -> str:
    kind, _, why = _broker_choice()
    return f"mqtt broker for tests: {kind} ({why})"


class Broker:
    """One MQTT broker process on a fixed loopback port; stop() and start() keep the port."""

    def __init__(
        self,
        kind: str,
        executable: str | None,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        persistence: bool = True,
        tls: tuple[Path, Path, Path] | None = None,  # (ca, server cert, server key) PEM files
        require_certificate: bool = False,  # TLS clients must present a certificate from ca
    ) -> None:
        self.kind = kind
        self.executable = executable
        self.directory = directory
        self.users = users
        self.persistence = persistence
        self.tls = tls
        self.require_certificate = require_certificate
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.log = directory / f"{kind}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._config = self._write_config()

    def url(self, node: str, **params: str) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        query = "&".join(f"{name}={value}" for name, value in params.items())
        return f"{scheme}://{self.host}:{self.port}/{node}" + (f"?{query}" if query else "")

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with self.log.open("ab") as log:
            if self.kind == "mosquitto":
                command = [self.executable or "mosquitto", "-c", str(self._config)]
            else:
                command = [sys.executable, "-c", _AMQTT_BROKER, str(self._config)]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start-up:\n{self.log.read_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{self.kind} did not listen on {self.host}:{self.port} within "
                        f"{BROKER_START_TIMEOUT_S} s:\n{self.log.read_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto writes its persistence file on the way out."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _write_config(self) -> Path:
        if self.kind == "amqtt":
            if self.users is not None or self.tls is not None:
                pytest.skip("the amqtt fallback broker is not set up for passwords or TLS here")
            config = self.directory / "amqtt.yaml"
            config.write_text(
                "listeners:\n"
                "  default:\n"
                "    type: tcp\n"
                f"    bind: {self.host}:{self.port}\n"
                "plugins:\n"
                "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: true\n"
            )
            return config
        lines = [
            # As root, mosquitto would switch to user "mosquitto", who cannot write our files.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {self.host}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.log}",
            "log_type all",
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwd = shutil.which("mosquitto_passwd", path=_SBIN_PATH)
            if passwd is None:
                pytest.skip("mosquitto_passwd is not installed, so no password file can be made")
            password_file = self.directory / "passwords"
            for index, (user, password) in enumerate(self.users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run(
                    [passwd, *create, "-b", str(password_file), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        if self.tls is not None:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
            if self.require_certificate:
                lines.append("require_certificate true")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config


# amqtt 0.12 walks the broker-wide subscription dict with awaits inside the loop
# (Broker._handle_client_session, for every connection), so a client subscribing meanwhile kills
# the connecting client's handler with "dictionary changed size during iteration", leaving it
# hanging. The fallback broker runs with that one loop iterating a snapshot; nothing else differs.
_AMQTT_BROKER = """
import sys
import amqtt.broker

class SnapshotIteration(dict):
    def __iter__(self):
        return iter(list(self.keys()))

original_init = amqtt.broker.Broker.__init__

def patched_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self._subscriptions = SnapshotIteration(self._subscriptions)

amqtt.broker.Broker.__init__ = patched_init
from amqtt.scripts.broker_script import main
sys.argv = ["amqtt", "-c", sys.argv[1]]
main()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mqtt_broker_factory() -> Iterator[Callable[..., Broker]]:
    """Starts a broker of its own for a test that stops it, or needs passwords or TLS."""
    kind, executable, why = _broker_choice()
    if kind != "mosquitto" and _mosquitto_required():
        pytest.fail(f"CI must run the MQTT tests against mosquitto, but {why}")
    brokers: list[Broker] = []
    scratch = Path(tempfile.mkdtemp(prefix="penumbra-brokers-"))

    def start(**options: object) -> Broker:
        directory = Path(tempfile.mkdtemp(dir=scratch))
        broker = Broker(kind, executable, directory, **options)  # type: ignore[arg-type]
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def mqtt_broker(mqtt_broker_factory: Callable[..., Broker]) -> Broker:
    """A broker shared by the session (anonymous, persistent sessions): do not stop it."""
    return mqtt_broker_factory()
