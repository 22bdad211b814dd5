"""The vpgather decision: env override, no-avx2, the cached verdict, calibration and its failures.

Most tests fake the measurement (``gcrypt_hwf.measure``) and /proc/cpuinfo, so
they check the logic without timing anything; a few run the real children.
No test asserts which path is faster: machines are noisy.
"""

from __future__ import annotations

import ctypes.util
import json
import os

import pytest

from fogsync.format import cipher, cipher_gcrypt
from fogsync.platform import gcrypt_hwf

AVX2_CPU = "processor\t: 0\nmodel name\t: Fake CPU\nmicrocode\t: 0x1\nflags\t\t: fpu sse2 avx avx2\n\nprocessor\t: 1\n"
HAVE_GCRYPT = cipher.GCRYPT in cipher.available_backends()
needs_gcrypt = pytest.mark.skipif(not HAVE_GCRYPT, reason="libgcrypt is not installed")


class FakeMeasure:
    """Stands in for the child processes: fixed rates, and a count of the calls."""

    def __init__(self, on: float = 100.0, off: float = 170.0, on_uses: bool = True, off_uses: bool = False):
        self.results = {"on": (on, on_uses), "off": (off, off_uses)}
        self.calls: list[str] = []

    def __call__(self, library: str, mode: str) -> tuple[float, bool]:
        self.calls.append(mode)
        return self.results[mode]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake AVX2 CPU, a fake library file, an empty cache dir, no env override."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_CPU)
    library = tmp_path / "libgcrypt-fake.so.20"
    library.write_bytes(b"\x7fELF not really")
    monkeypatch.setattr(gcrypt_hwf, "CPUINFO", str(cpuinfo))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(gcrypt_hwf.ENV_VPGATHER, raising=False)
    fake = FakeMeasure()
    monkeypatch.setattr(gcrypt_hwf, "measure", fake)
    cache = tmp_path / "cache" / "fogsync" / gcrypt_hwf.CACHE_FILE
    return {"cpuinfo": cpuinfo, "library": str(library), "cache": cache, "measure": fake}


@pytest.mark.parametrize(("value", "vpgather"), [("on", True), ("off", False), (" OFF ", False), ("On", True)])
def test_env_decides_without_measuring_or_caching(machine, monkeypatch, value, vpgather):
    monkeypatch.setenv(gcrypt_hwf.ENV_VPGATHER, value)
    assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(vpgather, "env")
    assert machine["measure"].calls == []
    assert not machine["cache"].exists()


@pytest.mark.parametrize("value", ["", "auto", "1", "yes"])
def test_other_env_values_are_ignored(machine, monkeypatch, value):
    monkeypatch.setenv(gcrypt_hwf.ENV_VPGATHER, value)
    assert gcrypt_hwf.decide(machine["library"]).source == "measured"


def test_no_avx2_or_no_cpuinfo_keeps_the_default(machine, monkeypatch, tmp_path):
    machine["cpuinfo"].write_text(AVX2_CPU.replace(" avx2", ""))
    assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(True, "no-avx2")
    monkeypatch.setattr(gcrypt_hwf, "CPUINFO", str(tmp_path / "missing"))
    assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(True, "no-avx2")
    assert machine["measure"].calls == []


@pytest.mark.parametrize(
    ("fake", "vpgather", "calls"),
    [
        (FakeMeasure(on=100, off=170), False, ["on", "off"]),  # clearly faster off: switch it off
        (FakeMeasure(on=100, off=110), True, ["on", "off"]),  # within noise: keep the default
        (FakeMeasure(on=300, off=170), True, ["on", "off"]),  # vpgather is the fast path here
        (FakeMeasure(on=100, off=170, off_uses=True), True, ["on", "off"]),  # the disable did not take
        (FakeMeasure(on=100, on_uses=False), True, ["on"]),  # libgcrypt does not use vpgather: one child
    ],
)
def test_verdict_rule(machine, monkeypatch, fake, vpgather, calls):
    monkeypatch.setattr(gcrypt_hwf, "measure", fake)
    choice = gcrypt_hwf.decide(machine["library"])
    assert (choice.vpgather, choice.source, fake.calls) == (vpgather, "measured", calls)
    assert choice.mbps == {mode: fake.results[mode][0] for mode in calls}


def test_verdict_is_cached_and_reused(machine):
    first = gcrypt_hwf.decide(machine["library"])
    assert (first.vpgather, first.source) == (False, "measured")
    record = json.loads(machine["cache"].read_text())
    assert record["vpgather"] is False and record["mbps"] == {"on": 100.0, "off": 170.0}
    assert record["key"]["cpu"] == "Fake CPU" and record["key"]["library"] == machine["library"]
    again = gcrypt_hwf.decide(machine["library"])
    assert again == gcrypt_hwf.Choice(False, "cache", {"on": 100.0, "off": 170.0})
    assert machine["measure"].calls == ["on", "off"]  # measured once only
    assert [p.name for p in machine["cache"].parent.iterdir() if p.name.startswith(".gcrypt")] == []  # no temp left


@pytest.mark.parametrize("change", ["microcode", "flags", "model", "library"])
def test_cache_is_stale_when_cpu_or_library_changes(machine, change):
    gcrypt_hwf.decide(machine["library"])
    if change == "library":
        with open(machine["library"], "ab") as f:
            f.write(b"upgraded")
    else:
        old = {"microcode": "0x1", "flags": "sse2", "model": "Fake CPU"}[change]
        new = {"microcode": "0xf0", "flags": "sse2 avx512f", "model": "Other CPU"}[change]
        machine["cpuinfo"].write_text(AVX2_CPU.replace(old, new))
    assert gcrypt_hwf.decide(machine["library"]).source == "measured"
    assert machine["measure"].calls == ["on", "off"] * 2


@pytest.mark.parametrize("content", ["{not json", "[]", '{"key": {}, "vpgather": false}', '{"vpgather": "no"}', ""])
def test_corrupt_cache_is_ignored_and_rewritten(machine, content):
    machine["cache"].parent.mkdir(parents=True)
    machine["cache"].write_text(content)
    assert gcrypt_hwf.decide(machine["library"]).source == "measured"
    assert json.loads(machine["cache"].read_text())["vpgather"] is False
    assert gcrypt_hwf.decide(machine["library"]).source == "cache"


def test_unwritable_cache_dir_still_decides(machine, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache dir cannot be created under a file
    for _ in range(2):
        assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(False, "measured", {"on": 100, "off": 170})
    assert machine["measure"].calls == ["on", "off"] * 2


def test_failed_measurement_falls_back_to_default_and_is_cached(machine, monkeypatch):
    def crash(library: str, mode: str) -> tuple[float, bool]:
        raise OSError("child crashed")

    monkeypatch.setattr(gcrypt_hwf, "measure", crash)
    assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(True, "failed")
    assert gcrypt_hwf.decide(machine["library"]) == gcrypt_hwf.Choice(True, "cache")


# --- the real child processes --------------------------------------------------

LIBRARY = ctypes.util.find_library("gcrypt") or "libgcrypt.so.20"


@needs_gcrypt
def test_real_children_measure_both_modes():
    on_mbps, _ = gcrypt_hwf.measure(LIBRARY, "on")
    off_mbps, off_uses = gcrypt_hwf.measure(LIBRARY, "off")
    assert on_mbps > 0 and off_mbps > 0
    assert off_uses is False  # the disable call took effect in the child
    choice = gcrypt_hwf.calibrate(LIBRARY)
    assert choice.source == "measured" and choice.mbps["on"] > 0


@needs_gcrypt
def test_real_children_failing_means_the_default(monkeypatch, tmp_path):
    assert gcrypt_hwf.calibrate(str(tmp_path / "libgcrypt-missing.so")) == gcrypt_hwf.Choice(True, "failed")
    monkeypatch.setattr(gcrypt_hwf, "CHILD_TIMEOUT", 0.001)
    assert gcrypt_hwf.calibrate(LIBRARY) == gcrypt_hwf.Choice(True, "failed")


@needs_gcrypt
def test_hw_features_of_this_process():
    features = cipher_gcrypt.library().hw_features
    assert isinstance(features, tuple) and all(isinstance(f, str) and f for f in features)
    if not cipher_gcrypt.library().vpgather:
        assert gcrypt_hwf.HWF_NAME not in features


def test_mapped_file_finds_the_loaded_library():
    if not HAVE_GCRYPT or not os.path.exists("/proc/self/maps"):
        pytest.skip("needs libgcrypt and /proc")
    path = gcrypt_hwf._mapped_file(LIBRARY)
    assert path is not None and os.path.isfile(path) and "libgcrypt" in os.path.basename(path)
