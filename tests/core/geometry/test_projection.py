"""Torch projection: distortion, undistortion, projection, reprojection error; gradients,
dtypes, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from camera_rigs import F64, assert_finite_grads, random_points, random_rig, reference_project

from mvcore.geometry import (
    distort_normalized,
    project_points,
    reprojection_error,
    undistort_points,
)


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


def test_float32_matches_float64() -> None:
    k, ext, d = random_rig(4, seed=17)
    x = random_points((16, 17), seed=18) * 0.2 + 0.1
    pix = project_points(x, k, ext, d)
    pix = pix + torch.randn(pix.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    k32, e32, d32, p32 = (t.float() for t in (k, ext, d, pix))
    xy32, ok32 = undistort_points(p32, k32, d32)
    assert xy32.dtype == torch.float32 and ok32.all()
    torch.testing.assert_close(xy32.double(), undistort_points(pix, k, d)[0], rtol=0, atol=1e-5)
    proj = project_points(x.float(), k32, e32, d32)
    assert proj.dtype == torch.float32
    torch.testing.assert_close(proj.double(), project_points(x, k, ext, d), rtol=0, atol=1e-3)



# ------------------------------------------------------------------------ degenerate gradients


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
    assert_finite_grads(world, er, kr, dr)
    world.grad = None
    err = reprojection_error(world, pix.detach(), kr, er, dr)  # zero error: sqrt'(0) must be safe
    err.nan_to_num(0.0).sum().backward()
    assert_finite_grads(world)



# ----------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    k, ext, d = random_rig(4, seed=25, dtype=dtype)
    x = random_points((8, 17), seed=26, dtype=dtype)
    cuda = [t.cuda() for t in (k, ext, d)]
    torch.testing.assert_close(
        project_points(x.cuda(), *cuda).cpu(),
        project_points(x, k, ext, d),
        rtol=1e-5,
        atol=1e-3,
    )
