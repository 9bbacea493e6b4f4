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

**The solve.** Each point is the homogeneous least-squares DLT solution: the eigenvector
``v = (x, 1)`` of the smallest eigenvalue ``l`` of the 4x4 normal matrix
``M = [[H, g], [g^T, c]] = A^T A`` of its conditioned rows. It is found in closed form, without
an eigen-decomposition (a batched LAPACK ``eigh`` of 4x4 matrices costs ~5 us per matrix on a
CPU): ``x(l) = -(H - l I)^-1 g`` with the 3x3 inverse written out through its adjugate
(``adj(H - l I) = adj H + l (H - tr(H) I) + l^2 I``), starting from ``l = 0`` (the
inhomogeneous least-squares point, the 3x3 normal equations: another estimator) and updating
``l`` twice to the Rayleigh quotient of ``(x, 1)``. Each update squares the error (the quotient
is second-order accurate), so from the ~1e-3 relative gap between the inhomogeneous and the
homogeneous point of noisy labels the result is the homogeneous estimator to 1e-10 relative
(``_SOLVE_TOL``; systems that fail the test get more updates, then an exact ``eigh``).
``tests/core/geometry/test_fast_paths.py`` pins values and gradients to the ``eigh`` solver
this replaced, kept as ``mvcore.geometry._reference``. A system that passes the test keeps its
value, so a point's result does not depend on the other points of the batch, bit for bit. The
normal matrices are built from per-view terms in one matrix product per call (no per-point
3x4 matrices), and everything runs on contiguous per-component tensors, so a call is a few
hundred elementwise kernels whatever B, V and K.

Gradients are exact and cheap: the Newton undistortion and the solve have hand-written
backward passes (implicit function theorem at the solution: for the solve,
``dx = -(H - l I)^-1 (dg + dH x - dl x)`` with ``dl = v^T dM v / v^T v``), so no gradient
algebra runs under ``no_grad`` and the iterations are not unrolled; near-singular systems
(parallel rays, duplicated cameras) keep the determinant at least ``1e-12 tr(H)^3`` so that
values and gradients stay finite (such points are then NaN by the ray-angle check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mvcore.geometry.projection import (
    _apply_intrinsics,
    _distort_with_jacobian,
    _normalized_components,
    _safe_depth,
    _undistort_components,
    _world_to_camera,
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

# det(H - l I) is kept >= this times tr(H)^3 (its smallest eigenvalue >= ~1e-12 of the largest):
# exactly parallel rays or duplicated cameras give large but finite points and gradients.
_MIN_REL_DET = 1e-12
# Entries (row, column) of a symmetric 4x4 normal matrix in the order the solver reads them:
# H00 H01 H02 H11 H12 H22, g0 g1 g2 (column 3), c.
_ENTRY_ROWS = (0, 0, 0, 1, 1, 2, 0, 1, 2, 3)
_ENTRY_COLS = (0, 1, 2, 1, 2, 2, 3, 3, 3, 3)
# Rayleigh-quotient (Newton) updates of the eigenvalue estimate (each squares the error).
_EIGEN_UPDATES = 2
# A solve counts as converged when its next update would move x by less than this (relative).
_SOLVE_TOL = 1e-10
# Further updates (one convergence test each) before the exact eigh of what still fails.
_EXTRA_UPDATES = 3
# Where each of the 16 entries of a 4x4 normal matrix is among the 10 stored ones.
_FULL_ENTRIES = (0, 1, 2, 6, 1, 3, 4, 7, 2, 4, 5, 8, 6, 7, 8, 9)
# Homogeneous w is kept >= this when an eigenvector is dehomogenised (unit-norm v, so |X| <=
# 1e12 spreads): points at infinity from parallel rays stay finite.
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


# ------------------------------------------------------------------ the closed-form solve


class _HomogeneousSolve(torch.autograd.Function):
    """Symmetric normal matrices ``(..., 10, K)`` (entries in ``_ENTRY_ROWS/COLS`` order) and
    ``ok (..., K)`` -> dehomogenised smallest eigenvectors ``x (..., 3, K)`` (module
    docstring); 0 where not ``ok`` (callers mark those NaN, so no NaN enters a gradient)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, normal: Tensor, ok: Tensor
    ) -> Tensor:
        # not ok -> H = 2 I, g = 0, c = 1: x = 0, l = 1 (a converged, harmless system)
        filler = normal.new_tensor([2.0, 0, 0, 2, 0, 2, 0, 0, 0, 1]).unsqueeze(-1)
        entries = torch.where(ok.unsqueeze(-2), normal, filler).movedim(-2, 0).contiguous()
        a, b, c, d, e, f, g0, g1, g2, cst = entries.unbind(0)
        # adjugate (cofactors) of H, and what x(l) needs for any shift l:
        # adj(H - l I) g = adj(H) g + l (H g - tr g) + l^2 g,
        # det(H - l I) = det H - l (A + D + F) + l^2 tr - l^3
        cof = [(d * f).addcmul_(e, e, value=-1.0), (c * e).addcmul_(b, f, value=-1.0),
               (b * e).addcmul_(c, d, value=-1.0), (a * f).addcmul_(c, c, value=-1.0),
               (b * c).addcmul_(a, e, value=-1.0), (a * d).addcmul_(b, b, value=-1.0)]
        det0 = (a * cof[0]).addcmul_(b, cof[1]).addcmul_(c, cof[2])
        trace = a + d + f
        minors = cof[0] + cof[3] + cof[5]
        floor = trace.abs().pow_(3).mul_(_MIN_REL_DET).clamp_(min=torch.finfo(a.dtype).tiny)
        g = (g0, g1, g2)
        y0 = [(cof[0] * g0).addcmul_(cof[1], g1).addcmul_(cof[2], g2),
              (cof[1] * g0).addcmul_(cof[3], g1).addcmul_(cof[4], g2),
              (cof[2] * g0).addcmul_(cof[4], g1).addcmul_(cof[5], g2)]
        y1 = [(a * g0).addcmul_(b, g1).addcmul_(c, g2).addcmul_(trace, g0, value=-1.0),
              (b * g0).addcmul_(d, g1).addcmul_(e, g2).addcmul_(trace, g1, value=-1.0),
              (c * g0).addcmul_(e, g1).addcmul_(f, g2).addcmul_(trace, g2, value=-1.0)]

        def determinant(lam: Tensor) -> Tensor:
            """det(H - l I), kept >= ``floor`` (systems where it is not are tested as not
            converged, and are then solved by eigh: there it is >= 0)."""
            det = (trace - lam).mul_(lam).sub_(minors).mul_(lam).add_(det0)
            return torch.maximum(det, floor)

        def point(lam: Tensor) -> tuple[list[Tensor], Tensor]:
            """``x(l) = -adj(H - l I) g / det(H - l I)`` componentwise, and the determinant."""
            det = determinant(lam)
            scale = det.reciprocal().neg_()
            lam2 = lam * lam
            return [torch.addcmul(y, lam, z).addcmul_(lam2, gi).mul_(scale)
                    for y, z, gi in zip(y0, y1, g, strict=True)], det

        def newton(x: list[Tensor], lam: Tensor | None) -> Tensor:
            """Next ``l``: the Rayleigh quotient of ``(x(l), 1)``, which is also Newton's step
            on ``c - l + g.x(l) = 0`` (module docstring): ``l + (c - l + g.x) / (1 + |x|^2)``."""
            gx = (g0 * x[0]).addcmul_(g1, x[1]).addcmul_(g2, x[2]).add_(cst)
            xx = (x[0] * x[0]).addcmul_(x[1], x[1]).addcmul_(x[2], x[2]).add_(1.0)
            return gx.div_(xx) if lam is None else gx.sub_(lam).div_(xx).add_(lam)

        def converged(lam: Tensor, det: Tensor, step: Tensor) -> Tensor:
            """Whether ``l`` is H's smallest eigenvalue to ``_SOLVE_TOL``: ``H - l I`` is
            positive definite (then ``l`` is the only root of the secular equation below H's
            smallest eigenvalue: the three elementary symmetric functions of ``H - l I`` are
            positive) and the next step moves ``x`` by at most ``_SOLVE_TOL`` relative
            (``|dx| <= |dl| |x| / mu`` with ``mu >= det / minors`` the smallest eigenvalue of
            ``H - l I``)."""
            shifted_minors = (trace * lam).mul_(-2.0).addcmul_(lam, lam, value=3.0).add_(minors)
            return ((trace > 3.0 * lam) & (shifted_minors > 0) & (det > floor)
                    & (step.mul_(shifted_minors) <= _SOLVE_TOL * det))

        det = torch.maximum(det0, floor)
        scale = det.reciprocal().neg_()
        x = [y.mul(scale) for y in y0]  # l = 0: the inhomogeneous least-squares point
        lam = newton(x, None)
        # _EIGEN_UPDATES updates, then a test; systems far from converged (rays that miss each
        # other by much, as untrained predictions give) get up to _EXTRA_UPDATES more, one
        # test each; near-degenerate rays (where the first update can jump past H's smallest
        # eigenvalue) and what else still fails get an exact eigh.
        # A system that passes the test keeps its l (and so its x): a point's result does not
        # depend on the other points of the batch, bit for bit.
        for i in range(_EIGEN_UPDATES + _EXTRA_UPDATES):
            x, det = point(lam)
            following = newton(x, lam)
            if i + 1 < _EIGEN_UPDATES:
                lam = following
                continue
            bad = ok & ~converged(lam, det, (following - lam).abs_())
            if not bool(bad.any()) or i + 1 == _EIGEN_UPDATES + _EXTRA_UPDATES:
                break
            lam = torch.where(bad, following, lam)
        out = torch.stack(x, 0)
        if bool(bad.any()):
            lam = _eigh_fallback(entries, bad, out, lam)
            det = determinant(lam)
        out = out.movedim(0, -2)
        ctx.save_for_backward(entries, out, lam, det, *cof, ok)
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None]:
        entries, out, lam, det, *cof, ok = ctx.saved_tensors
        a, b, c, d, e, f = entries[:6]
        x = out.unbind(-2)
        q = grad.unbind(-2)
        # z = -(H - l I)^-1 q, with adj(H - l I) q = adj(H) q + l H q + (l^2 - l tr) q
        mix = (lam * lam).addcmul_(lam, a + d + f, value=-1.0)
        scale = det.reciprocal().neg_()
        rows = ((0, 1, 2), (1, 3, 4), (2, 4, 5))
        h = (a, b, c, d, e, f)
        z = []
        for r in rows:
            adj_q = (cof[r[0]] * q[0]).addcmul_(cof[r[1]], q[1]).addcmul_(cof[r[2]], q[2])
            h_q = (h[r[0]] * q[0]).addcmul_(h[r[1]], q[1]).addcmul_(h[r[2]], q[2])
            z.append(adj_q.addcmul_(lam, h_q).addcmul_(mix, q[len(z)]).mul_(scale))
        # dx = -(H - l I)^-1 (dg + dH x - dl x), dl = v^T dM v / v^T v with v = (x, 1):
        # d/dH_ii = x_i t_i, d/dH_ij = x_j t_i + x_i t_j, d/dg_i = t_i - gamma x_i,
        # d/dc = -gamma, where gamma = z.x / (1 + |x|^2) and t = z - gamma x
        gamma = (z[0] * x[0]).addcmul_(z[1], x[1]).addcmul_(z[2], x[2]).div_(
            (x[0] * x[0]).addcmul_(x[1], x[1]).addcmul_(x[2], x[2]).add_(1.0))
        t = [torch.addcmul(zi, gamma, xi, value=-1.0) for zi, xi in zip(z, x, strict=True)]
        out_grad = torch.stack([
            x[0] * t[0], torch.addcmul(x[1] * t[0], x[0], t[1]),
            torch.addcmul(x[2] * t[0], x[0], t[2]), x[1] * t[1],
            torch.addcmul(x[2] * t[1], x[1], t[2]), x[2] * t[2],
            *(torch.addcmul(ti, gamma, xi, value=-1.0) for ti, xi in zip(t, x, strict=True)),
            gamma.neg(),
        ], -2)
        return torch.where(ok.unsqueeze(-2), out_grad, torch.zeros_like(out_grad)), None


def _eigh_fallback(entries: Tensor, bad: Tensor, out: Tensor, lam: Tensor) -> Tensor:
    """Exact smallest eigenvectors (batched ``eigh``) for the ``bad (..., K)`` systems of
    ``entries (10, ..., K)``, written into ``out (3, ..., K)`` in place; returns the eigenvalue
    estimates ``lam (..., K)`` with those systems' values."""
    index = bad.flatten().nonzero().squeeze(1)
    full = entries.flatten(1)[list(_FULL_ENTRIES)][:, index]  # (16, n)
    evals, evecs = torch.linalg.eigh(full.T.reshape(-1, 4, 4))
    v = evecs[..., 0]
    v = v * torch.where(v[:, 3:] < 0, -1.0, 1.0).to(v.dtype)  # w >= 0
    x = v[:, :3] / v[:, 3:].clamp(min=_MIN_W)
    out.view(3, -1)[:, index] = x.T
    return lam.flatten().index_put((index,), evals[:, 0]).view_as(lam)


# ------------------------------------------------------------------ normal matrices


def _camera_frame(centers: Tensor) -> tuple[Tensor, Tensor]:
    """Centroid ``(..., 3)`` and RMS distance from it ``(...)`` (1 where the cameras
    coincide) of camera centres ``(..., V, 3)``: the conditioning frame of a camera set."""
    origin = centers.mean(-2)
    spread = (centers - origin.unsqueeze(-2)).square().sum(-1).mean(-1)
    return origin, torch.where(spread > 0, spread, torch.ones_like(spread)).sqrt()


def _view_terms(extrinsics: Tensor, origin: Tensor, spread: Tensor) -> Tensor:
    """Per-view terms of the DLT normal matrices in the frame ``origin (..., 3)``, ``spread
    (...)`` of cameras ``(..., V, 3, 4)`` -> ``(..., 10, 4V)``.

    With world ``X = origin + spread X'`` a camera ``[R|t]`` becomes ``P' = [spread R | R origin
    + t]`` with rows ``a, b, c``; a point ``(x, y)`` of weight ``w`` adds the rows ``w (x c - a)``
    and ``w (y c - b)``, i.e. ``w^2 ((x^2 + y^2) c c^T - x (c a^T + a c^T) - y (c b^T + b c^T)
    + a a^T + b b^T)`` to ``A^T A``: the matrix product of these terms with the coefficients
    ``w^2 (x^2 + y^2, x, y, 1)`` of every view (``_coefficients``) is the normal matrix."""
    rot, t = extrinsics[..., :3], extrinsics[..., 3]
    shifted = (rot @ origin[..., None, :, None]).squeeze(-1) + t  # (..., V, 3)
    proj = torch.cat([rot * spread[..., None, None, None], shifted.unsqueeze(-1)], -1)
    # the rows a, b, c at the row i and the column j of each stored entry (i, j): (..., V, 10)
    a_i, b_i, c_i = proj.index_select(-1, proj.new_tensor(_ENTRY_ROWS, dtype=torch.long)
                                      ).unbind(-2)
    a_j, b_j, c_j = proj.index_select(-1, proj.new_tensor(_ENTRY_COLS, dtype=torch.long)
                                      ).unbind(-2)
    terms = torch.stack([c_i * c_j, torch.addcmul(c_i * a_j, a_i, c_j).neg_(),
                         torch.addcmul(c_i * b_j, b_i, c_j).neg_(),
                         torch.addcmul(a_i * a_j, b_i, b_j)], -2)  # (..., V, 4, 10)
    return terms.flatten(-3, -2).transpose(-1, -2)  # (..., 10, 4V)


def _coefficients(x: Tensor, y: Tensor, w2: Tensor, dim: int = -2) -> Tensor:
    """Per-view coefficients ``w^2 (x^2 + y^2, x, y, 1)`` of ``_view_terms`` ->
    ``(..., V, 4, K)`` from ``x, y, w2 (..., V, K)`` (``w2`` 0 where a view takes no part);
    the 4 stacked at ``dim``."""
    wx, wy = w2 * x, w2 * y
    return torch.stack([torch.addcmul(wx * x, wy, y), wx, wy, w2], dim)


def _shared_coefficients(x: Tensor, y: Tensor, w2: Tensor) -> Tensor:
    """``_coefficients`` laid out for cameras shared by the whole batch: ``x, y, w2 (..., V,
    K)`` -> contiguous ``(V, 4, ..., K)``, so that one matrix product (a single GEMM, not a
    batched one of tiny matrices) forms the normal matrices of every frame."""
    return _coefficients(x.movedim(-2, 0), y.movedim(-2, 0), w2.movedim(-2, 0), dim=1)


def _reframe(normal: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Normal matrices ``(..., 10, K)`` written in a frame -> in the frame ``X = shift +
    scale X'`` of it (``shift (..., 3, K)``, ``scale (..., K)``): ``T^T M T`` with ``T = [[scale
    I, shift], [0, 1]]``, i.e. ``H' = s^2 H``, ``g' = s (H d + g)``, ``c' = d.(H d + 2 g) + c``.
    """
    a, b, c, d, e, f, g0, g1, g2, cst = normal.unbind(-2)
    s0, s1, s2 = shift.unbind(-2)
    u0 = torch.addcmul(g0, a, s0).addcmul(b, s1).addcmul(c, s2)  # H d + g
    u1 = torch.addcmul(g1, b, s0).addcmul(d, s1).addcmul(e, s2)
    u2 = torch.addcmul(g2, c, s0).addcmul(e, s1).addcmul(f, s2)
    cst = torch.addcmul(cst, s0, u0 + g0).addcmul(s1, u1 + g1).addcmul(s2, u2 + g2)
    rest = torch.stack([u0, u1, u2], -2) * scale.unsqueeze(-2)
    return torch.cat([normal[..., :6, :] * scale.square().unsqueeze(-2), rest,
                      cst.unsqueeze(-2)], -2)


# ------------------------------------------------------------------ image points and checks


def _image_points(
    points: Tensor,
    intrinsics: Tensor,
    distortions: Tensor | None,
    weights: Tensor | None,
    undistort: bool,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixels ``(..., V, K, 2)`` -> normalised (undistorted) ``x, y``, validity and squared row
    weights ``w2`` (0 where invalid), all ``(..., V, K)`` of one shape, in ``dtype``."""
    u, v, finite = _normalized_components(points, intrinsics, dtype)
    if undistort and distortions is not None:
        x, y, valid = _undistort_components(u, v, distortions.to(dtype), finite)
    else:
        x, y, valid = u, v, finite
    if weights is not None:
        w = weights.to(dtype)
        valid = valid & torch.isfinite(w) & (w > 0)
        w2 = torch.where(valid, w * w, torch.zeros((), dtype=dtype, device=w.device))
    else:
        w2 = valid.to(dtype)
    shape = torch.broadcast_shapes(x.shape, w2.shape)
    return x.expand(shape), y.expand(shape), valid.expand(shape), w2.expand(shape)


def _depths(points: Tensor, extrinsics: Tensor) -> Tensor:
    """Depth of world points ``(..., 3, K)`` in cameras ``(..., V, 3, 4)`` -> ``(..., V, K)``
    (elementwise: a broadcast matrix product of these shapes is a slow batched GEMM)."""
    px, py, pz = points.unsqueeze(-3).unbind(-2)  # (..., 1, K)
    rx, ry, rz, t = extrinsics[..., 2, :].unsqueeze(-1).unbind(-2)  # (..., V, 1)
    return torch.addcmul(t, rx, px).addcmul_(ry, py).addcmul_(rz, pz)


def _too_narrow(local: Tensor, centers: Tensor, first: Tensor, second: Tensor,
                views: Tensor, min_ray_angle: float) -> Tensor:
    """Whether the rays from camera centres ``(..., V, 3)`` to points ``(..., 3, K)`` (same
    frame) meet at less than ``min_ray_angle`` (or more than 180 minus it) for every pair
    ``first[i], second[i]`` of ``views (..., V, K)`` -> ``(..., K)``: the largest ``sin^2 =
    1 - cos^2`` over the pairs, from unit rays ``(..., V, 3, K)`` gathered once for both ends
    of every pair."""
    rays = local.unsqueeze(-3) - centers.unsqueeze(-1)
    tiny = torch.finfo(rays.dtype).tiny
    unit = rays * rays.square().sum(-2, keepdim=True).clamp_(min=tiny).rsqrt_()
    ends = torch.cat([first, second])
    p = first.shape[0]
    gathered = unit.index_select(-3, ends)  # (..., 2P, 3, K)
    cos = (gathered[..., :p, :, :] * gathered[..., p:, :, :]).sum(-2)  # (..., P, K)
    seen = views.index_select(-2, ends)
    both = seen[..., :p, :] & seen[..., p:, :]
    widest = torch.where(both, cos.square(), torch.ones((), dtype=cos.dtype, device=cos.device))
    return widest.amin(-2) > 1.0 - math.sin(math.radians(min_ray_angle)) ** 2


# ------------------------------------------------------------------ solves


def _solve_checked(
    x: Tensor, y: Tensor, valid: Tensor, w2: Tensor, extrinsics: Tensor, min_ray_angle: float
) -> TriangulatedPoints:
    """The checked all-view solve of ``triangulate_checked`` on normalised points
    ``x, y, valid, w2 (..., V, K)`` -> world points ``(..., 3, K)`` in a ``TriangulatedPoints``
    (its ``points`` still component-first)."""
    centers = camera_centers(extrinsics)  # (..., V, 3)
    origin, spread = _camera_frame(centers)
    terms = _view_terms(extrinsics, origin, spread)  # (..., 10, 4V)
    local = (centers - origin.unsqueeze(-2)) / spread[..., None, None]  # centres, base frame
    ones = torch.ones_like(local[..., :1])
    moment_rows = torch.cat([local, local.square().sum(-1, keepdim=True), ones], -1).mT
    zero = torch.zeros((), dtype=w2.dtype, device=w2.device)

    def solve(views: Tensor) -> tuple[Tensor, Tensor]:
        """Points ``(..., 3, K)`` in the base frame from ``views (..., V, K)``, and ``ok``."""
        weights = w2 if views is valid else torch.where(views, w2, zero)
        if terms.dim() == 2:  # cameras shared by the batch: one GEMM over every frame
            coef = _shared_coefficients(x, y, weights)  # (V, 4, ..., K)
            normal = (terms @ coef.flatten(0, 1).flatten(1)).view(10, *coef.shape[2:])
            normal = normal.movedim(0, -2)  # (..., 10, K)
        else:
            normal = terms @ _coefficients(x, y, weights).flatten(-3, -2)  # (..., 10, K)
        if bool(views.all()):  # every camera everywhere: the base frame is each point's own
            ok = torch.full(normal[..., 0, :].shape, views.shape[-2] >= 2, device=views.device)
            return _HomogeneousSolve.apply(normal, ok), ok
        # each point's own frame: centroid and RMS spread of the cameras taking part; exactly
        # the base frame where all take part, so that the branch above changes no bit
        moments = moment_rows @ views.to(w2.dtype)  # (..., 5, K)
        count = moments[..., 4, :]
        every = count == views.shape[-2]
        shift = moments[..., :3, :] / count.clamp(min=1.0).unsqueeze(-2)
        shift = torch.where(every.unsqueeze(-2), zero, shift)
        var = moments[..., 3, :] / count.clamp(min=1.0) - shift.square().sum(-2)
        eps = torch.finfo(var.dtype).eps
        scale = torch.where(var > 64 * eps * moments[..., 3, :].clamp(min=eps), var,
                            torch.ones_like(var)).sqrt()
        scale = torch.where(every, torch.ones_like(scale), scale)
        ok = count >= 2
        local_x = _HomogeneousSolve.apply(_reframe(normal, shift, scale), ok)
        return torch.addcmul(shift, scale.unsqueeze(-2), local_x), ok

    def to_world(base: Tensor) -> Tensor:
        return torch.addcmul(origin.unsqueeze(-1), spread[..., None, None], base)

    base, ok = solve(valid)
    world = to_world(base)
    with torch.no_grad():
        behind = valid & ok.unsqueeze(-2) & (_depths(world, extrinsics) <= 0)
    front = valid
    if bool(behind.any()):  # rare on a sound rig: solve again without those views
        front = valid & ~behind
        base, ok = solve(front)
        world = to_world(base)
        with torch.no_grad():
            still_behind = front & ok.unsqueeze(-2) & (_depths(world, extrinsics) <= 0)
            behind = behind | still_behind
            ok = ok & ~still_behind.any(-2)
    with torch.no_grad():
        pairs = camera_pairs(front.shape[-2], device=front.device)
        narrow = ok & _too_narrow(base.detach(), local.detach(), pairs[:, 0], pairs[:, 1],
                                  front, min_ray_angle)
        ok = ok & ~narrow
        used = front & ok.unsqueeze(-2)
    world = torch.where(ok.unsqueeze(-2), world, torch.full_like(world, float("nan")))
    return TriangulatedPoints(world, used, behind, narrow)


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
    normalised coordinates). The homogeneous system is solved in closed form (module
    docstring) in ``solve_dtype`` (default float64); the points have the input dtype.
    Keypoints with fewer than 2 views in front of the camera are NaN. Gradients are finite
    for degenerate and missing input and zero for points made NaN.
    """
    dt = _solve_dtype(points, solve_dtype)
    x, y, valid, w2 = _image_points(points, intrinsics, distortions, weights, undistort, dt)
    out = _solve_checked(x, y, valid, w2, extrinsics.to(dt), min_ray_angle)
    out.points = out.points.transpose(-1, -2).to(points.dtype)
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
    x, y, valid, w2 = _image_points(points, intrinsics, distortions, None, undistort, dt)
    extrinsics = extrinsics.to(dt)
    pairs = camera_pairs(valid.shape[-2], device=valid.device)
    flat = pairs.flatten()  # (2P,): first, second of each pair
    cams = extrinsics.index_select(-3, flat).unflatten(-3, (-1, 2))  # (..., P, 2, 3, 4)
    centers = camera_centers(cams)  # (..., P, 2, 3)
    origin, spread = _camera_frame(centers)  # each pair's own frame
    terms = _view_terms(cams, origin, spread)  # (..., P, 10, 8)
    if terms.dim() == 3:  # cameras shared by the batch: one GEMM per pair over every frame
        coef = _shared_coefficients(x, y, w2).index_select(0, flat)  # (2P, 4, ..., K)
        normal = (terms @ coef.view(terms.shape[0], 8, -1)).view(*terms.shape[:2],
                                                                 *coef.shape[2:])
        normal = normal.movedim((0, 1), (-3, -2))  # (..., P, 10, K)
    else:
        coefficients = _coefficients(x, y, w2).index_select(-3, flat)  # (..., 2P, 4, K)
        normal = terms @ coefficients.unflatten(-3, (-1, 2)).flatten(-3, -2)  # (..., P, 10, K)
    both = valid.index_select(-2, pairs[:, 0]) & valid.index_select(-2, pairs[:, 1])
    local_x = _HomogeneousSolve.apply(normal, both)  # (..., P, 3, K) in the pair's frame
    world = torch.addcmul(origin.unsqueeze(-1), spread[..., None, None], local_x)
    with torch.no_grad():
        behind = (_depths(world, cams) <= 0).any(-2)  # (..., P, K)
        local = (centers - origin.unsqueeze(-2)) / spread[..., None, None]  # (..., P, 2, 3)
        one = torch.ones(1, dtype=torch.long, device=valid.device)
        narrow = _too_narrow(local_x.detach(), local, one - 1, one,
                             torch.ones_like(both).unsqueeze(-2).expand(*both.shape[:-1], 2, -1),
                             min_ray_angle)
        ok = both & ~behind & ~narrow
    world = torch.where(ok.unsqueeze(-2), world, torch.full_like(world, float("nan")))
    return world.transpose(-1, -2).to(points.dtype)


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
