"""Shared pytest configuration: where the real data lives, and the service fixtures."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _package_logging_restored():
    """A test that runs the CLI in-process (``cli.main``) installs the package's log handler on that test's
    stderr, which pytest's ``capsys``/``capfd`` close after it: later tests in the same process would log into a
    closed stream ("--- Logging error ---" on stderr). The package logger is put back as each test found it."""
    logger = logging.getLogger("alert_broker")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
