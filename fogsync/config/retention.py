"""Retention in the config: ``[retention]`` for every share, ``[shares.NAME.retention]`` for one.

Keys are the ``forget`` options in snake case (``keep_last``, ``keep_hourly``,
``keep_daily``, ``keep_weekly``, ``keep_monthly``, ``keep_yearly``: whole
numbers, -1 for all; ``keep_within``: a duration such as ``"2d"``). A share's
own table replaces the default table whole; it is not merged key by key.
A key of the wrong type, or one not known, is an error naming the file and the key.
"""

from __future__ import annotations

from fogsync.engine.forget import COUNT_RULES, Duration, Policy, parse_duration
from fogsync.errors import ConfigError

DEFAULT = ""  # the key of the ``[retention]`` table in ``parse``'s result


def parse(doc: dict, path: str) -> dict[str, Policy]:
    """The policies a config document sets: its ``[retention]`` under "", each share's under its name."""
    found = {}
    if "retention" in doc:
        found[DEFAULT] = parse_table(doc["retention"], "retention", path)
    shares = doc.get("shares")
    for name, share in (shares.items() if isinstance(shares, dict) else ()):
        if isinstance(share, dict) and "retention" in share:
            found[name] = parse_table(share["retention"], f"shares.{name}.retention", path)
    return found


def parse_table(table, where: str, path: str) -> Policy:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} in {path} must be a table of keep_* keys")
    counts = {}
    for key, value in table.items():
        rule = key.removeprefix("keep_")
        if key == "keep_within":
            if not isinstance(value, str):
                raise ConfigError(f"{where}.keep_within in {path} must be a string such as \"2d\"")
            try:
                parse_duration(value)
            except ConfigError as e:
                raise ConfigError(f"{where}.keep_within in {path}: {e}") from None
        elif rule in COUNT_RULES and key.startswith("keep_"):
            if type(value) is not int or value < -1:
                raise ConfigError(f"{where}.{key} in {path} must be a whole number (-1 keeps all)")
            counts[rule] = value
        else:
            known = ", ".join([f"keep_{r}" for r in COUNT_RULES] + ["keep_within"])
            raise ConfigError(f"{where}.{key} in {path} is not a retention key ({known})")
    within = parse_duration(table["keep_within"]) if "keep_within" in table else Duration()
    policy = Policy(**counts, within=within)
    if policy.empty():
        raise ConfigError(f"{where} in {path} keeps nothing: set at least one keep_* key above 0")
    return policy


def policy_for(cfg, name: str) -> Policy | None:
    """The share's policy, else the default one, else None."""
    policies = getattr(cfg, "retention", None) or {}
    return policies.get(name) or policies.get(DEFAULT)
