"""``LossFactory``: builds the active losses from the config and sums them.

Which losses are active (Lightning Pose semantics, made explicit):

1. the supervised heatmap loss ``heatmap_<model.heatmap_loss_type>`` (never annealed);
2. every loss under ``losses:`` whose class is supervised and whose ``log_weight`` is not null
   (``log_weight: null`` turns a loss off);
3. every loss named in ``model.losses_to_use`` (unsupervised losses are active only then).

Each active loss is built with its validated ``losses.<name>`` fields as keyword arguments.
Before training, the factory checks that the model produces every input a loss requires.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from mvcore.errors import ConfigError, MissingLossInputError
from mvcore.losses.base import Loss, LossContext, Stage, required_inputs

#: what to tell a user when a loss needs an input the model cannot produce
INPUT_HINTS = {
    "keypoints_targ_3d": "3D targets need a calibrated project (calibration.toml or "
    "calibrations/<session>.toml, or data.camera_params_file)",
    "keypoints_pred_3d": "3D predictions need a calibrated project",
    "keypoints_pred_2d_reprojected": "reprojected keypoints need a calibrated project",
}


def active_loss_names(config: Any, registry: Any) -> list[str]:
    """Names of the losses the config turns on, in a stable order (heatmap loss first)."""
    names: list[str] = []
    heatmap_name = f"heatmap_{config.model.heatmap_loss_type}"
    registry.entry(heatmap_name, key_path="model.heatmap_loss_type")
    names.append(heatmap_name)
    for name, params in config.losses.items():
        registry.entry(name, key_path=f"losses.{name}")
        cls = registry.get(name, key_path=f"losses.{name}")
        if params is None or name in names:
            continue
        if cls.supervised and params.get("log_weight", 0.0) is not None:
            names.append(name)
    for index, name in enumerate(config.model.losses_to_use or []):
        registry.entry(name, key_path=f"model.losses_to_use[{index}]")
        params = config.losses.get(name) or {}
        if params.get("log_weight", 0.0) is None:
            continue
        if name not in names:
            names.append(name)
    return names


class LossFactory(nn.Module):
    """A group of losses summed into one objective; the losses are submodules, so their
    buffers move with ``.to(device)`` and are saved in checkpoints."""

    def __init__(self, losses: dict[str, Loss] | None = None) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(losses or {})

    @classmethod
    def from_config(
        cls,
        config: Any,
        registry: Any,
        *,
        supervised: bool | None = None,
        produced_inputs: set[str] | None = None,
        data_module: Any = None,
        context: LossContext | None = None,
    ) -> LossFactory:
        """Build the active losses (only supervised or unsupervised ones if asked)."""
        losses: dict[str, Loss] = {}
        for name in active_loss_names(config, registry):
            loss_cls = registry.get(name, key_path=f"losses.{name}")
            if supervised is not None and loss_cls.supervised != supervised:
                continue
            raw = config.losses.get(name) or {}
            try:
                params = loss_cls.Params.model_validate(raw)
            except ValidationError as exc:
                from mvcore.config.load import format_validation_error

                raise ConfigError(
                    format_validation_error(exc, loss_cls.Params, prefix=f"losses.{name}")
                ) from None
            if produced_inputs is not None:
                missing = sorted(required_inputs(loss_cls) - set(produced_inputs))
                if missing:
                    entry = registry.entry(name)
                    hints = [INPUT_HINTS[m] for m in missing if m in INPUT_HINTS]
                    raise MissingLossInputError(
                        f"loss {name!r} (from {entry.provider_label}) requires "
                        f"{', '.join(missing)}, but the model produces only "
                        f"{', '.join(sorted(produced_inputs))}."
                        + (f" Hint: {hints[0]}." if hints else "")
                        + f" Set losses.{name}.log_weight: null to turn it off."
                    )
            kwargs = params.model_dump()
            losses[name] = loss_cls(
                **kwargs, data_module=data_module, context=context, loss_name=name
            )
        return cls(losses)

    def __len__(self) -> int:
        return len(self.losses)

    def names(self) -> list[str]:
        return list(self.losses.keys())

    def forward(
        self, stage: Stage | None = None, anneal_weight: float | torch.Tensor | None = 1.0,
        **inputs: Any,
    ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Sum of ``multiplier * weighted loss`` over the losses, and all their logs.

        ``multiplier`` is ``anneal_weight`` for annealed losses and 1 for the others (and 1 for
        all when ``anneal_weight`` is None). Logs hold each loss's unweighted value, its weight,
        ``{stage}_{name}_loss_weighted`` and, for annealed losses, ``..._annealed``.
        """
        total: torch.Tensor | None = None
        logs: list[dict[str, Any]] = []
        for name, loss in self.losses.items():
            weighted, loss_logs = loss(stage=stage, **inputs)
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
