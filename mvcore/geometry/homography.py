"""Plane homographies applied to image points (augmentation transforms, their inverses)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["apply_homography"]


def apply_homography(points: Tensor, matrices: Tensor) -> Tensor:
    """Map ``points (..., N, 2)`` by ``matrices (..., 3, 3)`` -> ``(..., N, 2)`` (in the points'
    dtype; NaN stays NaN)."""
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    mapped = homogeneous @ matrices.to(points.dtype).transpose(-1, -2)
    return mapped[..., :2] / mapped[..., 2:]
