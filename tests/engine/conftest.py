"""Fixtures of the engine tests: two hosts, a laptop and a desktop, sharing one local store."""

from __future__ import annotations

import pytest


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def laptop(hosts, store_path):
    return hosts("laptop", store_path)


@pytest.fixture
def desktop(hosts, store_path):
    return hosts("desktop", store_path)
