"""The example's static backgrounds: the textured floor box seen through each camera."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mvcore.geometry import CameraGroup, undistort_points

__all__ = ["render_backgrounds"]

_BOX_HALF = 200.0  # floor box half-width [mm]
_TILE = 40.0  # checkerboard tile [mm]


def _value_noise(
    rng: np.random.Generator, spacing: float, extent: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random scalar field on the floor: lattice noise, bilinear, values ~[-1, 1]."""
    n = int(np.ceil(2 * extent / spacing)) + 2
    lattice = rng.uniform(-1.0, 1.0, size=(n, n))

    def field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gx = np.clip((x + extent) / spacing, 0.0, n - 1.001)
        gy = np.clip((y + extent) / spacing, 0.0, n - 1.001)
        ix, iy = gx.astype(int), gy.astype(int)
        fx, fy = gx - ix, gy - iy
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
        top = lattice[iy, ix] * (1 - fx) + lattice[iy, ix + 1] * fx
        bottom = lattice[iy + 1, ix] * (1 - fx) + lattice[iy + 1, ix + 1] * fx
        return top * (1 - fy) + bottom * fy

    return field


def _bilinear_upsample(grid: np.ndarray, step: int, at: np.ndarray) -> np.ndarray:
    """Sample ``grid (G, G, C)``, given at coordinates ``0, step, 2 step, ...``, at the float
    coordinates ``at (S,)`` on both axes -> ``(S, S, C)``."""
    g = np.clip(at / step, 0.0, grid.shape[0] - 1.001)
    i = g.astype(int)
    f = (g - i)[:, None]
    rows = grid[i] * (1 - f[..., None]) + grid[i + 1] * f[..., None]  # (S, G, C)
    return rows[:, i] * (1 - f[None]) + rows[:, i + 1] * f[None]


def render_backgrounds(
    rng: np.random.Generator, group: CameraGroup, image_size: int, supersample: int = 2
) -> np.ndarray:
    """Per-view static background ``(V, H, W, 3)`` float32: the textured floor seen through
    each (distorted) camera. Pixels are undistorted (``undistort_points``) on a coarse grid,
    interpolated (the map is smooth), and their rays intersected with ``z = 0``. A checkerboard
    inside the box, a dark wall line at its edge, dark floor outside; 2x2 supersampled."""
    fine = _value_noise(rng, 6.0, 700.0)
    coarse = _value_noise(rng, 70.0, 700.0)
    ss, step = supersample, 4
    coords = (np.arange(image_size * ss) + 0.5) / ss - 0.5
    knots = np.arange(-step, image_size + 2 * step, step, dtype=np.float64)
    kx, ky = np.meshgrid(knots, knots)
    pix = torch.as_tensor(np.stack([kx, ky], axis=-1).reshape(1, -1, 2))
    gx, gy = np.meshgrid(coords, coords)
    r2 = ((gx - image_size / 2) ** 2 + (gy - image_size / 2) ** 2).ravel()
    vignette = 1.0 - 0.25 * r2 / (image_size / 2) ** 2
    out = np.zeros((group.num_views, image_size, image_size, 3), dtype=np.float32)
    rots = group.rotation_matrices()
    light, dark = np.array([0.80, 0.75, 0.66]), np.array([0.58, 0.54, 0.49])
    for v in range(group.num_views):
        xy, ok = undistort_points(
            pix,
            torch.as_tensor(group.intrinsics[v : v + 1]),
            torch.as_tensor(group.distortions[v : v + 1]),
        )
        xy = torch.where(ok[..., None], xy, torch.full_like(xy, 1e3)).numpy()
        xy = _bilinear_upsample(xy.reshape(len(knots), len(knots), 2), step, coords + step)
        xy = xy.reshape(-1, 2)
        rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ rots[v]  # R^T d
        origin = -rots[v].T @ group.translations[v]
        hit = (np.abs(xy) < 10.0).all(-1) & (rays[:, 2] < -1e-9)
        s = np.where(hit, -origin[2] / np.where(hit, rays[:, 2], -1.0), 0.0)
        x, y = origin[0] + s * rays[:, 0], origin[1] + s * rays[:, 1]
        n_fine, n_coarse = fine(x, y), coarse(x, y)
        inside = (np.abs(x) < _BOX_HALF) & (np.abs(y) < _BOX_HALF)
        checker = (np.floor(x / _TILE) + np.floor(y / _TILE)) % 2 == 0
        col = np.where(checker[:, None], light, dark)
        col = col * (1.0 + 0.10 * n_fine + 0.08 * n_coarse)[:, None]
        outside = np.array([0.27, 0.29, 0.33]) * (1.0 + 0.15 * n_coarse + 0.05 * n_fine)[:, None]
        col = np.where(inside[:, None], col, outside)
        edge = np.abs(np.maximum(np.abs(x), np.abs(y)) - _BOX_HALF) < 6.0
        col = np.where(edge[:, None], np.array([0.14, 0.14, 0.16]), col)
        col = np.where(hit[:, None], col, np.array([0.2, 0.2, 0.22])) * vignette[:, None]
        img = col.reshape(image_size, ss, image_size, ss, 3).mean(axis=(1, 3))
        out[v] = np.clip(img, 0.0, 1.0)
    return out
