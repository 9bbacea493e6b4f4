"""Shared fixtures: paths to the repository and to the real datasets in ../shared/data."""

from pathlib import Path

import pytest
from shared_data import SHARED_DATA

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
