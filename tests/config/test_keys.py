"""Where a share's key comes from (config.keys): exactly one source, errors that never echo a key."""

from __future__ import annotations

import pytest

from fogsync.config import file as configmod
from fogsync.config import keys
from fogsync.errors import ConfigError

KEY = "4d" * 32


def load(tmp_path, share_table: str) -> configmod.Config:
    path = tmp_path / "c.toml"
    path.write_text(f'host = "h"\nstate_dir = "{tmp_path}/state"\n[shares.a]\npath = "/x"\n{share_table}')
    path.chmod(0o600)
    return configmod.load(str(path))


@pytest.mark.parametrize("table, message", [
    (f'key = "{KEY}"\nkey_command = "true"', "has key and key_command: give only one"),
    ("key_command = 3", "key_command in"),
    ('key_file = ""', "key_file in"),
    ('keyring = "yes"', "must be true"),
])
def test_a_bad_key_source_is_one_clear_error(tmp_path, table, message):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, table)
    assert message in str(e.value) and "\n" not in str(e.value) and KEY not in str(e.value)


def test_a_key_command_is_not_run_until_the_key_is_needed(tmp_path):
    ran = tmp_path / "ran"
    cfg = load(tmp_path, f'key_command = "touch {ran}; echo {KEY}"')
    assert not ran.exists() and cfg.share("a").key_source == ("key_command", f"touch {ran}; echo {KEY}")
    assert cfg.share("a").open_key() == bytes.fromhex(KEY) and ran.exists()


def test_key_file_reads_the_first_line(tmp_path):
    (tmp_path / "k").write_text(f"  {KEY}  \nsecond line\n")
    cfg = load(tmp_path, f'key_file = "{tmp_path}/k"')
    assert cfg.share("a").open_key() == bytes.fromhex(KEY)


def test_a_key_command_printing_something_else_is_refused_without_echoing_it(tmp_path):
    cfg = load(tmp_path, f'key_command = "echo {KEY[:-1]}"')
    with pytest.raises(ConfigError) as e:
        cfg.share("a").open_key()
    assert str(e.value) == ("share 'a': the output of key_command does not hold a key: "
                            "64 hex characters (32 bytes) expected")


def test_loose_permissions(tmp_path):
    f = tmp_path / "k"
    f.write_text(KEY)
    f.chmod(0o600)
    assert not keys.loose_permissions(str(f))
    f.chmod(0o640)
    assert keys.loose_permissions(str(f))
