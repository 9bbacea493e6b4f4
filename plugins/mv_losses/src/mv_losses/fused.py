"""Fast paths of the heatmap losses: the dense formulas of ``heatmap.py`` and
``projection.py`` evaluated in fewer passes over the ``(M, h, w)`` maps (``M = B * N``).

On a CPU these losses are memory-bound, and most of their time goes to writing ~70 MB
temporaries (every fresh large tensor is page-faulted in by the kernel), so the fast paths
read the maps as few times as possible and allocate as few dense tensors as possible:

- ``map_energy``: per-map sum of squares and ``HeatmapLoss.remove_nans``' rule (finite and
  not all zero) in one read pass.
- ``reprojection_sse``: the squared error between target maps and Gaussians rendered at
  keypoints (``render_heatmaps``) without rendering them. A rendered map is separable,
  ``R = gy gx^T / (sum gx * sum gy)``, so ``sum (T - R)^2 = sum T^2 - 2 gy^T T gx / S +
  sum gx^2 sum gy^2 / S^2``: one pass over ``T`` for ``sum T^2`` and one batched matrix
  product for the bilinear forms (and their derivatives in the keypoint), no dense map and a
  backward pass that never touches ``T``.
- ``SquaredErrorPerMap``, ``KLPerMap``, ``JSPerMap``: per-map losses of ``heatmap_mse``,
  ``heatmap_kl`` and ``heatmap_js`` as autograd functions whose backward writes the one
  gradient map it must return, and nothing else.

All are the same functions as the dense references (kept as ``_dense_reference`` methods of
the losses and pinned to them by tests), not approximations; the only differences are the
order of floating-point sums. One caveat: ``sum T^2 - 2 sum T R + sum R^2`` cancels when the
rendered map nearly equals the target, so in float32 a per-map error below ~1e-3 carries an
absolute rounding error of ~1e-8 (the dense formula sums non-negative terms).
"""

from __future__ import annotations

from typing import Any

import torch

from mvcore.data.heatmaps import gaussian_profiles

__all__ = ["DIVERGENCE_FLOOR", "JSPerMap", "KLPerMap", "SquaredErrorPerMap", "map_energy",
           "reprojection_sse"]

#: added to both maps before the divergences so that a zero in the prediction where the target
#: has mass gives a large finite value instead of ``inf`` (as Lightning Pose)
DIVERGENCE_FLOOR = 1e-10


def map_energy(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, h, w)`` maps -> ``sum of squares (M,)`` and ``valid (M,)``: finite and not all zero
    (``HeatmapLoss.remove_nans``' rule), in one read pass; not differentiable.

    A finite positive sum of squares proves a map valid and a NaN one proves it invalid; the
    rest (all-zero maps, and sums that overflow or underflow) are decided by the reference
    rule on those maps alone.
    """
    with torch.no_grad():
        flat = maps.reshape(maps.shape[0], -1)
        energy = torch.linalg.vector_norm(flat, dim=1).square()
        valid = torch.isfinite(energy) & (energy > 0)
        unsure = (energy == 0) | torch.isinf(energy)
        if bool(unsure.any()):
            rows = flat[unsure]
            valid[unsure] = torch.isfinite(rows).all(dim=1) & (rows.abs().sum(dim=1) > 0)
    return energy, valid


def reprojection_sse(
    targets: torch.Tensor,
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map ``sum (T - render_heatmaps(keypoints))^2`` without rendering the maps.

    Args:
        targets: ``(M, h, w)`` target maps (not differentiated).
        keypoints: ``(M, 2)`` model pixels, same dtype as ``targets``; differentiable.
        image_size: model input ``(H, W)``.
        sigma: Gaussian width in heatmap pixels.

    Returns:
        ``sse (M,)`` and ``valid (M,)``: the target is finite and not all zero and the keypoint
        is finite (the maps the dense loss keeps). A finite keypoint more than one pixel
        outside the map renders as a zero map, so its error is ``sum T^2`` without gradient.
        ``sse`` of an invalid map is meaningless (NaN for a NaN target); its gradient is 0.
    """
    m, h, w = targets.shape
    energy, valid = map_energy(targets)
    xy, gx, gy, labeled = gaussian_profiles(keypoints, image_size, (h, w), sigma)
    valid = valid & torch.isfinite(keypoints).all(dim=-1)
    use = valid & labeled
    total = (gx.sum(-1) * gy.sum(-1)).clamp_min(torch.finfo(gx.dtype).tiny)
    with torch.no_grad():
        # one pass over the targets: gy^T T and (d gy / dy)^T T, then contracted with gx and
        # d gx / dx (the gradient of the bilinear form in x and y)
        xs = torch.arange(w, dtype=gx.dtype, device=gx.device)
        ys = torch.arange(h, dtype=gy.dtype, device=gy.device)
        dgx = gx * (xs - xy[:, 0:1]) / sigma**2
        dgy = gy * (ys - xy[:, 1:2]) / sigma**2
        rows = torch.bmm(torch.stack([gy, dgy], dim=1), targets.contiguous())  # (M, 2, w)
        forms = torch.stack([
            (rows[:, 0] * gx).sum(-1), (rows[:, 0] * dgx).sum(-1), (rows[:, 1] * gx).sum(-1),
        ], dim=-1)
        forms = torch.where(use[:, None], forms, torch.zeros_like(forms))
    # gy^T T gx with its exact first derivatives in the keypoint (T itself is a constant)
    shift = xy - xy.detach()
    cross = forms[:, 0] + forms[:, 1] * shift[:, 0] + forms[:, 2] * shift[:, 1]
    rendered_energy = (gx * gx).sum(-1) * (gy * gy).sum(-1) / (total * total)
    sse = energy - 2.0 * cross / total + rendered_energy
    return torch.where(use, sse, energy), valid


def _rows(mask: torch.Tensor) -> torch.Tensor:
    """``(M,)`` -> ``(M, 1, 1)``, to broadcast a per-map value over ``(M, h, w)``."""
    return mask[:, None, None]


class SquaredErrorPerMap(torch.autograd.Function):
    """``(M, h, w)`` predictions and targets, ``valid (M,)`` -> ``sum (P - T)^2`` per map
    ``(M,)``; gradient only to the predictions, zero on invalid maps."""

    @staticmethod
    def forward(ctx: Any, predictions: torch.Tensor, targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(predictions, targets, valid)
        return (predictions - targets).square_().sum(dim=(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        predictions, targets, valid = ctx.saved_tensors
        out = torch.sub(predictions, targets).mul_(_rows(2.0 * grad))
        return out.masked_fill_(_rows(~valid), 0.0), None, None


class KLPerMap(torch.autograd.Function):
    """``KL(t + f || p + f) = sum a log(a / b)`` per map (``a = t + f``, ``b = p + f``,
    ``f = DIVERGENCE_FLOOR``) for non-negative maps; gradient ``-a / b`` to the predictions,
    zero on invalid maps."""

    @staticmethod
    def forward(ctx: Any, predictions: torch.Tensor, targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        a = targets + DIVERGENCE_FLOOR
        terms = torch.add(predictions, DIVERGENCE_FLOOR)
        torch.div(a, terms, out=terms)
        ctx.save_for_backward(predictions, a, valid)
        return terms.log_().mul_(a).sum(dim=(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        predictions, a, valid = ctx.saved_tensors
        out = torch.add(predictions, DIVERGENCE_FLOOR)
        torch.div(a, out, out=out)
        return out.mul_(_rows(-grad)).masked_fill_(_rows(~valid), 0.0), None, None


class JSPerMap(torch.autograd.Function):
    """Jensen-Shannon divergence ``(sum a log(a / m) + sum b log(b / m)) / 2`` per map,
    ``m = (a + b) / 2`` (``a``, ``b`` as in ``KLPerMap``); gradient ``log(b / m) / 2`` to the
    predictions, zero on invalid maps."""

    @staticmethod
    def forward(ctx: Any, predictions: torch.Tensor, targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        a = targets + DIVERGENCE_FLOOR
        b = predictions + DIVERGENCE_FLOOR
        mix = torch.add(a, b).mul_(0.5)
        terms = torch.div(a, mix).log_().mul_(a)
        log_ratio = torch.div(b, mix, out=mix).log_()  # log(b / m), kept for the gradient
        terms.addcmul_(b, log_ratio)
        ctx.save_for_backward(log_ratio, valid)
        return terms.sum(dim=(1, 2)).mul_(0.5)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        log_ratio, valid = ctx.saved_tensors
        out = log_ratio * _rows(0.5 * grad)
        return out.masked_fill_(_rows(~valid), 0.0), None, None
