"""Rodrigues vectors -> rotation matrices: batched and differentiable in torch, float64 in
numpy (the form calibration files store rotations in)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["rodrigues_to_matrix", "rodrigues_to_matrix_np"]


def rodrigues_to_matrix(rvec: Tensor) -> Tensor:
    """Rodrigues vectors ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``.

    ``R = I + sin(t)/t [r]x + (1 - cos t)/t^2 [r]x^2`` with Taylor series for small angles, so
    value and gradient are accurate and finite at ``rvec = 0`` in float32 and float64.
    """
    theta2 = (rvec * rvec).sum(-1)[..., None, None]
    small = theta2 < 1e-3  # Taylor to theta^6: truncation < 1e-17 there
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    t2, t4 = theta2, theta2 * theta2
    a_series = 1.0 - t2 / 6.0 + t4 / 120.0 - t4 * t2 / 5040.0
    b_series = 0.5 - t2 / 24.0 + t4 / 720.0 - t4 * t2 / 40320.0
    a = torch.where(small, a_series, theta.sin() / theta)
    half = (0.5 * theta).sin() / theta
    b = torch.where(small, b_series, 2.0 * half * half)  # (1 - cos) / theta^2, no cancellation
    x, y, z = rvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)
    skew = skew.reshape(rvec.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device)
    return eye + a * skew + b * (skew @ skew)


def rodrigues_to_matrix_np(rvec: np.ndarray) -> np.ndarray:
    """Rodrigues vectors ``(..., 3)`` -> rotation matrices ``(..., 3, 3)`` (float64, numpy)."""
    r = np.asarray(rvec, dtype=np.float64)
    theta2 = np.sum(r * r, axis=-1)[..., None, None]
    small = theta2 < 1e-3  # Taylor to theta^6 below: truncation < 1e-17
    theta = np.sqrt(np.where(small, 1.0, theta2))
    t2, t4 = theta2, theta2 * theta2
    a = np.where(small, 1.0 - t2 / 6.0 + t4 / 120.0 - t4 * t2 / 5040.0, np.sin(theta) / theta)
    half = np.sin(0.5 * theta) / theta
    b = np.where(small, 0.5 - t2 / 24.0 + t4 / 720.0 - t4 * t2 / 40320.0, 2.0 * half * half)
    zero = np.zeros(r.shape[:-1])
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(
        r.shape[:-1] + (3, 3)
    )
    eye = np.broadcast_to(np.eye(3), skew.shape)
    return eye + a * skew + b * (skew @ skew)
