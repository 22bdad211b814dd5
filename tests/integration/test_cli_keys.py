"""Keys from where people keep secrets (issue 24): --key-file, key_command, the OS keyring;
the config then holds no key, and no command ever prints the key."""

from __future__ import annotations

import json
import os
import subprocess

KEY = "3c" * 32
KEYRING_ENV = "keyrings.alt.file.PlaintextKeyring"


def run(h, *args, env: dict | None = None, check: bool = True):
    p = subprocess.run(h.command(*args), capture_output=True, text=True, env={**h.env(), **(env or {})},
                       timeout=120)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def key_file(tmp_path, mode: int = 0o600, text: str = KEY + "\n"):
    path = tmp_path / "share.key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def second_host_sees(cli_host, store: str, name: str, content: str) -> None:
    """A host with the key inline reads what the first one synced: the key was the right one."""
    b = cli_host("beta", store, key=KEY)
    b.sync()
    assert (b.folder / name).read_text() == content


def test_key_file_keeps_the_key_out_of_the_config(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    kf = key_file(tmp_path)
    p = run(a, "add-share", "docs", "--key-file", str(kf), "--path", str(a.folder), "--store", a.store)
    assert p.stderr == ""  # 0600: no warning
    config = a.config.read_text()
    assert KEY not in config and f'key_file = "{kf}"' in config
    (a.folder / "f.txt").write_text("from alpha")
    run(a, "sync")
    assert json.loads(run(a, "--json", "shares").stdout)["shares"][0]["key_source"] == "key_file"
    second_host_sees(cli_host, a.store, "f.txt", "from alpha")
    kf.write_text("not a key\n")
    p = run(a, "sync", check=False)
    assert p.returncode == 1 and p.stderr == (f"fogsync: error: share 'docs': the key file {kf} does not hold a key: "
                                              "64 hex characters (32 bytes) expected\n")


def test_a_key_file_others_can_read_gets_a_warning(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    kf = key_file(tmp_path, 0o644)
    p = run(a, "add-share", "docs", "--key-file", str(kf), "--path", str(a.folder), "--store", a.store)
    assert p.stderr == f"fogsync: warning: the key file {kf} can be read by other users: run 'chmod 600 {kf}'\n"


def test_add_share_needs_exactly_one_key(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    kf = key_file(tmp_path)
    for args in ((), (KEY, "--key-file", str(kf)), ("--key-file", str(kf), "--key-command", "true")):
        p = run(a, "add-share", "docs", *args, "--path", str(a.folder), check=False)
        assert p.returncode == 2 and p.stderr.startswith("fogsync: error: add-share needs exactly one of"), p.stderr
        assert KEY not in p.stderr
    assert not a.config.exists() or "docs" not in a.config.read_text()


def test_key_command_is_run_when_the_share_is_opened(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    kf = key_file(tmp_path)
    runs = tmp_path / "runs"
    command = f"echo run >> {runs}; cat {kf}"
    run(a, "add-share", "docs", "--key-command", command, "--path", str(a.folder), "--store", a.store)
    config = a.config.read_text()
    assert KEY not in config and "key_command" in config and "key =" not in config
    assert runs.read_text() == "run\n"  # tried once by add-share, so a typo shows at once
    (a.folder / "f.txt").write_text("from alpha")
    run(a, "sync")
    assert runs.read_text().count("run") == 2
    run(a, "shares")
    assert runs.read_text().count("run") == 2  # listing shares opens none
    second_host_sees(cli_host, a.store, "f.txt", "from alpha")


def test_a_failing_key_command_is_one_line_without_the_key(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    p = run(a, "add-share", "docs", "--key-command", "echo locked >&2; exit 7", "--path", str(a.folder),
            check=False)
    assert p.returncode == 1
    assert p.stderr == "fogsync: error: share 'docs': key_command exited 7: locked\n"
    assert not a.config.exists() or "docs" not in a.config.read_text()


def test_the_os_keyring_holds_the_key(cli_host, tmp_path):
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    env = {"PYTHON_KEYRING_BACKEND": KEYRING_ENV, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    run(a, "add-share", "docs", KEY, "--keyring", "--path", str(a.folder), "--store", a.store, env=env)
    config = a.config.read_text()
    assert KEY not in config and "keyring = true" in config
    stored = list((tmp_path / "xdg").rglob("*.cfg"))
    assert len(stored) == 1 and "fogsync" in stored[0].read_text()
    (a.folder / "f.txt").write_text("from alpha")
    run(a, "sync", env=env)
    second_host_sees(cli_host, a.store, "f.txt", "from alpha")
    stored[0].unlink()
    p = run(a, "sync", env=env, check=False)
    assert p.returncode == 1 and p.stderr == ("fogsync: error: share 'docs': the OS keyring has no key under "
                                              "service 'fogsync', name 'docs'\n")


def test_no_command_prints_the_key(cli_host, tmp_path):
    """Every command, as text and as JSON, on success and on failure: the key's hex never shows."""
    a = cli_host("alpha", str(tmp_path / "store"), add=False)
    kf = key_file(tmp_path)
    outputs = [run(a, "add-share", "docs", "--key-command", f"cat {kf}", "--path", str(a.folder),
                   "--store", a.store)]
    (a.folder / "f.txt").write_text("hello")
    (a.folder / "g (conflict from x 2026-01-02 0304).txt").write_text("copy")
    outputs.append(run(a, "sync"))
    first = json.loads(run(a, "--json", "log", "docs").stdout)["roots"][0]["id"]
    commands = [("sync",), ("shares",), ("status",), ("log", "docs"), ("ls", "docs"), ("cat", "docs", "f.txt"),
                ("check", "docs"), ("conflicts",), ("restore", "docs", "--to", str(tmp_path / "r")),
                ("restore", "docs", "--in-place", "--root", first), ("wait", "--timeout", "0"),
                ("ls", "docs", "--root", "ff" * 20), ("cat", "docs", "nope")]
    for args in commands:
        for json_flag in ((), ("--json",), ("--debug",)):
            if args[0] == "restore" and json_flag:
                continue
            outputs.append(run(a, *json_flag, *args, check=False))
    kf.write_text(KEY[:-2] + "\n")  # a key one byte short: refused, and not echoed
    outputs.append(run(a, "sync", check=False))
    assert outputs[-1].returncode == 1
    outputs.append(run(a, "--debug", "sync", check=False))
    for p in outputs:
        assert KEY not in p.stdout + p.stderr and KEY[:-2] not in p.stdout + p.stderr, p.args
