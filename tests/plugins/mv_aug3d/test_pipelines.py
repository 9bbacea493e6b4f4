"""2D pipelines (mv_aug3d.pipelines) and the plugin's registrations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mv_aug3d.aug3d import Augment3D
from mv_aug3d.fit import apply_homography
from mv_aug3d.pipelines import DLCParams, DLCPipeline, NoAugmentation, imgaug_3d_enabled
from mv_aug3d.plugin import AUGMENTERS

from mvcore.augment.base import Augmenter
from mvcore.geometry import CameraTensors
from mvcore.plugin.components import load_components

SIZE = 96
GEOMETRY_ONLY = {
    f"{op}_p": 0.0
    for op in (
        "brightness_contrast",
        "motion_blur",
        "dropout",
        "salt",
        "pepper",
        "equalize",
        "clahe",
        "emboss",
    )
}


def _config(imgaug_3d: bool | None) -> SimpleNamespace:
    return SimpleNamespace(training=SimpleNamespace(imgaug_3d=imgaug_3d))


def _cameras(views: int) -> CameraTensors:
    intr = torch.eye(3).repeat(views, 1, 1)
    extr = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1).repeat(views, 1, 1)
    return CameraTensors(intr, extr, torch.zeros(views, 5))


def _blob_sample(views: int = 3, seed: int = 0, cameras: bool = True) -> dict:
    """Each view: one Gaussian blob (sigma 1.5 px) on black at its single keypoint."""
    g = torch.Generator().manual_seed(seed)
    kp = 30.0 + 36.0 * torch.rand(views, 1, 2, generator=g)
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    d2 = (xs - kp[:, 0, 0, None, None]) ** 2 + (ys - kp[:, 0, 1, None, None]) ** 2
    blob = torch.exp(-d2 / (2 * 1.5**2))
    return {
        "images": blob[:, None].expand(views, 3, SIZE, SIZE).clone(),
        "keypoints": kp,
        "visibility": torch.full((views, 1), 2, dtype=torch.int64),
        "bbox": torch.tensor([[0.0, 0.0, SIZE, SIZE]] * views, dtype=torch.float64),
        "cameras": _cameras(views) if cameras else None,
        "keypoints_3d": None,
    }


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid ``(V, 2)`` of channel 0 above a small threshold."""
    w = (images[:, 0].double() - 0.02).clamp(min=0)
    axis = torch.arange(SIZE, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    total = w.sum((-2, -1))
    return torch.stack([(w * xs).sum((-2, -1)) / total, (w * ys).sum((-2, -1)) / total], -1)


# ----------------------------------------------------------------------------- plugin


def test_plugin_registers_the_four_names_lazily():
    registry = load_components(refresh=True).augmenters
    assert set(AUGMENTERS) == {"imgaug_3d", "dlc", "default", "none"}
    expected = {
        "imgaug_3d": Augment3D,
        "dlc": DLCPipeline,
        "default": NoAugmentation,
        "none": NoAugmentation,
    }
    for name, cls in expected.items():
        entry = registry.entry(name)
        assert entry.provider == "mv-aug3d" and isinstance(entry.target, str)
        assert registry.get(name) is cls and issubclass(cls, Augmenter)
        with pytest.raises(ValueError):
            cls.Params.model_validate({"no_such_key": 1})
    assert Augment3D.requires_calibration and not DLCPipeline.requires_calibration


# ----------------------------------------------------------------------------- identity


def test_none_is_the_identity():
    sample = _blob_sample()
    assert NoAugmentation()(sample, np.random.default_rng(0)) is sample


# ----------------------------------------------------------------------------- dlc


def test_imgaug_3d_setting():
    assert imgaug_3d_enabled(_config(True)) and imgaug_3d_enabled(_config(None))
    assert not imgaug_3d_enabled(_config(False)) and not imgaug_3d_enabled(None)
    calibrated, uncalibrated = _blob_sample(), _blob_sample(cameras=False)
    on = DLCPipeline(config=_config(True))
    assert not on.geometric_enabled(calibrated) and on.geometric_enabled(uncalibrated)
    assert DLCPipeline(config=_config(False)).geometric_enabled(calibrated)
    forced = DLCPipeline(DLCParams(geometric=False), config=_config(False))
    assert not forced.geometric_enabled(uncalibrated)


def test_dlc_with_imgaug_3d_never_moves_keypoints():
    aug = DLCPipeline(DLCParams(rotation_p=1.0, crop_pad_p=1.0), config=_config(True))
    changed = 0
    for seed in range(12):
        sample = _blob_sample(seed=seed)
        out = aug(sample, np.random.default_rng(seed))
        assert torch.equal(out["keypoints"], sample["keypoints"])
        assert torch.equal(out["visibility"], sample["visibility"])
        assert "transforms" not in out
        assert out["images"].shape == sample["images"].shape
        assert out["images"].min() >= 0 and out["images"].max() <= 1
        changed += int(not torch.equal(out["images"], sample["images"]))
    assert changed >= 10  # photometric ops do run


def test_dlc_geometric_ops_move_keypoints_with_the_image():
    aug = DLCPipeline(DLCParams(rotation_p=1.0, crop_pad_p=1.0, **GEOMETRY_ONLY), _config(False))
    for seed in range(6):
        sample = _blob_sample(seed=seed)
        out = aug(sample, np.random.default_rng(seed))
        mats = out["transforms"].double()
        assert not torch.allclose(mats, torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
        expected = apply_homography(mats, sample["keypoints"].double())
        torch.testing.assert_close(out["keypoints"].double(), expected, atol=1e-4, rtol=0)
        # the blob itself lands on the transformed keypoint
        err = (_centroid(out["images"]) - out["keypoints"][:, 0].double()).norm(dim=-1)
        assert float(err.max()) < 0.2, err


def test_dlc_keypoints_pushed_out_of_the_image_become_nan_with_visibility_zero():
    aug = DLCPipeline(DLCParams(rotation_p=1.0, crop_pad_p=0.0, **GEOMETRY_ONLY), _config(False))
    sample = _blob_sample()
    sample["keypoints"] = torch.tensor([[[1.0, 1.0]], [[48.0, 48.0]], [[94.0, 2.0]]])
    out = aug(sample, np.random.default_rng(3))
    angles_moved = (out["transforms"] - torch.eye(3)).abs().amax((-2, -1)) > 1e-6
    assert angles_moved.all()
    lost = torch.isnan(out["keypoints"]).all(-1)[:, 0]
    assert lost[0] and lost[2] and not lost[1]  # corners rotate out, the centre stays
    assert out["visibility"][:, 0].tolist() == [0, 2, 0]
    assert out["aug_stats"]["dlc_out_of_image"] == 2


def test_dlc_shared_photometric_parameters():
    base = _blob_sample()
    base["images"] = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    base["images"] = base["images"].expand(3, 3, SIZE, SIZE).clone()  # identical views
    shared = DLCPipeline(DLCParams(shared_across_views=True), config=_config(True))
    independent = DLCPipeline(DLCParams(shared_across_views=False), config=_config(True))
    differs = 0
    for seed in range(8):
        out = shared(base, np.random.default_rng(seed))
        assert torch.equal(out["images"][0], out["images"][1])
        assert torch.equal(out["images"][0], out["images"][2])
        out = independent(base, np.random.default_rng(seed))
        differs += int(not torch.equal(out["images"][0], out["images"][1]))
    assert differs >= 6


def test_dlc_reproducible_per_seed():
    aug = DLCPipeline(DLCParams(rotation_p=0.5, crop_pad_p=0.5), config=_config(False))
    sample = _blob_sample()
    a = aug(sample, np.random.default_rng(11))
    b = aug(sample, np.random.default_rng(11))
    c = aug(sample, np.random.default_rng(12))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["keypoints"], b["keypoints"])
    assert not torch.equal(a["images"], c["images"])


def test_coarse_masks_are_blocky_with_the_requested_density():
    from mv_aug3d.pipelines import _coarse_mask

    cells = np.array([0.1, 0.05])  # 10 px and 20 px blocks on a 100 px image
    mask = _coarse_mask(np.random.default_rng(0), 2, 1, (100, 100), cells, 0.3)
    assert mask.shape == (2, 1, 100, 100) and mask.dtype == torch.bool
    for v, block in enumerate((10, 20)):
        m = mask[v, 0].reshape(100 // block, block, 100 // block, block)
        assert (m == m[:, :1, :, :1]).all()  # constant inside each block
    assert 0.2 < float(mask[0].float().mean()) < 0.4
