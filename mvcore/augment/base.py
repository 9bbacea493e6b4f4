"""The ``Augmenter`` base class: per-sample augmentation of all views of one instant.

An augmenter runs inside the dataset (in DataLoader workers), after images are loaded, cropped
to their bounding box and resized to the model input size, and before target heatmaps are
rendered. It receives and returns an ``mvcore.contracts.AugmenterSample`` (torch tensors, no
batch dimension; shapes and units are documented there). Augmenters must be picklable
(workers may be spawned) and draw all randomness from the ``rng`` they are given, which the
dataset seeds per worker and sample.

Construction is ``Augmenter(params, context)``: ``params`` the validated ``Params`` model
(``training.augmentation_params.<name>``), ``context`` a ``mvcore.Context``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mvcore.component import Component, ComponentParams
from mvcore.context import Context
from mvcore.contracts import AugmenterSample

__all__ = ["Augmenter", "AugmenterParams", "Sample"]

Sample = AugmenterSample


class AugmenterParams(ComponentParams):
    """Parameters of an augmenter (``training.augmentation_params.<name>``)."""


class Augmenter(Component):
    """Base class of augmenters; subclasses set ``name`` and implement ``__call__``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[AugmenterParams]] = AugmenterParams
    #: needs calibrated cameras in every sample (3D augmentation); refused on projects without
    requires_calibration: ClassVar[bool] = False

    def __init__(self, params: AugmenterParams, context: Context) -> None:
        self._take(params, context)

    def __call__(self, sample: AugmenterSample, rng: np.random.Generator) -> AugmenterSample:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")
