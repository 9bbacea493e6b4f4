"""Batched, differentiable pinhole camera geometry in torch (OpenCV radial-tangential model).

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
    "camera_pairs",
    "distort_normalized",
    "project_points",
    "refine_points",
    "reprojection_error",
    "rodrigues_to_matrix",
    "triangulate",
    "triangulate_pairs",
    "undistort_points",
]

# |z| below this (camera units) is clamped in projection so points on the camera plane give
# large but finite pixels and gradients.
_MIN_DEPTH = 1e-6
# r^2 above this is clamped inside the radial polynomial (r = 100 is 89.4 deg off-axis; no real
# lens model is valid there) so that points near the camera plane cannot overflow float32.
_MAX_R2 = 1e4
# Eigen-gaps of the DLT normal matrix below this fraction of its largest eigenvalue are clamped
# in the backward pass (exactly parallel rays / duplicated cameras would give 1/0).
_MIN_REL_GAP = 1e-12
# Homogeneous w is kept >= this when dehomogenising (unit-norm v, so |X| <= 1e12 world units):
# points at infinity from parallel rays stay finite, also after a cast to float32.
_MIN_W = 1e-12


def rodrigues_to_matrix(rvec: Tensor) -> Tensor:
    """Rodrigues vectors ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``.

    ``R = I + sin(t)/t [r]x + (1 - cos t)/t^2 [r]x^2`` with Taylor series for small angles, so
    value and gradient are accurate and finite at ``rvec = 0`` in float32 and float64.
    """
    theta2 = (rvec * rvec).sum(-1)[..., None, None]
    small = theta2 < 1e-3  # Taylor to theta^6: truncation < 1e-17 there
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    t2, t4 = theta2, theta2 * theta2
    a_series = 1.0 - t2 / 6.0 + t4 / 120.0 - t4 * t2 / 5040.0
    b_series = 0.5 - t2 / 24.0 + t4 / 720.0 - t4 * t2 / 40320.0
    a = torch.where(small, a_series, theta.sin() / theta)
    half = (0.5 * theta).sin() / theta
    b = torch.where(small, b_series, 2.0 * half * half)  # (1 - cos) / theta^2, no cancellation
    x, y, z = rvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)
    skew = skew.reshape(rvec.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device)
    return eye + a * skew + b * (skew @ skew)


def camera_pairs(num_views: int, device: torch.device | str | None = None) -> Tensor:
    """Index pairs ``(P, 2)`` long, P = V(V-1)/2, in ``itertools.combinations`` order."""
    # row-major upper triangle == combinations order: (0, 1), (0, 2), ..., (1, 2), ...
    return torch.triu_indices(num_views, num_views, offset=1, device=device).T.contiguous()


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


# ----------------------------------------------------------------------------- triangulation


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
