"""Multi-view project data: label CSVs, images, bounding boxes, heatmaps, datasets.

Names are re-exported lazily (first attribute access imports the module), so importing
``mvcore.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LabelTable": "mvcore.data.csv_io",
    "read_label_csv": "mvcore.data.csv_io",
    "read_keypoints_csv": "mvcore.data.csv_io",
    "write_keypoints_csv": "mvcore.data.csv_io",
    "write_3d_csv": "mvcore.data.csv_io",
    "frame_to_model": "mvcore.data.bbox",
    "model_to_frame": "mvcore.data.bbox",
    "MultiviewProject": "mvcore.data.project",
    "MultiviewDataset": "mvcore.data.dataset",
    "MultiviewDataModule": "mvcore.data.datamodule",
    "triangulate_project": "mvcore.data.triangulate",
    "write_triangulation_csv": "mvcore.data.triangulate",
    "render_heatmaps": "mvcore.data.heatmaps",
    "heatmap_to_keypoints": "mvcore.data.heatmaps",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mvcore.data' has no attribute {name!r}")
