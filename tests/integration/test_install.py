"""``pip install .`` alone, in a fresh venv, gives a client that syncs to S3 (issue 24), and a
dependency still missing (keyring, an extra) is one line saying how to install it."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEY = "7e" * 32


def test_a_plain_install_syncs_to_s3(tmp_path, s3_url):
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the work tree
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    fogsync = env_dir / "bin" / "fogsync"
    folder, config = tmp_path / "folder", tmp_path / "config.toml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FOGSYNC_CONFIG")}
    env["HOME"] = str(tmp_path / "home")

    def run(*args):
        return subprocess.run([fogsync, "--config", config, "--host", "fresh", *args], capture_output=True,
                              text=True, env=env, timeout=300)

    assert run("add-share", "docs", KEY, "--path", folder, "--store", s3_url).returncode == 0
    (folder / "hello.txt").write_text("from a plain install")
    p = run("sync")
    assert p.returncode == 0 and "committed v1" in p.stdout, p.stderr
    p = run("cat", "docs", "hello.txt")
    assert p.stdout == "from a plain install"
    imported = subprocess.run([py, "-c", "import sys, fogsync.cli.main; print('boto3' in sys.modules)"],
                              capture_output=True, text=True, env=env)
    assert imported.stdout == "False\n"  # the local path's start-up does not pay for boto3

    # keyring is an extra: asking for it says how to get it, in one line
    p = run("add-share", "more", KEY, "--keyring", "--path", tmp_path / "more")
    assert p.returncode == 1 and p.stderr == (
        "fogsync: error: the OS keyring needs the Python package 'keyring': run 'pip install keyring' "
        "(or pip install 'fogsync[keyring]')\n"), p.stderr

    # a dependency removed after the install: one line naming it and the fix
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", "boto3"], check=True, capture_output=True)
    p = run("sync")
    assert p.returncode == 1 and p.stderr == (
        "fogsync: error: the Python package 'boto3' is not installed: run 'pip install boto3' in the environment "
        "fogsync runs in (or reinstall fogsync)\n"), p.stderr
