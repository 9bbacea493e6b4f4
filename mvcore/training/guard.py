"""Stop a run the moment its numbers stop being numbers.

- Every training step: the total loss is checked before the backward pass
  (``check_finite_loss``, called by the module's ``training_step``). A NaN or infinite loss
  raises ``Diverged`` naming the loss term that went bad, the step and the epoch; no optimiser
  step is taken with it.
- Every epoch, before any checkpoint is written: the weights and buffers are checked
  (``FiniteGuard``; Lightning runs checkpoint callbacks after all others), so a checkpoint
  never holds NaN weights and the last good ``last.ckpt`` / ``best.ckpt`` stay as they are.

Cost: one device-to-host sync per step (the progress bar syncs the loss anyway) and one
reduction over the weights per epoch. Under DDP the decision is shared by all ranks, so they
stop together instead of waiting on each other.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["Diverged", "FiniteGuard", "check_finite_loss", "first_non_finite"]


class Diverged(Exception):
    """Raised inside ``Trainer.fit``: a loss or a weight is not finite (the message says which,
    where and when). ``mvcore.training.fit`` turns it into ``TrainingFailed``."""


def _trainer(module: pl.LightningModule) -> Any:
    """The module's trainer, or None outside ``Trainer.fit`` (unit tests call steps alone)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def _any_rank(module: pl.LightningModule, bad: bool) -> bool:
    trainer = _trainer(module)
    if trainer is not None and trainer.world_size > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
    return bad


def _where(module: pl.LightningModule) -> str:
    return f"step {module.global_step} (epoch {module.current_epoch})"


def check_finite_loss(module: pl.LightningModule, total: torch.Tensor,
                      logs: list[dict[str, Any]]) -> None:
    """Raise ``Diverged`` when the step's ``total`` loss is NaN or infinite, naming the first
    non-finite loss term of ``logs`` (the loss factories' log entries)."""
    bad = _any_rank(module, not bool(torch.isfinite(total.detach()).all()))
    if not bad:
        return
    if bool(torch.isfinite(total.detach()).all()):
        raise Diverged(f"a loss is not finite on another process at {_where(module)}")
    name, value = "train_loss (the weighted sum of the losses)", float(total.detach())
    for suffix in ("_loss", "_loss_weighted"):
        found = [(item["name"], torch.as_tensor(item["value"]).detach()) for item in logs
                 if str(item["name"]).endswith(suffix)]
        found = [(n, v) for n, v in found if not bool(torch.isfinite(v).all())]
        if found:
            name, value = found[0][0], float(found[0][1].reshape(-1)[0])
            break
    raise Diverged(f"{name} is {value} at {_where(module)}")


def first_non_finite(module: torch.nn.Module) -> str | None:
    """The name of the first network parameter or floating-point buffer holding a NaN or an
    infinity (None when all are finite); one device sync when all are finite. Loss buffers
    (``loss_supervised.*``: PCA bases...) are the losses' business, not weights."""
    tensors = [(name, t) for name, t in module.state_dict().items()
               if torch.is_tensor(t) and t.is_floating_point() and t.numel()
               and not name.startswith(("loss_supervised.", "loss_unsupervised."))]
    if not tensors:
        return None
    flags = torch.stack([torch.isfinite(t).all() for _, t in tensors])
    if bool(flags.all()):
        return None
    return tensors[int((~flags).nonzero()[0, 0])][0]


class FiniteGuard(pl.Callback):
    """Checks the weights after validation and at the end of every training epoch, before the
    checkpoint callbacks save them (module docstring)."""

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = first_non_finite(pl_module)
        if _any_rank(pl_module, name is not None):
            what = name or "a weight on another process"
            raise Diverged(f"the network weight {what} is not finite after "
                           f"{_where(pl_module)}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)
