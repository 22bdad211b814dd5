"""config: finding, reading and editing the TOML file (comments kept, mode 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from fogsync.config import file as config
from fogsync.errors import ConfigError

KEY = bytes(range(32))


def test_a_missing_file_is_an_empty_config(tmp_path):
    cfg = config.load(str(tmp_path / "none.toml"), host="h")
    assert cfg.shares == {} and cfg.host == "h" and cfg.debounce == 0.5


def test_add_share_keeps_comments_and_writes_mode_0600(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('# my settings\nhost = "laptop"  # this machine\n\n[s3]\n# endpoint_url = "x"\n')
    os.chmod(path, 0o644)
    config.add_share(str(path), "docs", KEY, "/data/docs", "s3://b/p")
    text = path.read_text()
    assert "# my settings" in text and "# this machine" in text and '# endpoint_url = "x"' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = config.load(str(path))
    share = cfg.share("docs")
    assert (share.key, share.path, share.store) == (KEY, "/data/docs", "s3://b/p")
    config.remove_share(str(path), "docs")
    assert "docs" not in config.load(str(path)).shares
    assert "# this machine" in path.read_text()


def test_store_defaults_to_default_store_then_the_embedded_one(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'state_dir = "{tmp_path}/st"\n')
    config.add_share(str(path), "a", KEY, "/x", None)
    assert config.load(str(path)).share("a").store == f"{tmp_path}/st/store"
    path.write_text(path.read_text().replace("state_dir", 'default_store = "s3://b/d"\nstate_dir'))
    assert config.load(str(path)).share("a").store == "s3://b/d"


def test_host_precedence(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('host = "from-config"\n')
    monkeypatch.delenv("FOGSYNC_HOST", raising=False)
    assert config.load(str(path)).host == "from-config"
    monkeypatch.setenv("FOGSYNC_HOST", "from-env")
    assert config.load(str(path)).host == "from-env"
    assert config.load(str(path), host="from-flag").host == "from-flag"


def test_config_path_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FOGSYNC_CONFIG", str(tmp_path / "env.toml"))
    assert config.config_path(str(tmp_path / "flag.toml")) == str(tmp_path / "flag.toml")
    assert config.config_path(None) == str(tmp_path / "env.toml")
    monkeypatch.delenv("FOGSYNC_CONFIG")
    assert config.config_path(None).endswith(os.path.join("fogsync", "config.toml"))


@pytest.mark.parametrize("text, words", [
    ("host = [", "not valid TOML"),
    ('debounce = "soon"', "debounce"),
    ('[shares.a]\npath = "/x"', "needs a key"),
    ('[shares.a]\nkey = "abc"\npath = "/x"', "64 hex"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert words in str(e.value) and str(path) in str(e.value)
    assert "abc" not in str(e.value) or "key" not in text


def test_adding_a_share_twice_or_removing_an_unknown_one_is_refused(tmp_path):
    path = str(tmp_path / "c.toml")
    config.add_share(path, "a", KEY, "/x", None)
    with pytest.raises(ConfigError, match="already exists"):
        config.add_share(path, "a", KEY, "/y", None)
    with pytest.raises(ConfigError, match="no share named 'b'"):
        config.remove_share(path, "b")


@pytest.mark.parametrize("name", ["", " a", "a/b", "a\nb"])
def test_bad_share_names(name):
    with pytest.raises(ConfigError):
        config.check_name(name)
