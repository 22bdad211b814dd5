"""The real CLI writes a store; an independent reader (tests/formatreader.py,
written from FORMAT.md alone) decodes it and must find the folder in it.

Checks, against /work/shared/FORMAT.md: keys and share id (1), sealed blobs
and their headers (2), blocks named by their SHA-256, pieces cut at 65,536
bytes and tails sharing partial blocks (3), block lists of depth 1 and 2 (4),
listings (5), roots and their chain (6), the store layout and head (7), and
that no plaintext name or content reaches the store.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import random
import re
import stat
import struct
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from formatreader import BLOCK, Bptr, FormatViolation, StoreReader, share_id, subkeys  # noqa: E402

from fogsync.format.cipher import twofish_ctr  # noqa: E402

KEY = bytes(range(32))
SHARE = "conformance share ünï"
CANARY_NAME = "zz-canary-filename-q7w8e9"
CANARY_TEXT = b"CANARY-CONTENT-7f3a9c-plaintext-must-not-leak "
HOST_A, HOST_B = "host-a", "host-b"
T0 = 1_700_000_000_123_456_789  # mtimes with a non-zero nanosecond part


def _fogsync() -> list[str]:
    script = Path(sys.executable).with_name("fogsync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fogsync"]


class Cli:
    def __init__(self, tmp: Path, folder: Path, store: Path) -> None:
        self.config = tmp / "config.toml"
        self.config.write_text(f'state_dir = "{tmp / "state"}"\n')
        self.folder, self.store = folder, store

    def run(self, *args: str, host: str = HOST_A) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("FOGSYNC_CONFIG", "FOGSYNC_HOST")}
        p = subprocess.run(
            [*_fogsync(), "--config", str(self.config), "--host", host, *args],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert p.returncode == 0, f"fogsync {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def add(self) -> None:
        self.run("add-share", SHARE, KEY.hex(), "--path", str(self.folder), "--store", str(self.store))

    def sync(self, host: str = HOST_A) -> str:
        return self.run("sync", SHARE, host=host)


# --- the folder -------------------------------------------------------------------------


def _write(path: Path, data: bytes, exec: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o755 if exec else 0o644)


def _stamp(folder: Path, base: int) -> None:
    """Distinct nanosecond mtimes on everything, deepest paths last so parents keep theirs."""
    paths = sorted(folder.rglob("*"), key=lambda p: (-len(p.parts), p.as_posix()))
    for i, p in enumerate(paths):
        os.utime(p, ns=(base + i * 1_000_003, base + i * 1_000_003), follow_symlinks=False)


def build_folder(folder: Path) -> dict[str, int]:
    """The variety of FORMAT.md's cases; returns the small files' count."""
    rnd = random.Random(1234)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "empty.txt", b"")
    _write(folder / "one.bin", b"\x07")
    _write(folder / "exact-sealed-64k.bin", os.urandom(BLOCK - 32 - 32))  # sealed: exactly one block
    _write(folder / "full-64k.bin", os.urandom(BLOCK))  # sealed: one block + a 64-byte tail
    _write(folder / "random-200k.bin", os.urandom(200 * 1024))
    _write(folder / "big-5m.bin", os.urandom(5 * 1024 * 1024))  # 81 pieces: a block list
    _write(folder / f"{CANARY_NAME}.txt", CANARY_TEXT * 500)  # compressible: gzip path
    _write(folder / "plain-canary.dat", CANARY_TEXT + os.urandom(300))  # not compressible
    _write(folder / "run.sh", b"#!/bin/sh\necho hi\n", exec=True)
    _write(folder / "nested" / "deep" / "deeper" / "file.txt", b"deep\n" * 10)
    # Code point order differs from UTF-16 order for U+FF21 vs U+1F600.
    for name in ("Ünïcødé ファイル.txt", "\U0001F600 emoji.txt", "\uFF21 fullwidth.txt", "a", "B", "_x"):
        _write(folder / "names" / name, name.encode("utf-8") * 3)
    n_small = 150
    for i in range(n_small):
        _write(folder / "small" / f"f{i:03d}.txt", os.urandom(rnd.randint(1, 700)))
    (folder / "emptydir").mkdir()
    (folder / "nested" / "empty-inside").mkdir()
    os.symlink("nested/deep/deeper/file.txt", folder / "link")
    os.symlink("../nowhere/dängling", folder / "names" / "dangling")
    _stamp(folder, T0)
    return {"small": n_small}


def folder_tree(folder: Path) -> dict[str, tuple]:
    """The folder as the store must hold it: all but the folder marker add-share leaves (never synced)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if rel == ".fogsync-folder":
                continue
            s = p.lstat()
            if stat.S_ISLNK(s.st_mode):
                out[rel] = ("symlink", s.st_mtime_ns, os.readlink(p))
            elif stat.S_ISDIR(s.st_mode):
                out[rel] = ("dir", s.st_mtime_ns)
            else:
                out[rel] = ("file", s.st_mtime_ns, bool(s.st_mode & stat.S_IXUSR), p.read_bytes())
    return out


def store_tree(reader: StoreReader, root: dict) -> dict[str, tuple]:
    out = {}
    for path, e in reader.tree(root).items():
        if e["type"] == "symlink":
            out[path] = ("symlink", e["mtime"], e["target"])
        elif e["type"] == "dir":
            out[path] = ("dir", e["mtime"])
        else:
            out[path] = ("file", e["mtime"], e["exec"], reader.content(e))
    return out


def store_objects(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file()]


def check_layout(store: Path, share_id: str) -> list[Path]:
    """Only <share_id>/head (+ its lock) and <share_id>/blocks/xx/<sha256>; returns the blocks."""
    blocks = []
    for p in store_objects(store):
        rel = p.relative_to(store).as_posix()
        if rel in (f"{share_id}/head", f"{share_id}/head.lock"):
            continue
        m = re.fullmatch(rf"{share_id}/blocks/([0-9a-f]{{2}})/([0-9a-f]{{64}})", rel)
        assert m, f"unexpected object in the store: {rel}"
        data = p.read_bytes()
        assert m.group(2).startswith(m.group(1))
        assert hashlib.sha256(data).hexdigest() == m.group(2), rel
        assert 0 < len(data) <= BLOCK, rel
        blocks.append(p)
    return blocks


def check_root_fields(root: dict, host: str, before: datetime, after: datetime) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", root["date"]), root["date"]
    when = datetime.strptime(root["date"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before <= when <= after
    assert root["host"] == host
    assert set(root) >= {"version", "prev", "date", "host", "root"}


def no_plaintext(store: Path, needles: list[bytes]) -> None:
    for p in store_objects(store):
        rel = p.relative_to(store).as_posix().encode()
        data = p.read_bytes()
        for needle in needles:
            assert needle not in rel, f"{needle!r} in the store path {rel!r}"
            assert needle not in data, f"{needle!r} in the store object {rel!r}"


# --- tests --------------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path):
    folder, store = tmp_path / "folder", tmp_path / "store"
    counts = build_folder(folder)
    cli = Cli(tmp_path, folder, store)
    cli.add()
    return cli, counts


def test_store_written_by_the_cli_decodes_to_the_folder(setup):
    cli, counts = setup
    folder, store = cli.folder, cli.store
    expected1 = folder_tree(folder)
    before = datetime.now(timezone.utc)
    cli.sync()
    after = datetime.now(timezone.utc)

    reader = StoreReader(str(store), SHARE, KEY)
    assert (store / reader.share_id / "head").is_file()
    blocks = check_layout(store, reader.share_id)

    # FORMAT.md 6: one root, version 1, no prev.
    chain = reader.roots()
    assert len(chain) == 1
    ref1, root1 = chain[0]
    assert root1["version"] == 1 and root1["prev"] is None
    check_root_fields(root1, HOST_A, before, after)

    # The whole tree: content, mtime ns, exec, symlink targets, dirs (empty ones too).
    assert store_tree(reader, root1) == expected1
    tree = reader.tree(root1)
    assert all(e["host"] == HOST_A for e in tree.values())
    assert tree["emptydir"]["size"] == 2 and "bptr" in tree["emptydir"]  # listing "[]"
    assert tree["empty.txt"]["size"] == 0 and "bptr" not in tree["empty.txt"]
    assert tree["link"]["size"] == len(b"nested/deep/deeper/file.txt")
    assert tree["names/dangling"]["size"] == len("../nowhere/dängling".encode())

    # Pieces: a blob of exactly 65,536 sealed bytes is one full block at depth 0.
    exact = Bptr.from_hex(tree["exact-sealed-64k.bin"]["bptr"])
    assert (exact.start, exact.end, exact.depth) == (0, BLOCK, 0)
    # 65,536 bytes seal to 65,600: a full piece plus a tail, hence a block list.
    assert reader.depth(tree["full-64k.bin"]) == 1
    assert reader.depth(tree["big-5m.bin"]) == 1
    assert reader.depth(tree["random-200k.bin"]) == 1
    one = Bptr.from_hex(tree["one.bin"]["bptr"])
    assert one.depth == 0 and one.length == 1 + 64  # 1 byte, uncompressed, sealed

    # Tails share partial blocks: far fewer blocks than files.
    files = [p for p, e in tree.items() if e["type"] == "file" and e["size"] > 0]
    small = [p for p in files if p.startswith("small/")]
    small_blocks = {Bptr.from_hex(tree[p]["bptr"]).hash for p in small}
    assert len(small) == counts["small"]
    assert len(small_blocks) < len(small) / 10
    assert len(blocks) < len(files)
    # Every object written is reachable from the head.
    assert {bytes.fromhex(p.name) for p in blocks} == reader.blocks_read

    # The CLI's root ids are the roots' bptrs in hex (full in --json, a unique prefix in the table).
    log = json.loads(cli.run("--json", "log", SHARE))["roots"]
    assert log[0] == {"id": ref_hex(ref1), "version": 1, "date": root1["date"], "host": HOST_A}
    assert ref_hex(ref1).startswith(cli.run("log", SHARE).split()[0])

    # No plaintext names or contents in the store, nor the share's name.
    no_plaintext(store, [
        CANARY_NAME.encode(), CANARY_TEXT[:24], "ファイル".encode(), b"deeper", b"nested/deep",
        SHARE.encode(), HOST_A.encode(), (folder / "random-200k.bin").read_bytes()[1000:1032],
    ])

    # --- a second commit, from another host name -------------------------------------------
    (folder / "one.bin").write_bytes(b"\x08\x09")
    os.utime(folder / "one.bin", ns=(T0 + 10**12, T0 + 10**12))
    (folder / "random-200k.bin").unlink()
    _write(folder / "new" / "ñew.txt", b"new file\n")
    os.utime(folder / "new" / "ñew.txt", ns=(T0 + 2 * 10**12, T0 + 2 * 10**12))
    expected2 = folder_tree(folder)
    before = datetime.now(timezone.utc)
    cli.sync(host=HOST_B)
    after = datetime.now(timezone.utc)

    reader = StoreReader(str(store), SHARE, KEY)
    check_layout(store, reader.share_id)
    chain = reader.roots()
    assert [r["version"] for _, r in chain] == [2, 1]
    (ref2, root2), (old_ref, old_root) = chain
    assert root2["prev"] == ref_hex(ref1) and old_ref == ref1 and old_root == root1
    check_root_fields(root2, HOST_B, before, after)
    assert root2["date"] > root1["date"]

    assert store_tree(reader, root2) == expected2
    tree2 = reader.tree(root2)
    assert tree2["one.bin"]["host"] == HOST_B and tree2["new/ñew.txt"]["host"] == HOST_B
    assert tree2["run.sh"]["host"] == HOST_A
    # Unchanged subtrees keep their listings, unchanged files their bptrs.
    assert tree2["small"]["bptr"] == tree["small"]["bptr"]
    assert tree2["big-5m.bin"]["bptr"] == tree["big-5m.bin"]["bptr"]
    # The first root still reads as the first folder.
    assert store_tree(reader, old_root) == expected1


def ref_hex(ref: Bptr) -> str:
    return (ref.hash + struct.pack(">IIII", ref.start, ref.end, ref.depth, 0)).hex()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FOGSYNC_SLOW"), reason="85 MiB through the CLI (10-20 s): set FOGSYNC_SLOW=1")
def test_big_file_needs_a_block_list_of_depth_2(tmp_path: Path):
    """1,365 full pieces make a block list of 1,365 * 48 + 64 > 65,536 bytes: depth 2.

    The file starts with random bytes (so the writer's probe skips gzip) and
    is sparse after that; its sealed form is 1,366 pieces (1,365 full + a tail).
    Depth 1 is covered by the main test above (the 64 KiB, 200 KiB and 5 MiB
    files); depth 2 also by tests/test_blocks.py with fake pieces.
    """
    folder, store = tmp_path / "folder", tmp_path / "store"
    folder.mkdir()
    size = 1365 * BLOCK + 1000
    head = os.urandom(BLOCK)
    with open(folder / "big.bin", "wb") as f:
        f.write(head)
        f.truncate(size - 16)
        f.seek(size - 16)
        f.write(b"end of big file!")
    cli = Cli(tmp_path, folder, store)
    cli.add()
    cli.sync()

    reader = StoreReader(str(store), SHARE, KEY)
    ((_, root),) = reader.roots()
    tree = reader.tree(root)
    e = tree["big.bin"]
    assert e["size"] == size
    assert reader.depth(e) == 2
    # The tag covers the whole 85 MiB sealed blob as the depth-2 list reassembles it;
    # decrypting samples (CTR seeks) keeps the test fast.
    sealed = reader.verify(e)
    assert len(sealed) == size + 64 and sealed[24:32] == bytes(8)  # not compressed
    assert reader.decrypt_at(sealed, 0, BLOCK) == head
    assert reader.decrypt_at(sealed, size - 16, 16) == b"end of big file!"
    assert reader.decrypt_at(sealed, 700 * BLOCK + 5, 1000) == bytes(1000)


# --- the reader itself: agrees with the vectors, and refuses what FORMAT.md refuses -------------

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "blobs.json"


def test_reader_agrees_with_the_blob_vectors(tmp_path):
    if not VECTORS.exists():
        pytest.skip("no tests/vectors/blobs.json")
    v = json.loads(VECTORS.read_text())
    key = bytes.fromhex(v["share_key"])
    kc, km = subkeys(key)
    assert (kc.hex(), km.hex()) == (v["cipher_key"], v["mac_key"])
    assert share_id(km, v["share_name"]) == v["share_id"]
    r = StoreReader(str(tmp_path), v["share_name"], key)
    assert r.share_id == v["share_id"]
    for b in v["blobs"]:
        plain = r.open_blob(bytes.fromhex(b["sealed"]), compression=b["compression"])
        assert hashlib.sha256(plain).hexdigest() == b["plaintext_sha256"], b["label"]


def seal(km: bytes, kc: bytes, plain: bytes, header: bytes = bytes(8), nonce: bytes = bytes(range(24))) -> bytes:
    body = twofish_ctr(kc, int.from_bytes(nonce[:16], "big")).xor(plain)
    msg = nonce + header + body
    return msg + hmac.new(km, msg, hashlib.sha256).digest()


@pytest.fixture
def bare(tmp_path) -> StoreReader:
    r = StoreReader(str(tmp_path), "s", KEY)
    os.makedirs(os.path.join(r.dir, "blocks"))
    return r


def put_block(r: StoreReader, data: bytes, name: bytes | None = None) -> bytes:
    h = name or hashlib.sha256(data).digest()
    d = Path(r.dir) / "blocks" / h.hex()[:2]
    d.mkdir(exist_ok=True)
    (d / h.hex()).write_bytes(data)
    return h


def test_reader_opens_its_own_blob(bare):
    assert bare.open_blob(seal(bare.km, bare.kc, b"hi")) == b"hi"


def test_reader_refuses_a_bad_tag(bare):
    blob = bytearray(seal(bare.km, bare.kc, b"hello"))
    blob[30] ^= 1  # a header byte, covered by the tag
    with pytest.raises(FormatViolation, match="tag"):
        bare.open_blob(bytes(blob))
    with pytest.raises(FormatViolation, match="short"):
        bare.open_blob(bytes(63))


@pytest.mark.parametrize("i,value,what", [(0, 1, "mode"), (1, 1, "cipher"), (2, 1, "mac"), (3, 2, "compression"),
                                          (4, 1, "reserved"), (7, 9, "reserved")])
def test_reader_refuses_unknown_header_values(bare, i, value, what):
    header = bytearray(8)
    header[i] = value
    with pytest.raises(FormatViolation, match=what):
        bare.open_blob(seal(bare.km, bare.kc, b"x", bytes(header)))


@pytest.mark.parametrize("start,end,reserved", [(0, 0, 0), (5, 4, 0), (0, 65537, 0), (0, 10, 1)])
def test_reader_refuses_bad_bptrs(start, end, reserved):
    with pytest.raises(FormatViolation):
        Bptr.parse(bytes(32) + struct.pack(">IIII", start, end, 0, reserved))


def test_reader_refuses_a_block_not_named_by_its_hash(bare):
    blob = seal(bare.km, bare.kc, b"content")
    good = put_block(bare, blob)
    assert bare.read(Bptr(good, 0, len(blob), 0)) == b"content"
    wrong = put_block(bare, blob, name=hashlib.sha256(b"other").digest())
    with pytest.raises(FormatViolation, match="SHA-256"):
        bare.read(Bptr(wrong, 0, len(blob), 0))


@pytest.mark.parametrize("names", [["..", "a"], ["a/b"], ["b", "a"], ["a", "a"], ["x\0y"]])
def test_reader_refuses_bad_or_unsorted_listings(bare, names):
    entries = [{"name": n, "type": "file", "mtime": 1, "host": "h", "size": 0,
                "exec": False} for n in names]
    blob = seal(bare.km, bare.kc, gzip.compress(json.dumps(entries).encode()), bytes([0, 0, 0, 1, 0, 0, 0, 0]))
    ref = Bptr(put_block(bare, blob), 0, len(blob), 0)
    with pytest.raises(FormatViolation):
        bare.listing(ref)


def test_reader_accepts_a_good_listing(bare):
    entries = [{"name": n, "type": "file", "mtime": 1, "host": "h", "size": 0, "exec": False, "new": 1}
               for n in ("B", "a", "\uff21", "\U0001f600")]
    blob = seal(bare.km, bare.kc, gzip.compress(json.dumps(entries).encode()), bytes([0, 0, 0, 1, 0, 0, 0, 0]))
    raw, got = bare.listing(Bptr(put_block(bare, blob), 0, len(blob), 0))
    assert [e["name"] for e in got] == ["B", "a", "\uff21", "\U0001f600"]
