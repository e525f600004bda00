"""Fixtures for the traffic-data tests; helpers live in traffic_test_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A not-yet-existing output directory for ingest()."""
    return tmp_path / "out"
