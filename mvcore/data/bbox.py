"""Bounding boxes and the frame <-> model pixel mapping (numpy or torch, never in place).

A bbox is ``[x, y, h, w]`` in frame pixels (height before width, the Lightning Pose order):
the crop covers frame pixels ``x .. x + w - 1`` and ``y .. y + h - 1``. Pixel ``i`` is centred
at coordinate ``i`` (it spans ``[i - 0.5, i + 0.5]``), in the frame, in the labelled image and
in the model input alike (the convention of ``mvcore.data.heatmaps``). Resizing the crop to the
model input ``(H, W)`` maps pixel *edges* onto pixel edges (bilinear ``align_corners=False``,
which is what ``torch.nn.functional.interpolate`` and PIL do), so::

    x_model = (x_frame - x + 0.5) * W / w - 0.5
    x_frame = (x_model + 0.5) * w / W + x - 0.5

and the same for y with ``H / h``. With a whole-image bbox ``[0, 0, H, W]`` both are the
identity. (Lightning Pose uses ``x_model = (x_frame - x) * W / w``, which differs by up to half
a model pixel minus half a frame pixel; mvcore keeps one convention throughout.)

The same mapping converts labels in a labelled image of size ``(h_img, w_img)`` (which in
Lightning Pose projects *is* the bbox crop) to frame pixels: ``model_to_frame(kp, bbox,
(h_img, w_img))``.

``read_bbox_csv`` reads Lightning Pose's per-view bbox CSV (a header row naming the columns
``x, y, h, w``, then one row per labelled image: its path, then the values); every problem is a
one-line ``DataError`` naming the file and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from mvcore.data.csv_io import check_delimiter, read_csv_rows, show
from mvcore.errors import DataError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

__all__ = ["frame_to_model", "model_to_frame", "read_bbox_csv", "whole_image_bbox"]

_BBOX_COLUMNS = ("x", "y", "h", "w")


def _offset_and_scale(kp: Array, bbox: Array, image_size: Any) -> tuple[Array, Array]:
    """Bbox origin ``(..., 1, 2)`` and model/bbox scale ``(..., 1, 2)`` in ``kp``'s type/dtype."""
    if isinstance(kp, torch.Tensor):
        box = torch.as_tensor(bbox).to(device=kp.device, dtype=kp.dtype)
        size = torch.as_tensor(image_size).to(device=kp.device, dtype=kp.dtype)
        size = torch.stack([size[..., 1], size[..., 0]], dim=-1)[..., None, :]
        origin = box[..., None, 0:2]
        extent = torch.stack([box[..., 3], box[..., 2]], dim=-1)[..., None, :]
    else:
        box = np.asarray(bbox, dtype=np.result_type(kp.dtype, np.float32))
        size = np.asarray(image_size, dtype=box.dtype)
        size = np.stack([size[..., 1], size[..., 0]], axis=-1)[..., None, :]
        origin = box[..., None, 0:2]
        extent = np.stack([box[..., 3], box[..., 2]], axis=-1)[..., None, :]
    return origin, size / extent


def frame_to_model(kp: Array, bbox: Array, image_size: Any) -> Array:
    """Frame pixels ``(..., K, 2)`` -> model pixels of the ``(H, W)`` resized bbox crop.

    ``bbox (..., 4)`` is ``[x, y, h, w]``; ``image_size`` is ``(H, W)`` or an array ``(..., 2)``
    ``[height, width]`` per bbox; both broadcast against ``kp``'s leading dims. NaN stays NaN.
    Returns a new array/tensor of ``kp``'s type and (floating) dtype.
    """
    origin, scale = _offset_and_scale(kp, bbox, image_size)
    return (kp - origin) * scale + 0.5 * (scale - 1.0)  # exact identity when scale == 1


def model_to_frame(kp: Array, bbox: Array, image_size: Any) -> Array:
    """Model pixels ``(..., K, 2)`` of the ``(H, W)`` model input -> frame pixels (inverse)."""
    origin, scale = _offset_and_scale(kp, bbox, image_size)
    return (kp - 0.5 * (scale - 1.0)) / scale + origin


def whole_image_bbox(image_sizes: np.ndarray) -> np.ndarray:
    """``[0, 0, h, w]`` bboxes ``(..., 4)`` from image sizes ``(..., 2)`` ``[height, width]``."""
    sizes = np.asarray(image_sizes, dtype=np.float64)
    zeros = np.zeros(sizes.shape[:-1] + (2,))
    return np.concatenate([zeros, sizes], axis=-1)


def _cells(row: list[str], limit: int = 80) -> str:
    """A row's cells for a message: comma-joined, escaped, cut to ``limit`` characters."""
    text = show(",".join(row))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_bbox_csv(path: Path, expected_index: list[str]) -> np.ndarray:
    """Read a bbox CSV -> ``(n, 4)`` ``[x, y, h, w]``: a header row naming the columns ``x``,
    ``y``, ``h``, ``w`` (any order after the index column; others are ignored), then one row
    per image, index = image path (pandas' ``to_csv`` of a frame with those columns).

    Rows must be the label CSV's images in the same order (``expected_index``); values finite,
    ``h`` and ``w`` > 0. Every problem is a DataError naming the file and row (row 0 = the
    header)."""
    path = Path(path)
    rows = [r for r in read_csv_rows(path, "bbox file") if r and any(c.strip() for c in r)]
    check_delimiter(path, rows, header_rows=1)
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row ',x,y,h,w' and one row per "
                        "labelled image")
    header = [c.strip().lower() for c in rows[0]]
    missing = [name for name in _BBOX_COLUMNS if header[1:].count(name) != 1]
    if missing:
        raise DataError(
            f"{path}, row 0 (header): needs one column each named x, y, h, w after the image "
            f"path column (header ',x,y,h,w'); {', '.join(missing)} missing or repeated in "
            f"{_cells(rows[0])!r}")
    columns = [header.index(name, 1) for name in _BBOX_COLUMNS]
    body = rows[1:]
    if len(body) != len(expected_index):
        raise DataError(
            f"{path}: {len(body)} bbox rows but the label CSV has {len(expected_index)} rows; "
            "give one bbox per labelled image, in the same order"
        )
    out = np.empty((len(body), 4))
    for r, row in enumerate(body):
        where = f"{path}, row {r + 1} ({show(row[0].strip())})"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} cells but the header has {len(header)}; "
                            f"got {_cells(row)!r}")
        if row[0].strip().replace("\\", "/") != expected_index[r].replace("\\", "/"):
            raise DataError(
                f"{where}: image {show(row[0].strip())!r} but the label CSV row {r + 1} is "
                f"{show(expected_index[r])!r}; bbox rows must match the label rows"
            )
        values = [row[c] for c in columns]
        try:
            out[r] = [float(c) for c in values]
        except ValueError:
            raise DataError(
                f"{where}: x, y, h, w must be numbers, got {_cells(values)!r}") from None
        if not np.isfinite(out[r]).all() or out[r, 2] <= 0 or out[r, 3] <= 0:
            raise DataError(f"{where}: bbox must be finite with h, w > 0, got {out[r].tolist()}")
    return out
