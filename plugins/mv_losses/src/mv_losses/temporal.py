"""Temporal smoothness loss on unlabelled video: penalise jumps between consecutive frames."""

from __future__ import annotations

import torch
from pydantic import Field

from mv_losses.checks import check_epsilon_length
from mvcore import Context, LogList, Loss, LossParams, Stage


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the last axis with a finite (zero) gradient at 0."""
    sq = (x * x).sum(-1)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


class TemporalParams(LossParams):
    #: Lightning Pose's class default (its config templates use 5.0; set it in the config)
    log_weight: float | None = 0.0
    #: pixels; a scalar, one value per keypoint (N = V * K) or per body part (K, all views)
    epsilon: float | list[float] | None = 0.0
    #: a pair of frames counts only where both confidences are >= this
    prob_threshold: float = Field(0.0, ge=0.0, le=1.0)


class TemporalLoss(Loss):
    """Mean over frames and keypoints of ``relu(||x_{t+1} - x_t|| - epsilon)``.

    Inputs: ``keypoints_pred (B, 2N)`` with the batch in temporal order (consecutive video
    frames) and optional ``confidences (B, N)``. An entry ``(t, n)`` is **removed** (not
    counted in the mean) when the confidence of frame t or t+1 is below ``prob_threshold`` or
    either prediction is NaN; Lightning Pose zeroes such entries but still divides by them,
    so the loss shrinks as more keypoints are occluded. Nothing valid gives a zero that keeps
    the graph. Unsupervised and annealed.
    """

    loss_name = "temporal"
    Params = TemporalParams
    params: TemporalParams
    supervised = False

    @classmethod
    def validate_context(cls, params: TemporalParams, context: Context) -> None:
        check_epsilon_length(params, context, per_view=True)

    def compute_loss(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2N)`` -> per-keypoint displacement norms ``(B - 1, N)`` and their validity."""
        points = predictions.reshape(predictions.shape[0], -1, 2)
        finite = torch.isfinite(points).all(-1)
        points = torch.where(finite[..., None], points, 0.0)
        valid = finite[1:] & finite[:-1]
        return _safe_norm(points[1:] - points[:-1]), valid

    def remove_nans(self, valid: torch.Tensor, confidences: torch.Tensor | None) -> torch.Tensor:
        """Validity ``(B - 1, N)`` also requiring both frames' confidences >= threshold."""
        if confidences is None:
            return valid
        confident = confidences >= self.params.prob_threshold
        return valid & confident[1:] & confident[:-1]

    def rectify_epsilon(self, loss: torch.Tensor) -> torch.Tensor:
        """``relu(loss - epsilon)``; a per-body-part epsilon (K values) is repeated per view."""
        eps = self.epsilon.to(loss.dtype)
        n = loss.shape[-1]
        if eps.ndim == 1 and eps.numel() not in (1, n):
            ctx = self.context
            if eps.numel() != ctx.num_keypoints or n != ctx.num_views * ctx.num_keypoints:
                raise ValueError(
                    f"{self.loss_name}: epsilon has {eps.numel()} values but the predictions "
                    f"have {n} keypoints (give 1, N or K values)"
                )
            eps = eps.repeat(ctx.num_views)
        return torch.relu(loss - eps)

    def forward(
        self, *, keypoints_pred: torch.Tensor, confidences: torch.Tensor | None = None,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        norms, valid = self.compute_loss(keypoints_pred)
        valid = self.remove_nans(valid, confidences)
        scalar = self.reduce_loss(self.rectify_epsilon(norms)[valid], method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage)
