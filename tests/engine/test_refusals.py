"""fogsync.engine.refusals: the passes that refuse, in-process hosts on real files and a real state database."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from fogsync.engine.check import check_share
from fogsync.engine.refusals import FolderRefusal
from fogsync.errors import Refusal
from fogsync.folder.ignore import Ignore
from fogsync.folder.marker import MARKER
from fogsync.store import open_store


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://refusals-{uuid.uuid4().hex}"
    return str(tmp_path / "store")


def head_files(h) -> dict[str, str]:
    repo = h.share().repo
    tree = repo.load_tree(repo.read_root(repo.read_head().root).root)
    return {p: e.sha256 for p, e in tree.items() if e.type == "file"}


def head_bytes(h) -> bytes:
    return open_store(h.store).get(h.share().repo.head_key)


def block_keys(h) -> set[str]:
    return set(open_store(h.store).list(f"{h.share().repo.share_id}/blocks/"))


def forget_markers(h) -> None:
    """The state as a FogSync from before markers left it: no marker, nothing seen."""
    h.share()
    with sqlite3.connect(h.state_dir / "state.sqlite") as db:
        db.execute("UPDATE share SET folder_marked=NULL, seen_root=NULL, seen_version=NULL")
    db.close()
    h.path(MARKER).unlink()


# --- 1. a store that goes back in time ----------------------------------------------------------


def three_then_two_more(h) -> tuple[bytes, set[str]]:
    """Three commits, a copy of the head (and of the blocks), two more commits (f4, f5)."""
    for i in (1, 2, 3):
        h.write(f"f{i}", f"{i}\n")
        h.sync_here()
    old_head, old_blocks = head_bytes(h), block_keys(h)
    for i in (4, 5):
        h.write(f"f{i}", f"{i}\n")
        h.sync_here()
    return old_head, old_blocks


def roll_back(h, old_head: bytes, old_blocks: set[str] | None = None) -> None:
    """The store as restored from the copy: the old head, and (with ``old_blocks``) only the old blocks."""
    store = open_store(h.store)
    store.put(h.share().repo.head_key, old_head)
    for key in block_keys(h) - (old_blocks or block_keys(h)):
        store.delete(key)


def test_a_rolled_back_store_is_refused_touching_nothing(hosts, store):
    a = hosts("laptop", store)
    old_head, _ = three_then_two_more(a)
    roll_back(a, old_head)
    with pytest.raises(Refusal) as e:
        a.sync_here()
    msg = str(e.value)
    assert "'docs'" in msg and "v3" in msg and "v5" in msg and "fogsync sync docs --accept-rollback" in msg
    assert "\n" not in msg
    assert a.read("f4") == b"4\n" and a.read("f5") == b"5\n"
    assert head_bytes(a) == old_head  # nothing committed


def test_accepting_a_rollback_keeps_the_folder_and_uploads_again_what_the_store_lost(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    old_head, old_blocks = three_then_two_more(a)
    a.write("f1", "1 changed since\n")  # a local change not synced yet: kept too
    roll_back(a, old_head, old_blocks)  # the blocks of f4 and f5 are gone as well
    a.share().accept_rollback = True
    r = a.sync_here()
    assert r.removed == 0 and r.written == 0 and r.conflicts == []
    assert a.read("f4") == b"4\n" and a.read("f5") == b"5\n" and a.read("f1") == b"1 changed since\n"
    assert set(head_files(a)) == {"f1", "f2", "f3", "f4", "f5"} and r.committed.version == 4
    assert check_share(a.share().repo).problems == []
    b.sync_here()
    assert b.read("f4") == b"4\n" and b.read("f5") == b"5\n" and b.read("f1") == b"1 changed since\n"
    a.share().accept_rollback = False
    a.sync_here()  # the new head descends from what the accepting pass committed


def test_accepting_when_the_store_was_not_rolled_back_changes_nothing(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    a.write("f", "1")
    a.sync_here()
    b.sync_here()
    b.remove("f")
    b.sync_here()  # another host's deletion: a normal descendant
    a.share().accept_rollback = True
    r = a.sync_here()
    assert r.removed == 1 and not a.path("f").exists()


def test_a_state_from_before_takes_its_base_as_the_root_last_seen(hosts, store):
    a = hosts("laptop", store)
    old_head, _ = three_then_two_more(a)
    forget_markers(a)
    roll_back(a, old_head)
    with pytest.raises(Refusal, match="v5"):
        a.sync_here()
    assert a.read("f5") == b"5\n"


def test_a_forked_store_of_the_same_version_is_refused(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    a.write("f", "1")
    a.sync_here()
    b.sync_here()
    fork = head_bytes(a)
    b.write("g", "b")
    b.sync_here()  # v2 by desktop
    a.sync_here()
    roll_back(a, fork)
    a.write("h", "a")
    a.share().accept_rollback = True
    a.sync_here()  # another v2, on the fork, which desktop never saw
    with pytest.raises(Refusal, match="v2"):
        b.sync_here()


# --- 3. the folder marker ------------------------------------------------------------------------


def test_the_first_pass_leaves_a_marker_that_is_never_synced_nor_a_change(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    a.write("f", "1")
    a.sync_here()
    assert a.path(MARKER).is_file() and Ignore().ignored(MARKER)
    assert set(head_files(a)) == {"f"}
    r = a.sync_here()
    assert r.committed is None
    b.sync_here()
    assert b.path(MARKER).is_file() and "'docs'" in b.path(MARKER).read_text()


def test_an_unmounted_folder_is_refused_and_the_other_host_keeps_its_files(hosts, store):
    a, b = hosts("laptop", store), hosts("desktop", store)
    for i in range(3):
        a.write(f"f{i}", str(i))
    a.sync_here()
    b.sync_here()
    before = head_bytes(a)
    for name in ["f0", "f1", "f2", MARKER]:  # the mount point of a disk that is not mounted: an empty dir
        a.remove(name)
    with pytest.raises(FolderRefusal) as e:
        a.sync_here()
    assert MARKER in str(e.value) and "unmounted" in str(e.value) and "\n" not in str(e.value)
    assert head_bytes(a) == before and list(a.folder.iterdir()) == []
    b.sync_here()
    assert sorted(p.name for p in b.folder.iterdir() if p.name != MARKER) == ["f0", "f1", "f2"]


def test_a_missing_marker_is_refused_even_while_files_are_there(hosts, store):
    a = hosts("laptop", store)
    a.write("f", "1")
    a.sync_here()
    a.remove(MARKER)
    with pytest.raises(FolderRefusal, match="lacks the marker"):
        a.sync_here()
    a.write(MARKER, "")  # what the message says to do
    a.sync_here()


def test_a_share_synced_before_markers_gets_one_if_its_folder_holds_its_files(hosts, store):
    a = hosts("laptop", store)
    for i in range(4):
        a.write(f"f{i}", str(i))
    a.sync_here()
    forget_markers(a)
    a.remove("f0")  # three of four still there: more than half
    r = a.sync_here()
    assert a.path(MARKER).is_file() and r.committed is not None and set(head_files(a)) == {"f1", "f2", "f3"}


def test_a_share_synced_before_markers_whose_folder_lost_its_files_is_refused(hosts, store):
    a = hosts("laptop", store)
    for i in range(4):
        a.write(f"f{i}", str(i))
    a.sync_here()
    forget_markers(a)
    for i in range(2):  # two of four left: not more than half
        a.remove(f"f{i}")
    with pytest.raises(FolderRefusal):
        a.sync_here()
    assert not a.path(MARKER).exists() and set(head_files(a)) == {"f0", "f1", "f2", "f3"}


def test_a_folder_that_is_not_there_is_refused(hosts, store):
    a = hosts("laptop", store)
    a.write("f", "1")
    a.sync_here()
    a.remove("")
    with pytest.raises(FolderRefusal, match="not there"):
        a.sync_here()


# --- 4. a mass deletion --------------------------------------------------------------------------


def with_files(h, n: int) -> None:
    for i in range(n):
        h.write(f"d/f{i:02}", str(i))
    h.sync_here()


@pytest.mark.parametrize("files, deleted, refused", [
    (22, 12, True),  # more than half of more than 20
    (22, 11, False),  # exactly half
    (21, 11, True),
    (20, 20, False),  # a share of 20 files is not more than 20
])
def test_a_mass_deletion_waits_for_consent(hosts, store, files, deleted, refused):
    a = hosts("laptop", store)
    with_files(a, files)
    for i in range(deleted):
        a.remove(f"d/f{i:02}")
    before = head_bytes(a)
    if not refused:
        assert a.sync_here().committed is not None
        return
    with pytest.raises(Refusal) as e:
        a.sync_here()
    assert f"delete {deleted} of the share's {files} files" in str(e.value)
    assert "fogsync sync docs --allow-mass-delete" in str(e.value)
    assert head_bytes(a) == before
    a.share().allow_mass_delete = True
    assert a.sync_here().committed is not None and len(head_files(a)) == files - deleted


def test_a_deleted_directory_counts_its_files(hosts, store):
    a = hosts("laptop", store)
    with_files(a, 30)
    a.remove("d")
    with pytest.raises(Refusal, match="delete 30 of the share's 30 files"):
        a.sync_here()


def mass_deleted_by_another_host(hosts, store):
    """(a, b): b deleted all 30 of a's files (consenting) and committed it; a has not pulled it yet."""
    a, b = hosts("laptop", store), hosts("desktop", store)
    with_files(a, 30)
    b.sync_here()
    b.remove("d")
    b.share().allow_mass_delete = True
    b.sync_here()
    return a, b


def test_a_mass_deletion_pulled_from_another_host_is_not_refused(hosts, store):
    a, _ = mass_deleted_by_another_host(hosts, store)
    r = a.sync_here()
    assert r.removed == 31 and not a.path("d").exists()  # 30 files and their directory


def test_files_both_hosts_deleted_are_not_this_hosts_deletion(hosts, store):
    a, _ = mass_deleted_by_another_host(hosts, store)
    a.remove("d")  # the same deletion here, before pulling it
    a.sync_here()
    assert head_files(a) == {}
