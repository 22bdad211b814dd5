"""Share keys from where people keep secrets: a key file, a command, the OS keyring.

A share in the config holds its key in one of four ways (exactly one):

- ``key = "<64 hex>"``: in the config itself (mode 0600);
- ``key_file = "/path"``: the first line of that file, read when the share is opened;
- ``key_command = "pass show fogsync/docs"``: the first line the command
  prints, run when the share is opened, as restic's ``RESTIC_PASSWORD_COMMAND``
  and rclone's ``--password-command`` (run through the shell, with no
  terminal input; the key travels over a pipe, never on a command line);
- ``keyring = true``: the OS keyring through the ``keyring`` library, under
  service ``fogsync`` and the share's name (imported only then).

With any of the last three the config holds no key at all. Errors say
where the key was to come from and never include what was read.
"""

from __future__ import annotations

import os
import stat
import subprocess

from fogsync.errors import ConfigError
from fogsync.format.crypto import parse_key

KEYRING_SERVICE = "fogsync"
SOURCES = ("key", "key_file", "key_command", "keyring")
COMMAND_TIMEOUT = 120.0  # seconds: a password manager may ask the person to unlock it


def source_of(name: str, table: dict, path: str) -> tuple[str, str] | None:
    """Which way the share's table gives its key: ``(kind, value)``, None for an inline ``key``."""
    given = [k for k in SOURCES if k in table]
    if not given:
        raise ConfigError(f"shares.{name} in {path} needs a key: one of key, key_file, key_command, keyring")
    if len(given) > 1:
        raise ConfigError(f"shares.{name} in {path} has {' and '.join(given)}: give only one way to its key")
    kind = given[0]
    value = table[kind]
    if kind == "key":
        return None
    if kind == "keyring":
        if value is not True:
            raise ConfigError(f"share {name!r} in {path}: keyring must be true (or absent)")
        return kind, name
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"share {name!r} in {path}: {kind} must be a non-empty string")
    return kind, os.path.expanduser(value) if kind == "key_file" else value


def resolve(name: str, source: tuple[str, str]) -> bytes:
    """The key the source gives, read now."""
    kind, value = source
    if kind == "key_file":
        return from_file(value, f"share {name!r}")
    if kind == "key_command":
        return from_command(value, f"share {name!r}")
    return from_keyring(name)


def from_file(path: str, whose: str) -> bytes:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{whose}: cannot read the key file {path}: {getattr(e, 'strerror', None) or e}") from None
    return _parse(text, f"{whose}: the key file {path}")


def loose_permissions(path: str) -> bool:
    """True when others than the owner may read the file (restic and ssh warn about the same)."""
    try:
        return bool(stat.S_IMODE(os.stat(path).st_mode) & 0o077)
    except OSError:
        return False


def from_command(command: str, whose: str) -> bytes:
    try:
        p = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{whose}: key_command did not finish within {COMMAND_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise ConfigError(f"{whose}: cannot run key_command: {e.strerror or e}") from None
    if p.returncode != 0:
        said = " ".join(p.stderr.decode("utf-8", "replace").split())[:200]
        raise ConfigError(f"{whose}: key_command exited {p.returncode}" + (f": {said}" if said else ""))
    lines = p.stdout.decode("utf-8", "replace").splitlines()
    return _parse(lines[0] if lines else "", f"{whose}: the output of key_command")


def _keyring():
    try:
        import keyring
    except ModuleNotFoundError:
        raise ConfigError("the OS keyring needs the Python package 'keyring': "
                          "run 'pip install keyring' (or pip install 'fogsync[keyring]')") from None
    return keyring


def from_keyring(name: str) -> bytes:
    keyring = _keyring()
    try:
        text = keyring.get_password(KEYRING_SERVICE, name)
    except Exception as e:  # keyring backends raise their own errors (locked, no backend, D-Bus down)
        raise ConfigError(f"share {name!r}: cannot read the OS keyring: {type(e).__name__}: {e}") from None
    if text is None:
        raise ConfigError(f"share {name!r}: the OS keyring has no key under service {KEYRING_SERVICE!r}, "
                          f"name {name!r}")
    return _parse(text, f"share {name!r}: the key in the OS keyring")


def store_in_keyring(name: str, key: bytes) -> None:
    keyring = _keyring()
    try:
        keyring.set_password(KEYRING_SERVICE, name, key.hex())
    except Exception as e:
        raise ConfigError(f"share {name!r}: cannot write to the OS keyring: {type(e).__name__}: {e}") from None


def _parse(text: str, where: str) -> bytes:
    try:
        return parse_key(text)
    except ConfigError:
        raise ConfigError(f"{where} does not hold a key: 64 hex characters (32 bytes) expected") from None
