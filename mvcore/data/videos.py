"""Video files of a project: ``<session>_<view>.mp4`` naming and container probing.

Shared by training on unlabelled clips (``mvcore.data.unlabeled``) and by prediction
(``mvcore.predict.video``), so both read a folder of videos the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from mvcore.errors import DataError

__all__ = ["VideoInfo", "match_view", "probe_video"]


@dataclass
class VideoInfo:
    """One video file: frame count, frame rate and frame size (from the container)."""

    path: Path
    num_frames: int
    fps: Fraction
    height: int
    width: int


def match_view(stem: str, view_names: list[str]) -> tuple[str, str] | None:
    """``<session>_<view>`` -> ``(session, view)``; the view is a whole ``_`` suffix and the
    longest matching view name wins (Lightning Pose matched substrings: its bug B12)."""
    hits = [v for v in view_names if stem.endswith("_" + v) and len(stem) > len(v) + 1]
    if not hits:
        return None
    view = max(hits, key=len)
    return stem[: -len(view) - 1], view


def probe_video(path: Path) -> VideoInfo:
    """Frame count, rate and size of a video (counting packets if the header has no count)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        count = int(stream.frames or 0)
        if count <= 0:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        return VideoInfo(Path(path), count, Fraction(rate), int(stream.height),
                         int(stream.width))
