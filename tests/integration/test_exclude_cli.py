"""An exclude rule added after a file synced, through the installed CLI (issue 22, case 6).

Host A adds ``exclude = ["*.log"]`` to its config after ``build.log``
synced: A leaves the file alone, B keeps its copy and its own changes to it.
"""

from __future__ import annotations


def test_excluding_a_synced_file_on_one_host_keeps_it_on_the_other(cli_host, share_store):
    a, b = cli_host("A", share_store), cli_host("B", share_store)
    a.write("build.log", "log 1\n")
    a.write("notes.txt", "notes 1\n")
    for _ in range(2):
        a.sync()
        b.sync()
    assert b.read("build.log") == b"log 1\n"
    a.config.write_text('exclude = ["*.log"]\n' + a.config.read_text())
    assert "removed 0" in a.sync() and "committed" not in a.sync()
    b.sync()
    assert b.read("build.log") == b"log 1\n"
    b.write("build.log", "log 2 from B\n")
    b.sync()
    a.write("notes.txt", "notes 2 from A\n")
    a.sync()
    assert a.read("build.log") == b"log 1\n"  # B's change is not written into A's folder
    b.sync()
    assert b.read("build.log") == b"log 2 from B\n" and b.read("notes.txt") == b"notes 2 from A\n"
    assert "no problem" in b.run("check", "docs").stdout
