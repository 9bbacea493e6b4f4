"""The fast paths of the heatmap losses (mv_losses.fused) are the dense formulas: values to
1e-5 relative (float32; 1e-10 in float64) and the same gradients, on random inputs and on
inputs built from the real mouse4cam labels and calibration, with NaN labels, NaN and
non-finite targets, keypoints outside the maps and uncalibrated frames."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import torch
from mv_losses.fused import JSPerMap, KLPerMap, SquaredErrorPerMap, map_energy, reprojection_sse
from mv_losses.fused import _profiles as profiles
from mv_losses.heatmap import HeatmapJSLoss, HeatmapKLLoss, HeatmapLoss, HeatmapMSELoss
from mv_losses.projection import ReprojectionHeatmapLoss
from shared_data import MOUSE4CAM

from mvcore import Context
from mvcore.data.bbox import frame_to_model
from mvcore.data.heatmaps import (
    VIS_LABELED,
    VIS_UNIFORM,
    gaussian_profiles,
    render_heatmaps,
)
from mvcore.geometry import load_calibration, project_points, triangulate

F32, F64 = torch.float32, torch.float64
HEATMAP_LOSSES = [HeatmapMSELoss, HeatmapKLLoss, HeatmapJSLoss]
MODEL, HEATMAP = (256, 256), (64, 64)
#: value tolerance: float32 sums in another order (and, for the reprojection loss,
#: sum T^2 - 2 sum T R + sum R^2 instead of sum (T - R)^2); float64 is near exact
RTOL = {F32: 1e-5, F64: 1e-10}


def _context(num_views: int, num_keypoints: int) -> Context:
    return Context(view_names=tuple(f"v{i}" for i in range(num_views)),
                   keypoint_names=tuple(f"k{i}" for i in range(num_keypoints)),
                   image_height=MODEL[0], image_width=MODEL[1], downsample_factor=2,
                   has_calibration=True)


def _value_and_grads(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``fn(*leaves)`` and its gradient with respect to each input (fresh leaves)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    value = fn(*leaves)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def _assert_same_gradient(fast: torch.Tensor, dense: torch.Tensor, dtype: torch.dtype) -> None:
    """Element-wise equal up to rounding relative to the largest component."""
    assert torch.isfinite(fast).all() and torch.isfinite(dense).all()
    scale = float(dense.abs().max())
    assert scale > 0
    atol = (1e-5 if dtype == F32 else 1e-11) * scale
    torch.testing.assert_close(fast, dense, rtol=1e-4 if dtype == F32 else 1e-9, atol=atol)


# ------------------------------------------------------------------------ inputs


def _random_labels(batch: int, maps: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, N, 2)`` model pixels, with keypoints near and beyond every border and NaNs."""
    g = torch.Generator().manual_seed(seed)
    labels = 8 + 240 * torch.rand(batch, maps, 2, generator=g, dtype=F64)
    labels[0, 0] = torch.tensor([-4.0, 100.0])  # heatmap x = -1.375: outside, zero map
    labels[0, 1] = torch.tensor([-2.0, 100.0])  # x = -0.875: inside, a cut Gaussian
    labels[0, 2] = torch.tensor([255.5, 257.4])  # both coordinates past the last pixel
    labels[1, 0] = torch.nan
    return labels.to(dtype)


def _random_targets(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Targets as the data module renders them (zero maps for NaN labels, a uniform map),
    plus a NaN map and an inf map (both dropped)."""
    g = torch.Generator().manual_seed(seed)
    visibility = torch.full(labels.shape[:-1], VIS_LABELED)
    visibility[1, 1] = VIS_UNIFORM
    targets = render_heatmaps(labels, MODEL, HEATMAP, visibility=visibility)
    targets[0, 3] = 0.0  # unlabelled
    targets[1, 2, 5, 7] = torch.nan
    targets[1, 3, 0, 0] = torch.inf
    # noisy targets, so that nothing cancels exactly
    return targets + 1e-3 * torch.rand(targets.shape, generator=g, dtype=targets.dtype) * (
        targets > 0)


@cache
def _mouse4cam() -> tuple[torch.Tensor, torch.Tensor, object]:
    """Labels ``(F=6, V=4, K=15, 2)`` frame pixels (every tenth of the 60 labelled frames,
    NaN where missing), bboxes of the whole 1280x1024 frames ``(F, V, 4)`` and the
    calibration."""
    pd = pytest.importorskip("pandas")
    if not MOUSE4CAM.is_dir():
        pytest.skip(f"mouse4cam data not found at {MOUSE4CAM}")
    group = load_calibration(MOUSE4CAM / "calibration.toml")
    views = []
    for view in group.names:
        frame = pd.read_csv(MOUSE4CAM / f"CollectedData_{view}.csv", header=[0, 1, 2],
                            index_col=0)
        views.append(frame.to_numpy(dtype=np.float64).reshape(len(frame), -1, 2))
    labels = torch.from_numpy(np.stack(views, axis=1))[::10].clone()
    bbox = torch.tensor([0.0, 0.0, 1024.0, 1280.0], dtype=F64).expand(*labels.shape[:2], 4)
    return labels, bbox, group


# ------------------------------------------------------------------------ map_energy


def test_map_energy_is_remove_nans_rule_and_sum_of_squares():
    """Valid = finite and not all zero (``HeatmapLoss.remove_nans``), including the maps
    whose sum of squares underflows to 0 or overflows to inf."""
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(9, 8, 8, generator=g)
    maps[0] = 0.0
    maps[1, 2, 3] = torch.nan
    maps[2, 0, 0] = torch.inf
    maps[3, 0, 0] = -torch.inf
    maps[4] = 1e-30  # squares underflow in float32: still a label
    maps[5] = 0.0
    maps[5, 1, 1] = -1e-40  # one subnormal negative value: not all zero
    maps[6] = 1e30  # squares overflow to inf: finite, so valid
    maps[7] = 1.0 / 64  # uniform map of an unlabelled-but-visible keypoint
    energy, valid = map_energy(maps)
    flat = maps.reshape(9, -1)
    expected = torch.isfinite(flat).all(1) & (flat.abs().sum(1) > 0)
    assert valid.tolist() == expected.tolist()
    assert valid.tolist() == [False, False, False, False, True, True, True, True, True]
    torch.testing.assert_close(energy[[7, 8]], (flat[[7, 8]].double() ** 2).sum(1).float())


# ------------------------------------------------------------------------ reprojection


@pytest.mark.parametrize("sigma", [0.8, 1.25, 3.0])
def test_reprojection_sse_is_the_rendered_squared_error_per_map(sigma):
    labels = _random_labels(3, 7, seed=1, dtype=F64)
    targets = _random_targets(labels, seed=2).reshape(-1, *HEATMAP)
    g = torch.Generator().manual_seed(3)
    points = labels.reshape(-1, 2) + 2.0 * torch.randn(21, 2, generator=g, dtype=F64)
    points[4] = torch.nan  # a failed triangulation
    points[5] = torch.tensor([-30.0, 50.0])  # reprojected outside the map: a zero map
    weights = torch.rand(21, generator=g, dtype=F64)

    def fast(p: torch.Tensor) -> torch.Tensor:
        sse, valid = reprojection_sse(targets, p, MODEL, sigma)
        return (weights * sse)[valid].sum()

    def dense(p: torch.Tensor) -> torch.Tensor:
        rendered = render_heatmaps(p, MODEL, HEATMAP, sigma=sigma)
        flat = targets.reshape(21, -1)
        valid = (torch.isfinite(flat).all(1) & (flat.abs().sum(1) > 0)
                 & torch.isfinite(p).all(-1))
        return (weights[valid] * ((targets[valid] - rendered[valid]) ** 2).sum((-2, -1))).sum()

    sse, valid = reprojection_sse(targets, points, MODEL, sigma)
    # dropped: zero targets (a label outside the map, an unlabelled one, a NaN label), a NaN
    # target, an inf target, a NaN point
    assert (~valid).nonzero()[:, 0].tolist() == [0, 3, 4, 7, 9, 10]
    assert float(sse[5]) == pytest.approx(float((targets[5] ** 2).sum()), rel=1e-12)
    value, (grad,) = _value_and_grads(fast, points)
    ref_value, (ref_grad,) = _value_and_grads(dense, points)
    assert float(value) == pytest.approx(float(ref_value), rel=RTOL[F64])
    _assert_same_gradient(grad, ref_grad, F64)
    # the outside point and the NaN point get no gradient; the cut Gaussian does
    assert (grad[[4, 5]] == 0).all() and (grad[1].abs() > 0).all()


@pytest.mark.parametrize("dtype", [F32, F64])
def test_profiles_are_the_rendered_ones_with_tails_below_the_smallest_normal_flushed(dtype):
    """The fast path's 1-D Gaussians are ``gaussian_profiles``' bit for bit, except values
    below the smallest normal float (subnormal tails, which slow the CPU), which are exactly 0;
    the derivatives are autograd's of ``gaussian_profiles``."""
    sigma = 1.25
    coords = torch.tensor([-0.9, 0.0, 3.3, 31.5, 47.25, 63.0, 63.9], dtype=dtype)
    keypoints = torch.stack([coords * 4 + 1.5, torch.full_like(coords, 100.0)], -1)
    keypoints.requires_grad_(True)
    xy, gx, _, _ = gaussian_profiles(keypoints, MODEL, HEATMAP, sigma)
    torch.testing.assert_close(xy[:, 0].detach(), coords)
    gauss, slope = profiles(xy[:, 0].detach(), HEATMAP[1], sigma)
    tiny = torch.finfo(dtype).tiny
    normal = gx.detach() >= tiny
    assert (~normal & (gx.detach() > 0)).any()  # there are subnormal tails to flush
    assert torch.equal(gauss[normal], gx.detach()[normal])
    assert (gauss[~normal] == 0).all()
    # d gx / d x_model = d gx / d coord / 4 (model -> heatmap pixels)
    jacobian = torch.stack([
        torch.autograd.grad(gx[:, j].sum(), keypoints, retain_graph=True)[0][:, 0] * 4
        for j in range(HEATMAP[1])], -1)
    torch.testing.assert_close(slope, torch.where(normal, jacobian, 0.0),
                               rtol=1e-5 if dtype == F32 else 1e-12, atol=0)


def test_reprojection_sse_of_the_exact_rendered_target_is_near_zero():
    """The one caveat of ``sum T^2 - 2 sum T R + sum R^2``: when the rendered map equals the
    target it cancels, leaving a float32 rounding error far below any real error (~1e-8
    against ~0.05 for one pixel off) and a gradient near zero."""
    labels = _random_labels(2, 5, seed=20, dtype=F32).reshape(-1, 2)
    targets = render_heatmaps(labels, MODEL, HEATMAP)
    points = labels.clone().requires_grad_(True)
    sse, valid = reprojection_sse(targets, points, MODEL, 1.25)
    assert valid.sum() >= 7
    assert sse[valid].abs().max() < 1e-6
    off, _ = reprojection_sse(targets, labels + torch.tensor([4.0, 0.0]), MODEL, 1.25)
    assert (off[valid] > 1e-2).all()
    sse[valid].sum().backward()
    assert points.grad.abs().max() < 1e-4


@pytest.mark.parametrize("per_map", [SquaredErrorPerMap, KLPerMap, JSPerMap])
def test_per_map_backward_twice_gives_the_same_gradient(per_map):
    """The first backward hands out the gradient map made in the forward; a second backward
    of the same graph (``retain_graph=True``) rebuilds it from the inputs: same gradient,
    zero on invalid maps."""
    labels = _random_labels(2, 4, seed=21, dtype=F64)
    targets = _random_targets(labels, seed=22).reshape(-1, *HEATMAP)
    _, valid = map_energy(targets)
    maps = _predictions(targets.shape, seed=23, dtype=F64).flatten(-2).softmax(-1)
    maps = maps.reshape_as(targets).requires_grad_(True)
    weights = torch.rand(len(targets), generator=torch.Generator().manual_seed(24),
                         dtype=F64)
    total = (per_map.apply(maps, targets, valid)[valid] * weights[valid]).sum()
    first, = torch.autograd.grad(total, maps, retain_graph=True)
    second, = torch.autograd.grad(total, maps)
    assert torch.equal(first, second)
    assert (first[~valid] == 0).all() and (first[valid].abs().sum((-2, -1)) > 0).all()


@pytest.mark.parametrize("dtype", [F32, F64])
def test_reprojection_loss_fast_equals_dense_on_random_inputs(dtype):
    labels = _random_labels(4, 6, seed=4, dtype=dtype)
    targets = _random_targets(labels, seed=5)
    g = torch.Generator().manual_seed(6)
    points = (labels + 2.5 * torch.randn(labels.shape, generator=g, dtype=F64).to(dtype))
    points[2, 3] = torch.nan
    context = _context(2, 3)
    loss = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), context)
    fast, (grad,) = _value_and_grads(
        lambda p: loss(heatmaps_targ=targets, keypoints_pred_2d_reprojected=p)[0], points)
    dense, (ref_grad,) = _value_and_grads(
        lambda p: loss.weight * loss._dense_reference(targets, p), points)
    assert fast.dtype == dtype and float(fast) > 0
    assert float(fast) == pytest.approx(float(dense), rel=RTOL[dtype])
    _assert_same_gradient(grad, ref_grad, dtype)


def _mouse4cam_reprojection_inputs(dtype: torch.dtype, noise_px: float, uncalibrated: list[int]
                                   ) -> tuple[torch.Tensor, torch.Tensor, Callable, Callable]:
    """Targets ``(F, V*K, h, w)`` rendered at the mouse4cam labels, noisy 2D predictions
    ``(F, V, K, 2)`` frame pixels, and the model's path from predictions to the reprojected
    keypoints (triangulate, NaN for uncalibrated frames, project, model pixels), from 2D
    predictions and from 3D points."""
    labels, bbox, group = _mouse4cam()
    cams = group.to_tensors(dtype=dtype)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    labels, bbox = labels.to(dtype), bbox.to(dtype)
    frames, views, keypoints = labels.shape[:3]
    model_labels = frame_to_model(labels, bbox, MODEL)
    targets = render_heatmaps(model_labels.reshape(frames, -1, 2), MODEL, HEATMAP)
    g = torch.Generator().manual_seed(7)
    predictions = labels + noise_px * torch.randn(labels.shape, generator=g, dtype=F64).to(dtype)
    predictions = torch.where(torch.isfinite(labels), predictions, labels.nan_to_num(500.0))
    calibrated = torch.ones(frames, dtype=torch.bool)
    calibrated[uncalibrated] = False

    def from_3d(points_3d: torch.Tensor) -> torch.Tensor:
        points_3d = torch.where(calibrated[:, None, None], points_3d, torch.nan)
        frame = project_points(points_3d, *args)
        return frame_to_model(frame, bbox, MODEL).reshape(frames, views * keypoints, 2)

    def from_2d(points_2d: torch.Tensor) -> torch.Tensor:
        return from_3d(triangulate(points_2d, *args))

    return targets, predictions, from_2d, from_3d


@pytest.mark.parametrize(("dtype", "noise_px"), [(F32, 0.0), (F32, 8.0), (F64, 8.0)])
def test_reprojection_loss_fast_equals_dense_on_mouse4cam(dtype, noise_px):
    """End to end as in training: gradients reach the 2D predictions through the
    triangulation and the 3D points through the projection; uncalibrated frames are skipped
    (NaN reprojections) and get no gradient."""
    uncalibrated = [1, 4]
    targets, predictions, from_2d, from_3d = _mouse4cam_reprojection_inputs(
        dtype, noise_px, uncalibrated)
    context = _context(4, 15)
    loss = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), context)

    def fast(points: torch.Tensor, path: Callable) -> torch.Tensor:
        return loss(heatmaps_targ=targets, keypoints_pred_2d_reprojected=path(points))[0]

    def dense(points: torch.Tensor, path: Callable) -> torch.Tensor:
        return loss.weight * loss._dense_reference(targets, path(points))

    value, (grad_2d,) = _value_and_grads(lambda p: fast(p, from_2d), predictions)
    ref_value, (ref_grad_2d,) = _value_and_grads(lambda p: dense(p, from_2d), predictions)
    assert float(value) == pytest.approx(float(ref_value), rel=RTOL[dtype])
    _assert_same_gradient(grad_2d, ref_grad_2d, dtype)
    assert (grad_2d[uncalibrated] == 0).all()
    assert (grad_2d[0].abs().sum(-1) > 0).sum() > 30  # labelled views of a calibrated frame

    points_3d = triangulate(predictions, *(t for t in _cameras(dtype)))
    _, (grad_3d,) = _value_and_grads(lambda p: fast(p, from_3d), points_3d)
    _, (ref_grad_3d,) = _value_and_grads(lambda p: dense(p, from_3d), points_3d)
    _assert_same_gradient(grad_3d, ref_grad_3d, dtype)
    # the loss of the calibrated frames alone: uncalibrated frames do not count
    keep = torch.ones(len(targets), dtype=torch.bool)
    keep[uncalibrated] = False
    with torch.no_grad():
        alone = loss(heatmaps_targ=targets[keep],
                     keypoints_pred_2d_reprojected=from_2d(predictions)[keep])[0]
    assert float(alone) == pytest.approx(float(value), rel=RTOL[dtype])


def _cameras(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cams = load_calibration(MOUSE4CAM / "calibration.toml").to_tensors(dtype=dtype)
    return cams.intrinsics, cams.extrinsics, cams.distortions


def test_reprojection_loss_with_targets_that_require_grad_is_the_dense_formula():
    """Targets are data; should they require grad, the loss falls back to the dense path and
    derives them too."""
    labels = _random_labels(2, 4, seed=8, dtype=F64)
    targets = _random_targets(labels, seed=9)
    points = labels + 1.5
    loss = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), _context(1, 4))
    value, grads = _value_and_grads(
        lambda t, p: loss(heatmaps_targ=t, keypoints_pred_2d_reprojected=p)[0], targets, points)
    ref_value, ref_grads = _value_and_grads(
        lambda t, p: loss.weight * loss._dense_reference(t, p), targets, points)
    assert torch.equal(value, ref_value)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
    assert grads[0].abs().sum() > 0


# ------------------------------------------------------------------------ heatmap losses


def _predictions(shape: torch.Size, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Logits whose spatial softmax is a plausible predicted heatmap."""
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(shape, generator=g, dtype=F64).to(dtype)


def _heatmap_case(loss: HeatmapLoss, targets: torch.Tensor, logits: torch.Tensor,
                  dtype: torch.dtype) -> None:
    """Fast and dense values agree, and so do the gradients w.r.t. the predicted maps and
    the logits behind them."""

    def softmax(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-2).softmax(-1).reshape_as(x)

    maps = softmax(logits).detach()
    for prepare, leaf in ((lambda x: x, maps), (softmax, logits)):
        value, (grad,) = _value_and_grads(
            lambda x, prepare=prepare: loss(heatmaps_targ=targets,
                                             heatmaps_pred=prepare(x))[0], leaf)
        ref_value, (ref_grad,) = _value_and_grads(
            lambda x, prepare=prepare: loss.weight * loss._dense_reference(targets,
                                                                           prepare(x)), leaf)
        assert value.dtype == dtype and float(value) > 0
        assert float(value) == pytest.approx(float(ref_value), rel=RTOL[dtype])
        _assert_same_gradient(grad, ref_grad, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("cls", HEATMAP_LOSSES)
def test_heatmap_loss_fast_equals_dense_on_random_inputs(cls, dtype):
    labels = _random_labels(3, 8, seed=10, dtype=dtype)
    targets = _random_targets(labels, seed=11)
    logits = _predictions(targets.shape, seed=12, dtype=dtype)
    _heatmap_case(cls(cls.Params(), _context(2, 4)), targets, logits, dtype)


@pytest.mark.parametrize("cls", HEATMAP_LOSSES)
def test_heatmap_loss_fast_equals_dense_on_mouse4cam(cls):
    """Targets at the real labels (missing ones: zero maps), predictions near them."""
    labels, bbox, _ = _mouse4cam()
    labels, bbox = labels.float(), bbox.float()
    model = frame_to_model(labels, bbox, MODEL).reshape(6, 60, 2)
    targets = render_heatmaps(model, MODEL, HEATMAP)
    assert (targets.sum((-2, -1)) == 0).any()
    near = render_heatmaps(model + 1.5, MODEL, HEATMAP)
    logits = torch.log(near + 1e-3) + 0.1 * _predictions(targets.shape, seed=13, dtype=F32)
    _heatmap_case(cls(cls.Params(), _context(4, 15)), targets, logits, F32)


@pytest.mark.parametrize("cls", HEATMAP_LOSSES)
def test_heatmap_loss_nan_prediction_propagates_like_the_dense_formula(cls):
    """A NaN in the prediction of a labelled map is not hidden: value and gradient NaN, as
    the dense formula; a NaN prediction of an unlabelled map is ignored, as there."""
    labels = _random_labels(2, 4, seed=14, dtype=F64)
    targets = _random_targets(labels, seed=15)
    maps = _predictions(targets.shape, seed=16, dtype=F64).flatten(-2).softmax(-1)
    maps = maps.reshape_as(targets)
    loss = cls(cls.Params(), _context(1, 4))
    unlabelled = maps.clone()
    unlabelled[0, 3, 2, 2] = torch.nan  # target 0 3 is all zero
    value, (grad,) = _value_and_grads(
        lambda x: loss(heatmaps_targ=targets, heatmaps_pred=x)[0], unlabelled)
    ref_value, (ref_grad,) = _value_and_grads(
        lambda x: loss.weight * loss._dense_reference(targets, x), unlabelled)
    assert torch.isfinite(value) and float(value) == pytest.approx(float(ref_value), rel=1e-10)
    assert torch.equal(grad[0, 3], torch.zeros_like(grad[0, 3]))
    labelled = maps.clone()
    labelled[0, 1, 2, 2] = torch.nan
    value, (grad,) = _value_and_grads(
        lambda x: loss(heatmaps_targ=targets, heatmaps_pred=x)[0], labelled)
    ref_value, (ref_grad,) = _value_and_grads(
        lambda x: loss.weight * loss._dense_reference(targets, x), labelled)
    assert torch.isnan(value) and torch.isnan(ref_value)
    assert torch.equal(torch.isnan(grad), torch.isnan(ref_grad))


@pytest.mark.parametrize("cls", HEATMAP_LOSSES)
def test_heatmap_loss_with_targets_that_require_grad_is_the_dense_formula(cls):
    labels = _random_labels(2, 4, seed=17, dtype=F64)
    targets = _random_targets(labels, seed=18).nan_to_num(0.0, posinf=0.0)
    maps = _predictions(targets.shape, seed=19, dtype=F64).flatten(-2).softmax(-1)
    maps = maps.reshape_as(targets)
    loss = cls(cls.Params(), _context(1, 4))
    value, grads = _value_and_grads(
        lambda t, p: loss(heatmaps_targ=t, heatmaps_pred=p)[0], targets, maps)
    ref_value, ref_grads = _value_and_grads(
        lambda t, p: loss.weight * loss._dense_reference(t, p), targets, maps)
    assert torch.equal(value, ref_value)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
