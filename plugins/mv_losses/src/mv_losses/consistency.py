"""Unsupervised multi-view consistency: predictions on unlabelled frames must agree in 3D.

``multiview_reprojection`` triangulates each keypoint from all confident views (DLT, weighted
by the confidences), projects the 3D point back into those views and penalises the pixel
distance to the 2D predictions, beyond an epsilon. Views that agree on one 3D point cost
nothing; a view whose prediction is off the others' epipolar constraint is pulled back.
It needs calibrated cameras but no labels, so it complements the supervised 3D losses on
unlabelled video (the public implementation has no unsupervised loss for multi-view models).
"""

from __future__ import annotations

import torch
from pydantic import Field

from mv_losses.checks import check_epsilon_length
from mv_losses.outliers import drop_outliers
from mvcore import CameraTensors, Context, LogList, Loss, LossParams, Stage
from mvcore.geometry import reprojection_error, triangulate


class MultiviewReprojectionParams(LossParams):
    #: weight 1/(2e^6) ~ 0.0012: weighted, about the size of a converged heatmap_mse on the
    #: example project (bench/RESULTS.md, "Loss ablation"); 4.0 (7x more) stalled learning
    log_weight: float | None = 6.0
    #: pixels (frame); errors below it cost nothing (calibration and labelling noise)
    epsilon: float | list[float] | None = 5.0
    #: views whose confidence is below this take no part (triangulation nor error)
    prob_threshold: float = Field(0.0, ge=0.0, le=1.0)
    #: pixels (frame); larger errors are left out of the mean. Early in training (or on a
    #: frame the model gets badly wrong) rays can meet behind a camera and reproject
    #: millions of pixels away; such a term would swamp every other loss. None keeps all.
    max_error: float | None = Field(100.0, gt=0.0)


class MultiviewReprojectionLoss(Loss):
    """Epsilon-insensitive reprojection error of confidence-weighted triangulations.

    Inputs: ``keypoints_pred (B, 2N)`` frame pixels (N = V * K, view-major), ``cameras``
    ``(B, V, ...)`` (or unbatched ``(V, ...)``), optional ``confidences (B, N)`` and optional
    ``has_calibration (B,)`` (frames of uncalibrated sessions carry placeholder cameras and
    are left out). Per ``(b, k)``: the views with
    confidence >= ``prob_threshold`` and finite predictions are triangulated with the
    confidences as DLT weights (detached: confidences choose how much each view counts but are
    not optimised by this loss); each such view's pixel error ``(B, V, K)`` is rectified by
    epsilon (scalar, or K values, one per body part) and averaged over all valid
    ``(b, v, k)``. Keypoints with fewer than two valid views are skipped; nothing valid gives a
    zero that keeps the graph. Gradients reach every used view through the differentiable
    triangulation. Unsupervised and annealed.
    """

    loss_name = "multiview_reprojection"
    Params = MultiviewReprojectionParams
    params: MultiviewReprojectionParams

    @classmethod
    def validate_context(cls, params: MultiviewReprojectionParams, context: Context) -> None:
        check_epsilon_length(params, context)
    supervised = False

    def remove_nans(
        self,
        points: torch.Tensor,
        confidences: torch.Tensor | None,
        has_calibration: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, V, K, 2)`` points -> the points with unusable views set to NaN (so that
        triangulation and error skip them) and the DLT weights ``(B, V, K)``. A view is
        unusable when its prediction is not finite, its confidence is below
        ``prob_threshold`` or zero, or its frame has no calibration."""
        usable = torch.isfinite(points).all(-1)
        if has_calibration is not None:
            usable = usable & has_calibration.to(device=points.device, dtype=torch.bool)[
                :, None, None]
        if confidences is None:
            weights = usable.to(points.dtype)
        else:
            conf = confidences.detach().reshape(usable.shape).to(points.dtype)
            usable = usable & (conf >= self.params.prob_threshold) & (conf > 0)
            weights = torch.where(usable, conf, 0.0)
        points = torch.where(usable[..., None], points, float("nan"))
        return points, weights

    def compute_loss(
        self, points: torch.Tensor, weights: torch.Tensor, cameras: CameraTensors
    ) -> torch.Tensor:
        """Pixel reprojection errors ``(B, V, K)``; NaN where a view or the 3D point is missing."""
        cams = cameras.to(dtype=points.dtype)
        args = (cams.intrinsics, cams.extrinsics, cams.distortions)
        points_3d = triangulate(points, *args, weights=weights)  # (B, K, 3)
        return reprojection_error(points_3d, points, *args)

    def forward(
        self,
        *,
        keypoints_pred: torch.Tensor,
        cameras: CameraTensors,
        confidences: torch.Tensor | None = None,
        has_calibration: torch.Tensor | None = None,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        batch = keypoints_pred.shape[0]
        points = keypoints_pred.reshape(batch, cameras.num_views, -1, 2)
        points, weights = self.remove_nans(points, confidences, has_calibration)
        errors = self.compute_loss(points, weights, cameras)
        valid = torch.isfinite(errors)
        errors = torch.where(valid, errors, 0.0)
        valid, logs = drop_outliers(errors, valid, self.params.max_error,
                                    f"{stage}_{self.loss_name}_outlier_fraction")
        scalar = self.reduce_loss(self.rectify_epsilon(errors)[valid], method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage) + logs
