"""apply_homography: points first, then matrices; batched, dtype of the points, NaN kept."""

import torch

from mvcore.geometry import apply_homography


def test_translation_and_perspective_map_points_and_keep_nan():
    points = torch.tensor([[[1.0, 2.0], [float("nan"), 0.0], [0.0, 0.0]]], dtype=torch.float64)
    shift = torch.eye(3)[None].clone()
    shift[0, :2, 2] = torch.tensor([3.0, -1.0])
    moved = apply_homography(points, shift)
    assert moved.dtype == torch.float64
    torch.testing.assert_close(moved[0, 0], torch.tensor([4.0, 1.0], dtype=torch.float64))
    assert torch.isnan(moved[0, 1]).all()
    perspective = torch.tensor([[[2.0, 0, 0], [0, 2.0, 0], [0.5, 0, 1.0]]])
    out = apply_homography(points, perspective)
    torch.testing.assert_close(out[0, 0], torch.tensor([2.0 / 1.5, 4.0 / 1.5],
                                                       dtype=torch.float64))
    back = apply_homography(out, torch.linalg.inv(perspective))
    torch.testing.assert_close(back[0, [0, 2]], points[0, [0, 2]])
