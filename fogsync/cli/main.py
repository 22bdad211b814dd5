"""The command line (pinned in CLI.md): parse, dispatch, and turn errors
into one line ``fogsync: error: ...`` (with ``--json`` an ``error``
message) and an exit status: 0 done, 1 failed, 2 bad usage, 3 a pass
could not read some files, 130 interrupted.

The commands live in ``manage`` (shares and the tool), ``reading`` (log,
ls, cat, check, conflicts) and ``running`` (sync, restore, daemon, status,
wait); nothing imports this module but ``manage`` (completion).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from fogsync import __version__
from fogsync.cli import history as history_cli
from fogsync.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    one_line,
    print_error,
)
from fogsync.cli.manage import (
    cmd_add_share,
    cmd_completion,
    cmd_keygen,
    cmd_remove_share,
    cmd_shares,
)
from fogsync.cli.progress import add_quiet
from fogsync.cli.reading import cmd_cat, cmd_check, cmd_conflicts, cmd_log, cmd_ls
from fogsync.cli.running import cmd_daemon, cmd_restore, cmd_status, cmd_sync, cmd_wait
from fogsync.errors import FogsyncError
from fogsync.platform import malloc

log = logging.getLogger("fogsync")

# Modules a command may need that a broken or partial install can lack: their pip names.
PIP_NAMES = {"boto3": "boto3", "botocore": "boto3", "keyring": "keyring", "shtab": "shtab",
             "watchdog": "watchdog", "platformdirs": "platformdirs", "tomlkit": "tomlkit", "twofish": "twofish",
             "isal": "isal", "tqdm": "tqdm"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    malloc.tune()
    _fewer_gc_passes()
    _setup_logging(args)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print_error(args, "interrupted")
        return EXIT_INTERRUPTED
    except UsageError as e:
        print_error(args, str(e))
        return EXIT_USAGE
    except FogsyncError as e:
        if args.debug:
            raise
        print_error(args, one_line(str(e)))
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_FAILED
    except ModuleNotFoundError as e:
        if args.debug or e.name is None or e.name.split(".")[0] not in PIP_NAMES:
            raise
        pip = PIP_NAMES[e.name.split(".")[0]]
        print_error(args, f"the Python package {pip!r} is not installed: run 'pip install {pip}' "
                          "in the environment fogsync runs in (or reinstall fogsync)")
        return EXIT_FAILED
    except Exception as e:  # a bug: still one line, the traceback with --debug
        if args.debug:
            raise
        print_error(args, f"internal error: {type(e).__name__}: {one_line(str(e))} (run with --debug)")
        return EXIT_FAILED


def _fewer_gc_passes() -> None:
    """Collect cycles less often: a pass holds 100,000s of acyclic objects (a tree of entries).

    What is alive now (modules, the parser) lives as long as the process, so
    it is frozen out of every later collection, and the youngest generation
    is collected every 10,000 allocations instead of 700, so a pass over a
    big tree spends less time in collections that find nothing.
    """
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def _setup_logging(args) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="fogsync: %(message)s", stream=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, as shell completion (``fogsync completion``) sees it."""
    return _parser()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fogsync", description="Encrypted folder sync.")
    p.add_argument("--config", help="config file (default: $FOGSYNC_CONFIG, else the user config dir)")
    p.add_argument("--host", help="this host's name (default: $FOGSYNC_HOST, config 'host', machine name)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--json", action="store_true", help="print JSON instead of text (docs/json.md)")
    p.add_argument("--version", action="version", version=f"fogsync {__version__}")
    add_quiet(p, per_command=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    cmd("keygen", cmd_keygen, "print a new random key (64 hex characters)")
    sp = cmd("add-share", cmd_add_share, "record a share in the config")
    sp.add_argument("name")
    sp.add_argument("key", nargs="?", help="64 hex characters, or - to read it from standard input")
    sp.add_argument("--path", required=True, help="the share's folder (created if missing)")
    sp.add_argument("--store", help="s3://bucket/prefix, file:///abs/path or a path")
    sp.add_argument("--key-file", metavar="FILE", help="read the key from FILE whenever the share is opened "
                                                        "(the config records the file, not the key)")
    sp.add_argument("--key-command", metavar="CMD", help="run CMD for the key whenever the share is opened "
                                                         "(its first line of output; the config records CMD)")
    sp.add_argument("--keyring", action="store_true", help="keep the key (KEY or --key-file) in the OS keyring "
                                                           "under service 'fogsync' and the share's name")
    cmd("shares", cmd_shares, "list shares: name, path, store")
    sp = cmd("remove-share", cmd_remove_share, "forget a share here (its folder and store are untouched)")
    sp.add_argument("name")
    sp = cmd("sync", cmd_sync, "one full pass: push local changes, pull remote ones, merge")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("-v", "--verbose", action="store_true")
    add_quiet(sp)
    sp.add_argument("--accept-rollback", action="store_true",
                    help="the store went back in time: take its head, keep every file here, commit them on top")
    sp.add_argument("--allow-mass-delete", action="store_true",
                    help="commit local deletions of more than half of the files of a share")
    sp = cmd("daemon", cmd_daemon, "watch every share and sync continuously")
    sp.add_argument("--poll", type=float, help="seconds between polls of the store (default: config, else 10)")
    sp.add_argument("-v", "--verbose", action="store_true")
    sp = cmd("status", cmd_status, "per share: newest root, what waits to sync, whether a daemon runs")
    sp.add_argument("name", nargs="?")
    sp = cmd("wait", cmd_wait, "return once the running daemon has every named share in step with its store")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--timeout", type=float, metavar="SECONDS", help="give up (exit 1) after this long")
    sp = cmd("log", cmd_log, "one line per root, newest first: ID VERSION DATE HOST")
    sp.add_argument("name")
    sp = cmd("ls", cmd_ls, "list a directory of the share")
    sp.add_argument("name")
    sp.add_argument("path", nargs="?", default="")
    sp.add_argument("--root", help="root id (or unique prefix)")
    sp = cmd("cat", cmd_cat, "write a file's content to standard output")
    sp.add_argument("name")
    sp.add_argument("path")
    sp.add_argument("--root", help="root id (or unique prefix)")
    sp = cmd("restore", cmd_restore, "restore the share as of a root")
    sp.add_argument("name")
    sp.add_argument("path", nargs="?", default="")
    dest = sp.add_mutually_exclusive_group(required=True)
    dest.add_argument("--to", metavar="DIR", help="an empty or absent directory")
    dest.add_argument("--in-place", action="store_true", help="make the share equal that root, as a new commit")
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--root", help="root id (or unique prefix)")
    when.add_argument("--at", metavar="DATETIME", help="the newest root at or before this time (ISO 8601)")
    add_quiet(sp)
    sp = cmd("check", cmd_check, "verify every root, listing, block and tag")
    sp.add_argument("name")
    add_quiet(sp)
    sp = cmd("conflicts", cmd_conflicts, "list the conflict copies in a share's folder, each with its original")
    sp.add_argument("name", nargs="?")
    sp = cmd("completion", cmd_completion, "print a shell completion script (see the README)")
    sp.add_argument("shell", choices=["bash", "zsh", "fish"])
    history_cli.add_commands(cmd)
    return p


if __name__ == "__main__":
    sys.exit(main())
