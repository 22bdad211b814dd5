"""Share keys (FORMAT.md section 1): the share key, its two subkeys, the share id.

``parse_key`` reads a key as written in the config; ``ShareKeys.derive``
splits it by HKDF-SHA256 into the cipher key Kc and the MAC key Km, and
names the share's folder in a store. Pure computation, no I/O.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Any

from fogsync.errors import ConfigError

KEY_LEN = 32
HKDF_INFO_CIPHER = b"fogsync mk3 cipher"
HKDF_INFO_MAC = b"fogsync mk3 mac"
SHARE_ID_PREFIX = b"share-id:"
SHARE_ID_LEN = 32

_KEY_TEXT = re.compile(r"[0-9A-Fa-f]{64}")


def parse_key(text: str) -> bytes:
    """A share key written as 64 hex characters (surrounding whitespace ok) -> 32 bytes."""
    stripped = text.strip() if isinstance(text, str) else ""
    if not _KEY_TEXT.fullmatch(stripped):
        raise ConfigError("key must be 64 hex characters (32 bytes)")
    return bytes.fromhex(stripped)


def hkdf_sha256(key: bytes, info: bytes, length: int = KEY_LEN, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract, then expand to ``length`` bytes.

    Two HMAC calls from the standard library. The `cryptography` package's
    HKDF gives the same bytes (the tests check both against RFC 5869's
    vectors), but loading it costs every process memory and start-up time.
    """
    if not 0 < length <= 255 * 32:
        raise ValueError(f"HKDF-SHA256 cannot produce {length} bytes")
    prk = hmac.digest(salt or bytes(32), key, "sha256")
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
    return out[:length]


@dataclass(frozen=True)
class ShareKeys:
    """The two subkeys of a share: ``cipher`` (Kc) and ``mac`` (Km)."""

    cipher: bytes
    mac: bytes
    _mac_base: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("cipher", "mac"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != KEY_LEN:
                raise ValueError(f"ShareKeys.{name} must be {KEY_LEN} bytes")
        object.__setattr__(self, "_mac_base", hmac.new(self.mac, digestmod="sha256"))

    @classmethod
    def derive(cls, key: bytes) -> ShareKeys:
        """Kc and Km from the share key K by HKDF-SHA256 (FORMAT.md section 1)."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
            raise ConfigError(f"share key must be {KEY_LEN} bytes")
        key = bytes(key)
        return cls(cipher=hkdf_sha256(key, HKDF_INFO_CIPHER), mac=hkdf_sha256(key, HKDF_INFO_MAC))

    def share_id(self, name: str) -> str:
        """The share's folder name in a store: 32 hex characters."""
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError("share name is not valid Unicode text") from exc
        return self.new_mac(SHARE_ID_PREFIX + encoded).hexdigest()[:SHARE_ID_LEN]

    def new_mac(self, data: bytes = b"") -> hmac.HMAC:
        """A fresh HMAC-SHA256 under Km (a copy of a prepared one), fed ``data``."""
        mac = self._mac_base.copy()
        if data:
            mac.update(data)
        return mac

    def __repr__(self) -> str:
        return "ShareKeys(<secret>)"

    def __reduce__(self) -> tuple:
        return ShareKeys, (self.cipher, self.mac)  # for worker processes: the prepared HMAC is rebuilt there
