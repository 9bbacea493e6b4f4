"""Batched, differentiable pinhole projection in torch (OpenCV radial-tangential model):
lens distortion and its inverse, projection of world points, reprojection error.

Conventions: world -> camera ``x_cam = R x_world + t`` with extrinsics ``[R|t] (..., V, 3, 4)``;
intrinsics ``K (..., V, 3, 3)`` (full matrix, skew allowed, last row ``[0, 0, 1]``);
distortions ``(..., V, 5)`` = k1 k2 p1 p2 k3. 2D points are ``(..., V, K, 2)`` pixels, 3D points
``(..., K, 3)`` world units. Camera tensors broadcast against the points' leading dims, so
``(V, 3, 3)`` cameras serve a ``(B, V, K, 2)`` batch. NaN marks a missing point everywhere.

All functions run on the input's device and dtype, have no Python loops over batch, views,
keypoints or camera pairs, and keep gradients finite for finite inputs: missing entries are
replaced by harmless values with ``torch.where`` before any arithmetic, so NaN never reaches
the backward pass of valid entries or of the camera parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "distort_normalized",
    "project_points",
    "reprojection_error",
    "undistort_points",
]

# |z| below this (camera units) is clamped in projection so points on the camera plane give
# large but finite pixels and gradients.
_MIN_DEPTH = 1e-6
# r^2 above this is clamped inside the radial polynomial (r = 100 is 89.4 deg off-axis; no real
# lens model is valid there) so that points near the camera plane cannot overflow float32.
_MAX_R2 = 1e4


# ----------------------------------------------------------------------------- distortion


def _distort_with_jacobian(xy: Tensor, distortions: Tensor) -> tuple[Tensor, Tensor]:
    """Distort normalised points and return the 2x2 Jacobian (for Newton and Gauss-Newton).

    ``xy (..., V, K, 2)``, ``distortions (..., V, 5)`` ->
    ``(distorted (..., V, K, 2), d distorted / d xy (..., V, K, 2, 2))``.
    """
    k1, k2, p1, p2, k3 = distortions.unsqueeze(-2).unbind(-1)  # each (..., V, 1)
    x, y = xy.unbind(-1)
    xx, yy, xy_ = x * x, y * y, x * y
    r2 = xx + yy
    r2c = r2.clamp(max=_MAX_R2)
    radial = 1.0 + r2c * (k1 + r2c * (k2 + r2c * k3))
    d_radial = k1 + r2c * (2.0 * k2 + 3.0 * k3 * r2c)  # d radial / d r2
    d_radial = torch.where(r2 > _MAX_R2, torch.zeros_like(d_radial), d_radial)
    xd = x * radial + 2.0 * p1 * xy_ + p2 * (r2 + 2.0 * xx)
    yd = y * radial + p1 * (r2 + 2.0 * yy) + 2.0 * p2 * xy_
    j_xx = radial + 2.0 * xx * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    j_xy = 2.0 * xy_ * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    j_yy = radial + 2.0 * yy * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    jac = torch.stack([j_xx, j_xy, j_xy, j_yy], dim=-1).reshape(x.shape + (2, 2))
    return torch.stack([xd, yd], dim=-1), jac


def distort_normalized(xy: Tensor, distortions: Tensor) -> Tensor:
    """Apply OpenCV radial-tangential distortion to normalised camera coordinates.

    ``xy (..., V, K, 2)`` (x/z, y/z), ``distortions (..., V, 5)`` -> ``(..., V, K, 2)``.
    """
    return _distort_with_jacobian(xy, distortions)[0]


def _solve2x2(jac: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``jac @ s = rhs`` for stacks of 2x2 systems, determinant kept away from 0."""
    a, b, c, d = jac.flatten(-2).unbind(-1)
    det = a * d - b * c
    tiny = torch.finfo(jac.dtype).tiny ** 0.5
    det = torch.where(det.abs() < tiny, torch.where(det < 0, -tiny, tiny), det)
    r0, r1 = rhs.unbind(-1)
    return torch.stack([(d * r0 - b * r1) / det, (a * r1 - c * r0) / det], dim=-1)


def _to_normalized(points: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels ``(..., V, K, 2)`` -> (``K^-1`` homogeneous coords ``(..., V, K, 2)``, finite mask).

    Missing (non-finite) points are replaced by 0 before the matmul so they cannot poison the
    gradient of ``intrinsics``; their outputs are meaningless and must be masked by the caller.
    """
    finite = torch.isfinite(points).all(-1)
    p = torch.where(finite[..., None], points, torch.zeros_like(points))
    hom = torch.cat([p, torch.ones_like(p[..., :1])], dim=-1)
    h = hom @ torch.linalg.inv(intrinsics).transpose(-1, -2)
    return h[..., :2] / h[..., 2:], finite


def undistort_points(
    points: Tensor,
    intrinsics: Tensor,
    distortions: Tensor,
    iterations: int = 20,
    tol: float = 1e-9,
) -> tuple[Tensor, Tensor]:
    """Pixels -> undistorted normalised camera coordinates (inverse of projection's distortion).

    ``points (..., V, K, 2)``, ``intrinsics (..., V, 3, 3)``, ``distortions (..., V, 5)`` ->
    ``(xy (..., V, K, 2), converged (..., V, K) bool)``.

    Applies the full ``K^-1`` (skew included), then solves ``distort(xy) = xy_d`` by Newton's
    method from ``xy = xy_d`` (what OpenCV's fixed-point iteration converges to, but in a few
    steps). A point counts as converged when the residual is below ``max(tol, 64 eps)`` (scaled
    by ``1 + |xy_d|``) and the solution lies on the invertible branch of the lens model (its
    symmetric 2x2 Jacobian is positive definite: not beyond the fold of a strongly negative k1
    near image corners, not a mirrored root). Points that do not converge, and NaN inputs, get
    NaN coordinates and ``converged = False``.

    Gradients use the implicit function theorem at the solution (one Newton step with a
    detached Jacobian), not the unrolled iterations, so they are exact and cheap.
    """
    xy_d, finite = _to_normalized(points, intrinsics)
    xy_d = torch.where(finite[..., None], xy_d, torch.zeros_like(xy_d))
    eps = torch.finfo(xy_d.dtype).eps
    thresh = max(tol, 64.0 * eps) * (1.0 + xy_d.detach().norm(dim=-1))

    dist_d = distortions.detach()
    target = xy_d.detach()
    with torch.no_grad():
        xy = target.clone()
        for _ in range(iterations):
            f, jac = _distort_with_jacobian(xy, dist_d)
            res = f - target
            if bool(((res.norm(dim=-1) <= thresh) | ~finite).all()):
                break
            step = _solve2x2(jac, res)
            step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
            xy = xy - step
        f, jac = _distort_with_jacobian(xy, dist_d)
        det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
        # J is symmetric; positive definite <=> on the invertible branch around the centre
        # (not past the fold, not the mirrored root of the radial polynomial).
        converged = (
            finite & ((f - target).norm(dim=-1) <= thresh) & (det > 0) & (jac[..., 0, 0] > 0)
        )
        converged &= torch.isfinite(xy).all(-1)
        xy = torch.where(converged[..., None], xy, torch.zeros_like(xy))
        jac = torch.where(
            converged[..., None, None], jac, torch.eye(2, dtype=jac.dtype, device=jac.device)
        )

    # Implicit gradient: xy* solves distort(xy*, dist) = xy_d, so one Newton step from the
    # detached solution carries d xy* / d(xy_d, dist) = J^-1 (d xy_d - d distort / d dist).
    f = distort_normalized(xy, distortions)
    xy = xy - _solve2x2(jac, f - xy_d)
    xy = torch.where(converged[..., None], xy, torch.full_like(xy, float("nan")))
    return xy, converged


# ----------------------------------------------------------------------------- projection


def _world_to_camera(points_3d: Tensor, extrinsics: Tensor) -> Tensor:
    """``(..., K, 3)`` world points -> ``(..., V, K, 3)`` camera coordinates."""
    rot = extrinsics[..., :3]  # (..., V, 3, 3)
    t = extrinsics[..., 3]  # (..., V, 3)
    return points_3d.unsqueeze(-3) @ rot.transpose(-1, -2) + t.unsqueeze(-2)


def _safe_depth(z: Tensor) -> Tensor:
    """Keep ``|z| >= _MIN_DEPTH`` with the sign of ``z`` (0 counts as in front)."""
    return torch.where(z.abs() < _MIN_DEPTH, torch.where(z < 0, -_MIN_DEPTH, _MIN_DEPTH), z)


def _apply_intrinsics(xy: Tensor, intrinsics: Tensor) -> Tensor:
    """Normalised ``(..., V, K, 2)`` -> pixels via the full homogeneous ``K`` (skew included)."""
    hom = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1) @ intrinsics.transpose(-1, -2)
    return hom[..., :2] / hom[..., 2:]


def project_points(
    points_3d: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
) -> Tensor:
    """Project world points into every view, with lens distortion.

    ``points_3d (..., K, 3)``, ``intrinsics (..., V, 3, 3)``, ``extrinsics (..., V, 3, 4)``,
    ``distortions (..., V, 5)`` or None -> pixels ``(..., V, K, 2)``; matches
    ``cv2.projectPoints``. NaN 3D points give NaN pixels. Points behind a camera are still
    projected (through the centre, i.e. mirrored, as OpenCV does); depths with ``|z| < 1e-6``
    are clamped so outputs and gradients stay finite for finite inputs.
    """
    valid = torch.isfinite(points_3d).all(-1)  # (..., K)
    x = torch.where(valid[..., None], points_3d, torch.zeros_like(points_3d))
    cam = _world_to_camera(x, extrinsics)
    xy = cam[..., :2] / _safe_depth(cam[..., 2:])
    if distortions is not None:
        xy = distort_normalized(xy, distortions)
    pix = _apply_intrinsics(xy, intrinsics)
    return torch.where(valid.unsqueeze(-2)[..., None], pix, torch.full_like(pix, float("nan")))


def reprojection_error(
    points_3d: Tensor,
    points_2d: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
) -> Tensor:
    """Euclidean pixel distance between projected 3D points and observed 2D points.

    ``points_3d (..., K, 3)``, ``points_2d (..., V, K, 2)`` -> ``(..., V, K)``; NaN where either
    is missing. Differentiable with finite gradients (also at zero error).
    """
    diff = project_points(points_3d, intrinsics, extrinsics, distortions) - points_2d
    valid = torch.isfinite(diff).all(-1)
    diff = torch.where(valid[..., None], diff, torch.zeros_like(diff))
    sq = (diff * diff).sum(-1)
    pos = sq > 0
    err = torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))
    return torch.where(valid, err, torch.full_like(err, float("nan")))
