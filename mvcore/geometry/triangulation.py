"""Batched, differentiable linear (DLT) triangulation in torch: from all views and from
every camera pair, plus Levenberg-Marquardt refinement of the triangulated points.

Conventions (shapes, NaN for missing points, finite gradients) are those of
``mvcore.geometry.projection``.

Every solve checks the meaning of its answer, not only its numbers:

- **scale-invariant**: the DLT rows are written in world coordinates centred on the cameras'
  centroid and scaled by their spread (Hartley-style conditioning; image points are already
  normalised by ``K^-1``), so millimetres, metres or an offset world origin give the same
  digits; systems are solved in float64 (float32 only where the device has no float64, e.g.
  Apple MPS: see ``FLOAT32_RELATIVE_ERROR``);
- **cheirality**: a view that sees the first solution from behind (depth <= 0) is left out and
  the point solved again; a point still behind a view that took part is NaN;
- **conditioning**: a point whose viewing rays all meet at less than ``min_ray_angle`` degrees
  (or more than 180 minus it: cameras facing each other) has no usable depth and is NaN.

``triangulate_checked`` returns the points with these findings per view and keypoint;
``triangulate`` and ``triangulate_pairs`` return the points only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    "DEFAULT_MIN_RAY_ANGLE",
    "FLOAT32_RELATIVE_ERROR",
    "TriangulatedPoints",
    "camera_centers",
    "camera_pairs",
    "ray_angles",
    "refine_points",
    "triangulate",
    "triangulate_checked",
    "triangulate_pairs",
]

#: Rays meeting at less than this many degrees (or more than 180 minus it) fix no depth: at
#: f = 800 px, 1 px of 2D error moves a point seen by two such rays by ~7 % of its distance.
DEFAULT_MIN_RAY_ANGLE = 1.0
#: Bound on ``|X_float32 - X_float64| / (spread of the camera centres)`` for a float32 solve of
#: well-posed points (tested on the real mouse4cam rig, spread ~200 mm: 5e-4 mm at most, 7e-5 mm
#: median; the unconditioned DLT gave 1.2 mm median there).
FLOAT32_RELATIVE_ERROR = 2e-5

# Eigen-gaps of the DLT normal matrix below this fraction of its largest eigenvalue are clamped
# in the backward pass (exactly parallel rays / duplicated cameras would give 1/0).
_MIN_REL_GAP = 1e-12
# Homogeneous w is kept >= this when dehomogenising (unit-norm v, so |X| <= 1e12 spreads):
# points at infinity from parallel rays stay finite, also after a cast to float32.
_MIN_W = 1e-12


@dataclass
class TriangulatedPoints:
    """Points and what the solve found about them.

    ``points (..., K, 3)`` world units, NaN where no valid point; ``used (..., V, K)`` views that
    took part in a valid point's solve; ``behind (..., V, K)`` views whose 2D point was valid
    but which see the 3D point from behind (left out of the solve; the point is NaN when it
    remained behind a view that took part); ``narrow (..., K)`` points made NaN because their
    rays meet at less than the minimum angle."""

    points: Tensor
    used: Tensor
    behind: Tensor
    narrow: Tensor


def camera_pairs(num_views: int, device: torch.device | str | None = None) -> Tensor:
    """Index pairs ``(P, 2)`` long, P = V(V-1)/2, in ``itertools.combinations`` order."""
    # row-major upper triangle == combinations order: (0, 1), (0, 2), ..., (1, 2), ...
    return torch.triu_indices(num_views, num_views, offset=1, device=device).T.contiguous()


def camera_centers(extrinsics: Tensor) -> Tensor:
    """World positions ``C = -R^T t (..., V, 3)`` of cameras ``[R|t] (..., V, 3, 4)``."""
    rot, t = extrinsics[..., :3], extrinsics[..., 3:]
    return -(rot.transpose(-1, -2) @ t).squeeze(-1)


def ray_angles(points_3d: Tensor, extrinsics: Tensor) -> Tensor:
    """Sine of the angle between the viewing rays of every camera pair at each point.

    ``points_3d (..., K, 3)``, ``extrinsics (..., V, 3, 4)`` -> ``(..., P, K)`` in
    ``camera_pairs`` order; 0 for parallel or opposite rays (no depth), 1 for perpendicular.
    NaN points give NaN."""
    rays = points_3d.unsqueeze(-3) - camera_centers(extrinsics).unsqueeze(-2)  # (..., V, K, 3)
    pairs = camera_pairs(rays.shape[-3], device=rays.device)
    return _sine_between(rays.index_select(-3, pairs[:, 0]), rays.index_select(-3, pairs[:, 1]))


def _sine_between(a: Tensor, b: Tensor) -> Tensor:
    """Sine of the angle between vectors ``a`` and ``b (..., 3)`` -> ``(...)``."""
    tiny = torch.finfo(a.dtype).tiny
    a = a / a.norm(dim=-1, keepdim=True).clamp(min=tiny)
    b = b / b.norm(dim=-1, keepdim=True).clamp(min=tiny)
    return torch.linalg.cross(a, b).norm(dim=-1)


def _solve_dtype(t: Tensor, requested: torch.dtype | None) -> torch.dtype:
    """float64 unless requested otherwise or the device lacks it (Apple MPS)."""
    if requested is not None:
        return requested
    return t.dtype if t.device.type == "mps" else torch.float64


def _world_frame(centers: Tensor, views: Tensor) -> tuple[Tensor, Tensor]:
    """Conditioning frame of each point's solve: the centroid ``(..., K, 3)`` of the centres
    ``(..., V, 3)`` of the views that take part (``views (..., V, K)``) and their RMS distance
    from it ``(..., K)`` (1 where they coincide or are fewer than two). Differentiable; it
    depends only on the cameras that take part, so unused cameras change nothing."""
    weight = views.to(centers.dtype).unsqueeze(-1)  # (..., V, K, 1)
    count = weight.sum(-3).clamp(min=1.0)  # (..., K, 1)
    origin = (weight * centers.unsqueeze(-2)).sum(-3) / count
    offsets = centers.unsqueeze(-2) - origin.unsqueeze(-3)  # (..., V, K, 3)
    spread = (weight * offsets.square()).sum((-3, -1)) / count.squeeze(-1)
    positive = spread > 0
    return origin, torch.where(positive, spread, torch.ones_like(spread)).sqrt()


def _normalised_xy(
    points: Tensor, intrinsics: Tensor, distortions: Tensor | None, undistort: bool
) -> tuple[Tensor, Tensor]:
    """Pixels ``(..., V, K, 2)`` -> normalised image coordinates and their validity."""
    if undistort and distortions is not None:
        return undistort_points(points, intrinsics, distortions)
    return _to_normalized(points, intrinsics)


def _dlt_normal_matrices(
    xy: Tensor, valid: Tensor, weights: Tensor, extrinsics: Tensor, origin: Tensor, spread: Tensor
) -> Tensor:
    """Per-view DLT normal matrices ``A_v^T A_v (..., V, K, 4, 4)`` in the conditioned frame
    ``origin (..., K, 3)``, ``spread (..., K)``.

    With world ``X = origin + spread * X'`` the camera ``[R|t]`` becomes
    ``P' = [spread R | R origin + t]`` and ``A_v`` has the rows ``w (x P'3 - P'1)`` and
    ``w (y P'3 - P'2)`` for undistorted normalised ``(x, y)``; invalid views have zero rows.
    """
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    w = torch.where(valid, weights, torch.zeros_like(weights))
    rot = extrinsics[..., :3].unsqueeze(-3)  # (..., V, 1, 3, 3)
    scaled = rot * spread.unsqueeze(-2)[..., None, None]  # (..., V, K, 3, 3)
    shifted = _world_to_camera(origin, extrinsics).unsqueeze(-1)  # (..., V, K, 3, 1)
    batch = torch.broadcast_shapes(scaled.shape[:-2], shifted.shape[:-2])
    proj = torch.cat([scaled.expand(batch + (3, 3)), shifted.expand(batch + (3, 1))], -1)
    rows = xy.unsqueeze(-1) * proj[..., 2:3, :] - proj[..., :2, :]  # (..., V, K, 2, 4)
    rows = rows * w[..., None, None]
    return rows.transpose(-1, -2) @ rows


def _solve_homogeneous(normal: Tensor, ok: Tensor) -> Tensor:
    """Null vector of ``normal (..., 4, 4)`` dehomogenised -> ``(..., 3)``; 0 where not ``ok``
    (callers mark those NaN after un-conditioning, so no NaN enters the backward pass).

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
    return torch.where(ok[..., None], x, torch.zeros_like(x))


def _depths(points_3d: Tensor, extrinsics: Tensor) -> Tensor:
    """Depth ``z`` of ``(..., K, 3)`` points in every camera -> ``(..., V, K)``."""
    return _world_to_camera(points_3d, extrinsics)[..., 2]


def _cast(dtype: torch.dtype, *tensors: Tensor | None) -> list[Tensor | None]:
    return [t if t is None else t.to(dtype) for t in tensors]


def _prepare(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None,
    weights: Tensor | None,
    undistort: bool,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalised image points ``(..., V, K, 2)``, their validity and row weights
    ``(..., V, K)`` (broadcast to one shape) and the extrinsics, all in ``dtype``."""
    intrinsics, extrinsics, distortions, weights = _cast(
        dtype, intrinsics, extrinsics, distortions, weights
    )
    xy, valid = _normalised_xy(points.to(dtype), intrinsics, distortions, undistort)
    shape = torch.broadcast_shapes(xy.shape[:-1], extrinsics.shape[:-2] + (1,))
    if weights is not None:
        shape = torch.broadcast_shapes(shape, weights.shape)
        weights = weights.expand(shape)
        valid = valid.expand(shape) & torch.isfinite(weights) & (weights > 0)
    else:
        weights = torch.ones(shape, dtype=dtype, device=xy.device)
    return xy.expand(shape + (2,)), valid.expand(shape), weights, extrinsics


def _solve_checked(
    xy: Tensor, valid: Tensor, weights: Tensor, extrinsics: Tensor, min_ray_angle: float
) -> TriangulatedPoints:
    """The checked solve of ``triangulate_checked`` on normalised points (module docstring)."""
    centers = camera_centers(extrinsics)

    def solve(views: Tensor) -> Tensor:
        origin, spread = _world_frame(centers, views)
        normal = _dlt_normal_matrices(xy, views, weights, extrinsics, origin, spread)
        enough = views.sum(-2) >= 2
        point = origin + spread[..., None] * _solve_homogeneous(normal.sum(-4), enough)
        return torch.where(enough[..., None], point, torch.full_like(point, float("nan")))

    solved = solve(valid)
    with torch.no_grad():
        behind = valid & (_depths(solved, extrinsics) <= 0)
    front = valid
    if bool(behind.any()):  # rare on a sound rig: solve again without those views
        front = valid & ~behind
        solved = solve(front)
    with torch.no_grad():
        still_behind = front & (_depths(solved, extrinsics) <= 0)
        behind |= still_behind
        ok = (front.sum(-2) >= 2) & ~still_behind.any(-2)
        sines = ray_angles(solved, extrinsics)  # (..., P, K)
        pairs = camera_pairs(front.shape[-2], device=front.device)
        both = front.index_select(-2, pairs[:, 0]) & front.index_select(-2, pairs[:, 1])
        best = torch.where(both, sines, torch.zeros_like(sines)).amax(-2)
        narrow = ok & (best < math.sin(math.radians(min_ray_angle)))
        ok &= ~narrow
        used = front & ok.unsqueeze(-2)
    solved = torch.where(ok[..., None], solved, torch.full_like(solved, float("nan")))
    return TriangulatedPoints(solved, used, behind, narrow)


def triangulate_checked(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    weights: Tensor | None = None,
    undistort: bool = True,
    min_ray_angle: float = DEFAULT_MIN_RAY_ANGLE,
    solve_dtype: torch.dtype | None = None,
) -> TriangulatedPoints:
    """Linear (DLT) triangulation from all valid views, batched, with cheirality and
    conditioning checks (module docstring).

    ``points (..., V, K, 2)`` pixels (NaN = missing), cameras ``(..., V, 3, 3)``,
    ``(..., V, 3, 4)``, ``(..., V, 5)``, optional confidence ``weights (..., V, K)`` that scale
    each view's DLT rows (0 drops the view). Points are undistorted (``undistort_points``;
    non-converged points count as missing) unless ``undistort=False`` or ``distortions is
    None``, in which case only ``K^-1`` is applied (pass identity intrinsics to triangulate
    normalised coordinates). The homogeneous system is solved by one batched ``eigh`` of
    ``A^T A`` in ``solve_dtype`` (default float64); the points have the input dtype.
    Keypoints with fewer than 2 views in front of the camera are NaN. Gradients are finite
    for degenerate and missing input and zero for points made NaN.
    """
    dt = _solve_dtype(points, solve_dtype)
    prepared = _prepare(points, intrinsics, extrinsics, distortions, weights, undistort, dt)
    out = _solve_checked(*prepared, min_ray_angle)
    out.points = out.points.to(points.dtype)
    return out


def triangulate(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    weights: Tensor | None = None,
    undistort: bool = True,
    min_ray_angle: float = DEFAULT_MIN_RAY_ANGLE,
    solve_dtype: torch.dtype | None = None,
) -> Tensor:
    """The points ``(..., K, 3)`` of ``triangulate_checked`` (same arguments)."""
    return triangulate_checked(
        points, intrinsics, extrinsics, distortions, weights, undistort, min_ray_angle,
        solve_dtype,
    ).points


def triangulate_pairs(
    points: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    distortions: Tensor | None = None,
    undistort: bool = True,
    min_ray_angle: float = DEFAULT_MIN_RAY_ANGLE,
    solve_dtype: torch.dtype | None = None,
) -> Tensor:
    """DLT triangulation from every camera pair, in one batched solve.

    ``points (..., V, K, 2)`` -> ``(..., P, K, 3)``, P = V(V-1)/2 pairs in
    ``itertools.combinations(range(V), 2)`` order (see ``camera_pairs``). Each pair is the
    two-view ``triangulate_checked`` (conditioned on the pair's own cameras): its point is NaN
    where either view misses the keypoint, where it lies behind either camera, or where the
    two rays meet at less than ``min_ray_angle`` degrees. Otherwise as ``triangulate``.
    """
    dt = _solve_dtype(points, solve_dtype)
    xy, valid, weights, extrinsics = _prepare(
        points, intrinsics, extrinsics, distortions, None, undistort, dt
    )
    pairs = camera_pairs(valid.shape[-2], device=points.device).flatten()  # (2P,)

    def by_pair(t: Tensor, view_dim: int) -> Tensor:
        """``(..., V, ...)`` -> ``(..., P, 2, ...)`` along ``view_dim``."""
        return t.index_select(view_dim, pairs).unflatten(view_dim, (-1, 2))

    out = _solve_checked(by_pair(xy, -3), by_pair(valid, -2), by_pair(weights, -2),
                         by_pair(extrinsics, -3), min_ray_angle)
    return out.points.to(points.dtype)


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
        dt = _solve_dtype(points_3d, None)
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
