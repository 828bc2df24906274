"""Tests for flight.protocol.sdls: AES-256-GCM authentication, anti-replay and key files."""

import contextlib
import dataclasses
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.protocol import icd
from flight.protocol.crc import crc16
from flight.protocol.errors import (
    AuthenticationError,
    FieldError,
    LengthError,
    ProtocolError,
    ReplayError,
    TruncatedError,
)
from flight.protocol.sdls import (
    MAX_IV,
    SECURITY_HEADER,
    SECURITY_OVERHEAD,
    SECURITY_TRAILER,
    KeyFileError,
    ReplayWindow,
    SecurityAssociation,
    SecurityHeader,
    ServiceType,
    TcSecurity,
    load_key,
    max_protected_data_length,
    seal,
    unseal,
)
from flight.protocol.tc_frame import TcFrame

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
WINDOW = icd.SDLS_REPLAY_WINDOW
SPI = icd.SECURITY_PARAMETER_INDEX
SCID = icd.SPACECRAFT_ID
MAX_PAYLOAD = icd.TC_MAX_FRAME_LENGTH - 5 - 1 - SECURITY_OVERHEAD - 2
V6_TC = bytes.fromhex("1801C00000062F11010000161D")  # V6 (spacepackets): PUS-C TC 17/1, APID 1

# NIST CAVP gcmtestvectors.zip (SP 800-38D), AES-256, 96-bit IV, 128-bit tag; checked with the
# `cryptography` package and against copies in public test suites.
# gcmEncryptExtIV256.rsp [PTlen = 0] [AADlen = 128] Count = 0: a GMAC.
NIST_GMAC = {
    "key": "78dc4e0aaf52d935c3c01eea57428f00ca1fd475f5da86a49c8dd73d68c8e223",
    "iv": "d79cf22d504cc793c3fb6c8a",
    "aad": "b96baa8c1c75a671bfb2d08d06be5f36",
    "tag": "3e5d486aa2e30b22e040b85723a06e76",
}
# gcmEncryptExtIV256.rsp [PTlen = 128] [AADlen = 128] Count = 0.
NIST_GCM = {
    "key": "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b",
    "iv": "ac93a1a6145299bde902f21a",
    "pt": "2d71bcfa914e4ac045b2aa60955fad24",
    "aad": "1e0889016f67601c8ebea4943bc23ad6",
    "ct": "8995ae2e6df3dbf96fac7b7137bae67f",
    "tag": "eca5aa77d51d4a0a14d9c51e1da474ab",
}
# gcmDecrypt256.rsp [PTlen = 128] [AADlen = 128] Count = 2: marked FAIL (the tag does not verify).
NIST_GCM_FAIL = {
    "key": "9a0343f850a6427120f764789ffec6d237447b898fbf51d2182f065d3861497d",
    "iv": "3deef6f453dd70d92143adcd",
    "ct": "e93165935ac18e3a2845d15fe31a9286",
    "aad": "dbb8226a624520863db6897017b2a4f8",
    "tag": "f5fc50d18766bc3d9e16dd136d45816b",
}

# nasa/CryptoLib test/unit/et_dt_validation.c (commit 0168840a7e96a5e402729a27f60ece543c4a78fa),
# UTEST(NIST_DEC_MAC_VALIDATION, AES_GCM_256_IV_96_PT_128_TEST_0) and its _BAD_DATA and _BAD_MAC
# variants: SA 9, authentication only (ast=1, est=0), AES-256-GCM, 12-octet IV transmitted, no
# ARSN, 16-octet MAC, authentication bit mask all ones: exactly this ICD's layout. Type-BD frame,
# SCID 3, VC 0, FSN 0, segment header FF (MAP 63). The SA's last IV was ...89; the frame uses
# ...8A. The MAC is CryptoLib's truth value (made with CyberChef); the FECFs check with crc16.
CRYPTOLIB_KEY = bytes.fromhex(NIST_GMAC["key"])
CRYPTOLIB_LAST_IV = 0xD79CF22D504CC793C3FB6C89
CRYPTOLIB_DATA = bytes.fromhex("722ee47da4b77424733546c2d400c4e5")
CRYPTOLIB_FRAME = bytes.fromhex(
    "2003003500FF0009D79CF22D504CC793C3FB6C8A722ee47da4b77424733546c2d400c4e5"
    "34d0e323f5e4b80426401d4aa37930daf55f"
)
CRYPTOLIB_BAD_DATA = bytes.fromhex(
    "2003003500FF0009D79CF22D504CC793C3FB6C8A722ee47da4b77424733546c2d400c400"
    "34d0e323f5e4b80426401d4aa37930da123b"
)
CRYPTOLIB_BAD_MAC = bytes.fromhex(
    "2003003500FF0009D79CF22D504CC793C3FB6C8A722ee47da4b77424733546c2d400c4e5"
    "34d0e323f5e4b80426401d4aa37930009f68"
)
# Same file, UTEST(NIST_ENC_MAC_VALIDATION, AES_GCM_256_IV_96_PT_128_TEST_1): the MAC CryptoLib
# computes for an empty frame without segment header, mask all ones: AAD = header 2003002400 |
# SPI 0009 | IV. Our TcFrame always has a segment header on data frames, so this one is checked at
# the seal() level.
CRYPTOLIB_EMPTY_AAD = bytes.fromhex("20030024000009d79cf22d504cc793c3fb6c8a")
CRYPTOLIB_EMPTY_MAC = bytes.fromhex("629c2143c30e2f8450b059cd559a7102")


def security(
    service_type: ServiceType = ServiceType.AUTHENTICATION, key: bytes = KEY
) -> TcSecurity:
    return TcSecurity([SecurityAssociation(SPI, key, service_type)])


def command_frame(data: bytes = V6_TC, **fields: object) -> TcFrame:
    """A Type-AD frame on the COMMAND channel; `data` defaults to V6's PUS TC 17/1 packet."""
    base = {
        "spacecraft_id": SCID,
        "virtual_channel_id": icd.TcVirtualChannel.COMMAND,
        "frame_sequence_number": 5,
        "data": data,
        "map_id": 0,
    }
    base.update(fields)
    return TcFrame(**base)


def protect(sec: TcSecurity, iv: int, frame: TcFrame | None = None) -> bytes:
    return sec.apply(frame or command_frame(), iv=iv).encode()


def receive(sec: TcSecurity, encoded: bytes) -> TcFrame:
    return sec.process(TcFrame.decode(encoded, spacecraft_id=SCID))


def with_fecf(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


# --- external vectors -------------------------------------------------------------------------


def test_gmac_layer_reproduces_nist_tag_for_aad_only_vector() -> None:
    cipher = AESGCM(bytes.fromhex(NIST_GMAC["key"]))
    iv, aad = bytes.fromhex(NIST_GMAC["iv"]), bytes.fromhex(NIST_GMAC["aad"])
    data, mac = seal(cipher, iv, aad, b"", ServiceType.AUTHENTICATION)
    assert (data, mac.hex()) == (b"", NIST_GMAC["tag"])
    # Authentication-only puts the data into the AAD: an AAD split anywhere gives the same tag.
    data, mac = seal(cipher, iv, aad[:5], aad[5:], ServiceType.AUTHENTICATION)
    assert (data, mac.hex()) == (aad[5:], NIST_GMAC["tag"])
    assert unseal(cipher, iv, aad[:5], aad[5:], mac, ServiceType.AUTHENTICATION) == aad[5:]


def test_gcm_layer_reproduces_nist_ciphertext_and_tag() -> None:
    cipher = AESGCM(bytes.fromhex(NIST_GCM["key"]))
    iv, aad = bytes.fromhex(NIST_GCM["iv"]), bytes.fromhex(NIST_GCM["aad"])
    body, mac = seal(
        cipher, iv, aad, bytes.fromhex(NIST_GCM["pt"]), ServiceType.AUTHENTICATED_ENCRYPTION
    )
    assert (body.hex(), mac.hex()) == (NIST_GCM["ct"], NIST_GCM["tag"])
    plain = unseal(cipher, iv, aad, body, mac, ServiceType.AUTHENTICATED_ENCRYPTION)
    assert plain.hex() == NIST_GCM["pt"]


def test_gcm_layer_rejects_nist_fail_vector() -> None:
    cipher = AESGCM(bytes.fromhex(NIST_GCM_FAIL["key"]))
    with pytest.raises(AuthenticationError):
        unseal(
            cipher,
            bytes.fromhex(NIST_GCM_FAIL["iv"]),
            bytes.fromhex(NIST_GCM_FAIL["aad"]),
            bytes.fromhex(NIST_GCM_FAIL["ct"]),
            bytes.fromhex(NIST_GCM_FAIL["tag"]),
            ServiceType.AUTHENTICATED_ENCRYPTION,
        )


def cryptolib_security() -> TcSecurity:
    sec = TcSecurity([SecurityAssociation(9, CRYPTOLIB_KEY, virtual_channels=frozenset({0}))])
    sec.restore(9, CRYPTOLIB_LAST_IV)
    return sec


def test_cryptolib_frame_is_accepted_and_yields_its_data() -> None:
    sec = cryptolib_security()
    out = sec.process(TcFrame.decode(CRYPTOLIB_FRAME, spacecraft_id=3))
    assert out.data == CRYPTOLIB_DATA
    assert (out.spacecraft_id, out.virtual_channel_id, out.map_id, out.bypass_flag) == (
        3,
        0,
        63,
        True,
    )
    assert sec.last_accepted(9) == CRYPTOLIB_LAST_IV + 1


def test_apply_reproduces_cryptolib_frame_octet_for_octet() -> None:
    sec = TcSecurity([SecurityAssociation(9, CRYPTOLIB_KEY, virtual_channels=frozenset({0}))])
    frame = TcFrame(3, 0, 0, CRYPTOLIB_DATA, bypass_flag=True, map_id=63)
    assert sec.apply(frame, iv=CRYPTOLIB_LAST_IV + 1).encode() == CRYPTOLIB_FRAME


@pytest.mark.parametrize("encoded", [CRYPTOLIB_BAD_DATA, CRYPTOLIB_BAD_MAC], ids=["data", "mac"])
def test_cryptolib_frames_with_bad_data_or_mac_are_rejected(encoded: bytes) -> None:
    sec = cryptolib_security()
    with pytest.raises(AuthenticationError) as error:
        sec.process(TcFrame.decode(encoded))
    assert type(error.value) is AuthenticationError
    assert error.value.offset == len(encoded) - 2 - 16
    assert sec.last_accepted(9) == CRYPTOLIB_LAST_IV


def test_mac_over_header_spi_and_iv_matches_cryptolib_for_empty_data() -> None:
    cipher = AESGCM(CRYPTOLIB_KEY)
    iv = CRYPTOLIB_EMPTY_AAD[-12:]
    assert seal(cipher, iv, CRYPTOLIB_EMPTY_AAD, b"", ServiceType.AUTHENTICATION) == (
        b"",
        CRYPTOLIB_EMPTY_MAC,
    )


# --- codec structure ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, MAX_IV), st.booleans())
def test_security_header_fast_path_matches_construct_declaration(
    spi: int, iv: int, encode_fast: bool
) -> None:
    header = SecurityHeader(spi, iv)
    if encode_fast:
        parsed = SECURITY_HEADER.parse(header.encode())
        assert (parsed.security_parameter_index, parsed.initialization_vector) == (
            spi,
            iv.to_bytes(12, "big"),
        )
    else:
        built = SECURITY_HEADER.build(
            {"security_parameter_index": spi, "initialization_vector": iv.to_bytes(12, "big")}
        )
        assert SecurityHeader.decode(built) == header


def test_security_header_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(FieldError):
        SecurityHeader(0x10000, 1).encode()
    with pytest.raises(FieldError):
        SecurityHeader(1, MAX_IV + 1).encode()
    with pytest.raises(TruncatedError):
        SecurityHeader.decode(bytes(13))


def test_protected_frame_has_the_icd_layout() -> None:
    payload = V6_TC
    encoded = protect(security(), 0x0102, command_frame(payload))
    data_field = encoded[6:-2]
    header = SECURITY_HEADER.parse(data_field[:14])
    assert header.security_parameter_index == SPI
    assert header.initialization_vector == (0x0102).to_bytes(12, "big")
    assert data_field[14:-16] == payload  # authentication only: readable in a dump
    trailer = SECURITY_TRAILER.parse(data_field[-16:])
    aad = encoded[:6] + data_field[:-16]  # headers, security header and data
    _, mac = seal(AESGCM(KEY), data_field[2:14], aad, b"", ServiceType.AUTHENTICATION)
    assert trailer.message_authentication_code == mac
    assert len(encoded) == 6 + SECURITY_OVERHEAD + len(payload) + 2


def test_authenticated_encryption_hides_the_data() -> None:
    payload = b"secret-command-" * 4
    encoded = protect(security(ServiceType.AUTHENTICATED_ENCRYPTION), 7, command_frame(payload))
    assert payload[:16] not in encoded
    assert receive(security(ServiceType.AUTHENTICATED_ENCRYPTION), encoded).data == payload


# --- round trips -------------------------------------------------------------------------------

frames = st.builds(
    TcFrame,
    spacecraft_id=st.integers(0, 0x3FF),
    virtual_channel_id=st.sampled_from(list(icd.TcVirtualChannel)),
    frame_sequence_number=st.integers(0, 255),
    data=st.binary(max_size=MAX_PAYLOAD),
    bypass_flag=st.booleans(),
    map_id=st.integers(0, 63),
)


@settings(max_examples=150, deadline=None)
@given(frames, st.sampled_from(list(ServiceType)), st.integers(1, WINDOW))
def test_round_trip_through_the_wire_restores_the_frame(
    frame: TcFrame, service_type: ServiceType, iv: int
) -> None:
    sender, receiver = security(service_type), security(service_type)
    encoded = sender.apply(frame, iv=iv).encode()
    assert receiver.process(TcFrame.decode(encoded)) == frame
    assert receiver.last_accepted(SPI) == iv
    assert receiver.frames_accepted == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(0, MAX_IV - WINDOW), st.integers(1, WINDOW))
def test_round_trip_holds_over_the_whole_iv_range(last: int, step: int) -> None:
    receiver = security()
    receiver.restore(SPI, last)
    assert receive(receiver, protect(security(), last + step)).data == command_frame().data
    assert receiver.last_accepted(SPI) == last + step


def test_apply_rejects_an_iv_outside_96_bits() -> None:
    with pytest.raises(FieldError):
        security().apply(command_frame(), iv=MAX_IV + 1)
    with pytest.raises(FieldError):
        security().apply(command_frame(), iv=-1)


def test_apply_rejects_data_too_long_for_a_protected_frame() -> None:
    security().apply(command_frame(bytes(MAX_PAYLOAD)), iv=1)
    with pytest.raises(LengthError, match=f"at most {MAX_PAYLOAD} fit a protected TC frame"):
        security().apply(command_frame(bytes(MAX_PAYLOAD + 1)), iv=1)


def test_the_protected_data_limit_is_what_apply_allows() -> None:
    assert max_protected_data_length() == MAX_PAYLOAD == 986
    assert max_protected_data_length(map_id_present=False) == MAX_PAYLOAD + 1


def test_apply_needs_exactly_one_sa_for_the_channel() -> None:
    with pytest.raises(FieldError):
        security().apply(command_frame(virtual_channel_id=5), iv=1)
    two = TcSecurity([SecurityAssociation(1, KEY), SecurityAssociation(2, OTHER_KEY)])
    with pytest.raises(FieldError):
        two.apply(command_frame(), iv=1)
    protected = two.apply(command_frame(), iv=1, spi=2)
    assert protected.data[:2] == b"\x00\x02"
    with pytest.raises(FieldError):
        two.apply(command_frame(), iv=1, spi=3)


def test_control_command_frames_pass_both_ways_untouched() -> None:
    sec = security()
    unlock = TcFrame.unlock(SCID, 0)
    assert sec.apply(unlock, iv=1) is unlock
    assert sec.process(unlock) is unlock
    assert sec.frames_clear == 1
    assert sec.last_accepted(SPI) == 0


def test_bypass_data_frames_are_authenticated_too() -> None:
    encoded = protect(security(), 1, command_frame(bypass_flag=True))
    forged = TcFrame.decode(encoded)
    forged = dataclasses.replace(forged, data=forged.data[:-1] + bytes([forged.data[-1] ^ 1]))
    with pytest.raises(AuthenticationError):
        security().process(forged)


# --- rejection ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, WINDOW))
def test_forged_mac_is_rejected_and_does_not_burn_its_number(mac: bytes, iv: int) -> None:
    sec = security()
    genuine = TcFrame.decode(protect(security(), iv))
    forged = dataclasses.replace(genuine, data=genuine.data[:-16] + mac)
    if forged == genuine:
        return
    with pytest.raises(AuthenticationError) as error:
        sec.process(forged)
    assert type(error.value) is AuthenticationError
    assert sec.last_accepted(SPI) == 0
    assert sec.rejected_mac == 1
    assert sec.process(genuine).data == command_frame().data


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(ServiceType)), st.data())
def test_any_flipped_bit_is_rejected_without_moving_the_window(
    service_type: ServiceType, draw: st.DataObject
) -> None:
    encoded = protect(security(service_type), 3)
    bit = draw.draw(st.integers(0, 8 * (len(encoded) - 2) - 1), label="bit")
    body = bytearray(encoded[:-2])
    body[bit // 8] ^= 0x80 >> (bit % 8)
    sec = security(service_type)
    # The attacker recomputes the FECF; only the MAC stands in the way.
    try:
        frame = TcFrame.decode(with_fecf(bytes(body)))
        sec.process(frame)
    except AuthenticationError as error:
        assert type(error) is AuthenticationError  # never mistaken for a replay
    except ProtocolError:
        pass  # the frame layer already refused it (version, length, flags...)
    else:
        pytest.fail(f"frame with bit {bit} flipped was accepted")
    assert sec.last_accepted(SPI) == 0
    assert sec.frames_accepted == 0


@pytest.mark.parametrize(
    "change",
    [
        {"spacecraft_id": SCID ^ 1},
        {"virtual_channel_id": icd.TcVirtualChannel.FILE},
        {"frame_sequence_number": 6},
        {"bypass_flag": True},
        {"map_id": 1},
    ],
    ids=lambda change: next(iter(change)),
)
def test_header_fields_are_authenticated(change: dict) -> None:
    genuine = TcFrame.decode(protect(security(), 1))
    with pytest.raises(AuthenticationError):
        security().process(dataclasses.replace(genuine, **change))


def test_unknown_spi_is_rejected_with_its_offset() -> None:
    frame = TcFrame.decode(protect(security(), 1))
    other = TcSecurity([SecurityAssociation(SPI + 1, KEY)])
    with pytest.raises(AuthenticationError) as error:
        other.process(frame)
    assert type(error.value) is AuthenticationError
    assert error.value.offset == 6
    assert other.rejected_unknown_spi == 1


def test_sa_not_bound_to_the_channel_is_rejected() -> None:
    sender = TcSecurity([SecurityAssociation(SPI, KEY, virtual_channels=frozenset({3}))])
    frame = TcFrame.decode(sender.apply(command_frame(virtual_channel_id=3), iv=1).encode())
    with pytest.raises(AuthenticationError, match="virtual channel 3"):
        security().process(frame)


def test_data_field_too_short_for_security_fields_is_truncated() -> None:
    sec = security()
    with pytest.raises(TruncatedError) as error:
        sec.process(command_frame(bytes(SECURITY_OVERHEAD - 1)))
    assert error.value.offset == 6
    assert sec.rejected_truncated == 1


def test_last_spi_names_only_accepted_frames() -> None:
    sec = TcSecurity(
        [SecurityAssociation(1, KEY), SecurityAssociation(2, KEY, virtual_channels={5})]
    )
    forged = TcSecurity([SecurityAssociation(2, OTHER_KEY, virtual_channels={5})])
    with pytest.raises(AuthenticationError):
        receive(sec, protect(forged, 1, command_frame(virtual_channel_id=5)))
    assert sec.last_spi is None
    receive(sec, protect(security(), 1))
    assert sec.last_spi == 1
    with pytest.raises(AuthenticationError):
        receive(sec, protect(forged, 2, command_frame(virtual_channel_id=5)))
    assert sec.last_spi == 1  # a forged frame does not change it


def test_replayed_frame_raises_replay_error_and_leaves_the_window() -> None:
    sec = security()
    encoded = protect(security(), 10)
    receive(sec, encoded)
    with pytest.raises(ReplayError) as error:
        receive(sec, encoded)
    assert error.value.offset == 8
    assert sec.last_accepted(SPI) == 10
    assert sec.rejected_replay == 1


def test_number_beyond_the_window_is_refused_and_the_edge_accepted() -> None:
    sec = security()
    with pytest.raises(ReplayError, match="above"):
        receive(sec, protect(security(), WINDOW + 1))
    assert sec.last_accepted(SPI) == 0
    receive(sec, protect(security(), WINDOW))
    assert sec.last_accepted(SPI) == WINDOW


def test_number_behind_the_window_is_refused_and_the_edge_accepted() -> None:
    sec = security()
    sec.restore(SPI, 1000)
    receive(sec, protect(security(), 1000 + WINDOW))
    with pytest.raises(ReplayError, match="below"):
        receive(sec, protect(security(), 1000))
    receive(sec, protect(security(), 1001))  # the oldest number still inside, never seen
    assert sec.last_accepted(SPI) == 1000 + WINDOW


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(1, WINDOW + 1)))
def test_reordered_frames_inside_the_window_are_accepted_once_each(order: list[int]) -> None:
    sender = security()
    encoded = {iv: protect(sender, iv) for iv in order}
    sec = security()
    for iv in order:
        assert receive(sec, encoded[iv]).data == command_frame().data
    for iv in order:
        with pytest.raises(ReplayError):
            receive(sec, encoded[iv])
    assert sec.frames_accepted == WINDOW
    assert sec.last_accepted(SPI) == WINDOW


def test_restored_state_refuses_everything_up_to_the_persisted_number() -> None:
    sec = security()
    sec.restore(SPI, 500)
    for iv in (499, 500):
        with pytest.raises(ReplayError):
            receive(sec, protect(security(), iv))
    receive(sec, protect(security(), 501))
    assert sec.last_accepted(SPI) == 501


def test_restoring_a_stale_number_never_reopens_numbers_already_accepted() -> None:
    sec = security()
    for iv in (1, 2, 3):
        receive(sec, protect(security(), iv))
    sec.restore(SPI, 1)  # a persisted value written before 2 and 3 arrived
    assert sec.last_accepted(SPI) == 3
    for iv in (2, 3):
        with pytest.raises(ReplayError):
            receive(sec, protect(security(), iv))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(0, 40),
    st.lists(st.integers(0, 70), max_size=40),
)
def test_replay_window_matches_a_set_model(width: int, start: int, numbers: list[int]) -> None:
    window = ReplayWindow(width, start)
    seen: set[int] = set(range(start + 1))  # restore: everything up to the start counts as seen
    for number in numbers:
        last = max(seen)
        allowed = number not in seen and (
            last < number <= last + width or last - width < number < last
        )
        if allowed:
            window.check(number)
            window.accept(number)
            seen.add(number)
        else:
            with pytest.raises(ReplayError):
                window.check(number)
        assert window.last_accepted == max(seen)


# --- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_octets_give_a_frame_or_a_protocol_error(buffer: bytes) -> None:
    sec = security()
    with contextlib.suppress(ProtocolError):
        sec.process(TcFrame.decode(buffer))
    assert sec.frames_accepted == 0


@settings(max_examples=300, deadline=None)
@given(frames)
def test_arbitrary_frame_data_gives_a_frame_or_a_protocol_error(frame: TcFrame) -> None:
    sec = security(ServiceType.AUTHENTICATED_ENCRYPTION)
    with contextlib.suppress(ProtocolError):
        sec.process(frame)
    assert sec.frames_accepted == 0  # nothing unauthenticated gets through


# --- configuration and keys --------------------------------------------------------------------


def test_security_association_repr_hides_the_key() -> None:
    text = repr(SecurityAssociation(SPI, KEY))
    assert KEY.hex() not in text
    assert repr(KEY) not in text
    assert "key" not in text


def test_security_association_refuses_a_wrong_key_length_without_showing_it() -> None:
    with pytest.raises(ValueError) as error:
        SecurityAssociation(SPI, KEY[:16])
    assert KEY[:16].hex() not in str(error.value)


def test_security_association_normalises_configuration_values() -> None:
    association = SecurityAssociation(SPI, bytearray(KEY), 3, virtual_channels=[0])  # type: ignore[arg-type]
    assert association.service_type is ServiceType.AUTHENTICATED_ENCRYPTION
    assert association.key == KEY and type(association.key) is bytes
    assert association.virtual_channels == frozenset({0})
    with pytest.raises(ValueError):
        SecurityAssociation(SPI, KEY, 2)  # type: ignore[arg-type]  # encryption without MAC


def test_duplicate_spi_is_refused() -> None:
    with pytest.raises(ValueError):
        TcSecurity([SecurityAssociation(1, KEY), SecurityAssociation(1, OTHER_KEY)])


def write_key(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def test_load_key_reads_raw_octets(tmp_path: Path) -> None:
    assert load_key(write_key(tmp_path / "k", KEY)) == KEY


def test_load_key_reads_hex_digits_with_newline(tmp_path: Path) -> None:
    assert load_key(write_key(tmp_path / "k", KEY.hex().upper().encode() + b"\n")) == KEY


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o610])
def test_load_key_refuses_a_file_others_may_access(tmp_path: Path, mode: int) -> None:
    path = write_key(tmp_path / "k", KEY, mode)
    with pytest.raises(KeyFileError) as error:
        load_key(path)
    assert "chmod 600" in str(error.value)
    assert KEY.hex() not in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"", KEY[:31], KEY + b"\x00", KEY.hex()[:-1].encode(), b"zz" * 32, KEY[:16].hex().encode()],
    ids=["empty", "31-octets", "33-octets", "63-digits", "not-hex", "128-bit-hex"],
)
def test_load_key_refuses_a_wrong_length_or_format(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyFileError, match="key file"):
        load_key(write_key(tmp_path / "k", content))


def test_load_key_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "absent")


def test_load_key_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(fifo)


def test_load_key_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        load_key(directory)
