"""How a training run ended, so that nothing reports a broken or unfinished model as trained.

A run ends in one of three ways (``docs/training.md``):

- **trained**: ``fit`` returns a ``FitResult`` (its ``verdict()`` is the line ``mvcore train``
  prints); exit code 0.
- **diverged / failed**: ``fit`` raises ``TrainingFailed``: a loss or a weight became NaN or
  infinite, no epoch finished (so there is no checkpoint), or validation measured no keypoint
  in any epoch; exit code 1. The checkpoints of the last good epoch are kept.
- **stopped**: ``fit`` raises ``TrainingInterrupted`` (Ctrl-C, SIGTERM); exit code 130 (143
  for SIGTERM). ``checkpoints/last.ckpt`` holds the last finished epoch and ``--resume``
  continues from it.

Neither exception is an ``MvcoreError`` (those are input mistakes, exit 2): the input was
accepted, the run itself went wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LIKELY_CAUSES", "FitResult", "TrainingFailed", "TrainingInterrupted"]

#: what usually makes a loss NaN or infinite, named in every "diverged" message
LIKELY_CAUSES = ("labels far outside their image, a learning rate too high "
                 "(training.optimizer_params.learning_rate), or a PCA loss on degenerate labels")


class TrainingFailed(RuntimeError):
    """The run produced no usable model (diverged, or nothing to show for it); the message is
    one line that starts with the verdict (``diverged: ...`` or ``failed: ...``)."""

    exit_code = 1

    def __init__(self, message: str, model_dir: Path | None = None) -> None:
        super().__init__(message)
        self.model_dir = model_dir


class TrainingInterrupted(KeyboardInterrupt):
    """The run was stopped from outside (Ctrl-C or SIGTERM) after ``epochs_done`` finished
    epochs; ``resumable``: ``checkpoints/last.ckpt`` exists. A ``KeyboardInterrupt``, so a
    caller that does not know it still sees a Ctrl-C."""

    def __init__(self, message: str, model_dir: Path, resumable: bool,
                 exit_code: int = 130) -> None:
        super().__init__(message)
        self.message = message
        self.model_dir = model_dir
        self.resumable = resumable
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FitResult:
    """A finished run: ``is_main`` (rank 0, the process that writes reports), epochs and
    optimiser steps done, and the checkpoint whose weights the module now holds (``best``
    with its validation pixel error and epoch, else ``last``)."""

    model_dir: Path
    is_main: bool
    epochs: int
    steps: int
    weights: Path
    best_error: float | None = None
    best_epoch: int | None = None

    def verdict(self) -> str:
        """One line: ``trained: N epochs (S steps); best validation pixel error ...``."""
        done = f"trained: {self.epochs} epoch{'s' * (self.epochs != 1)} ({self.steps} steps)"
        if self.best_error is not None and math.isfinite(self.best_error):
            where = f" in epoch {self.best_epoch}" if self.best_epoch is not None else ""
            measured = f"best validation pixel error {self.best_error:.2f} px{where}"
        else:
            measured = "no validation ran, the model holds the last epoch's weights"
        return f"{done}; {measured}; model directory: {self.model_dir}"
