"""mvcore.calib.plots: the rig is drawn where the calibration puts the cameras, and the PNGs
are written whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mvcore.calib.plots import camera_outlines, plot_reprojection, plot_rig
from mvcore.geometry import load_calibration, project_points

# mouse4cam's camera centres (mm, world = ChArUco board), from its calibration by hand
CENTRES = {"back": (-0.4, 4.0, 122.4), "mid": (-106.6, -220.2, 272.5),
           "side": (186.5, -212.0, 472.3), "top": (-80.5, -109.0, 96.8)}
LABELS_CENTROID = np.array([120.0, 38.0, 508.0])  # around the mouse


@pytest.fixture
def rig(shared_data):
    return load_calibration(shared_data / "mouse4cam" / "calibration.toml")


def test_outlines_are_the_cameras_pinhole_frustums(rig):
    outline = camera_outlines(rig, LABELS_CENTROID[None])
    np.testing.assert_allclose(outline["centres"], [CENTRES[n] for n in rig.names], atol=0.1)
    cams = rig.to_tensors(dtype=torch.float64)
    # every camera sees its frustum corners at its image corners, its axis at the centre
    corners = project_points(torch.as_tensor(outline["corners"]), cams.intrinsics[:, None],
                             cams.extrinsics[:, None])  # (V, 1, 4, 2): camera v, its corners
    w, h = rig.sizes[:, 0:1], rig.sizes[:, 1:2]
    expected = np.stack([np.stack([0 * w, 0 * h], -1), np.stack([w, 0 * h], -1),
                         np.stack([w, h], -1), np.stack([0 * w, h], -1)], axis=1)[:, :, 0] - 0.5
    np.testing.assert_allclose(corners[:, 0].numpy(), expected, atol=1e-6)
    axis = project_points(torch.as_tensor(outline["axis_ends"])[:, None],
                          cams.intrinsics[:, None], cams.extrinsics[:, None])[:, 0, 0]
    np.testing.assert_allclose(axis.numpy(), rig.intrinsics[:, :2, 2], atol=1e-6)
    # every camera of the real rig looks at the mouse: its centroid lies in front of it
    depth = np.einsum("vij,j->vi", rig.rotation_matrices(), LABELS_CENTROID)[:, 2]
    assert (depth + rig.translations[:, 2] > 0).all()


def test_pngs_are_written_atomically_with_and_without_images(rig, tmp_path):
    points = LABELS_CENTROID + np.random.default_rng(0).normal(scale=20, size=(50, 3))
    path = plot_rig(rig, points, tmp_path / "rig.png", title="mouse4cam")
    labels = np.full((4, 3, 2), 600.0)
    labels[:, 1] = np.nan  # an unlabelled keypoint is drawn as nothing
    blank = plot_reprojection(rig.names, labels, labels + 5.0, rig.sizes, [None] * 4,
                              tmp_path / "reprojection.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reprojection.png", "rig.png"]
    for png in (path, blank):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 800 and image.height > 500
