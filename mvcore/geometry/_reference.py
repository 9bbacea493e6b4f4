"""The reference triangulation: the eigen-decomposition solver that the closed-form one in
``mvcore.geometry.triangulation`` replaced (as committed before issue 16), kept as the tests'
oracle and for benchmarks. Not used by mvcore itself.

It computes the same estimator by another route: the undistortion is a plain Newton loop from
``xy_d`` with a convergence test every step (gradient: one Newton step from the detached
solution), the DLT normal matrices ``A^T A (..., K, 4, 4)`` are formed explicitly from the
rows ``w (x P'3 - P'1)``, ``w (y P'3 - P'2)`` in each point's conditioning frame, and the
smallest eigenvector comes from a batched ``torch.linalg.eigh`` (gradient by first-order
perturbation theory). Cheirality and ray-angle checks are those of ``triangulate_checked``.
Shapes as there: ``points (..., V, K, 2)`` pixels (NaN = missing) -> ``(..., K, 3)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mvcore.geometry.projection import (
    _distort_with_jacobian,
    _world_to_camera,
    distort_normalized,
)
from mvcore.geometry.triangulation import (
    _MIN_W,
    DEFAULT_MIN_RAY_ANGLE,
    TriangulatedPoints,
    _solve_dtype,
    camera_centers,
    camera_pairs,
    ray_angles,
)

__all__ = ["triangulate", "triangulate_checked", "triangulate_pairs", "undistort_points"]

# eigen-gaps are kept >= this times the largest eigenvalue in the perturbation gradient
_MIN_REL_GAP = 1e-12


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
