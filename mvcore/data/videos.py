"""Video files of a project: ``<session>_<view>.mp4`` naming, container probing and writing.

Reading is shared by training on unlabelled clips (``mvcore.data.unlabeled``) and by prediction
(``mvcore.predict``), so both read a folder of videos the same way; ``VideoWriter`` is the one
mp4 writer, used by the synthetic example (``mvcore.example``) and by prediction's labelled
videos (``mvcore.predict.rendering``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from mvcore.errors import DataError

__all__ = ["VideoInfo", "VideoWriter", "match_view", "probe_video"]


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

    hint = ("(a damaged or unfinished file, or not a video); repair or re-export it, or move "
            "it out of the folder")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DataError(f"cannot open video {path}: {reason} {hint}") from None
    with container:
        if not container.streams.video:
            raise DataError(f"cannot open video {path}: no video stream {hint}")
        stream = container.streams.video[0]
        count = int(stream.frames or 0)
        if count <= 0:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        return VideoInfo(Path(path), count, Fraction(rate), int(stream.height),
                         int(stream.width))


class VideoWriter:
    """An H.264 (``libx264``, else MPEG-4 where PyAV lacks it) yuv420p mp4 written with PyAV,
    atomically: frames go to a hidden ``.<stem>.<random>.partial.mp4`` beside ``path`` (the
    naming of ``mvcore.files.atomic_path``, so two writers never share one), which becomes
    ``path`` on ``close()`` (or another name: ``close(path)``); ``abort()`` deletes it. A
    context manager closes on success and aborts on an exception.

    ``height`` / ``width`` are the frames' size; yuv420p needs even sizes, so an odd last row
    or column is dropped. ``crf`` is libx264's quality (lower is better; preset ``veryfast``).
    ``threads`` is the encoder's thread count: 0 lets FFmpeg choose, 1 gives output that is
    byte-identical from run to run."""

    def __init__(self, path: str | Path, fps: int | Fraction, height: int, width: int,
                 crf: int = 18, threads: int = 0) -> None:

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(
            f".{self.path.stem}.{secrets.token_hex(4)}.partial{self.path.suffix}")
        self.size = (height - height % 2, width - width % 2)
        for codec, options in (("libx264", {"crf": str(crf), "preset": "veryfast"}),
                               ("mpeg4", {})):
            container = av.open(str(self.partial), mode="w")
            try:
                stream = container.add_stream(codec, rate=fps, options=options)
            except (av.error.FFmpegError, ValueError):
                container.close()
                self.partial.unlink(missing_ok=True)
                continue
            stream.height, stream.width = self.size
            stream.pix_fmt = "yuv420p"
            if threads:
                stream.codec_context.thread_count = int(threads)
            self.container: Any = container
            self.stream: Any = stream
            return
        raise RuntimeError("PyAV has neither the libx264 nor the mpeg4 encoder")

    def write(self, frames: np.ndarray) -> None:
        """Encode ``frames (T, h, w, 3)`` uint8 RGB."""

        h, w = self.size
        for image in frames[:, :h, :w]:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self, path: str | Path | None = None) -> Path:
        """Flush the encoder and move the file to ``path`` (default: the writer's ``path``;
        e.g. an ``.incomplete`` name for frames of an unfinished job); returns where it is."""
        target = self.path if path is None else Path(path)
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None
            os.replace(self.partial, target)
        except BaseException:
            self.abort()
            raise
        return target

    def abort(self) -> None:
        """Stop writing and delete the partial file (``path`` is left as it was)."""
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
