"""A bad config end to end: the CLI refuses it in one line before touching anything (issue 22, case 5)."""

from __future__ import annotations

import os


def test_exclude_as_a_string_is_refused_in_one_line_and_deletes_nothing(cli_host, tmp_path):
    store = str(tmp_path / "store")
    a, b = cli_host("alpha", store), cli_host("beta", store)
    for name in ("notes.txt", "photo.jpg", "draft.tmp"):
        a.write(name, name)
    a.sync()
    b.sync()
    before = a.tree(), b.tree(), a.log()
    a.config.write_text('exclude = "*.tmp"\n' + a.config.read_text())  # a string, not a list

    p = a.run("sync", check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"fogsync: error: exclude in {a.config} must be a list of strings")
    b.sync()
    assert (a.tree(), b.tree(), b.log()) == before


def test_a_config_with_keys_readable_by_others_is_refused_with_the_fix(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    a.write("f", "x")
    os.chmod(a.config, 0o644)
    p = a.run("sync", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert f"chmod 600 {a.config}" in p.stderr and "11" * 32 not in p.stderr
    assert not (a.state_dir / "state.sqlite").exists()
    os.chmod(a.config, 0o600)
    a.sync()


def test_add_share_refuses_a_folder_nested_with_another_share(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"))
    before = a.config.read_text()
    for folder in (a.folder / "inner", a.folder, a.folder.parent):
        p = a.run("add-share", "other", "22" * 32, "--path", str(folder), "--store", str(tmp_path / "s2"), check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "may not nest" in p.stderr
    assert a.config.read_text() == before and not (a.folder / "inner").exists()
