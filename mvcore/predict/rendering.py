"""Labelled videos: keypoint markers drawn on the frames, written as mp4 (``mvcore predict
--labeled-video``)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import matplotlib
import numpy as np

from mvcore.data.videos import VideoWriter
from mvcore.errors import ConfigError

__all__ = ["LabeledVideoWriter", "draw_markers", "keypoint_colors", "marker_radius"]


def keypoint_colors(colormap: str, num: int) -> np.ndarray:
    """``(num, 3)`` uint8 RGB, evenly spaced along a matplotlib colormap."""

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ConfigError(f"eval.colormap: unknown matplotlib colormap {colormap!r}") from None
    return (cmap(np.linspace(0.0, 1.0, num))[:, :3] * 255 + 0.5).astype(np.uint8)


def marker_radius(height: int, width: int) -> int:
    """Marker radius in pixels: 3 px at 256 px frames, growing with the frame size."""
    return max(2, round(min(height, width) / 80))


def draw_markers(frames: np.ndarray, keypoints: np.ndarray, visible: np.ndarray,
                 colors: np.ndarray, radius: int) -> np.ndarray:
    """Draw filled discs (keypoint colour, 1-px black rim) in place, all frames at once.

    ``frames (B, h, w, 3)`` uint8, ``keypoints (B, K, 2)`` pixels, ``visible (B, K)`` bool,
    ``colors (K, 3)`` uint8. Later keypoints are drawn over earlier ones."""
    b, h, w, _ = frames.shape
    d = np.arange(-radius - 1, radius + 2)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    dist = np.hypot(dy, dx)
    show = np.asarray(visible, bool) & np.isfinite(keypoints).all(-1)
    centres = np.rint(np.where(show[..., None], keypoints, 0.0)).astype(np.int64)  # (B, K, 2)
    frame_index = np.arange(b)[:, None, None]
    kp_index = np.arange(keypoints.shape[1])[None, :, None]
    black = np.zeros((1, 3), np.uint8)
    rim = (dist > radius) & (dist <= radius + 1)
    for mask, palette in ((rim, None), (dist <= radius, colors)):
        ys = centres[..., 1:2] + dy[mask]  # (B, K, M)
        xs = centres[..., 0:1] + dx[mask]
        ok = show[..., None] & (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        fi = np.broadcast_to(frame_index, ys.shape)[ok]
        values = black[np.zeros(int(ok.sum()), np.int64)] if palette is None else \
            palette[np.broadcast_to(kp_index, ys.shape)[ok]]
        frames[fi, ys[ok], xs[ok]] = values
    return frames


class LabeledVideoWriter:
    """Writes frames with keypoint markers to an H.264 (else MPEG-4) mp4, atomically: the file
    appears under its name only after ``close()`` (a ``mvcore.data.videos.VideoWriter``)."""

    def __init__(self, path: Path, fps: Fraction, height: int, width: int,
                 colors: np.ndarray) -> None:
        self.colors = colors
        self.radius = marker_radius(height, width)
        self.video = VideoWriter(path, fps, height, width, crf=18)
        self.path = self.video.path

    def write(self, frames: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> None:
        """``frames (B, h, w, 3)`` uint8 (drawn on in place), ``keypoints (B, K, 2)``,
        ``visible (B, K)``."""
        draw_markers(frames, keypoints, visible, self.colors, self.radius)
        self.video.write(frames)

    def close(self, path: Path | None = None) -> Path:
        """Finish the file under its name (or ``path``, e.g. an ``.incomplete`` name)."""
        return self.video.close(path)

    def abort(self) -> None:
        self.video.abort()
