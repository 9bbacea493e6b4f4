"""One small model trained on the built-in example, shared by the integration tests that only
read a trained model (its outputs, prediction, evaluation, fine-tuning): training is the
slow part, so the suite trains it once."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_model import FRAMES, overrides

from mvcore.cli.main import main
from mvcore.example import make_example_project


@pytest.fixture(scope="session")
def trained_example(tmp_path_factory) -> Path:
    """The model directory of ``mvcore train`` on the example (project in ``../proj``)."""
    root = tmp_path_factory.mktemp("trained_example")
    config = make_example_project(root / "proj", seed=0, num_frames=FRAMES)
    model_dir = root / "model"
    assert main(["train", str(config), "--output", str(model_dir), *overrides()]) == 0
    return model_dir
