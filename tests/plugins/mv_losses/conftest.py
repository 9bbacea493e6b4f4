"""Shared fixtures of the mv-losses tests: a calibrated camera rig and the ``Context`` every
loss is built with (for the PCA losses, one whose training labels are given keypoints)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from mvcore import CameraTensors, Context
from mvcore.geometry import rodrigues_to_matrix

F64 = torch.float64


def make_context(
    keypoints: np.ndarray | None = None,
    *,
    num_views: int | None = None,
    num_keypoints: int | None = None,
    view_names: list[str] | tuple[str, ...] | None = None,
    keypoint_names: list[str] | tuple[str, ...] | None = None,
    image_size: int = 64,
    downsample_factor: int = 2,
    has_calibration: bool = True,
) -> Context:
    """A ``Context`` whose training labels (``context.train_keypoints()``) are ``keypoints``
    ``(n, V, K, 2)`` frame pixels (the one thing the PCA losses fit on); V and K default to
    the labels' shape. Without ``keypoints`` the context has no labels (as for prediction)."""
    labels = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
    if view_names is None:
        v = num_views if num_views is not None else (2 if labels is None else labels.shape[1])
        view_names = [f"view{i}" for i in range(v)]
    if keypoint_names is None:
        k = num_keypoints if num_keypoints is not None else (
            3 if labels is None else labels.shape[2])
        keypoint_names = [f"kp{i}" for i in range(k)]
    return Context(
        view_names=tuple(view_names),
        keypoint_names=tuple(keypoint_names),
        image_height=image_size,
        image_width=image_size,
        downsample_factor=downsample_factor,
        has_calibration=has_calibration,
        seed=0,
        base_dir=None,
        labels_source=None if labels is None else (lambda: labels),
    )


def make_rig(
    num_views: int = 4, seed: int = 0, dtype: torch.dtype = F64, distortion: bool = True
) -> CameraTensors:
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
    return CameraTensors(k.to(dtype), ext.to(dtype), d.to(dtype))


def batched(cameras: CameraTensors, batch: int) -> CameraTensors:
    """``(V, ...)`` cameras repeated for every frame of a batch: ``(B, V, ...)``."""
    return CameraTensors(*(t.expand(batch, *t.shape).clone() for t in (
        cameras.intrinsics, cameras.extrinsics, cameras.distortions)))


@pytest.fixture
def rig() -> Callable[..., CameraTensors]:
    return make_rig


@pytest.fixture
def batch_cameras() -> Callable[[CameraTensors, int], CameraTensors]:
    return batched


@pytest.fixture
def context() -> Callable[..., Context]:
    """``context(keypoints=None, **facts)``: see ``make_context``."""
    return make_context
