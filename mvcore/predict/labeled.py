"""Predict the labelled frames of a project and write per-view CSVs and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mvcore.data.bbox import frame_to_model
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.files import atomic_path


@torch.no_grad()
def predict_rows(module: Any, data_module: Any, indices: np.ndarray | None = None,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions for project rows (all rows by default), in eval mode, no augmentation.

    Returns ``keypoints (n, V, K, 2)`` frame pixels, ``confidences (n, V, K)`` and ``index``.
    """
    was_training = module.training
    module.eval()
    keypoints, confidences, rows = [], [], []
    loader = data_module.predict_dataloader(indices)
    for batch in tqdm(loader, desc="predicting labelled frames", disable=not progress,
                      leave=False):
        images = batch["images"].to(module.device)
        bbox = batch["bbox"].to(module.device, torch.float32)
        out = module.predict_keypoints(images, bbox)
        keypoints.append(out["keypoints_frame"].double().cpu())
        confidences.append(out["confidences"].double().cpu())
        rows.append(batch["index"].cpu())
    module.train(was_training)
    return {
        "keypoints": torch.cat(keypoints).numpy(),
        "confidences": torch.cat(confidences).numpy(),
        "index": torch.cat(rows).numpy(),
    }


def pixel_errors(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance ``(n, V, K)`` between predictions and labels (NaN where unlabelled)."""
    return np.linalg.norm(pred - labels, axis=-1)


def write_labeled_predictions(project: Any, predictions: dict[str, np.ndarray],
                              split_names: list[str], model_dir: Path,
                              scorer: str = "heatmap_multiview_transformer_tracker"
                              ) -> dict[str, Path]:
    """Per view: ``predictions_<view>.csv`` (DeepLabCut header, x/y/likelihood, ``set``
    column) and ``predictions_<view>_pixel_error.csv``. Coordinates are written in the
    labelled images' pixels, like the label CSVs, so both files compare directly."""

    rows = predictions["index"]
    frame_pred = predictions["keypoints"]
    labels = project.keypoints[rows]
    errors = pixel_errors(frame_pred, labels)
    sizes = project.image_sizes[rows]
    image_pred = frame_to_model(frame_pred, project.bboxes[rows], sizes)
    sets = [split_names[r] for r in rows]
    written = {}
    for v, view in enumerate(project.view_names):
        index = [project.image_paths[r][v] for r in rows]
        path = model_dir / f"predictions_{view}.csv"
        write_keypoints_csv(path, index, project.keypoint_names, image_pred[:, v],
                            predictions["confidences"][:, v], scorer=scorer,
                            extra_columns={"set": sets})
        error_path = model_dir / f"predictions_{view}_pixel_error.csv"
        _write_error_csv(error_path, index, project.keypoint_names, errors[:, v], sets)
        written[view] = path
    return written


def write_keypoint_metric(project: Any, rows: np.ndarray, values: np.ndarray, sets: list[str],
                          model_dir: Path, suffix: str) -> None:
    """``predictions_<view>_<suffix>.csv`` per view: one value per labelled row and keypoint."""
    for v, view in enumerate(project.view_names):
        index = [project.image_paths[r][v] for r in rows]
        _write_error_csv(model_dir / f"predictions_{view}_{suffix}.csv", index,
                         project.keypoint_names, values[:, v], sets)


def _write_error_csv(path: Path, index: list[str], keypoint_names: list[str],
                     errors: np.ndarray, sets: list[str]) -> None:

    frame = pd.DataFrame(errors, index=index, columns=keypoint_names)
    frame["set"] = sets
    with atomic_path(path) as partial:  # complete or absent
        frame.to_csv(partial)


def summarise(errors: np.ndarray, split_of_row: list[str], name: str = "pixel_error",
              with_mean: bool = True) -> dict[str, float]:
    """Mean (optional: one degenerate triangulation dominates a mean of reprojection errors)
    and median of ``errors (n, ...)`` per split that has rows, NaN ignored; NaN when a split
    has no finite value (nothing to measure is not an error of 0)."""
    summary = {}
    splits = np.asarray(split_of_row)
    for split in ("train", "validation", "test"):
        chosen = errors[splits == split]
        if not chosen.size:
            continue
        finite = chosen[np.isfinite(chosen)]
        if with_mean:
            summary[f"{split}_{name}_mean"] = float(finite.mean()) if finite.size else np.nan
        summary[f"{split}_{name}_median"] = float(np.median(finite)) if finite.size else np.nan
    return summary
