"""Transform fitting (mv_aug3d.fit): exact recovery, NaN handling, fallbacks, plausibility."""

from __future__ import annotations

import math

import pytest
import torch
from mv_aug3d.fit import (
    MODELS,
    fit_affine,
    fit_homography,
    fit_similarity,
    fit_translation,
    fit_with_fallback,
    plausible,
)

from mvcore.geometry import apply_homography

F64 = torch.float64


def _points(batch: int = 3, n: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 40.0 + 170.0 * torch.rand(batch, n, 2, generator=g, dtype=F64)


def _similarity(angle: float, scale: float, tx: float, ty: float) -> torch.Tensor:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]], dtype=F64)


TRUE = {
    "translation": torch.tensor([[1.0, 0.0, 4.5], [0.0, 1.0, -7.25], [0.0, 0.0, 1.0]], dtype=F64),
    "similarity": _similarity(0.3, 1.15, -12.0, 9.0),
    "affine": torch.tensor([[1.1, 0.12, -5.0], [-0.08, 0.9, 11.0], [0.0, 0.0, 1.0]], dtype=F64),
    "homography": torch.tensor(
        [[1.05, -0.1, 6.0], [0.07, 0.97, -4.0], [4e-4, -3e-4, 1.0]], dtype=F64
    ),
}
FITTERS = {
    "translation": fit_translation,
    "similarity": fit_similarity,
    "affine": fit_affine,
    "homography": fit_homography,
}


@pytest.mark.parametrize("model", MODELS)
def test_each_model_recovers_its_own_transform_and_every_richer_model_too(model):
    src = _points()
    dst = apply_homography(src, TRUE[model])
    for richer in MODELS[MODELS.index(model) :]:
        mat, ok = FITTERS[richer](src, dst)
        assert ok.all(), richer
        torch.testing.assert_close(mat, TRUE[model].expand(3, 3, 3), atol=1e-8, rtol=1e-8)


def test_similarity_is_the_least_squares_solution():
    """Perturbing the closed-form answer in any parameter increases the squared error."""
    src = _points(1, 12)
    g = torch.Generator().manual_seed(1)
    dst = apply_homography(src, TRUE["affine"]) + torch.randn(src.shape, generator=g, dtype=F64)
    mat, ok = fit_similarity(src, dst)
    assert ok.all()

    def cost(m: torch.Tensor) -> float:
        return float(((apply_homography(src, m) - dst) ** 2).sum())

    best = cost(mat)
    for i, j in [(0, 0), (1, 0), (0, 2), (1, 2)]:
        for eps in (1e-4, -1e-4):
            d = torch.zeros(3, 3, dtype=F64)
            d[i, j] = eps
            if (i, j) == (0, 0):
                d[1, 1] = eps  # a appears twice
            if (i, j) == (1, 0):
                d[0, 1] = -eps  # b appears as -b
            assert cost(mat + d) > best


def test_invalid_and_nan_points_are_ignored():
    src = _points(2, 10)
    dst = apply_homography(src, TRUE["homography"])
    dst_bad = dst.clone()
    dst_bad[:, 0] += 50.0  # an outlier, masked out below
    src[:, 1] = float("nan")  # a missing label
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[:, 0] = False
    mat, ok = fit_homography(src, dst_bad, valid)
    assert ok.all()
    torch.testing.assert_close(mat, TRUE["homography"].expand(2, 3, 3), atol=1e-8, rtol=1e-8)


def test_fallback_chain_by_number_of_points():
    src = _points(6, 8)
    dst = apply_homography(src, TRUE["homography"])
    valid = torch.ones(6, 8, dtype=torch.bool)
    for view, count in enumerate([8, 4, 3, 2, 1, 0]):
        valid[view, count:] = False
    mat, used = fit_with_fallback(src, dst, valid, "homography", image_size=(256, 256))
    assert [MODELS[i] if i >= 0 else None for i in used.tolist()] == [
        "homography",
        "homography",
        "affine",
        "similarity",
        "translation",
        None,
    ]
    # the exact homography is recovered from 4 points; each fallback is determined by (and
    # passes exactly through) its points
    torch.testing.assert_close(mat[1], TRUE["homography"], atol=1e-8, rtol=1e-8)
    for view, count in [(2, 3), (3, 2), (4, 1)]:
        moved = apply_homography(src[view, :count], mat[view])
        torch.testing.assert_close(moved, dst[view, :count], atol=1e-8, rtol=1e-8)
    assert torch.equal(mat[5], torch.eye(3, dtype=F64))


def test_collinear_points_fall_back_from_affine_and_homography():
    t = torch.linspace(0, 1, 6, dtype=F64)
    src = torch.stack([50 + 100 * t, 80 + 30 * t], -1)[None]  # all on one line
    dst = apply_homography(src, TRUE["similarity"])
    assert not fit_affine(src, dst)[1].any()
    mat, used = fit_with_fallback(src, dst, None, "homography", image_size=(256, 256))
    assert MODELS[int(used)] == "similarity"
    torch.testing.assert_close(mat[0], TRUE["similarity"], atol=1e-8, rtol=1e-8)


def test_plausible_rejects_reflections_folds_and_wild_perspective():
    eye = torch.eye(3, dtype=F64)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    strong = eye.clone()
    strong[2, 0] = 0.01  # w from 1 to 3.6 across a 256 px image
    horizon = eye.clone()
    horizon[2, 0] = -0.006  # w < 0 on the right of the image: the warp folds
    zoom = torch.diag(torch.tensor([8.0, 8.0, 1.0], dtype=F64))
    mats = torch.stack([eye, TRUE["homography"], mirror, strong, horizon, zoom])
    assert plausible(mats, (256, 256)).tolist() == [True, True, False, False, False, False]


def test_apply_homography_keeps_nan():
    pts = torch.tensor([[[1.0, 2.0], [float("nan"), 3.0]]], dtype=F64)
    out = apply_homography(pts, TRUE["homography"][None])
    assert torch.isfinite(out[0, 0]).all() and torch.isnan(out[0, 1]).all()
