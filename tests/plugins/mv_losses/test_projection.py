"""supervised_pairwise_projections and supervised_reprojection_heatmap_mse."""

from __future__ import annotations

import math

import pytest
import torch
from mv_losses.heatmap import HeatmapMSELoss
from mv_losses.projection import PairwiseProjectionsLoss, ReprojectionHeatmapLoss
from pydantic import ValidationError

from mvcore import Context
from mvcore.build import loss_input_errors
from mvcore.data.heatmaps import render_heatmaps

NAN = float("nan")
CONTEXT = Context(
    view_names=("a", "b"),
    keypoint_names=("k0", "k1", "k2"),
    image_height=256,
    image_width=256,
    downsample_factor=2,  # 64x64 heatmaps
    has_calibration=True,
)


def _pairwise(**params) -> PairwiseProjectionsLoss:
    return PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(**params), CONTEXT)


def _reprojection(context: Context = CONTEXT, **params) -> ReprojectionHeatmapLoss:
    return ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(**params), context)


def _pair_call(loss, targets, preds, stage="train"):
    return loss(keypoints_targ_3d=targets, keypoints_pred_3d=preds, stage=stage)


def _heat_call(loss, targets, points, stage="train"):
    return loss(heatmaps_targ=targets, keypoints_pred_2d_reprojected=points, stage=stage)

# ----------------------------------------------------------------- pairwise projections


def test_pairwise_zero_and_logs():
    loss = _pairwise(log_weight=0.0)
    weighted, logs = _pair_call(loss, torch.ones(2, 4, 3), torch.ones(2, 3, 4, 3))
    assert float(weighted) == 0.0
    assert logs[0]["name"] == "train_supervised_pairwise_projections_loss"
    assert logs[1]["name"] == "supervised_pairwise_projections_weight"
    assert PairwiseProjectionsLoss.annealed and PairwiseProjectionsLoss.supervised


def test_pairwise_known_value_and_weighting():
    loss = _pairwise(log_weight=1.5)
    targets = torch.zeros(2, 4, 3)
    preds = torch.ones(2, 3, 4, 3)
    preds[1, 2] = 2.0  # one pair of one frame twice as far
    weighted, logs = _pair_call(loss, targets, preds)
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
    weighted, logs = _pair_call(_pairwise(), targets, preds)
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
    weighted, logs = _pair_call(_pairwise(), targets, preds, stage="val")
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
    weighted, _ = _pair_call(_pairwise(), torch.ones(1, 2, 3), preds)
    weighted.backward()
    assert torch.isfinite(preds.grad).all()


def test_pairwise_epsilon_rectifies():
    loss = _pairwise(epsilon=1.0)
    _, logs = _pair_call(loss, torch.zeros(1, 2, 3), torch.ones(1, 1, 2, 3))
    assert float(logs[0]["value"]) == pytest.approx(math.sqrt(3) - 1.0)


def test_pairwise_missing_input_is_refused_before_training():
    """The 3D inputs exist only for calibrated projects: an uncalibrated project is refused
    when the run is planned (naming the inputs and the fix), and a call without them fails."""
    name = PairwiseProjectionsLoss.loss_name
    assert not loss_input_errors(PairwiseProjectionsLoss, name, calibrated=True)
    errors = loss_input_errors(PairwiseProjectionsLoss, name, calibrated=False)
    assert len(errors) == 1
    message = str(errors[0])
    assert "requires keypoints_pred_3d, keypoints_targ_3d" in message
    assert "calibrated projects" in message and f"losses.{name}.log_weight: null" in message
    with pytest.raises(TypeError, match="keypoints_targ_3d"):
        _pairwise()(keypoints_pred_3d=torch.ones(1, 1, 2, 3), stage="val")
    with pytest.raises(TypeError, match="keypoints_pred_3d"):
        _pairwise()(keypoints_targ_3d=torch.ones(1, 2, 3), stage="train")


# ----------------------------------------------------------------- reprojection heatmap


def _labels(seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 20 + 216 * torch.rand(2, 6, 2, generator=g, dtype=dtype)  # (B, V*K, 2) model px


def test_reprojection_defaults():
    loss = _reprojection()
    assert float(loss.log_weight) == 3.0 and loss.params.sigma == 1.25
    assert ReprojectionHeatmapLoss.annealed and ReprojectionHeatmapLoss.supervised
    params = ReprojectionHeatmapLoss.Params()
    assert params.log_weight == 3.0 and params.sigma == 1.25


def test_reprojection_at_the_labels_is_zero_and_logs():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64))
    loss = _reprojection()
    weighted, logs = _heat_call(loss, targets, points.clone())
    assert float(logs[0]["value"]) < 1e-12
    assert logs[0]["name"] == "train_supervised_reprojection_heatmap_mse_loss"
    assert logs[1]["name"] == "supervised_reprojection_heatmap_mse_weight"


def test_reprojection_shift_equals_heatmap_mse_and_is_scaled_per_map():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64))
    targets[1, 4] = 0.0  # an unlabelled keypoint is ignored
    shifted = points + torch.tensor([3.0, -2.0], dtype=torch.float64)
    loss = _reprojection(log_weight=0.5)
    weighted, logs = _heat_call(loss, targets, shifted)
    rendered = render_heatmaps(shifted, (256, 256), (64, 64))
    mse = HeatmapMSELoss(HeatmapMSELoss.Params(), CONTEXT)
    _, mse_logs = mse(heatmaps_targ=targets, heatmaps_pred=rendered, stage="train")
    assert torch.allclose(logs[0]["value"], mse_logs[0]["value"], rtol=1e-12)
    # per-map sum of squared errors averaged over the 11 labelled maps (not LP's N * h scaling)
    keep = targets.flatten(-2).sum(-1) > 0
    sse = ((targets - rendered) ** 2).sum((-2, -1))[keep].mean()
    assert torch.isclose(logs[0]["value"], sse)
    assert torch.isclose(weighted, loss.weight.double() * logs[0]["value"])


def test_reprojection_sigma_is_a_parameter():
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64), sigma=2.0)
    _, wide = _heat_call(_reprojection(sigma=2.0), targets, points)
    _, narrow = _heat_call(_reprojection(), targets, points)
    assert float(wide[0]["value"]) < 1e-12 < float(narrow[0]["value"])


def test_reprojection_gradients_flow_to_the_keypoints():
    points = _labels(dtype=torch.float32)
    targets = render_heatmaps(points, (256, 256), (64, 64))
    shifted = (points + 2.5).requires_grad_(True)
    weighted, _ = _heat_call(_reprojection(), targets, shifted)
    weighted.backward()
    assert torch.isfinite(shifted.grad).all() and (shifted.grad.abs().sum(-1) > 0).all()


def test_reprojection_all_zero_targets_and_nan_points():
    points = _labels().requires_grad_(True)
    weighted, logs = _heat_call(
        _reprojection(), torch.zeros(2, 6, 64, 64, dtype=torch.float64), points
    )
    weighted.backward()
    assert float(logs[0]["value"]) == 0.0 and torch.isfinite(points.grad).all()
    # a NaN reprojection (failed triangulation) is dropped like a missing label
    labels = _labels()
    targets = render_heatmaps(labels, (256, 256), (64, 64))
    broken = labels.clone()
    broken[0, 0] = NAN
    _, logs = _heat_call(_reprojection(), targets, broken)
    assert float(logs[0]["value"]) < 1e-12


def test_reprojection_missing_input_and_context():
    targets = torch.zeros(1, 6, 64, 64)
    name = ReprojectionHeatmapLoss.loss_name
    errors = loss_input_errors(ReprojectionHeatmapLoss, name, calibrated=False)
    assert len(errors) == 1
    assert "requires keypoints_pred_2d_reprojected" in str(errors[0])
    assert "calibrated projects" in str(errors[0])
    assert not loss_input_errors(ReprojectionHeatmapLoss, name, calibrated=True)
    with pytest.raises(TypeError, match="keypoints_pred_2d_reprojected"):
        _reprojection()(heatmaps_targ=targets, stage="test")
    # the model input size comes from the context: the same heatmap size (64x64) rendered
    # from a 512x512 input puts the same pixel coordinates elsewhere in the map
    points = _labels()
    targets = render_heatmaps(points, (256, 256), (64, 64))
    large = Context(view_names=("a", "b"), keypoint_names=("k0", "k1", "k2"),
                    image_height=512, image_width=512, downsample_factor=3)
    assert large.heatmap_size == (64, 64)
    _, same = _heat_call(_reprojection(), targets, points)
    _, elsewhere = _heat_call(_reprojection(large), targets, points)
    assert float(same[0]["value"]) < 1e-12
    assert float(elsewhere[0]["value"]) > 0.05  # ~ 2 / (4 pi sigma^2): disjoint maps
    # the same place of the image in 512x512 pixels (pixel centres: x' + 0.5 = 2 (x + 0.5))
    _, rescaled = _heat_call(_reprojection(large), targets, 2 * points + 0.5)
    assert float(rescaled[0]["value"]) < 1e-12
    with pytest.raises(ValueError, match="64x64"):
        _heat_call(_reprojection(), torch.zeros(1, 6, 32, 32), torch.zeros(1, 6, 2))
    with pytest.raises(ValidationError, match="no epsilon"):
        ReprojectionHeatmapLoss.Params(epsilon=2.0)
    assert issubclass(ReprojectionHeatmapLoss.Params, HeatmapMSELoss.Params)
    assert ReprojectionHeatmapLoss.Params(epsilon=0.0).epsilon == 0.0


def test_pairwise_max_distance_drops_far_pairs_and_their_gradient():
    targets = torch.zeros(1, 2, 3)
    predictions = torch.zeros(1, 3, 2, 3)
    predictions[0, 0, 0, 0] = 3.0  # an inlier 3 units away
    predictions[0, 1, 1, 0] = 5000.0  # a pair whose rays met far away
    predictions.requires_grad_(True)
    capped = _pairwise(log_weight=0.0, max_distance=100.0)
    value, logs = capped(keypoints_targ_3d=targets, keypoints_pred_3d=predictions, stage="train")
    assert value.item() == pytest.approx(0.5 * 3.0 / 5)  # mean over the 5 inlier entries
    value.backward()
    assert predictions.grad[0, 1, 1].abs().sum() == 0 and predictions.grad[0, 0, 0, 0] > 0
    fraction = {item["name"]: float(item["value"]) for item in logs}
    name = "train_supervised_pairwise_projections_outlier_fraction"
    assert fraction[name] == pytest.approx(1 / 6)
    plain = _pairwise(log_weight=0.0)
    value, _ = plain(keypoints_targ_3d=targets, keypoints_pred_3d=predictions.detach(),
                     stage="train")
    assert value.item() == pytest.approx(0.5 * 5003.0 / 6)  # LP's formula keeps every pair
