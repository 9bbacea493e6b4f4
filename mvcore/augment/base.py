"""The ``Augmenter`` base class: per-sample augmentation of all views of one instant.

An augmenter runs inside the dataset (in DataLoader workers), after images are loaded, cropped
to their bounding box and resized to the model input size, and before target heatmaps are
rendered. It receives and returns a *sample* dict (torch tensors, no batch dimension):

- ``images``: ``(V, 3, H, W)`` float32 in [0, 1] (not yet ImageNet-normalised)
- ``keypoints``: ``(V, K, 2)`` model-input pixels; NaN = unlabelled
- ``visibility``: ``(V, K)`` int64 (0 occluded, 1 unlabelled-uniform, 2 labelled)
- ``bbox``: ``(V, 4)`` ``[x, y, h, w]`` of each crop in frame pixels (whole frame if no crop)
- ``cameras``: ``mvcore.geometry.CameraTensors`` with ``(V, ...)`` tensors, or None
- ``keypoints_3d``: ``(K, 3)`` triangulated labels, or None when uncalibrated

It may add ``transforms``: ``(V, 3, 3)`` homographies mapping original to augmented model
pixels (so predictions can be mapped back), and ``aug_stats``: a dict of counters for logging
(e.g. ``{"imgaug_3d_skipped": 1}``). Augmenters must be picklable (workers may be spawned) and
draw all randomness from the ``rng`` they are given, which the dataset seeds per worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from mvcore.errors import ConfigError

Sample = dict[str, Any]


class AugmenterParams(BaseModel):
    """Parameters of an augmenter (``training.augmentation_params.<name>``)."""

    model_config = ConfigDict(extra="forbid")


class Augmenter:
    """Base class of augmenters; subclasses set ``name`` and implement ``__call__``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[AugmenterParams]] = AugmenterParams
    #: 3D augmenters need calibrated cameras in the sample
    requires_calibration: ClassVar[bool] = False

    def __init__(self, params: AugmenterParams | None = None, config: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        self.config = config

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


def selected_augmenters(config: Any, registry: Any) -> list[tuple[str, str]]:
    """``(name, config key)`` of the augmenters the config selects for training, in order:
    the 2D pipeline ``training.imgaug`` (skipped when it is ``none``/``default`` and not
    installed), then ``imgaug_3d`` when ``training.imgaug_3d`` is true."""
    chosen: list[tuple[str, str]] = []
    imgaug = config.training.imgaug
    if isinstance(imgaug, dict):
        raise ConfigError(
            "training.imgaug: a custom dict pipeline is not supported yet; use one of the "
            "named pipelines (dlc, default, none)"
        )
    if imgaug in registry or imgaug not in {"none", "default"}:
        chosen.append((imgaug, "training.imgaug"))
    if config.training.imgaug_3d:
        chosen.append(("imgaug_3d", "training.imgaug_3d"))
    return chosen
