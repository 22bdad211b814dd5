"""Whether libgcrypt may use AVX2 ``vpgather`` for Twofish: decided per machine, measured, cached.

libgcrypt's AVX2 Twofish is built on ``vpgather`` and is chosen from the CPU
model alone (its "intel-fast-vpgather" hardware feature). On Intel server CPUs
with the Gather Data Sampling ("Downfall") microcode mitigation, vpgather is so
slow that libgcrypt's plain amd64 Twofish is clearly faster; elsewhere the
AVX2 path wins. The feature can only be switched off for the whole process and
only before libgcrypt initialises, so ``cipher`` asks ``decide()`` first:

1. ``FOGSYNC_GCRYPT_VPGATHER=on|off`` decides outright (other values are ignored).
2. No ``avx2`` flag in /proc/cpuinfo (or no /proc/cpuinfo): libgcrypt's default.
3. A verdict cached in ``user_cache_dir("fogsync")/gcrypt-vpgather.json``, valid
   while the CPU (model, microcode, flags) and the library file (path, size,
   mtime) are the ones it was measured on.
4. Otherwise measure: two short child processes, one after the other, time
   Twofish-CTR over 1 MiB with the feature on and off; "off" wins only when
   clearly faster. Short, and once per machine. A failed measurement means
   libgcrypt's default, and is cached too so a broken setup is not retried on
   every start (delete the file to measure again).

Either way the cipher gives identical bytes; only its speed differs.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import platformdirs

ENV_VPGATHER = "FOGSYNC_GCRYPT_VPGATHER"
HWF_NAME = "intel-fast-vpgather"
GCRYCTL_DISABLE_HWF = 63  # gcrypt.h, enum gcry_ctl_cmds
CACHE_FILE = "gcrypt-vpgather.json"
CPUINFO = "/proc/cpuinfo"
OFF_WINS_AT = 1.15  # "off" must beat "on" by this factor: noise never flips the default
CHILD_TIMEOUT = 5.0  # seconds per child; a healthy one finishes far sooner

# The child: load the library, maybe disable the feature, initialise, time
# Twofish-CTR (256-bit key) over 1 MiB, best of 4. Only ctypes, no fogsync.
_CHILD = f"""
import ctypes, json, sys, time
lib = ctypes.CDLL(sys.argv[1])
lib.gcry_control.argtypes = [ctypes.c_int]
if sys.argv[2] == "off" and lib.gcry_control({GCRYCTL_DISABLE_HWF}, ctypes.c_char_p(b"{HWF_NAME}"), ctypes.c_void_p()):
    sys.exit("GCRYCTL_DISABLE_HWF failed")
lib.gcry_check_version.restype = ctypes.c_char_p
lib.gcry_get_config.restype = ctypes.c_void_p
lib.gcry_get_config.argtypes = [ctypes.c_int, ctypes.c_char_p]
if not lib.gcry_check_version(None):
    sys.exit("gcry_check_version failed")
hwf = ctypes.string_at(lib.gcry_get_config(0, b"hwflist")).decode().split(":")
h = ctypes.c_void_p()
if lib.gcry_cipher_open(ctypes.byref(h), 10, 6, 0) or lib.gcry_cipher_setkey(h, bytes(range(32)), 32):
    sys.exit("cipher setup failed")
buf = ctypes.create_string_buffer(1 << 20)
lib.gcry_cipher_encrypt.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
best = 1e9
for _ in range(4):
    t = time.perf_counter()
    if lib.gcry_cipher_encrypt(h, buf, len(buf), None, 0):
        sys.exit("encrypt failed")
    best = min(best, time.perf_counter() - t)
print(json.dumps({{"mbps": len(buf) / best / 1e6, "vpgather": "{HWF_NAME}" in hwf}}))
"""


@dataclass(frozen=True)
class Choice:
    """Leave vpgather to libgcrypt (``vpgather=True``) or switch it off, and why."""

    vpgather: bool
    source: str  # "env", "no-avx2", "cache", "measured", "failed"
    mbps: dict[str, float] = field(default_factory=dict)  # raw Twofish-CTR MB/s by "on"/"off"


def decide(library: str) -> Choice:
    """The choice for the libgcrypt loaded (not yet initialised) from ``library``."""
    forced = os.environ.get(ENV_VPGATHER, "").strip().lower()
    if forced in ("on", "off"):
        return Choice(forced == "on", "env")
    cpu = _cpuinfo()
    if "avx2" not in cpu.get("flags", "").split():
        return Choice(True, "no-avx2")
    library = _mapped_file(library) or library
    key = _cache_key(cpu, library)
    path = os.path.join(platformdirs.user_cache_dir("fogsync"), CACHE_FILE)
    cached = _read_verdict(path, key)
    if cached is None:
        with _exclusive(path + ".lock"):
            cached = _read_verdict(path, key)  # another process may have measured meanwhile
            if cached is None:
                choice = calibrate(library)
                _write_verdict(path, key, choice)
                return choice
    return cached


def disable_vpgather(lib: ctypes.CDLL) -> bool:
    """Switch the feature off (True if libgcrypt accepted); only works before ``gcry_check_version``."""
    # gcry_control is variadic: declare only the fixed argument and pass the
    # rest as ctypes objects, so ctypes makes a proper variadic call.
    lib.gcry_control.argtypes = [ctypes.c_int]
    lib.gcry_control.restype = ctypes.c_uint
    return lib.gcry_control(GCRYCTL_DISABLE_HWF, ctypes.c_char_p(HWF_NAME.encode()), ctypes.c_void_p()) == 0


def hw_features(lib: ctypes.CDLL) -> tuple[str, ...]:
    """The hardware features an initialised libgcrypt uses (empty if it cannot say)."""
    try:
        lib.gcry_get_config.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.gcry_get_config.restype = ctypes.c_void_p
        lib.gcry_free.argtypes = [ctypes.c_void_p]
        lib.gcry_free.restype = None
    except AttributeError:  # libgcrypt before 1.8
        return ()
    text = lib.gcry_get_config(0, b"hwflist")
    if not text:
        return ()
    try:
        return tuple(name for name in ctypes.string_at(text).decode().split(":")[1:] if name)
    finally:
        lib.gcry_free(text)


def calibrate(library: str) -> Choice:
    """Measure on, then off (never both at once: they would share the cores)."""
    try:
        on_mbps, used = measure(library, "on")
        if not used:  # libgcrypt does not pick vpgather here: nothing to switch off
            return Choice(True, "measured", {"on": on_mbps})
        off_mbps, still_used = measure(library, "off")
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return Choice(True, "failed")
    rates = {"on": on_mbps, "off": off_mbps}
    return Choice(still_used or off_mbps < OFF_WINS_AT * on_mbps, "measured", rates)


def measure(library: str, mode: str) -> tuple[float, bool]:
    """One child's raw Twofish-CTR MB/s with the feature "on" or "off", and whether vpgather was in use."""
    if not sys.executable:
        raise OSError("no Python executable to run the measurement in")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _CHILD, library, mode],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT, stdin=subprocess.DEVNULL, check=True,
    )
    result = json.loads(proc.stdout)
    return round(float(result["mbps"]), 1), bool(result["vpgather"])


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo; empty where there is none."""
    fields: dict[str, str] = {}
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _mapped_file(library: str) -> str | None:
    """The file behind a loaded library name such as "libgcrypt.so.20" (Linux)."""
    stem = os.path.basename(library).split(".so")[0]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip()
                if path.startswith("/") and os.path.basename(path).split(".so")[0] == stem:
                    return path
    except OSError:
        pass
    return None


def _cache_key(cpu: dict[str, str], library: str) -> dict[str, object]:
    """What the verdict depends on: the CPU (a microcode update is what adds the slowdown) and the library build."""
    try:
        st = os.stat(library)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime = None
    return {
        "cpu": cpu.get("model name", ""),
        "microcode": cpu.get("microcode", ""),
        "flags": hashlib.sha256(cpu.get("flags", "").encode()).hexdigest()[:16],
        "library": library,
        "size": size,
        "mtime_ns": mtime,
    }


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    """Hold an flock while measuring: two calibrations at once would share the cores and skew both."""
    try:
        import fcntl

        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        f = open(lock_path, "a")
    except (ImportError, OSError):  # no flock, or no cache dir: measure unserialised
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)  # bounded: a holder is done within 2 * CHILD_TIMEOUT
        except OSError:  # e.g. no locks on this file system
            pass
        yield


def _read_verdict(path: str, key: dict[str, object]) -> Choice | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data["key"] == key and isinstance(data["vpgather"], bool):
            return Choice(data["vpgather"], "cache", {k: float(v) for k, v in data.get("mbps", {}).items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _write_verdict(path: str, key: dict[str, object], choice: Choice) -> None:
    """Write atomically; a cache that cannot be written only means measuring again next time."""
    record = {"key": key, "vpgather": choice.vpgather, "mbps": choice.mbps, "source": choice.source}
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gcrypt-vpgather.", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
