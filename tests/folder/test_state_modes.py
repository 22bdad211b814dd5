"""The state dir is 0700 and its database files 0600, whatever the umask; looser ones are tightened (issue 22, case 10)."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

from fogsync.folder.state import State
from fogsync.platform.private import private_dir, private_file
from fogsync.repo.repository import spool_dir_for


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_state_dir_and_database_are_private_even_with_umask_0(tmp_path):
    state_dir = tmp_path / "deep" / "state"
    with umask(0):
        db = State(str(state_dir / "state.sqlite"))
        db.forget("nothing")  # a write: SQLite has made its -wal and -shm files
        names = sorted(os.listdir(state_dir))
        modes = {name: mode(state_dir / name) for name in names}
        db.close()
    assert mode(state_dir) == 0o700
    assert {"state.sqlite", "state.sqlite-wal", "state.sqlite-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_loose_state_dir_and_database_are_tightened(tmp_path):
    state_dir = tmp_path / "state"
    State(str(state_dir / "state.sqlite")).close()
    os.chmod(state_dir, 0o755)
    for name in os.listdir(state_dir):
        os.chmod(state_dir / name, 0o644)
    db = State(str(state_dir / "state.sqlite"))
    db.close()
    assert mode(state_dir) == 0o700
    assert {mode(state_dir / name) for name in os.listdir(state_dir)} == {0o600}


def test_the_spool_dir_makes_its_state_dir_private(tmp_path):
    with umask(0o022):
        spool = spool_dir_for(str(tmp_path / "state"))
    assert mode(tmp_path / "state") == 0o700 and mode(spool) == 0o700


def test_private_helpers_keep_a_tighter_mode_and_the_owner_bits(tmp_path):
    d = private_dir(str(tmp_path / "d"))
    os.chmod(d, 0o500)
    private_dir(d)
    assert mode(d) == 0o500
    f = tmp_path / "f"
    f.write_text("x")
    os.chmod(f, 0o664)
    private_file(str(f), create=False)
    assert mode(f) == 0o600
    private_file(str(tmp_path / "absent"), create=False)
    assert not (tmp_path / "absent").exists()
