"""Decoding a session's videos for prediction: lockstep streaming and the model's input.

Streaming: the views of a session are decoded with PyAV in lockstep, a batch at a time, each
view by a thread of its own (FFmpeg's decoding and its single-threaded conversion to RGB release
the GIL: 1.3x faster on 2 cores, bench/RESULTS.md), and only one batch of frames is held in
memory (peak memory does not grow with the video length). A frame is the whole image (bbox
``[0, 0, h, w]``); it is resized to the model input with the training resize (bilinear,
antialiased, pixel edges on pixel edges; done on uint8 frames, which differs from the float
path of ``mvcore.data.dataset.load_image`` by < 1 grey level and is ~30x faster at
1280x1024), then ImageNet-normalised.

A video that fails part-way (a frame FFmpeg cannot decode, a view that ends early, a frame
of another size) raises ``VideoReadError`` naming the file and the frame, after the frames
read before it have been yielded: the caller keeps what it made of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from mvcore.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from mvcore.data.sessions import VideoSession
from mvcore.errors import DataError

__all__ = ["SessionReader", "VideoReadError", "frames_to_model_input", "view_frames"]


class VideoReadError(DataError):
    """A session's video failed part-way: ``frame`` (0-based) of ``path`` could not be read;
    every frame before it was (and was yielded)."""

    def __init__(self, message: str, path: Path, frame: int) -> None:
        super().__init__(message)
        self.path = path
        self.frame = frame


class SessionReader:
    """Decodes all views of a session in lockstep, ``batch_size`` frames at a time.

    Iterating yields one batch at a time: a uint8 RGB array ``(B, V, h, w, 3)`` when all views
    share a frame size (decoded in place, no copy), else a list of V arrays
    ``(B, h_v, w_v, 3)``; B = ``batch_size``, the last batch shorter. The memory is reused
    for the next batch: use (or copy) a batch before advancing. ``VideoReadError`` (after the
    frames read before it) if a frame cannot be decoded, a view ends early or changes size.
    """

    def __init__(self, session: VideoSession, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.session = session
        self.batch_size = int(batch_size)

    def __iter__(self) -> Iterator[np.ndarray | list[np.ndarray]]:
        session = self.session
        sizes = {(info.height, info.width) for info in session.videos}
        b = self.batch_size
        if len(sizes) == 1:
            shared = np.empty((b, len(session.videos), *sizes.pop(), 3), np.uint8)
            buffers = [shared[:, v] for v in range(len(session.videos))]
        else:
            shared = None
            buffers = [np.empty((b, info.height, info.width, 3), np.uint8)
                       for info in session.videos]

        def batch(count: int) -> np.ndarray | list[np.ndarray]:
            if shared is not None:
                return shared if count == b else shared[:count]
            return buffers if count == b else [x[:count] for x in buffers]

        with contextlib.ExitStack() as stack:
            decoders = []
            for info in session.videos:
                try:
                    container = stack.enter_context(av.open(str(info.path)))
                except (av.error.FFmpegError, OSError) as exc:
                    reason = getattr(exc, "strerror", None) or str(exc)
                    raise VideoReadError(f"cannot open video {info.path}: {reason}",
                                         info.path, 0) from None
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                decoders.append(container.decode(stream))
            # one thread per view: FFmpeg's decoding and its conversion to RGB release the GIL,
            # and the conversion runs on one core per frame
            pool = stack.enter_context(ThreadPoolExecutor(len(decoders),
                                                          thread_name_prefix="mvcore-decode"))
            index = 0
            while True:
                count = b if not session.truncated else min(b, session.num_frames - index)
                if count <= 0:  # video_sync: the shortest view's length was reached
                    return
                reads = list(pool.map(self._read_view, decoders, buffers,
                                      [count] * len(decoders)))
                good = min(got for got, _ in reads)
                if good == count:
                    yield batch(count)
                    index += count
                    continue
                failure = self._first_failure(reads, good, index + good)
                if good:  # the frames read before the failure (or the end) are still good
                    yield batch(good)
                if failure is not None:
                    raise failure
                return

    @staticmethod
    def _read_view(decoder: Iterator[av.VideoFrame], out: np.ndarray, count: int
                   ) -> tuple[int, tuple[str, str] | None]:
        """Decode a view's next ``count`` frames into ``out[0..count)``: how many were read,
        and why it stopped short (``("decode", reason)``, ``("ended", "")``, ``("size",
        (h, w))``), or None."""
        shape = out.shape[1:]
        for j in range(count):
            try:
                frame = next(decoder, None)
            except av.error.FFmpegError as exc:
                return j, ("decode", getattr(exc, "strerror", None) or str(exc))
            if frame is None:
                return j, ("ended", "")
            image = frame.to_ndarray(format="rgb24")
            if image.shape != shape:
                return j, ("size", str(image.shape[:2]))
            out[j] = image
        return count, None

    def _first_failure(self, reads: list[tuple[int, tuple[str, str] | None]], good: int,
                       index: int) -> VideoReadError | None:
        """The error frame-by-frame lockstep reading meets first at frame ``index`` of the
        video (the batch's frame ``good``, the first one some view did not read), or None
        when every view ended there. In that order: a frame FFmpeg cannot decode (first such
        view), a view that ended while others go on, a frame of another size."""
        videos = self.session.videos
        at = {v: why for v, (got, why) in enumerate(reads) if got == good and why is not None}
        for v, (kind, detail) in at.items():
            if kind == "decode":
                return VideoReadError(
                    f"{videos[v].path}: cannot decode frame {index} ({detail}); the video is "
                    "damaged from there on", videos[v].path, index)
        ended = [v for v, (kind, _) in at.items() if kind == "ended"]
        if ended and len(ended) < len(videos):
            v = ended[0]
            return VideoReadError(
                f"session {self.session.name!r}: {videos[v].path} ended after {index} "
                "frames while other views go on", videos[v].path, index)
        for v, (kind, detail) in at.items():
            if kind == "size":
                path = videos[v].path
                started = (videos[v].height, videos[v].width)
                return VideoReadError(f"{path}: frame {index} is {detail} (h, w), the video "
                                      f"started at {started}", path, index)
        return None


def view_frames(frames: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """A ``SessionReader`` batch as V arrays ``(B, h_v, w_v, 3)`` (views, no copies)."""
    if isinstance(frames, np.ndarray):
        return [frames[:, v] for v in range(frames.shape[1])]
    return list(frames)


def frames_to_model_input(frames: np.ndarray | list[np.ndarray], image_size: tuple[int, int]
                          ) -> torch.Tensor:
    """uint8 frames ``(B, V, h, w, 3)`` (or V arrays ``(B, h_v, w_v, 3)``) -> ImageNet-
    normalised ``(B, V, 3, H, W)`` float32.

    Antialiased bilinear resize on uint8 (channels-last; one call for all views of a common
    size), the geometry of ``mvcore.data.dataset.load_image``."""

    size = (int(image_size[0]), int(image_size[1]))

    def resize(x: torch.Tensor) -> torch.Tensor:  # (N, 3, h, w) uint8 channels-last
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    if isinstance(frames, np.ndarray):
        batch, views = frames.shape[:2]
        flat = torch.from_numpy(frames).flatten(0, 1).permute(0, 3, 1, 2)
        images = resize(flat).reshape(batch, views, 3, *size)
    else:  # views of different sizes: one call per size
        images = torch.stack([resize(torch.from_numpy(f).permute(0, 3, 1, 2)) for f in frames],
                             dim=1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    return (images.to(torch.float32).div_(255.0) - mean) / std
