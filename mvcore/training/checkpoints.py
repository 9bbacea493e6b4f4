"""Checkpoints a run can trust: complete or absent, never NaN-best, enough to resume exactly.

- ``AtomicCheckpointIO``: every checkpoint is written to a hidden temporary file beside its
  final name and renamed over it when complete (``mvcore.files.atomic_path``). Lightning's own
  writer stages the file in the system temporary folder and *moves* it, which is a copy - not
  atomic - when that folder is on another file system, so a kill could leave a truncated
  ``last.ckpt``. ``remove_partial_checkpoints`` deletes what a killed save left behind.
- ``BestCheckpoint``: ``best.ckpt`` by ``val_pixel_error``, but an epoch whose error is NaN
  (no keypoint measured) or infinite is never saved as best; Lightning saves a NaN epoch
  when it is the first one (it counts NaN as +inf only afterwards). It counts the measured and
  the unmeasured epochs, so a run whose validation never measured anything is seen.
- ``RandomState``: the global random states (Python, NumPy, torch CPU and CUDA) go into every
  checkpoint and are restored when a run resumes, so the random numbers drawn after a resume
  are those the uninterrupted run drew (Lightning saves neither).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO

from mvcore.files import atomic_path

__all__ = ["AtomicCheckpointIO", "BestCheckpoint", "RandomState",
           "remove_partial_checkpoints"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_path(path) as partial:
            torch.save(checkpoint, partial)


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Delete the temporary files of checkpoint saves that a killed run never finished (call it
    while holding the model directory's lock); returns what was deleted."""
    removed = sorted(folder.glob(".*.partial.ckpt")) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that never keeps a non-finite score as best (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.measured_epochs = 0
        self.unmeasured_epochs = 0

    @property
    def state_key(self) -> str:
        """Lightning's key of a plain ``ModelCheckpoint`` with these settings, so runs saved
        before this class existed resume with their best score."""
        key = super().state_key
        return "ModelCheckpoint" + key[len(type(self).__qualname__):]

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None
                            ) -> bool:
        if current is not None:
            if not bool(torch.isfinite(torch.as_tensor(current)).all()):
                self.unmeasured_epochs += 1
                return False
            self.measured_epochs += 1
        return super().check_monitor_top_k(trainer, current)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "measured_epochs": self.measured_epochs,
                "unmeasured_epochs": self.unmeasured_epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.measured_epochs = int(state_dict.get("measured_epochs", 0))
        self.unmeasured_epochs = int(state_dict.get("unmeasured_epochs", 0))


def _numpy_state() -> list[Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list[Any]) -> None:
    kind, keys, pos, has_gauss, cached = state
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


class RandomState(pl.Callback):
    """Global random states in the checkpoint, restored on resume (module docstring). Stored
    as plain lists and tensors, so ``torch.load(weights_only=True)`` reads the checkpoint."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {"python": [version, list(internal), gauss], "numpy": _numpy_state(),
                "torch": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore the states of the checkpoint a resumed run started from (after Lightning's
        sanity check, which runs with its own isolated states)."""
        state, self._loaded = self._loaded, None
        if not state:
            return
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        _set_numpy_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and \
                len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
