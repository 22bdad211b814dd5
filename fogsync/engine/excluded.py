"""Excluded: an exclude rule means "this host leaves these paths alone", as in Syncthing and rclone.

A path the share's exclude rules (config ``exclude``, ``.fogsyncignore``)
leave out is not scanned. Left at that, a path excluded after it synced
would look deleted, and every other host would delete its copy. So a pass
keeps, for every excluded path of the base, the base's entry in the local
tree: the excluding host changes nothing there, its commits hold the entry
as the last root it merged had it, and another host's change to the path
is taken into its trees by the merge without being written into (or
removed from) its folder. Below an excluded directory the folder does
not show, a pass loads no rows unless the head moved there
(``vouch.load_moved``, ``remote``): they stay as they are.
"""

from __future__ import annotations

from typing import Mapping

from fogsync.folder.ignore import Ignore
from fogsync.folder.scan import Scanned
from fogsync.format.tree import DIR, Entry, parent_of


def keep_excluded(tree: dict[str, Entry], to_read: list[str], base: Mapping[str, Entry], ignore: Ignore) -> None:
    """Give each excluded base path the scan did not see its base entry in ``tree`` (compare's local tree).

    A directory that holds such a path stays too, even if the person removed it.
    """
    reading = set(to_read)
    for path, entry in base.items():
        if path in tree or path in reading or not ignore.ignored(path, entry.type == DIR):
            continue
        tree[path] = entry
        parent = parent_of(path)
        while parent and parent not in tree and parent in base:
            tree[parent] = base[parent]
            parent = parent_of(parent)


def outside_excluded(
    target: Mapping[str, Entry], last_seen: Mapping[str, Scanned], ignore: Ignore,
) -> Mapping[str, Entry]:
    """``target`` without its excluded paths: what a pull may write; ``target`` itself when it holds none.

    A scanned path is never excluded, so only paths the scan did not see are tested.
    """
    excluded = {p for p, e in target.items() if p not in last_seen and ignore.ignored(p, e.type == DIR)}
    if not excluded:
        return target
    return {p: e for p, e in target.items() if p not in excluded}
