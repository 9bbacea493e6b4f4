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

Complete or absent (``docs/predict.md``): every output is written under a temporary name and
renamed when complete; the output folder is locked (``mvcore.files.DirectoryLock``) for the
whole run, so a second ``mvcore predict`` into it stops with a ``BusyError``. After a
session's outputs are complete its manifest ``<out>/.mvcore/<session>.json`` is written
(``mvcore.files.Manifest``: the videos, the calibration and the model's config files with
their sizes and modification times; the checkpoint, precision, confidence threshold and
labelled-video threshold; each output's size). A session is up to date when its manifest
matches (``stale_reason``); anything else (no manifest, a cut-short output, a changed video,
checkpoint or setting) predicts it again. Batch size and device are not settings: they change
the numbers by float rounding only.

A video that fails part-way (``mvcore.predict.decoding.VideoReadError``: a frame that cannot
be decoded, a view that ends early) keeps the frames predicted before it under
``.incomplete`` names (``<session>_<view>.incomplete.csv``, ``<session>_3d.incomplete.csv``,
``labeled_videos/<session>_<view>_labeled.incomplete.mp4``), never under the name of a
complete output, and without a manifest; an earlier complete run's outputs and manifest are
left as they were. The other sessions are predicted, then the run fails (exit 2) with one
line per failed session naming the file and the frame.
"""

from __future__ import annotations

import contextlib
import glob
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from mvcore.files import DirectoryLock, Manifest, writable_dir
from mvcore.geometry import load_calibration
from mvcore.predict.decoding import (
    SessionReader,
    VideoReadError,
    frames_to_model_input,
    view_frames,
)
from mvcore.predict.model_io import load_model, load_model_config, resolve_checkpoint
from mvcore.predict.rendering import LabeledVideoWriter, keypoint_colors

__all__ = [
    "MANIFEST_DIR",
    "PredictionPlan",
    "SessionJob",
    "SessionPredictions",
    "SessionResult",
    "SessionTask",
    "incomplete_path",
    "manifest_path",
    "plan_prediction",
    "predict_frames",
    "predict_session",
    "predict_videos",
    "session_outputs",
    "session_tasks",
    "skip_session",
    "stale_reason",
]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
#: the hidden folder of an output folder that holds the per-session manifests
MANIFEST_DIR = ".mvcore"


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
    keypoints, confidences = heatmap_to_keypoints(heatmaps.float(), module.image_size,
                                                  grid=module.context.heatmap_grid)
    bbox = torch.as_tensor(whole_image_bbox(frame_sizes), dtype=torch.float32, device=device)
    frame = model_to_frame(keypoints, bbox.expand(keypoints.shape[0], -1, -1), module.image_size)
    return frame.cpu(), confidences.cpu()


@dataclass
class SessionPredictions:
    """``keypoints (T, V, K, 2)`` frame px and ``confidences (T, V, K)`` (float32); with a
    calibration the ``triangulate_predictions`` arrays ``points (T, K, 3)``, ``errors``,
    ``ncams``, ``scores (T, K)``. T = frames decoded (a warning when the headers differ).
    ``failure``: the ``VideoReadError`` that stopped the session part-way (T = the frames
    before it), None when every frame was predicted."""

    keypoints: np.ndarray
    confidences: np.ndarray
    points_3d: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``(V,)`` points each view saw from behind (left out of their triangulation)
    behind_per_view: np.ndarray | None = None
    failure: VideoReadError | None = None


def predict_session(module: Any, session: VideoSession, batch_size: int = 16,
                    precision: str = "32", cameras: Any = None,
                    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                    video_writers: list[LabeledVideoWriter] | None = None,
                    video_threshold: float = 0.0, progress: bool = True) -> SessionPredictions:
    """Stream a session through the model: 2D per batch, 3D per batch (``cameras``, a
    ``CameraTensors (V, ...)``), labelled frames per batch (``video_writers``, one per view;
    points with confidence < ``video_threshold`` are hidden). A video that fails part-way
    ends the session: the frames before it are returned, with ``failure`` set."""

    sizes = session.frame_sizes
    keypoints, confidences = [], []
    parts: dict[str, list[np.ndarray]] = {"points": [], "errors": [], "ncams": [], "scores": []}
    behind = None
    failure = None
    # the views' labelled frames are drawn and encoded side by side (the RGB -> YUV conversion
    # and the encoder release the GIL): 1.3x for 4 views of 1280x1024 on 2 cores, same bytes
    # (bench/RESULTS.md, "Video decoding: a thread per view")
    writers = ThreadPoolExecutor(len(video_writers), thread_name_prefix="mvcore-encode") \
        if video_writers else None
    with tqdm(total=session.num_frames, desc=f"predicting {session.name}", unit="frame",
              disable=not progress, leave=False) as bar, writers or contextlib.nullcontext():
        try:
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
                if writers is not None and video_writers:
                    shown = (conf >= video_threshold).numpy()
                    points = kp.numpy()
                    list(writers.map(LabeledVideoWriter.write, video_writers,
                                     per_view, points.swapaxes(0, 1), shown.swapaxes(0, 1)))
                bar.update(len(kp))
        except VideoReadError as exc:
            failure = exc
    if not keypoints:  # failed at the first frame
        shape = (0, len(session.view_names), len(module.context.keypoint_names))
        keypoints, confidences = [np.zeros((*shape, 2), np.float32)], [np.zeros(shape)]
    points_3d = {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}
    result = SessionPredictions(np.concatenate(keypoints), np.concatenate(confidences),
                                points_3d, behind, failure)
    for view, count in zip(session.view_names, behind if behind is not None else []):
        if count:
            warnings.warn(f"session {session.name!r}: camera {view!r} saw {count} predicted "
                          "points from behind; they were triangulated without it (check the "
                          "calibration with mvcore calib check)", stacklevel=2)
    if failure is None and len(result.keypoints) != session.num_frames:
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


def manifest_path(out_dir: Path, session: str) -> Path:
    """Where the manifest of a session's outputs lives: ``<out>/.mvcore/<session>.json``."""
    return Path(out_dir) / MANIFEST_DIR / f"{session}.json"


def incomplete_path(path: Path) -> Path:
    """The name of an output that holds the frames predicted before a video failed part-way:
    ``<stem>.incomplete<suffix>`` (never the name of a complete output)."""
    return path.with_name(f"{path.stem}.incomplete{path.suffix}")


def stale_reason(manifest: Path, inputs: list[Path], settings: dict[str, Any],
                 outputs: list[Path]) -> str | None:
    """None when the session's manifest says its ``outputs`` are complete and were made from
    these ``inputs`` (size, modification time) with these ``settings``; else why not.

    A manifest written with labelled videos also covers a run that asks for none
    (``settings["labeled_video"]`` None): the CSVs are the same."""
    recorded = Manifest.read(manifest)
    if recorded is None:
        return "no manifest: never predicted, or an interrupted or older run"
    now = Manifest.describe(inputs, settings, [p for p in outputs if p.is_file()])
    for name, stat in now.inputs.items():
        if recorded.inputs.get(name) != stat:
            return f"{Path(name).name} changed since its outputs were written" \
                if name in recorded.inputs else f"{Path(name).name} was not an input then"
    gone = sorted(set(recorded.inputs) - set(now.inputs))
    if gone:
        return f"{Path(gone[0]).name} is no longer an input"
    for key, value in now.settings.items():
        old = recorded.settings.get(key)
        if old == value or (key == "labeled_video" and value is None):
            continue
        if key == "checkpoint":
            return (f"the checkpoint {value['path']} is not the one its outputs were made "
                    "with (size or modification time)")
        if key == "labeled_video":
            return "its labelled videos were not made" if old is None else \
                f"the video threshold was {old['video_threshold']}, now {value['video_threshold']}"
        return f"{key} was {old}, now {value}"
    for path in outputs:
        name = str(path.resolve())
        if name not in recorded.outputs:
            return f"{path.name} was not written then"
        if name not in now.outputs:
            return f"{path.name} is missing"
        if now.outputs[name] != recorded.outputs[name]:
            return (f"{path.name} is {now.outputs[name]} bytes, {recorded.outputs[name]} when "
                    "it was written (cut short or changed)")
    return None


def _clear_leftovers(outputs: list[Path], manifest: Path) -> None:
    """Delete what an earlier run of this session left that no complete run lists: partial
    files of a killed run (``.<stem>.<random>.partial<suffix>``) and ``.incomplete`` files.
    Only called while the output folder is locked."""
    for path in [*outputs, manifest]:
        for name in (path, incomplete_path(path)):
            pattern = f".{glob.escape(name.stem)}.*.partial{name.suffix}"
            for leftover in name.parent.glob(pattern):
                leftover.unlink(missing_ok=True)
            name.with_name(f"{name.stem}.partial{name.suffix}").unlink(missing_ok=True)
        incomplete_path(path).unlink(missing_ok=True)


def _model_settings(model_dir: Path, ckpt: Path) -> tuple[list[Path], dict[str, Any]]:
    """The model's part of every session's manifest, read before the model is loaded (a
    checkpoint replaced later then makes the next run predict again, never the reverse):
    its config files as inputs and the checkpoint (path, size, modification time)."""
    stat = ckpt.stat()
    files = [p for p in (model_dir / "config.yaml", model_dir / "context.json") if p.is_file()]
    checkpoint = {"path": str(ckpt.resolve()), "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns}
    return files, {"checkpoint": checkpoint}


@dataclass
class SessionResult:
    """What ``predict_videos`` did with one session."""

    session: str
    status: str  # "predicted", "skipped" or "incomplete" (a video failed part-way)
    outputs: list[Path]
    num_frames: int
    seconds: float = 0.0
    calibration: Path | None = None


@dataclass
class PredictionPlan:
    """What every process of a run shares, decided once before anything is written: the
    model's config, checkpoint and manifest settings, the sessions and the output folder."""

    model_dir: Path
    #: the checkpoint file (``--checkpoint best`` resolved)
    checkpoint: str
    config: Any
    view_names: list[str]
    #: the model's config files, inputs of every session's manifest
    model_files: list[Path]
    #: the manifest settings (checkpoint, precision, thresholds)
    settings: dict[str, Any]
    sessions: list[VideoSession]
    out: Path
    precision: str
    confidence_threshold: float
    video_threshold: float
    labeled_video: bool
    #: ``--calibration``: its file and its cameras (None: each session's own)
    calibration: Path | None = None
    cameras: Any = None


def plan_prediction(model_dir: str | Path, video_dir: str | Path | None = None,
                    session: str | None = None, out_dir: str | Path | None = None,
                    precision: str = "32", labeled_video: bool = False,
                    checkpoint: str = "best",
                    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                    video_threshold: float | None = None,
                    calibration: str | Path | None = None) -> PredictionPlan:
    """Read the model's config, find the sessions (their videos are probed) and create the
    output folder (``predict_videos`` for the arguments); raises before anything is written."""

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    ckpt = resolve_checkpoint(model_dir, checkpoint)
    model_files, model_settings = _model_settings(model_dir, ckpt)
    view_names = list(config.data.view_names)
    videos = Path(video_dir) if video_dir is not None else prediction_video_dir(config)
    if videos is None:
        raise ConfigError("the model's config names no videos (eval.test_videos_directory, "
                          "data.video_dir); pass --videos DIR")
    sessions = find_sessions(videos, view_names, session, sync=config.data.video_sync)
    if video_threshold is None:
        video_threshold = float(config.eval.confidence_thresh_for_vid)
    out = writable_dir(out_dir if out_dir is not None else model_dir / "video_preds",
                       "--out" if out_dir is not None else "output folder")
    settings = {**model_settings, "precision": precision,
                "confidence_threshold": float(confidence_threshold),
                "labeled_video": {"video_threshold": float(video_threshold)} if labeled_video
                else None}
    given = None if calibration is None else load_calibration(calibration).select(view_names)
    # the file resolved once (``best`` may fall back to ``last.ckpt``, with one warning)
    return PredictionPlan(model_dir, str(ckpt), config, view_names, model_files, settings,
                          sessions, out, precision, float(confidence_threshold),
                          float(video_threshold), labeled_video,
                          None if calibration is None else Path(calibration), given)


@dataclass
class SessionTask:
    """One session of a plan: its calibration, the manifest's inputs, its outputs and
    manifest, and why it must be predicted (``reason``; None: its manifest matches)."""

    session: VideoSession
    cameras: Any
    calibration: Path | None
    #: why the session has no calibration (None: it has one, or ``--calibration`` was given)
    no_calibration: str | None
    inputs: list[Path]
    outputs: list[Path]
    manifest: Path
    reason: str | None

    @property
    def name(self) -> str:
        return self.session.name


def session_tasks(plan: PredictionPlan) -> list[SessionTask]:
    """Every session's task, in the order of ``plan.sessions``; call it with the output
    folder locked (the manifests are compared with the outputs as they are)."""

    resolver = CalibrationResolver(plan.config, plan.view_names) if plan.cameras is None \
        else None
    tasks = []
    for item in plan.sessions:
        missing = None
        if resolver is None:
            cameras, calib_file = plan.cameras, plan.calibration
        else:
            found = resolver.for_session(item.name)
            cameras, calib_file = (found.group, found.path) if found else (None, None)
            missing = None if found else found.reason
        outputs = session_outputs(plan.out, item, cameras is not None, plan.labeled_video)
        inputs = [v.path for v in item.videos] + plan.model_files
        inputs += [calib_file] if calib_file is not None else []
        manifest = manifest_path(plan.out, item.name)
        reason = stale_reason(manifest, inputs, plan.settings, outputs)
        tasks.append(SessionTask(item, cameras, calib_file, missing, inputs, outputs, manifest,
                                 reason))
    return tasks


def skip_session(task: SessionTask, out: Path, log: Callable[[str], None]) -> SessionResult:
    """The result of a session whose outputs are up to date, and the line that says so."""
    log(f"skipped session {task.name}: its outputs in {out} are up to date "
        f"({task.manifest.relative_to(out)} matches; --overwrite to predict again)")
    return SessionResult(task.name, "skipped", task.outputs, task.session.num_frames,
                         calibration=task.calibration)


def predict_videos(model_dir: str | Path, video_dir: str | Path | None = None,
                   session: str | None = None, out_dir: str | Path | None = None,
                   batch_size: int = 16, precision: str = "32", labeled_video: bool = False,
                   overwrite: bool = False, checkpoint: str = "best",
                   confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                   video_threshold: float | None = None, calibration: str | Path | None = None,
                   device: Any = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> list[SessionResult]:
    """Predict every session of ``video_dir`` with the model of ``model_dir`` (see module
    docstring). A session whose manifest matches (``stale_reason``) is skipped unless
    ``overwrite``. ``video_threshold`` defaults to the config's
    ``eval.confidence_thresh_for_vid``; ``calibration`` overrides the project's TOML.

    The output folder is locked for the whole run (``BusyError`` for a second writer). A
    session whose video fails part-way gets ``.incomplete`` outputs; the other sessions are
    predicted, then a DataError names every failed session (one line each). Several
    processes: ``mvcore.predict.distributed``."""

    plan = plan_prediction(model_dir, video_dir, session, out_dir, precision, labeled_video,
                           checkpoint, confidence_threshold, video_threshold, calibration)
    job = SessionJob(plan, batch_size, device, progress, log)
    results, failures = [], []
    with DirectoryLock(plan.out, "predict"):
        for task in session_tasks(plan):
            if task.reason is None and not overwrite:
                results.append(skip_session(task, plan.out, log))
                continue
            result, failure = job.predict(task)
            results.append(result)
            if failure is not None:
                failures.append(failure)
    if failures:
        raise DataError("\n".join(failures))
    return results


@dataclass
class SessionJob:
    """Predicts the sessions of a plan, one at a time, with the model loaded on first use
    (one per process of a run)."""

    plan: PredictionPlan
    batch_size: int
    device: Any
    progress: bool
    log: Callable[[str], None]
    module: Any = None

    def model(self) -> Any:
        """The model, loaded once; its views must be the config's."""
        if self.module is None:
            plan = self.plan
            self.module, _ = load_model(plan.model_dir, plan.checkpoint, device=self.device)
            if list(self.module.context.view_names) != plan.view_names:
                raise DataError(f"{plan.model_dir}: context.json views "
                                f"{self.module.context.view_names} differ from config.yaml "
                                f"views {plan.view_names}")
        return self.module

    def predict(self, task: SessionTask) -> tuple[SessionResult, str | None]:
        """Predict a session (the folder locked): delete what an earlier run left, write the
        outputs, then the manifest; a failure's one-line message instead when a video failed
        part-way (module docstring)."""
        if task.reason is not None and (task.manifest.exists()
                                        or any(p.exists() for p in task.outputs)):
            self.log(f"predicting session {task.name} again: {task.reason}")
        _clear_leftovers(task.outputs, task.manifest)
        if task.no_calibration is not None:
            self.log(f"session {task.name}: no calibration ({task.no_calibration}): 2D "
                     "predictions only")
        # the manifest's inputs and settings as they are before predicting (a video
        # replaced meanwhile makes the next run predict again)
        before = Manifest.describe(task.inputs, self.plan.settings, [])
        result, failure = self.run(task.session, task.cameras, task.calibration, task.outputs,
                                   task.manifest)
        if failure is None:
            done = Manifest.describe([], {}, task.outputs)
            Manifest(before.inputs, before.settings, done.outputs, done.written).write(
                task.manifest)
        return result, failure

    def run(self, item: VideoSession, group: Any, calib_file: Path | None,
            outputs: list[Path], manifest: Path) -> tuple[SessionResult, str | None]:
        """Predict one session and write its outputs (module docstring): under their names
        when every frame was predicted (the old ``manifest`` is deleted before the first is
        replaced), else under ``.incomplete`` names, with the message that says so."""
        module = self.model()
        keypoint_names = list(module.context.keypoint_names)
        view_names = self.plan.view_names
        if group is not None:
            sizes = item.frame_sizes[:, ::-1]  # (V, 2) [width, height], as in the TOML
            for v in np.flatnonzero((sizes != group.sizes).any(-1)):
                warnings.warn(f"{calib_file}: camera {view_names[v]!r} is "
                              f"{group.sizes[v].astype(int).tolist()} (w, h) but the video "
                              f"{item.videos[v].path.name} is {sizes[v].tolist()}; the 3D "
                              "points will be wrong", stacklevel=3)
        cameras = group.to_tensors(dtype=torch.float64) if group is not None else None
        writers: list[LabeledVideoWriter] = []
        started = time.perf_counter()
        try:
            if self.plan.labeled_video:
                colors = keypoint_colors(self.plan.config.eval.colormap, len(keypoint_names))
                writers = [LabeledVideoWriter(path, info.fps, info.height, info.width, colors)
                           for path, info in zip(outputs[-len(view_names):], item.videos)]
            predictions = predict_session(module, item, self.batch_size, self.plan.precision,
                                          cameras, self.plan.confidence_threshold, writers,
                                          self.plan.video_threshold, self.progress)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        failure = predictions.failure
        frames = len(predictions.keypoints)
        if failure is not None and frames == 0:
            for writer in writers:
                writer.abort()
            message = f"{failure}; no frame of session {item.name} was predicted"
            return SessionResult(item.name, "incomplete", [], 0, calibration=calib_file), \
                message
        if failure is None:
            manifest.unlink(missing_ok=True)  # it no longer describes the files from here on
        name = (lambda path: path) if failure is None else incomplete_path
        written = [writer.close(name(writer.path)) for writer in writers]
        index = list(range(frames))
        scorer = f"{self.plan.config.model.model_type}_tracker"
        for v, view in enumerate(view_names):
            path = name(self.plan.out / f"{item.name}_{view}.csv")
            write_keypoints_csv(path, index, keypoint_names, predictions.keypoints[:, v],
                                predictions.confidences[:, v], scorer=scorer)
            written.append(path)
        if predictions.points_3d:
            p3d = predictions.points_3d
            path = name(self.plan.out / f"{item.name}_3d.csv")
            write_3d_csv(path, p3d["points"], p3d["errors"], p3d["ncams"], keypoint_names,
                         scores=p3d["scores"])
            written.append(path)
        seconds = time.perf_counter() - started
        if failure is not None:
            message = _incomplete_message(failure, item.name, frames, self.plan.out,
                                          bool(predictions.points_3d), bool(writers))
            return SessionResult(item.name, "incomplete", written, frames, seconds,
                                 calib_file), message
        self.log(f"predicted session {item.name}: {frames} frames x {len(view_names)} views "
                 f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s) -> "
                 f"{self.plan.out}")
        return SessionResult(item.name, "predicted", outputs, frames, seconds, calib_file), None


def _incomplete_message(failure: Exception, session: str, frames: int, out: Path,
                        calibrated: bool, videos: bool) -> str:
    """One line: what failed (file, frame), what was kept and under which names."""
    names = [f"{session}_<view>.incomplete.csv"]
    names += [f"{session}_3d.incomplete.csv"] if calibrated else []
    names += [f"labeled_videos/{session}_<view>_labeled.incomplete.mp4"] if videos else []
    return (f"{failure}; frames 0-{frames - 1} of session {session} were predicted and kept "
            f"in {out} as {', '.join(names)} (incomplete by name, never taken as done); "
            "repair or re-export the video and run mvcore predict again")
