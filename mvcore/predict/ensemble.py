"""Ensembles of models and Ensemble Kalman smoothing of their video predictions
(``mvcore predict MODEL_DIR MODEL_DIR ... [--smooth eks]``; ``docs/ensembles.md``).

Several models of the same views and keypoints predict the same sessions; each model's
outputs are those of ``mvcore predict`` (``mvcore.predict.video.predict_videos``: its own
manifests, lock and skipping) in ``<out>/models/<name>/``. Per session:

- ``<out>/ensemble/<session>_<view>.csv``: the ensemble (``ensemble_stats``): x, y = the mean
  over models, likelihood = the mean likelihood, ``x_ens_var`` / ``y_ens_var`` = the variance
  over models (px^2, population variance); ``<session>_3d.csv`` triangulated from the mean
  (``triangulate_predictions``, as ``mvcore predict`` does);
- with ``smooth="eks"``: ``<out>/eks/<session>_<view>.csv`` from the multi-camera Ensemble
  Kalman Smoother of the ``ensemble-kalman-smoother`` package (``smooth_eks``; not
  re-implemented here): x, y smoothed, likelihood = the ensemble's, ``x_ens_mean`` /
  ``y_ens_mean`` and ``x_ens_var`` / ``y_ens_var`` (the smoother's ensemble input),
  ``x_posterior_var`` / ``y_posterior_var`` (its posterior variance, px^2), and
  ``<session>_3d.csv`` triangulated from the smoothed 2D.

Complete or absent as ``mvcore predict`` (``docs/predict.md``): ``<out>`` is locked for the
run, every file is written under a temporary name, and ``<out>/.mvcore/<session>.json`` (the
models' per-view CSVs and the calibration as inputs, the models and the smoothing as
settings, the outputs' sizes) is written last; a session whose manifest matches is skipped.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mvcore.data.csv_io import read_keypoints_csv, write_3d_csv
from mvcore.data.sessions import prediction_video_dir
from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD, triangulate_predictions
from mvcore.errors import ConfigError, DataError
from mvcore.files import DirectoryLock, Manifest, atomic_path, writable_dir
from mvcore.geometry import CameraGroup, load_calibration
from mvcore.predict.model_io import load_model_config
from mvcore.predict.video import (
    _clear_leftovers,
    manifest_path,
    predict_videos,
    stale_reason,
)

__all__ = [
    "ENSEMBLE_DIR",
    "MODELS_DIR",
    "SMOOTHERS",
    "EnsembleResult",
    "EnsembleStats",
    "SmoothedPredictions",
    "check_models",
    "ensemble_stats",
    "load_eks",
    "model_names",
    "predict_ensemble",
    "session_files",
    "smooth_eks",
    "write_ensemble_session",
    "write_fields_csv",
]

#: the smoothers ``--smooth`` accepts
SMOOTHERS = ("eks",)
#: sub-folders of an ensemble's output folder
MODELS_DIR = "models"
ENSEMBLE_DIR = "ensemble"
#: the pip command that installs the smoother
SMOOTH_INSTALL = 'pip install "mvcore[smooth]"'


@dataclass
class EnsembleStats:
    """The ensemble of M models: ``mean (T, V, K, 2)`` px, ``likelihood (T, V, K)`` the mean
    likelihood, ``variance (T, V, K, 2)`` the variance over models of x and y (px^2)."""

    mean: np.ndarray
    likelihood: np.ndarray
    variance: np.ndarray


def ensemble_stats(keypoints: np.ndarray, likelihood: np.ndarray) -> EnsembleStats:
    """``keypoints (M, T, V, K, 2)`` and ``likelihood (M, T, V, K)`` of M models -> their
    mean, mean likelihood and population variance over models (NaN ignored: a point missing
    in some models is the ensemble of the others; NaN where every model misses it)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    likelihood = np.asarray(likelihood, dtype=np.float64)
    if keypoints.ndim != 5 or keypoints.shape[-1] != 2 \
            or likelihood.shape != keypoints.shape[:-1]:
        raise ValueError(f"expected keypoints (M, T, V, K, 2) and likelihood (M, T, V, K), got "
                         f"{keypoints.shape} and {likelihood.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
        return EnsembleStats(np.nanmean(keypoints, axis=0), np.nanmean(likelihood, axis=0),
                             np.nanvar(keypoints, axis=0))


# ----------------------------------------------------------------------------- smoothing


def load_eks() -> SimpleNamespace:
    """What mvcore uses of the ``ensemble-kalman-smoother`` package (its multi-camera
    smoother, ``MarkerArray``, and aniposelib's cameras that it projects with); a one-line
    ConfigError saying how to install it when it is missing."""
    try:
        # lazy: an optional extra (mvcore[smooth]); jax takes seconds to import
        from aniposelib.cameras import Camera, CameraGroup
        from eks.marker_array import MarkerArray
        from eks.multicam_smoother import ensemble_kalman_smoother_multicam
    except ImportError as exc:
        name = exc.name or "eks"
        missing = "" if name.startswith("eks") else f" ({name} is missing)"
        raise ConfigError(f"--smooth eks needs the ensemble-kalman-smoother package, which is "
                          f"not installed{missing}: {SMOOTH_INSTALL}") from None
    return SimpleNamespace(smoother=ensemble_kalman_smoother_multicam, MarkerArray=MarkerArray,
                           Camera=Camera, CameraGroup=CameraGroup)


def eks_version() -> str:
    """The installed ``ensemble-kalman-smoother`` version (part of the manifest's settings)."""
    try:
        return importlib.metadata.version("ensemble-kalman-smoother")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _anipose_group(eks: SimpleNamespace, cameras: CameraGroup) -> Any:
    """Our rig as the ``aniposelib`` CameraGroup the smoother projects with (same OpenCV
    pinhole model: K, k1 k2 p1 p2 k3, Rodrigues rotation, translation)."""
    return eks.CameraGroup([
        eks.Camera(matrix=cameras.intrinsics[v], dist=cameras.distortions[v],
               size=[int(s) for s in cameras.sizes[v]], rvec=cameras.rotations[v],
               tvec=cameras.translations[v], name=name)
        for v, name in enumerate(cameras.names)])


@dataclass
class SmoothedPredictions:
    """What the multi-camera EKS gives for a session: ``keypoints (T, V, K, 2)`` smoothed px,
    ``likelihood (T, V, K)`` the ensemble's, ``ensemble_mean`` / ``ensemble_var`` ``(T, V,
    K, 2)`` its input (px, px^2), ``posterior_var (T, V, K, 2)`` px^2, ``smooth_params (K,)``
    the smoothing parameter it chose per keypoint."""

    keypoints: np.ndarray
    likelihood: np.ndarray
    ensemble_mean: np.ndarray
    ensemble_var: np.ndarray
    posterior_var: np.ndarray
    smooth_params: np.ndarray


def smooth_eks(keypoints: np.ndarray, likelihood: np.ndarray, view_names: list[str],
               keypoint_names: list[str], cameras: CameraGroup | None = None,
               smooth_param: float | None = None) -> SmoothedPredictions:
    """Run the ``ensemble-kalman-smoother`` package's multi-camera smoother
    (``ensemble_kalman_smoother_multicam``) on ``keypoints (M, T, V, K, 2)`` and
    ``likelihood (M, T, V, K)`` of M models.

    With ``cameras`` (in view order) its calibrated path: a 3D latent per keypoint observed
    through the cameras' projection; without, its linear path (a PCA subspace of the views).
    The ensemble is the mean over models; the smoothing parameter is the package's own
    optimum per keypoint unless ``smooth_param`` is given (smaller: smoother)."""
    eks = load_eks()
    keypoints = np.asarray(keypoints, dtype=np.float64)
    m, t, v, k, _ = keypoints.shape
    if t < 2:
        raise DataError(f"--smooth eks needs at least 2 frames, got {t}")
    data = np.concatenate([keypoints, np.asarray(likelihood, np.float64)[..., None]], -1)
    marker_array = eks.MarkerArray(np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)),
                               data_fields=["x", "y", "likelihood"])
    group = None if cameras is None else _anipose_group(eks, cameras.select(view_names))
    logging.getLogger("eks").setLevel(logging.WARNING)
    frames, smooth_params, _ = eks.smoother(
        marker_array=marker_array, keypoint_names=list(keypoint_names),
        camera_names=list(view_names), smooth_param=smooth_param, avg_mode="mean",
        camgroup=group)
    fields = ["x", "y", "likelihood", "x_ens_median", "y_ens_median", "x_ens_var", "y_ens_var",
              "x_posterior_var", "y_posterior_var"]  # its column names (the mean here)
    # (V, T, K, fields) from the per-camera (scorer, keypoint, field) tables
    values = np.stack([
        np.stack([frame.xs(name, axis=1, level="bodyparts")
                  .droplevel("scorer", axis=1)[fields].to_numpy() for name in keypoint_names],
                 axis=1) for frame in frames])
    values = values.transpose(1, 0, 2, 3)  # (T, V, K, fields)
    return SmoothedPredictions(values[..., 0:2], values[..., 2], values[..., 3:5],
                               values[..., 5:7], values[..., 7:9],
                               np.asarray(smooth_params, dtype=np.float64))


# ----------------------------------------------------------------------------- files


def write_fields_csv(path: Path, keypoint_names: list[str], fields: dict[str, np.ndarray],
                     scorer: str) -> None:
    """A DeepLabCut-style CSV (3 header rows, index ``0..T-1``) with one column per keypoint
    and field, in ``fields`` order; each value ``(T, K)``. Written atomically."""
    names = list(fields)
    values = np.stack([np.asarray(fields[n], dtype=np.float64) for n in names], axis=-1)
    t, k, f = values.shape
    columns = pd.MultiIndex.from_tuples(
        [(scorer, kp, n) for kp in keypoint_names for n in names],
        names=["scorer", "bodyparts", "coords"])
    frame = pd.DataFrame(values.reshape(t, k * f), index=range(t), columns=columns)
    with atomic_path(path) as partial:
        frame.to_csv(partial)


def check_models(model_dirs: list[Path]) -> tuple[list[str], list[str], list[Any]]:
    """The views and keypoints the models share, and their configs; a one-line DataError
    naming two models whose views or keypoints differ."""
    if not model_dirs:
        raise ConfigError("give at least one model directory")
    if len({p.resolve() for p in model_dirs}) != len(model_dirs):
        raise ConfigError(f"a model directory is given twice: {[str(p) for p in model_dirs]}")
    configs = [load_model_config(p) for p in model_dirs]
    first = configs[0].data
    for path, config in zip(model_dirs[1:], configs[1:]):
        for what in ("view_names", "keypoint_names"):
            mine, theirs = list(getattr(config.data, what)), list(getattr(first, what))
            if mine != theirs:
                noun = what.split("_")[0] + "s"
                raise DataError(f"the models of an ensemble need the same {noun} in the same "
                                f"order: {model_dirs[0]} has {theirs}, {path} has {mine}")
    return list(first.view_names), list(first.keypoint_names), configs


def model_names(model_dirs: list[Path]) -> list[str]:
    """The sub-folder of each model under ``<out>/models``: its directory's name, prefixed by
    its position when two models share a name."""
    names = [p.resolve().name for p in model_dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{n}" for i, n in enumerate(names)]


@dataclass
class EnsembleResult:
    """What ``predict_ensemble`` did with one session's ensemble (and smoothing)."""

    session: str
    status: str  # "predicted" or "skipped"
    outputs: list[Path]
    num_frames: int
    seconds: float = 0.0


def _read_model_session(paths: list[list[Path]]) -> tuple[np.ndarray, np.ndarray]:
    """Per model, per view CSVs ``paths[m][v]`` -> ``keypoints (M, T, V, K, 2)``,
    ``likelihood (M, T, V, K)``; a DataError when their frames differ."""
    tables = [[read_keypoints_csv(p) for p in views] for views in paths]
    frames = {len(t[0]) for views in tables for t in views}
    if len(frames) != 1:
        counts = {str(p): len(t[0]) for views, row in zip(paths, tables)
                  for p, t in zip(views, row)}
        raise DataError(f"the models' predictions of a session have different frame counts: "
                        f"{counts}; predict them again with --overwrite")
    keypoints = np.stack([np.stack([t[2] for t in views], 1) for views in tables])
    likelihood = np.stack([np.stack([np.ones(t[2].shape[:2]) if t[3] is None else t[3]
                                     for t in views], 1) for views in tables])
    return keypoints, likelihood


def _write_session(folder: Path, session: str, view_names: list[str],
                   keypoint_names: list[str], fields: dict[str, np.ndarray], scorer: str,
                   cameras: CameraGroup | None, threshold: float) -> None:
    """``<session>_<view>.csv`` per view from ``fields`` (each ``(T, V, K)``; ``x`` and ``y``
    first, then ``likelihood``) and, with ``cameras``, ``<session>_3d.csv`` triangulated from
    x, y weighted by the likelihood (views below ``threshold`` left out)."""
    for v, view in enumerate(view_names):
        write_fields_csv(folder / f"{session}_{view}.csv", keypoint_names,
                         {n: a[:, v] for n, a in fields.items()}, scorer)
    if cameras is not None:
        points = np.stack([fields["x"], fields["y"]], -1)
        tensors = cameras.select(view_names).to_tensors(dtype=torch.float64)
        tri = triangulate_predictions(points, tensors, fields["likelihood"], threshold)
        write_3d_csv(folder / f"{session}_3d.csv", tri.points, tri.errors, tri.ncams,
                     keypoint_names, scores=tri.scores)


def write_ensemble_session(out: Path, session: str, keypoints: np.ndarray,
                           likelihood: np.ndarray, view_names: list[str],
                           keypoint_names: list[str], cameras: CameraGroup | None = None,
                           smooth: str | None = None, smooth_param: float | None = None,
                           threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> list[Path]:
    """Write one session's ensemble of ``keypoints (M, T, V, K, 2)``, ``likelihood (M, T,
    V, K)`` into ``out/ensemble`` and, with ``smooth="eks"``, the smoothed predictions into
    ``out/eks`` (module docstring; 3D CSVs with ``cameras``). Returns the files written."""
    stats = ensemble_stats(keypoints, likelihood)
    smoothed = None if smooth is None else smooth_eks(
        keypoints, likelihood, view_names, keypoint_names, cameras, smooth_param)
    _write_session(out / ENSEMBLE_DIR, session, view_names, keypoint_names,
                   {"x": stats.mean[..., 0], "y": stats.mean[..., 1],
                    "likelihood": stats.likelihood,
                    "x_ens_var": stats.variance[..., 0], "y_ens_var": stats.variance[..., 1]},
                   "mvcore_ensemble", cameras, threshold)
    if smoothed is not None:
        _write_session(out / str(smooth), session, view_names, keypoint_names,
                       {"x": smoothed.keypoints[..., 0], "y": smoothed.keypoints[..., 1],
                        "likelihood": smoothed.likelihood,
                        "x_ens_mean": smoothed.ensemble_mean[..., 0],
                        "y_ens_mean": smoothed.ensemble_mean[..., 1],
                        "x_ens_var": smoothed.ensemble_var[..., 0],
                        "y_ens_var": smoothed.ensemble_var[..., 1],
                        "x_posterior_var": smoothed.posterior_var[..., 0],
                        "y_posterior_var": smoothed.posterior_var[..., 1]},
                       "mvcore_eks", cameras, threshold)
    return session_files(out, session, view_names, cameras is not None, smooth)


def session_files(out: Path, session: str, view_names: list[str], calibrated: bool,
                  smooth: str | None) -> list[Path]:
    """The files a session's ensemble (and smoothing) writes under ``out``."""
    folders = [out / ENSEMBLE_DIR] + ([out / smooth] if smooth is not None else [])
    paths = [f / f"{session}_{v}.csv" for f in folders for v in view_names]
    return paths + ([f / f"{session}_3d.csv" for f in folders] if calibrated else [])


def predict_ensemble(model_dirs: list[str | Path], out_dir: str | Path,
                     video_dir: str | Path | None = None, session: str | None = None,
                     smooth: str | None = None, batch_size: int = 16, precision: str = "32",
                     overwrite: bool = False, checkpoint: str = "best",
                     confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                     calibration: str | Path | None = None, device: Any = None,
                     smooth_param: float | None = None, progress: bool = True,
                     log: Callable[[str], None] = print) -> list[EnsembleResult]:
    """Predict every session with each model (``<out>/models/<name>``, as ``mvcore
    predict``), then write the ensemble and, with ``smooth="eks"``, the smoothed predictions
    (module docstring). Videos: ``video_dir``, else the first model's config's."""
    if smooth is not None and smooth not in SMOOTHERS:
        raise ConfigError(f"--smooth {smooth!r}: expected one of {list(SMOOTHERS)}")
    if smooth is not None:
        load_eks()  # a missing package stops the run before anything is predicted
    dirs = [Path(p) for p in model_dirs]
    view_names, keypoint_names, configs = check_models(dirs)
    videos = Path(video_dir) if video_dir is not None else prediction_video_dir(configs[0])
    if videos is None:
        raise ConfigError(f"the config of {dirs[0]} names no videos (eval.test_videos_directory, "
                          "data.video_dir); pass --videos DIR")
    out = writable_dir(out_dir, "--out")
    names = model_names(dirs)
    settings = {"models": [str(p.resolve()) for p in dirs],
                "confidence_threshold": float(confidence_threshold),
                "ensemble": "mean",
                "smooth": None if smooth is None else {
                    "method": smooth, "package": f"ensemble-kalman-smoother {eks_version()}",
                    "smooth_param": smooth_param}}
    results = []
    with DirectoryLock(out, "predict"):
        per_model = []
        for i, (path, name) in enumerate(zip(dirs, names)):
            log(f"model {i + 1}/{len(dirs)}: {path}")
            per_model.append(predict_videos(
                path, videos, session, out / MODELS_DIR / name, batch_size, precision,
                overwrite=overwrite, checkpoint=checkpoint,
                confidence_threshold=confidence_threshold, calibration=calibration,
                device=device, progress=progress, log=log))
        sessions = [r.session for r in per_model[0]]
        for results_of, path in zip(per_model[1:], dirs[1:]):
            if [r.session for r in results_of] != sessions:
                raise DataError(f"{path} predicted sessions {[r.session for r in results_of]}"
                                f", {dirs[0]} {sessions}; give the models the same videos")
        folders = [out / ENSEMBLE_DIR] + ([out / smooth] if smooth is not None else [])
        bar = tqdm(list(enumerate(sessions)), desc="ensemble" + (f" + {smooth}" if smooth
                                                                 else ""),
                   unit="session", disable=not progress, leave=False)
        for s, name in bar:
            calib = per_model[0][s].calibration
            with warnings.catch_warnings():  # its warnings were given when it predicted
                warnings.simplefilter("ignore")
                cameras = None if calib is None else load_calibration(calib).select(
                    view_names)
            inputs = [out / MODELS_DIR / n / f"{name}_{v}.csv" for n in names
                      for v in view_names]
            inputs += [calib] if calib is not None else []
            outputs = session_files(out, name, view_names, cameras is not None, smooth)
            manifest = manifest_path(out, name)
            reason = stale_reason(manifest, inputs, settings, outputs)
            frames = per_model[0][s].num_frames
            if reason is None and not overwrite:
                log(f"skipped the ensemble of session {name}: its outputs in {out} are up to "
                    f"date ({manifest.relative_to(out)} matches; --overwrite to write again)")
                results.append(EnsembleResult(name, "skipped", outputs, frames))
                continue
            if reason is not None and (manifest.exists() or any(p.exists() for p in outputs)):
                log(f"writing the ensemble of session {name} again: {reason}")
            started = time.perf_counter()
            _clear_leftovers(outputs, manifest)
            before = Manifest.describe(inputs, settings, [])
            keypoints, likelihood = _read_model_session(
                [[out / MODELS_DIR / n / f"{name}_{v}.csv" for v in view_names]
                 for n in names])
            manifest.unlink(missing_ok=True)  # it no longer describes the files from here on
            write_ensemble_session(out, name, keypoints, likelihood, view_names,
                                   keypoint_names, cameras, smooth, smooth_param,
                                   confidence_threshold)
            done = Manifest.describe([], {}, outputs)
            Manifest(before.inputs, before.settings, done.outputs, done.written).write(manifest)
            seconds = time.perf_counter() - started
            what = f"{len(dirs)} model{'s' if len(dirs) > 1 else ''}" + \
                (f", smoothed ({smooth})" if smooth else "")
            log(f"ensemble of {what}: session {name}, {frames} frames x {len(view_names)} "
                f"views in {seconds:.1f} s -> {', '.join(str(f) for f in folders)}")
            results.append(EnsembleResult(name, "predicted", outputs, frames, seconds))
    return results
