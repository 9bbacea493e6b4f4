"""Small test videos written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Lossless-enough H.264 (qp 0) or MPEG-4 video of uint8 ``frames (T, h, w, 3)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps, options={"qp": "0"})
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - no libx264
            stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def grey_frames(count: int, size: int = 32, offset: int = 0) -> np.ndarray:
    """Frame ``t`` is uniformly grey at level ``offset + 8 t`` (decodable identity)."""
    levels = offset + 8 * np.arange(count)
    return np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).astype(np.uint8)
