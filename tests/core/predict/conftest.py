"""Fixtures of the prediction tests: a tiny untrained model directory with videos."""

from __future__ import annotations

from pathlib import Path

import pytest
from predict_models import make_model_dir, use_tiny_components


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    """A model directory of the test backbone (untrained), with a calibration and videos of
    one session ``s1`` (``predict_models``)."""
    use_tiny_components(monkeypatch)
    return make_model_dir(tmp_path)
