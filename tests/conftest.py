"""Shared pytest configuration: where the real data lives, and the service fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BROKER_SHARED_DATA", REPO.parent / "shared" / "data"))

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.services", "tests.fixtures.broker_api"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real ZTF/LSST/ATLAS data shipped beside the repository (never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set BROKER_SHARED_DATA)")
    return SHARED_DATA
