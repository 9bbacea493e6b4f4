"""Predict synchronised multi-view videos: 2D / 3D / video outputs per session
(``mvcore predict``).

Sessions (which videos belong together, the sync policy, each session's calibration) are
decided by ``mvcore.data.sessions``, as for training. A session's views are streamed through the
model a batch at a time (``mvcore.predict.decoding``); labelled videos are drawn by
``mvcore.predict.rendering``.

Outputs per session (``out_dir``): ``<session>_<view>.csv`` (DeepLabCut 3-row header, x / y /
likelihood in frame pixels, index ``0..T-1``); with a calibration ``<session>_3d.csv``
(``mvcore.data.csv_io.write_3d_csv``: anipose columns ``<kp>_x, _y, _z, _error, _ncams,
_score``, ``M_00..M_22`` (identity), ``center_0..2`` (zero), ``fnum``); with
``labeled_video`` ``labeled_videos/<session>_<view>_labeled.mp4``.

3D: ``mvcore.data.triangulate.triangulate_predictions`` per frame and keypoint (the views
whose confidence is >= ``confidence_threshold``, default 0.5, weighted by confidence);
``_error`` = mean reprojection error (px) over the views used, ``_ncams`` = views used (0 and
NaN point when fewer than 2), ``_score`` = the lowest confidence among the views used.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mvcore.data.bbox import model_to_frame, whole_image_bbox
from mvcore.data.csv_io import write_3d_csv, write_keypoints_csv
from mvcore.data.heatmaps import heatmap_to_keypoints
from mvcore.data.sessions import (
    CalibrationResolver,
    VideoSession,
    find_sessions,
    prediction_video_dir,
)
from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD, triangulate_predictions
from mvcore.errors import ConfigError, DataError
from mvcore.geometry import load_calibration
from mvcore.predict.decoding import SessionReader, frames_to_model_input, view_frames
from mvcore.predict.model_io import load_model, load_model_config, resolve_checkpoint
from mvcore.predict.rendering import LabeledVideoWriter, keypoint_colors

__all__ = [
    "SessionPredictions",
    "SessionResult",
    "predict_frames",
    "predict_session",
    "predict_videos",
    "session_outputs",
    "up_to_date",
]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


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

    device = module.device
    with _autocast(device.type, precision):
        heatmaps = module(images.to(device, non_blocking=True))
    keypoints, confidences = heatmap_to_keypoints(heatmaps.float(), module.image_size)
    bbox = torch.as_tensor(whole_image_bbox(frame_sizes), dtype=torch.float32, device=device)
    frame = model_to_frame(keypoints, bbox.expand(keypoints.shape[0], -1, -1), module.image_size)
    return frame.cpu(), confidences.cpu()


@dataclass
class SessionPredictions:
    """``keypoints (T, V, K, 2)`` frame px and ``confidences (T, V, K)`` (float32); with a
    calibration the ``triangulate_predictions`` arrays ``points (T, K, 3)``, ``errors``,
    ``ncams``, ``scores (T, K)``. T = frames decoded (a warning when the headers differ)."""

    keypoints: np.ndarray
    confidences: np.ndarray
    points_3d: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``(V,)`` points each view saw from behind (left out of their triangulation)
    behind_per_view: np.ndarray | None = None


def predict_session(module: Any, session: VideoSession, batch_size: int = 16,
                    precision: str = "32", cameras: Any = None,
                    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                    video_writers: list[LabeledVideoWriter] | None = None,
                    video_threshold: float = 0.0, progress: bool = True) -> SessionPredictions:
    """Stream a session through the model: 2D per batch, 3D per batch (``cameras``, a
    ``CameraTensors (V, ...)``), labelled frames per batch (``video_writers``, one per view;
    points with confidence < ``video_threshold`` are hidden)."""

    sizes = session.frame_sizes
    keypoints, confidences = [], []
    parts: dict[str, list[np.ndarray]] = {"points": [], "errors": [], "ncams": [], "scores": []}
    behind = None
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
                seen = tri.behind_per_view()
                behind = seen if behind is None else behind + seen
            if video_writers:
                shown = (conf >= video_threshold).numpy()
                for v, writer in enumerate(video_writers):
                    writer.write(per_view[v], kp[:, v].numpy(), shown[:, v])
            bar.update(len(kp))
    points_3d = {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}
    result = SessionPredictions(np.concatenate(keypoints), np.concatenate(confidences),
                                points_3d, behind)
    for view, count in zip(session.view_names, behind if behind is not None else []):
        if count:
            warnings.warn(f"session {session.name!r}: camera {view!r} saw {count} predicted "
                          "points from behind; they were triangulated without it (check the "
                          "calibration with mvcore calib check)", stacklevel=2)
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
            write_3d_csv(out / f"{item.name}_3d.csv", p3d["points"], p3d["errors"],
                         p3d["ncams"], keypoint_names, scores=p3d["scores"])
        seconds = time.perf_counter() - started
        log(f"predicted session {item.name}: {frames} frames x {len(view_names)} views in "
            f"{seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s) -> {out}")
        results.append(SessionResult(item.name, "predicted", outputs, frames, seconds,
                                     calib_file))
    return results
