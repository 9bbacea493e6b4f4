"""Weighted least-squares 2D transforms from point correspondences, batched over views.

Every fit maps ``src (B, N, 2)`` onto ``dst (B, N, 2)`` using the correspondences where
``valid (B, N)`` is true and both points are finite, and returns ``(H (B, 3, 3), ok (B,))``:
a homography with ``H[2, 2] = 1`` (identity where not ``ok``). Solved in float64 in closed form
(no Python loops over views or points) so that the 3D augmenter can fit all views at once.

Models, their parameters and the fewest points that determine them:

- ``translation`` (2, 1 point): mean displacement;
- ``similarity`` (4, 2 points): ``[[a, -b], [b, a]] x + t``, rotation + uniform scale
  (OpenCV ``estimateAffinePartial2D`` without RANSAC, what Lightning Pose uses);
- ``affine`` (6, 3 non-collinear points);
- ``homography`` (8, 4 points): normalised DLT (Hartley) on the weighted algebraic error.

``fit_with_fallback`` tries the requested model and falls back to simpler ones per view when
there are too few points, the fit is degenerate (collinear points, NaN, singular) or the
transform is implausible for an image warp (see ``plausible``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "MIN_POINTS",
    "MODELS",
    "fit_affine",
    "fit_homography",
    "fit_similarity",
    "fit_translation",
    "fit_with_fallback",
    "plausible",
]

Model = Literal["translation", "similarity", "affine", "homography"]
#: from simplest to most general; ``fit_with_fallback`` reports indices into this tuple
MODELS: tuple[str, ...] = ("translation", "similarity", "affine", "homography")
MIN_POINTS = {"translation": 1, "similarity": 2, "affine": 3, "homography": 4}

# point spread (px^2, per unit weight) below which a fit counts as degenerate
_MIN_SPREAD = 1e-6
# affine: thinnest / widest spread of the source points (collinear points -> unbounded shear)
_MIN_ANISOTROPY = 1e-3
# homography: second-smallest / largest eigenvalue of the normalised DLT system (unique solution)
_MIN_DLT_GAP = 1e-12


def _prepare(src: Tensor, dst: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """float64 points with invalid entries zeroed, and weights ``(B, N)`` (1 valid, 0 not)."""
    ok = torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1)
    if valid is not None:
        ok = ok & valid.bool()
    src = torch.where(ok[..., None], src.double(), 0.0)
    dst = torch.where(ok[..., None], dst.double(), 0.0)
    return src, dst, ok.double()


def _weighted_mean(x: Tensor, w: Tensor) -> Tensor:
    """``(B, N, 2)``, ``(B, N)`` -> ``(B, 2)``; zero where no weight."""
    return (x * w[..., None]).sum(-2) / w.sum(-1, keepdim=True).clamp(min=1.0)


def _homogeneous(linear: Tensor, shift: Tensor) -> Tensor:
    """``(B, 2, 2)``, ``(B, 2)`` -> ``(B, 3, 3)`` ``[[A, t], [0, 0, 1]]``."""
    top = torch.cat([linear, shift[..., None]], dim=-1)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=top.dtype).expand(top.shape[0], 1, 3)
    return torch.cat([top, bottom], dim=-2)


def _finalise(mat: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    ok = ok & torch.isfinite(mat).flatten(-2).all(-1)
    eye = torch.eye(3, dtype=mat.dtype).expand_as(mat)
    return torch.where(ok[..., None, None], mat, eye), ok


def fit_translation(
    src: Tensor, dst: Tensor, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mean displacement ``dst - src`` -> ``(H (B, 3, 3), ok (B,))``; needs 1 point."""
    src, dst, w = _prepare(src, dst, valid)
    shift = _weighted_mean(dst - src, w)
    eye = torch.eye(2, dtype=shift.dtype).expand(shift.shape[0], 2, 2)
    return _finalise(_homogeneous(eye, shift), w.sum(-1) >= 1)


def fit_similarity(src: Tensor, dst: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Least-squares rotation + uniform scale + translation -> ``(H, ok)``; needs 2 points.

    With centred points ``p, q``: ``a = sum(p . q) / sum|p|^2``,
    ``b = sum(p x q) / sum|p|^2`` (the exact minimiser of ``sum |q - [[a, -b], [b, a]] p|^2``).
    """
    src, dst, w = _prepare(src, dst, valid)
    n = w.sum(-1)
    p = src - _weighted_mean(src, w)[..., None, :]
    q = dst - _weighted_mean(dst, w)[..., None, :]
    den = (w * (p * p).sum(-1)).sum(-1)
    ok = (n >= 2) & (den > _MIN_SPREAD * n.clamp(min=1.0))
    den = torch.where(ok, den, 1.0)
    a = (w * (p * q).sum(-1)).sum(-1) / den
    b = (w * (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0])).sum(-1) / den
    linear = torch.stack([a, -b, b, a], dim=-1).reshape(-1, 2, 2)
    shift = _weighted_mean(dst, w) - (linear @ _weighted_mean(src, w)[..., None])[..., 0]
    return _finalise(_homogeneous(linear, shift), ok & (a * a + b * b > 0))


def fit_affine(src: Tensor, dst: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Least-squares affine map -> ``(H, ok)``; needs 3 points that are not (nearly) collinear.

    ``A = (sum q p^T)(sum p p^T)^-1`` on centred points; not ok when the source spread is
    thinner than ``_MIN_ANISOTROPY`` of its width (shear would be unconstrained).
    """
    src, dst, w = _prepare(src, dst, valid)
    n = w.sum(-1)
    mean_src, mean_dst = _weighted_mean(src, w), _weighted_mean(dst, w)
    p = (src - mean_src[..., None, :]) * w[..., None].sqrt()
    q = (dst - mean_dst[..., None, :]) * w[..., None].sqrt()
    cov = p.transpose(-1, -2) @ p  # (B, 2, 2)
    cross = q.transpose(-1, -2) @ p
    evals = torch.linalg.eigvalsh(cov)  # ascending
    ok = (
        (n >= 3)
        & (evals[..., 0] > _MIN_ANISOTROPY * evals[..., 1])
        & (evals[..., 0] > _MIN_SPREAD * n.clamp(min=1.0))
    )
    cov = torch.where(ok[..., None, None], cov, torch.eye(2, dtype=cov.dtype))
    linear = cross @ torch.linalg.inv(cov)
    shift = mean_dst - (linear @ mean_src[..., None])[..., 0]
    return _finalise(_homogeneous(linear, shift), ok)


def _normaliser(x: Tensor, w: Tensor) -> Tensor:
    """Hartley normalisation ``(B, 3, 3)``: weighted centroid to 0, mean distance sqrt(2)."""
    mean = _weighted_mean(x, w)
    dist = ((x - mean[..., None, :]).norm(dim=-1) * w).sum(-1) / w.sum(-1).clamp(min=1.0)
    scale = 2.0**0.5 / dist.clamp(min=1e-12)
    eye = torch.eye(2, dtype=x.dtype) * scale[..., None, None]
    return _homogeneous(eye, -scale[..., None] * mean)


def fit_homography(src: Tensor, dst: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Normalised weighted DLT homography -> ``(H, ok)``; needs 4 points, no 3 collinear.

    Both point sets are Hartley-normalised, the 9x9 normal matrix of the DLT rows is
    eigen-decomposed in float64 (one batched ``eigh``), and the null vector is de-normalised.
    Not ok when the null space is not one-dimensional or ``H[2, 2]`` vanishes.
    """
    src, dst, w = _prepare(src, dst, valid)
    n = w.sum(-1)
    t_src, t_dst = _normaliser(src, w), _normaliser(dst, w)
    x = src @ t_src[:, :2, :2].transpose(-1, -2) + t_src[:, None, :2, 2]
    u = dst @ t_dst[:, :2, :2].transpose(-1, -2) + t_dst[:, None, :2, 2]
    one = torch.ones_like(x[..., :1])
    zero = torch.zeros_like(x)
    xh = torch.cat([x, one], dim=-1)  # (B, N, 3)
    row_u = torch.cat([-xh, torch.cat([zero, 0 * one], -1), u[..., :1] * xh], dim=-1)
    row_v = torch.cat([torch.cat([zero, 0 * one], -1), -xh, u[..., 1:] * xh], dim=-1)
    rows = torch.cat([row_u, row_v], dim=-2) * torch.cat([w, w], dim=-1)[..., None]
    normal = rows.transpose(-1, -2) @ rows  # (B, 9, 9)
    ok = n >= 4
    normal = torch.where(ok[..., None, None], normal, torch.eye(9, dtype=normal.dtype))
    evals, evecs = torch.linalg.eigh(normal)
    ok = ok & (evals[..., 1] > _MIN_DLT_GAP * evals[..., -1].clamp(min=1e-300))
    h_norm = evecs[..., 0].reshape(-1, 3, 3)
    mat = torch.linalg.inv(t_dst) @ h_norm @ t_src
    h22 = mat[..., 2, 2]
    scale_ = mat.flatten(-2).abs().amax(-1)
    ok = ok & (h22.abs() > 1e-9 * scale_)
    mat = mat / torch.where(ok, h22, 1.0)[..., None, None]
    return _finalise(mat, ok)


_FITTERS = {
    "translation": fit_translation,
    "similarity": fit_similarity,
    "affine": fit_affine,
    "homography": fit_homography,
}


def plausible(
    mat: Tensor, image_size: tuple[int, int], max_zoom: float = 4.0, max_perspective: float = 2.0
) -> Tensor:
    """Whether each ``mat (B, 3, 3)`` is a sane warp of an ``(H, W)`` image -> ``(B,)`` bool.

    Rejects reflections and folds (Jacobian determinant <= 0 anywhere on the image: checked at
    the corners and the centre, which bound it for a homography that keeps the image in front of
    its horizon line), local zoom outside ``[1/max_zoom, max_zoom]`` at those points, and
    perspective whose homogeneous scale varies by more than ``max_perspective`` over the image
    (a strong perspective fitted to a few keypoints distorts the rest of the image wildly).
    """
    height, width = image_size
    mat = mat.double()
    xs = torch.tensor([-0.5, width - 0.5, -0.5, width - 0.5, (width - 1) / 2], dtype=mat.dtype)
    ys = torch.tensor([-0.5, -0.5, height - 0.5, height - 0.5, (height - 1) / 2], dtype=mat.dtype)
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (5, 3)
    hom = pts @ mat.transpose(-1, -2)  # (B, 5, 3)
    wgt = hom[..., 2]
    in_front = (wgt > 0).all(-1)
    wgt_safe = torch.where(wgt > 0, wgt, 1.0)
    perspective_ok = wgt_safe.amax(-1) <= max_perspective * wgt_safe.amin(-1)
    # Jacobian of (x', y') = (h0 . p, h1 . p) / (h2 . p) at each point, (B, 5, 2, 2)
    xy = hom[..., :2] / wgt_safe[..., None]
    jac = (mat[:, None, :2, :2] - xy[..., :, None] * mat[:, None, 2:3, :2]) / wgt_safe[
        ..., None, None
    ]
    det = torch.linalg.det(jac)
    svals = torch.linalg.svdvals(jac)
    zoom_ok = (svals[..., 0] <= max_zoom) & (svals[..., 1] >= 1.0 / max_zoom)
    finite = torch.isfinite(jac).flatten(-3).all(-1)
    return in_front & perspective_ok & (det > 0).all(-1) & zoom_ok.all(-1) & finite


def fit_with_fallback(
    src: Tensor,
    dst: Tensor,
    valid: Tensor | None,
    model: Model,
    image_size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Fit ``model`` per view, falling back to simpler models where it cannot be fitted.

    ``src, dst (B, N, 2)``, ``valid (B, N)`` or None -> ``(H (B, 3, 3) float64, used (B,)
    long)``: ``used`` indexes ``MODELS`` (the model actually used per view), -1 where even a
    translation failed (no finite correspondence). A model is used only where it has at least
    ``MIN_POINTS`` correspondences, its fit is ``ok`` and, when ``image_size`` is given, the
    transform is ``plausible`` for that image. All candidate fits are computed batched.
    """
    if model not in _FITTERS:
        raise ValueError(f"unknown transform model {model!r}; expected one of {MODELS}")
    top = MODELS.index(model)
    batch = src.shape[0]
    mat = torch.eye(3, dtype=torch.float64).repeat(batch, 1, 1)
    used = torch.full((batch,), -1, dtype=torch.long)
    for index in range(top + 1):  # simplest first; richer successful fits overwrite
        fitted, ok = _FITTERS[MODELS[index]](src, dst, valid)
        if image_size is not None:
            ok = ok & plausible(fitted, image_size)
        mat = torch.where(ok[:, None, None], fitted, mat)
        used = torch.where(ok, index, used)
    return mat, used
