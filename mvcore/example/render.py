"""Drawing the example animal over a background: shaded, z-buffered body tubes along the
skeleton and one Gaussian colour marker per visible keypoint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvcore.example.simulate import KEYPOINT_NAMES

__all__ = ["SKELETON", "MarkerSizes", "marker_colors", "render_frame"]

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
#: the body's edges as keypoint-name pairs (``data.skeleton`` of the example's config)
SKELETON: tuple[tuple[str, str], ...] = tuple((a, b) for a, b, *_ in _EDGES)
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


@dataclass(frozen=True)
class MarkerSizes:
    """Marker geometry in pixels for one image size (scaled from a 256-pixel image)."""

    sigma: float  # Gaussian blob standard deviation
    halo: float  # radius of the black disk under each blob
    line: float  # half-width of the skeleton lines

    @classmethod
    def for_image(cls, image_size: int) -> MarkerSizes:
        s = image_size / 256.0
        return cls(sigma=1.1 * s, halo=4.0 * s, line=0.6 * s)


def marker_colors(num: int) -> np.ndarray:
    """Distinct saturated colours ``(num, 3)`` in [0, 1]: evenly spaced hues, permuted so that
    neighbouring keypoints get contrasting ones."""
    step = next(m for m in (3, 7, 11, 13, 1) if np.gcd(m, num) == 1)
    hues = (np.arange(num) * step % num) / num
    k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
    return (1.0 - 0.9 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


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


def _draw_marker(
    img: np.ndarray, centre: np.ndarray, color: np.ndarray, sizes: MarkerSizes
) -> None:
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


def render_frame(
    background: np.ndarray,
    uv: np.ndarray,
    depth: np.ndarray,
    focal: float,
    colors: np.ndarray,
    sizes: MarkerSizes,
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
