"""``Context``: the facts about a run that every component (loss, augmenter, backbone) is built
with, instead of the whole config or the data module.

A component is built as ``Component(params, context)``: ``params`` is its own validated
``Params`` model (its options, declared once), ``context`` this small object. The context is
saved with a trained model (``context.json``) so prediction rebuilds the backbone without the
project; the training-label accessor is not saved (prediction builds no loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mvcore.errors import ConfigError

__all__ = ["Context"]


@dataclass(frozen=True)
class Context:
    """Facts about the project and the model a component may rely on.

    - ``view_names`` (V), ``keypoint_names`` (K): in the order of every ``V`` and ``K`` axis
      (``N = V * K`` keypoints are view-major: all of view 0, then view 1, ...).
    - ``image_height``, ``image_width``: the model input ``(H, W)`` in pixels.
    - ``downsample_factor``: heatmaps are ``(h, w) = (H, W) / 2**downsample_factor``.
    - ``has_calibration``: every labelled frame has cameras, so the 3D loss inputs exist.
    - ``heatmap_grid``: where heatmap pixel ``j`` sits in the model image (``centred``:
      ``j * s + (s - 1) / 2``; ``lightning_pose``: ``j * s``); pass it to the heatmap
      functions of ``mvcore.data`` (``model.heatmap_grid``).
    - ``seed``: the model seed (``training.rng_seed_model_pt``); draw initial weights and any
      other randomness of the component from it.
    - ``base_dir``: the folder relative paths in params are resolved against (the config's);
      ``resolve_path`` does it.
    - ``train_keypoints()``: the training split's labels (see the method).
    """

    view_names: tuple[str, ...]
    keypoint_names: tuple[str, ...]
    image_height: int
    image_width: int
    downsample_factor: int = 2
    has_calibration: bool = False
    seed: int = 0
    base_dir: str | None = None
    heatmap_grid: str = "centred"
    #: returns the training labels; None where the context was built for prediction
    labels_source: Callable[[], np.ndarray] | None = field(
        default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "view_names", tuple(str(v) for v in self.view_names))
        object.__setattr__(self, "keypoint_names", tuple(str(k) for k in self.keypoint_names))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a component sent to a worker process) without the label accessor, which
        serves only while components are built."""
        return {**self.__dict__, "labels_source": None}

    def resolve_path(self, path: str) -> tuple[Path, list[Path]]:
        """A file named in params (a weights file): ``path`` as given if it is a file, else
        under ``base_dir``; with every path tried, for the message when none is a file (then
        the path as given is returned)."""
        given = Path(path).expanduser()
        tried = [given]
        if not given.is_absolute() and self.base_dir:
            tried.append(Path(self.base_dir) / given)
        for candidate in tried:
            if candidate.is_file():
                return candidate, tried
        return given, tried

    @property
    def num_views(self) -> int:
        """V."""
        return len(self.view_names)

    @property
    def num_keypoints(self) -> int:
        """K, keypoints per view."""
        return len(self.keypoint_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return (self.image_height, self.image_width)

    @property
    def heatmap_height(self) -> int:
        return self.image_height // 2**self.downsample_factor

    @property
    def heatmap_width(self) -> int:
        return self.image_width // 2**self.downsample_factor

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(h, w)`` of every heatmap."""
        return (self.heatmap_height, self.heatmap_width)

    def train_keypoints(self) -> np.ndarray:
        """``(n_train, V, K, 2)`` float64 labels of the training split in frame pixels (NaN =
        unlabelled), never augmented: what the PCA losses fit on. A copy, safe to modify."""
        if self.labels_source is None:
            raise ConfigError(
                "this component needs the training labels (Context.train_keypoints), but the "
                "context was built without a project (e.g. for prediction)"
            )
        labels = np.array(self.labels_source(), dtype=np.float64)
        expected = (self.num_views, self.num_keypoints, 2)
        if labels.ndim != 4 or labels.shape[1:] != expected:
            raise ConfigError(
                f"training labels have shape {labels.shape}, expected (n, {expected[0]}, "
                f"{expected[1]}, 2) for the context's views and keypoints"
            )
        return labels

    def to_json(self) -> dict[str, Any]:
        """The saved facts (``context.json``), without the label accessor."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self) if f.name != "labels_source"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        """Read ``to_json``'s dict; keys of older versions (derived sizes, the PCA column lists
        that now live in the PCA losses' params) are ignored."""
        names = {f.name for f in fields(cls)} - {"labels_source"}
        missing = {"view_names", "keypoint_names", "image_height", "image_width"} - set(data)
        if missing:
            raise ConfigError(f"context is missing {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})
