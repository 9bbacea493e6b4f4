"""Batched, differentiable linear (DLT) triangulation in torch: from all views and from
every camera pair, plus Levenberg-Marquardt refinement of the triangulated points.

Conventions (shapes, NaN for missing points, finite gradients) are those of
``mvcore.geometry.projection``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mvcore.geometry.projection import (
    _apply_intrinsics,
    _distort_with_jacobian,
    _safe_depth,
    _to_normalized,
    _world_to_camera,
    undistort_points,
)

__all__ = [
    "camera_pairs",
    "refine_points",
    "triangulate",
    "triangulate_pairs",
]

# Eigen-gaps of the DLT normal matrix below this fraction of its largest eigenvalue are clamped
# in the backward pass (exactly parallel rays / duplicated cameras would give 1/0).
_MIN_REL_GAP = 1e-12
# Homogeneous w is kept >= this when dehomogenising (unit-norm v, so |X| <= 1e12 world units):
# points at infinity from parallel rays stay finite, also after a cast to float32.
_MIN_W = 1e-12


def camera_pairs(num_views: int, device: torch.device | str | None = None) -> Tensor:
    """Index pairs ``(P, 2)`` long, P = V(V-1)/2, in ``itertools.combinations`` order."""
    # row-major upper triangle == combinations order: (0, 1), (0, 2), ..., (1, 2), ...
    return torch.triu_indices(num_views, num_views, offset=1, device=device).T.contiguous()


def _solve_dtype(t: Tensor) -> torch.dtype:
    """DLT systems are solved in float64 (MPS lacks it): A^T A squares the condition number."""
    return t.dtype if t.device.type == "mps" else torch.float64


def _dlt_normal_matrices(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None,
    weights: Tensor | None,
    undistort: bool,
) -> tuple[Tensor, Tensor]:
    """Per-view DLT normal matrices ``A_v^T A_v (..., V, K, 4, 4)`` and validity ``(..., V, K)``.

    ``A_v`` has the textbook rows ``w (x P3 - P1)`` and ``w (y P3 - P2)`` with ``P = [R|t]`` and
    (x, y) undistorted normalised coordinates; invalid views have zero rows.
    """
    if undistort and distortions is not None:
        xy, valid = undistort_points(points, intrinsics, distortions)
    else:
        xy, valid = _to_normalized(points, intrinsics)
    shape = torch.broadcast_shapes(xy.shape[:-1], extrinsics.shape[:-2] + (1,))
    if weights is not None:
        shape = torch.broadcast_shapes(shape, weights.shape)
    xy = xy.expand(shape + (2,))
    valid = valid.expand(shape)
    if weights is not None:
        weights = weights.to(xy.dtype).expand(shape)
        valid = valid & torch.isfinite(weights) & (weights > 0)
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    w = valid.to(xy.dtype)
    if weights is not None:
        w = torch.where(valid, weights, w)
    proj = extrinsics.unsqueeze(-3)  # (..., V, 1, 3, 4)
    rows = xy.unsqueeze(-1) * proj[..., 2:3, :] - proj[..., :2, :]  # (..., V, K, 2, 4)
    rows = rows * w[..., None, None]
    return rows.transpose(-1, -2) @ rows, valid


def _solve_homogeneous(normal: Tensor, ok: Tensor) -> Tensor:
    """Null vector of ``normal (..., 4, 4)`` dehomogenised -> ``(..., 3)``; NaN where not ``ok``.

    The eigen-decomposition runs without autograd; the gradient is attached by first-order
    perturbation theory, ``dv = -sum_j q_j q_j^T dM v / (l_j - l_0)``, with the eigen-gaps
    clamped so that degenerate (near-parallel or missing) configurations give large but finite
    gradients instead of the inf/NaN of ``torch.linalg.eigh``'s own backward.
    """
    filler = torch.diag(torch.arange(1.0, 5.0, dtype=normal.dtype, device=normal.device))
    mat = torch.where(ok[..., None, None], normal, filler)
    with torch.no_grad():
        evals, evecs = torch.linalg.eigh(mat)
        v = evecs[..., 0]  # (..., 4)
        q = evecs[..., 1:]  # (..., 4, 3)
        scale = evals[..., -1:].abs().clamp(min=torch.finfo(mat.dtype).tiny)
        gap = torch.maximum(evals[..., 1:] - evals[..., :1], scale * _MIN_REL_GAP)
        pinv = (q / gap.unsqueeze(-2)) @ q.transpose(-1, -2)  # (..., 4, 4)
        sign = torch.where(v[..., 3:] < 0, -1.0, 1.0).to(v.dtype)
    delta = mat - mat.detach()  # zero-valued, carries d(mat)
    v = v - (pinv @ (delta @ v.unsqueeze(-1))).squeeze(-1)
    v = v * sign  # w >= 0
    w = v[..., 3:]
    w = torch.where(w < _MIN_W, torch.full_like(w, _MIN_W), w)
    x = v[..., :3] / w
    return torch.where(ok[..., None], x, torch.full_like(x, float("nan")))


def triangulate(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    weights: Tensor | None = None,
    undistort: bool = True,
) -> Tensor:
    """Linear (DLT) triangulation from all valid views, batched.

    ``points (..., V, K, 2)`` pixels (NaN = missing), cameras ``(..., V, 3, 3)``,
    ``(..., V, 3, 4)``, ``(..., V, 5)``, optional confidence ``weights (..., V, K)`` that scale
    each view's DLT rows (0 drops the view) -> ``(..., K, 3)`` world points.

    Points are undistorted (``undistort_points``; non-converged points count as missing) unless
    ``undistort=False`` or ``distortions is None``, in which case only ``K^-1`` is applied (pass
    identity intrinsics to triangulate normalised coordinates). The homogeneous system
    ``A X = 0`` (unnormalised textbook rows ``x P3 - P1``, ``y P3 - P2``) is solved in float64 by
    one batched ``eigh`` of ``A^T A``; the result has the input dtype. Keypoints with fewer than
    2 valid views are NaN. Gradients are finite for degenerate and missing input.
    """
    out_dtype = points.dtype
    dt = _solve_dtype(points)
    cast = [t if t is None else t.to(dt) for t in (intrinsics, extrinsics, distortions, weights)]
    normal, valid = _dlt_normal_matrices(points.to(dt), *cast[:3], cast[3], undistort)
    ok = valid.sum(-2) >= 2  # (..., K)
    return _solve_homogeneous(normal.sum(-4), ok).to(out_dtype)


def triangulate_pairs(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    undistort: bool = True,
) -> Tensor:
    """DLT triangulation from every camera pair, in one batched solve.

    ``points (..., V, K, 2)`` -> ``(..., P, K, 3)``, P = V(V-1)/2 pairs in
    ``itertools.combinations(range(V), 2)`` order (see ``camera_pairs``). A keypoint missing in
    either view of a pair is NaN for that pair. Same conventions as ``triangulate``.
    """
    out_dtype = points.dtype
    dt = _solve_dtype(points)
    cast = [t if t is None else t.to(dt) for t in (intrinsics, extrinsics, distortions)]
    normal, valid = _dlt_normal_matrices(points.to(dt), *cast, None, undistort)
    pairs = camera_pairs(valid.shape[-2], device=points.device)
    normal = normal.index_select(-4, pairs[:, 0]) + normal.index_select(-4, pairs[:, 1])
    ok = valid.index_select(-2, pairs[:, 0]) & valid.index_select(-2, pairs[:, 1])
    return _solve_homogeneous(normal, ok).to(out_dtype)


def refine_points(
    points_3d: Tensor,
    points_2d: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    weights: Tensor | None = None,
    iterations: int = 10,
) -> Tensor:
    """Refine 3D points by batched Levenberg-Marquardt on the squared pixel reprojection error.

    ``points_3d (..., K, 3)`` (e.g. from ``triangulate``), ``points_2d (..., V, K, 2)`` with NaN
    for missing views, optional ``weights (..., V, K)`` -> ``(..., K, 3)``. Each keypoint is an
    independent 3-parameter problem; a step is kept only where it lowers the cost. NaN inputs
    stay NaN. Runs under ``no_grad`` (use it for evaluation / targets, not inside a loss).
    """
    with torch.no_grad():
        dt = _solve_dtype(points_3d)
        out_dtype = points_3d.dtype
        x = points_3d.to(dt)
        obs = points_2d.to(dt)
        intr, extr = intrinsics.to(dt), extrinsics.to(dt)
        dist = None if distortions is None else distortions.to(dt)
        start_ok = torch.isfinite(x).all(-1)
        x = torch.where(start_ok[..., None], x, torch.zeros_like(x))
        w = torch.isfinite(obs).all(-1).to(dt)
        if weights is not None:
            w = w * torch.nan_to_num(weights.to(dt), nan=0.0).clamp(min=0)
        obs = torch.nan_to_num(obs, nan=0.0)

        def residual_and_jacobian(pts: Tensor) -> tuple[Tensor, Tensor]:
            cam = _world_to_camera(pts, extr)  # (..., V, K, 3)
            z = _safe_depth(cam[..., 2])
            xn = cam[..., :2] / z[..., None]
            if dist is None:
                xd, jd = xn, torch.eye(2, dtype=dt, device=xn.device).expand(xn.shape + (2,))
            else:
                xd, jd = _distort_with_jacobian(xn, dist)
            res = _apply_intrinsics(xd, intr) - obs
            # d xn / d cam: [[1/z, 0, -x/z], [0, 1/z, -y/z]] / z
            zeros = torch.zeros_like(z)
            inv_z = 1.0 / z
            dn = torch.stack(
                [inv_z, zeros, -xn[..., 0] * inv_z, zeros, inv_z, -xn[..., 1] * inv_z], dim=-1
            ).reshape(z.shape + (2, 3))
            kmat = intr[..., :2, :2].unsqueeze(-3)  # (..., V, 1, 2, 2)
            jac = kmat @ jd @ dn @ extr[..., :3].unsqueeze(-3)  # (..., V, K, 2, 3)
            return res, jac

        def cost(res: Tensor) -> Tensor:
            return (w * (res * res).sum(-1)).sum(-2)  # (..., K)

        res, jac = residual_and_jacobian(x)
        cur = cost(res)
        lam = torch.full_like(cur, 1e-3)
        eye = torch.eye(3, dtype=dt, device=x.device)
        for _ in range(iterations):
            wj = jac * w[..., None, None]
            hess = (wj.transpose(-1, -2) @ jac).sum(-4)  # (..., K, 3, 3)
            grad = (wj.transpose(-1, -2) @ res.unsqueeze(-1)).sum(-4).squeeze(-1)
            diag = hess.diagonal(dim1=-2, dim2=-1).clamp(min=1e-12)
            damped = hess + lam[..., None, None] * torch.diag_embed(diag) + 1e-12 * eye
            step = torch.linalg.solve(damped, -grad.unsqueeze(-1)).squeeze(-1)
            step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
            x_new = x + step
            res_new, jac_new = residual_and_jacobian(x_new)
            new = cost(res_new)
            better = new < cur
            x = torch.where(better[..., None], x_new, x)
            res = torch.where(better.unsqueeze(-2)[..., None], res_new, res)
            jac = torch.where(better.unsqueeze(-2)[..., None, None], jac_new, jac)
            cur = torch.where(better, new, cur)
            lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-9, 1e9)
        x = torch.where(start_ok[..., None], x, torch.full_like(x, float("nan")))
        return x.to(out_dtype)
