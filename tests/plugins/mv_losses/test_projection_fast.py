"""The 3D losses end to end (2D predictions -> triangulation -> loss, forward and backward) on
mvcore's fast triangulation, pinned to the reference implementation
(``mvcore.geometry._reference``: the eigh solver they replaced): same loss, same gradient of
the 2D predictions, with missing views and uncalibrated frames in the batch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from mv_losses import consistency
from mv_losses.consistency import MultiviewReprojectionLoss
from mv_losses.projection import PairwiseProjectionsLoss

from mvcore import CameraTensors, Context
from mvcore.geometry import _reference as reference
from mvcore.geometry import project_points, triangulate_pairs

B, V, K = 8, 4, 17


def _batch(make_rig: Callable[..., CameraTensors], batched: Callable[..., CameraTensors],
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, CameraTensors, torch.Tensor]:
    """float32 2D ``(B, V, K, 2)`` (1 px noise, ~10 % NaN), 3D targets ``(B, K, 3)`` mm, the
    batch's cameras (the last two frames uncalibrated: placeholder identity cameras) and
    ``has_calibration (B,)``."""
    g = torch.Generator().manual_seed(seed)
    rig = make_rig(V, seed=seed)
    pose = 60 * torch.randn(B, K, 3, generator=g, dtype=torch.float64)
    pix = project_points(pose, rig.intrinsics, rig.extrinsics, rig.distortions)
    pix = pix + torch.randn(pix.shape, generator=g, dtype=torch.float64)
    pix[torch.rand(B, V, K, generator=g) < 0.1] = float("nan")
    cams = batched(rig, B)
    cams.intrinsics[-2:], cams.extrinsics[-2:], cams.distortions[-2:] = (
        torch.eye(3), torch.eye(3, 4), 0.0)
    calibrated = torch.arange(B) < B - 2
    return pix.float(), pose.float(), cams.to(dtype=torch.float32), calibrated


def _loss_and_grad(loss: Callable[[torch.Tensor], torch.Tensor], pix: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = pix.clone().requires_grad_()
    value = loss(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


@pytest.mark.parametrize("max_distance", [None, 5.0])
def test_pairwise_loss_end_to_end_matches_reference(
    max_distance: float | None, rig: Callable[..., CameraTensors],
    batch_cameras: Callable[..., CameraTensors], context: Callable[..., Context],
) -> None:
    pix, pose, cams, calibrated = _batch(rig, batch_cameras)
    ctx = context(num_views=V, num_keypoints=K)
    loss_fn = PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(max_distance=max_distance),
                                      ctx)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)

    def loss(solve: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def value(points: torch.Tensor) -> torch.Tensor:
            # as the training step: frames without calibration are NaN before the loss
            pred = solve(points, *args)
            pred = torch.where(calibrated[:, None, None, None], pred, float("nan"))
            return loss_fn(keypoints_targ_3d=pose, keypoints_pred_3d=pred, stage="train")[0]
        return value

    value, grad = _loss_and_grad(loss(triangulate_pairs), pix)
    value_ref, grad_ref = _loss_and_grad(loss(reference.triangulate_pairs), pix)
    assert 0 < float(value) and grad[~calibrated].eq(0).all() and grad.isfinite().all()
    assert grad[calibrated].abs().sum() > 0
    torch.testing.assert_close(value, value_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5 * float(grad_ref.abs().max()))


def test_multiview_reprojection_loss_matches_reference(
    monkeypatch: pytest.MonkeyPatch, rig: Callable[..., CameraTensors],
    batch_cameras: Callable[..., CameraTensors], context: Callable[..., Context],
) -> None:
    pix, _, cams, calibrated = _batch(rig, batch_cameras, seed=1)
    ctx = context(num_views=V, num_keypoints=K)
    loss_fn = MultiviewReprojectionLoss(MultiviewReprojectionLoss.Params(epsilon=0.5), ctx)
    g = torch.Generator().manual_seed(2)
    conf = 0.3 + 0.7 * torch.rand(B, V * K, generator=g)

    def loss(points: torch.Tensor) -> torch.Tensor:
        return loss_fn(keypoints_pred=points.reshape(B, -1), cameras=cams, confidences=conf,
                       has_calibration=calibrated, stage="train")[0]

    value, grad = _loss_and_grad(loss, pix)
    monkeypatch.setattr(consistency, "triangulate", reference.triangulate)
    value_ref, grad_ref = _loss_and_grad(loss, pix)
    assert 0 < float(value) and grad[~calibrated].eq(0).all()
    torch.testing.assert_close(value, value_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5 * float(grad_ref.abs().max()))


def test_pairwise_masked_mean_equals_the_mean_of_the_valid_terms(
    context: Callable[..., Context],
) -> None:
    # the loss reduces without gathering (no boolean index): same value and gradient as the
    # mean over the gathered valid terms, with NaN pairs and pairs past max_distance left out
    g = torch.Generator().manual_seed(3)
    targets = torch.randn(B, K, 3, generator=g, dtype=torch.float64)
    preds = targets.unsqueeze(1) + torch.randn(B, 6, K, 3, generator=g, dtype=torch.float64)
    preds[0, 1, 2] = float("nan")
    targets[1, 3] = float("nan")
    loss_fn = PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(max_distance=2.0),
                                      context(num_views=V, num_keypoints=K))
    leaf = preds.clone().requires_grad_()
    value = loss_fn(keypoints_targ_3d=targets, keypoints_pred_3d=leaf, stage="train")[0]
    (grad,) = torch.autograd.grad(value, leaf)
    leaf_ref = preds.clone().requires_grad_()
    distances = (leaf_ref - targets.unsqueeze(1)).norm(dim=-1)
    keep = distances.isfinite() & (distances <= 2.0)
    assert 0 < int(keep.sum()) < keep.numel() - 2 * 6 - K
    value_ref = loss_fn.weight * distances[keep].mean()
    (grad_ref,) = torch.autograd.grad(value_ref, leaf_ref)
    torch.testing.assert_close(value, value_ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, grad_ref.nan_to_num(0.0), rtol=1e-10, atol=1e-14)
