"""What a training run reports about its model: the untrained baseline, predictions on every
labelled frame, metrics and figures.

Written to the model directory: ``untrained_metrics.json`` (before training, read back on
``--resume``), ``predictions_<view>.csv`` (DeepLabCut header, x/y/likelihood and a ``set``
column), ``predictions_<view>_<metric>.csv`` per keypoint, ``metrics.csv``, ``loss_curve.png``
and ``labeled_frames/*.png``. The metrics are defined in ``docs/metrics.md``. Every file is
written under a temporary name and renamed when complete (``mvcore.files``); ``metrics.csv``
is deleted first and written last, after the CSVs and before the figures, so a model
directory with a ``metrics.csv`` has the report's predictions and metrics of one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD, triangulate_predictions
from mvcore.files import atomic_path, write_json_atomically
from mvcore.predict.labeled import (
    pixel_errors,
    predict_rows,
    summarise,
    write_keypoint_metric,
    write_labeled_predictions,
)
from mvcore.predict.plots import plot_labeled_frames, plot_loss_curve

__all__ = ["UNTRAINED_METRICS", "untrained_metrics", "write_report"]

UNTRAINED_METRICS = "untrained_metrics.json"


def untrained_metrics(module: Any, data_module: Any, project: Any, model_dir: Path,
                      resume: str | None) -> dict[str, float]:
    """The untrained model's metrics: measured (and saved to ``UNTRAINED_METRICS``) before a
    new run; read back by a resumed run, whose model is no longer untrained ({} if the file
    is missing, e.g. a directory written by an older version)."""
    path = model_dir / UNTRAINED_METRICS
    if resume:
        return json.loads(path.read_text()) if path.is_file() else {}
    metrics = _baseline_metrics(module, data_module, project)
    write_json_atomically(path, metrics)
    return metrics


def _baseline_metrics(module: Any, data_module: Any, project: Any) -> dict[str, float]:
    """Pixel error of the untrained model on the test split (val if there is no test)."""
    rows = data_module.test_indices if len(data_module.test_indices) else data_module.val_indices
    predictions = predict_rows(module, data_module, rows, progress=False)
    errors = pixel_errors(predictions["keypoints"], project.keypoints[predictions["index"]])
    finite = errors[np.isfinite(errors)]
    return {"untrained_pixel_error_mean": float(finite.mean()) if finite.size else float("nan")}


def write_report(module: Any, data_module: Any, project: Any, model_dir: Path,
                 baseline: dict[str, float]) -> dict[str, float]:
    """Predict every labelled row and write CSVs, metrics and figures; returns the metrics."""
    split_names = data_module.split_names()
    (model_dir / "metrics.csv").unlink(missing_ok=True)  # written last: see module docstring
    predictions = predict_rows(module, data_module)
    write_labeled_predictions(project, predictions, split_names, model_dir)
    rows = predictions["index"]
    errors = pixel_errors(predictions["keypoints"], project.keypoints[rows])
    sets = [split_names[r] for r in rows]
    metrics = {**baseline, **summarise(errors, sets)}
    per_keypoint: dict[str, np.ndarray] = {}
    if project.has_calibration:
        reprojection, ncams = _reprojection_errors(project, predictions)
        per_keypoint["prediction_reprojection"] = reprojection
        metrics.update(summarise(reprojection, sets, name="prediction_reprojection_error",
                                 with_mean=False))
        splits = np.asarray(sets)
        for split in ("train", "validation", "test"):
            if (splits == split).any():
                metrics[f"{split}_fraction_triangulated"] = float(
                    (ncams[splits == split] >= 2).mean())
    per_keypoint.update(_loss_keypoint_errors(module, predictions))
    for name, values in per_keypoint.items():
        write_keypoint_metric(project, rows, values, sets, model_dir, f"{name}_error")
    with atomic_path(model_dir / "metrics.csv") as partial:
        pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}).to_csv(
            partial, index=False)
    plot_loss_curve(model_dir / "logs" / "metrics.csv", model_dir / "loss_curve.png")
    test_rows = [int(r) for r in (data_module.test_indices if len(data_module.test_indices)
                                  else data_module.val_indices)]
    count = module.config.eval.num_labeled_frame_plots
    plot_labeled_frames(project, predictions, test_rows[:count], model_dir / "labeled_frames")
    return metrics


def _reprojection_errors(project: Any, predictions: dict[str, np.ndarray]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The prediction reprojection error ``(n, V, K)`` of ``docs/metrics.md`` (the quantity
    ``mvcore evaluate`` and ``mvcore predict`` report; NaN for rows without calibration) and
    the views that took part ``(n, K)``."""
    rows = predictions["index"]
    result = triangulate_predictions(predictions["keypoints"],
                                     project.row_cameras(rows, dtype=torch.float64),
                                     predictions["confidences"], DEFAULT_CONFIDENCE_THRESHOLD)
    calibrated = project.calibration_index[rows] >= 0
    return (np.where(calibrated[:, None, None], result.view_errors, np.nan),
            np.where(calibrated[:, None], result.ncams, 0))


def _loss_keypoint_errors(module: Any, predictions: dict[str, np.ndarray]
                          ) -> dict[str, np.ndarray]:
    """Per-keypoint diagnostics ``(n, V, K)`` of the active losses that provide one (PCA)."""
    keypoints = torch.as_tensor(predictions["keypoints"], dtype=torch.float32)
    n, v, k = keypoints.shape[:3]
    flat = keypoints.reshape(n, -1).to(module.device)
    out = {}
    for factory in (module.loss_supervised, module.loss_unsupervised):
        for name, loss in factory.losses.items():
            values = loss.keypoint_errors(flat)
            if values is not None:
                out[name] = values.detach().cpu().double().reshape(n, v, k).numpy()
    return out
