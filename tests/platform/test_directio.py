"""fogsync.platform.directio: big files written around the page cache, byte for byte, on a real file."""

from __future__ import annotations

import errno
import os
import random
import threading

import pytest

from fogsync.platform import directio
from fogsync.platform.directio import STAGE, DirectWriter

BIG = directio.MIN_SIZE  # a size hint that asks for O_DIRECT


@pytest.fixture(autouse=True)
def no_disk_judged_yet():
    """Each test starts, and leaves the next one (in any module), with no file system judged slow."""
    directio._disks.clear()
    yield
    directio._disks.clear()


def direct_supported(folder) -> bool:
    probe = os.path.join(folder, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0)))
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False
    finally:
        if os.path.exists(probe):
            os.unlink(probe)


def pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at random places, as a decrypting reader hands it over."""
    rnd, out, i = random.Random(seed), [], 0
    while i < len(data):
        n = rnd.choice([1, 31, 4096, STAGE - 32, STAGE, STAGE + 7, 3 * STAGE])
        out.append(data[i : i + n])
        i += n
    return out


def no_writer_threads() -> bool:
    return not any(t.name == "fogsync-direct" for t in threading.enumerate())


@pytest.mark.parametrize("length", [0, 1, 4095, STAGE, STAGE + 1, 3 * STAGE + 12_345])
@pytest.mark.parametrize("size", [BIG, 0], ids=["direct", "page-cache"])
def test_the_file_holds_exactly_what_was_written(tmp_path, length, size):
    data = os.urandom(length)
    path = str(tmp_path / "f")
    with DirectWriter(path, size) as f:
        assert f.direct == (size >= directio.MIN_SIZE and direct_supported(tmp_path))
        for piece in pieces(data, length):
            f.write(piece)
    assert open(path, "rb").read() == data
    assert no_writer_threads()


def test_a_refused_direct_write_goes_on_through_the_page_cache(tmp_path, monkeypatch):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    real, calls = os.write, []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data)

    monkeypatch.setattr(directio.os, "write", write)
    data = os.urandom(4 * STAGE + 99)
    with DirectWriter(str(tmp_path / "f"), BIG) as f:
        for piece in pieces(data, 1):
            f.write(piece)
    assert open(tmp_path / "f", "rb").read() == data and len(calls) > 3


def test_a_short_direct_write_is_completed_through_the_page_cache(tmp_path, monkeypatch):
    real = os.write
    shorted = []

    def write(fd, data):
        if not shorted and len(data) == STAGE:
            shorted.append(1)
            return real(fd, data[: STAGE // 2 + 512])
        return real(fd, data)

    monkeypatch.setattr(directio.os, "write", write)
    data = os.urandom(3 * STAGE + 5)
    with DirectWriter(str(tmp_path / "f"), BIG) as f:
        f.write(data)
    assert open(tmp_path / "f", "rb").read() == data
    assert shorted or not direct_supported(tmp_path)


def test_a_full_disk_is_raised_to_the_caller_and_nothing_is_left_running(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(directio.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        with DirectWriter(str(tmp_path / "f"), BIG) as f:
            for _ in range(8):
                f.write(bytes(STAGE))
    assert no_writer_threads()


def test_a_device_that_is_full_raises_on_the_page_cache_path_too():
    with pytest.raises(OSError, match="No space left"):
        with DirectWriter("/dev/full", BIG) as f:  # no O_DIRECT on a device: every write is ENOSPC, from the kernel
            for _ in range(3):
                f.write(bytes(STAGE))
    assert no_writer_threads()


def test_a_caller_that_fails_midway_leaves_nothing_running(tmp_path):
    with pytest.raises(ValueError):
        with DirectWriter(str(tmp_path / "f"), BIG) as f:
            f.write(bytes(3 * STAGE))
            raise ValueError("the tag did not verify")
    assert no_writer_threads()


def test_a_disk_slower_than_the_writer_gets_the_rest_through_the_page_cache(tmp_path, monkeypatch):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    import fcntl
    import time

    real, kinds = os.write, []

    def slow_direct_write(fd, data):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        kinds.append(direct)
        if direct:
            time.sleep(0.05)  # 20 MB/s; filling the next buffer takes well under a millisecond
        return real(fd, data)

    monkeypatch.setattr(directio.os, "write", slow_direct_write)
    monkeypatch.setattr(directio, "JUDGE_AFTER", 2 * STAGE)
    data = os.urandom(12 * STAGE + 3)
    with DirectWriter(str(tmp_path / "f"), BIG) as f:
        for piece in pieces(data, 2):
            f.write(piece)
        assert not f.direct
    assert open(tmp_path / "f", "rb").read() == data
    assert kinds[:2] == [True, True] and kinds[-1] is False and kinds.count(True) <= 6


def test_the_next_file_stages_in_the_buffers_the_last_one_gave_back(tmp_path):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    directio._spare.clear()
    first, second = os.urandom(3 * STAGE + 5), os.urandom(2 * STAGE + 77)
    with DirectWriter(str(tmp_path / "a"), BIG) as f:
        f.write(first)
    kept = list(directio._spare)
    assert len(kept) == 2
    with DirectWriter(str(tmp_path / "b"), BIG) as f:
        assert not directio._spare  # both taken again, none made
        f.write(second)
    assert sorted(map(id, directio._spare)) == sorted(map(id, kept))
    assert open(tmp_path / "a", "rb").read() == first
    assert open(tmp_path / "b", "rb").read() == second  # nothing of the first file's bytes left in it


def test_no_more_buffers_are_kept_than_a_few_files_at_once_need(tmp_path):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    directio._spare.clear()
    writers = [DirectWriter(str(tmp_path / f"f{i}"), BIG) for i in range(directio._SPARE_MAX)]
    for w in writers:
        w.write(bytes(STAGE + 1))
        w.close()
    assert len(directio._spare) == directio._SPARE_MAX


def _slow_direct_writes(monkeypatch, seconds: float) -> list[bool]:
    """Direct writes take ``seconds`` each; returns, per write, whether it was direct."""
    import fcntl
    import time

    real, kinds = os.write, []

    def write(fd, data):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        kinds.append(direct)
        if direct:
            time.sleep(seconds)
        return real(fd, data)

    monkeypatch.setattr(directio.os, "write", write)
    return kinds


def test_small_files_on_a_slow_disk_are_judged_together_and_the_later_ones_go_through_the_page_cache(
    tmp_path, monkeypatch,
):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    _slow_direct_writes(monkeypatch, 0.05)
    monkeypatch.setattr(directio, "JUDGE_AFTER", 4 * STAGE)  # more than any one file hands over
    files = [os.urandom(2 * STAGE + 100 + i) for i in range(5)]
    direct = []
    for i, data in enumerate(files):
        with DirectWriter(str(tmp_path / f"f{i}"), BIG) as f:
            direct.append(f.direct)
            f.write(data)
    assert direct[:2] == [True, True] and direct[-1] is False
    for i, data in enumerate(files):
        assert open(tmp_path / f"f{i}", "rb").read() == data


def test_small_files_on_a_fast_disk_stay_direct(tmp_path, monkeypatch):
    if not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    import time

    _slow_direct_writes(monkeypatch, 0.0)
    monkeypatch.setattr(directio, "JUDGE_AFTER", 4 * STAGE)
    direct = []
    for i in range(5):
        with DirectWriter(str(tmp_path / f"f{i}"), BIG) as f:
            direct.append(f.direct)
            for piece in (bytes(STAGE), bytes(STAGE), bytes(100)):
                time.sleep(0.05)  # decrypting a MiB: far longer than a disk takes to write it
                f.write(piece)
    assert direct == [True] * 5
