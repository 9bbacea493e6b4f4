"""Rodrigues vectors -> rotation matrices, torch and numpy."""

from __future__ import annotations

import numpy as np
import torch
from camera_rigs import F64

from mvcore.geometry import rodrigues_to_matrix, rodrigues_to_matrix_np


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

