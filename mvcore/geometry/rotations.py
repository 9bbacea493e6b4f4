"""Rodrigues vectors <-> rotation matrices: batched and differentiable in torch, float64 in
numpy (the form calibration files store rotations in; ``matrix_to_rodrigues_np`` turns the
rotation matrices other tools write into anipose's Rodrigues vectors)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["matrix_to_rodrigues_np", "rodrigues_to_matrix", "rodrigues_to_matrix_np"]


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


def matrix_to_rodrigues_np(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> Rodrigues vectors ``(..., 3)`` (float64, numpy).

    The inverse of ``rodrigues_to_matrix_np`` for angles in [0, pi]; the input must be a
    rotation (orthonormal, det +1; callers check). The angle comes from ``atan2(sin, cos)``,
    accurate at every angle. The axis comes from the skew part ``R - R^T = 2 sin(t) [a]x``,
    except above 90 degrees, where ``sin(t)`` vanishes towards 180 and the axis is read from
    the symmetric part ``(R + R^T) / 2 - cos(t) I = (1 - cos t) a a^T`` instead (its sign from
    the skew part; at exactly 180 degrees ``a`` and ``-a`` are the same rotation).
    """
    m = np.asarray(matrix, dtype=np.float64)
    skew = np.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        axis=-1,
    )  # 2 sin(t) a
    sin = 0.5 * np.linalg.norm(skew, axis=-1)
    cos = 0.5 * (np.trace(m, axis1=-2, axis2=-1) - 1.0)
    theta = np.arctan2(sin, cos)
    # theta / (2 sin theta): Taylor series near 0, where both vanish (truncation < 1e-20)
    t2 = theta * theta
    small = t2 < 1e-6
    obtuse = cos < 0.0  # > 90 degrees: the axis from the symmetric part (below)
    safe_sin = np.where(small | obtuse, 1.0, sin)
    factor = np.where(small, 0.5 + t2 / 12.0 + 7.0 * t2 * t2 / 720.0, theta / (2.0 * safe_sin))
    rvec = factor[..., None] * skew

    if np.any(obtuse):
        sym = 0.5 * (m + np.swapaxes(m, -1, -2))
        one_minus_cos = np.where(obtuse, 1.0 - cos, 1.0)  # in (1, 2] where used
        outer = (sym - cos[..., None, None] * np.eye(3)) / one_minus_cos[..., None, None]
        # the column of a a^T with the largest diagonal entry (>= 1/3) is a_i * a, well scaled
        diag = np.diagonal(outer, axis1=-2, axis2=-1)
        best = np.argmax(diag, axis=-1)
        column = np.take_along_axis(outer, best[..., None, None], axis=-1)[..., 0]
        norm = np.linalg.norm(column, axis=-1, keepdims=True)
        axis = column / np.where(norm > 0.0, norm, 1.0)
        sign = np.where(np.sum(axis * skew, axis=-1) < 0.0, -1.0, 1.0)
        rvec = np.where(obtuse[..., None], (sign * theta)[..., None] * axis, rvec)
    return rvec
