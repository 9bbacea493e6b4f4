"""heatmap_mse / heatmap_kl / heatmap_js: values, label removal, gradients, logs."""

from __future__ import annotations

import math

import pytest
import torch
from mv_losses.heatmap import HeatmapJSLoss, HeatmapKLLoss, HeatmapMSELoss
from pydantic import ValidationError

from mvcore import Context
from mvcore.data.heatmaps import render_heatmaps

LOSSES = [HeatmapMSELoss, HeatmapKLLoss, HeatmapJSLoss]
#: 128x128 model input, 32x32 heatmaps (the heatmap losses only compare maps)
CONTEXT = Context(view_names=("a",), keypoint_names=tuple(f"k{i}" for i in range(5)),
                  image_height=128, image_width=128, downsample_factor=2)


def _build(cls, **params):
    return cls(cls.Params(**params), CONTEXT)


def _call(loss, targets, preds, stage="train"):
    return loss(heatmaps_targ=targets, heatmaps_pred=preds, stage=stage)


def _maps(batch: int = 3, keypoints: int = 5, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    points = 8 + 112 * torch.rand(batch, keypoints, 2, generator=g, dtype=torch.float64)
    return render_heatmaps(points, (128, 128), (32, 32)).to(dtype)


@pytest.mark.parametrize("cls", LOSSES)
def test_identical_maps_give_zero_and_logs(cls):
    targets = _maps()
    loss = _build(cls, log_weight=1.0)
    weighted, logs = _call(loss, targets, targets.clone())
    unweighted = logs[0]["value"]
    assert abs(float(unweighted)) < 1e-6
    assert logs[0]["name"] == f"train_{cls.loss_name}_loss"
    assert logs[1]["name"] == f"{cls.loss_name}_weight"
    assert torch.isclose(logs[1]["value"], torch.tensor(1 / (2 * math.e)))
    assert cls.annealed is False


@pytest.mark.parametrize("cls", LOSSES)
def test_weighted_is_weight_times_unweighted_and_shift_increases(cls):
    targets = _maps()
    shifted = targets.roll(1, dims=0)
    loss = _build(cls, log_weight=0.3)
    weighted, logs = _call(loss, targets, shifted, stage="val")
    assert float(logs[0]["value"]) > 0.01
    assert torch.isclose(weighted, loss.weight * logs[0]["value"])
    assert logs[0]["name"] == f"val_{cls.loss_name}_loss"


def test_kl_and_js_known_values_on_two_pixel_maps():
    targets = torch.tensor([0.5, 0.5]).reshape(1, 1, 1, 2)
    preds = torch.tensor([0.25, 0.75]).reshape(1, 1, 1, 2)
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(target || pred)
    m = [0.375, 0.625]
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    )
    _, kl_logs = _call(_build(HeatmapKLLoss), targets, preds)
    _, js_logs = _call(_build(HeatmapJSLoss), targets, preds)
    assert float(kl_logs[0]["value"]) == pytest.approx(kl, rel=1e-5)
    assert float(js_logs[0]["value"]) == pytest.approx(js, rel=1e-5)
    # MSE: per-map sum of squared errors (mean over pixels times h * w)
    _, mse_logs = _call(_build(HeatmapMSELoss), targets, preds)
    assert float(mse_logs[0]["value"]) == pytest.approx(2 * 0.25**2)


def test_js_of_disjoint_maps_is_ln2():
    targets = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    preds = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    _, logs = _call(_build(HeatmapJSLoss), targets, preds)
    assert float(logs[0]["value"]) == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("cls", LOSSES)
def test_unlabelled_maps_are_removed(cls):
    targets = _maps(dtype=torch.float64)
    preds = _maps(seed=1, dtype=torch.float64)
    cut = targets.clone()
    cut[0, 1] = 0.0  # no label
    cut[2, 3] = float("nan")  # NaN label
    loss = _build(cls)
    _, logs = _call(loss, cut, preds)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[0, 1] = keep[2, 3] = False
    _, reference = _call(loss, targets[keep][None], preds[keep][None])
    assert torch.isclose(logs[0]["value"], reference[0]["value"])
    assert logs[0]["value"].dtype == torch.float64


@pytest.mark.parametrize("cls", LOSSES)
def test_all_unlabelled_gives_graph_preserving_zero(cls):
    preds = _maps().requires_grad_(True)
    weighted, _ = _call(_build(cls), torch.zeros_like(preds), preds)
    weighted.backward()
    assert float(weighted.detach()) == 0.0
    assert preds.grad is not None and torch.isfinite(preds.grad).all()


@pytest.mark.parametrize("cls", LOSSES)
def test_gradients_finite_and_nonzero(cls):
    targets = _maps()
    logits = torch.randn(3, 5, 32, 32, generator=torch.Generator().manual_seed(2))
    logits.requires_grad_(True)
    preds = logits.flatten(-2).softmax(-1).reshape_as(logits)
    weighted, _ = _call(_build(cls), targets, preds)
    weighted.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", LOSSES)
def test_heatmap_losses_have_no_epsilon(cls):
    """A heatmap loss is not epsilon-insensitive: a non-zero epsilon is refused (it used to be
    dropped silently), null and 0 are accepted and cost nothing."""
    with pytest.raises(ValidationError, match="heatmap losses have no epsilon"):
        cls.Params(epsilon=0.1)
    with pytest.raises(ValidationError, match="heatmap losses have no epsilon"):
        cls.Params.model_validate({"epsilon": 2.0})
    targets, preds = _maps(), _maps(seed=1)
    values = [float(_call(_build(cls, epsilon=eps), targets, preds)[1][0]["value"])
              for eps in (None, 0.0)]
    assert values[0] == values[1] > 0.01
