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
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

__all__ = ["frame_to_model", "model_to_frame", "whole_image_bbox"]


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
