import errno
import os
import random
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from flight.runtime.store import (
    Counter,
    Store,
    StoreError,
    atomic_write,
    decode_record,
    encode_record,
)

# --------------------------------------------------------------------------------------------------
# atomic_write
# --------------------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "record"
    atomic_write(target, b"old")
    atomic_write(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record"]


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_full_disk_raises_store_error_naming_path_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "params.json"
    atomic_write(target, b"old content")

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(StoreError) as caught:
        atomic_write(target, b"new content that does not fit")
    monkeypatch.undo()
    message = str(caught.value)
    assert str(target) in message
    assert os.strerror(errno.ENOSPC) in message
    assert "free space" in message
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.json"]


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def one_octet_at_a_time(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_octet_at_a_time)
    atomic_write(tmp_path / "f", b"several octets")
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"several octets"


def test_failed_directory_fsync_is_reported_as_not_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flight.runtime.store as store_module

    def broken(directory: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(store_module, "_fsync_directory", broken)
    with pytest.raises(StoreError, match="could not make it durable"):
        atomic_write(tmp_path / "f", b"x")


def test_write_into_missing_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot write .*missing"):
        atomic_write(tmp_path / "missing" / "f", b"x")


# --------------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------------


def test_save_then_load_returns_the_same_record(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    value = {"period_ms": 1000, "name": "nœud", "gains": [1.5, -2.0], "nested": {"on": True}}
    store.save("params", value)
    assert store.load("params") == value
    assert Store(tmp_path / "store").load("params") == value


def test_load_of_a_record_never_saved_is_none(tmp_path: Path) -> None:
    assert Store(tmp_path).load("params") is None


def test_store_creates_its_directory(tmp_path: Path) -> None:
    Store(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


def test_store_on_a_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"not a directory|cannot create"):
        Store(tmp_path / "file")


def test_store_removes_temporaries_left_by_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save("params", {"a": 1})
    (tmp_path / ".params.json.abc123.tmp").write_bytes(b"half a rec")
    Store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.json"]


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "-x", "x" * 129])
def test_record_names_that_are_not_plain_file_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="store record name"):
        Store(tmp_path).path(name)


@pytest.mark.parametrize(
    ("value", "why"),
    [({"x": float("nan")}, "not plain JSON"), ({"x": object()}, "not plain JSON"), ([1], "a dict")],
)
def test_save_of_a_value_that_is_not_a_json_object_raises_store_error(
    tmp_path: Path, value: object, why: str
) -> None:
    store = Store(tmp_path)
    with pytest.raises(StoreError, match=why):
        store.save("bad", value)  # type: ignore[arg-type]
    assert store.load("bad") is None


def _corruptions(record: bytes) -> dict[str, tuple[bytes, str]]:
    payload = b'["a", "list"]'
    list_record = b"penumbra-store/1 crc32=%08x length=%d\n%s\n" % (
        zlib.crc32(payload),
        len(payload),
        payload,
    )
    not_json = b"{not json"
    not_json_record = b"penumbra-store/1 crc32=%08x length=%d\n%s\n" % (
        zlib.crc32(not_json),
        len(not_json),
        not_json,
    )
    flipped = bytearray(record)
    flipped[-5] ^= 0x04
    return {
        "empty": (b"", "no header line"),
        "torn": (record[: len(record) // 2], "payload is"),
        "bit flip": (bytes(flipped), "CRC-32"),
        "plain json": (b'{"a": 1}\n', "header"),
        "newer version": (record.replace(b"store/1", b"store/9", 1), "format version 9"),
        "list": (list_record, "not an object"),
        "not json": (not_json_record, "not JSON"),
        "binary": (b"\xff\xfe\x00garbage\n\x00", "header"),
    }


@pytest.mark.parametrize(
    "kind",
    ["empty", "torn", "bit flip", "plain json", "newer version", "list", "not json", "binary"],
)
def test_corrupt_file_raises_store_error_naming_path_and_reason(tmp_path: Path, kind: str) -> None:
    store = Store(tmp_path)
    store.save("params", {"period_ms": 1000, "mode": "NOMINAL"})
    data, why = _corruptions(store.path("params").read_bytes())[kind]
    store.path("params").write_bytes(data)
    with pytest.raises(StoreError) as caught:
        store.load("params")
    message = str(caught.value)
    assert message.startswith(f"store file {store.path('params')} is corrupt: ")
    assert why in message


def test_unreadable_record_raises_store_error(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.path("params").mkdir()
    with pytest.raises(StoreError, match="cannot read store file"):
        store.load("params")


def test_record_codec_round_trips_and_detects_every_single_bit_flip() -> None:
    record = encode_record({"reserved_until": 4096})
    assert decode_record(record, Path("p")) == {"reserved_until": 4096}
    for index in range(len(record)):
        for bit in range(8):
            damaged = bytearray(record)
            damaged[index] ^= 1 << bit
            try:
                decoded = decode_record(bytes(damaged), Path("p"))
            except StoreError:
                continue
            # JSON whitespace can change without changing meaning only if the CRC missed it.
            pytest.fail(f"flip of bit {bit} at octet {index} went unnoticed: {decoded}")


# --------------------------------------------------------------------------------------------------
# Counter
# --------------------------------------------------------------------------------------------------


def test_counter_counts_up_from_zero_and_reserves_a_block(tmp_path: Path) -> None:
    store = Store(tmp_path)
    counter = Counter(store, "tc_sequence", reserve=8)
    assert counter.peek() == 0
    assert [counter.next() for _ in range(10)] == list(range(10))
    assert counter.value == 10
    assert counter.reserved_until == 16
    assert store.load("tc_sequence") == {"reserved_until": 16}


def test_counter_restarts_from_the_reserved_mark_skipping_never_repeating(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = Counter(store, "job_id", reserve=5)
    used = [first.next() for _ in range(7)]
    second = Counter(Store(tmp_path), "job_id", reserve=5)
    assert second.next() == 10
    assert second.next() > max(used)


def test_counter_writes_once_per_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    saves: list[dict] = []
    real_save = store.save
    monkeypatch.setattr(
        store, "save", lambda name, value: (saves.append(value), real_save(name, value))
    )
    counter = Counter(store, "c", reserve=64)
    for _ in range(200):
        counter.next()
    assert saves == [{"reserved_until": 64 * k} for k in range(1, 5)]


def test_counter_with_modulus_wraps_output_but_never_lowers_the_count(tmp_path: Path) -> None:
    store = Store(tmp_path)
    counter = Counter(store, "apid_16", reserve=3, modulus=4)
    assert [counter.next() for _ in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert counter.value == 10
    assert counter.peek() == 2
    restarted = Counter(Store(tmp_path), "apid_16", reserve=3, modulus=4)
    assert restarted.value == 12
    assert restarted.next() == 0


def test_advance_to_moves_forward_persistently_and_never_lowers(tmp_path: Path) -> None:
    store = Store(tmp_path)
    counter = Counter(store, "anti_replay", reserve=10)
    counter.next()
    counter.advance_to(1000)
    assert counter.peek() == 1000
    assert Counter(Store(tmp_path), "anti_replay").value >= 1000
    counter.advance_to(5)
    assert counter.next() == 1000
    assert counter.next() == 1001


def test_counter_does_not_hand_out_a_value_it_could_not_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    counter = Counter(store, "c", reserve=2)
    assert [counter.next(), counter.next()] == [0, 1]

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreError, match="No space left"):
        counter.next()
    monkeypatch.undo()
    assert Counter(Store(tmp_path), "c").value == 2
    assert counter.next() == 2


@pytest.mark.parametrize(
    "stored", [{"reserved_until": -1}, {"reserved_until": "7"}, {}, {"reserved_until": True}]
)
def test_counter_with_a_nonsense_mark_raises_store_error(tmp_path: Path, stored: dict) -> None:
    store = Store(tmp_path)
    store.save("c", stored)
    with pytest.raises(StoreError, match=r"c\.json is corrupt: reserved_until"):
        Counter(store, "c")


def test_counter_refuses_a_reserve_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserve"):
        Counter(Store(tmp_path), "c", reserve=0)


# --------------------------------------------------------------------------------------------------
# Crash consistency: SIGKILL at random points
# --------------------------------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from flight.runtime.store import Counter, Store

counter = Counter(Store(Path(sys.argv[1])), "tc_sequence", reserve=int(sys.argv[2]))
while True:
    print(counter.next(), flush=True)
"""

KILLS = 60


def test_counter_never_repeats_a_value_across_sigkills(tmp_path: Path) -> None:
    rng = random.Random(0x5EED)
    printed: list[int] = []
    for run in range(KILLS):
        # Small reserves make most of the child's time a store write, so kills land inside one.
        reserve = rng.choice([1, 1, 2, 3, 5, 64])
        kill_after = rng.randint(1, 400)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(reserve)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None and child.stderr is not None
        lines: list[bytes] = []
        while len(lines) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        child.send_signal(signal.SIGKILL)
        lines.extend(child.stdout.read().splitlines(keepends=True))
        error = child.stderr.read().decode()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, f"run {run}: child failed: {error}"
        # A line cut short by the kill was never completely printed: it does not count.
        values = [int(line) for line in lines if line.endswith(b"\n")]
        assert values, f"run {run}: the child printed nothing before the kill"
        assert values == sorted(set(values)), f"run {run}: values not strictly increasing"
        if printed:
            assert values[0] > printed[-1], f"run {run}: restarted at {values[0]} <= {printed[-1]}"
        printed.extend(values)
        record = Store(tmp_path).load("tc_sequence")
        assert record is not None
        assert record["reserved_until"] > printed[-1]
    assert len(printed) == len(set(printed))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
