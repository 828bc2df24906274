import pytest

from flight.link import LinkConfigError, MemoryLink, MqttLink, Role, SerialLink, open_link
from flight.link.url import redact


def test_open_link_picks_the_transport_from_the_scheme():
    assert isinstance(open_link("serial:///dev/ttyUSB0", role=Role.FLIGHT), SerialLink)
    assert isinstance(open_link("SOCKET://127.0.0.1:4000", role=Role.FLIGHT), SerialLink)
    assert isinstance(open_link(" mqtt://broker/sat1 ", role=Role.GROUND), MqttLink)


def test_open_link_wants_a_role():
    with pytest.raises(LinkConfigError, match=r"Role\.FLIGHT or Role\.GROUND"):
        open_link("serial:///dev/ttyUSB0", role="flight")  # type: ignore[arg-type]


def test_an_unknown_scheme_lists_the_links_there_are():
    with pytest.raises(LinkConfigError) as error:
        open_link("udp://host:1", role=Role.FLIGHT)
    message = str(error.value)
    assert "unknown link scheme 'udp'" in message
    for form in ("serial:///dev/ttyUSB0", "socket://", "mqtt://", "mqtts://"):
        assert form in message


def test_a_memory_url_points_to_the_pair():
    with pytest.raises(LinkConfigError, match=r"MemoryLink\.pair\(\)"):
        open_link("memory://", role=Role.FLIGHT)
    assert len(MemoryLink.pair()) == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://user:secret@host/sat1", "mqtt://user:***@host/sat1"),
        ("mqtt://host/sat1?username=u&password=secret", "mqtt://host/sat1?username=u&password=***"),
        (
            "mqtt://host/sat1?password=secret&keepalive=5",
            "mqtt://host/sat1?password=***&keepalive=5",
        ),
        ("serial:///dev/ttyUSB0?baudrate=9600", "serial:///dev/ttyUSB0?baudrate=9600"),
    ],
)
def test_redact_hides_passwords_and_nothing_else(url: str, shown: str):
    assert redact(url) == shown


def test_a_malformed_query_is_refused():
    with pytest.raises(LinkConfigError, match="malformed query"):
        open_link("serial:///dev/ttyUSB0?baudrate", role=Role.FLIGHT)
