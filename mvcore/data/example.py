"""A built-in synthetic multi-camera project (``mvcore example-data DIR``).

Writes a small, geometrically exact Lightning Pose multiview project: an articulated animal
walking in a box, filmed by calibrated cameras with lens distortion. Every label is the exact
projection (``mvcore.geometry.project_points``, float64) of the ground-truth 3D keypoint, and
every rendered keypoint blob is an analytic Gaussian centred on that projection, so the
project can test 2D read-out, triangulation and 3D augmentation to sub-pixel precision and
train a small model on a CPU in minutes. Everything is deterministic from ``seed``.

Pixel convention (OpenCV, and ``mvcore.data.heatmaps``): pixel ``i`` is centred at ``i``.
World units are millimetres, z up, the floor is ``z = 0``.
"""

from __future__ import annotations

import shutil
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from mvcore.geometry import (
    CameraGroup,
    project_points,
    rodrigues_to_matrix_np,
    save_calibration,
    undistort_points,
)

__all__ = ["KEYPOINT_NAMES", "make_example_project", "marker_colors"]

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "ear_left",
    "ear_right",
    "head",
    "neck",
    "spine",
    "hips",
    "tail_base",
    "tail_mid",
    "tail_tip",
)
_KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

#: skeleton edges: (a, b, radius at a [mm], radius at b [mm], body colour RGB)
_BODY = (0.42, 0.35, 0.30)
_TAIL = (0.66, 0.52, 0.48)
_EAR = (0.74, 0.56, 0.52)
_EDGES: tuple[tuple[str, str, float, float, tuple[float, float, float]], ...] = (
    ("nose", "head", 4.0, 10.0, _BODY),
    ("head", "neck", 10.0, 13.0, _BODY),
    ("neck", "spine", 13.0, 16.0, _BODY),
    ("spine", "hips", 16.0, 14.0, _BODY),
    ("hips", "tail_base", 14.0, 5.0, _BODY),
    ("tail_base", "tail_mid", 4.5, 3.0, _TAIL),
    ("tail_mid", "tail_tip", 3.0, 1.5, _TAIL),
    ("neck", "ear_left", 4.0, 6.0, _EAR),
    ("neck", "ear_right", 4.0, 6.0, _EAR),
)
#: how far each keypoint's marker sits in front of its skeleton point: on the body surface,
#: the largest tube radius at the joint [mm]
_MARKER_LIFT = np.array(
    [
        max(edge[2] if edge[0] == name else edge[3] for edge in _EDGES if name in edge[:2])
        for name in KEYPOINT_NAMES
    ]
)
_DEPTH_TOL = 1.5  # a marker within this of the nearest surface [mm] is visible
_LINE_COLOR = np.array([0.12, 0.10, 0.09], dtype=np.float32)

_BOX_HALF = 200.0  # floor box half-width [mm]
_TILE = 40.0  # checkerboard tile [mm]


@dataclass(frozen=True)
class _Sizes:
    """Marker geometry in pixels for one image size (scaled from a 256-pixel image)."""

    sigma: float  # Gaussian blob standard deviation
    halo: float  # radius of the black disk under each blob
    line: float  # half-width of the skeleton lines

    @classmethod
    def for_image(cls, image_size: int) -> _Sizes:
        s = image_size / 256.0
        return cls(sigma=1.1 * s, halo=4.0 * s, line=0.6 * s)


def marker_colors(num: int) -> np.ndarray:
    """Distinct saturated colours ``(num, 3)`` in [0, 1]: evenly spaced hues, permuted so that
    neighbouring keypoints get contrasting ones."""
    step = next(m for m in (3, 7, 11, 13, 1) if np.gcd(m, num) == 1)
    hues = (np.arange(num) * step % num) / num
    k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
    return (1.0 - 0.9 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise ``(n,)`` with correlation ``sigma`` frames."""
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))
    return np.convolve(rng.standard_normal(n + 2 * half), kernel, mode="valid")


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _simulate_pose(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Ground-truth 3D keypoints ``(T, K, 3)`` [mm] of an animal walking on the floor.

    The neck follows a smooth random walk (speed and turn rate are smoothed noise) that steers
    back towards the box centre near its edge; the body bends with the turn rate, the head
    looks around and pitches, the tail wags.
    """
    dt = 1.0 / fps
    speed = np.clip(70.0 + 35.0 * _smooth_noise(rng, num_frames, 12.0), 5.0, 150.0)
    turn = 1.4 * _smooth_noise(rng, num_frames, 9.0)
    bend_noise = 0.10 * _smooth_noise(rng, num_frames, 15.0)
    head_yaw = 0.35 * _smooth_noise(rng, num_frames, 10.0)
    head_pitch = 0.35 + 0.25 * _smooth_noise(rng, num_frames, 12.0)
    wag = 0.30 * _smooth_noise(rng, num_frames, 8.0)
    bob = 2.5 * _smooth_noise(rng, num_frames, 4.0)
    pos = rng.uniform(-30.0, 30.0, size=2)
    psi = rng.uniform(-np.pi, np.pi)
    r_soft, r_max = 30.0, 60.0

    out = np.zeros((num_frames, len(KEYPOINT_NAMES), 3))
    for i in range(num_frames):
        omega = turn[i]
        r = float(np.hypot(*pos))
        if r > r_soft:
            desired = np.arctan2(-pos[1], -pos[0])
            omega += 5.0 * _wrap(desired - psi) * min(1.0, (r - r_soft) / (r_max - r_soft))
        psi += omega * dt
        pos = pos + speed[i] * dt * np.array([np.cos(psi), np.sin(psi)])
        r = float(np.hypot(*pos))
        if r > r_max:
            pos *= r_max / r
        bend = 0.22 * np.tanh(omega / 1.5) + bend_noise[i]

        def step(start: np.ndarray, yaw: float, length: float, z: float) -> np.ndarray:
            return np.array([start[0] + length * np.cos(yaw), start[1] + length * np.sin(yaw), z])

        neck = np.array([pos[0], pos[1], 32.0 + bob[i]])
        back = psi + np.pi
        spine = step(neck, back - bend, 34.0, 36.0 + bob[i])
        hips = step(spine, back - 2 * bend, 34.0, 32.0 + 0.5 * bob[i])
        tail_base = step(hips, back - 3 * bend, 26.0, 22.0)
        tail_mid = step(tail_base, back - 3 * bend + wag[i], 36.0, 9.0)
        tail_tip = step(tail_mid, back - 3 * bend + 2.2 * wag[i], 36.0, 3.0)
        yaw_h = psi + 0.8 * bend + head_yaw[i]
        fwd = np.array([np.cos(yaw_h), np.sin(yaw_h), 0.0])
        left = np.array([-np.sin(yaw_h), np.cos(yaw_h), 0.0])
        head = neck + 28.0 * fwd + np.array([0.0, 0.0, 6.0])
        pitch = head_pitch[i]
        nose = head + 22.0 * (np.cos(pitch) * fwd - np.array([0.0, 0.0, np.sin(pitch)]))
        ear_l = head + 14.0 * left - 13.0 * fwd + np.array([0.0, 0.0, 9.0])
        ear_r = head - 14.0 * left - 13.0 * fwd + np.array([0.0, 0.0, 9.0])
        out[i] = [nose, ear_l, ear_r, head, neck, spine, hips, tail_base, tail_mid, tail_tip]
    out[..., 2] = np.maximum(out[..., 2], 1.0)
    return out


def _matrix_to_rodrigues(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` -> Rodrigues vector ``(3,)`` (via a unit quaternion; robust
    at every angle, including 180 degrees)."""
    m = rot
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array(
            [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        )
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.zeros(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    if q[0] < 0:
        q = -q
    norm = np.linalg.norm(q[1:])
    if norm < 1e-15:
        return np.zeros(3)
    return 2.0 * np.arctan2(norm, q[0]) * q[1:] / norm


def _make_cameras(rng: np.random.Generator, num_views: int, image_size: int) -> CameraGroup:
    """Cameras around the box, looking at its centre from 37-54 degrees elevation.

    Intrinsics are realistic for ``image_size`` square images (about 40 degrees field of
    view), with small radial and tiny tangential distortion. Translations are computed from
    the Rodrigues rotation actually stored, so the file is the exact camera model.
    """
    names = [f"cam_{string.ascii_lowercase[v]}" for v in range(num_views)]
    scale = image_size / 256.0
    base = rng.uniform(0.0, 2 * np.pi / num_views)
    up = np.array([0.0, 0.0, 1.0])
    intr, dist, rvecs, tvecs = [], [], [], []
    for v in range(num_views):
        az = base + 2 * np.pi * v / num_views + rng.uniform(-0.15, 0.15)
        el = rng.uniform(0.65, 0.95)
        distance = rng.uniform(620.0, 700.0)
        target = np.array([rng.normal(0.0, 8.0), rng.normal(0.0, 8.0), 30.0])
        centre = target + distance * np.array(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
        )
        z_c = (target - centre) / np.linalg.norm(target - centre)
        x_c = np.cross(z_c, up)
        x_c /= np.linalg.norm(x_c)
        y_c = np.cross(z_c, x_c)
        roll = rng.uniform(-0.06, 0.06)
        x_r = np.cos(roll) * x_c + np.sin(roll) * y_c
        y_r = -np.sin(roll) * x_c + np.cos(roll) * y_c
        rvec = _matrix_to_rodrigues(np.stack([x_r, y_r, z_c]))
        rot = rodrigues_to_matrix_np(rvec)
        rvecs.append(rvec)
        tvecs.append(-rot @ centre)
        f = rng.uniform(380.0, 420.0) * scale
        cx = (image_size - 1) / 2 + rng.uniform(-3.0, 3.0) * scale
        cy = (image_size - 1) / 2 + rng.uniform(-3.0, 3.0) * scale
        fy = f * (1.0 + rng.uniform(-0.004, 0.004))
        intr.append([[f, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        dist.append(
            [
                rng.uniform(-0.12, -0.04),
                rng.uniform(0.0, 0.05),
                rng.uniform(-4e-4, 4e-4),
                rng.uniform(-4e-4, 4e-4),
                0.0,
            ]
        )
    return CameraGroup(
        names=names,
        sizes=np.full((num_views, 2), float(image_size)),
        intrinsics=np.array(intr),
        distortions=np.array(dist),
        rotations=np.array(rvecs),
        translations=np.array(tvecs),
    )


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


def _render_backgrounds(
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


def _crop(
    img: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Integer pixel window covering ``[lo, hi]`` clipped to the image, with its coordinates."""
    h, w = img.shape[:2]
    x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    x1, y1 = min(int(np.ceil(hi[0])) + 1, w), min(int(np.ceil(hi[1])) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xs, ys


def _segment_distance(
    xs: np.ndarray, ys: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points ``xs, ys`` (any shape) to the segment ``p0``-``p1`` ``(2,)``, and the
    clipped position ``u`` in [0, 1] of the closest point along it."""
    d = p1 - p0
    dd = float(d @ d)
    u = np.zeros_like(xs) if dd < 1e-12 else ((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / dd
    u = np.clip(u, 0.0, 1.0)
    return np.hypot(xs - p0[0] - u * d[0], ys - p0[1] - u * d[1]), u


@dataclass(frozen=True)
class _Tube:
    """One body tube in one view: a cone with spherical caps along a skeleton edge.

    ``p0, p1`` end pixels ``(2,)``, ``r0, r1`` radii in pixels, ``z0, z1`` axis depths and
    ``rm0, rm1`` radii in mm (for the depth of its front surface)."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float
    z0: float
    z1: float
    rm0: float
    rm1: float

    def surface(
        self, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At pixels ``xs, ys``: front-surface depth [mm], distance to the axis [px], the
        radius there [px] and the bulge ``sqrt(1 - (d / r)^2)`` (0 outside)."""
        dist, u = _segment_distance(xs, ys, self.p0, self.p1)
        r = self.r0 + u * (self.r1 - self.r0)
        bulge = np.sqrt(np.clip(1.0 - (dist / np.maximum(r, 1e-3)) ** 2, 0.0, 1.0))
        depth = self.z0 + u * (self.z1 - self.z0) - (self.rm0 + u * (self.rm1 - self.rm0)) * bulge
        return depth, dist, r, bulge


def _draw_tube(
    img: np.ndarray, zbuf: np.ndarray, tube: _Tube, color: np.ndarray, line_width: float
) -> None:
    """Draw an anti-aliased shaded tube into ``img (H, W, 3)`` (in place), z-buffered against
    ``zbuf (H, W)``, with a skeleton line along its axis."""
    r_max = max(tube.r0, tube.r1) + 1.0
    lo = np.minimum(tube.p0, tube.p1) - r_max
    win = _crop(img, lo, np.maximum(tube.p0, tube.p1) + r_max)
    if win is None:
        return
    sl, xs, ys = win
    surface, dist, r, bulge = tube.surface(xs, ys)
    front = surface < zbuf[sl]
    cover = np.clip(r - dist + 0.5, 0.0, 1.0) * front
    line = np.clip(line_width - dist + 0.5, 0.0, 1.0) * front
    patch = img[sl]
    shade = (0.55 + 0.45 * bulge)[..., None] * color
    patch[:] = patch * (1.0 - cover[..., None]) + shade * cover[..., None]
    patch[:] = patch * (1.0 - line[..., None]) + _LINE_COLOR * line[..., None]
    zbuf[sl] = np.where(cover > 0.5, surface, zbuf[sl])


def _draw_marker(img: np.ndarray, centre: np.ndarray, color: np.ndarray, sizes: _Sizes) -> None:
    """A black disk with an analytic Gaussian blob of ``color`` on it, centred at ``centre``.

    Inside the disk core the pixel value is exactly ``color * exp(-d^2 / 2 sigma^2)``, so the
    intensity-weighted centroid of the blob is the keypoint to sub-pixel accuracy."""
    r = sizes.halo + 1.0
    win = _crop(img, centre - r, centre + r)
    if win is None:
        return
    sl, xs, ys = win
    d2 = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
    halo = np.clip(sizes.halo - np.sqrt(d2) + 0.5, 0.0, 1.0)[..., None]
    blob = np.exp(-0.5 * d2 / sizes.sigma**2)[..., None]
    patch = img[sl]
    patch[:] = patch * (1.0 - halo)
    patch[:] = patch * (1.0 - blob) + color * blob


def _render_frame(
    background: np.ndarray,
    uv: np.ndarray,
    depth: np.ndarray,
    focal: float,
    colors: np.ndarray,
    sizes: _Sizes,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the animal over ``background (H, W, 3)``.

    ``uv (K, 2)`` projected keypoints, ``depth (K,)`` camera depths [mm]. The body is a chain
    of z-buffered tubes along the skeleton edges. Each keypoint's marker sits on the body
    surface (``_MARKER_LIFT`` in front of the keypoint); it is hidden when the front surface
    of a tube not meeting at that keypoint is nearer at its centre. Visible markers are drawn
    whole, far to near. Returns the uint8 image ``(H, W, 3)`` and ``occluded (K,)``: True for
    hidden markers and those whose centre a nearer marker covers (labels stay: they are the
    exact projections).
    """
    img = background.copy()
    h, w = img.shape[:2]
    zbuf = np.full((h, w), np.inf, dtype=np.float32)
    tubes: list[tuple[float, _Tube, int, int, tuple[float, float, float]]] = []
    for a, b, ra, rb, color in _EDGES:
        ka, kb = _KP[a], _KP[b]
        tube = _Tube(
            uv[ka],
            uv[kb],
            focal * ra / depth[ka],
            focal * rb / depth[kb],
            depth[ka],
            depth[kb],
            ra,
            rb,
        )
        tubes.append((0.5 * (depth[ka] + depth[kb]), tube, ka, kb, color))
    for _, tube, _, _, color in sorted(tubes, key=lambda it: -it[0]):
        _draw_tube(img, zbuf, tube, np.asarray(color, np.float32), sizes.line)

    marker_depth = depth - _MARKER_LIFT
    occluded = np.zeros(len(uv), dtype=bool)
    for _, tube, ka, kb, _ in tubes:
        others = np.array([k for k in range(len(uv)) if k not in (ka, kb)])
        surface, dist, r, _ = tube.surface(uv[others, 0], uv[others, 1])
        occluded[others[(dist < r) & (surface < marker_depth[others] - _DEPTH_TOL)]] = True
    outside = ~((uv > -0.5) & (uv < np.array([w, h]) - 0.5)).all(-1)
    occluded |= outside
    drawn: list[int] = []
    for k in np.argsort(-marker_depth, kind="stable"):
        if occluded[k]:
            continue
        if drawn:
            close = np.hypot(*(uv[drawn] - uv[k]).T) < sizes.halo
            occluded[np.asarray(drawn)[close]] = True
        _draw_marker(img, uv[k], colors[k], sizes)
        drawn.append(k)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), occluded


def _open_video(
    path: Path, size: int, fps: int
) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
    """An H.264 (or, without libx264, MPEG-4) yuv420p writer: (container, stream)."""
    for codec, options in (("libx264", {"crf": "16", "preset": "veryfast"}), ("mpeg4", {})):
        container = av.open(str(path), mode="w")
        try:
            stream = container.add_stream(codec, rate=fps, options=options)
        except (av.error.FFmpegError, ValueError):
            container.close()
            continue
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # deterministic output
        return container, stream
    raise RuntimeError("PyAV has neither the libx264 nor the mpeg4 encoder")


def _config(view_names: list[str], csv_files: list[str], image_size: int, backbone: str) -> dict:
    """A config for mvcore's schema that trains a small model on a CPU."""
    resize = min(128, image_size)
    return {
        "data": {
            "image_resize_dims": {"height": resize, "width": resize},
            "data_dir": ".",
            "video_dir": "videos",
            "csv_file": csv_files,
            "view_names": view_names,
            "num_keypoints": len(KEYPOINT_NAMES),
            "keypoint_names": list(KEYPOINT_NAMES),
            "downsample_factor": 2,
            "calibration_file": "calibration.toml",
        },
        "model": {
            "model_type": "heatmap_multiview_transformer",
            "backbone": backbone,
            "backbone_pretrained": False,
            "losses_to_use": [],
            "model_name": "example",
        },
        "training": {
            "imgaug": "none",
            "imgaug_3d": False,
            "train_batch_size": 8,
            "val_batch_size": 8,
            "test_batch_size": 8,
            "train_prob": 0.8,
            "val_prob": 0.1,
            "num_workers": 2,
            "unfreezing_epoch": 0,
            "min_epochs": 1,
            "max_epochs": 30,
            "check_val_every_n_epoch": 5,
            "log_every_n_steps": 5,
            "optimizer": "Adam",
            "optimizer_params": {"learning_rate": 1e-3},
            "lr_scheduler": "multisteplr",
            "lr_scheduler_params": {"multisteplr": {"milestones": [100, 200], "gamma": 0.5}},
            "patch_mask": {"final_ratio": 0.0},
            "rng_seed_data_pt": 0,
            "rng_seed_model_pt": 0,
            "accelerator": "auto",
        },
        "losses": {},
        "eval": {"predict_vids_after_training": False},
    }


def make_example_project(
    out_dir: str | Path,
    seed: int = 0,
    num_frames: int = 120,
    num_views: int = 3,
    image_size: int = 256,
    label_every: int = 2,
    fps: int = 30,
    session: str = "session0",
    drop_fraction: float = 0.05,
    backbone: str = "vit_micro_scratch",
    overwrite: bool = False,
) -> Path:
    """Write a synthetic, geometrically exact multiview project to ``out_dir``.

    An animal with 10 keypoints (``KEYPOINT_NAMES``) walks in a 400 mm box for ``num_frames``
    frames at ``fps``, filmed by ``num_views`` calibrated cameras ``cam_a, cam_b, ...``
    (``image_size`` square RGB, lens distortion). Written (Lightning Pose multiview layout):

    - ``videos/<session>_<view>.mp4``: every frame (H.264 yuv420p);
    - ``labeled-data/<session>_<view>/img<NNNN>.png``: every ``label_every``-th frame;
    - ``CollectedData_<view>.csv``: DeepLabCut 3-row header, index = image path relative to
      ``out_dir``; labels are exact projections of the 3D keypoints, a random
      ``drop_fraction`` of them is left empty, and one frame has no labels in one view;
    - ``calibration.toml`` (anipose, ``[cam_0]`` ...), ``ground_truth_3d.csv`` (``frame``,
      ``<kp>_x/_y/_z`` [mm], all frames), ``occluded.csv`` (per frame, columns ``(view, kp)``:
      1 where a nearer body part hides the keypoint's marker);
    - ``config.yaml``: a small CPU training config (``data_dir: .``).

    Deterministic from ``seed``. Raises FileExistsError if ``out_dir`` is not empty, unless
    ``overwrite``. Returns the path of ``config.yaml``.
    """
    if not 2 <= num_views <= 26:
        raise ValueError(f"num_views must be in [2, 26], got {num_views}")
    if image_size < 64 or image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16 and >= 64, got {image_size}")
    if label_every < 1 or num_frames < 2 * label_every:
        raise ValueError(
            f"need label_every >= 1 and num_frames >= 2 * label_every, got {label_every}, "
            f"{num_frames}"
        )
    if not 0.0 <= drop_fraction < 0.5:
        raise ValueError(f"drop_fraction must be in [0, 0.5), got {drop_fraction}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass overwrite=True to write over it)")

    rng = np.random.default_rng(seed)
    group = _make_cameras(rng, num_views, image_size)
    backgrounds = _render_backgrounds(rng, group, image_size)
    points = _simulate_pose(rng, num_frames, fps)  # (T, K, 3)
    names = group.names
    num_kp = len(KEYPOINT_NAMES)

    cams = group.to_tensors(dtype=torch.float64)
    uv = project_points(
        torch.as_tensor(points), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()  # (T, V, K, 2)
    depth = np.einsum("vij,tkj->tvki", group.rotation_matrices(), points)[..., 2]
    depth = depth + group.translations[None, :, None, 2]  # (T, V, K)
    focal = group.intrinsics[:, 0, 0]
    colors = marker_colors(num_kp)
    sizes = _Sizes.for_image(image_size)

    out.mkdir(parents=True, exist_ok=True)
    (out / "videos").mkdir(exist_ok=True)
    label_dirs = [out / "labeled-data" / f"{session}_{name}" for name in names]
    for folder in label_dirs:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    save_calibration(group, out / "calibration.toml")

    labelled = np.arange(0, num_frames, label_every)
    occluded = np.zeros((num_frames, num_views, num_kp), dtype=bool)
    writers = [_open_video(out / "videos" / f"{session}_{n}.mp4", image_size, fps) for n in names]
    try:
        for t in range(num_frames):
            for v in range(num_views):
                frame, occluded[t, v] = _render_frame(
                    backgrounds[v],
                    uv[t, v].astype(np.float32),
                    depth[t, v],
                    focal[v],
                    colors,
                    sizes,
                )
                container, stream = writers[v]
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                if t % label_every == 0:
                    Image.fromarray(frame).save(
                        label_dirs[v] / f"img{t:04d}.png", compress_level=1
                    )
    finally:
        for container, stream in writers:
            for packet in stream.encode():
                container.mux(packet)
            container.close()

    # labels: exact projections; out-of-image points, a random subset and one view of one
    # frame are left empty (unlabelled)
    labels = uv[labelled].copy()  # (N, V, K, 2)
    outside = ((labels < 0) | (labels > image_size - 1)).any(-1)
    labels[outside] = np.nan
    flat = labels.reshape(-1, 2)
    drop = rng.choice(len(flat), size=int(round(drop_fraction * len(flat))), replace=False)
    flat[drop] = np.nan
    labels[rng.integers(len(labelled)), rng.integers(num_views)] = np.nan

    csv_files = []
    columns = pd.MultiIndex.from_product(
        [["mvcore"], list(KEYPOINT_NAMES), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    for v, name in enumerate(names):
        index = [f"labeled-data/{session}_{name}/img{t:04d}.png" for t in labelled]
        table = pd.DataFrame(labels[:, v].reshape(len(labelled), -1), index=index, columns=columns)
        csv_files.append(f"CollectedData_{name}.csv")
        table.to_csv(out / csv_files[-1])

    gt_columns = [f"{kp}_{c}" for kp in KEYPOINT_NAMES for c in "xyz"]
    gt = pd.DataFrame(points.reshape(num_frames, -1), columns=gt_columns)
    gt.insert(0, "frame", np.arange(num_frames))
    gt.to_csv(out / "ground_truth_3d.csv", index=False)
    occ = pd.DataFrame(
        occluded.reshape(num_frames, -1).astype(int),
        columns=pd.MultiIndex.from_product([names, list(KEYPOINT_NAMES)]),
        index=pd.RangeIndex(num_frames, name="frame"),
    )
    occ.to_csv(out / "occluded.csv")

    config_path = out / "config.yaml"
    config = _config(names, csv_files, image_size, backbone)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path
