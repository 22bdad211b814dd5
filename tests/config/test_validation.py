"""config: the whole file is checked when it loads, into typed values, or refused in one line (issue 22, case 5)."""

from __future__ import annotations

import os

import pytest

from fogsync.config import file as config
from fogsync.errors import ConfigError

KEY = "ab" * 32


def _write(tmp_path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def _refused(path: str) -> str:
    with pytest.raises(ConfigError) as e:
        config.load(path, host="h")
    message = str(e.value)
    assert "\n" not in message and path in message and KEY not in message
    return message


SHARE = f'[shares.docs]\nkey = "{KEY}"\npath = "/data/docs"\n'


@pytest.mark.parametrize("text, key, must", [
    ('exclude = "*.tmp"', "exclude", "must be a list of strings"),
    ('exclude = ["*.tmp", 3]', "exclude", "must be a list of strings"),
    ("host = 5", "host", "must be a host name"),
    ('host = ""', "host", "must be a host name"),
    ("[s3]\nendpoint_url = 5", "s3.endpoint_url", "must be a URL string"),
    ("s3 = 5", "s3", "must be a table"),
    ("shares = 3", "shares", "one table per share"),
    ("[shares]\ndocs = 3", "shares", "one table per share"),
    ("debounce = true", "debounce", "non-negative number"),
    ("poll = -1", "poll", "non-negative number"),
    ("workers = 2.5", "workers", "whole number"),
    ("workers = 0", "workers", "whole number"),
    ("state_dir = 7", "state_dir", "must be a path"),
    ("default_store = []", "default_store", "must be a store URL"),
    (f'[shares.docs]\nkey = "{KEY}"\npath = 3', "shares.docs.path", "must be a path"),
    (f'[shares.docs]\nkey = "{KEY}"\npath = "/x"\nstore = [1]', "shares.docs.store", "must be a store URL"),
    (f'[shares.docs]\nkey = "{KEY}"\npath = "/x"\nexclude = "*.log"', "shares.docs.exclude", "list of strings"),
    ('[shares.docs]\nkey = 5\npath = "/x"', "shares.docs.key", "64 hex characters"),
    (f'[shares.docs]\nkey = "{KEY[:-2]}"\npath = "/x"', "shares.docs.key", "64 hex characters"),
    (f'[shares.docs]\nkey = ["{KEY}"]\npath = "/x"', "shares.docs.key", "64 hex characters"),
    ('[shares.docs]\npath = "/x"', "shares.docs", "needs a key"),
    (f'[shares.docs]\nkey = "{KEY}"', "shares.docs", "needs a path"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_file_key_and_what_it_must_be(tmp_path, text, key, must):
    message = _refused(_write(tmp_path, text))
    assert message.startswith(f"{key} ") and must in message


def test_an_unknown_key_is_refused_with_the_likely_meaning(tmp_path):
    assert "unknown key exlude" in _refused(_write(tmp_path, 'exlude = ["*.tmp"]'))
    assert "did you mean exclude?" in _refused(_write(tmp_path, 'exlude = ["*.tmp"]'))
    assert "unknown key shares.docs.stroe" in _refused(_write(tmp_path, SHARE + 'stroe = "/s"\n'))
    assert "unknown key s3.endpoint" in _refused(_write(tmp_path, '[s3]\nendpoint = "http://x"'))
    assert "did you mean shares?" in _refused(_write(tmp_path, SHARE.replace("[shares.", "[share.")))


def test_good_values_load_as_typed_values(tmp_path):
    path = _write(tmp_path, 'exclude = ["*.tmp"]\nworkers = 4\npoll = 2\n[s3]\nendpoint_url = "http://e"\n'
                  + SHARE + 'exclude = ["*.log"]\n')
    cfg = config.load(path, host="h")
    assert cfg.exclude == ("*.tmp",) and cfg.workers == 4 and cfg.poll == 2.0 and isinstance(cfg.poll, float)
    assert cfg.s3_endpoint == "http://e"
    share = cfg.share("docs")
    assert share.key == bytes.fromhex(KEY) and share.path == "/data/docs" and share.exclude == ("*.log",)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_config_holding_keys_that_others_can_read_is_refused_like_an_ssh_key(tmp_path, mode):
    path = _write(tmp_path, SHARE, mode)
    message = _refused(path)
    assert f"{mode:04o}" in message and f"chmod 600 {path}" in message


def test_a_config_without_keys_may_be_readable_and_0600_with_keys_loads(tmp_path):
    assert config.load(_write(tmp_path, 'host = "x"\n', 0o644)).host == "x"
    assert config.load(_write(tmp_path, SHARE, 0o600)).share("docs").path == "/data/docs"
    assert config.load(_write(tmp_path, SHARE, 0o400)).share("docs").path == "/data/docs"


@pytest.mark.parametrize("folder, how", [
    ("docs", "is already the folder of"),
    ("docs/inner", "is inside the folder of"),
    ("", "holds the folder of"),
    ("link-to-docs/inner", "is inside the folder of"),
])
def test_a_share_folder_may_not_nest_with_another(tmp_path, folder, how):
    (tmp_path / "docs").mkdir()
    (tmp_path / "link-to-docs").symlink_to(tmp_path / "docs")
    cfg = config.load(_write(tmp_path, f'[shares.docs]\nkey = "{KEY}"\npath = "{tmp_path}/docs"\n'))
    with pytest.raises(ConfigError) as e:
        config.check_folder_apart(cfg, str(tmp_path / folder))
    assert how in str(e.value) and "'docs'" in str(e.value)


def test_side_by_side_share_folders_are_fine(tmp_path):
    cfg = config.load(_write(tmp_path, f'[shares.docs]\nkey = "{KEY}"\npath = "{tmp_path}/docs"\n'))
    config.check_folder_apart(cfg, str(tmp_path / "docs2"))
    config.check_folder_apart(cfg, str(tmp_path / "other" / "docs"))
