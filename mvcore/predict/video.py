"""Predict synchronised multi-view videos: streaming decode, 2D / 3D / video outputs.

Sessions (which videos belong together, the sync policy, each session's calibration) are
decided by ``mvcore.data.sessions``, as for training.

Streaming: the views of a session are decoded with PyAV frame by frame, in lockstep, and only
one batch of frames is held in memory (peak memory does not grow with the video length). A
frame is the whole image (bbox ``[0, 0, h, w]``); it is resized to the model input with the
training resize (bilinear, antialiased, pixel edges on pixel edges; done on uint8 frames,
which differs from the float path of ``mvcore.data.dataset.load_image`` by < 1 grey level and
is ~30x faster at 1280x1024), then ImageNet-normalised.

Outputs per session (``out_dir``): ``<session>_<view>.csv`` (DeepLabCut 3-row header, x / y /
likelihood in frame pixels, index ``0..T-1``); with a calibration ``<session>_3d.csv``
(anipose columns ``<kp>_x, _y, _z, _error, _ncams, _score``, ``M_00..M_22`` (identity),
``center_0..2`` (zero), ``fnum``); with ``labeled_video`` ``labeled_videos/<session>_<view>_
labeled.mp4``.

3D: ``mvcore.data.triangulate.triangulate_predictions`` per frame and keypoint (the views
whose confidence is >= ``confidence_threshold``, default 0.5, weighted by confidence);
``_error`` = mean reprojection error (px) over the views used, ``_ncams`` = views used (0 and
NaN point when fewer than 2), ``_score`` = the lowest confidence among the views used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mvcore.data.sessions import (
    CalibrationResolver,
    VideoSession,
    find_sessions,
    prediction_video_dir,
)
from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD, triangulate_predictions
from mvcore.errors import ConfigError, DataError

__all__ = [
    "LabeledVideoWriter",
    "SessionReader",
    "draw_markers",
    "frames_to_model_input",
    "keypoint_colors",
    "predict_session",
    "predict_videos",
    "view_frames",
    "write_anipose_csv",
]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


# ------------------------------------------------------------------------------ decoding
class SessionReader:
    """Decodes all views of a session in lockstep, ``batch_size`` frames at a time.

    Iterating yields one batch at a time: a uint8 RGB array ``(B, V, h, w, 3)`` when all views
    share a frame size (decoded in place, no copy), else a list of V arrays
    ``(B, h_v, w_v, 3)``; B = ``batch_size``, the last batch shorter. The memory is reused
    for the next batch: use (or copy) a batch before advancing. DataError if a view ends early
    or changes frame size.
    """

    def __init__(self, session: VideoSession, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.session = session
        self.batch_size = int(batch_size)

    def __iter__(self) -> Iterator[np.ndarray | list[np.ndarray]]:
        import av

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
        with contextlib.ExitStack() as stack:
            decoders = []
            for info in session.videos:
                container = stack.enter_context(av.open(str(info.path)))
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                decoders.append(container.decode(stream))
            filled = 0
            for index, frames in enumerate(itertools.zip_longest(*decoders)):
                if session.truncated and index == session.num_frames:
                    break  # data.video_sync: truncate
                for v, frame in enumerate(frames):
                    if frame is None:
                        raise DataError(
                            f"session {session.name!r}: {session.videos[v].path.name} ended "
                            f"after {index} frames while other views go on")
                    image = frame.to_ndarray(format="rgb24")
                    if image.shape != buffers[v].shape[1:]:
                        raise DataError(
                            f"{session.videos[v].path}: frame {index} is {image.shape[:2]} "
                            f"(h, w), the video started at {buffers[v].shape[1:3]}")
                    buffers[v][filled] = image
                filled += 1
                if filled == b:
                    yield shared if shared is not None else buffers
                    filled = 0
            if filled:
                yield shared[:filled] if shared is not None else [x[:filled] for x in buffers]


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
    from mvcore.data.dataset import IMAGENET_MEAN, IMAGENET_STD

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


# ---------------------------------------------------------------------------- prediction
def _autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    if precision == "32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    dtype = torch.float16 if precision == "16-mixed" else torch.bfloat16
    return torch.autocast(device_type=device_type, dtype=dtype)


@torch.inference_mode()
def predict_frames(module: Any, images: torch.Tensor, frame_sizes: np.ndarray,
                   precision: str = "32") -> tuple[torch.Tensor, torch.Tensor]:
    """``images (B, V, 3, H, W)`` -> keypoints ``(B, V, K, 2)`` frame pixels and confidences
    ``(B, V, K)`` (float32, CPU). The network runs under ``precision``; the sub-pixel
    read-out always in float32 (half precision would cost ~0.5 px at 1000-px frames)."""
    from mvcore.data.bbox import model_to_frame, whole_image_bbox
    from mvcore.data.heatmaps import heatmap_to_keypoints

    device = module.device
    with _autocast(device.type, precision):
        heatmaps = module(images.to(device, non_blocking=True))
    keypoints, confidences = heatmap_to_keypoints(heatmaps.float(), module.image_size)
    bbox = torch.as_tensor(whole_image_bbox(frame_sizes), dtype=torch.float32, device=device)
    frame = model_to_frame(keypoints, bbox.expand(keypoints.shape[0], -1, -1), module.image_size)
    return frame.cpu(), confidences.cpu()


# ------------------------------------------------------------------------------- writers
def write_anipose_csv(path: str | Path, points: np.ndarray, errors: np.ndarray,
                      ncams: np.ndarray, scores: np.ndarray, keypoint_names: list[str],
                      fnum: Any = None) -> None:
    """``mvcore.data.csv_io.write_3d_csv`` plus the rest of anipose's columns (``_score`` per
    keypoint, ``M_00..M_22`` identity, ``center_0..2`` zero), which movement's anipose loader
    requires. ``scores (n, K)``; the other arguments as in ``write_3d_csv``."""
    import pandas as pd

    from mvcore.data.csv_io import write_3d_csv

    write_3d_csv(path, points, errors, ncams, keypoint_names, fnum=fnum)
    frame = pd.read_csv(path)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(frame), len(keypoint_names))
    for j, name in enumerate(keypoint_names):
        frame.insert(frame.columns.get_loc(f"{name}_ncams") + 1, f"{name}_score", scores[:, j])
    at = frame.columns.get_loc("fnum")
    extras = {f"M_{i}{j}": float(i == j) for i in range(3) for j in range(3)}
    extras.update({f"center_{i}": 0.0 for i in range(3)})
    for offset, (name, value) in enumerate(extras.items()):
        frame.insert(at + offset, name, value)
    frame.to_csv(path, index=False)


def keypoint_colors(colormap: str, num: int) -> np.ndarray:
    """``(num, 3)`` uint8 RGB, evenly spaced along a matplotlib colormap."""
    import matplotlib

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
    appears under its name only after ``close()``."""

    def __init__(self, path: Path, fps: Fraction, height: int, width: int,
                 colors: np.ndarray) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self.colors = colors
        self.radius = marker_radius(height, width)
        self.size = (height - height % 2, width - width % 2)  # yuv420p needs even sizes
        for codec, options in (("libx264", {"crf": "18", "preset": "veryfast"}), ("mpeg4", {})):
            container = av.open(str(self.partial), mode="w")
            try:
                stream = container.add_stream(codec, rate=fps, options=options)
            except (av.error.FFmpegError, ValueError):
                container.close()
                continue
            stream.height, stream.width = self.size
            stream.pix_fmt = "yuv420p"
            self.container, self.stream = container, stream
            return
        raise RuntimeError("PyAV has neither the libx264 nor the mpeg4 encoder")

    def write(self, frames: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> None:
        """``frames (B, h, w, 3)`` uint8 (drawn on in place), ``keypoints (B, K, 2)``,
        ``visible (B, K)``."""
        import av

        draw_markers(frames, keypoints, visible, self.colors, self.radius)
        h, w = self.size
        for image in frames[:, :h, :w]:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        self.partial.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- per session
@dataclass
class SessionPredictions:
    """``keypoints (T, V, K, 2)`` frame px and ``confidences (T, V, K)`` (float32); with a
    calibration the ``triangulate_predictions`` arrays ``points (T, K, 3)``, ``errors``,
    ``ncams``, ``scores (T, K)``. T = frames decoded (a warning when the headers differ)."""

    keypoints: np.ndarray
    confidences: np.ndarray
    points_3d: dict[str, np.ndarray] = field(default_factory=dict)


def predict_session(module: Any, session: VideoSession, batch_size: int = 16,
                    precision: str = "32", cameras: Any = None,
                    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                    video_writers: list[LabeledVideoWriter] | None = None,
                    video_threshold: float = 0.0, progress: bool = True) -> SessionPredictions:
    """Stream a session through the model: 2D per batch, 3D per batch (``cameras``, a
    ``CameraTensors (V, ...)``), labelled frames per batch (``video_writers``, one per view;
    points with confidence < ``video_threshold`` are hidden)."""
    from tqdm.auto import tqdm

    sizes = session.frame_sizes
    keypoints, confidences = [], []
    parts: dict[str, list[np.ndarray]] = {"points": [], "errors": [], "ncams": [], "scores": []}
    with tqdm(total=session.num_frames, desc=f"predicting {session.name}", unit="frame",
              disable=not progress, leave=False) as bar:
        for frames in SessionReader(session, batch_size):
            per_view = view_frames(frames)
            images = frames_to_model_input(frames, module.image_size)
            kp, conf = predict_frames(module, images, sizes, precision)
            keypoints.append(kp.numpy())
            confidences.append(conf.numpy())
            if cameras is not None:
                tri = triangulate_predictions(kp, cameras, conf, confidence_threshold)
                for name, chunks in parts.items():
                    chunks.append(getattr(tri, name))
            if video_writers:
                shown = (conf >= video_threshold).numpy()
                for v, writer in enumerate(video_writers):
                    writer.write(per_view[v], kp[:, v].numpy(), shown[:, v])
            bar.update(len(kp))
    points_3d = {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}
    result = SessionPredictions(np.concatenate(keypoints), np.concatenate(confidences),
                                points_3d)
    if len(result.keypoints) != session.num_frames:
        warnings.warn(f"session {session.name!r}: decoded {len(result.keypoints)} frames per "
                      f"view, the video headers announce {session.num_frames}", stacklevel=2)
    return result


def session_outputs(out_dir: Path, session: VideoSession, calibrated: bool,
                    labeled_video: bool) -> list[Path]:
    """The files a session's prediction writes."""
    paths = [out_dir / f"{session.name}_{v}.csv" for v in session.view_names]
    if calibrated:
        paths.append(out_dir / f"{session.name}_3d.csv")
    if labeled_video:
        paths += [out_dir / "labeled_videos" / f"{session.name}_{v}_labeled.mp4"
                  for v in session.view_names]
    return paths


def up_to_date(outputs: list[Path], inputs: list[Path]) -> bool:
    """Every output exists and is newer than every input."""
    if not all(p.is_file() for p in outputs):
        return False
    return min(p.stat().st_mtime for p in outputs) > max(p.stat().st_mtime for p in inputs)


# ------------------------------------------------------------------------------ top level
@dataclass
class SessionResult:
    """What ``predict_videos`` did with one session."""

    session: str
    status: str  # "predicted" or "skipped"
    outputs: list[Path]
    num_frames: int
    seconds: float = 0.0
    calibration: Path | None = None


def predict_videos(model_dir: str | Path, video_dir: str | Path | None = None,
                   session: str | None = None, out_dir: str | Path | None = None,
                   batch_size: int = 16, precision: str = "32", labeled_video: bool = False,
                   overwrite: bool = False, checkpoint: str = "best",
                   confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                   video_threshold: float | None = None, calibration: str | Path | None = None,
                   device: Any = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> list[SessionResult]:
    """Predict every session of ``video_dir`` with the model of ``model_dir`` (see module
    docstring). Sessions whose outputs are newer than the checkpoint and the videos are
    skipped unless ``overwrite``. ``video_threshold`` defaults to the config's
    ``eval.confidence_thresh_for_vid``; ``calibration`` overrides the project's TOML."""
    from mvcore.data.csv_io import write_keypoints_csv
    from mvcore.geometry import load_calibration
    from mvcore.predict.model_io import load_model, load_model_config, resolve_checkpoint

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    ckpt = resolve_checkpoint(model_dir, checkpoint)
    view_names = list(config.data.view_names)
    keypoint_names = list(config.data.keypoint_names or [])
    videos = Path(video_dir) if video_dir is not None else prediction_video_dir(config)
    if videos is None:
        raise ConfigError("the model's config names no videos (eval.test_videos_directory, "
                          "data.video_dir); pass --videos DIR")
    out = Path(out_dir) if out_dir is not None else model_dir / "video_preds"
    sessions = find_sessions(videos, view_names, session, sync=config.data.video_sync)
    resolver = CalibrationResolver(config, view_names) if calibration is None else None
    if video_threshold is None:
        video_threshold = float(config.eval.confidence_thresh_for_vid)

    module = None
    results = []
    for item in sessions:
        found = None
        if resolver is None:
            group, calib_file = load_calibration(calibration).select(view_names), Path(calibration)
        else:
            found = resolver.for_session(item.name)
            group, calib_file = (None, None) if not found else (found.group, found.path)
        outputs = session_outputs(out, item, group is not None, labeled_video)
        inputs = [ckpt] + [v.path for v in item.videos]
        if not overwrite and up_to_date(outputs, inputs):
            log(f"skipped session {item.name}: its outputs in {out} are newer than the "
                "checkpoint and the videos (--overwrite to predict again)")
            results.append(SessionResult(item.name, "skipped", outputs, item.num_frames,
                                         calibration=calib_file))
            continue
        if module is None:
            module, _ = load_model(model_dir, checkpoint, device=device)
            keypoint_names = list(module.context.keypoint_names)
            if list(module.context.view_names) != view_names:
                raise DataError(f"{model_dir}: context.json views {module.context.view_names} "
                                f"differ from config.yaml views {view_names}")
        if group is not None:
            sizes = item.frame_sizes[:, ::-1]  # (V, 2) [width, height], as in the TOML
            for v in np.flatnonzero((sizes != group.sizes).any(-1)):
                warnings.warn(f"{calib_file}: camera {view_names[v]!r} is "
                              f"{group.sizes[v].astype(int).tolist()} (w, h) but the video "
                              f"{item.videos[v].path.name} is {sizes[v].tolist()}; the 3D "
                              "points will be wrong", stacklevel=2)
        else:
            log(f"session {item.name}: no calibration ({found.reason}): 2D predictions only")
        cameras = group.to_tensors(dtype=torch.float64) if group is not None else None
        writers: list[LabeledVideoWriter] = []
        started = time.perf_counter()
        try:
            if labeled_video:
                colors = keypoint_colors(config.eval.colormap, len(keypoint_names))
                writers = [LabeledVideoWriter(path, info.fps, info.height, info.width, colors)
                           for path, info in zip(outputs[-len(view_names):], item.videos)]
            predictions = predict_session(module, item, batch_size, precision, cameras,
                                          confidence_threshold, writers, video_threshold,
                                          progress)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for writer in writers:
            writer.close()
        frames = len(predictions.keypoints)
        index = list(range(frames))
        scorer = f"{config.model.model_type}_tracker"
        for v, view in enumerate(view_names):
            write_keypoints_csv(out / f"{item.name}_{view}.csv", index, keypoint_names,
                                predictions.keypoints[:, v], predictions.confidences[:, v],
                                scorer=scorer)
        if predictions.points_3d:
            p3d = predictions.points_3d
            write_anipose_csv(out / f"{item.name}_3d.csv", p3d["points"], p3d["errors"],
                              p3d["ncams"], p3d["scores"], keypoint_names)
        seconds = time.perf_counter() - started
        log(f"predicted session {item.name}: {frames} frames x {len(view_names)} views in "
            f"{seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s) -> {out}")
        results.append(SessionResult(item.name, "predicted", outputs, frames, seconds,
                                     calib_file))
    return results
