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
  product for the bilinear forms and their derivatives in the keypoint (analytic, from the
  1-D profiles), no dense map and a backward pass that never touches ``T``.
- ``SquaredErrorPerMap``, ``KLPerMap``, ``JSPerMap``: per-map losses of ``heatmap_mse``,
  ``heatmap_kl`` and ``heatmap_js`` as autograd functions whose forward also writes the one
  gradient map the backward returns (scaled in place), so a step allocates one map-sized
  tensor for the gradient and re-reads nothing in the backward.

All are the same functions as the dense references (kept as ``_dense_reference`` methods of
the losses and pinned to them by tests), not approximations; the only differences are the
order of floating-point sums. One caveat: ``sum T^2 - 2 sum T R + sum R^2`` cancels when the
rendered map nearly equals the target, so in float32 a per-map error below ~1e-3 carries an
absolute rounding error of ~1e-8 (the dense formula sums non-negative terms).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mvcore.data.heatmaps import heatmap_coords

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
    grid: str = "centred",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map ``sum (T - render_heatmaps(keypoints))^2`` without rendering the maps.

    Args:
        targets: ``(M, h, w)`` target maps (not differentiated).
        keypoints: ``(M, 2)`` model pixels, same dtype as ``targets``; differentiable.
        image_size: model input ``(H, W)``.
        sigma: Gaussian width in heatmap pixels.
        grid: ``Context.heatmap_grid`` (where heatmap pixels sit in the model image).

    Returns:
        ``sse (M,)`` and ``valid (M,)``: the target is finite and not all zero and the keypoint
        is finite (the maps the dense loss keeps). A finite keypoint more than one pixel
        outside the map renders as a zero map, so its error is ``sum T^2`` without gradient.
        ``sse`` of an invalid map is meaningless (NaN for a NaN target); its gradient is 0.
        The gradient is exact to first order (no second derivatives).
    """
    _, h, w = targets.shape
    energy, valid = map_energy(targets)
    xy, labeled = heatmap_coords(keypoints, image_size, (h, w), grid)
    valid = valid & torch.isfinite(keypoints).all(dim=-1)
    use = valid & labeled
    value, slope = _separable_sse(targets, xy.detach(), sigma, energy, use)
    # the value, with the exact gradient in the keypoint through the heatmap coordinates
    sse = value + (slope * (xy - xy.detach())).sum(-1)
    return torch.where(use, sse, energy), valid


def _profiles(coords: torch.Tensor, size: int, sigma: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M,)`` heatmap coordinates -> the Gaussian profile ``g (M, size)`` of
    ``gaussian_profiles`` (same operations, same rounding) and its derivative ``dg/dc``.

    Values below the smallest normal float are flushed to zero: they cannot change a sum of
    the map (the map's largest values are normal numbers), and subnormal operands make the
    CPU's exp and matrix product several times slower.
    """
    grid = torch.arange(size, dtype=coords.dtype, device=coords.device)
    slope = grid - coords[:, None]
    exponent = (slope * slope).neg_().div_(2 * sigma**2)
    underflow = math.log(torch.finfo(coords.dtype).tiny)
    gauss = exponent.masked_fill_(exponent < underflow, -math.inf).exp_()
    return gauss, slope.mul_(gauss).div_(sigma**2)


def _separable_sse(
    targets: torch.Tensor, xy: torch.Tensor, sigma: float, energy: torch.Tensor,
    use: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum (T - R)^2`` per map ``(M,)`` for the rendered maps ``R`` at heatmap coordinates
    ``xy (M, 2)`` and its derivative in ``xy`` ``(M, 2)``; zero slope where not ``use``.

    With profiles ``gx``, ``gy``, sums ``S = sum g``, ``Q = sum g^2``, ``Z = Sx Sy`` (the map's
    sum, clamped as in ``render_heatmaps``) and ``A = gy^T T gx``:
    ``sse = sum T^2 - 2 A / Z + Qx Qy / Z^2``; its derivatives follow from those of the
    profiles, and ``gy^T T gx'`` and ``gy'^T T gx`` come from the same pass over ``T``.
    """
    with torch.no_grad():
        _, h, w = targets.shape
        gx, dgx = _profiles(xy[:, 0], w, sigma)  # (M, w)
        gy, dgy = _profiles(xy[:, 1], h, sigma)  # (M, h)
        # the one pass over the targets: rows[:, 0] = gy^T T, rows[:, 1] = gy'^T T
        rows = torch.bmm(torch.stack([gy, dgy], dim=1), targets.contiguous())  # (M, 2, w)
        a = (rows[:, 0] * gx).sum(-1)
        a_x = (rows[:, 0] * dgx).sum(-1)  # dA/dx
        a_y = (rows[:, 1] * gx).sum(-1)  # dA/dy
        sx, dsx, qx, dqx = gx.sum(-1), dgx.sum(-1), (gx * gx).sum(-1), 2 * (gx * dgx).sum(-1)
        sy, dsy, qy, dqy = gy.sum(-1), dgy.sum(-1), (gy * gy).sum(-1), 2 * (gy * dgy).sum(-1)
        tiny = torch.finfo(targets.dtype).tiny
        raw = sx * sy
        clamped = raw < tiny
        total = raw.clamp_min(tiny)
        dz_dx = torch.where(clamped, 0.0, dsx * sy)
        dz_dy = torch.where(clamped, 0.0, sx * dsy)
        rendered = qx * qy / total**2
        value = energy - 2.0 * a / total + rendered
        # d/dc of -2 A / Z + Qx Qy / Z^2 (c = x or y; Z' = dZ/dc, Q' = dQ/dc, A' = dA/dc):
        # -2 (A' - A Z' / Z) / Z + (Q'x Qy / Z - 2 rendered Z') / Z, and likewise in y
        slope = torch.stack([
            (-2.0 * (a_x - a * dz_dx / total) + dqx * qy / total - 2.0 * rendered * dz_dx)
            / total,
            (-2.0 * (a_y - a * dz_dy / total) + qx * dqy / total - 2.0 * rendered * dz_dy)
            / total,
        ], dim=-1)
        slope = torch.where(use[:, None], slope, torch.zeros_like(slope))
    return value, slope


def _rows(mask: torch.Tensor) -> torch.Tensor:
    """``(M,)`` -> ``(M, 1, 1)``, to broadcast a per-map value over ``(M, h, w)``."""
    return mask[:, None, None]


def _row_sums(maps: torch.Tensor) -> torch.Tensor:
    """``(M, h, w)`` -> ``(M,)``."""
    return maps.sum(dim=(1, 2))


class _PerMap(torch.autograd.Function):
    """Per-map loss ``(predictions (M, h, w), targets (M, h, w), valid (M,)) -> (M,)`` whose
    gradient w.r.t. the predictions is ``scale_n * G`` for one map ``G (M, h, w)``, and zero on
    invalid maps; targets and ``valid`` get none.

    ``forward`` leaves ``G`` in ``ctx.buffer``; the first backward scales it in place and
    returns it, so a step allocates one gradient-sized tensor; a second backward
    (``retain_graph=True``) rebuilds ``G`` with ``gradient_map``.
    """

    @staticmethod
    def values_and_map(predictions: torch.Tensor, targets: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M,)`` losses and the gradient map ``G``."""
        raise NotImplementedError

    @staticmethod
    def gradient_map(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``G`` again, from the inputs."""
        raise NotImplementedError

    #: ``d loss_n / d P = SCALE * G``
    SCALE = 1.0

    @classmethod
    def forward(cls, ctx: Any, predictions: torch.Tensor, targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        values, ctx.buffer = cls.values_and_map(predictions, targets)
        ctx.save_for_backward(predictions, targets, valid)
        return values

    @classmethod
    def backward(cls, ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        predictions, targets, valid = ctx.saved_tensors
        out, ctx.buffer = ctx.buffer, None
        if out is None:
            out = cls.gradient_map(predictions, targets)
        out.mul_(_rows(cls.SCALE * grad))
        if not bool(valid.all()):
            out.masked_fill_(_rows(~valid), 0.0)
        return out, None, None


class SquaredErrorPerMap(_PerMap):
    """``sum (P - T)^2`` per map; gradient ``2 (P - T)``."""

    SCALE = 2.0

    @staticmethod
    def values_and_map(predictions: torch.Tensor, targets: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        diff = predictions - targets
        return torch.linalg.vector_norm(diff.flatten(1), dim=1).square(), diff

    @staticmethod
    def gradient_map(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return predictions - targets


class KLPerMap(_PerMap):
    """``KL(t + f || p + f) = sum a log(a / b)`` per map (``a = t + f``, ``b = p + f``,
    ``f = DIVERGENCE_FLOOR``) for non-negative maps; gradient ``-a / b``."""

    SCALE = -1.0

    @staticmethod
    def values_and_map(predictions: torch.Tensor, targets: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = KLPerMap.gradient_map(predictions, targets)  # a / b
        terms = torch.log(ratio)
        # sum a log(a / b) = sum t log(a / b) + f sum log(a / b), without forming a again
        floor_part = _row_sums(terms).mul_(DIVERGENCE_FLOOR)
        return _row_sums(terms.mul_(targets)).add_(floor_part), ratio

    @staticmethod
    def gradient_map(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # a / b = (1 + t / f) f / b, in one buffer (no temporary for a)
        ratio = torch.add(predictions, DIVERGENCE_FLOOR).reciprocal_()
        return ratio.addcmul_(ratio, targets, value=1 / DIVERGENCE_FLOOR).mul_(DIVERGENCE_FLOOR)


class JSPerMap(_PerMap):
    """Jensen-Shannon divergence ``(sum a log(a / m) + sum b log(b / m)) / 2`` per map,
    ``m = (a + b) / 2`` (``a``, ``b`` as in ``KLPerMap``); gradient ``log(b / m) / 2``."""

    SCALE = 0.5

    @staticmethod
    def values_and_map(predictions: torch.Tensor, targets: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        a = targets + DIVERGENCE_FLOOR
        b = predictions + DIVERGENCE_FLOOR
        mix = torch.add(a, b).mul_(0.5)
        log_a = a.div_(mix).log_()  # log(a / m), in a's memory
        log_b = b.div_(mix).log_()  # log(b / m), in b's memory: the gradient map
        # sum x log(x / m) = sum v log(x / m) + f sum log(x / m), x = v + f, v = t or p
        total = (_row_sums(log_a) + _row_sums(log_b)).mul_(DIVERGENCE_FLOOR)
        total += _row_sums(log_a.mul_(targets))
        total += _row_sums(torch.mul(predictions, log_b, out=mix))
        return total.mul_(0.5), log_b

    @staticmethod
    def gradient_map(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        b = predictions + DIVERGENCE_FLOOR
        mix = torch.add(targets + DIVERGENCE_FLOOR, b).mul_(0.5)
        return b.div_(mix).log_()
