"""An independent, minimal reader of a FogSync Mark III store, from FORMAT.md alone.

Nothing here comes from ``fogsync`` except the Twofish-CTR primitive
(``fogsync.cipher.twofish_ctr``), which its own known-answer tests pin. The
rest (HKDF subkeys, share id, sealed blobs, bptrs, block lists, listings,
roots, head) is written again from /work/shared/FORMAT.md, so a test that
decodes a store written by the real client with this module checks the
client against the contract, not against itself.

The reader is strict: it checks everything FORMAT.md says a reader checks
(tag in constant time, header values, names, bptr reserved field and range,
block name = SHA-256 of the block) and, since it serves as a conformance
tool, also the writer's obligations it can see (pieces cut at 65,536 bytes,
block lists and the head uncompressed, listings gzipped and sorted, sizes
and sha256 of contents and listings, root fields).

    r = StoreReader(store_dir, "share name", key)
    for ref, root in r.roots():          # newest first
        tree = r.tree(root)              # {"a/b.txt": {...entry...}, "a": {...}}
        data = r.content(tree["a/b.txt"])
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fogsync.format.cipher import twofish_ctr

BLOCK = 65536
BPTR_LEN = 48
NONCE = 24
HEADER = 8
TAG = 32
HEX = re.compile(r"[0-9a-f]*")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
HEADER_NAMES = ("mode", "cipher", "mac", "compression")


class FormatViolation(Exception):
    """The store breaks FORMAT.md."""


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info).derive(key)


def subkeys(key: bytes) -> tuple[bytes, bytes]:
    """(Kc, Km) from the share key (FORMAT.md 1)."""
    if len(key) != 32:
        raise ValueError("share key must be 32 bytes")
    return _hkdf(key, b"fogsync mk3 cipher"), _hkdf(key, b"fogsync mk3 mac")


def share_id(km: bytes, name: str) -> str:
    return hmac.new(km, b"share-id:" + name.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _hex(value, nbytes: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * nbytes or not HEX.fullmatch(value):
        raise FormatViolation(f"{what}: not {2 * nbytes} lowercase hex characters: {value!r}")
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Bptr:
    hash: bytes
    start: int
    end: int
    depth: int

    @classmethod
    def parse(cls, raw: bytes) -> "Bptr":
        if len(raw) != BPTR_LEN:
            raise FormatViolation(f"bptr of {len(raw)} bytes, not 48")
        h, start, end, depth, reserved = struct.unpack(">32sIIII", raw)
        if reserved != 0:
            raise FormatViolation(f"bptr reserved field is {reserved}, not 0")
        if not start < end <= BLOCK:
            raise FormatViolation(f"bptr range [{start}, {end}) is not 0 <= start < end <= 65536")
        return cls(h, start, end, depth)

    @classmethod
    def from_hex(cls, text, what: str = "bptr") -> "Bptr":
        return cls.parse(_hex(text, BPTR_LEN, what))

    @property
    def length(self) -> int:
        return self.end - self.start


def check_name(name) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FormatViolation(f"unsafe listing name {name!r}")
    return name


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class StoreReader:
    """One share in a local store directory, opened with its key."""

    def __init__(self, store_dir: str, name: str, key: bytes) -> None:
        self.kc, self.km = subkeys(key)
        self.share_id = share_id(self.km, name)
        self.dir = os.path.join(store_dir, self.share_id)
        self.tail_blocks: set[bytes] = set()  # blocks seen holding a partial piece
        self.blocks_read: set[bytes] = set()

    # --- objects -----------------------------------------------------------

    def block(self, h: bytes) -> bytes:
        x = h.hex()
        try:
            with open(os.path.join(self.dir, "blocks", x[:2], x), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise FormatViolation(f"block {x} is missing") from None
        if len(data) > BLOCK:
            raise FormatViolation(f"block {x} is {len(data)} bytes, more than 65536")
        if hashlib.sha256(data).digest() != h:
            raise FormatViolation(f"block {x}: its SHA-256 does not match its name")
        self.blocks_read.add(h)
        return data

    def open_blob(self, blob: bytes, compression: int | None = None) -> bytes:
        """Verify the tag, check the header, decrypt, gunzip (FORMAT.md 2)."""
        if len(blob) < NONCE + HEADER + TAG:
            raise FormatViolation(f"sealed blob of {len(blob)} bytes is too short")
        body_end = len(blob) - TAG
        tag = hmac.new(self.km, memoryview(blob)[:body_end], hashlib.sha256).digest()
        if not hmac.compare_digest(tag, blob[body_end:]):
            raise FormatViolation("sealed blob: tag does not verify")
        nonce, header = blob[:NONCE], blob[NONCE : NONCE + HEADER]
        for i, name in enumerate(HEADER_NAMES[:3]):
            if header[i] != 0:
                raise FormatViolation(f"header {name} (byte {i}) is {header[i]}")
        if header[3] not in (0, 1):
            raise FormatViolation(f"header compression (byte 3) is {header[3]}")
        if any(header[4:]):
            raise FormatViolation(f"header reserved bytes are {header[4:].hex()}")
        if compression is not None and header[3] != compression:
            raise FormatViolation(f"blob has compression {header[3]}, FORMAT.md says {compression}")
        ctr = twofish_ctr(self.kc, int.from_bytes(nonce[:16], "big"))
        plain = ctr.xor(memoryview(blob)[NONCE + HEADER : body_end])
        if header[3] == 1:
            try:
                plain = gzip.decompress(plain)
            except (OSError, EOFError, ValueError) as e:
                raise FormatViolation(f"bad gzip data: {e}") from None
        return plain

    def _concat(self, pieces: list[Bptr]) -> bytes:
        out = bytearray()
        for i, p in enumerate(pieces):
            data = self.block(p.hash)
            if p.end > len(data):
                raise FormatViolation(f"bptr [{p.start}, {p.end}) runs past block of {len(data)} bytes")
            last = i == len(pieces) - 1
            if not last and (p.start, p.end) != (0, BLOCK):
                raise FormatViolation(f"piece {i} of {len(pieces)} is not a full 65536-byte piece")
            if (p.start, p.end) == (0, BLOCK):
                if len(data) != BLOCK:
                    raise FormatViolation("full piece in a block that is not 65536 bytes")
            else:
                self.tail_blocks.add(p.hash)
            out += data[p.start : p.end]
        return bytes(out)

    def sealed(self, ref: Bptr) -> bytes:
        """The data blob a reference names, still sealed (FORMAT.md 4)."""
        pieces = [ref]
        while True:
            blob = self._concat(pieces)
            depth = pieces[0].depth
            if depth == 0:
                return blob
            listing = self.open_blob(blob, compression=0)
            if not listing or len(listing) % BPTR_LEN:
                raise FormatViolation(f"block list of {len(listing)} bytes is not whole bptrs")
            pieces = [Bptr.parse(listing[i : i + BPTR_LEN]) for i in range(0, len(listing), BPTR_LEN)]
            if any(p.depth != depth - 1 for p in pieces):
                raise FormatViolation(f"block list at depth {depth} holds pieces not of depth {depth - 1}")
            if len(pieces) == 1:
                raise FormatViolation("block list of a single piece (it should be referred to directly)")

    def read(self, ref: Bptr, compression: int | None = None) -> bytes:
        return self.open_blob(self.sealed(ref), compression)

    # --- head and roots -------------------------------------------------------

    def head(self) -> Bptr | None:
        try:
            with open(os.path.join(self.dir, "head"), "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        return Bptr.parse(self.open_blob(blob, compression=0))

    def root(self, ref: Bptr) -> dict:
        try:
            d = json.loads(self.read(ref).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatViolation(f"root is not UTF-8 JSON: {e}") from None
        if not isinstance(d, dict):
            raise FormatViolation("root is not a JSON object")
        if not _is_int(d.get("version")) or d["version"] < 1:
            raise FormatViolation(f"root version {d.get('version')!r}")
        if d.get("prev") is not None:
            Bptr.from_hex(d["prev"], "root prev")
        elif "prev" not in d:
            raise FormatViolation("root has no prev key")
        if not isinstance(d.get("date"), str) or not DATE.fullmatch(d["date"]):
            raise FormatViolation(f"root date {d.get('date')!r} is not RFC 3339 UTC with Z")
        if not isinstance(d.get("host"), str):
            raise FormatViolation("root host is not a string")
        Bptr.from_hex(d.get("root"), "root root")
        return d

    def roots(self) -> list[tuple[Bptr, dict]]:
        """The chain from the head back to the first root, newest first; checks versions."""
        out: list[tuple[Bptr, dict]] = []
        ref = self.head()
        while ref is not None:
            d = self.root(ref)
            if out and d["version"] != out[-1][1]["version"] - 1:
                raise FormatViolation(f"root version {d['version']} precedes {out[-1][1]['version']}")
            out.append((ref, d))
            ref = Bptr.from_hex(d["prev"]) if d["prev"] is not None else None
        if out and out[-1][1]["version"] != 1:
            raise FormatViolation(f"first root has version {out[-1][1]['version']}")
        return out

    # --- listings and files ---------------------------------------------------------

    def listing(self, ref: Bptr) -> tuple[bytes, list[dict]]:
        """(the listing's JSON bytes, its checked entries) (FORMAT.md 5)."""
        raw = self.read(ref, compression=1)
        try:
            entries = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatViolation(f"listing is not UTF-8 JSON: {e}") from None
        if not isinstance(entries, list):
            raise FormatViolation("listing is not a JSON array")
        prev = None
        for e in entries:
            self._check_entry(e)
            if prev is not None and not prev < e["name"]:
                raise FormatViolation(f"listing not sorted by code point: {prev!r} before {e['name']!r}")
            prev = e["name"]
        return raw, entries

    @staticmethod
    def _check_entry(e) -> None:
        if not isinstance(e, dict):
            raise FormatViolation(f"listing entry {e!r} is not an object")
        name = check_name(e.get("name"))
        kind = e.get("type")
        if kind not in ("file", "dir", "symlink"):
            raise FormatViolation(f"{name!r}: type {kind!r}")
        for key in ("mtime", "size"):
            if not _is_int(e.get(key)):
                raise FormatViolation(f"{name!r}: {key} {e.get(key)!r} is not an integer")
        if e["size"] < 0:
            raise FormatViolation(f"{name!r}: negative size")
        if not isinstance(e.get("host"), str):
            raise FormatViolation(f"{name!r}: host is not a string")
        if kind in ("file", "dir"):
            if e["size"] > 0:
                Bptr.from_hex(e.get("bptr"), f"{name!r} bptr")
                _hex(e.get("sha256"), 32, f"{name!r} sha256")
            elif "bptr" in e:
                raise FormatViolation(f"{name!r}: size 0 yet a bptr (the empty blob is never stored)")
        if kind == "file" and not isinstance(e.get("exec"), bool):
            raise FormatViolation(f"{name!r}: exec is not a bool")
        if kind == "symlink":
            if not isinstance(e.get("target"), str):
                raise FormatViolation(f"{name!r}: symlink without a string target")
            if e["size"] != len(e["target"].encode("utf-8")):
                raise FormatViolation(f"{name!r}: symlink size is not its target's UTF-8 length")

    def tree(self, root: dict) -> dict[str, dict]:
        """Every path under the root's top listing (directories included, the top excluded)."""
        out: dict[str, dict] = {}
        stack: list[tuple[str, Bptr, dict | None]] = [("", Bptr.from_hex(root["root"]), None)]
        while stack:
            path, ref, parent_entry = stack.pop()
            raw, entries = self.listing(ref)
            if parent_entry is not None and (
                len(raw) != parent_entry["size"] or hashlib.sha256(raw).hexdigest() != parent_entry["sha256"]
            ):
                raise FormatViolation(f"{path!r}: size/sha256 do not match its listing")
            for e in entries:
                child = f"{path}/{e['name']}" if path else e["name"]
                out[child] = e
                if e["type"] == "dir":
                    stack.append((child, Bptr.from_hex(e["bptr"]), e))
        return out

    def content(self, entry: dict) -> bytes:
        """A file entry's content, checked against its size and sha256."""
        if entry["type"] != "file":
            raise ValueError(f"{entry['name']!r} is a {entry['type']}, not a file")
        if entry["size"] == 0:
            return b""
        data = self.read(Bptr.from_hex(entry["bptr"]))
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise FormatViolation(f"{entry['name']!r}: content does not match size/sha256")
        return data

    def verify(self, entry: dict) -> bytes:
        """A file's sealed blob, its tag verified and header checked, without decrypting it all."""
        sealed = self.sealed(Bptr.from_hex(entry["bptr"]))
        body_end = len(sealed) - TAG
        tag = hmac.new(self.km, memoryview(sealed)[:body_end], hashlib.sha256).digest()
        if not hmac.compare_digest(tag, sealed[body_end:]):
            raise FormatViolation("sealed blob: tag does not verify")
        if sealed[NONCE : NONCE + HEADER] not in (bytes(8), bytes([0, 0, 0, 1, 0, 0, 0, 0])):
            raise FormatViolation(f"bad header {sealed[NONCE:NONCE + HEADER].hex()}")
        return sealed

    def decrypt_at(self, sealed: bytes, offset: int, n: int) -> bytes:
        """Plaintext bytes [offset, offset + n) of an uncompressed sealed blob (CTR seeks)."""
        if sealed[NONCE + 3] != 0:
            raise ValueError("decrypt_at needs an uncompressed blob")
        first = offset // 16
        ctr = twofish_ctr(self.kc, (int.from_bytes(sealed[:16], "big") + first) % (1 << 128))
        lo = NONCE + HEADER + first * 16
        hi = min(NONCE + HEADER + offset + n, len(sealed) - TAG)
        return ctr.xor(sealed[lo:hi])[offset - first * 16 :]

    def depth(self, entry: dict) -> int:
        """The indirection depth of a file or directory entry's reference."""
        return Bptr.from_hex(entry["bptr"]).depth
