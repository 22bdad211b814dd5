"""What is never synced: our own temp files, editors' scratch files, and
the share's exclude patterns (``.fogsyncignore`` in gitignore syntax at the
share's top, plus ``exclude`` in the config).

Supported gitignore syntax: ``#`` comments, blank lines, ``!`` to re-include,
a trailing ``/`` for directories only, a leading or inner ``/`` to anchor the
pattern at the top, ``*``, ``?``, ``[...]`` and ``**``. The last matching
pattern wins, as in git.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

IGNORE_FILE = ".fogsyncignore"
TEMP_PREFIX = ".fogsync-"
# A file being written by a pull: ``.fogsync-tmp-<pid>-<8 hex>-<serial>`` (``prepare``).
TEMP_FILE_PREFIX = f"{TEMP_PREFIX}tmp-"
_TEMP_FILE = re.compile(re.escape(TEMP_FILE_PREFIX) + r"[0-9]+-[0-9a-f]{8}-[0-9]+")

# Scratch files of editors and downloaders: never a user's finished work.
BUILTIN = (
    f"{TEMP_PREFIX}*",
    "*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#",
    "*.part", "*.crdownload", "*.partial", ".~lock.*#",
)


def temp_file(name: str) -> bool:
    """Whether ``name`` is exactly what a pull names the file it writes before renaming it into place."""
    return _TEMP_FILE.fullmatch(name) is not None


def _translate(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j].replace("\\", "\\\\")
                out.append("[" + ("^/" + body[1:] if body.startswith("!") else body) + "]")  # never "/", as in git
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class _Rule:
    __slots__ = ("regex", "negate", "dir_only", "name_pattern", "glob")

    def __init__(self, line: str) -> None:
        self.negate = line.startswith("!")
        if self.negate:
            line = line[1:]
        self.dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        prefix = "" if anchored else "(?:.*/)?"
        self.glob = line
        body = _translate(line)
        self.regex = re.compile(prefix + body + "$")
        # An unanchored pattern without "**" only ever looks at the last component.
        self.name_pattern = body if not anchored and "**" not in line else None

    def matches(self, path: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and self.regex.match(path) is not None


class Ignore:
    """Decides, by relative POSIX path, whether something is left out of sync.

    As in git, a path inside an ignored directory is ignored, whatever a
    later ``!`` pattern says about the path itself.
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self._rules = [_Rule(p) for p in list(BUILTIN) + _clean(patterns)]
        # Without "!" rules the last-match-wins walk is just "does any rule match":
        # per kind, one regex over the name (most patterns, and 5x faster than
        # over the whole path) and one over the path answer that.
        self._any = None
        if not any(r.negate for r in self._rules):
            self._any = tuple(_split(r for r in self._rules if not r.dir_only or for_dirs) for for_dirs in (False, True))

    @classmethod
    def for_folder(cls, folder: str, extra: Iterable[str] = ()) -> "Ignore":
        patterns = list(extra)
        try:
            with open(os.path.join(folder, IGNORE_FILE), encoding="utf-8") as f:
                patterns += f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            pass
        return cls(patterns)

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` is left out, counting its parent directories."""
        i = path.find("/")
        while i > 0:
            if self.ignored_here(path[:i], True):
                return True
            i = path.find("/", i + 1)
        return self.ignored_here(path, is_dir)

    def ignored_here(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` is left out, its parents being known not to be."""
        return self.ignored_name(path[path.rfind("/") + 1 :], path, is_dir)

    def ignored_name(self, name: str, path: str, is_dir: bool) -> bool:
        """``ignored_here`` for a scan, which has the last component ``name`` of ``path`` at hand."""
        if self._any is not None:
            by_name, affixes, by_path = self._any[is_dir]
            if by_name is not None and (affixes is None or name.startswith(affixes[0]) or name.endswith(affixes[1])):
                if by_name.fullmatch(name) is not None:
                    return True
            return by_path is not None and by_path.match(path) is not None
        verdict = False
        for rule in self._rules:
            if rule.negate == verdict and rule.matches(path, is_dir):
                verdict = not rule.negate
        return verdict


def _split(rules: Iterable[_Rule]) -> tuple[re.Pattern | None, tuple | None, re.Pattern | None]:
    """One regex for the rules that look at the name only, one for the others (None: no such rule).

    Between them, the prefixes and suffixes a name must have for the name
    regex to have a chance (``_affixes``): two string tests, five times
    cheaper than the regex, settle most names.
    """
    rules = list(rules)
    names = [r for r in rules if r.name_pattern is not None]
    paths = [r.regex.pattern for r in rules if r.name_pattern is None]
    by_name = re.compile("|".join(f"(?:{r.name_pattern})" for r in names)) if names else None
    by_path = re.compile("|".join(f"(?:{p})" for p in paths)) if paths else None
    return by_name, _affixes(r.glob for r in names), by_path


def _affixes(globs: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(prefixes, suffixes) such that a name matching any glob starts with one or ends with the other.

    None when some glob has no literal start or end (``*``, ``?x``): then
    every name goes to the regex.
    """
    prefixes, suffixes = [], []
    for glob in globs:
        start = _literal_run(glob)
        end = _literal_run(glob[::-1])[::-1]
        if start:
            prefixes.append(start)
        elif end:
            suffixes.append(end)
        else:
            return None
    return tuple(prefixes), tuple(suffixes)


def _literal_run(glob: str) -> str:
    """The start of ``glob`` up to its first special character."""
    for i, c in enumerate(glob):
        if c in "*?[]\\":
            return glob[:i]
    return glob


def _clean(lines: Iterable[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.rstrip("\n").rstrip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
