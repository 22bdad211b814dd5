"""A conflict on a 255-byte file name, end to end: both hosts' syncs succeed and keep both versions (issue 22, case 9)."""

from __future__ import annotations

LONG = "€" * 85  # 255 bytes of UTF-8: the longest name a file system holds


def test_a_conflict_on_a_255_byte_name_keeps_both_versions(cli_host, tmp_path):
    store = str(tmp_path / "store")
    a, b = cli_host("alpha", store), cli_host("beta", store)
    a.write(LONG, "first\n")
    a.write("other-a.txt", "a\n")
    a.sync()
    b.sync()
    a.write(LONG, "edited on alpha\n")
    b.write(LONG, "edited on beta\n")
    b.write("other-b.txt", "b\n")
    a.sync()
    assert b.run("sync").returncode == 0
    assert a.run("sync").returncode == 0
    for host in (a, b):
        names = sorted(p.name for p in host.folder.iterdir())
        copies = [n for n in names if n.startswith("€") and "conflict from beta" in n]
        assert len(copies) == 1 and len(copies[0].encode()) <= 255
        assert host.read(LONG) == b"edited on alpha\n"
        assert host.read(copies[0]) == b"edited on beta\n"
        assert host.read("other-b.txt") == b"b\n" and host.read("other-a.txt") == b"a\n"
