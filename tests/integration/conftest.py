"""Fixtures for tests that drive the real CLI as a subprocess.

``cli_host(name, store)`` is a ``Host`` (tests/conftest.py) whose share is
recorded with ``fogsync add-share``, as a person would do it, unless
``add=False``.
"""

from __future__ import annotations

import pytest

KEY = "11" * 32


@pytest.fixture
def cli_host(hosts):
    def make(name: str, store: str, key: str = KEY, add: bool = True):
        host = hosts(name, store, key=key, with_share=False)
        if add:
            host.add()
        return host

    return make
