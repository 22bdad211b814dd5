"""Configuration: the TOML file that names the shares, their keys and stores.

This layer finds the file (``--config``, ``$FOGSYNC_CONFIG``, the platform's
user config dir), reads it into a ``Config``, and edits it with tomlkit so a
person's comments and layout survive ``add-share``/``remove-share``. The
file holds keys: it is always written with mode 0600, through a temporary
file and a rename. ``config.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import socket
import tempfile
import tomllib
from dataclasses import dataclass, field

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
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""
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


def load(path: str, host: str | None = None) -> Config:
    """Read the config; a missing file is an empty config."""
    try:
        doc = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
    state_dir = doc.get("state_dir")
    if state_dir:
        state_dir = os.path.abspath(os.path.expanduser(str(state_dir)))
    else:
        import platformdirs

        state_dir = platformdirs.user_data_dir(APP)
    cfg = Config(
        path=path,
        host=host or os.environ.get("FOGSYNC_HOST") or doc.get("host") or socket.gethostname(),
        state_dir=state_dir,
        default_store=doc.get("default_store"),
        s3_endpoint=(doc.get("s3") or {}).get("endpoint_url"),
        debounce=_number(doc, "debounce", 0.5, path),
        max_delay=_number(doc, "max_delay", 5.0, path),
        poll=_number(doc, "poll", 10.0, path),
        rescan=_number(doc, "rescan", 3600.0, path),
        exclude=tuple(doc.get("exclude") or ()),
        workers=int(_number(doc, "workers", 3, path)),
    )
    _check_host(cfg.host)
    # imported here: it brings in the engine, which most commands load anyway
    from fogsync.config import retention

    cfg.retention = retention.parse(doc, path)
    for name, s in (doc.get("shares") or {}).items():
        cfg.shares[name] = _share(cfg, name, s, path)
    return cfg


def _number(doc: dict, key: str, default: float, path: str) -> float:
    value = doc.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} in {path} must be a non-negative number")
    return float(value)


def _share(cfg: Config, name: str, s: dict, path: str) -> ShareConfig:
    if not isinstance(s, dict) or "key" not in s or "path" not in s:
        raise ConfigError(f"share {name!r} in {path} needs a key and a path")
    try:
        key = parse_key(str(s["key"]))
    except ConfigError:
        raise ConfigError(f"share {name!r} in {path}: key must be 64 hex characters (32 bytes)") from None
    store = s.get("store") or cfg.default_store or cfg.local_store
    folder = os.path.abspath(os.path.expanduser(str(s["path"])))
    return ShareConfig(name, key, folder, str(store), tuple(s.get("exclude") or ()))


def check_name(name: str) -> str:
    if not name or name != name.strip() or any(ord(c) < 32 for c in name) or "/" in name:
        raise ConfigError(f"bad share name {name!r}: use a non-empty name without '/' or control characters")
    return name


def _check_host(host: str) -> None:
    if not host or any(ord(c) < 32 for c in host) or "/" in host:
        raise ConfigError(f"bad host name {host!r}")


def add_share(path: str, name: str, key: bytes, folder: str, store: str | None) -> None:
    """Record a share, keeping the rest of the file as the person wrote it."""
    check_name(name)
    import tomlkit

    doc = _read_doc(path)
    shares = doc.setdefault("shares", tomlkit.table(is_super_table=True))
    if name in shares:
        raise ConfigError(f"share {name!r} already exists in {path}")
    table = tomlkit.table()
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
