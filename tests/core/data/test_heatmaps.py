"""Heatmap rendering and read-out share one pixel convention: no bias at any downsample."""

import pytest
import torch

from mvcore.data.heatmaps import (
    gaussian_profiles,
    heatmap_coords,
    heatmap_to_keypoints,
    render_heatmaps,
)


@pytest.mark.parametrize("downsample_factor", [0, 1, 2, 3])
def test_render_then_read_out_returns_the_point(downsample_factor):
    generator = torch.Generator().manual_seed(0)
    size = 128
    h = size // 2**downsample_factor
    points = 10 + torch.rand(50, 2, generator=generator, dtype=torch.float64) * (size - 20)
    maps = render_heatmaps(points, (size, size), (h, h), sigma=1.25)
    recovered, confidence = heatmap_to_keypoints(maps, (size, size))
    assert torch.allclose(recovered, points, atol=1e-6)
    assert (confidence > 0.75).all()  # 5x5 window holds 0.8-0.91 of a sigma-1.25 blob


def test_maps_sum_to_one_and_unlabelled_rules():
    points = torch.tensor([[20.0, 30.0], [float("nan"), 5.0], [500.0, 5.0], [8.0, 8.0]])
    visibility = torch.tensor([2, 2, 2, 1])
    maps = render_heatmaps(points, (64, 64), (16, 16), visibility=visibility)
    sums = maps.sum(dim=(-2, -1))
    assert torch.allclose(sums, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert torch.allclose(maps[3], torch.full((16, 16), 1 / 256))
    occluded = render_heatmaps(points[:1], (64, 64), (16, 16), visibility=torch.tensor([0]))
    assert occluded.abs().sum() == 0


def test_rendering_is_differentiable_without_nan_gradients():
    points = torch.tensor([[20.0, 30.0], [float("nan"), 5.0]], requires_grad=True)
    target = render_heatmaps(torch.tensor([[21.0, 30.0], [3.0, 3.0]]), (64, 64), (16, 16))
    loss = ((render_heatmaps(points, (64, 64), (16, 16)) - target) ** 2).sum()
    loss.backward()
    assert torch.isfinite(points.grad).all()
    assert points.grad[0].abs().sum() > 0
    assert points.grad[1].abs().sum() == 0


def test_read_out_gradient_reaches_the_heatmap():
    maps = render_heatmaps(torch.tensor([[20.3, 30.6]]), (64, 64), (16, 16))
    maps = maps.clone().requires_grad_(True)
    keypoints, _ = heatmap_to_keypoints(maps, (64, 64))
    keypoints.sum().backward()
    assert torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0


def test_read_out_gradient_stays_bounded_on_flat_untrained_maps():
    """The parabola fit divides by the curvature; on near-flat softmax maps (an untrained
    network) its gradient would explode. The read-out gradient must stay bounded."""
    generator = torch.Generator().manual_seed(0)
    logits = (1e-4 * torch.randn(8, 16, 16, generator=generator)).requires_grad_(True)
    maps = torch.softmax(logits.flatten(-2), -1).reshape(8, 16, 16)
    keypoints, _ = heatmap_to_keypoints(maps, (64, 64))
    keypoints.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max() < 10.0  # bounded by the window radius x the scale


def test_gaussian_profiles_are_the_separable_factors_of_render_heatmaps():
    """A rendered map is the outer product of the 1-D profiles divided by its sum; ``labeled``
    is finite and at most one heatmap pixel outside the map (exactly the non-zero maps)."""
    generator = torch.Generator().manual_seed(3)
    points = -40 + 340 * torch.rand(200, 2, generator=generator, dtype=torch.float64)
    points[::9] = float("nan")
    maps = render_heatmaps(points, (256, 192), (64, 48), sigma=1.7)
    xy, gx, gy, labeled = gaussian_profiles(points, (256, 192), (64, 48), sigma=1.7)
    assert gx.shape == (200, 48) and gy.shape == (200, 64) and xy.shape == (200, 2)
    outer = gy[:, :, None] * gx[:, None, :] / (gx.sum(-1) * gy.sum(-1))[:, None, None]
    assert torch.allclose(maps[labeled], outer[labeled], rtol=1e-12, atol=0)
    assert (maps[~labeled] == 0).all() and (maps[labeled].sum((-2, -1)) > 0.99).all()
    assert labeled.any() and (~labeled & torch.isfinite(points).all(-1)).any()
    # model -> heatmap pixels: 4x (x) and 4x (y) downsampling, pixel centres at j * s + 1.5
    assert torch.allclose(xy[labeled], (points[labeled] - 1.5) / 4.0)
    assert torch.equal(xy[~torch.isfinite(points).all(-1)], torch.full((23, 2), -0.375,
                                                                         dtype=torch.float64))


def test_heatmap_coords_are_where_render_heatmaps_puts_each_keypoint():
    """``heatmap_coords`` is the ``xy`` and ``labeled`` of ``gaussian_profiles``: the maximum
    of each non-zero rendered map, and exactly the maps that are not all zero; its gradient is
    the pixel scale, and zero (not NaN) for a NaN keypoint."""
    generator = torch.Generator().manual_seed(4)
    points = -40 + 340 * torch.rand(120, 2, generator=generator, dtype=torch.float64)
    points[::7] = float("nan")
    points = points.requires_grad_(True)
    xy, labeled = heatmap_coords(points, (256, 192), (64, 48))
    ref_xy, _, _, ref_labeled = gaussian_profiles(points, (256, 192), (64, 48), sigma=1.7)
    assert torch.equal(xy, ref_xy) and torch.equal(labeled, ref_labeled)
    maps = render_heatmaps(points.detach(), (256, 192), (64, 48))
    assert torch.equal(labeled, maps.sum((-2, -1)) > 0)
    inside = labeled & (xy[:, 0] >= 0) & (xy[:, 0] <= 47) & (xy[:, 1] >= 0) & (xy[:, 1] <= 63)
    peak = maps[inside].flatten(1).argmax(1)
    assert torch.equal(peak // 48, xy[inside, 1].detach().round().long())
    assert torch.equal(peak % 48, xy[inside, 0].detach().round().long())
    xy.sum().backward()
    finite = torch.isfinite(points.detach()).all(-1)
    assert torch.equal(points.grad[finite], torch.full_like(points.grad[finite], 0.25))
    assert torch.equal(points.grad[~finite], torch.zeros_like(points.grad[~finite]))


@pytest.mark.parametrize("downsample_factor", [1, 2, 3])
def test_lightning_pose_grid_puts_a_point_where_lightning_pose_targets_do(downsample_factor):
    # Lightning Pose renders model point x at heatmap coordinate x / s (no pixel-centre shift)
    s = 2**downsample_factor
    size, hm = (64, 64), (64 // s, 64 // s)
    points = torch.tensor([[20.0, 30.0], [33.3, 7.9]])
    maps = render_heatmaps(points, size, hm, sigma=1.25, grid="lightning_pose")
    ys, xs = torch.meshgrid(torch.arange(hm[0]).float(), torch.arange(hm[1]).float(),
                            indexing="ij")
    expected = torch.exp(-((xs - points[:, None, None, 0] / s) ** 2
                           + (ys - points[:, None, None, 1] / s) ** 2) / (2 * 1.25**2))
    torch.testing.assert_close(maps, expected / expected.sum((-2, -1), keepdim=True))
    back, _ = heatmap_to_keypoints(maps, size, grid="lightning_pose")
    torch.testing.assert_close(back, points, atol=1e-4, rtol=0)
    # read with the other grid, the same maps are (s - 1) / 2 model pixels off
    centred, _ = heatmap_to_keypoints(maps, size)
    torch.testing.assert_close(centred - back, torch.full_like(back, (s - 1) / 2))


def test_unknown_heatmap_grid_is_refused():
    with pytest.raises(ValueError, match="unknown heatmap grid 'corner'"):
        render_heatmaps(torch.zeros(1, 2), (64, 64), (16, 16), grid="corner")
