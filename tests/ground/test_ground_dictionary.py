"""ground.dictionary: loading and checking the file, encoding commands, decoding TM by name."""

import json
import struct

import pytest

from flight.protocol.cuc import CucTime
from flight.protocol.pus import (
    EventReport,
    HousekeepingParameterReport,
    PerformFunction,
    PusTm,
    RequestId,
    VerificationFailure,
    VerificationSuccess,
)
from flight.protocol.spacepacket import PacketType, SequenceFlags
from flight.runtime.types import WireType
from ground.dictionary import (
    ArgumentError,
    DecodeError,
    Dictionary,
    DictionaryError,
    EventMessage,
    HousekeepingReport,
    LimitState,
    OtherPacket,
    ParameterReport,
    PingReply,
    RequestKey,
    Severity,
    Stage,
    UnknownNameError,
    Verification,
)
from tests.ground.responder import APID, sample_dictionary, sample_document

TIME = CucTime(2_000_000_000, 0x8000)


def tm(service: int, subtype: int, data: bytes = b"") -> PusTm:
    # Through the wire and back, as the station gets it.
    return PusTm.decode(PusTm(APID, 7, service, subtype, data, time=TIME).encode())


def load(tmp_path, document) -> Dictionary:
    path = tmp_path / "dict.json"
    path.write_text(json.dumps(document))
    return Dictionary.load(path)


# -- loading ---------------------------------------------------------------------------------------


def test_sample_dictionary_loads_with_every_declaration_by_name(tmp_path):
    dictionary = load(tmp_path, sample_document())
    assert dictionary.spacecraft_id == 0x1A5 and dictionary.apid == APID
    assert dictionary.command("health.SET_PING_PERIOD").opcode == 770
    assert dictionary.channel("health.CPU_PERCENT").units == "%"
    assert dictionary.event("health.PING_LATE").severity is Severity.LOW
    assert dictionary.parameter("health.PING_PERIOD_MS").id == 768
    assert dictionary.failure_name(5) == "EXECUTION_FAILED"
    assert [c.name for c in dictionary.component("health").channels_in_order] == [
        "COMMANDS_ACCEPTED",
        "COMMANDS_REJECTED",
        "CPU_PERCENT",
        "MODE",
    ]


def test_missing_file_names_the_file_and_how_to_make_it(tmp_path):
    with pytest.raises(DictionaryError, match=r"nowhere\.json: no such file.*penumbra dict export"):
        Dictionary.load(tmp_path / "nowhere.json")


def test_a_file_that_is_not_json_says_where_it_breaks(tmp_path):
    path = tmp_path / "dict.json"
    path.write_text('{"format": "penumbra-dictionary/1",\n  "apid": }')
    with pytest.raises(DictionaryError, match=r"dict\.json: not JSON \(line 2, column"):
        Dictionary.load(path)


def test_another_format_is_refused_by_name(tmp_path):
    document = sample_document()
    document["format"] = "fprime-dictionary/3"
    with pytest.raises(DictionaryError, match=r"dict\.json: format: 'fprime-dictionary/3'"):
        load(tmp_path, document)


def test_a_missing_key_is_named_with_its_whole_path(tmp_path):
    document = sample_document()
    del document["components"]["health"]["commands"]["NOOP"]["opcode"]
    with pytest.raises(DictionaryError) as caught:
        load(tmp_path, document)
    assert "dict.json: components.health.commands.NOOP.opcode: missing" in str(caught.value)


def test_a_value_of_the_wrong_kind_is_named(tmp_path):
    document = sample_document()
    document["spacecraft_id"] = "421"
    with pytest.raises(DictionaryError, match=r"spacecraft_id: str '421', expected an integer"):
        load(tmp_path, document)


def test_an_unknown_wire_type_lists_the_known_ones(tmp_path):
    document = sample_document()
    document["components"]["health"]["telemetry"]["CPU_PERCENT"]["type"] = "float"
    with pytest.raises(DictionaryError) as caught:
        load(tmp_path, document)
    message = str(caught.value)
    assert "components.health.telemetry.CPU_PERCENT.type: 'float'" in message
    assert "f32" in message and "enum" in message


def test_an_opcode_used_twice_names_both_commands(tmp_path):
    document = sample_document()
    document["components"]["health"]["commands"]["FAIL"]["opcode"] = 768
    with pytest.raises(DictionaryError, match=r"FAIL: opcode 768 is also used by health\.NOOP"):
        load(tmp_path, document)


def test_an_unknown_limit_key_is_refused(tmp_path):
    document = sample_document()
    document["components"]["health"]["telemetry"]["CPU_PERCENT"]["limits"]["orange_high"] = 90
    with pytest.raises(DictionaryError, match=r"CPU_PERCENT\.limits: .*orange_high"):
        load(tmp_path, document)


# -- lookups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [("health.NOPE", "health.NOOP"), ("helth.NOOP", "health.NOOP"), ("health.noop", "health.NOOP")],
)
def test_a_typo_in_a_command_name_suggests_the_close_match(typed, suggestion):
    with pytest.raises(UnknownNameError) as caught:
        sample_dictionary().command(typed)
    assert suggestion in caught.value.suggestions
    assert f"did you mean {suggestion}" in str(caught.value)


def test_a_name_without_its_component_says_how_to_name_it():
    with pytest.raises(UnknownNameError, match=r"name a command as component\.NAME"):
        sample_dictionary().command("SAVE_ALL_THE_THINGS")


# -- encoding commands ---------------------------------------------------------------------------


def test_a_command_encodes_as_perform_function_with_its_opcode_and_arguments():
    definition, app_data = sample_dictionary().encode_command(
        "health.SET_PING_PERIOD", {"period_ms": 500}
    )
    assert definition.qualified_name == "health.SET_PING_PERIOD"
    assert PerformFunction.decode(app_data) == PerformFunction(770, struct.pack(">I", 500))


def test_string_and_enum_arguments_encode_in_declared_order():
    _, app_data = sample_dictionary().encode_command("health.FAIL", {"level": "HIGH", "why": "é"})
    assert PerformFunction.decode(app_data).arguments == b"\x02\xc3\xa9\x01"


def test_an_argument_out_of_range_names_the_argument_the_type_and_the_range():
    with pytest.raises(ArgumentError) as caught:
        sample_dictionary().encode_command("health.SET_PING_PERIOD", {"period_ms": 50})
    message = str(caught.value)
    assert "health.SET_PING_PERIOD argument period_ms" in message
    assert "below the minimum 100" in message
    assert "u32 in 100..60000" in message


def test_a_missing_argument_is_named_with_the_usage():
    with pytest.raises(ArgumentError) as caught:
        sample_dictionary().encode_command("health.SET_PING_PERIOD", {})
    assert "missing argument period_ms (u32 in 100..60000)" in str(caught.value)
    assert "usage: health.SET_PING_PERIOD period_ms=<u32 in 100..60000>" in str(caught.value)


def test_an_unknown_argument_suggests_the_declared_one():
    with pytest.raises(ArgumentError, match=r"has no argument 'period'; did you mean period_ms\?"):
        sample_dictionary().encode_command("health.SET_PING_PERIOD", {"period": 500})


def test_an_argument_to_a_command_without_arguments_is_refused():
    with pytest.raises(ArgumentError, match=r"health\.NOOP takes no arguments"):
        sample_dictionary().encode_command("health.NOOP", {"x": 1})


def test_a_wrongly_typed_value_names_the_type_expected():
    with pytest.raises(ArgumentError, match=r"period_ms: '500' is not an integer"):
        sample_dictionary().encode_command("health.SET_PING_PERIOD", {"period_ms": "500"})


def test_a_string_longer_than_declared_is_refused_with_its_length():
    with pytest.raises(ArgumentError, match=r"argument why: 40 UTF-8 octets, at most 32"):
        sample_dictionary().encode_command("health.FAIL", {"why": "x" * 40, "level": "LOW"})


def test_key_value_words_parse_by_the_declared_types():
    dictionary = sample_dictionary()
    assert dictionary.parse_assignments("health.SET_PING_PERIOD", ["period_ms=0x1F4"]) == {
        "period_ms": 500
    }
    values = dictionary.parse_assignments("health.FAIL", ["why=a=b", "level=high"])
    assert values == {"why": "a=b", "level": "HIGH"}


@pytest.mark.parametrize(
    ("words", "complaint"),
    [
        (["period_ms"], "is not key=value"),
        (["period_ms=fast"], "'fast' is not a u32"),
        (["period_ms=100", "period_ms=200"], "given twice"),
        (["peroid_ms=5"], "did you mean period_ms"),
    ],
)
def test_bad_key_value_words_say_what_is_wrong(words, complaint):
    with pytest.raises(ArgumentError, match=complaint):
        sample_dictionary().parse_assignments("health.SET_PING_PERIOD", words)


def test_an_enum_value_outside_the_table_lists_the_names():
    with pytest.raises(ArgumentError, match=r"'MEDIUM' is not one of LOW \(0\), HIGH \(1\)"):
        sample_dictionary().parse_assignments("health.FAIL", ["why=x", "level=MEDIUM"])


def test_parameter_values_encode_checked_against_their_declaration():
    dictionary = sample_dictionary()
    data = dictionary.encode_parameter_values({"health.LABEL": "sat-2"})
    assert data == b"\x01\x03\x01\x05sat-2"
    with pytest.raises(ArgumentError, match=r"parameter health\.PING_PERIOD_MS: 70000 is above"):
        dictionary.encode_parameter_values({"health.PING_PERIOD_MS": 70_000})
    with pytest.raises(UnknownNameError, match=r"did you mean health\.LABEL"):
        dictionary.encode_parameter_values({"health.LABLE": "x"})


# -- decoding TM -----------------------------------------------------------------------------------


def hk(values: bytes, structure_id: int = 3) -> PusTm:
    return tm(3, 25, HousekeepingParameterReport(structure_id, values).encode())


def test_housekeeping_decodes_into_named_samples_with_units_and_limit_states():
    data = struct.pack(">IIfB", 12, 1, 90.5, 2)
    report = sample_dictionary().decode(hk(data))
    assert isinstance(report, HousekeepingReport) and report.component == "health"
    by_name = {s.channel: s for s in report.samples}
    assert by_name["health.COMMANDS_ACCEPTED"].value == 12
    assert by_name["health.CPU_PERCENT"].units == "%"
    assert by_name["health.CPU_PERCENT"].limit is LimitState.YELLOW_HIGH
    assert by_name["health.MODE"].value == "NOMINAL"
    assert by_name["health.COMMANDS_ACCEPTED"].limit is LimitState.NOMINAL
    assert report.time == TIME
    assert str(by_name["health.CPU_PERCENT"]) == "health.CPU_PERCENT = 90.5 %  [YELLOW_HIGH]"


@pytest.mark.parametrize(
    ("cpu", "state"),
    [(10.0, LimitState.NOMINAL), (85.0, LimitState.YELLOW_HIGH), (99.0, LimitState.RED_HIGH)],
)
def test_the_limit_state_follows_the_declared_limits(cpu, state):
    report = sample_dictionary().decode(hk(struct.pack(">IIfB", 0, 0, cpu, 1)))
    assert report.samples[2].limit is state


def test_housekeeping_of_the_wrong_length_says_flight_and_dictionary_disagree():
    with pytest.raises(DecodeError, match=r"health \(structure 3\): 14 octets.*disagree"):
        sample_dictionary().decode(hk(struct.pack(">IIfB", 0, 0, 1.0, 1) + b"\x00"))
    with pytest.raises(DecodeError, match=r"channel MODE"):
        sample_dictionary().decode(hk(struct.pack(">IIf", 0, 0, 1.0)))


def test_housekeeping_of_an_unknown_structure_names_the_id():
    with pytest.raises(DecodeError, match="no component with id 9"):
        sample_dictionary().decode(hk(b"", structure_id=9))


def test_an_event_decodes_into_its_formatted_text_and_severity():
    aux = b"\x04mode\x03"
    event = sample_dictionary().decode(tm(5, 2, EventReport(768, aux).encode()))
    assert isinstance(event, EventMessage)
    assert event.qualified_name == "health.PING_LATE"
    assert event.severity is Severity.LOW
    assert event.args == {"component": "mode", "missed": 3}
    assert event.text == "mode missed 3 pings"
    assert str(event) == "LOW         health.PING_LATE: mode missed 3 pings"


def test_an_unknown_event_id_is_a_decode_error_naming_it():
    with pytest.raises(DecodeError, match="event id 0x0999"):
        sample_dictionary().decode(tm(5, 1, EventReport(0x999).encode()))


def test_event_arguments_cut_short_name_the_argument():
    with pytest.raises(DecodeError, match="argument missed"):
        sample_dictionary().decode(tm(5, 2, EventReport(768, b"\x04mode").encode()))


def request_id(sequence_count: int) -> RequestId:
    return RequestId(0, PacketType.TC, True, APID, SequenceFlags.UNSEGMENTED, sequence_count)


def test_verification_reports_decode_into_stage_success_and_failure_name():
    dictionary = sample_dictionary()
    accepted = dictionary.decode(tm(1, 1, VerificationSuccess(request_id(5)).encode()))
    assert accepted == Verification(RequestKey(APID, 5), Stage.ACCEPTANCE, True, TIME)
    failed = dictionary.decode(
        tm(1, 8, VerificationFailure(request_id(5), 5, b"disk full").encode())
    )
    assert isinstance(failed, Verification)
    assert (failed.stage, failed.success) == (Stage.COMPLETION, False)
    assert (failed.failure_code, failed.failure_name, failed.failure_text) == (
        5,
        "EXECUTION_FAILED",
        "disk full",
    )
    assert str(failed) == "request (0x010, 5): completion FAILURE EXECUTION_FAILED (5): disk full"


def test_a_failure_code_missing_from_the_dictionary_still_gets_a_name():
    report = sample_dictionary().decode(
        tm(1, 2, VerificationFailure(request_id(1), 77, b"\xff\x00").encode())
    )
    assert report.failure_name == "UNKNOWN_FAILURE_77"
    assert report.failure_text == "ff 00"


def test_parameter_reports_decode_strings_and_numbers_by_name():
    data = b"\x02" + b"\x03\x00" + struct.pack(">I", 250) + b"\x03\x01\x03abc"
    report = sample_dictionary().decode(tm(20, 2, data))
    assert isinstance(report, ParameterReport)
    assert [(v.name, v.value) for v in report.values] == [
        ("health.PING_PERIOD_MS", 250),
        ("health.LABEL", "abc"),
    ]


def test_a_parameter_report_with_an_unknown_id_is_a_decode_error():
    with pytest.raises(DecodeError, match="unknown parameter id 4095"):
        sample_dictionary().decode(tm(20, 2, b"\x01\x0f\xff\x00"))


def test_ping_replies_and_other_services_are_recognised():
    assert sample_dictionary().decode(tm(17, 2)) == PingReply(TIME)
    other = sample_dictionary().decode(tm(11, 4, b"\x01"))
    assert other == OtherPacket(11, 4, b"\x01", TIME)


def test_the_codec_is_flights_own():
    # The ground decodes with flight.runtime.types: one codec, no drift.
    assert isinstance(sample_dictionary().channel("health.CPU_PERCENT").type, WireType)
