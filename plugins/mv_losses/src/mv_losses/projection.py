"""Supervised 3D losses of the multi-view transformer (calibrated projects only).

- ``supervised_pairwise_projections``: Euclidean distance between the 3D target of each keypoint
  and its prediction triangulated from every camera pair.
- ``supervised_reprojection_heatmap_mse``: the predicted 3D points reprojected into every view
  are rendered as heatmaps and compared with the target heatmaps exactly like ``heatmap_mse``,
  so the two losses are on the same scale.

Both are annealed (``callbacks.anneal_weight``), as in Lightning Pose.
"""

from __future__ import annotations

import torch
from pydantic import Field

from mv_losses.checks import check_epsilon_length
from mv_losses.fused import reprojection_sse
from mv_losses.heatmap import HeatmapLossParams, HeatmapMSELoss
from mv_losses.outliers import drop_outliers
from mvcore import Context, LogList, Loss, LossParams, Stage
from mvcore.data.heatmaps import render_heatmaps


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the last axis with a finite (zero) gradient at 0."""
    sq = (x * x).sum(-1)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of the finite ``values`` where ``valid`` (both ``(B, P, K)``), as
    ``reduce_loss(values[valid])`` but without gathering them (a boolean index is a nonzero
    pass forward and a scatter backward, a third of this loss's time); 0 keeping the graph
    when nothing is valid."""
    mask = valid.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class PairwiseProjectionsParams(LossParams):
    #: the seed documentation's example value (Lightning Pose's class default is 0.0)
    log_weight: float | None = 0.5
    #: distances below epsilon (world units; scalar or one value per keypoint) cost nothing
    epsilon: float | list[float] | None = 0.0
    #: pairs whose 3D distance exceeds this (world units) are left out: rays of a pair that
    #: disagree (one view's detection on the wrong spot) meet far away and their gradient would
    #: swamp every other loss. None keeps every pair (Lightning Pose's formula).
    max_distance: float | None = Field(None, gt=0.0)


class PairwiseProjectionsLoss(Loss):
    """Mean Euclidean distance between 3D targets and pairwise-triangulated 3D predictions.

    Inputs: ``keypoints_targ_3d (B, K, 3)``, ``keypoints_pred_3d (B, P, K, 3)`` (P camera
    pairs), world units. Every ``(b, pair, k)`` whose target or prediction has a NaN is
    dropped; the mean runs over the rest, and is a zero that keeps the graph (finite
    gradients) when nothing is valid.
    """

    loss_name = "supervised_pairwise_projections"
    Params = PairwiseProjectionsParams
    params: PairwiseProjectionsParams

    @classmethod
    def validate_context(cls, params: PairwiseProjectionsParams, context: Context) -> None:
        check_epsilon_length(params, context)

    def remove_nans(
        self, targets: torch.Tensor, predictions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Broadcast ``(B, K, 3)`` targets against ``(B, P, K, 3)`` predictions, replace missing
        entries by zeros (so no NaN reaches the backward pass) -> both ``(B, P, K, 3)`` and the
        validity mask ``(B, P, K)``."""
        targets = targets.unsqueeze(1).expand_as(predictions)
        valid = torch.isfinite(targets).all(-1) & torch.isfinite(predictions).all(-1)
        keep = valid[..., None]
        targets = torch.where(keep, targets, torch.zeros_like(targets))
        predictions = torch.where(keep, predictions, torch.zeros_like(predictions))
        return targets, predictions, valid

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(B, P, K, 3)`` -> Euclidean distances ``(B, P, K)``."""
        return _safe_norm(predictions - targets)

    def forward(
        self, *, keypoints_targ_3d: torch.Tensor, keypoints_pred_3d: torch.Tensor,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        targets, predictions, valid = self.remove_nans(keypoints_targ_3d, keypoints_pred_3d)
        distances = self.compute_loss(targets, predictions)
        valid, logs = drop_outliers(distances, valid, self.params.max_distance,
                                    f"{stage}_{self.loss_name}_outlier_fraction")
        elementwise = self.rectify_epsilon(distances)
        scalar = _masked_mean(elementwise, valid)
        return self.weight * scalar, self.log_loss(scalar, stage) + logs


class ReprojectionHeatmapParams(HeatmapLossParams):
    """Like ``heatmap_mse``'s (no epsilon), plus the width of the rendered maps."""

    #: the 2026 documentation's default (3.5 is its steadier alternative)
    log_weight: float | None = 3.0
    #: Gaussian width of the rendered heatmaps, in heatmap pixels (as the targets)
    sigma: float = Field(1.25, gt=0.0)


class ReprojectionHeatmapLoss(HeatmapMSELoss):
    """``heatmap_mse`` between target heatmaps and heatmaps rendered at the reprojected
    predicted 3D keypoints.

    Inputs: ``heatmaps_targ (B, N, h, w)`` and ``keypoints_pred_2d_reprojected (B, N, 2)`` in
    model pixels. Maps are rendered as by ``render_heatmaps`` (model size and heatmap size from
    the ``Context``), differentiably in the keypoints. As ``heatmap_mse``: maps whose target
    is NaN or all zero are dropped and each map's squared error is scaled by ``h * w`` (LP
    scales 4-D input by ``N * h`` instead, its bug B1). Keypoints whose reprojection is NaN
    (triangulation failed, uncalibrated frame) are dropped too: a zero map would only add a
    constant without gradient. Annealed, unlike ``heatmap_mse``.

    The rendered maps are never formed: a Gaussian map is separable, so its squared error
    against a target reduces to one pass over the targets (``fused.reprojection_sse``);
    ``_dense_reference`` renders them, as the tests' reference.
    """

    loss_name = "supervised_reprojection_heatmap_mse"
    Params = ReprojectionHeatmapParams
    params: ReprojectionHeatmapParams
    annealed = True

    def forward(
        self, *, heatmaps_targ: torch.Tensor, keypoints_pred_2d_reprojected: torch.Tensor,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        h, w = self._check_size(heatmaps_targ)
        if heatmaps_targ.requires_grad:  # targets are data; the fast path does not derive them
            scalar = self._dense_reference(heatmaps_targ, keypoints_pred_2d_reprojected)
        else:
            keypoints = keypoints_pred_2d_reprojected.to(heatmaps_targ.dtype)
            sse, valid = reprojection_sse(heatmaps_targ.reshape(-1, h, w),
                                          keypoints.reshape(-1, 2), self.context.image_size,
                                          self.params.sigma, grid=self.context.heatmap_grid)
            scalar = self.reduce_loss(sse[valid], method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage)

    def _check_size(self, heatmaps_targ: torch.Tensor) -> tuple[int, int]:
        """The heatmap size ``(h, w)``, which must be the context's."""
        ctx = self.context
        h, w = heatmaps_targ.shape[-2:]
        if ctx.heatmap_size != (h, w):
            raise ValueError(
                f"{self.loss_name}: target heatmaps are {h}x{w} but the context says "
                f"{ctx.heatmap_height}x{ctx.heatmap_width}"
            )
        return h, w

    def _dense_reference(self, heatmaps_targ: torch.Tensor,
                         keypoints_pred_2d_reprojected: torch.Tensor) -> torch.Tensor:
        """The unweighted loss with the ``(B, N, h, w)`` maps rendered (``render_heatmaps``)
        and compared like ``heatmap_mse``: the fast path's reference."""
        h, w = self._check_size(heatmaps_targ)
        keypoints = keypoints_pred_2d_reprojected.to(heatmaps_targ.dtype)
        rendered = render_heatmaps(keypoints, self.context.image_size, (h, w),
                                   sigma=self.params.sigma, grid=self.context.heatmap_grid)
        # a NaN reprojection removes the map, like a missing label
        missing = ~torch.isfinite(keypoints).all(-1)
        targets = torch.where(missing[..., None, None], 0.0, heatmaps_targ)
        return super()._dense_reference(targets, rendered)
