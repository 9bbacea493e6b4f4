"""Figures written after training: the loss curve and labelled frames (all views side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from mvcore.files import atomic_path

# Figures are drawn on matplotlib's object-oriented Figure (rendered by Agg on savefig): no
# pyplot, so no global backend is switched and no figure outlives its function. Each is saved
# under a temporary name and renamed when complete (``mvcore.files.atomic_path``).


def _save_png(fig: Figure, path: Path, dpi: int) -> None:
    with atomic_path(path) as partial:
        fig.savefig(partial, format="png", dpi=dpi)


def plot_loss_curve(metrics_csv: Path, out_path: Path) -> Path | None:
    """Training loss per step and validation pixel error per epoch from Lightning's CSV log."""
    if not metrics_csv.is_file():
        return None
    log = pd.read_csv(metrics_csv)
    fig = Figure(figsize=(10, 3.5))
    axes = fig.subplots(1, 2)
    train_column = next((c for c in ("train_loss_step", "train_loss") if c in log), None)
    for column, ax, title in ((train_column, axes[0], "training loss"),
                              ("val_pixel_error", axes[1], "validation pixel error (px)")):
        if column in log:
            series = log[["step", column]].dropna()
            ax.plot(series["step"], series[column], marker="." if "val" in column else None)
        ax.set_title(title)
        ax.set_xlabel("step")
    if train_column is not None:
        axes[0].set_yscale("log")
    fig.tight_layout()
    _save_png(fig, out_path, dpi=100)
    return out_path


def plot_labeled_frames(project: Any, predictions: dict[str, np.ndarray], rows: list[int],
                        out_dir: Path) -> list[Path]:
    """One PNG per row: every view with labels (green +) and predictions (red x)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lookup = {int(r): i for i, r in enumerate(predictions["index"])}
    written = []
    for row in rows:
        if row not in lookup:
            continue
        i = lookup[row]
        num_views = len(project.view_names)
        fig = Figure(figsize=(3.2 * num_views, 3.4))
        axes = fig.subplots(1, num_views)
        for v, ax in enumerate(np.atleast_1d(axes)):
            image = Image.open(project.root / project.image_paths[row][v]).convert("RGB")
            x, y, h, w = project.bboxes[row, v]
            ax.imshow(np.asarray(image), extent=(x - 0.5, x + w - 0.5, y + h - 0.5, y - 0.5))
            label = project.keypoints[row, v]
            pred = predictions["keypoints"][i, v]
            ax.scatter(label[:, 0], label[:, 1], marker="+", c="lime", s=40, label="label")
            ax.scatter(pred[:, 0], pred[:, 1], marker="x", c="red", s=25, label="prediction")
            ax.set_title(project.view_names[v], fontsize=9)
            ax.axis("off")
        np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=7)
        fig.suptitle(f"row {row}: {Path(project.image_paths[row][0]).name}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"labeled_frame_{row:05d}.png"
        _save_png(fig, path, dpi=90)
        written.append(path)
    return written
