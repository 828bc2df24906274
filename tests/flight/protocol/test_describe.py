"""flight.protocol.describe: public vectors field by field, nesting, auto-detection, offsets."""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flight.protocol import cobs, icd
from flight.protocol.cfdp import (
    EofPdu,
    FileDataPdu,
    MetadataPdu,
    PduHeader,
    TransmissionMode,
)
from flight.protocol.cop1 import Clcw
from flight.protocol.crc import crc16
from flight.protocol.cuc import CucTime
from flight.protocol.describe import (
    AUTO_ORDER,
    KINDS,
    NoKindFitsError,
    describe,
    find_errors,
)
from flight.protocol.errors import (
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)
from flight.protocol.pus import (
    CollectionInterval,
    ConnectionTest,
    EventReport,
    HousekeepingParameterReport,
    ModifyCollectionIntervals,
    ParameterIds,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    VerificationFailure,
)
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.sensors import SensorRecord
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import TmFrame, TmMasterChannel

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCID = icd.SPACECRAFT_ID
KEY = bytes(range(32))

# --- public vectors (docs: /work/shared/test-vectors.md) -------------------------------------

# V5: us-irs/spacepackets-py tests/ecss/test_pus_tc.py -- PUS-C TC 17/1, APID 0x002, seq 0x34.
V5 = bytes.fromhex("18 02 C0 34 00 06 2F 11 01 00 00 EE 63")
# V6: us-irs/spacepackets-py docs/examples.rst -- ping TC 17/1 APID 1 and its TM 17/2 reply
# without a time stamp (re-checked against the page: [18,01,c0,...,16,1d], [08,01,...,86,d7]).
V6_TC = bytes.fromhex("18 01 C0 00 00 06 2F 11 01 00 00 16 1D")
V6_TM = bytes.fromhex("08 01 C0 00 00 08 20 11 02 00 00 00 00 86 D7")
# V7: us-irs/spacepackets-py docs/examples.rst -- header of a TC APID 1, seq 0, data length 0
# (so one data octet follows), and a TC APID 2, seq 5, carrying 01 02 03 04 (re-checked).
V7_HEADER = bytes.fromhex("10 01 C0 00 00 00")
V7_PACKET = bytes.fromhex("10 02 C0 05 00 03 01 02 03 04")
# V9: us-irs/spacepackets-py tests/ccsds/test_tm_frame.py -- a 16-octet TM frame: SCID 3, VC 7, OCF
# flag, FHP 0x7FE (only idle data), data 00 00 01 02, OCF 01 00 00 00, FECF 81 4A.
V9 = bytes.fromhex("00 3F 00 00 1F FE 00 00 01 02 01 00 00 00 81 4A")
# V11: dariol83/ccsds TcTransferFrameTest.java FIRST_FRAME -- SCID 123, VC 0, N(S) 23, BD, segment
# header C1, data 00..0F, FECF 0DEF (re-checked against the file).
V11 = bytes.fromhex("20 7B 00 17 17 C1 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 0D EF")
# V13: dariol83/ccsds ClcwTest.java -- 0002A689: status 0, report value 137, FARM-B counter 3;
# 0002D0D4: report value 212, FARM-B counter 0 (re-checked against the file).
V13_FIRST = 0x0002A689
V13_SECOND = 0x0002D0D4
# V16: us-irs/spacepackets-py tests/cfdp/pdus/test_file_data.py test_pack_unpack -- File Data PDU,
# acknowledged mode, 1-octet ids 0/0/0, offset 0, "hello world" (re-checked).
V16 = bytes.fromhex("30 00 0F 00 00 00 00 00 00 00 00") + b"hello world"
# V18: us-irs/spacepackets-py docs/examples.rst "CFDP Packets" -- unacknowledged 1 -> 2, seq 0.
V18_METADATA = (
    bytes.fromhex("24 00 2B 00 01 00 02 07 43 00 00 00 0C 11")
    + b"/tmp/src-file.txt"
    + bytes.fromhex("12")
    + b"/tmp/dest-file.txt"
)
V18_FILE_DATA = bytes.fromhex("34 00 10 00 01 00 02 00 00 00 00") + b"Hello World!"
V18_EOF = bytes.fromhex("24 00 0A 00 01 00 02 04 00 1C 29 1C A3 00 00 00 0C")
# V20: COBS paper (Cheshire & Baker 1999) examples, as listed in test-vectors.md.
V20 = [
    (b"", "01"),
    (bytes.fromhex("00"), "0101"),
    (bytes.fromhex("11220033"), "0311220233"),
    (bytes.fromhex("11000000"), "0211010101"),
]


def with_crc(body: bytes | bytearray) -> bytes:
    """`body` without its last two octets, then their correct CRC-16 (FECF or PEC)."""
    body = bytes(body[:-2])
    return body + crc16(body).to_bytes(2, "big")


def json_ready(description: dict) -> bool:
    return json.loads(json.dumps(description)) == description


def test_v5_ping_telecommand_describes_every_field() -> None:
    out = describe(V5)
    assert out["kind"] == "pus-tc"
    assert out["primary_header"] == {
        "packet_version_number": 0,
        "packet_type": 1,
        "packet_type_name": "TC",
        "secondary_header_flag": True,
        "apid": 2,
        "sequence_flags": 3,
        "sequence_flags_name": "UNSEGMENTED",
        "sequence_count": 0x34,
        "packet_data_length": 6,
    }
    assert out["secondary_header"] == {
        "tc_packet_pus_version_number": 2,
        "acknowledgement_flags": 0xF,
        "service": 17,
        "service_name": "TEST",
        "subtype": 1,
        "subtype_name": "ARE_YOU_ALIVE",
        "source_id": 0,
    }
    assert out["user_data"] == ""
    assert out["application_data"] == {"kind": "are-you-alive"}
    assert out["packet_error_control"] == 0xEE63
    assert find_errors(out) == []
    assert describe(V5, "pus") == out == describe(V5, "space-packet")


def test_v6_ping_tc_decodes_and_the_untimed_tm_reply_is_shown_as_not_icd_pus() -> None:
    tc = describe(V6_TC)
    assert (tc["kind"], tc["primary_header"]["apid"], tc["primary_header"]["sequence_count"]) == (
        "pus-tc",
        1,
        0,
    )
    assert tc["packet_error_control"] == 0x161D
    # The ICD's TM secondary header carries a 6-octet CUC time; V6's reply carries none.
    tm = describe(V6_TM)
    assert tm["kind"] == "space-packet"
    assert tm["primary_header"]["packet_type_name"] == "TM"
    assert tm["primary_header"]["apid"] == 1
    assert tm["packet_data_field"] == "2011020000000086d7"
    assert tm["pus"]["error_type"] == "LengthError"
    assert tm["pus"]["offset"] == 4  # the packet data length field
    assert [path for path, _ in find_errors(tm)] == ["space-packet.pus"]
    with pytest.raises(LengthError):
        describe(V6_TM, "pus")


def test_v7_space_packets_describe_header_and_data() -> None:
    first = describe(V7_HEADER + b"\x00")
    assert first["kind"] == "space-packet"
    assert first["primary_header"]["packet_type_name"] == "TC"
    assert first["primary_header"]["apid"] == 1
    assert first["primary_header"]["packet_data_length"] == 0
    assert first["packet_data_field"] == "00"
    second = describe(V7_PACKET, "space-packet")
    assert second["primary_header"]["apid"] == 2
    assert second["primary_header"]["sequence_count"] == 5
    assert second["packet_data_field"] == "01020304"
    assert find_errors(first) == find_errors(second) == []


def test_a_bench_sensor_record_is_shown_field_by_field() -> None:
    record = SensorRecord(
        bench_time_tai_s=1e9,
        battery_voltage_v=7.5,
        battery_current_a=-0.5,
        solar_power_w=20.0,
        load_power_w=12.0,
        soc=0.5,
        illumination=0.25,
    )
    packet = SpacePacket(PacketType.TC, icd.Apid.SIMULATED_SENSORS, 3, record.encode())
    described = describe(packet.encode(), "space-packet")
    shown = described["sensor_record"]
    assert shown["battery_voltage_v"] == 7.5 and shown["payload_power_w"] is None
    assert find_errors(described) == []
    truncated = SpacePacket(PacketType.TC, icd.Apid.SIMULATED_SENSORS, 4, b"\x01\x02")
    errors = find_errors(describe(truncated.encode(), "space-packet"))
    assert errors and errors[0][0].endswith("sensor_record")


def test_v9_tm_frame_shows_header_idle_data_ocf_and_fecf() -> None:
    out = describe(V9, tm_frame_length=16)
    assert out["kind"] == "tm-frame"
    header = out["transfer_frame_primary_header"]
    assert (header["spacecraft_id"], header["virtual_channel_id"]) == (3, 7)
    assert header["operational_control_field_flag"] is True
    status = header["transfer_frame_data_field_status"]
    assert status["first_header_pointer"] == 0x7FE
    assert status["first_header_pointer_name"] == "ONLY_IDLE_DATA"
    assert status["segment_length_identifier"] == 0b11
    assert out["idle_data_octets"] == 4
    assert out["packets"] == []
    ocf = out["operational_control_field"]
    assert ocf["kind"] == "clcw" and ocf["octets"] == "01000000"
    assert ocf["cop_in_effect"] == 1
    assert out["frame_error_control_field"] == 0x814A
    assert describe(V9, "tm-frame", tm_frame_length=16) == out


def test_v9_with_a_wrong_fecf_is_a_checksum_error_at_the_fecf() -> None:
    bad = V9[:-2] + bytes.fromhex("0123")  # spacepackets' own bad-FECF case
    with pytest.raises(ChecksumError) as caught:
        describe(bad, "tm-frame", tm_frame_length=16)
    assert caught.value.offset == 14
    assert "0x814a" in str(caught.value)


def test_v11_tc_frame_fields_and_the_missing_sdls_of_its_command_channel() -> None:
    out = describe(V11)
    assert out["kind"] == "tc-frame"
    assert out["primary_header"] == {
        "transfer_frame_version_number": 0,
        "bypass_flag": True,
        "control_command_flag": False,
        "reserved_spare": 0,
        "spacecraft_identifier": 123,
        "virtual_channel_identifier": 0,
        "virtual_channel_identifier_name": "COMMAND",
        "frame_length": 23,
        "frame_sequence_number": 23,
    }
    assert out["frame_type"] == "BD"
    assert out["segment_header"] == {"sequence_flags": 3, "map_identifier": 1}
    assert out["frame_error_control_field"] == 0x0DEF
    # VC 0 is the ICD's authenticated COMMAND channel; 16 octets cannot hold SDLS header + MAC.
    security = out["security_header"]
    assert security["error_type"] == "TruncatedError"
    assert security["offset"] == 6
    assert security["octets"] == bytes(range(16)).hex()


@pytest.mark.parametrize(
    ("word", "report_value", "farm_b_counter", "flags"),
    [
        (V13_FIRST, 137, 3, (True, False, True, False, False)),
        (V13_SECOND, 212, 0, (True, True, False, True, False)),
    ],
)
def test_v13_clcws_in_a_tm_frame_ocf(word, report_value, farm_b_counter, flags) -> None:
    frame = TmFrame(SCID, 0, 1, 2, 0x7FE, bytes(1103), ocf=word).encode()
    ocf = describe(frame)["operational_control_field"]
    assert ocf["kind"] == "clcw"
    assert ocf["octets"] == f"{word:08x}"
    assert (ocf["status_field"], ocf["cop_in_effect"]) == (0, 0)
    assert ocf["report_value"] == report_value
    assert ocf["farm_b_counter"] == farm_b_counter
    assert (
        ocf["no_rf_available"],
        ocf["no_bit_lock"],
        ocf["lockout"],
        ocf["wait"],
        ocf["retransmit"],
    ) == flags


def test_v16_cfdp_file_data_pdu() -> None:
    out = describe(V16)
    assert (out["kind"], out["pdu"]) == ("cfdp", "file-data")
    header = out["header"]
    assert header["version"] == 1
    assert header["pdu_type_name"] == "FILE_DATA"
    assert header["transmission_mode_name"] == "ACKNOWLEDGED"
    assert header["pdu_data_field_length"] == 15
    assert (header["length_of_entity_ids"], header["length_of_transaction_sequence_number"]) == (
        0,
        0,
    )
    assert header["source_entity_id"] == header["destination_entity_id"] == 0
    assert out["offset"] == 0
    assert bytes.fromhex(out["file_data"]) == b"hello world"
    assert out["pdu_crc"] is None


def test_v18_cfdp_transfer_metadata_file_data_and_eof() -> None:
    metadata = describe(V18_METADATA, "cfdp")
    assert metadata["pdu"] == "metadata"
    assert metadata["directive_code"] == 7 and metadata["directive_code_name"] == "METADATA"
    assert metadata["header"]["transmission_mode_name"] == "UNACKNOWLEDGED"
    assert (
        metadata["header"]["source_entity_id"],
        metadata["header"]["destination_entity_id"],
    ) == (
        1,
        2,
    )
    assert metadata["parameters"]["closure_requested"] is True
    assert metadata["parameters"]["checksum_type_name"] == "CRC32"
    assert metadata["file_size"] == 12
    assert metadata["source_file_name_text"] == "/tmp/src-file.txt"
    assert metadata["destination_file_name"] == b"/tmp/dest-file.txt".hex()
    file_data = describe(V18_FILE_DATA)
    assert bytes.fromhex(file_data["file_data"]) == b"Hello World!"
    eof = describe(V18_EOF)
    assert eof["pdu"] == "eof"
    assert eof["status"]["condition_code_name"] == "NO_ERROR"
    assert eof["file_checksum"] == 0x1C291CA3  # V19, the CRC-32 of "Hello World!"
    assert eof["file_size"] == 12


def test_v18_pdu_in_a_space_packet_on_the_cfdp_apid() -> None:
    packet = SpacePacket(PacketType.TC, icd.Apid.CFDP, 9, V18_FILE_DATA).encode()
    out = describe(packet)
    assert out["kind"] == "space-packet"
    assert out["primary_header"]["apid"] == icd.Apid.CFDP
    assert out["cfdp"]["pdu"] == "file-data"
    assert bytes.fromhex(out["cfdp"]["file_data"]) == b"Hello World!"
    broken = SpacePacket(PacketType.TC, icd.Apid.CFDP, 9, V18_FILE_DATA[:-1]).encode()
    error = describe(broken)["cfdp"]
    assert error["error_type"] == "TruncatedError"
    assert error["offset"] == 6 + len(V18_FILE_DATA) - 1  # where the PDU falls short


@pytest.mark.parametrize(("data", "encoded"), V20)
def test_v20_cobs_examples_hold_for_the_codec_that_wraps_the_streams(data, encoded) -> None:
    assert cobs.encode(data).hex() == encoded


def test_v20_wrapped_frames_are_each_described() -> None:
    stream = cobs.frame(V11) + cobs.DELIMITER + cobs.frame(V5)  # an extra 00 is allowed
    out = describe(stream)
    assert out["kind"] == "cobs"
    assert [frame["kind"] for frame in out["frames"]] == ["tc-frame", "pus-tc"]
    assert out["frames"][0]["primary_header"]["spacecraft_identifier"] == 123
    assert out["frames"][1]["primary_header"]["sequence_count"] == 0x34
    assert (out["discarded_frames"], out["discarded_octets"], out["pending_octets"]) == (0, 0, 0)
    # V11's missing security header is reported where its first octet sits in the stream: decoded
    # octet 6 is a zero, which the code octet at stream octet 7 stands for.
    assert out["frames"][0]["security_header"]["offset"] == 7


# --- nesting ----------------------------------------------------------------------------------


def secured_frame(tc: bytes, *, iv: int = 42, vc: int = icd.TcVirtualChannel.COMMAND) -> bytes:
    security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, KEY)])
    return security.apply(TcFrame(SCID, vc, 5, tc), iv=iv).encode()


def test_pus_tc_in_an_sdls_frame_in_cobs_is_described_at_every_level() -> None:
    tc = PusTc(0x010, 77, 8, 1, PerformFunction(0x0102, b"\xaa\xbb").encode()).encode()
    frame = secured_frame(tc)
    out = describe(cobs.frame(frame))
    assert out["kind"] == "cobs"
    (described,) = out["frames"]
    assert described["kind"] == "tc-frame"
    assert described["primary_header"]["spacecraft_identifier"] == SCID
    assert described["primary_header"]["virtual_channel_identifier_name"] == "COMMAND"
    assert described["primary_header"]["frame_sequence_number"] == 5
    assert described["frame_type"] == "AD"
    assert described["security_header"] == {
        "security_parameter_index": 1,
        "initialization_vector": (42).to_bytes(12, "big").hex(),
        "iv": 42,
    }
    assert described["security_trailer"] == {
        "message_authentication_code": frame[-18:-2].hex(),
        "mac_verified": False,
    }
    (packet,) = described["packets"]
    assert packet["kind"] == "pus-tc"
    assert packet["primary_header"]["apid"] == 0x010
    assert packet["primary_header"]["sequence_count"] == 77
    assert packet["secondary_header"]["service_name"] == "FUNCTION_MANAGEMENT"
    assert packet["secondary_header"]["subtype_name"] == "PERFORM_FUNCTION"
    assert packet["application_data"] == {
        "kind": "perform-function",
        "function_id": 0x0102,
        "arguments": "aabb",
    }
    assert find_errors(out) == []


def test_a_bad_packet_crc_inside_a_good_frame_is_reported_at_its_octet_in_the_stream() -> None:
    tc = bytearray(PusTc(0x010, 1, 17, 1).encode())
    tc[-1] ^= 0x01
    frame = secured_frame(bytes(tc))
    crc_at = 5 + 1 + 14 + len(tc) - 2  # headers, security header, then the packet's CRC
    error = describe(frame)["packets"][0]["pus"]
    assert (error["error_type"], error["offset"]) == ("ChecksumError", crc_at)
    stream = cobs.frame(frame)
    ((path, nested),) = find_errors(describe(stream))
    assert path == "cobs.frames[0].packets[0].pus"
    assert stream[nested["offset"]] == frame[crc_at] != 0


def test_offsets_past_long_cobs_blocks_point_at_the_same_octet() -> None:
    filler = SpacePacket(PacketType.TC, 0x20, 0, bytes(range(1, 256)) * 2).encode()
    tc = bytearray(PusTc(0x010, 1, 17, 1).encode())
    tc[-2] ^= 0x40
    frame = TcFrame(SCID, 5, 0, filler + bytes(tc)).encode()  # VC 5: not secured
    crc_at = 6 + len(filler) + len(tc) - 2
    stream = cobs.frame(frame)
    ((_, nested),) = find_errors(describe(stream))
    # The leading code octet and the two 0xFF codes of the 516-octet zero-free run shift it by 3.
    assert nested["offset"] == crc_at + 3
    assert stream[nested["offset"]] == frame[crc_at]


def two_packets_and_a_spanning_one() -> tuple[list[bytes], list[bytes]]:
    clcw = int.from_bytes(Clcw(report_value=9, virtual_channel_identification=0).encode(), "big")
    master = TmMasterChannel(SCID, ocf=lambda: clcw)
    channel = master.virtual_channel(icd.TmVirtualChannel.REALTIME)
    packets = [
        PusTm(0x020, 1, 17, 2, time=CucTime(1_000_000, 0x8000)).encode(),
        PusTm(0x021, 2, 5, 1, EventReport(0x1234, b"aux").encode(), time=CucTime(7, 1)).encode(),
        SpacePacket(PacketType.TM, 0x030, 3, bytes(range(256)) * 6).encode(),
    ]
    for packet in packets:
        channel.send(packet)
    channel.flush()
    return packets, master.drain()


def test_tm_frame_with_two_packets_and_one_that_spans_into_the_next() -> None:
    packets, frames = two_packets_and_a_spanning_one()
    out = describe(frames[0])
    assert out["transfer_frame_primary_header"]["virtual_channel_id_name"] == "REALTIME"
    assert out["transfer_frame_primary_header"]["transfer_frame_data_field_status"] == {
        "transfer_frame_secondary_header_flag": False,
        "synchronization_flag": False,
        "packet_order_flag": False,
        "segment_length_identifier": 3,
        "first_header_pointer": 0,
    }
    assert out["continuation_octets"] == 0
    ping, event, spanning = out["packets"]
    assert (ping["kind"], ping["secondary_header"]["service"]) == ("pus-tm", 17)
    assert ping["secondary_header"]["subtype_name"] == "ARE_YOU_ALIVE_REPORT"
    assert ping["secondary_header"]["time"] == {
        "coarse_time": 1_000_000,
        "fine_time": 0x8000,
        "seconds_since_1958_tai": 1_000_000.5,
    }
    assert ping["source_data"] == {"kind": "are-you-alive"}
    assert event["secondary_header"]["subtype_name"] == "INFORMATIVE"
    assert event["source_data"] == {
        "kind": "event-report",
        "event_definition_id": 0x1234,
        "auxiliary_data": b"aux".hex(),
    }
    present = 1103 - len(packets[0]) - len(packets[1])
    assert spanning == {
        "kind": "space-packet",
        "length": len(packets[2]),
        "primary_header": describe(packets[2])["primary_header"],
        "continues_in_next_frame": True,
        "octets_present": present,
        "octets": packets[2][:present].hex(),
    }
    ocf = out["operational_control_field"]
    assert (ocf["kind"], ocf["report_value"]) == ("clcw", 9)
    assert out["frame_error_control_field"] == int.from_bytes(frames[0][-2:], "big")
    assert find_errors(out) == []


def test_the_next_tm_frame_counts_the_continuation_and_shows_the_idle_fill() -> None:
    packets, frames = two_packets_and_a_spanning_one()
    out = describe(frames[1])
    rest = len(packets[2]) - (1103 - len(packets[0]) - len(packets[1]))
    assert out["continuation_octets"] == rest
    assert (
        out["transfer_frame_primary_header"]["transfer_frame_data_field_status"][
            "first_header_pointer"
        ]
        == rest
    )
    (idle,) = out["packets"]
    assert idle["kind"] == "idle"
    assert idle["primary_header"]["apid"] == 0x7FF
    assert idle["length"] == 1103 - rest


def test_tm_frames_without_a_packet_start_and_with_a_type_2_ocf() -> None:
    frame = TmFrame(SCID, 1, 0, 0, 0x7FF, bytes(range(256)) * 4 + bytes(79), ocf=0x8000_0000)
    out = describe(frame.encode())
    assert out["continuation_octets"] == 1103 and out["packets"] == []
    status = out["transfer_frame_primary_header"]["transfer_frame_data_field_status"]
    assert status["first_header_pointer_name"] == "NO_PACKET_START"
    assert out["operational_control_field"] == {"kind": "type-2-report", "octets": "80000000"}


def test_a_header_split_by_the_frame_end_continues_in_the_next_frame() -> None:
    packet = PusTm(0x020, 1, 17, 2).encode()
    data = packet + packet + bytes(range(1, 4))  # 3 octets of the next header
    out = describe(TmFrame(SCID, 0, 0, 0, 0, data, ocf=0).encode(57), tm_frame_length=57)
    assert [p["kind"] for p in out["packets"]] == ["pus-tm", "pus-tm", "space-packet"]
    assert out["packets"][2] == {
        "kind": "space-packet",
        "continues_in_next_frame": True,
        "octets_present": 3,
        "octets": "010203",
    }


def test_no_ocf_frames_have_no_operational_control_field() -> None:
    frame = TmFrame(SCID, 2, 3, 4, 0x7FE, bytes(20)).encode(28)
    out = describe(frame, tm_frame_length=28, tm_has_ocf=False)
    assert "operational_control_field" not in out
    assert out["transfer_frame_primary_header"]["master_channel_frame_count"] == 3
    with pytest.raises(NoKindFitsError):
        describe(frame, tm_frame_length=28)  # an OCF-less frame is no ICD frame


def test_bc_frames_show_their_control_command() -> None:
    unlock = describe(TcFrame.unlock(SCID, 0).encode())
    assert unlock["frame_type"] == "BC"
    assert "segment_header" not in unlock
    assert unlock["control_command"] == {
        "kind": "control-command",
        "control_command": 0,
        "control_command_name": "UNLOCK",
    }
    set_vr = describe(TcFrame.set_vr(SCID, 1, 200).encode(), "tc-frame")
    assert set_vr["control_command"] == {
        "kind": "control-command",
        "control_command": 0x82,
        "control_command_name": "SET_VR",
        "v_r": 200,
    }


def test_an_spi_outside_the_icd_leaves_the_data_uninterpreted() -> None:
    security = TcSecurity([SecurityAssociation(9, KEY)])
    frame = security.apply(TcFrame(SCID, 1, 0, V5), iv=1).encode()
    out = describe(frame)
    assert out["security_header"]["security_parameter_index"] == 9
    assert "packets" not in out
    assert out["protected_data"]["error_type"] == "AuthenticationError"
    assert out["protected_data"]["offset"] == 6
    assert out["protected_data"]["octets"] == V5.hex()


def test_frames_on_unsecured_channels_carry_several_packets() -> None:
    out = describe(TcFrame(SCID, 9, 1, V5 + V7_PACKET + V6_TC).encode())
    assert "security_header" not in out
    assert [p["kind"] for p in out["packets"]] == ["pus-tc", "space-packet", "pus-tc"]
    cut = describe(TcFrame(SCID, 9, 1, V5 + V7_PACKET[:-1]).encode())["packets"][1]
    assert (cut["error_type"], cut["offset"]) == ("TruncatedError", 6 + len(V5))


def verification_failure() -> bytes:
    request = RequestId(0, PacketType.TC, True, 0x010, 3, 99)
    return VerificationFailure(request, 0x0203, b"\x01").encode()


@pytest.mark.parametrize(
    ("packet", "key", "expected"),
    [
        (
            PusTm(1, 0, 1, 8, verification_failure()),
            "source_data",
            {
                "kind": "verification-failure",
                "request_id": {
                    "packet_version_number": 0,
                    "packet_type": 1,
                    "secondary_header_flag": True,
                    "apid": 0x010,
                    "sequence_flags": 3,
                    "packet_sequence_count": 99,
                },
                "failure_code": 0x0203,
                "failure_data": "01",
            },
        ),
        (
            PusTm(1, 0, 3, 25, HousekeepingParameterReport(7, b"\x00\x2a").encode()),
            "source_data",
            {
                "kind": "housekeeping-parameter-report",
                "housekeeping_parameter_report_structure_id": 7,
                "parameter_values": "002a",
            },
        ),
        (
            PusTc(1, 0, 3, 31, ModifyCollectionIntervals([CollectionInterval(7, 500)]).encode()),
            "application_data",
            {
                "kind": "collection-intervals",
                "n": 1,
                "collection_intervals": [
                    {"housekeeping_parameter_report_structure_id": 7, "collection_interval": 500}
                ],
            },
        ),
        (
            PusTc(1, 0, 20, 1, ParameterIds([3, 4]).encode()),
            "application_data",
            {"kind": "parameter-ids", "n": 2, "parameter_ids": [3, 4]},
        ),
        (
            PusTm(1, 0, 17, 4, ConnectionTest(0x7F1).encode()),
            "source_data",
            {"kind": "connection-test", "apid": 0x7F1},
        ),
    ],
)
def test_service_data_is_decoded_where_no_dictionary_is_needed(packet, key, expected) -> None:
    out = describe(packet.encode())
    assert out[key] == expected
    assert bytes.fromhex(out["user_data"]) == (
        packet.app_data if isinstance(packet, PusTc) else packet.source_data
    )


def test_data_that_needs_the_dictionary_or_an_unknown_service_stays_hex() -> None:
    value_report = describe(PusTm(1, 0, 20, 2, b"\x01\x00\x03\x00\x00\x00\x2a").encode())
    assert "source_data" not in value_report
    assert value_report["user_data"] == "0100030000002a"
    mission = describe(PusTc(1, 0, 200, 1, b"\x12").encode())
    assert "application_data" not in mission and "service_name" not in mission["secondary_header"]


def test_malformed_service_data_is_an_error_at_its_octet() -> None:
    tc = PusTc(1, 0, 20, 1, b"\x02\x00\x03").encode()  # N = 2 but one id and a half
    error = describe(tc)["application_data"]
    assert error["kind"] == "parameter-ids"
    assert error["error_type"] == "TruncatedError"
    assert error["offset"] == 6 + 5 + 3  # where the data ends short
    ping = describe(PusTc(1, 0, 17, 1, b"\x00").encode())["application_data"]
    assert (ping["error_type"], ping["offset"]) == ("LengthError", 11)


# --- auto-detection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (TmFrame(SCID, 0, 0, 0, 0x7FE, bytes(1103), ocf=0).encode(), "tm-frame"),
        (V11, "tc-frame"),
        (cobs.frame(V11), "cobs"),
        (V5, "pus-tc"),
        (V7_PACKET, "space-packet"),
        (V18_EOF, "cfdp"),
    ],
)
def test_auto_detection_finds_each_kind(data, kind) -> None:
    assert describe(data)["kind"] == kind


def test_auto_detection_lists_why_every_kind_failed() -> None:
    with pytest.raises(NoKindFitsError) as caught:
        describe(V11[:-2] + b"\x00")
    error = caught.value
    assert list(error.reasons) == list(AUTO_ORDER)
    assert isinstance(error.reasons["tc-frame"], TruncatedError)
    assert isinstance(error.reasons["cobs"], FieldError)
    assert "tc-frame: frame length field says 24 octets" in str(error)


def test_empty_input_and_an_unknown_kind() -> None:
    for kind in KINDS:
        with pytest.raises(TruncatedError):
            describe(b"", kind)
    with pytest.raises(ValueError, match="unknown kind"):
        describe(V5, "uslp-frame")


@FAST
@given(
    apid=st.integers(0, 0x7EF),
    count=st.integers(0, 0x3FFF),
    service=st.integers(0, 255),
    subtype=st.integers(0, 255),
    data=st.binary(max_size=64),
    source=st.integers(0, 0xFFFF),
    ack=st.integers(0, 15),
)
def test_pus_telecommands_round_trip_through_auto(
    apid, count, service, subtype, data, source, ack
) -> None:
    out = describe(PusTc(apid, count, service, subtype, data, source, ack).encode())
    assert out["kind"] == "pus-tc"
    assert (out["primary_header"]["apid"], out["primary_header"]["sequence_count"]) == (apid, count)
    header = out["secondary_header"]
    assert (header["service"], header["subtype"]) == (service, subtype)
    assert (header["source_id"], header["acknowledgement_flags"]) == (source, ack)
    assert bytes.fromhex(out["user_data"]) == data
    assert json_ready(out)


@FAST
@given(
    apid=st.integers(0, 0x7EF),
    count=st.integers(0, 0x3FFF),
    service=st.integers(0, 255),
    subtype=st.integers(0, 255),
    data=st.binary(max_size=64),
    destination=st.integers(0, 0xFFFF),
    counter=st.integers(0, 0xFFFF),
    coarse=st.integers(0, 0xFFFF_FFFF),
    fine=st.integers(0, 0xFFFF),
)
def test_pus_telemetry_round_trips_with_its_time(
    apid, count, service, subtype, data, destination, counter, coarse, fine
) -> None:
    time = CucTime(coarse, fine)
    tm = PusTm(apid, count, service, subtype, data, destination, counter, time)
    out = describe(tm.encode(), "pus")
    header = out["secondary_header"]
    assert (header["service"], header["subtype"]) == (service, subtype)
    assert (header["destination_id"], header["message_type_counter"]) == (destination, counter)
    assert header["time"] == {
        "coarse_time": coarse,
        "fine_time": fine,
        "seconds_since_1958_tai": time.seconds,
    }
    assert bytes.fromhex(out["user_data"]) == data


@FAST
@given(
    vc=st.integers(2, 63),
    sequence=st.integers(0, 255),
    map_id=st.integers(0, 63),
    bypass=st.booleans(),
    apid=st.integers(0, 0x7EF),
    payload=st.binary(min_size=1, max_size=200),
)
def test_tc_frames_round_trip_with_their_packet(vc, sequence, map_id, bypass, apid, payload):
    packet = SpacePacket(PacketType.TC, apid, 1, payload).encode()
    frame = TcFrame(SCID, vc, sequence, packet, bypass, map_id=map_id).encode()
    out = describe(frame)
    header = out["primary_header"]
    assert (header["virtual_channel_identifier"], header["frame_sequence_number"]) == (vc, sequence)
    assert header["bypass_flag"] is bypass
    assert out["segment_header"]["map_identifier"] == map_id
    (described,) = out["packets"]
    assert bytes.fromhex(described["packet_data_field"]) == payload


@FAST
@given(
    iv=st.integers(1, (1 << 96) - 1),
    vc=st.sampled_from(list(icd.TcVirtualChannel)),
    count=st.integers(0, 0x3FFF),
)
def test_secured_frames_round_trip_their_iv(iv, vc, count) -> None:
    out = describe(secured_frame(PusTc(0x10, count, 17, 1).encode(), iv=iv, vc=vc))
    assert out["security_header"]["iv"] == iv
    assert int(out["security_header"]["initialization_vector"], 16) == iv
    assert out["packets"][0]["primary_header"]["sequence_count"] == count


@FAST
@given(
    scid=st.integers(0, 0x3FF),
    vc=st.integers(0, 7),
    mc=st.integers(0, 255),
    vcc=st.integers(0, 255),
    ocf=st.integers(0, 0x7FFF_FFFF),
    length=st.integers(20, 300),
)
def test_tm_frame_headers_round_trip(scid, vc, mc, vcc, ocf, length) -> None:
    data = bytes(length - 12)
    frame = TmFrame(scid, vc, mc, vcc, 0x7FE, data, ocf=ocf).encode(length)
    out = describe(frame, "tm-frame", tm_frame_length=length)
    header = out["transfer_frame_primary_header"]
    assert (header["spacecraft_id"], header["virtual_channel_id"]) == (scid, vc)
    assert (header["master_channel_frame_count"], header["virtual_channel_frame_count"]) == (
        mc,
        vcc,
    )
    described = out["operational_control_field"]
    assert int(described["octets"], 16) == ocf
    if ocf >> 29:  # CLCW version bits other than 00: no CLCW this ICD knows
        assert (described["kind"], described["error_type"]) == ("clcw", "FieldError")
        assert described["offset"] == length - 6
    else:
        assert described["report_value"] == ocf & 0xFF


@FAST
@given(
    source=st.integers(0, 0xFFFF),
    destination=st.integers(0, 0xFFFF),
    sequence=st.integers(0, 0xFFFF_FFFF),
    offset=st.integers(0, 0xFFFF_FFFF),
    data=st.binary(min_size=1, max_size=64),
    crc=st.booleans(),
)
def test_cfdp_file_data_round_trips(source, destination, sequence, offset, data, crc) -> None:
    header = PduHeader(source, sequence, destination, crc_flag=crc)
    out = describe(FileDataPdu(header, offset, data).encode(), "cfdp")
    assert (out["header"]["source_entity_id"], out["header"]["destination_entity_id"]) == (
        source,
        destination,
    )
    assert out["header"]["transaction_sequence_number"] == sequence
    assert (out["offset"], bytes.fromhex(out["file_data"])) == (offset, data)
    assert (out["pdu_crc"] is not None) is crc


@FAST
@given(size=st.integers(0, 0xFFFF_FFFF), name=st.text(min_size=1, max_size=40))
def test_cfdp_metadata_and_eof_round_trip(size, name) -> None:
    header = PduHeader(1, 2, 3, transmission_mode=TransmissionMode.UNACKNOWLEDGED)
    metadata = describe(MetadataPdu(header, size, b"src", name.encode()).encode())
    assert metadata["destination_file_name_text"] == name
    assert metadata["file_size"] == size
    assert describe(EofPdu(header, 0xDEADBEEF, size).encode())["file_size"] == size


@FAST
@given(
    apid=st.integers(0, 0x7EF),
    count=st.integers(0, 0xF),
    service=st.integers(0, 255),
    subtype=st.integers(0, 255),
    size=st.integers(0, 1003),
)
def test_pus_packets_pass_the_fecf_check_yet_never_read_as_frames(
    apid, count, service, subtype, size
) -> None:
    # The hard case: the TM frame length is the packet's, and the sequence count puts the packet's
    # length in the TC frame length field, so only the header bits can tell them apart.
    total = 21 + size
    count = (count << 10) | (total - 1)
    packet = PusTm(apid, count, service, subtype, bytes(range(1, 256)) * 4 + bytes(size))
    packet = PusTm(apid, count, service, subtype, packet.source_data[:size]).encode()
    assert len(packet) == total
    assert describe(packet, tm_frame_length=total)["kind"] == "pus-tm"
    for kind in ("tc-frame", "tm-frame"):
        with pytest.raises(FieldError):
            describe(packet, kind, tm_frame_length=total)


@FAST
@given(
    source=st.integers(0, 0xFFFF),
    destination=st.integers(0, 0xFFFF),
    offset=st.integers(0, 0xFFFF_FFFF),
    data=st.binary(min_size=1, max_size=300),
)
def test_class_1_cfdp_pdus_with_their_crc_never_read_as_tc_frames(
    source, destination, offset, data
) -> None:
    header = PduHeader(source, 1, destination, crc_flag=True)
    pdu = FileDataPdu(header, offset, data).encode()
    assert describe(pdu)["kind"] == "cfdp"
    with pytest.raises(ProtocolError):
        describe(pdu, "tc-frame")


# --- negative properties ------------------------------------------------------------------------


@FAST
@given(cut=st.integers(1, 40), kind=st.sampled_from(["tc-frame", "pus", "space-packet"]))
def test_truncated_input_is_a_truncated_error(cut, kind) -> None:
    whole = secured_frame(V5) if kind == "tc-frame" else V5
    cut = min(cut, len(whole) - 1)
    with pytest.raises(TruncatedError):
        describe(whole[:-cut], kind)


@FAST
@given(cut=st.integers(1, 1114))
def test_truncated_tm_frames_are_a_truncated_error(cut) -> None:
    frame = TmFrame(SCID, 0, 0, 0, 0x7FE, bytes(1103), ocf=0).encode()
    with pytest.raises(TruncatedError):
        describe(frame[:-cut], "tm-frame")


@FAST
@given(extra=st.binary(min_size=1, max_size=20), kind=st.sampled_from(["tc-frame", "pus", "cfdp"]))
def test_length_fields_that_disagree_with_the_buffer_are_a_length_error(extra, kind) -> None:
    whole = {"tc-frame": V11, "pus": V5, "cfdp": V18_EOF}[kind]
    with pytest.raises(LengthError):
        describe(whole + extra, kind)


@pytest.mark.parametrize(
    ("data", "kind", "options"),
    [
        (V11, "tc-frame", {}),
        (V5, "pus", {}),
        (V9, "tm-frame", {"tm_frame_length": 16}),
        (FileDataPdu(PduHeader(1, 2, 3, crc_flag=True), 0, b"data").encode(), "cfdp", {}),
    ],
)
def test_a_bad_crc_is_a_checksum_error_at_the_crc(data, kind, options) -> None:
    bad = data[:-1] + bytes([data[-1] ^ 0x20])
    with pytest.raises(ChecksumError) as caught:
        describe(bad, kind, **options)
    assert caught.value.offset == len(data) - 2


def test_every_single_bit_flip_of_a_secured_cobs_frame_is_reported() -> None:
    stream = cobs.frame(secured_frame(V5))
    for index in range(len(stream)):
        for bit in range(8):
            flipped = bytearray(stream)
            flipped[index] ^= 1 << bit
            try:
                out = describe(bytes(flipped))
            except ProtocolError:
                continue
            assert find_errors(out), f"bit {bit} of octet {index} went unnoticed"


def test_a_frame_on_a_secured_channel_without_sdls_is_an_error_in_its_security_header() -> None:
    out = describe(TcFrame(SCID, icd.TcVirtualChannel.FILE, 0, V5).encode())
    assert out["security_header"]["error_type"] == "TruncatedError"
    unsecured = describe(TcFrame(SCID, 2, 0, V5).encode())
    assert find_errors(unsecured) == []


def test_malformed_cobs_frames_are_shown_and_counted() -> None:
    stream = bytes.fromhex("05 11 22 00") + cobs.frame(V5) + bytes.fromhex("03 44")
    out = describe(stream, "cobs")
    first, good, last = out["frames"]
    assert (first["kind"], first["error_type"], first["offset"]) == ("cobs-frame", "FieldError", 0)
    assert good["kind"] == "pus-tc"
    assert (last["error_type"], last["offset"]) == ("TruncatedError", len(stream) - 2)
    assert (out["discarded_frames"], out["discarded_octets"], out["pending_octets"]) == (1, 3, 2)
    assert describe(stream[:-2])["kind"] == "cobs"  # auto: one good frame is enough


def test_a_stream_of_unrecognised_frames_is_no_cobs_for_auto() -> None:
    stream = cobs.frame(b"\x01\x02\x03")
    with pytest.raises(NoKindFitsError) as caught:
        describe(stream)
    assert "no frame in it is recognised" in str(caught.value.reasons["cobs"])
    assert describe(stream, "cobs")["frames"][0]["kind"] == "unknown"


@FUZZ
@given(data=st.binary(max_size=80), kind=st.sampled_from(KINDS))
def test_arbitrary_octets_give_a_description_or_a_protocol_error(data, kind) -> None:
    try:
        out = describe(data, kind, tm_frame_length=32)
    except ProtocolError:
        return
    assert json_ready(out)


@FUZZ
@given(
    vc=st.sampled_from([0, 1, 3]),
    data=st.binary(max_size=120),
    packet=st.sampled_from([V5, V6_TC, V7_PACKET, V18_EOF, b""]),
    spi=st.sampled_from([b"\x00\x01", b"\x00\x02"]),
)
def test_arbitrary_data_fields_of_valid_frames_never_break_the_reader(vc, data, packet, spi):
    # Random octets behind a valid header and FECF reach every parser inside a TC frame.
    field = (spi + bytes(12) + packet + data + bytes(16)) if vc < 2 else packet + data
    frame = TcFrame(SCID, vc, 0, field[:1000]).encode()
    for described in (describe(frame), describe(cobs.frame(frame))):
        assert json_ready(described)


@FUZZ
@given(
    data=st.binary(min_size=58, max_size=58),
    fhp=st.one_of(st.integers(0, 57), st.sampled_from([0x7FE, 0x7FF])),
    ocf=st.integers(0, 0xFFFF_FFFF),
    lead=st.sampled_from([V5, V6_TM, PusTm(1, 2, 1, 2, b"\x00").encode(), b""]),
)
def test_arbitrary_data_fields_of_valid_tm_frames_never_break_the_reader(data, fhp, ocf, lead):
    field = (lead + data)[:58]
    frame = TmFrame(SCID, 0, 0, 0, fhp, field, ocf=ocf).encode(70)
    assert json_ready(describe(frame, tm_frame_length=70))


@FUZZ
@given(
    body=st.binary(min_size=1, max_size=60),
    octet0=st.integers(0x20, 0x3F),
    octet3=st.integers(0, 0xFF),
)
def test_arbitrary_cfdp_bodies_with_a_valid_crc_never_break_the_reader(body, octet0, octet3):
    octet0 |= 0x02  # CRC flag: the PDU passes its CRC and reaches the field parsers
    ids = 2 * (((octet3 >> 4) & 7) + 1) + (octet3 & 7) + 1
    length = len(body) - ids + 2  # the data field length that makes the PDU end at its CRC
    assume(length >= 2)
    pdu = with_crc(bytes([octet0]) + length.to_bytes(2, "big") + bytes([octet3]) + body + b"..")
    try:
        out = describe(pdu, "cfdp")
    except ProtocolError:
        return
    assert json_ready(out)


def test_find_errors_names_the_path_of_each_nested_error() -> None:
    stream = cobs.frame(V11) + cobs.frame(V6_TM)
    assert [path for path, _ in find_errors(describe(stream))] == [
        "cobs.frames[0].security_header",
        "cobs.frames[1].pus",
    ]
