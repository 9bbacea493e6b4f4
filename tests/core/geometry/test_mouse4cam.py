"""Real 4-camera data (mouse4cam): DLT triangulation reproduces the README's reprojection errors.

README figures (textbook DLT on undistorted points from every labelled view, aniposelib-equal):
median px (n) back 8.00 (706), mid 3.91 (900), side 9.12 (784), top 4.00 (900), all 6.17 (3290);
per-point L2 refinement: all 6.24 median / 7.33 mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import MOUSE4CAM as DATA

from mvcore.geometry import (
    FLOAT32_RELATIVE_ERROR,
    camera_centers,
    load_calibration,
    project_points,
    refine_points,
    reprojection_error,
    triangulate,
    triangulate_checked,
    triangulate_pairs,
)

VIEWS = ["back", "mid", "side", "top"]
README_MEDIANS = {"back": 8.00, "mid": 3.91, "side": 9.12, "top": 4.00, "all": 6.17}
README_COUNTS = {"back": 706, "mid": 900, "side": 784, "top": 900, "all": 3290}

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"mouse4cam data not found at {DATA}")


@pytest.fixture(scope="module")
def mouse4cam() -> tuple[torch.Tensor, object]:
    """Labels ``(F=60, V=4, K=15, 2)`` float64 with NaN for missing, and the CameraGroup."""
    pd = pytest.importorskip("pandas")
    group = load_calibration(DATA / "calibration.toml")
    assert group.names == VIEWS
    frames = []
    for view in VIEWS:
        df = pd.read_csv(DATA / f"CollectedData_{view}.csv", header=[0, 1, 2], index_col=0)
        assert df.shape == (60, 30)
        assert list(df.columns.get_level_values(2)[:2]) == ["x", "y"]
        frames.append(df.to_numpy(dtype=np.float64).reshape(60, 15, 2))
    return torch.from_numpy(np.stack(frames, axis=1)), group


def _medians(err: torch.Tensor) -> tuple[dict[str, float], dict[str, int]]:
    """Per-view and overall median / count of ``err (F, V, K)`` ignoring NaN (numpy median)."""
    e = err.double().numpy()
    per_view = {v: e[:, i][~np.isnan(e[:, i])] for i, v in enumerate(VIEWS)}
    per_view["all"] = e[~np.isnan(e)]
    return (
        {k: float(np.median(a)) for k, a in per_view.items()},
        {k: a.size for k, a in per_view.items()},
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dlt_reprojection_matches_readme(mouse4cam: tuple, dtype: torch.dtype) -> None:
    points, group = mouse4cam
    cams = group.to_tensors(dtype=dtype)
    pts = points.to(dtype)
    x3d = triangulate(pts, cams.intrinsics, cams.extrinsics, cams.distortions)
    assert x3d.shape == (60, 15, 3) and x3d.dtype == dtype
    assert torch.isfinite(x3d).all()  # every (frame, keypoint) is labelled in >= 3 views
    err = reprojection_error(x3d, pts, cams.intrinsics, cams.extrinsics, cams.distortions)
    medians, counts = _medians(err)
    assert counts == README_COUNTS
    for name, expected in README_MEDIANS.items():
        assert medians[name] == pytest.approx(expected, rel=0.05), (name, medians)
    # tighter than the acceptance bound: this is the same algorithm as the README's script
    assert medians["all"] == pytest.approx(6.17, abs=0.01)


def test_refinement_and_pairs(mouse4cam: tuple) -> None:
    points, group = mouse4cam
    cams = group.to_tensors(dtype=torch.float64)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    x3d = triangulate(points, *args)
    refined = refine_points(x3d, points, *args)
    err_dlt = reprojection_error(x3d, points, *args)
    err_ref = reprojection_error(refined, points, *args)
    medians, _ = _medians(err_ref)
    assert medians["all"] == pytest.approx(6.24, rel=0.05)
    assert float(np.nanmean(err_ref.numpy())) == pytest.approx(7.33, rel=0.05)
    # refinement minimises the summed squared error per point
    assert (err_ref.square().nansum(1) <= err_dlt.square().nansum(1) + 1e-6).all()
    # pairwise: 6 pairs; back-view pairs are NaN exactly where back is unlabelled
    pairs = triangulate_pairs(points, *args)
    assert pairs.shape == (60, 6, 15, 3)
    back_missing = points[:, 0].isnan().any(-1)  # (F, K)
    assert torch.equal(pairs[:, 0].isnan().any(-1), back_missing)  # pair (back, mid)
    assert torch.isfinite(pairs[:, 4]).all()  # pair (mid, top): both views fully labelled
    # the median over pairs is close to the all-view DLT (mouse barely moves; ~mm scale)
    gap = (pairs.nanmedian(dim=1).values - x3d).norm(dim=-1)
    assert float(gap.median()) < 5.0


# ------------------------------------------------- precision and broken rigs on the real rig


def test_gradcheck_float64_in_millimetres(mouse4cam: tuple) -> None:
    # the unconditioned DLT failed this at the default step on this rig (mm, 120-470 mm away)
    points, group = mouse4cam
    cams = group.to_tensors(dtype=torch.float64)
    pix = points[:3, :, :4].clone().requires_grad_()
    ext = cams.extrinsics.clone().requires_grad_()
    k, d = cams.intrinsics, cams.distortions
    assert torch.autograd.gradcheck(lambda p, e: triangulate(p, k, e, d), (pix, ext))
    # pairs with the unlabelled back view are NaN (constant): compare the others
    pairs = lambda p: triangulate_pairs(p, k, cams.extrinsics, d).nan_to_num(0.0)  # noqa: E731
    assert torch.autograd.gradcheck(pairs, (pix,))


def test_float32_solve_within_documented_bound(mouse4cam: tuple) -> None:
    # float32 (devices without float64) loses only rounding: it was 1.2 mm median unconditioned
    points, group = mouse4cam
    cams = group.to_tensors(dtype=torch.float64)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    ref = triangulate(points, *args)
    f32 = triangulate(points, *args, solve_dtype=torch.float32)
    centers = camera_centers(cams.extrinsics)
    spread = float((centers - centers.mean(0)).square().sum(-1).mean().sqrt())
    err = (f32 - ref).norm(dim=-1)
    assert float(err.max()) / spread < FLOAT32_RELATIVE_ERROR
    assert float(err.median()) < 1e-3  # mm


def _flipped(extrinsics: torch.Tensor, view: int) -> torch.Tensor:
    """The rig with camera ``view`` turned 180 degrees about its own y axis (same centre)."""
    flip = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=extrinsics.dtype))
    out = extrinsics.clone()
    out[view] = flip @ extrinsics[view]
    return out


def test_camera_that_sees_points_from_behind_is_left_out(mouse4cam: tuple) -> None:
    # 'top' turned around, its 2D made consistent through the turned camera: the DLT fits it at
    # 0 px, but every point is behind it; it must take no part and the 3D must not change.
    points, group = mouse4cam
    cams = group.to_tensors(dtype=torch.float64)
    k, ext, d = cams.intrinsics, cams.extrinsics, cams.distortions
    truth = triangulate(points, k, ext, d)
    bad = _flipped(ext, 3)
    pix = points.clone()
    pix[:, 3] = project_points(truth, k, bad, d)[:, 3]
    three = triangulate(points[:, :3], k[:3], ext[:3], d[:3])
    out = triangulate_checked(pix, k, bad, d)
    assert int(out.behind[:, 3].sum()) == 900 and not out.behind[:, :3].any()
    assert not out.used[:, 3].any()
    torch.testing.assert_close(out.points, three, rtol=0, atol=1e-9)
    # the left-out view gets no gradient, the others finite ones
    leaf = pix.clone().requires_grad_()
    triangulate(leaf, k, bad, d).sum().backward()
    assert (leaf.grad[:, 3] == 0).all() and torch.isfinite(leaf.grad).all()
    assert (leaf.grad[:, 1].abs() > 0).any()
    # each pair with 'top' is NaN; the others are unchanged
    pairs = triangulate_pairs(pix, k, bad, d)
    assert pairs[:, [2, 4, 5]].isnan().all()
    others = triangulate_pairs(points, k, ext, d)[:, [0, 1, 3]]
    torch.testing.assert_close(pairs[:, [0, 1, 3]], others, equal_nan=True)


def test_identical_and_nearly_identical_cameras_give_no_depth(mouse4cam: tuple) -> None:
    points, group = mouse4cam
    cams = group.to_tensors(dtype=torch.float64)
    k, ext, d = cams.intrinsics, cams.extrinsics, cams.distortions
    truth = triangulate(points, k, ext, d)
    mid = [1, 1]
    twin = ext[mid].clone()
    # zero baseline: the same camera twice sees the same 2D
    same = triangulate_checked(points[:, mid], k[mid], twin, d[mid])
    assert same.points.isnan().all()
    assert (same.narrow | same.behind.any(-2)).all()
    # 1 mm apart along the camera's x axis, 0.5 px noise: depth is noise (was up to 927 m)
    twin[1, 0, 3] -= 1.0
    g = torch.Generator().manual_seed(0)
    pix = project_points(truth, k[mid], twin, d[mid])
    pix = pix + 0.5 * torch.randn(pix.shape, dtype=torch.float64, generator=g)
    near = triangulate_checked(pix, k[mid], twin, d[mid])
    assert near.points.isnan().all() and (near.narrow | near.behind.any(-2)).all()
    assert triangulate_pairs(pix, k[mid], twin, d[mid]).isnan().all()
    # the same nearly-twin camera added to the full rig changes nothing that matters
    rig = torch.cat([ext, twin[1:]])
    five = torch.cat([points, pix[:, 1:]], dim=1)
    k5, d5 = torch.cat([k, k[1:2]]), torch.cat([d, d[1:2]])
    full = triangulate_checked(five, k5, rig, d5)
    assert torch.isfinite(full.points).all() and not full.narrow.any()
    assert float((full.points - truth).norm(dim=-1).max()) < 1.0  # mm
