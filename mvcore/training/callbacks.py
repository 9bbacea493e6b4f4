"""Lightning callbacks of a training run: loss annealing, backbone unfreezing, the epoch length
for curricula, and the CSV log of a resumed run."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.imports import _RICH_AVAILABLE

from mvcore.files import atomic_path


def anneal_value(epoch: int, init_val: float, increase_factor: float, final_val: float,
                 freeze_until_epoch: int) -> float:
    """Annealing weight at ``epoch``: ``init_val`` up to and including ``freeze_until_epoch``,
    then ``init_val + (epoch - freeze_until_epoch) * increase_factor`` capped at ``final_val``
    (seeds' example: 0 until epoch 60, 0.01 at 61, full weight 1.0 from epoch 160)."""
    if epoch <= freeze_until_epoch:
        return init_val
    return min(init_val + (epoch - freeze_until_epoch) * increase_factor, final_val)


class AnnealWeight(pl.Callback):
    """Sets ``pl_module.<attr_name>`` at the start of every training epoch (also on resume)."""

    def __init__(self, attr_name: str = "anneal_weight", init_val: float = 0.0,
                 increase_factor: float = 0.01, final_val: float = 1.0,
                 freeze_until_epoch: int = 0) -> None:
        self.attr_name = attr_name
        self.schedule = dict(init_val=init_val, increase_factor=increase_factor,
                             final_val=final_val, freeze_until_epoch=freeze_until_epoch)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = anneal_value(trainer.current_epoch, **self.schedule)
        current = getattr(pl_module, self.attr_name)
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            setattr(pl_module, self.attr_name, value)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, pl_module)


class UnfreezeBackbone(pl.Callback):
    """Backbone learning rate 0 until ``unfreeze_epoch`` (or ``unfreeze_step``), then
    ``0.1 * head lr`` growing by 1.5x per epoch/step until it reaches the head lr."""

    def __init__(self, unfreeze_epoch: int | None = None, unfreeze_step: int | None = None,
                 initial_ratio: float = 0.1, warm_up_ratio: float = 1.5) -> None:
        if (unfreeze_epoch is None) == (unfreeze_step is None):
            raise ValueError("give exactly one of unfreeze_epoch and unfreeze_step")
        self.unfreeze_epoch = unfreeze_epoch
        self.unfreeze_step = unfreeze_step
        self.initial_ratio = initial_ratio
        self.warm_up_ratio = warm_up_ratio
        self.done = False

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict.get("done", False))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self.done:
            return
        optimizer = trainer.optimizers[0]
        groups = {group.get("name"): group for group in optimizer.param_groups}
        backbone, head = groups.get("backbone"), groups.get("head")
        if backbone is None or head is None:
            self.done = True
            return
        if self.unfreeze_step is not None:
            now, start = trainer.global_step, self.unfreeze_step
        else:
            now, start = trainer.current_epoch, self.unfreeze_epoch
        if now < start:
            backbone["lr"] = 0.0
            return
        lr = head["lr"] * self.initial_ratio * self.warm_up_ratio ** (now - start)
        if lr >= head["lr"] or math.isclose(lr, head["lr"]):
            backbone["lr"] = head["lr"]
            self.done = True
        else:
            backbone["lr"] = lr


class StepsPerEpoch(pl.Callback):
    """Tells the module how many optimiser steps an epoch has (for epoch-based curricula)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = trainer.num_training_batches
        if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
            steps = math.ceil(batches / trainer.accumulate_grad_batches)
            pl_module.steps_per_epoch = max(1, steps)


class ResumedCSVLogger(CSVLogger):
    """CSVLogger of a resumed run: keeps the rows of ``metrics.csv`` logged before the
    checkpoint's ``global_step`` and appends after them. (Lightning's CSVLogger deletes the
    file when its folder is not empty; the rows after the checkpoint are redone on resume.)"""

    def __init__(self, *args: Any, resume_step: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = int(resume_step)

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        rows: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) < self.resume_step]
        writer = super().experiment  # Lightning's writer deletes metrics.csv (rank 0 only)
        if rows and self._experiment is not None:
            writer.metrics_keys = sorted(rows[0])
            with atomic_path(path) as partial, partial.open("w", newline="") as handle:
                out = csv.DictWriter(handle, fieldnames=writer.metrics_keys)
                out.writeheader()
                out.writerows(rows)
        return writer


class _WithoutVersion:
    """A progress bar without Lightning's ``v_num``: the loggers' versions joined, cut to the
    last four characters ("oard" of CSV's "" and "tensorboard"), which says nothing here."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)
        return items


class RichBar(_WithoutVersion, RichProgressBar):
    """Lightning's rich progress bar, without ``v_num``."""


class TqdmBar(_WithoutVersion, TQDMProgressBar):
    """Lightning's tqdm progress bar, without ``v_num``."""


def progress_bar() -> Any:
    """The progress bar Lightning would choose (rich when installed), without ``v_num``."""
    return RichBar() if _RICH_AVAILABLE else TqdmBar()
