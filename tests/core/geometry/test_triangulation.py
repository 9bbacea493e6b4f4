"""Torch triangulation: camera pairs, DLT from all views and pairs, refinement; gradients,
dtypes, devices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from camera_rigs import F64, assert_finite_grads, random_points, random_rig

from mvcore.geometry import (
    camera_pairs,
    project_points,
    refine_points,
    reprojection_error,
    triangulate,
    triangulate_pairs,
    undistort_points,
)


def test_camera_pairs_order() -> None:
    for v in (1, 2, 3, 5):
        expected = list(itertools.combinations(range(v), 2))
        pairs = camera_pairs(v)
        assert pairs.dtype == torch.long and pairs.shape == (len(expected), 2)
        assert [tuple(p) for p in pairs.tolist()] == expected


def test_round_trip_with_distortion_float64() -> None:
    k, ext, d = random_rig(4, seed=11)
    x = random_points((8, 17), seed=12)
    pix = project_points(x, k, ext, d)  # (B, V, K, 2)
    # project -> undistort -> triangulate on normalised coords
    xy, ok = undistort_points(pix, k, d)
    assert ok.all()
    eye = torch.eye(3, dtype=F64).expand(4, 3, 3)
    rel = lambda a: ((a - x).norm(dim=-1) / x.norm(dim=-1)).max().item()  # noqa: E731
    assert rel(triangulate(xy, eye, ext, undistort=False)) < 1e-4
    # and directly from distorted pixels
    full = triangulate(pix, k, ext, d)
    assert full.shape == x.shape and full.dtype == F64
    assert rel(full) < 1e-9
    pairs = triangulate_pairs(pix, k, ext, d)
    assert pairs.shape == (8, 6, 17, 3)
    torch.testing.assert_close(pairs, full.unsqueeze(-3).expand_as(pairs), rtol=1e-8, atol=1e-8)
    assert reprojection_error(full, pix, k, ext, d).max() < 1e-6


def test_missing_views_weights_and_min_views() -> None:
    k, ext, d = random_rig(4, seed=13)
    x = random_points((5,), seed=14)
    pix = project_points(x, k, ext, d)
    pix = pix + 0.5 * torch.randn(pix.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    pix[0, 1] = float("nan")  # kp 1 missing in view 0
    pix[:3, 2] = float("nan")  # kp 2 only in view 3 -> NaN
    pix[1, 3, 0] = float("nan")  # half-NaN point is missing too
    out = triangulate(pix, k, ext, d)
    assert out[2].isnan().all() and torch.isfinite(out[[0, 1, 3, 4]]).all()
    # weight 0 == missing view; a common weight scale changes nothing
    w = torch.ones(4, 5, dtype=F64)
    w[2, 4] = 0.0
    masked = pix.clone()
    masked[2, 4] = float("nan")
    torch.testing.assert_close(
        triangulate(pix, k, ext, d, weights=w), triangulate(masked, k, ext, d), equal_nan=True
    )
    torch.testing.assert_close(
        triangulate(pix, k, ext, d, weights=3 * w),
        triangulate(pix, k, ext, d, weights=w),
        equal_nan=True,
    )
    # pairs: any pair with view 0 is NaN for kp 1, the other pairs are finite
    pairs = triangulate_pairs(pix, k, ext, d)
    with_0 = [i for i, (a, b) in enumerate(itertools.combinations(range(4), 2)) if 0 in (a, b)]
    others = [i for i in range(6) if i not in with_0]
    assert pairs[with_0, 1].isnan().all() and torch.isfinite(pairs[others, 1]).all()
    assert pairs[:, 2].isnan().all()


def test_dlt_matches_numpy_svd_reference() -> None:
    # noisy points: the eigh-of-A^T-A solve must equal the textbook SVD of A written in the
    # conditioned world frame (cameras' centroid, RMS spread), as the module docstring says.
    k, ext, d = random_rig(4, seed=15)
    x = random_points((30,), seed=16)
    g = torch.Generator().manual_seed(1)
    pix = project_points(x, k, ext) + 3.0 * torch.randn(4, 30, 2, dtype=F64, generator=g)
    out = triangulate(pix, k, ext)
    xy = torch.linalg.solve(k, torch.cat([pix, torch.ones(4, 30, 1, dtype=F64)], -1).mT).mT
    e = ext.numpy()
    centers = np.stack([-e[v, :, :3].T @ e[v, :, 3] for v in range(4)])
    origin = centers.mean(0)
    spread = np.sqrt(((centers - origin) ** 2).sum(1).mean())
    denormalise = np.eye(4)
    denormalise[:3, :3] *= spread
    denormalise[:3, 3] = origin
    for j in range(30):
        a = []
        for v in range(4):
            p = e[v] @ denormalise
            a += [xy[v, j, 0].item() * p[2] - p[0], xy[v, j, 1].item() * p[2] - p[1]]
        h = np.linalg.svd(np.array(a))[2][-1]
        np.testing.assert_allclose(out[j].numpy(), origin + spread * h[:3] / h[3], rtol=1e-9)


def test_solution_does_not_depend_on_world_unit_or_origin() -> None:
    # the same rig in millimetres with the origin 5 m away gives the same points (scaled)
    k, ext, d = random_rig(4, seed=15)
    x = random_points((30,), seed=16)
    g = torch.Generator().manual_seed(1)
    pix = project_points(x, k, ext, d) + 3.0 * torch.randn(4, 30, 2, dtype=F64, generator=g)
    offset = torch.tensor([5000.0, -3000.0, 2000.0], dtype=F64)
    moved = ext.clone()
    moved[:, :, 3] = 1000.0 * ext[:, :, 3] - (ext[:, :, :3] @ offset)
    ref = triangulate(pix, k, ext, d)
    in_mm = triangulate(pix, k, moved, d)
    torch.testing.assert_close((in_mm - offset) / 1000.0, ref, rtol=0, atol=1e-12)


def test_gradcheck_float64() -> None:
    k, ext, d = random_rig(3, seed=7)
    x = random_points((4,), seed=8)
    pix = project_points(x, k, ext, d).detach().requires_grad_()
    dr = d.clone().requires_grad_()
    kr = k.clone().requires_grad_()
    er = ext.clone().requires_grad_()
    torch.autograd.gradcheck(lambda p, e: triangulate(p, k, e, d), (pix, er))
    torch.autograd.gradcheck(lambda p, dd: triangulate_pairs(p, kr, ext, dd), (pix, dr))
    w = torch.rand(3, 4, dtype=F64).add(0.5).requires_grad_()
    torch.autograd.gradcheck(lambda p, ww: triangulate(p, k, ext, d, weights=ww), (pix, w))


def test_float32_matches_float64() -> None:
    k, ext, d = random_rig(4, seed=17)
    x = random_points((16, 17), seed=18) * 0.2 + 0.1
    pix = project_points(x, k, ext, d)
    pix = pix + torch.randn(pix.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    ref = triangulate(pix, k, ext, d)
    k32, e32, d32, p32 = (t.float() for t in (k, ext, d, pix))
    out = triangulate(p32, k32, e32, d32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-4)
    pairs = triangulate_pairs(p32, k32, e32, d32)
    assert pairs.dtype == torch.float32
    torch.testing.assert_close(
        pairs.double(), triangulate_pairs(pix, k, ext, d), rtol=0, atol=1e-3
    )


def test_refine_points_reduces_error() -> None:
    k, ext, d = random_rig(4, seed=19)
    x = random_points((40,), seed=20)
    g = torch.Generator().manual_seed(3)
    pix = project_points(x, k, ext, d) + 2.0 * torch.randn(4, 40, 2, dtype=F64, generator=g)
    pix[1, 5] = float("nan")
    dlt = triangulate(pix, k, ext, d)
    ref = refine_points(dlt, pix, k, ext, d)
    e_dlt = reprojection_error(dlt, pix, k, ext, d).square().nansum(0)
    e_ref = reprojection_error(ref, pix, k, ext, d).square().nansum(0)
    assert (e_ref <= e_dlt + 1e-9).all() and e_ref.sum() < e_dlt.sum()
    exact = project_points(x, k, ext, d)
    torch.testing.assert_close(refine_points(x + 1e-3, exact, k, ext, d), x)



# ------------------------------------------------------------------------ degenerate gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_on_degenerate_input(dtype: torch.dtype) -> None:
    k, ext, d = random_rig(4, seed=21, dtype=dtype)
    # views 0 and 1: the same camera centre up to 1e-7 (near-parallel rays);
    # views 2 and 3: exactly the same camera (parallel rays)
    ext = ext.clone()
    ext[1] = ext[0]
    ext[1, 0, 3] += 1e-7
    ext[3] = ext[2]
    x = random_points((2, 5), seed=22, dtype=dtype)
    pix = project_points(x, k, ext, d).detach()
    pix[0, :, 3] = float("nan")  # an all-NaN keypoint
    pix[1, 2:, 1] = float("nan")  # keypoint seen only by the near-parallel pair
    pix[0, :2, 0] = float("nan")  # keypoint seen only by the duplicated camera
    pix = pix.requires_grad_()
    er, kr, dr = (t.clone().requires_grad_() for t in (ext, k, d))
    out = triangulate(pix, kr, er, dr)
    assert out[0, 3].isnan().all() and not torch.isinf(out).any()
    out.nan_to_num(0.0).sum().backward()
    assert_finite_grads(pix, er, kr, dr)

    for t in (pix, er, kr, dr):
        t.grad = None
    pairs = triangulate_pairs(pix, kr, er, dr)
    assert not torch.isinf(pairs).any()
    pairs.nan_to_num(0.0).square().sum().backward()
    assert_finite_grads(pix, er, kr, dr)

    for t in (pix, er, kr, dr):
        t.grad = None
    w = torch.zeros(2, 4, 5, dtype=dtype, requires_grad=True)
    triangulate(pix, kr, er, dr, weights=w).nan_to_num(0.0).sum().backward()
    assert_finite_grads(pix, w, er)



# ----------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    k, ext, d = random_rig(4, seed=25, dtype=dtype)
    x = random_points((8, 17), seed=26, dtype=dtype)
    pix = project_points(x, k, ext, d)
    pix[0, 1, 3] = float("nan")
    cuda = [t.cuda() for t in (pix, k, ext, d)]
    pc = cuda[0].clone().requires_grad_()
    out = triangulate(pc, *cuda[1:])
    assert out.device.type == "cuda" and out.dtype == dtype
    out.nan_to_num(0.0).sum().backward()
    assert torch.isfinite(pc.grad).all()
    tol = dict(rtol=0, atol=1e-3 if dtype == torch.float32 else 1e-9)
    torch.testing.assert_close(out.cpu(), triangulate(pix, k, ext, d), **tol)
    torch.testing.assert_close(
        triangulate_pairs(*cuda).cpu(), triangulate_pairs(pix, k, ext, d), **tol
    )
