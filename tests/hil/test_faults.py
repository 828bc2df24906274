import itertools
import random

import pytest

from hil.faults import FaultInjector, FaultModel, FaultyChannel


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


def _inject(model: FaultModel, seed: int, count: int = 2000) -> tuple[FaultInjector, list]:
    injector = FaultInjector(model, random.Random(seed))
    deliveries = [injector(index.to_bytes(4, "big") * 8, index * 0.01) for index in range(count)]
    return injector, deliveries


def test_the_injector_on_a_clean_model_delivers_every_frame_at_once():
    injector, deliveries = _inject(FaultModel(), seed=1, count=100)
    assert deliveries == [[(0.0, index.to_bytes(4, "big") * 8)] for index in range(100)]
    assert (injector.lost, injector.duplicated, injector.reordered, injector.corrupted) == (0,) * 4


def test_the_injector_applies_and_counts_each_fault():
    model = FaultModel(loss=0.1, duplicate=0.1, reorder=0.1, bit_error_rate=1e-3, delay_s=0.2)
    injector, deliveries = _inject(model, seed=2)
    assert 120 < injector.lost < 280
    assert 120 < injector.duplicated < 280
    assert 120 < injector.reordered < 280
    assert injector.corrupted > 0
    assert sum(not copies for copies in deliveries) == injector.lost
    assert sum(len(copies) == 2 for copies in deliveries) == injector.duplicated
    delays = [delay for copies in deliveries for delay, _ in copies]
    assert min(delays) >= 0.2
    assert sum(delay >= 0.2 + model.reorder_delay_s for delay in delays) == injector.reordered


def test_the_injector_is_reproducible_per_seed():
    model = FaultModel(loss=0.2, duplicate=0.2, reorder=0.2, bit_error_rate=1e-3, jitter_s=0.5)
    assert _inject(model, seed=7)[1] == _inject(model, seed=7)[1]
    assert _inject(model, seed=7)[1] != _inject(model, seed=8)[1]


def test_the_injector_loses_everything_inside_an_outage_window():
    injector, deliveries = _inject(FaultModel(outages=((1.0, 2.0),)), seed=3, count=300)
    lost = [index for index, copies in enumerate(deliveries) if not copies]
    assert lost == list(range(100, 200))
    assert injector.lost_in_outage == injector.lost == 100


def test_jitter_never_lets_a_frame_overtake_an_earlier_one():
    _, deliveries = _inject(FaultModel(jitter_s=1.0), seed=4, count=500)
    arrivals = [index * 0.01 + copies[0][0] for index, copies in enumerate(deliveries)]
    assert arrivals == sorted(arrivals)
    # Jitter did bunch frames up behind slow ones: they arrive together, in order.
    assert sum(later - earlier < 1e-9 for earlier, later in itertools.pairwise(arrivals)) > 10


def test_timing_fields_outside_their_range_are_refused():
    with pytest.raises(ValueError, match="delay_s"):
        FaultModel(delay_s=-1.0)
    with pytest.raises(ValueError, match="jitter_s"):
        FaultModel(jitter_s=float("inf"))
    with pytest.raises(ValueError, match="outage"):
        FaultModel(outages=((5.0, 1.0),))
