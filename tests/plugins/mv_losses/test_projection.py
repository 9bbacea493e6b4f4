"""supervised_pairwise_projections and supervised_reprojection_heatmap_mse."""

from __future__ import annotations

import math

import pytest
import torch
from mv_losses.heatmap import HeatmapMSELoss
from mv_losses.projection import PairwiseProjectionsLoss, ReprojectionHeatmapLoss

from mvcore.data.heatmaps import render_heatmaps
from mvcore.losses.base import LossContext

NAN = float("nan")
CONTEXT = LossContext(
    view_names=["a", "b"],
    keypoint_names=["k0", "k1", "k2"],
    image_height=256,
    image_width=256,
    heatmap_height=64,
    heatmap_width=64,
)

# ----------------------------------------------------------------- pairwise projections


def test_pairwise_zero_and_logs():
    loss = PairwiseProjectionsLoss(log_weight=0.0)
    weighted, logs = loss(torch.ones(2, 4, 3), torch.ones(2, 3, 4, 3), stage="train")
    assert float(weighted) == 0.0
    assert logs[0]["name"] == "train_supervised_pairwise_projections_loss"
    assert logs[1]["name"] == "supervised_pairwise_projections_weight"
    assert PairwiseProjectionsLoss.annealed and PairwiseProjectionsLoss.supervised


def test_pairwise_known_value_and_weighting():
    loss = PairwiseProjectionsLoss(log_weight=1.5)
    targets = torch.zeros(2, 4, 3)
    preds = torch.ones(2, 3, 4, 3)
    preds[1, 2] = 2.0  # one pair of one frame twice as far
    weighted, logs = loss(targets, preds, stage="train")
    # 6 (frame, pair) x 4 keypoints: 20 at distance sqrt(3), 4 at 2 sqrt(3)
    expected = (20 * math.sqrt(3) + 4 * 2 * math.sqrt(3)) / 24
    assert float(logs[0]["value"]) == pytest.approx(expected, rel=1e-6)
    assert torch.isclose(weighted, loss.weight * logs[0]["value"])
    assert float(loss.weight) == pytest.approx(1 / (2 * math.exp(1.5)))


@pytest.mark.parametrize("which", ["targets", "preds", "both"])
def test_pairwise_nothing_valid_is_graph_preserving_zero(which):
    targets = torch.ones(1, 4, 3)
    preds = torch.ones(1, 3, 4, 3)
    if which in ("targets", "both"):
        targets = torch.full_like(targets, NAN)
    if which in ("preds", "both"):
        preds = torch.full_like(preds, NAN)
    preds.requires_grad_(True)
    weighted, logs = PairwiseProjectionsLoss()(targets, preds, stage="train")
    weighted.backward()
    assert float(logs[0]["value"]) == 0.0
    assert preds.grad is not None and torch.isfinite(preds.grad).all()


def test_pairwise_partial_nans_are_dropped_with_finite_gradients():
    targets = torch.zeros(1, 4, 3, dtype=torch.float64)
    targets[0, 0] = NAN
    preds = torch.ones(1, 3, 4, 3, dtype=torch.float64)
    preds[0, 1, 1, 0] = NAN
    preds[0, 2] = NAN
    preds.requires_grad_(True)
    weighted, logs = PairwiseProjectionsLoss()(targets, preds, stage="val")
    weighted.backward()
    assert float(logs[0]["value"]) == pytest.approx(math.sqrt(3))
    assert logs[0]["value"].dtype == torch.float64
    grad = preds.grad
    assert torch.isfinite(grad).all()
    # valid entries receive gradient, dropped ones none
    assert (grad[0, 0, 1:].abs().sum(-1) > 0).all()
    assert grad[0, 2].abs().sum() == 0 and grad[0, :, 0].abs().sum() == 0


def test_pairwise_zero_distance_has_finite_gradient():
    preds = torch.ones(1, 1, 2, 3, requires_grad=True)
    weighted, _ = PairwiseProjectionsLoss()(torch.ones(1, 2, 3), preds, stage="train")
    weighted.backward()
    assert torch.isfinite(preds.grad).all()


def test_pairwise_epsilon_rectifies():
    loss = PairwiseProjectionsLoss(epsilon=1.0)
    _, logs = loss(torch.zeros(1, 2, 3), torch.ones(1, 1, 2, 3), stage="train")
    assert float(logs[0]["value"]) == pytest.approx(math.sqrt(3) - 1.0)


def test_pairwise_missing_input_names_the_stage():
    with pytest.raises(ValueError, match="3D keypoints not available for val stage"):
        PairwiseProjectionsLoss()(None, torch.ones(1, 1, 2, 3), stage="val")
    with pytest.raises(ValueError, match="3D keypoints not available for train stage"):
        PairwiseProjectionsLoss()(torch.ones(1, 2, 3), None, stage="train")


# ----------------------------------------------------------------- reprojection heatmap


def _labels(seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 20 + 216 * torch.rand(2, 6, 2, generator=g, dtype=dtype)  # (B, V*K, 2) model px


def test_reprojection_defaults():
    loss = ReprojectionHeatmapLoss(context=CONTEXT)
    assert float(loss.log_weight) == 3.0 and loss.sigma == 1.25
    assert ReprojectionHeatmapLoss.annealed and ReprojectionHeatmapLoss.supervised
    params = ReprojectionHeatmapLoss.Params()
    assert params.log_weight == 3.0 and params.sigma == 1.25


def test_reprojection_at_the_labels_is_zero_and_logs():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64))
    loss = ReprojectionHeatmapLoss(context=CONTEXT)
    weighted, logs = loss(targets, points.clone(), stage="train")
    assert float(logs[0]["value"]) < 1e-12
    assert logs[0]["name"] == "train_supervised_reprojection_heatmap_mse_loss"
    assert logs[1]["name"] == "supervised_reprojection_heatmap_mse_weight"


def test_reprojection_shift_equals_heatmap_mse_and_is_scaled_per_map():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64))
    targets[1, 4] = 0.0  # an unlabelled keypoint is ignored
    shifted = points + torch.tensor([3.0, -2.0], dtype=torch.float64)
    loss = ReprojectionHeatmapLoss(log_weight=0.5, context=CONTEXT)
    weighted, logs = loss(targets, shifted, stage="train")
    rendered = render_heatmaps(shifted, (256, 256), (64, 64))
    _, mse_logs = HeatmapMSELoss()(targets, rendered, stage="train")
    assert torch.allclose(logs[0]["value"], mse_logs[0]["value"], rtol=1e-12)
    # per-map sum of squared errors averaged over the 11 labelled maps (not LP's N * h scaling)
    keep = targets.flatten(-2).sum(-1) > 0
    sse = ((targets - rendered) ** 2).sum((-2, -1))[keep].mean()
    assert torch.isclose(logs[0]["value"], sse)
    assert torch.isclose(weighted, loss.weight.double() * logs[0]["value"])


def test_reprojection_sigma_is_a_parameter():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64), sigma=2.0)
    _, wide = ReprojectionHeatmapLoss(sigma=2.0, context=CONTEXT)(targets, points, stage="train")
    _, narrow = ReprojectionHeatmapLoss(context=CONTEXT)(targets, points, stage="train")
    assert float(wide[0]["value"]) < 1e-12 < float(narrow[0]["value"])


def test_reprojection_gradients_flow_to_the_keypoints():
    points = _labels(dtype=torch.float32)
    targets = render_heatmaps(points, (256, 256), (64, 64))
    shifted = (points + 2.5).requires_grad_(True)
    weighted, _ = ReprojectionHeatmapLoss(context=CONTEXT)(targets, shifted, stage="train")
    weighted.backward()
    assert torch.isfinite(shifted.grad).all() and (shifted.grad.abs().sum(-1) > 0).all()


def test_reprojection_all_zero_targets_and_nan_points():
    points = _labels().requires_grad_(True)
    weighted, logs = ReprojectionHeatmapLoss(context=CONTEXT)(
        torch.zeros(2, 6, 64, 64, dtype=torch.float64), points, stage="train"
    )
    weighted.backward()
    assert float(logs[0]["value"]) == 0.0 and torch.isfinite(points.grad).all()
    # a NaN reprojection (failed triangulation) is dropped like a missing label
    labels = _labels()
    targets = render_heatmaps(labels, (256, 256), (64, 64))
    broken = labels.clone()
    broken[0, 0] = NAN
    _, logs = ReprojectionHeatmapLoss(context=CONTEXT)(targets, broken, stage="train")
    assert float(logs[0]["value"]) < 1e-12


def test_reprojection_missing_input_and_context():
    targets = torch.zeros(1, 6, 64, 64)
    with pytest.raises(ValueError, match="Reprojected keypoints not available for test stage"):
        ReprojectionHeatmapLoss(context=CONTEXT)(targets, None, stage="test")
    with pytest.raises(ValueError, match="model input size"):
        ReprojectionHeatmapLoss()
    with pytest.raises(ValueError, match="64x64"):
        ReprojectionHeatmapLoss(context=CONTEXT)(
            torch.zeros(1, 6, 32, 32), torch.zeros(1, 6, 2), stage="train"
        )
    with pytest.raises(ValueError, match="no epsilon"):
        ReprojectionHeatmapLoss.Params(epsilon=2.0)


def test_pairwise_max_distance_drops_far_pairs_and_their_gradient():
    from mv_losses.projection import PairwiseProjectionsLoss

    targets = torch.zeros(1, 2, 3)
    predictions = torch.zeros(1, 3, 2, 3)
    predictions[0, 0, 0, 0] = 3.0  # an inlier 3 units away
    predictions[0, 1, 1, 0] = 5000.0  # a pair whose rays met far away
    predictions.requires_grad_(True)
    capped = PairwiseProjectionsLoss(log_weight=0.0, max_distance=100.0)
    value, logs = capped(keypoints_targ_3d=targets, keypoints_pred_3d=predictions, stage="train")
    assert value.item() == pytest.approx(0.5 * 3.0 / 5)  # mean over the 5 inlier entries
    value.backward()
    assert predictions.grad[0, 1, 1].abs().sum() == 0 and predictions.grad[0, 0, 0, 0] > 0
    fraction = {item["name"]: float(item["value"]) for item in logs}
    name = "train_supervised_pairwise_projections_outlier_fraction"
    assert fraction[name] == pytest.approx(1 / 6)
    plain = PairwiseProjectionsLoss(log_weight=0.0)
    value, _ = plain(keypoints_targ_3d=targets, keypoints_pred_3d=predictions.detach(),
                     stage="train")
    assert value.item() == pytest.approx(0.5 * 5003.0 / 6)  # LP's formula keeps every pair
