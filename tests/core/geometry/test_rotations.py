"""Rodrigues vectors <-> rotation matrices, torch and numpy."""

from __future__ import annotations

import numpy as np
import torch
from camera_rigs import F64

from mvcore.geometry import (
    matrix_to_rodrigues_np,
    rodrigues_to_matrix,
    rodrigues_to_matrix_np,
)


def test_rodrigues_matches_matrix_exp() -> None:
    r = torch.randn(10, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    r[0] = 0.0
    r[1] = 1e-7
    x, y, z = r.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    torch.testing.assert_close(rodrigues_to_matrix(r), torch.linalg.matrix_exp(skew))
    r0 = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    rodrigues_to_matrix(r0).sum().backward()
    assert torch.isfinite(r0.grad).all()
    torch.autograd.gradcheck(rodrigues_to_matrix, (torch.randn(4, 3, dtype=F64).requires_grad_(),))


def test_rodrigues_np_small_angle() -> None:
    r = np.array([[0.0, 0.0, 0.0], [1e-9, -2e-9, 0.0], [0.0, 0.0, np.pi / 2]])
    mats = rodrigues_to_matrix_np(r)
    np.testing.assert_allclose(mats[0], np.eye(3))
    np.testing.assert_allclose(mats[2], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)



def _axes(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, 3))
    a[:3] = np.eye(3)  # the coordinate axes, where 180-degree rotations are diagonal matrices
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_matrix_to_rodrigues_inverts_rodrigues_at_every_angle() -> None:
    """Random angles in [0, pi), plus the hard ones: 0, tiny, 90 degrees, just below 180."""
    angles = np.concatenate([
        np.random.default_rng(1).uniform(0.0, np.pi, 200),
        [0.0, 1e-12, 1e-7, 1e-3, 2e-3, np.pi / 2, np.pi - 1e-3, np.pi - 1e-6, np.pi - 1e-9],
    ])
    rvec = _axes(len(angles), 2) * angles[:, None]
    back = matrix_to_rodrigues_np(rodrigues_to_matrix_np(rvec))
    np.testing.assert_allclose(back, rvec, rtol=0, atol=2e-15)
    assert matrix_to_rodrigues_np(np.eye(3)).shape == (3,)


def test_matrix_to_rodrigues_at_180_degrees() -> None:
    """At exactly pi, r and -r are the same rotation: the matrix must come back, axis up to
    sign, angle pi; no warnings from the 0/0 of the skew part."""
    rvec = _axes(20, 3) * np.pi
    mats = rodrigues_to_matrix_np(rvec)
    with np.errstate(all="raise"):
        back = matrix_to_rodrigues_np(mats)
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), np.pi, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rodrigues_to_matrix_np(back), mats, rtol=0, atol=2e-15)
    np.testing.assert_allclose(matrix_to_rodrigues_np(np.diag([-1.0, 1.0, -1.0])),
                               [0.0, np.pi, 0.0])
