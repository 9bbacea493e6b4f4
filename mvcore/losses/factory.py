"""``LossFactory``: a group of built losses summed into one objective.

``mvcore.build`` decides which losses a config turns on and builds them; the factory holds
them (as submodules, so their buffers follow ``.to(device)`` and are saved in checkpoints),
passes each loss the inputs it declares, weights, anneals and sums them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mvcore.losses.base import Loss, Stage, loss_signature

__all__ = ["LossFactory"]


class LossFactory(nn.Module):
    """Losses by name, summed: ``total = sum(multiplier * weight * loss)``."""

    def __init__(self, losses: dict[str, Loss] | None = None) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(losses or {})

    def __len__(self) -> int:
        return len(self.losses)

    def names(self) -> list[str]:
        return list(self.losses.keys())

    def declared_inputs(self) -> set[str]:
        """Every loss input some loss of this group names."""
        return {name for loss in self.losses.values()
                for name in loss_signature(type(loss)).declared}

    def forward(
        self, stage: Stage | None = None, anneal_weight: float | torch.Tensor | None = 1.0,
        **inputs: Any,
    ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Sum of ``multiplier * weighted loss`` over the losses, and all their logs.

        Each loss receives the inputs it declares (all of them if it takes ``**kwargs``).
        ``multiplier`` is ``anneal_weight`` for annealed losses and 1 for the others (and 1 for
        all when ``anneal_weight`` is None). Logs hold each loss's unweighted value, its weight,
        ``{stage}_{name}_loss_weighted`` and, for annealed losses, ``..._annealed``.
        """
        total: torch.Tensor | None = None
        logs: list[dict[str, Any]] = []
        for name, loss in self.losses.items():
            signature = loss_signature(type(loss))
            given = inputs if signature.takes_all else {
                key: value for key, value in inputs.items() if key in signature.declared}
            weighted, loss_logs = loss(stage=stage, **given)
            logs.extend(loss_logs)
            logs.append({"name": f"{stage}_{name}_loss_weighted", "value": weighted.detach()})
            multiplier = 1.0 if anneal_weight is None or not loss.annealed else anneal_weight
            contribution = multiplier * weighted
            if loss.annealed and anneal_weight is not None:
                logs.append(
                    {"name": f"{stage}_{name}_loss_annealed", "value": contribution.detach()}
                )
            total = contribution if total is None else total + contribution
        if total is None:
            total = torch.zeros(())
        return total, logs
