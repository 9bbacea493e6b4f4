"""Supervised heatmap losses: compare predicted and target heatmaps of labelled keypoints.

All three share ``HeatmapLoss``: maps whose target is NaN or all zero (no label) are dropped,
one value per remaining keypoint map is averaged, and the loss is never annealed.

``forward`` runs the fused per-map functions of ``mv_losses.fused`` (a few passes over the
maps, no dense temporaries in the backward); ``_dense_reference`` is the Lightning-Pose-style
``remove_nans -> compute_loss -> reduce_loss`` formula they are tested against.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from kornia.losses import js_div_loss_2d, kl_div_loss_2d
from pydantic import field_validator

from mv_losses.fused import (
    DIVERGENCE_FLOOR,
    JSPerMap,
    KLPerMap,
    SquaredErrorPerMap,
    map_energy,
)
from mvcore import LogList, Loss, LossParams, Stage


class HeatmapLossParams(LossParams):
    log_weight: float | None = 0.0
    #: a heatmap loss is not epsilon-insensitive: only null or 0 are accepted
    epsilon: float | None = None

    @field_validator("epsilon")
    @classmethod
    def _no_epsilon(cls, value: float | None) -> float | None:
        if value not in (None, 0.0):
            raise ValueError("heatmap losses have no epsilon (use null or 0)")
        return value


class HeatmapLoss(Loss):
    """Shared pipeline: drop keypoints without a label (all-zero target map), compare maps,
    average over the remaining keypoints. Never annealed."""

    Params = HeatmapLossParams
    annealed = False

    def remove_nans(
        self, targets: torch.Tensor, predictions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, h, w)`` -> ``(N_valid, h, w)``: keep maps whose target is not all zero
        (uniform targets of unlabelled-but-visible keypoints are kept) and not NaN."""
        h, w = targets.shape[-2:]
        flat_targets = targets.reshape(-1, h * w)
        valid = torch.isfinite(flat_targets).all(dim=1) & (flat_targets.abs().sum(dim=1) > 0)
        return targets.reshape(-1, h, w)[valid], predictions.reshape(-1, h, w)[valid]

    #: per-map loss ``(predictions (M, h, w), targets (M, h, w), valid (M,)) -> (M,)`` with
    #: a zero gradient on invalid maps (``mv_losses.fused``)
    per_map: ClassVar[type[torch.autograd.Function]]

    def forward(
        self, *, heatmaps_targ: torch.Tensor, heatmaps_pred: torch.Tensor,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        if heatmaps_targ.requires_grad:  # targets are data; the fast path does not derive them
            scalar = self._dense_reference(heatmaps_targ, heatmaps_pred)
        else:
            scalar = self.reduce_loss(self._map_values(heatmaps_targ, heatmaps_pred),
                                      method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage)

    def _map_values(self, heatmaps_targ: torch.Tensor, heatmaps_pred: torch.Tensor
                    ) -> torch.Tensor:
        """``(B, N, h, w)`` targets and predictions -> the loss of every valid map
        ``(N_valid,)`` (fused: one read of the targets to find the valid maps)."""
        h, w = heatmaps_targ.shape[-2:]
        dtype = torch.promote_types(heatmaps_targ.dtype, heatmaps_pred.dtype)
        targets = heatmaps_targ.reshape(-1, h, w).to(dtype)
        predictions = heatmaps_pred.reshape(-1, h, w).to(dtype)
        _, valid = map_energy(targets)
        return self.per_map.apply(predictions, targets, valid)[valid]

    def _dense_reference(self, heatmaps_targ: torch.Tensor, heatmaps_pred: torch.Tensor
                         ) -> torch.Tensor:
        """The unweighted loss by the dense formula (``remove_nans``, ``compute_loss``,
        ``reduce_loss``): the reference of the fused path, and its fallback for targets that
        require grad."""
        targets, predictions = self.remove_nans(heatmaps_targ, heatmaps_pred)
        elementwise = self.compute_loss(targets, predictions)
        return self.reduce_loss(elementwise, method="mean")


class HeatmapMSELoss(HeatmapLoss):
    """Squared error per pixel times ``h * w`` (so the mean over pixels becomes the per-map
    sum of squared errors, averaged over valid keypoints)."""

    loss_name = "heatmap_mse"
    per_map = SquaredErrorPerMap

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        h, w = targets.shape[-2:]
        return (targets - predictions) ** 2 * (h * w)


class HeatmapKLLoss(HeatmapLoss):
    """``KL(target || pred) = sum_pix t (log t - log p)`` per valid keypoint map (kornia)."""

    loss_name = "heatmap_kl"
    per_map = KLPerMap

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(N_valid, h, w)`` maps -> ``(N_valid,)`` divergences in nats."""
        return kl_div_loss_2d(
            predictions.unsqueeze(0) + DIVERGENCE_FLOOR,
            targets.unsqueeze(0) + DIVERGENCE_FLOOR,
            reduction="none",
        )[0]


class HeatmapJSLoss(HeatmapLoss):
    """Jensen-Shannon divergence ``KL(t || m) / 2 + KL(p || m) / 2``, ``m = (t + p) / 2``, per
    valid keypoint map (kornia); symmetric and bounded by ``ln 2``."""

    loss_name = "heatmap_js"
    per_map = JSPerMap

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(N_valid, h, w)`` maps -> ``(N_valid,)`` divergences in nats."""
        return js_div_loss_2d(
            predictions.unsqueeze(0) + DIVERGENCE_FLOOR,
            targets.unsqueeze(0) + DIVERGENCE_FLOOR,
            reduction="none",
        )[0]
