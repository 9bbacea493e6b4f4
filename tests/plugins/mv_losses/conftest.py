"""Shared fixtures of the mv-losses tests: a calibrated camera rig and a stand-in data module."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from mvcore.geometry import rodrigues_to_matrix

F64 = torch.float64


class StandInDataModule:
    """The one method the PCA losses use: training keypoints ``(n, V, K, 2)`` frame pixels."""

    def __init__(self, keypoints: np.ndarray) -> None:
        self.keypoints = np.asarray(keypoints, dtype=np.float64)

    def train_keypoints_frame(self) -> np.ndarray:
        return self.keypoints


def make_rig(
    num_views: int = 4, seed: int = 0, dtype: torch.dtype = F64, distortion: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cameras 2 m from the origin looking at it: intrinsics ``(V, 3, 3)``, extrinsics
    ``(V, 3, 4)``, distortions ``(V, 5)`` (1280x1024 px, mild radial distortion)."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(num_views, dtype=F64) * (2 * torch.pi / num_views)
    angles = angles + 0.2 * torch.rand(num_views, generator=g, dtype=F64)
    centers = torch.stack(
        [2000 * angles.cos(), 2000 * angles.sin(), 800 + 200 * torch.rand(num_views, generator=g)],
        dim=-1,
    ).to(F64)
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    rot = torch.stack([x, torch.linalg.cross(z, x), z], dim=-2)
    rot = rodrigues_to_matrix(0.05 * torch.randn(num_views, 3, generator=g, dtype=F64)) @ rot
    ext = torch.cat([rot, -(rot @ centers.unsqueeze(-1))], dim=-1)
    k = torch.zeros(num_views, 3, 3, dtype=F64)
    k[:, 0, 0] = k[:, 1, 1] = 1200 + 200 * torch.rand(num_views, generator=g, dtype=F64)
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = 639.5, 511.5, 1.0
    d = torch.zeros(num_views, 5, dtype=F64)
    if distortion:
        d[:, 0] = -0.1 * torch.rand(num_views, generator=g, dtype=F64)
    return k.to(dtype), ext.to(dtype), d.to(dtype)


@pytest.fixture
def rig() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return make_rig


@pytest.fixture
def data_module() -> type[StandInDataModule]:
    return StandInDataModule
