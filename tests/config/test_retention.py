"""config/retention.py: ``[retention]`` and ``[shares.NAME.retention]`` read into policies."""

from __future__ import annotations

import pytest

from fogsync.config import file as configmod
from fogsync.config.retention import parse, policy_for
from fogsync.engine.forget import Duration, Policy
from fogsync.errors import ConfigError


def test_default_and_per_share_tables(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        'host = "h"\n[retention]\nkeep_daily = 7\n'
        f'[shares.docs]\nkey = "{"11" * 32}"\npath = "{tmp_path / "d"}"\n'
        '[shares.docs.retention]\nkeep_within = "2d3h"\nkeep_weekly = -1\n'
        f'[shares.pics]\nkey = "{"22" * 32}"\npath = "{tmp_path / "p"}"\n'
    )
    path.chmod(0o600)
    cfg = configmod.load(str(path))
    assert policy_for(cfg, "docs") == Policy(weekly=-1, within=Duration(days=2, hours=3))
    assert policy_for(cfg, "pics") == Policy(daily=7)


def test_none_when_nothing_is_set():
    assert parse({"shares": {"docs": {}}}, "c.toml") == {}


@pytest.mark.parametrize("table,words", [
    ({"keep_daily": "7"}, ["retention.keep_daily", "whole number"]),
    ({"keep_daily": True}, ["retention.keep_daily"]),
    ({"keep_last": -2}, ["retention.keep_last"]),
    ({"keep_within": 2}, ["retention.keep_within", "string"]),
    ({"keep_within": "2 days"}, ["retention.keep_within", "duration"]),
    ({"daily": 3}, ["retention.daily", "not a retention key"]),
    ({"keep_last": 0}, ["keeps nothing"]),
    ("daily", ["must be a table"]),
])
def test_bad_tables_name_the_file_and_the_key(table, words):
    with pytest.raises(ConfigError) as e:
        parse({"retention": table}, "c.toml")
    for w in words + ["c.toml"]:
        assert w in str(e.value)
