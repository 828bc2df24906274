import random

import pytest

from hil.faults import FaultModel, FaultyChannel


def _run(model: FaultModel, seed: int, count: int = 2000) -> tuple[FaultyChannel, list[bytes]]:
    channel = FaultyChannel(model, random.Random(seed))
    for index in range(count):
        channel.send(index.to_bytes(4, "big") * 8)
    return channel, channel.flush()


def test_clean_channel_delivers_everything_in_order():
    channel, arrived = _run(FaultModel(), seed=1)
    assert arrived == [index.to_bytes(4, "big") * 8 for index in range(2000)]
    assert (channel.lost, channel.duplicated, channel.reordered, channel.corrupted) == (0, 0, 0, 0)


def test_faults_happen_at_roughly_their_probabilities_and_are_counted():
    channel, arrived = _run(FaultModel(loss=0.1, duplicate=0.1, reorder=0.1), seed=2)
    assert 120 < channel.lost < 280
    assert 120 < channel.duplicated < 280
    assert 120 < channel.reordered < 280
    assert len(arrived) == channel.sent - channel.lost + channel.duplicated
    order = [int.from_bytes(frame[:4], "big") for frame in arrived]
    assert order != sorted(order)


def test_bit_errors_corrupt_frames_without_changing_their_length():
    channel, arrived = _run(FaultModel(bit_error_rate=1e-3), seed=3)
    sent = {index.to_bytes(4, "big") * 8 for index in range(2000)}
    damaged = [frame for frame in arrived if frame not in sent]
    assert len(damaged) == channel.corrupted > 0
    assert all(len(frame) == 32 for frame in arrived)


def test_same_seed_gives_the_same_run():
    model = FaultModel(loss=0.2, duplicate=0.2, reorder=0.2, bit_error_rate=1e-3)
    assert _run(model, seed=7)[1] == _run(model, seed=7)[1]


def test_probabilities_outside_zero_to_one_are_refused():
    with pytest.raises(ValueError, match="loss"):
        FaultModel(loss=1.5)
