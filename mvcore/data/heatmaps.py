"""Heatmap targets and sub-pixel keypoint read-out, with one pixel convention throughout.

Convention: pixel ``i`` is centred at coordinate ``i`` (it spans ``[i - 0.5, i + 0.5]``), in the
model image and in the heatmap alike. A heatmap downsampled by ``s = 2**downsample_factor``
has pixel ``j`` centred at model coordinate ``j * s + (s - 1) / 2``. ``render_heatmaps`` and
``heatmap_to_keypoints`` both use this mapping, so rendering a point and reading it back
returns the point with no half-pixel bias at any downsample factor (Lightning Pose's read-out
has a one-pixel bias at downsample factor 3).

Networks trained by Lightning Pose learned its grid instead: heatmap pixel ``j`` at model
coordinate ``j * s`` (its targets put a point ``x`` at ``x / s``). ``grid="lightning_pose"``
(``model.heatmap_grid``, set by ``mvcore import-lightning-pose``) renders and reads with that
grid, so an imported model's keypoints are not shifted by ``(s - 1) / 2`` model pixels.

Read-out: the peak of a Gaussian is found exactly by fitting a parabola to the log of the
heatmap at the arg-max and its two neighbours along each axis (the log of a Gaussian is a
parabola). That fit divides by the local curvature, so its gradient explodes on the flat maps
of an untrained network; the gradient therefore comes from the centre of mass in a window
around the peak instead (a straight-through estimator: the value is the exact parabola peak,
the gradient is the bounded soft-argmax gradient), which keeps 3D losses stable from step 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# visibility codes (Lightning Pose): 0 occluded -> zero map, 1 unlabelled but in view ->
# uniform map, 2 labelled -> Gaussian
VIS_OCCLUDED, VIS_UNIFORM, VIS_LABELED = 0, 1, 2


#: where heatmap pixel ``j`` sits in the model image: ``centred`` at ``j * s + (s - 1) / 2``
#: (mvcore), ``lightning_pose`` at ``j * s`` (networks trained by Lightning Pose)
HEATMAP_GRIDS = ("centred", "lightning_pose")


def _grid_origin(s: torch.Tensor, grid: str) -> torch.Tensor:
    """Model coordinate of heatmap pixel 0 for scale ``s`` under ``grid``."""
    if grid == "centred":
        return (s - 1.0) / 2.0
    if grid == "lightning_pose":
        return torch.zeros_like(s)
    raise ValueError(f"unknown heatmap grid {grid!r}; expected one of {HEATMAP_GRIDS}")


def model_to_heatmap_coords(xy: torch.Tensor, scale: tuple[float, float],
                            grid: str = "centred") -> torch.Tensor:
    """Model-pixel ``(..., 2)`` -> heatmap-pixel coordinates; ``scale = (sx, sy)``."""
    s = xy.new_tensor(scale)
    return (xy - _grid_origin(s, grid)) / s


def heatmap_to_model_coords(xy: torch.Tensor, scale: tuple[float, float],
                            grid: str = "centred") -> torch.Tensor:
    """Heatmap-pixel ``(..., 2)`` -> model-pixel coordinates (inverse of the above)."""
    s = xy.new_tensor(scale)
    return xy * s + _grid_origin(s, grid)


def heatmap_coords(
    keypoints: torch.Tensor, image_size: tuple[int, int], heatmap_size: tuple[int, int],
    grid: str = "centred",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ``render_heatmaps`` puts each keypoint, differentiable in ``keypoints``.

    Args:
        keypoints: ``(..., 2)`` x, y in model pixels; NaN = unlabelled.
        image_size: model input ``(H, W)``.
        heatmap_size: ``(h, w)``.
        grid: ``HEATMAP_GRIDS`` (``model.heatmap_grid``).

    Returns:
        ``xy (..., 2)`` heatmap-pixel coordinates (of the model origin where ``keypoints`` is
        not finite) and ``labeled (...)``: finite and at most one heatmap pixel outside the
        map (the others render as all-zero maps).
    """
    height, width = image_size
    h, w = heatmap_size
    finite = torch.isfinite(keypoints).all(dim=-1)
    safe = torch.where(finite[..., None], keypoints, torch.zeros_like(keypoints))
    xy = model_to_heatmap_coords(safe, (width / w, height / h), grid)
    inside = (
        (xy[..., 0] >= -1) & (xy[..., 0] <= w) & (xy[..., 1] >= -1) & (xy[..., 1] <= h)
    )
    return xy, finite & inside


def gaussian_profiles(
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float = 1.25,
    grid: str = "centred",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The separable factors of ``render_heatmaps``' Gaussians, differentiable in ``keypoints``.

    A labelled map is ``gy[..., :, None] * gx[..., None, :]`` divided by its sum (so by
    ``gx.sum(-1) * gy.sum(-1)``): a loss that compares it with another map can work on these
    1-D profiles instead of the dense map. Each profile is
    ``exp(-((arange(n) - c) ** 2) / (2 * sigma**2))`` with ``c`` the coordinate in ``xy``.

    Args:
        keypoints: ``(..., 2)`` x, y in model pixels; NaN = unlabelled.
        image_size: model input ``(H, W)``.
        heatmap_size: ``(h, w)``.
        sigma: Gaussian width in heatmap pixels.

    Returns:
        ``xy`` and ``labeled`` of ``heatmap_coords``, and the unnormalised Gaussians
        ``gx (..., w)`` and ``gy (..., h)``, in the order ``xy, gx, gy, labeled``.
    """
    h, w = heatmap_size
    xy, labeled = heatmap_coords(keypoints, image_size, heatmap_size, grid)
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device)
    gx = torch.exp(-((xs - xy[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., w)
    gy = torch.exp(-((ys - xy[..., 1:2]) ** 2) / (2 * sigma**2))  # (..., h)
    return xy, gx, gy, labeled


def render_heatmaps(
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float = 1.25,
    visibility: torch.Tensor | None = None,
    grid: str = "centred",
) -> torch.Tensor:
    """Gaussian heatmaps that each sum to 1, differentiable in ``keypoints``.

    Args:
        keypoints: ``(..., 2)`` x, y in model pixels; NaN = unlabelled.
        image_size: model input ``(H, W)``.
        heatmap_size: ``(h, w)``.
        sigma: Gaussian width in heatmap pixels.
        visibility: ``(...)`` codes 0/1/2 (see module constants); None means "labelled if
            finite". Code 1 gives a uniform map ``1 / (h * w)``; code 0, NaN and points more
            than one heatmap pixel outside the map give an all-zero map (= no label).

    Returns:
        ``(..., h, w)`` heatmaps (the outer product of ``gaussian_profiles``, normalised).
    """
    h, w = heatmap_size
    _, gx, gy, labeled = gaussian_profiles(keypoints, image_size, heatmap_size, sigma,
                                           grid)
    maps = gy[..., :, None] * gx[..., None, :]
    total = maps.sum(dim=(-2, -1), keepdim=True)
    maps = maps / total.clamp_min(torch.finfo(maps.dtype).tiny)
    if visibility is not None:
        labeled = labeled & (visibility == VIS_LABELED)
    maps = torch.where(labeled[..., None, None], maps, torch.zeros_like(maps))
    if visibility is not None:
        uniform = (visibility == VIS_UNIFORM)[..., None, None]
        maps = torch.where(uniform, torch.full_like(maps, 1.0 / (h * w)), maps)
    return maps


def heatmap_to_keypoints(
    heatmaps: torch.Tensor, image_size: tuple[int, int], window: int = 5,
    grid: str = "centred",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel keypoints and confidences from heatmaps.

    Args:
        heatmaps: ``(..., h, w)`` non-negative maps (a spatial softmax or Gaussian targets).
        image_size: model input ``(H, W)``; keypoints are returned in model pixels.
        window: side of the square around the peak whose mass is the confidence.
        grid: ``HEATMAP_GRIDS``: where the network's heatmap pixels sit in the model image.

    Returns:
        keypoints ``(..., 2)`` model pixels and confidences ``(...)`` in [0, 1] (for maps that
        sum to 1).
    """
    *lead, h, w = heatmaps.shape
    height, width = image_size
    flat = heatmaps.reshape(-1, h, w)
    n = flat.shape[0]
    peak = flat.reshape(n, -1).argmax(dim=-1)
    iy, ix = peak // w, peak % w
    padded = F.pad(flat[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    rows = torch.arange(n, device=flat.device)
    tiny = torch.finfo(flat.dtype).tiny

    def log_at(dy: int, dx: int) -> torch.Tensor:
        return torch.log(padded[rows, iy + 1 + dy, ix + 1 + dx].clamp_min(tiny))

    centre = log_at(0, 0)
    offsets = []
    for minus, plus in ((log_at(0, -1), log_at(0, 1)), (log_at(-1, 0), log_at(1, 0))):
        curvature = minus - 2 * centre + plus
        ok = curvature < -1e-12
        safe_curvature = torch.where(ok, curvature, -torch.ones_like(curvature))
        offset = torch.where(ok, (minus - plus) / (2 * safe_curvature), torch.zeros_like(centre))
        offsets.append(offset.clamp(-0.5, 0.5))
    peak_xy = torch.stack([ix, iy], -1).to(flat.dtype)
    exact = peak_xy + torch.stack(offsets, -1).detach()
    local = _window_centre_of_mass(flat, iy, ix, window // 2)  # differentiable, bounded
    xy_heatmap = exact + (local - local.detach())
    keypoints = heatmap_to_model_coords(xy_heatmap, (width / w, height / h), grid)
    mass = F.avg_pool2d(
        flat[:, None], window, stride=1, padding=window // 2, count_include_pad=True
    )[:, 0] * (window * window)
    confidences = mass[rows, iy, ix].clamp(0.0, 1.0)
    return keypoints.reshape(*lead, 2), confidences.reshape(*lead)


def _window_centre_of_mass(flat: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor,
                           radius: int) -> torch.Tensor:
    """Centre of mass ``(n, 2)`` (heatmap x, y) of ``flat (n, h, w)`` in the square of half-width
    ``radius`` around ``(ix, iy)``; pixels outside the map count as zero mass."""
    n, h, w = flat.shape
    steps = torch.arange(-radius, radius + 1, device=flat.device)
    ys = (iy[:, None] + steps[None, :])[:, :, None].expand(n, steps.numel(), steps.numel())
    xs = (ix[:, None] + steps[None, :])[:, None, :].expand(n, steps.numel(), steps.numel())
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    rows = torch.arange(n, device=flat.device)[:, None, None]
    values = flat[rows, ys.clamp(0, h - 1), xs.clamp(0, w - 1)]
    mass = torch.where(inside, values.clamp_min(0), torch.zeros_like(values))
    total = mass.sum(dim=(-2, -1)).clamp_min(torch.finfo(flat.dtype).tiny)
    x = (mass * xs.to(flat.dtype)).sum(dim=(-2, -1)) / total
    y = (mass * ys.to(flat.dtype)).sum(dim=(-2, -1)) / total
    return torch.stack([x, y], -1)
