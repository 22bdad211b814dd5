"""Configuration: the TOML file that names the shares, their keys and stores.

This layer finds the file (``--config``, ``$FOGSYNC_CONFIG``, the platform's
user config dir), reads it into a ``Config``, and edits it with tomlkit so a
person's comments and layout survive ``add-share``/``remove-share``. The
file holds keys: it is always written with mode 0600, through a temporary
file and a rename. ``config.example.toml`` documents every key.
"""

from __future__ import annotations

import difflib
import os
import socket
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from fogsync.config import keys
from fogsync.errors import ConfigError
from fogsync.format.crypto import parse_key

APP = "fogsync"


@dataclass(frozen=True)
class ShareConfig:
    name: str
    key: bytes = field(repr=False)
    path: str
    store: str
    exclude: tuple[str, ...] = ()
    key_source: tuple[str, str] | None = None  # (kind, value) from config.keys when the key is not inline

    def open_key(self) -> bytes:
        """The share's key: inline, or read now from its key file, key command or the OS keyring."""
        if self.key_source is None:
            return self.key
        return keys.resolve(self.name, self.key_source)


@dataclass
class Config:
    path: str
    host: str
    state_dir: str
    default_store: str | None = None
    s3_endpoint: str | None = None
    debounce: float = 0.5
    max_delay: float = 5.0
    poll: float = 10.0
    rescan: float = 3600.0
    exclude: tuple[str, ...] = ()
    workers: int = 3
    shares: dict[str, ShareConfig] = field(default_factory=dict)
    retention: dict = field(default_factory=dict)  # policies by share name, "" the default (config/retention.py)

    def share(self, name: str) -> ShareConfig:
        try:
            return self.shares[name]
        except KeyError:
            known = ", ".join(sorted(self.shares)) or "none"
            raise ConfigError(f"no share named {name!r} in {self.path} (shares: {known})") from None

    @property
    def local_store(self) -> str:
        """The embedded default store: a directory in the state dir."""
        return os.path.join(self.state_dir, "store")


def config_path(arg: str | None = None) -> str:
    if arg:
        return os.path.abspath(os.path.expanduser(arg))
    env = os.environ.get("FOGSYNC_CONFIG")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import platformdirs

    return os.path.join(platformdirs.user_config_dir(APP), "config.toml")


def _read_text(path: str) -> str:
    return _read_with_mode(path)[0]


def _read_with_mode(path: str) -> tuple[str, int]:
    """The file's text and its permission bits (a missing file is empty text, mode 0)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), stat.S_IMODE(os.fstat(f.fileno()).st_mode)
    except FileNotFoundError:
        return "", 0
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None


def _read_doc(path: str):
    """The config as a tomlkit document, for editing with comments kept."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(_read_text(path))
    except TOMLKitError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None


# --- what the file may hold ----------------------------------------------------------------
#
# Every key, with what its value must be. A key added to FogSync is one line in
# one of these tables; load() refuses a value of another type, and a key no
# table names (a typo, such as "exlude", would otherwise be silently ignored).


@dataclass(frozen=True)
class Field:
    """One key: ``accept`` says whether a TOML value will do, ``what`` says what it must be."""

    what: str
    accept: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value
    required: bool = False


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\0" not in value


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_key_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_key(value)
    except ConfigError:
        return False
    return True


STORE = Field("a store URL or path (a non-empty string)", _is_text)
PATH = Field("a path (a non-empty string)", _is_text, lambda v: os.path.abspath(os.path.expanduser(v)))
PATTERNS = Field("a list of strings (gitignore patterns), such as [\"*.tmp\"]", _is_text_list, tuple)
SECONDS = Field("a non-negative number of seconds", _is_seconds, float)

S3_KEYS: dict[str, Field] = {
    "endpoint_url": Field("a URL string, such as \"http://127.0.0.1:9000\"", _is_text),
}
SHARE_KEYS: dict[str, Field] = {
    # exactly one of key, key_file, key_command, keyring (config/keys.py checks which)
    "key": Field("64 hex characters (32 bytes), as 'fogsync keygen' prints", _is_key_text, parse_key),
    "key_file": Field("the path of a file holding the key (a non-empty string)", _is_text),
    "key_command": Field("a shell command that prints the key (a non-empty string)", _is_text),
    "keyring": Field("true (the key is in the OS keyring)", lambda v: v is True),
    "retention": Field("a table of keep_* rules ([shares.NAME.retention])", lambda v: isinstance(v, dict)),
    "path": replace(PATH, required=True),
    "store": STORE,
    "exclude": PATTERNS,
}
TOP_KEYS: dict[str, Field | dict] = {
    "host": Field("a host name (a non-empty string)", _is_text),
    "state_dir": PATH,
    "default_store": STORE,
    "exclude": PATTERNS,
    "debounce": SECONDS,
    "max_delay": SECONDS,
    "poll": SECONDS,
    "rescan": SECONDS,
    "workers": Field("a whole number of at least 1", _is_count),
    "s3": S3_KEYS,
    "retention": Field("a table of keep_* rules ([retention])", lambda v: isinstance(v, dict)),
}
# [shares.NAME] tables, each checked against SHARE_KEYS; "shares" itself must be a table of them.


def _kind_of(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return next((name for t, name in kinds.items() if isinstance(value, t)), "a date or time")


def _validated(table: Mapping[str, Any], fields: Mapping[str, Any], where: str, path: str) -> dict[str, Any]:
    """``table``'s values checked against ``fields`` and converted; one ConfigError naming the key if not."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}{key}"
        field_ = fields.get(key)
        if field_ is None:
            known = [*fields, "shares"] if fields is TOP_KEYS else list(fields)
            raise ConfigError(f"unknown key {name} in {path}{_did_you_mean(key, known)}")
        if isinstance(field_, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} in {path} must be a table ([{name}]), not {_kind_of(value)}")
            out[key] = _validated(value, field_, f"{name}.", path)
        elif not field_.accept(value):
            raise ConfigError(f"{name} in {path} must be {field_.what}, not {_kind_of(value)}")
        else:
            out[key] = field_.convert(value)
    for key, field_ in fields.items():
        if isinstance(field_, Field) and field_.required and key not in table:
            raise ConfigError(f"{where.rstrip('.')} in {path} needs a {key}")
    return out


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})"


def _validated_shares(shares: Any, path: str) -> dict[str, dict[str, Any]]:
    if not isinstance(shares, dict) or not all(isinstance(s, dict) for s in shares.values()):
        raise ConfigError(f"shares in {path} must hold one table per share ([shares.NAME]), not {_kind_of(shares)}")
    out = {}
    for name, table in shares.items():
        check_name(name)
        out[name] = _validated(table, SHARE_KEYS, f"shares.{_quoted(name)}.", path)
    return out


def _quoted(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() and name.isascii() else f'"{name}"'


def _check_private(path: str, mode: int, doc: Mapping[str, Any]) -> None:
    """Refuse a file that holds keys and lets other users at it, as ssh refuses such a private key."""
    if mode & 0o077 and any("key" in share for share in doc.get("shares", {}).values()):
        raise ConfigError(
            f"config {path} holds share keys but its mode {mode:04o} lets other users at it: run chmod 600 {path}"
        )


def load(path: str, host: str | None = None) -> Config:
    """Read and check the whole config (a missing file is an empty config): one ConfigError if it is wrong."""
    text, mode = _read_with_mode(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
    shares = raw.pop("shares", {})
    doc = _validated(raw, TOP_KEYS, "", path)
    doc["shares"] = _validated_shares(shares, path)
    _check_private(path, mode, doc)
    if doc.get("state_dir") is None:
        import platformdirs

        doc["state_dir"] = platformdirs.user_data_dir(APP)
    cfg = Config(
        path=path,
        host=host or os.environ.get("FOGSYNC_HOST") or doc.get("host") or socket.gethostname(),
        state_dir=doc["state_dir"],
        default_store=doc.get("default_store"),
        s3_endpoint=doc.get("s3", {}).get("endpoint_url"),
        debounce=doc.get("debounce", 0.5),
        max_delay=doc.get("max_delay", 5.0),
        poll=doc.get("poll", 10.0),
        rescan=doc.get("rescan", 3600.0),
        exclude=doc.get("exclude", ()),
        workers=doc.get("workers", 3),
    )
    _check_host(cfg.host)
    # imported here: it brings in the engine's retention policy, which most commands load anyway
    from fogsync.config import retention

    cfg.retention = retention.parse(doc, path)
    for name, s in doc["shares"].items():
        source = keys.source_of(name, s, path)
        store = s.get("store") or cfg.default_store or cfg.local_store
        cfg.shares[name] = ShareConfig(name, s.get("key", b""), s["path"], store, s.get("exclude", ()), source)
    return cfg


def check_name(name: str) -> str:
    if not name or name != name.strip() or any(ord(c) < 32 for c in name) or "/" in name:
        raise ConfigError(f"bad share name {name!r}: use a non-empty name without '/' or control characters")
    return name


def check_folder_apart(cfg: Config, folder: str) -> None:
    """Refuse a folder that is, holds or lies inside another share's folder: a file there would go to both."""
    mine = _real(folder)
    for other in cfg.shares.values():
        theirs = _real(other.path)
        if mine == theirs:
            how = "is already the folder of"
        elif mine.startswith(theirs.rstrip(os.sep) + os.sep):
            how = "is inside the folder of"
        elif theirs.startswith(mine.rstrip(os.sep) + os.sep):
            how = "holds the folder of"
        else:
            continue
        raise ConfigError(f"{folder} {how} share {other.name!r} ({other.path}): shares' folders may not nest")


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _check_host(host: str) -> None:
    if not host or any(ord(c) < 32 for c in host) or "/" in host:
        raise ConfigError(f"bad host name {host!r}")


def add_share(path: str, name: str, key: bytes | None, folder: str, store: str | None,
              key_source: tuple[str, str | bool] | None = None) -> None:
    """Record a share, keeping the rest of the file as the person wrote it.

    ``key_source`` (``("key_file", path)``, ``("key_command", cmd)``,
    ``("keyring", True)``) is recorded instead of the key.
    """
    check_name(name)
    import tomlkit

    doc = _read_doc(path)
    shares = doc.setdefault("shares", tomlkit.table(is_super_table=True))
    if name in shares:
        raise ConfigError(f"share {name!r} already exists in {path}")
    table = tomlkit.table()
    if key_source is not None:
        table[key_source[0]] = key_source[1]
    else:
        table["key"] = key.hex()
    table["path"] = folder
    if store:
        table["store"] = store
    shares[name] = table
    _write_doc(path, doc)


def remove_share(path: str, name: str) -> None:
    doc = _read_doc(path)
    shares = doc.get("shares")
    if shares is None or name not in shares:
        raise ConfigError(f"no share named {name!r} in {path}")
    del shares[name]
    _write_doc(path, doc)


def _write_doc(path: str, doc) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(doc.as_string())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"cannot write config {path}: {e.strerror or e}") from None
