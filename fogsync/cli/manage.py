"""Commands that manage shares and the tool: keygen, add-share, shares, remove-share, completion."""

from __future__ import annotations

import os
import secrets
import sys

from fogsync.cli.common import UsageError, config
from fogsync.cli.render import print_json
from fogsync.config import file as configmod
from fogsync.config import keys as keysmod
from fogsync.errors import ConfigError, LocalError
from fogsync.folder.marker import write_marker
from fogsync.format.crypto import parse_key


def cmd_keygen(args) -> int:
    key = secrets.token_bytes(32).hex()
    if args.json:
        print_json({"key": key})
    else:
        print(key)
    return 0


def cmd_add_share(args) -> int:
    key, source = _key_and_source(args)
    configmod.check_name(args.name)
    path = configmod.config_path(args.config)
    cfg = configmod.load(path, args.host)
    if args.name in cfg.shares:
        raise ConfigError(f"share {args.name!r} already exists in {path}")  # before the keyring is written
    folder = os.path.abspath(os.path.expanduser(args.path))
    configmod.check_folder_apart(cfg, folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise LocalError(f"cannot create share folder {folder}: {e.strerror or e}") from None
    write_marker(folder, args.name)  # a pass refuses the folder without it: an unmounted disk lacks it
    if args.keyring:
        keysmod.store_in_keyring(args.name, key)
    configmod.add_share(path, args.name, key, folder, args.store, source)
    store = args.store or cfg.default_store or cfg.local_store
    if args.json:
        print_json({"name": args.name, "path": folder, "store": store, "key_source": _kind(source)})
    else:
        print(f"added share {args.name!r}: {folder} <-> {store}")
    return 0


def _key_and_source(args) -> tuple[bytes | None, tuple[str, str | bool] | None]:
    """The key given (None when only a command gives it) and what the config records instead of it."""
    given = [o for o, v in (("KEY", args.key), ("--key-file", args.key_file), ("--key-command", args.key_command))
             if v is not None]
    if len(given) != 1:
        raise UsageError("add-share needs exactly one of KEY, --key-file FILE, --key-command CMD"
                         + (f" (given: {', '.join(given)})" if given else ""))
    if args.key_command is not None:
        if args.keyring:
            raise UsageError("--keyring stores a key given as KEY or --key-file, not --key-command")
        keysmod.from_command(args.key_command, f"share {args.name!r}")  # it must work now, not at the first sync
        return None, ("key_command", args.key_command)
    if args.key_file is not None:
        key_file = os.path.abspath(os.path.expanduser(args.key_file))
        key = keysmod.from_file(key_file, f"share {args.name!r}")
        if keysmod.loose_permissions(key_file):
            print(f"fogsync: warning: the key file {key_file} can be read by other users: "
                  f"run 'chmod 600 {key_file}'", file=sys.stderr)
        return key, ("keyring", True) if args.keyring else ("key_file", key_file)
    key = parse_key(sys.stdin.readline() if args.key == "-" else args.key)
    return key, ("keyring", True) if args.keyring else None


def _kind(source) -> str:
    return source[0] if source else "config"


def cmd_shares(args) -> int:
    cfg = config(args)
    if args.json:
        print_json({"shares": [{"name": sc.name, "path": sc.path, "store": sc.store,
                                "key_source": _kind(sc.key_source)} for sc in cfg.shares.values()]})
        return 0
    for sc in cfg.shares.values():
        print(f"{sc.name}\t{sc.path}\t{sc.store}")
    return 0


def cmd_remove_share(args) -> int:
    from fogsync.config.shares import open_state

    path = configmod.config_path(args.config)
    cfg = configmod.load(path, args.host)
    cfg.share(args.name)
    configmod.remove_share(path, args.name)
    state = open_state(cfg)
    state.forget(args.name)
    state.close()
    if args.json:
        print_json({"name": args.name, "removed": True})
    else:
        print(f"removed share {args.name!r} (its folder and store are untouched)")
    return 0


def cmd_completion(args) -> int:
    """The shell's completion script, generated from the parser by shtab."""
    import shtab

    from fogsync.cli.main import build_parser

    parser = build_parser()
    _complete_paths(parser, {"config": shtab.FILE, "key_file": shtab.FILE, "path": shtab.DIRECTORY,
                             "to": shtab.DIRECTORY})
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return 0


def _complete_paths(parser, kinds: dict) -> None:
    """Mark the options that take a file or a directory, in every subcommand (shtab reads ``complete``)."""
    for action in parser._actions:  # argparse has no public walk over its actions
        if action.dest in kinds and action.option_strings:
            action.complete = kinds[action.dest]
        for sub in (getattr(action, "choices", None) or {}).values() if hasattr(action, "add_parser") else ():
            _complete_paths(sub, kinds)
