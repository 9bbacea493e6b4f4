"""multiview_reprojection: triangulate predictions of unlabelled frames, reproject, penalise."""

from __future__ import annotations

import pytest
import torch
from mv_losses.consistency import MultiviewReprojectionLoss

from mvcore import CameraTensors, Context
from mvcore.geometry import project_points

F64 = torch.float64
#: the 4-camera rig of ``_scene``; the loss reads the views from the cameras
CONTEXT = Context(view_names=tuple("abcd"), keypoint_names=tuple(f"k{i}" for i in range(5)),
                  image_height=1024, image_width=1280, has_calibration=True)


def _loss(**params) -> MultiviewReprojectionLoss:
    return MultiviewReprojectionLoss(MultiviewReprojectionLoss.Params(**params), CONTEXT)


def _scene(rig, batch: int = 3, keypoints: int = 5, dtype=F64):
    """Consistent predictions ``(B, 2N)`` of random 3D points seen by a 4-camera rig, and
    the rig's cameras for every frame ``(B, V, ...)``."""
    rig_cameras = rig(4, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    points_3d = 100 * (2 * torch.rand(batch, keypoints, 3, generator=g, dtype=F64) - 1)
    pix = project_points(points_3d.to(dtype), rig_cameras.intrinsics, rig_cameras.extrinsics,
                         rig_cameras.distortions)  # (B, V, K, 2)
    cams = CameraTensors(*(t.expand(batch, *t.shape) for t in (
        rig_cameras.intrinsics, rig_cameras.extrinsics, rig_cameras.distortions)))
    return pix.reshape(batch, -1), cams


def _call(loss, preds, cams, **inputs):
    return loss(keypoints_pred=preds, cameras=cams, stage="train", **inputs)


def test_consistent_predictions_cost_nothing(rig):
    preds, cams = _scene(rig)
    weighted, logs = _call(_loss(epsilon=0.0), preds, cams)
    assert float(logs[0]["value"]) < 1e-6
    assert logs[0]["name"] == "train_multiview_reprojection_loss"
    assert logs[1]["name"] == "multiview_reprojection_weight"
    params = MultiviewReprojectionLoss.Params()
    assert (params.log_weight, params.epsilon, params.prob_threshold) == (6.0, 5.0, 0.0)
    assert params.max_error == 100.0
    assert MultiviewReprojectionLoss.supervised is False and MultiviewReprojectionLoss.annealed


def test_known_value_when_one_view_is_off_and_barely_trusted(rig):
    """Views 0-2 agree; view 3 is 6 px off with confidence 1e-4: the triangulation follows
    views 0-2, so the errors are (0, 0, 0, 6) px for that keypoint and the mean over the 4 views
    of the single keypoint is 1.5 px."""
    preds, cams = _scene(rig, batch=1, keypoints=1)
    off = preds.clone()
    off[0, 6:8] += torch.tensor([6.0, 0.0], dtype=F64)  # view 3, keypoint 0
    conf = torch.tensor([[1.0, 1.0, 1.0, 1e-4]], dtype=F64)
    loss = _loss(epsilon=0.0, log_weight=1.0)
    weighted, logs = _call(loss, off, cams, confidences=conf)
    assert float(logs[0]["value"]) == pytest.approx(1.5, rel=1e-3)
    assert torch.isclose(weighted, loss.weight.double() * logs[0]["value"])
    # with epsilon 1 px: only view 3 is above it
    _, logs = _call(_loss(epsilon=1.0), off, cams, confidences=conf)
    assert float(logs[0]["value"]) == pytest.approx(5.0 / 4, rel=1e-3)


def test_views_below_threshold_are_excluded(rig):
    preds, cams = _scene(rig)
    off = preds.clone()
    off[:, 6 * 5 : 6 * 5 + 2] += 40.0  # view 3, keypoint 0 of every frame far off
    conf = torch.ones(3, 20, dtype=F64)
    conf[:, 15] = 0.01  # view 3, keypoint 0
    loss = _loss(epsilon=0.0, prob_threshold=0.05)
    _, logs = _call(loss, off, cams, confidences=conf)
    assert float(logs[0]["value"]) < 1e-6
    _, logs = _call(_loss(epsilon=0.0), off, cams, confidences=conf)
    assert float(logs[0]["value"]) > 1.0


def test_gradients_reach_the_views_finite(rig):
    preds, cams = _scene(rig, dtype=torch.float32)
    noisy = preds + 3 * torch.randn(preds.shape, generator=torch.Generator().manual_seed(1))
    noisy[0, :2] = float("nan")  # a missing prediction
    noisy.requires_grad_(True)
    weighted, logs = _call(_loss(epsilon=0.0), noisy, cams)
    weighted.backward()
    assert logs[0]["value"].dtype == torch.float32 and float(logs[0]["value"]) > 0.5
    assert torch.isfinite(noisy.grad).all()
    assert noisy.grad[0, :2].abs().sum() == 0
    assert (noisy.grad[1:].abs() > 0).float().mean() > 0.9


def test_unbatched_cameras_nan_and_single_view_keypoints(rig):
    preds, cams = _scene(rig)
    unbatched = cams[0]  # (V, ...): the same cameras for every frame
    assert unbatched.intrinsics.shape == (4, 3, 3)
    # keypoint 0 visible in one view only -> not triangulable -> skipped
    single = preds.clone().reshape(3, 4, 5, 2)
    single[:, 1:, 0] = float("nan")
    single = single.reshape(3, -1).requires_grad_(True)
    loss = _loss(epsilon=0.0)
    weighted, logs = loss(keypoints_pred=single, cameras=unbatched, stage="val")
    weighted.backward()
    assert float(logs[0]["value"]) < 1e-6 and torch.isfinite(single.grad).all()
    everything_missing = torch.full_like(preds, float("nan")).requires_grad_(True)
    weighted, logs = loss(keypoints_pred=everything_missing, cameras=unbatched)
    weighted.backward()
    assert float(logs[0]["value"]) == 0.0 and torch.isfinite(everything_missing.grad).all()


def test_max_error_leaves_out_wild_reprojections_and_their_gradient(rig):
    """Frame 0: views 0-2 agree and view 3 (barely trusted) is 6 px off -> errors (0, 0, 0, 6).
    Frame 1: view 3 is 5000 px off -> an error above max_error, left out with its gradient."""
    preds, cams = _scene(rig, batch=2, keypoints=1)
    off = preds.clone()
    off[0, 6] += 6.0
    off[1, 6] += 5000.0
    off.requires_grad_(True)
    conf = torch.tensor([[1.0, 1.0, 1.0, 1e-4]] * 2, dtype=F64)
    loss = _loss(epsilon=0.0, max_error=100.0)
    weighted, logs = _call(loss, off, cams, confidences=conf)
    values = {item["name"]: float(item["value"]) for item in logs}
    assert values["train_multiview_reprojection_loss"] == pytest.approx(6.0 / 7, rel=1e-3)
    assert values["train_multiview_reprojection_outlier_fraction"] == pytest.approx(1 / 8)
    weighted.backward()
    assert off.grad[1, 6:8].abs().sum() == 0 and off.grad[0, 6:8].abs().sum() > 0
    _, logs = _call(_loss(epsilon=0.0, max_error=None), off, cams, confidences=conf)
    assert float(logs[0]["value"]) == pytest.approx((6.0 + 5000.0) / 8, rel=1e-3)


def test_frames_without_calibration_are_left_out_with_their_gradient(rig):
    """Frame 1 belongs to an uncalibrated session: its placeholder cameras must not produce a
    loss or a gradient; the value equals the loss of frame 0 alone."""
    preds, cams = _scene(rig, batch=2, keypoints=2)
    noisy = preds + 2 * torch.randn(preds.shape, generator=torch.Generator().manual_seed(4),
                                    dtype=F64)
    noisy.requires_grad_(True)
    loss = _loss(epsilon=0.0)
    weighted, logs = _call(loss, noisy, cams, has_calibration=torch.tensor([True, False]))
    weighted.backward()
    _, alone = _call(loss, noisy[:1].detach(), cams[:1])
    assert float(logs[0]["value"]) == pytest.approx(float(alone[0]["value"]), rel=1e-9)
    assert float(logs[0]["value"]) > 0.5
    assert noisy.grad[1].abs().sum() == 0 and (noisy.grad[0].abs() > 0).all()
    _, none = _call(loss, noisy.detach(), cams, has_calibration=torch.tensor([False, False]))
    assert float(none[0]["value"]) == 0.0
