"""Camera rigs: ``CameraGroup`` (numpy, float64, as read from a calibration file) and
``CameraTensors`` (torch, the form datasets and models pass around).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvcore.errors import DataError
from mvcore.geometry.rotations import rodrigues_to_matrix_np

__all__ = ["CameraGroup", "CameraTensors"]

_NUM_DISTORTIONS = 5


@dataclass
class CameraTensors:
    """Cameras as torch tensors, the form datasets and models pass around.

    Shapes: ``intrinsics (..., V, 3, 3)``, ``extrinsics (..., V, 3, 4)`` (``[R|t]``,
    world -> camera), ``distortions (..., V, 5)`` (k1 k2 p1 p2 k3). Leading dims are batch dims
    after collation.
    """

    intrinsics: Tensor
    extrinsics: Tensor
    distortions: Tensor

    def __post_init__(self) -> None:
        i, e, d = self.intrinsics, self.extrinsics, self.distortions
        if i.shape[-2:] != (3, 3) or e.shape[-2:] != (3, 4) or d.shape[-1] != _NUM_DISTORTIONS:
            raise ValueError(
                "CameraTensors expects intrinsics (..., V, 3, 3), extrinsics (..., V, 3, 4), "
                f"distortions (..., V, 5); got {tuple(i.shape)}, {tuple(e.shape)}, "
                f"{tuple(d.shape)}"
            )

    @property
    def num_views(self) -> int:
        """Number of views V."""
        return int(self.intrinsics.shape[-3])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CameraTensors:
        """Return a copy on ``device`` and/or with floating ``dtype``."""
        return CameraTensors(
            self.intrinsics.to(device=device, dtype=dtype),
            self.extrinsics.to(device=device, dtype=dtype),
            self.distortions.to(device=device, dtype=dtype),
        )

    def pin_memory(self) -> CameraTensors:
        """A copy in pinned memory (the DataLoader calls this with ``pin_memory=True``)."""
        return CameraTensors(self.intrinsics.pin_memory(), self.extrinsics.pin_memory(),
                             self.distortions.pin_memory())

    def __getitem__(self, index: Any) -> CameraTensors:
        """Index the leading (batch) axes of all three tensors: ``cameras[0]``."""
        return CameraTensors(self.intrinsics[index], self.extrinsics[index],
                             self.distortions[index])


@dataclass
class CameraGroup:
    """A calibrated camera rig (numpy, float64), in file order ``[cam_0], [cam_1], ...``.

    Shapes: ``sizes (V, 2)`` [width, height], ``intrinsics (V, 3, 3)`` (full K, skew kept),
    ``distortions (V, 5)``, ``rotations (V, 3)`` Rodrigues world -> camera,
    ``translations (V, 3)``.
    """

    names: list[str]
    sizes: np.ndarray
    intrinsics: np.ndarray
    distortions: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        v = len(self.names)
        self.sizes = np.asarray(self.sizes, dtype=np.float64).reshape(v, 2)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64).reshape(v, 3, 3)
        dist = np.asarray(self.distortions, dtype=np.float64).reshape(v, -1)
        if dist.shape[1] > _NUM_DISTORTIONS:
            raise ValueError(f"CameraGroup: at most 5 distortion coefficients, got {dist.shape}")
        self.distortions = np.pad(dist, ((0, 0), (0, _NUM_DISTORTIONS - dist.shape[1])))
        self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(v, 3)
        self.translations = np.asarray(self.translations, dtype=np.float64).reshape(v, 3)

    @property
    def num_views(self) -> int:
        """Number of views V."""
        return len(self.names)

    def rotation_matrices(self) -> np.ndarray:
        """World -> camera rotation matrices ``(V, 3, 3)``."""
        return rodrigues_to_matrix_np(self.rotations)

    def extrinsics(self) -> np.ndarray:
        """``[R|t]`` world -> camera, ``(V, 3, 4)``."""
        return np.concatenate([self.rotation_matrices(), self.translations[:, :, None]], axis=2)

    def select(self, view_names: list[str]) -> CameraGroup:
        """Subset / reorder the cameras by name (e.g. to match a config's view order)."""
        missing = [n for n in view_names if n not in self.names]
        if missing:
            raise DataError(f"calibration has no camera named {missing}; available: {self.names}")
        if len(set(view_names)) != len(view_names):
            raise DataError(f"duplicate view names in selection {list(view_names)}")
        idx = [self.names.index(n) for n in view_names]
        return CameraGroup(
            names=list(view_names),
            sizes=self.sizes[idx].copy(),
            intrinsics=self.intrinsics[idx].copy(),
            distortions=self.distortions[idx].copy(),
            rotations=self.rotations[idx].copy(),
            translations=self.translations[idx].copy(),
        )

    def to_tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> CameraTensors:
        """Torch cameras ``(V, 3, 3)``, ``(V, 3, 4)``, ``(V, 5)``, built in float64, then cast."""
        return CameraTensors(
            torch.as_tensor(self.intrinsics).to(device=device, dtype=dtype),
            torch.as_tensor(self.extrinsics()).to(device=device, dtype=dtype),
            torch.as_tensor(self.distortions).to(device=device, dtype=dtype),
        )
