"""Mission constants of the Penumbra ICD: identifiers and sizes shared by flight, ground and bench.

docs/ICD.md explains each of them; a node's configuration may override the spacecraft id and
the keys.
"""

from enum import IntEnum

SPACECRAFT_ID = 0x1A5
"""Default spacecraft identifier (10 bits in TC and TM frames)."""

TC_MAX_FRAME_LENGTH = 1024
"""Longest TC Transfer Frame accepted onboard (the 232.0-B maximum)."""

TM_FRAME_LENGTH = 1115
"""Every TM Transfer Frame on every virtual channel: 5 x 223 octets, the Reed-Solomon (255,223)
interleave-5 block of CCSDS 131.0-B."""


class TcVirtualChannel(IntEnum):
    """Uplink virtual channels."""

    COMMAND = 0  # authenticated telecommands under COP-1 (AD service)
    FILE = 1  # authenticated CFDP file data (models, job inputs)


class TmVirtualChannel(IntEnum):
    """Downlink virtual channels, each with fixed-length frames carrying Space Packets."""

    REALTIME = 0  # verification reports, events, housekeeping produced during contact
    PLAYBACK = 1  # stored telemetry downlinked when contact returns
    FILE = 2  # CFDP file data (results)
    IDLE = 7  # only-idle-data frames that keep the channel synchronised


class Apid(IntEnum):
    """APIDs with a fixed meaning; components get theirs from the runtime."""

    TIME = 0  # time reports
    CFDP = 0x7F0  # CFDP PDUs carried in Space Packets
    SIMULATED_SENSORS = 0x7F1  # bench-fed environment data (simulated EPS) on a test stand
    IDLE = 0x7FF  # 133.0-B-2 4.1.3.3.4.4


PUS_VERSION = 2
"""ECSS-E-ST-70-41C (PUS-C) packet version number in TC and TM secondary headers."""

CUC_COARSE_OCTETS = 4
CUC_FINE_OCTETS = 2
"""TM time stamps: CCSDS Unsegmented Time Code (301.0-B-4 3.2), TAI epoch 1958-01-01, P-field
implicit."""

SECURITY_PARAMETER_INDEX = 1
"""SDLS security association for the COMMAND and FILE uplink virtual channels."""

SDLS_IV_OCTETS = 12
SDLS_MAC_OCTETS = 16
SDLS_REPLAY_WINDOW = 64
"""AES-256-GCM: the 96-bit IV is the anti-replay sequence number; a 128-bit MAC; and how far
ahead of the last accepted number a new one may jump."""

FARM_SLIDING_WINDOW = 64
"""COP-1 FARM-1 sliding window width W (232.1-B 6.1.8.1): even, 2..254; FOP-1's window K must
not exceed W/2."""
