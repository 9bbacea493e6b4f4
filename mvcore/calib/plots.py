"""The two PNGs of ``mvcore calib check``: the rig and the labels reprojected on a frame.

``rig.png`` shows where the calibration puts the cameras and where they look: each camera's
centre, its frustum out to a fraction of its distance to the labels (the thick edge is the top
row of its image), its optical axis (dashed) and its line of sight to the labels' centroid
(dotted), with the triangulated labels as dots, in a 3D view and three orthographic views along
the world axes, all at one scale. A camera whose line of sight leaves outside its frustum does
not see the labels; one that stands where it cannot is wrong.

``reprojection.png`` shows one labelled frame per view (blank when the project has no
images): labels as circles, their all-view reprojections as crosses, a line between each
pair; the top row is the whole frame, the bottom row zooms on the labels. Outlier labels of
that frame are named.

Figures are drawn on matplotlib's object-oriented ``Figure`` (rendered by Agg on savefig): no
pyplot, so no global backend is switched and no figure outlives its function. Files are
written atomically (``mvcore.files.atomic_path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import Axes3D
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from PIL import Image

from mvcore.calib.check import CalibrationCheck
from mvcore.data.project import MultiviewProject
from mvcore.files import atomic_path
from mvcore.geometry import CameraGroup

__all__ = ["camera_outlines", "plot_project", "plot_reprojection", "plot_rig"]

#: frustums are drawn out to this fraction of the median camera-to-labels depth
FRUSTUM_FRACTION = 0.3
_DPI = 100
_PANEL_PX = 400  # whole frames are drawn at about this width
#: the canvas of a view without an image (dark, as camera frames are, so the marks show)
BLANK = "0.3"
# corners of the image, in drawing order: top-left, top-right, bottom-right, bottom-left
_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
# the orthographic panels: (horizontal axis, vertical axis) of the world
_PLANES = ((0, 1), (0, 2), (1, 2))
_AXIS_NAMES = "xyz"


def _colours(count: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per camera (matplotlib's tab10, repeating after 10)."""
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(count)]


def camera_outlines(group: CameraGroup, points: np.ndarray) -> dict[str, np.ndarray]:
    """World geometry of every camera for drawing.

    ``points (M, 3)`` the labels (NaN rows ignored). Returns ``centres (V, 3)``; ``corners
    (V, 4, 3)`` of each image (top-left, top-right, bottom-right, bottom-left; lens distortion
    ignored: the outline is the pinhole's) at ``FRUSTUM_FRACTION`` of the depth of the labels'
    centroid in that camera (of the median such depth where it is behind the camera or there
    are no labels); ``axis_ends (V, 3)``: the optical axis out to the frustum's plane; and
    ``target (3,)``: the labels' centroid (NaN without labels). The labels are in a camera's
    view when the line from its centre to ``target`` passes through its frustum."""
    rot = group.rotation_matrices()  # (V, 3, 3), world -> camera
    centres = -np.einsum("vji,vj->vi", rot, group.translations)
    sizes = group.sizes.astype(np.float64)  # (V, 2) [w, h]
    pixels = _CORNERS[None] * sizes[:, None] - 0.5  # (V, 4, 2), pixel-centre convention
    homogeneous = np.concatenate([pixels, np.ones(pixels.shape[:-1] + (1,))], -1)
    rays = np.einsum("vij,vcj->vci", np.linalg.inv(group.intrinsics), homogeneous)  # z = 1
    world_rays = np.einsum("vji,vcj->vci", rot, rays)  # R^T ray
    finite = points[np.isfinite(points).all(-1)]
    target = finite.mean(0) if len(finite) else np.full(3, np.nan)
    depth = np.einsum("vij,j->vi", rot, target)[:, 2] + group.translations[:, 2]  # (V,)
    spread = float(np.ptp(centres, axis=0).max()) if len(centres) > 1 else 1.0
    ahead = np.isfinite(depth) & (depth > 0)
    typical = float(np.median(depth[ahead])) if ahead.any() else spread
    reach = FRUSTUM_FRACTION * np.where(ahead, depth, typical)
    corners = centres[:, None] + reach[:, None, None] * world_rays
    axis_ends = centres + reach[:, None] * rot[:, 2]  # the optical axis is R^T e_z = R[2]
    return {"centres": centres, "corners": corners, "axis_ends": axis_ends, "target": target}


def _segments(outline: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Line segments (each ``(..., 2, 3)``) to draw: ``frustum (V, 8, 2, 3)``, its ``top``
    edge ``(V, 2, 3)``, the optical ``axis (V, 2, 3)`` and the ``sight`` line from each
    centre to the labels' centroid ``(V, 2, 3)``."""
    centres, corners = outline["centres"], outline["corners"]
    edges = np.stack([corners, np.roll(corners, -1, axis=1)], axis=2)  # (V, 4, 2, 3)
    spokes = np.stack([np.broadcast_to(centres[:, None], corners.shape), corners], axis=2)
    target = np.broadcast_to(outline["target"], centres.shape)
    return {"frustum": np.concatenate([spokes, edges], axis=1), "top": edges[:, 0],
            "axis": np.stack([centres, outline["axis_ends"]], axis=1),
            "sight": np.stack([centres, target], axis=1)}


def plot_rig(group: CameraGroup, points: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write ``rig.png``: the cameras of ``group`` and the triangulated labels ``(..., 3)``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    outline = camera_outlines(group, points)
    lines = _segments(outline)
    centres = outline["centres"]
    finite = points[np.isfinite(points).all(-1)]
    colours = _colours(group.num_views)
    styles = {"frustum": {"lw": 0.8}, "top": {"lw": 2.5}, "axis": {"lw": 1.0, "ls": "--"},
              "sight": {"lw": 0.8, "ls": ":"}}
    everything = np.concatenate([lines["frustum"].reshape(-1, 3), centres, finite])
    middle = (everything.max(0) + everything.min(0)) / 2
    half = float(np.ptp(everything, axis=0).max()) / 2 * 1.08

    fig = Figure(figsize=(12, 11))
    ax3d = fig.add_subplot(2, 2, 1, projection=Axes3D.name)
    for kind, style in styles.items():
        segments = lines[kind]  # (V, [S,] 2, 3)
        per_camera = int(np.prod(segments.shape[1:-2]))
        ax3d.add_collection3d(Line3DCollection(
            segments.reshape(-1, 2, 3), colors=np.repeat(colours, per_camera, axis=0),
            linewidths=style["lw"], linestyles=style.get("ls", "-")))
    for v, name in enumerate(group.names):
        ax3d.text(*centres[v], f" {name}", color=colours[v], fontsize=9, weight="bold")
    ax3d.scatter(*centres.T, c=colours, s=30, depthshade=False)
    if len(finite):
        ax3d.scatter(*finite.T, c="0.2", s=2, alpha=0.4, depthshade=False)
    ax3d.set(xlim=(middle[0] - half, middle[0] + half), ylim=(middle[1] - half, middle[1] + half),
             zlim=(middle[2] - half, middle[2] + half), xlabel="x", ylabel="y", zlabel="z")
    ax3d.set_box_aspect((1, 1, 1))
    ax3d.set_title("3D (equal scale)", fontsize=10)

    for panel, (i, j) in enumerate(_PLANES, start=2):
        ax = fig.add_subplot(2, 2, panel)
        for kind, style in styles.items():
            segments = lines[kind][..., [i, j]]  # (V, [S,] 2, 2)
            per_camera = int(np.prod(segments.shape[1:-2]))
            ax.add_collection(LineCollection(
                segments.reshape(-1, 2, 2), colors=np.repeat(colours, per_camera, axis=0),
                linewidths=style["lw"], linestyles=style.get("ls", "-")))
        if len(finite):
            ax.scatter(finite[:, i], finite[:, j], c="0.2", s=2, alpha=0.4)
        ax.scatter(centres[:, i], centres[:, j], c=colours, s=30, zorder=3)
        for v, name in enumerate(group.names):
            ax.annotate(name, centres[v, [i, j]], xytext=(4, 4), textcoords="offset points",
                        color=colours[v], fontsize=9, weight="bold")
        ax.set_xlim(middle[i] - half, middle[i] + half)
        ax.set_ylim(middle[j] - half, middle[j] + half)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(_AXIS_NAMES[i])
        ax.set_ylabel(_AXIS_NAMES[j])
        other = _AXIS_NAMES[3 - i - j]
        ax.set_title(f"world {_AXIS_NAMES[i]}-{_AXIS_NAMES[j]} (seen along {other})",
                     fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\nframe outline at {FRUSTUM_FRACTION:g} x the labels' depth (thick "
                 "edge: top row of the image), dashed: optical axis, dotted: line of sight to "
                 "the labels (dots)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG through a temporary file renamed over ``path``."""
    with atomic_path(path) as partial:
        fig.savefig(partial, format="png", dpi=_DPI)
    return Path(path)


def _zoom(points: np.ndarray, size: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x0, x1, y0, y1)`` around the finite ``points (M, 2)`` with a margin; None if none."""
    finite = points[np.isfinite(points).all(-1)]
    if not len(finite):
        return None
    low, high = finite.min(0), finite.max(0)
    margin = max(40.0, 0.15 * float(np.ptp(finite, axis=0).max()))
    side = float(np.ptp(finite, axis=0).max()) + 2 * margin
    middle = (low + high) / 2
    aspect = size[1] / size[0]  # keep the frame's shape
    half = np.array([side / 2, side / 2 * aspect]) if aspect < 1 else np.array(
        [side / 2 / aspect, side / 2])
    return (middle[0] - half[0], middle[0] + half[0], middle[1] - half[1], middle[1] + half[1])


def _pictures(path: Path | None, zoom: tuple[float, float, float, float] | None
              ) -> list[tuple[np.ndarray, tuple[float, float, float, float]] | None]:
    """The frame at ``path`` for the two panels of a view, each with its ``imshow`` extent in
    frame pixels: the whole frame reduced to about the panel's resolution, and the ``zoom``
    region cropped at full resolution (drawing whole megapixel frames made the figure slow)."""
    if path is None:
        return [None, None]
    with Image.open(path) as image:
        image.load()
        frame = image.convert("L") if image.mode in ("L", "I;16", "I") else image.convert("RGB")
    w, h = frame.size
    factor = max(1, w // _PANEL_PX)
    whole = (np.asarray(frame.reduce(factor)), (-0.5, w - 0.5, h - 0.5, -0.5))
    if zoom is None:
        return [whole, whole]
    x0, x1, y0, y1 = (int(np.clip(round(c), 0, n)) for c, n in zip(zoom, (w, w, h, h)))
    if x1 <= x0 or y1 <= y0:
        return [whole, whole]
    crop = np.asarray(frame.crop((x0, y0, x1, y1)))
    return [whole, (crop, (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))]


def plot_reprojection(view_names: list[str], labels: np.ndarray, reprojected: np.ndarray,
                      sizes: np.ndarray, images: list[Path | None], path: str | Path,
                      title: str = "", keypoint_names: list[str] | None = None,
                      flagged: np.ndarray | None = None) -> Path:
    """Write ``reprojection.png`` for one frame: ``labels`` and ``reprojected (V, K, 2)``
    frame pixels, ``sizes (V, 2)`` ``[w, h]``, ``images[v]`` the frame (None: blank canvas),
    ``flagged (V, K)`` labels to name (outliers)."""
    num_views = len(view_names)
    fig = Figure(figsize=(3.4 * num_views, 6.4))
    axes = np.asarray(fig.subplots(2, num_views, squeeze=False))
    colours = _colours(num_views)
    errors = np.linalg.norm(reprojected - labels, axis=-1)  # (V, K)
    for v, name in enumerate(view_names):
        w, h = (float(s) for s in sizes[v])
        zoom = _zoom(np.concatenate([labels[v], reprojected[v]]), np.array([w, h]))
        pictures = _pictures(images[v], zoom)
        for row, ax in enumerate(axes[:, v]):
            if pictures[row] is not None:
                picture, extent = pictures[row]
                ax.imshow(picture, extent=extent, cmap="gray" if picture.ndim == 2 else None)
            else:
                ax.set_facecolor(BLANK)
                ax.text(0.03, 0.97, "no image", transform=ax.transAxes, ha="left", va="top",
                        color="0.8", fontsize=8)
            pairs = np.stack([labels[v], reprojected[v]], axis=1)  # (K, 2, 2)
            ax.add_collection(LineCollection(pairs[np.isfinite(pairs).all((1, 2))],
                                             colors="yellow", lw=1.0))
            ax.scatter(labels[v, :, 0], labels[v, :, 1], s=36 if row else 14,
                       facecolors="none", edgecolors="lime", lw=1.2, label="label")
            ax.scatter(reprojected[v, :, 0], reprojected[v, :, 1], s=30 if row else 12,
                       marker="x", c="red", lw=1.2, label="reprojection (all views)")
            if row == 0:
                ax.set_xlim(-0.5, w - 0.5)
                ax.set_ylim(h - 0.5, -0.5)
                finite = errors[v][np.isfinite(errors[v])]
                median = f"{np.median(finite):.1f} px" if finite.size else "-"
                ax.set_title(f"{name}: median {median}", color=colours[v], fontsize=10,
                             weight="bold")
                if zoom is not None:
                    x0, x1, y0, y1 = zoom
                    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="white", lw=0.8)
            else:
                if zoom is not None:
                    ax.set_xlim(zoom[0], zoom[1])
                    ax.set_ylim(zoom[3], zoom[2])
                if flagged is not None and keypoint_names is not None:
                    for k in np.flatnonzero(flagged[v]):
                        ax.annotate(keypoint_names[k], labels[v, k], xytext=(5, -5),
                                    textcoords="offset points", color="orange", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].legend(loc="lower left", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _frame_to_draw(project: MultiviewProject) -> tuple[int, list[Path | None]]:
    """The first row whose images exist in every view, and its images; without one, row 0
    and the images it has (None: blank)."""
    for row in range(len(project)):
        files = [project.image_file(row, v) for v in range(project.num_views)]
        if all(f.is_file() for f in files):
            return row, list(files)
    files = [project.image_file(0, v) for v in range(project.num_views)]
    return 0, [f if f.is_file() else None for f in files]


def plot_project(check: CalibrationCheck, project: MultiviewProject,
                 out_dir: str | Path) -> list[Path]:
    """``rig.png`` (the calibration most rows use, with their triangulated labels) and
    ``reprojection.png`` (``_frame_to_draw``) of a checked project in ``out_dir``."""
    out = Path(out_dir)
    index = project.calibration_index
    most = int(np.bincount(index[index >= 0]).argmax())
    rows = index == most
    group = project.calibrations[most]
    rig = plot_rig(group, check.points[rows], out / "rig.png",
                   title=f"{project.calibration_files[most]}: {len(group.names)} cameras, "
                         f"labels of {int(rows.sum())} rows")
    row, images = _frame_to_draw(project)
    sizes = project.calibrations[index[row]].sizes
    flagged = np.zeros(check.keypoints.shape[1:3], dtype=bool)
    views, keypoints = check.view_names, check.keypoint_names
    for o in check.outliers:
        if o.row == row:
            flagged[views.index(o.view), keypoints.index(o.keypoint)] = True
    name = project.image_paths[row][0]
    reprojection = plot_reprojection(
        views, check.keypoints[row], check.reprojected[row], sizes, images,
        out / "reprojection.png", title=f"row {row} ({name}): labels (circles) and their "
        "reprojection from all views (crosses)", keypoint_names=keypoints, flagged=flagged)
    return [rig, reprojection]
