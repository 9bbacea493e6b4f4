"""Torch camera geometry: projection, undistortion, triangulation, gradients, dtypes, devices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mvcore.geometry import (
    camera_pairs,
    distort_normalized,
    project_points,
    refine_points,
    reprojection_error,
    rodrigues_to_matrix,
    triangulate,
    triangulate_pairs,
    undistort_points,
)

F64 = torch.float64


def _look_at(centers: torch.Tensor) -> torch.Tensor:
    """World->camera ``[R|t] (V, 3, 4)`` of cameras at ``centers (V, 3)`` facing the origin."""
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=centers.dtype).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    rot = torch.stack([x, y, z], dim=-2)
    t = -(rot @ centers.unsqueeze(-1))
    return torch.cat([rot, t], dim=-1)


def random_rig(
    num_views: int = 4, seed: int = 0, dtype: torch.dtype = F64, distortion: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random cameras ~6 units from the origin: intrinsics (V,3,3), extrinsics, distortions."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(num_views, 3, generator=g, dtype=F64)
    dirs[:, 2] = dirs[:, 2].abs() * 0.5 + 0.2
    centers = 6.0 * dirs / dirs.norm(dim=-1, keepdim=True)
    ext = _look_at(centers)
    # a small random roll so R is not special
    roll = rodrigues_to_matrix(torch.randn(num_views, 3, generator=g, dtype=F64) * 0.05)
    ext = torch.cat([roll @ ext[:, :, :3], roll @ ext[:, :, 3:]], dim=-1)
    f = 700 + 300 * torch.rand(num_views, generator=g, dtype=F64)
    k = torch.zeros(num_views, 3, 3, dtype=F64)
    k[:, 0, 0], k[:, 1, 1] = f, f * 1.02
    k[:, 0, 1] = 2.0 * torch.randn(num_views, generator=g, dtype=F64)  # skew
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = 640.3, 511.7, 1.0
    d = torch.zeros(num_views, 5, dtype=F64)
    if distortion:
        d[:, 0] = -0.3 + 0.3 * torch.rand(num_views, generator=g, dtype=F64)
        d[:, 1] = 0.05 * torch.randn(num_views, generator=g, dtype=F64)
        d[:, 2:4] = 0.002 * torch.randn(num_views, 2, generator=g, dtype=F64)
        d[:, 4] = 0.01 * torch.randn(num_views, generator=g, dtype=F64)
    return k.to(dtype), ext.to(dtype), d.to(dtype)


def random_points(shape: tuple[int, ...], seed: int = 1, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape + (3,), generator=g, dtype=F64) * 2.0 - 1.0).to(dtype)


def reference_project(x: np.ndarray, k: np.ndarray, ext: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Plain numpy ``cv2.projectPoints`` for one camera: ``x (N, 3)`` -> ``(N, 2)``."""
    c = x @ ext[:, :3].T + ext[:, 3]
    a, b = c[:, 0] / c[:, 2], c[:, 1] / c[:, 2]
    k1, k2, p1, p2, k3 = d
    r2 = a * a + b * b
    rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = a * rad + 2 * p1 * a * b + p2 * (r2 + 2 * a * a)
    yd = b * rad + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b
    return np.stack([k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2]], axis=-1)


# ----------------------------------------------------------------------------- basics


def test_rodrigues_matches_matrix_exp() -> None:
    r = torch.randn(10, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    r[0] = 0.0
    r[1] = 1e-7
    x, y, z = r.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    torch.testing.assert_close(rodrigues_to_matrix(r), torch.linalg.matrix_exp(skew))
    r0 = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    rodrigues_to_matrix(r0).sum().backward()
    assert torch.isfinite(r0.grad).all()
    torch.autograd.gradcheck(rodrigues_to_matrix, (torch.randn(4, 3, dtype=F64).requires_grad_(),))


def test_camera_pairs_order() -> None:
    for v in (1, 2, 3, 5):
        expected = list(itertools.combinations(range(v), 2))
        pairs = camera_pairs(v)
        assert pairs.dtype == torch.long and pairs.shape == (len(expected), 2)
        assert [tuple(p) for p in pairs.tolist()] == expected


def test_project_matches_reference() -> None:
    k, ext, d = random_rig(3, seed=2)
    x = random_points((5,))
    pix = project_points(x, k, ext, d)
    assert pix.shape == (3, 5, 2)
    for v in range(3):
        ref = reference_project(x.numpy(), k[v].numpy(), ext[v].numpy(), d[v].numpy())
        np.testing.assert_allclose(pix[v].numpy(), ref, rtol=1e-12)
    # no distortion == zero distortion
    torch.testing.assert_close(project_points(x, k, ext), project_points(x, k, ext, d * 0))


def test_project_broadcasting_and_nan() -> None:
    k, ext, d = random_rig(4)
    x = random_points((2, 6))
    x[0, 1, 2] = float("nan")
    shared = project_points(x, k, ext, d)  # cameras (V, ...) shared by the batch
    per_batch = project_points(x, k.expand(2, -1, -1, -1), ext.expand(2, -1, -1, -1), d[None])
    assert shared.shape == (2, 4, 6, 2)
    torch.testing.assert_close(shared, per_batch, equal_nan=True)
    assert shared[0, :, 1].isnan().all() and not shared[1].isnan().any()
    assert not shared[0, :, [0, 2, 3, 4, 5]].isnan().any()


def test_undistort_inverts_distort() -> None:
    k, ext, d = random_rig(4, seed=5)
    pix = project_points(random_points((3, 20), seed=4), k, ext, d)  # (3, V, K, 2)
    xy, ok = undistort_points(pix, k, d)
    assert xy.shape == pix.shape and ok.shape == pix.shape[:-1] and ok.all()
    torch.testing.assert_close(project_points_normalised(xy, k, d), pix, rtol=0, atol=1e-8)


def project_points_normalised(xy: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    dist = distort_normalized(xy, d)
    return dist @ k[..., :2, :2].transpose(-1, -2) + k[..., None, :2, 2]


def test_undistort_flags_fold_and_nan() -> None:
    # k1 = -0.3: the radial model folds over at r_d = 0.77; image corners (r_d ~ 1.06) have no
    # inverse on the valid branch -> NaN and converged False; NaN input -> NaN.
    k = torch.tensor([[[770.0, 0, 639.5], [0, 770.0, 511.5], [0, 0, 1]]], dtype=F64)
    d = torch.tensor([[-0.3, 0, 0, 0, 0]], dtype=F64)
    pix = torch.tensor(
        [[[639.5, 511.5], [1279.0, 1023.0], [float("nan"), 3.0], [900.0, 700.0]]], dtype=F64
    )
    xy, ok = undistort_points(pix, k, d)
    assert ok.tolist() == [[True, False, False, True]]
    assert xy[0, 1].isnan().all() and xy[0, 2].isnan().all() and torch.isfinite(xy[0, 3]).all()
    torch.testing.assert_close(xy[0, 0], torch.zeros(2, dtype=F64))


def test_gradcheck_float64() -> None:
    k, ext, d = random_rig(3, seed=7)
    x = random_points((4,), seed=8).requires_grad_()
    pix = project_points(x, k, ext, d).detach().requires_grad_()
    dr = d.clone().requires_grad_()
    kr = k.clone().requires_grad_()
    er = ext.clone().requires_grad_()
    torch.autograd.gradcheck(lambda p, kk, dd: undistort_points(p, kk, dd)[0], (pix, kr, dr))
    torch.autograd.gradcheck(lambda a, kk, e, dd: project_points(a, kk, e, dd), (x, kr, er, dr))
    torch.autograd.gradcheck(lambda p, e: triangulate(p, k, e, d), (pix, er))
    torch.autograd.gradcheck(lambda p, dd: triangulate_pairs(p, kr, ext, dd), (pix, dr))
    w = torch.rand(3, 4, dtype=F64).add(0.5).requires_grad_()
    torch.autograd.gradcheck(lambda p, ww: triangulate(p, k, ext, d, weights=ww), (pix, w))


# ----------------------------------------------------------------------------- triangulation


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
    # noisy points: the eigh-of-A^T-A solve must equal the textbook SVD of A (aniposelib).
    k, ext, d = random_rig(4, seed=15)
    x = random_points((30,), seed=16)
    g = torch.Generator().manual_seed(1)
    pix = project_points(x, k, ext) + 3.0 * torch.randn(4, 30, 2, dtype=F64, generator=g)
    out = triangulate(pix, k, ext)
    xy = torch.linalg.solve(k, torch.cat([pix, torch.ones(4, 30, 1, dtype=F64)], -1).mT).mT
    for j in range(30):
        a = []
        for v in range(4):
            p = ext[v].numpy()
            a += [xy[v, j, 0].item() * p[2] - p[0], xy[v, j, 1].item() * p[2] - p[1]]
        h = np.linalg.svd(np.array(a))[2][-1]
        np.testing.assert_allclose(out[j].numpy(), h[:3] / h[3], rtol=1e-9)


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
    xy32, ok32 = undistort_points(p32, k32, d32)
    assert xy32.dtype == torch.float32 and ok32.all()
    torch.testing.assert_close(xy32.double(), undistort_points(pix, k, d)[0], rtol=0, atol=1e-5)
    proj = project_points(x.float(), k32, e32, d32)
    assert proj.dtype == torch.float32
    torch.testing.assert_close(proj.double(), project_points(x, k, ext, d), rtol=0, atol=1e-3)


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


def _assert_finite_grads(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.grad is not None and torch.isfinite(t.grad).all(), t.grad


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
    _assert_finite_grads(pix, er, kr, dr)

    for t in (pix, er, kr, dr):
        t.grad = None
    pairs = triangulate_pairs(pix, kr, er, dr)
    assert not torch.isinf(pairs).any()
    pairs.nan_to_num(0.0).square().sum().backward()
    _assert_finite_grads(pix, er, kr, dr)

    for t in (pix, er, kr, dr):
        t.grad = None
    w = torch.zeros(2, 4, 5, dtype=dtype, requires_grad=True)
    triangulate(pix, kr, er, dr, weights=w).nan_to_num(0.0).sum().backward()
    _assert_finite_grads(pix, w, er)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_project_gradients_behind_camera_and_nan(dtype: torch.dtype) -> None:
    k, ext, d = random_rig(2, seed=23, dtype=dtype)
    rot, t = ext[0, :, :3], ext[0, :, 3]
    cam_pts = torch.tensor(
        [
            [0.1, 0.2, -3.0],
            [0.3, -0.1, 0.0],
            [0.0, 0.0, 0.0],
            [float("nan"), 0.0, 1.0],
            [0.1, 0.1, 5.0],
        ],
        dtype=dtype,
    )
    world = ((cam_pts - t) @ rot).requires_grad_()  # camera-0 coords -> world
    er, kr, dr = (x.clone().requires_grad_() for x in (ext, k, d))
    pix = project_points(world, kr, er, dr)
    assert pix[:, 3].isnan().all()
    finite = torch.isfinite(pix)
    assert finite[:, [0, 1, 2, 4]].all()
    # behind the camera: mirrored through the centre, like OpenCV
    ref = reference_project(
        cam_pts[:1].double().numpy(),
        k[0].double().numpy(),
        np.hstack([np.eye(3), np.zeros((3, 1))]),
        d[0].double().numpy(),
    )
    np.testing.assert_allclose(pix[0, 0].detach().double().numpy(), ref[0], rtol=1e-5)
    pix.nan_to_num(0.0).sum().backward()
    _assert_finite_grads(world, er, kr, dr)
    world.grad = None
    err = reprojection_error(world, pix.detach(), kr, er, dr)  # zero error: sqrt'(0) must be safe
    err.nan_to_num(0.0).sum().backward()
    _assert_finite_grads(world)


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
    torch.testing.assert_close(
        project_points(x.cuda(), *cuda[1:]).cpu(),
        project_points(x, k, ext, d),
        rtol=1e-5,
        atol=1e-3,
    )
