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

from collections.abc import Callable

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


def _to_normalized(points: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels ``(..., V, K, 2)`` -> (``K^-1`` homogeneous coords ``(..., V, K, 2)``, finite mask).

    Missing (non-finite) points are replaced by 0 before the matmul so they cannot poison the
    gradient of ``intrinsics``; their outputs are meaningless and must be masked by the caller.
    """
    u, v, finite = _normalized_components(points, intrinsics)
    return torch.stack([u, v], dim=-1), finite


def _normalized_components(
    points: Tensor, intrinsics: Tensor, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels ``(..., V, K, 2)`` -> ``K^-1`` coordinates as two contiguous ``(..., V, K)``
    tensors ``u, v`` (in ``dtype``, default the points') and their finite mask ``(..., V, K)``.

    Components rather than ``(..., 2)`` pairs: every later operation is then one elementwise
    kernel on contiguous memory, which is what the Newton iterations and the DLT need (a
    reduction over a last axis of size 2 costs as much as ten elementwise kernels on a CPU).
    Missing points become 0 before any arithmetic (NaN never reaches a gradient)."""
    dtype = points.dtype if dtype is None else dtype
    uv = points.movedim(-1, 0).to(dtype).contiguous()  # (2, ..., V, K)
    finite = torch.isfinite(uv[0] + uv[1])
    uv = torch.where(finite, uv, torch.zeros((), dtype=dtype, device=uv.device))
    pu, pv = uv.unbind(0)
    inv = torch.linalg.inv(intrinsics.to(dtype)).unsqueeze(-3)  # (..., V, 1, 3, 3)
    h = [torch.addcmul(inv[..., i, 2], inv[..., i, 0], pu).addcmul(inv[..., i, 1], pv)
         for i in range(3)]
    return h[0] / h[2], h[1] / h[2], finite


def _expanded_coefficients(distortions: Tensor, shape: torch.Size) -> Tensor:
    """``(..., V, 5)`` -> contiguous ``(5, *shape)`` (shape ``(..., V, K)``): elementwise kernels
    on equal contiguous shapes are twice as fast as broadcasting ones."""
    coef = distortions.unsqueeze(-2).expand(*shape, 5)
    return coef.movedim(-1, 0).contiguous()


def _newton_terms(
    x: Tensor, y: Tensor, coef: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Distortion of ``(x, y)`` and its symmetric Jacobian, componentwise, with few kernels.

    ``coef (5, ...)`` = k1 k2 k3 p1 p2 (note the order: radial first). Returns
    ``fx, fy, jxx, jxy, jyy, r2``. The lens model is OpenCV's; written as
    ``f(u) = u (radial + 2 u.q) + r2 q`` with ``q = (p2, p1)``, whose Jacobian is
    ``(radial + 2 u.q) I + 2 radial' u u^T + 2 (q u^T + u q^T)``."""
    k1, k2, k3, p1, p2 = coef.unbind(0)
    xx, yy, xy = x * x, y * y, x * y
    r2 = xx + yy
    t = torch.addcmul(k1, r2, torch.addcmul(k2, r2, k3))
    radial = torch.addcmul(torch.ones((), dtype=x.dtype, device=x.device), r2, t)
    d_radial = torch.addcmul(k1, r2, torch.addcmul(k2, r2, k3, value=1.5), value=2.0)
    a = torch.add(radial, (p1 * y).addcmul_(p2, x), alpha=2.0)  # radial + 2 u.q
    fx = (r2 * p2).addcmul_(x, a)
    fy = (r2 * p1).addcmul_(y, a)
    jxx = torch.addcmul(a, d_radial, xx, value=2.0).addcmul_(p2, x, value=4.0)
    jyy = torch.addcmul(a, d_radial, yy, value=2.0).addcmul_(p1, y, value=4.0)
    jxy = (p2 * y).addcmul_(p1, x).addcmul_(d_radial, xy).mul_(2.0)
    return fx, fy, jxx, jxy, jyy, r2


# Newton steps taken before the first convergence test: from the series initial guess they
# reach the tolerance everywhere in the image of common lenses (|k1| <= 0.3; mouse4cam's
# labels); points near the fold of a strong barrel lens continue, with one test per step.
_FIXED_STEPS = 3

_State = tuple[Tensor, ...]
#: one Newton evaluation: state -> (squared residual, on the invertible branch, next state);
#: the first two only when asked (the bool), else None
_Step = Callable[[_State, bool], tuple[Tensor | None, Tensor | None, _State]]


def _newton(state: _State, step: _Step, finite: Tensor, thresh: Tensor, iterations: int
            ) -> tuple[_State, Tensor]:
    """Newton iterations: ``_FIXED_STEPS`` without a test, then one test per step, up to
    ``iterations`` evaluations. A point stops at the first test where it has converged (finite,
    on the invertible branch, squared residual <= ``thresh``) or no longer gains (off the
    branch, or its squared residual did not fall 4x since the previous test); from then on it
    keeps its state (one step past that test) and its verdict, so that a point's result does
    not depend on the other points of the batch (bit for bit). Returns the state and
    ``converged``."""
    converged = finite
    stopped: Tensor | None = None  # points whose state and verdict are final
    residual = None
    for i in range(max(iterations, 1)):
        test = i + 1 >= min(iterations, _FIXED_STEPS + 1)
        res2, branch, new = step(state, test)
        if stopped is not None:
            new = tuple(torch.where(stopped, s, n) for s, n in zip(state, new, strict=True))
        state = new
        if res2 is not None and branch is not None:
            now = finite & branch & (res2 <= thresh)
            improving = branch if residual is None else branch & (res2 < 0.25 * residual)
            stop = now | ~(finite & improving)
            if stopped is None:
                converged, stopped = now, stop
            else:
                converged = torch.where(stopped, converged, now)
                stopped = stopped | stop
            residual = res2
            if i + 1 >= iterations or bool(stopped.all()):
                break
    return state, converged


def _radial_step(u: Tensor, v: Tensor, rho: Tensor, coef: Tensor) -> _Step:
    """Newton on the scale ``s`` of ``x = s (u, v)`` for a radial-only model (no p1, p2):
    ``F(s) = s radial(rho s^2) - 1 = 0``, one unknown instead of two (about a third of the
    kernels). The Jacobian of the 2D model has eigenvalues ``radial`` (across) and
    ``F'(s) = radial + 2 r^2 radial'`` (along the radius)."""
    k1, k2, k3 = coef[0], coef[1], coef[2]

    def step(state: _State, test: bool) -> tuple[Tensor | None, Tensor | None, _State]:
        (s,) = state
        q = torch.mul(rho, s).mul_(s)  # r^2
        radial = torch.addcmul(k1, q, torch.addcmul(k2, q, k3)).mul_(q).add_(1.0)
        d_radial = torch.addcmul(k1, q, torch.addcmul(k2, q, k3, value=1.5), value=2.0)
        slope = torch.addcmul(radial, q, d_radial, value=2.0)
        f = (s * radial).sub_(1.0)
        res2 = branch = None
        if test:
            res2 = (f * f).mul_(rho)
            branch = (radial > 0) & (slope > 0) & (q < _MAX_R2)
        return res2, branch, (s - f.div_(slope),)

    return step


def _general_step(u: Tensor, v: Tensor, coef: Tensor) -> _Step:
    """Newton on ``(x, y)`` for the full model (``_newton_terms``)."""

    def step(state: _State, test: bool) -> tuple[Tensor | None, Tensor | None, _State]:
        x, y = state
        fx, fy, jxx, jxy, jyy, r2 = _newton_terms(x, y, coef)
        rx, ry = fx.sub_(u), fy.sub_(v)
        det = (jxx * jyy).addcmul_(jxy, jxy, value=-1.0)
        res2 = branch = None
        if test:  # the Jacobian is symmetric: positive definite <=> det > 0 and jxx > 0
            res2 = (rx * rx).addcmul_(ry, ry)
            branch = (det > 0) & (jxx > 0) & (r2 < _MAX_R2)
        inv_det = det.reciprocal_()
        return res2, branch, (x - (jyy * rx).addcmul_(jxy, ry, value=-1.0).mul_(inv_det),
                              y - (jxx * ry).addcmul_(jxy, rx, value=-1.0).mul_(inv_det))

    return step


class _Undistort(torch.autograd.Function):
    """``(u, v)`` distorted normalised coordinates -> undistorted ``(x, y)`` (0 where no
    inverse) and ``converged``; the backward is the implicit-function theorem at the solution.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        u: Tensor,
        v: Tensor,
        distortions: Tensor,
        finite: Tensor,
        iterations: int,
        tol: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        ctx.shapes = (u.shape, v.shape, distortions.shape)
        shape = torch.broadcast_shapes(u.shape, v.shape, distortions.shape[:-1] + (1,))
        # k1 k2 k3 p1 p2: radial terms first, for _newton_terms
        coef = _expanded_coefficients(distortions[..., [0, 1, 4, 2, 3]], shape)
        u, v = u.expand(shape), v.expand(shape)
        eps = torch.finfo(u.dtype).eps
        rho = u * u + v * v
        # |f(x) - (u, v)| <= tol (1 + |(u, v)|), squared
        thresh = (rho.sqrt() + 1.0).square_().mul_(max(tol, 64.0 * eps) ** 2)
        # initial guess: the radial inverse series r = r_d (1 - k1 r_d^2 + (3 k1^2 - k2) r_d^4)
        k1, k2 = coef[0], coef[1]
        scale = torch.addcmul(-k1, rho, torch.addcmul(-k2, k1, k1, value=3.0))
        scale = scale.mul_(rho).add_(1.0)
        if bool(distortions[..., 2:4].any()):  # tangential terms: 2 unknowns
            (x, y), converged = _newton((u * scale, v * scale), _general_step(u, v, coef),
                                        finite, thresh, iterations)
        else:  # radial only (most calibrations): along the radius
            (scale,), converged = _newton((scale,), _radial_step(u, v, rho, coef), finite,
                                          thresh, iterations)
            x, y = u * scale, v * scale
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x, y = torch.where(converged, x, zero), torch.where(converged, y, zero)
        ctx.save_for_backward(x, y, coef, converged)
        ctx.mark_non_differentiable(converged)
        return x, y, converged

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, gx: Tensor, gy: Tensor, _: Tensor
    ) -> tuple[Tensor | None, ...]:
        # x* solves f(x*, d) = u: dx* = J^-1 (du - df/dd dd), J symmetric
        x, y, coef, converged = ctx.saved_tensors
        u_shape, v_shape, dist_shape = ctx.shapes
        needs = ctx.needs_input_grad
        _, _, jxx, jxy, jyy, r2 = _newton_terms(x, y, coef)
        inv_det = (jxx * jyy).addcmul_(jxy, jxy, value=-1.0).reciprocal_()
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        a = torch.where(converged, (jyy * gx).addcmul_(jxy, gy, value=-1.0).mul_(inv_det), zero)
        b = torch.where(converged, (jxx * gy).addcmul_(jxy, gx, value=-1.0).mul_(inv_det), zero)
        grad_u = a if needs[0] else None
        grad_v = b if needs[1] else None
        grad_d = None
        if needs[2]:
            q = x * a + y * b
            r4 = r2 * r2
            xy2 = 2.0 * x * y
            terms = torch.stack([  # d f / d (k1, k2, p1, p2, k3), contracted with (a, b)
                r2 * q, r4 * q,
                torch.addcmul(xy2 * a, torch.addcmul(r2, y, y, value=2.0), b),
                torch.addcmul(xy2 * b, torch.addcmul(r2, x, x, value=2.0), a),
                r4 * r2 * q,
            ], -1)
            grad_d = -terms.sum(-2).sum_to_size(dist_shape)
        return (
            None if grad_u is None else grad_u.sum_to_size(u_shape),
            None if grad_v is None else grad_v.sum_to_size(v_shape),
            grad_d, None, None, None,
        )


def _undistort_components(
    u: Tensor, v: Tensor, distortions: Tensor, finite: Tensor, iterations: int = 20,
    tol: float = 1e-9,
) -> tuple[Tensor, Tensor, Tensor]:
    """``undistort_points`` on components: ``u, v, finite (..., V, K)`` (missing points 0),
    ``distortions (..., V, 5)`` -> ``x, y (..., V, K)`` (0 where not converged) and
    ``converged``."""
    x, y, converged = _Undistort.apply(u, v, distortions, finite, iterations, tol)
    return x, y, converged


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
    method from the radial inverse series ``xy_d (1 - k1 r_d^2 + (3 k1^2 - k2) r_d^4)`` (on
    the invertible branch of the lens model, closer than OpenCV's start ``xy_d``): a fixed 3
    steps, then a convergence test per step; each point stops once converged or no longer
    gaining (so its result does not depend on the rest of the batch), up to ``iterations``.
    A point counts as converged when the residual is below ``max(tol, 64
    eps)`` (scaled by ``1 + |xy_d|``) and the solution lies on the invertible branch of the
    lens model (its symmetric 2x2 Jacobian is positive definite: not beyond the fold of a
    strongly negative k1 near image corners, not a mirrored root; and ``|xy|^2 < 1e4``, where
    the radial polynomial is clamped). Points that do not converge, and NaN inputs, get NaN
    coordinates and ``converged = False``.

    Gradients use the implicit function theorem at the solution (``J^-1`` of the lens model,
    in a hand-written backward), not the unrolled iterations, so they are exact and cheap.
    """
    u, v, finite = _normalized_components(points, intrinsics)
    x, y, converged = _undistort_components(u, v, distortions.to(u.dtype), finite, iterations,
                                            tol)
    xy = torch.stack([x, y], dim=-1)
    return torch.where(converged[..., None], xy, torch.full_like(xy, float("nan"))), converged


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
