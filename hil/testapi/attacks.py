"""Telecommands an attacker could send, for tests that the node refuses them."""

from flight.protocol import icd
from flight.protocol.pus import FunctionSubtype, PusTc, Service
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.tc_frame import TcFrame
from ground.dictionary import Dictionary, RequestKey

WRONG_KEY = bytes(32)


def forged_command_frame(
    dictionary: Dictionary, command: str, args: dict, *, sequence_count: int
) -> tuple[bytes, RequestKey]:
    """`command` in a well-formed TC frame authenticated with a key the node does not hold, and
    the request id the node's refusal will name."""
    _, app_data = dictionary.encode_command(command, args)
    tc = PusTc(
        dictionary.apid,
        sequence_count,
        Service.FUNCTION_MANAGEMENT,
        FunctionSubtype.PERFORM_FUNCTION,
        app_data,
    )
    attacker = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, WRONG_KEY)])
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 0, tc.encode())
    return attacker.apply(frame, iv=1 << 40).encode(), RequestKey(tc.apid, tc.sequence_count)
