"""2D pipelines (mv_aug3d.pipelines) and the plugin's registrations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml
from mv_aug3d.aug3d import Augment3D
from mv_aug3d.pipelines import DLCParams, DLCPipeline, NoAugmentation
from mv_aug3d.plugin import AUGMENTERS

from mvcore.augment.base import Augmenter
from mvcore.build import plan_run
from mvcore.config.load import parse_config
from mvcore.context import Context
from mvcore.errors import ConfigError
from mvcore.geometry import CameraTensors, apply_homography
from mvcore.plugin.components import load_components
from mvcore.testing import check_augmenter

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


#: a 3-view project of SIZE x SIZE images with one keypoint (the samples below)
CONTEXT = Context(
    view_names=("cam0", "cam1", "cam2"),
    keypoint_names=("blob",),
    image_height=SIZE,
    image_width=SIZE,
    has_calibration=True,
)


def dlc(imgaug_3d: bool | None = False, **params) -> DLCPipeline:
    """``DLCPipeline`` as the core builds it; ``imgaug_3d`` as copied from the LP config."""
    validated = DLCParams(imgaug_3d=imgaug_3d, **params)
    DLCPipeline.validate_context(validated, CONTEXT)
    return DLCPipeline(validated, CONTEXT)


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
    identity = NoAugmentation(NoAugmentation.Params(), CONTEXT)
    assert identity(sample, np.random.default_rng(0)) is sample


# ----------------------------------------------------------------------------- dlc


def test_imgaug_3d_setting():
    calibrated, uncalibrated = _blob_sample(), _blob_sample(cameras=False)
    for imgaug_3d in (True, None):  # null counts as true, as in Lightning Pose
        on = dlc(imgaug_3d)
        assert not on.geometric_enabled(calibrated) and on.geometric_enabled(uncalibrated)
    assert dlc(False).geometric_enabled(calibrated) and dlc(False).geometric_enabled(uncalibrated)
    assert DLCParams().imgaug_3d is False  # without a config: no 3D augmenter
    assert DLCPipeline(DLCParams(), CONTEXT).geometric_enabled(calibrated)
    forced_off = dlc(False, geometric=False)
    assert not forced_off.geometric_enabled(uncalibrated)
    forced_on = dlc(True, geometric=True)
    assert forced_on.geometric_enabled(calibrated)


def _planned_dlc_params(training: str) -> DLCParams:
    """The validated ``dlc`` params a Lightning Pose config selects."""
    config = parse_config(yaml.safe_load(
        "data: {view_names: [a, b]}\n"
        "model: {backbone: vit_micro_scratch}\n"
        f"training: {{imgaug: dlc, {training}}}\n"
    ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_run(config, load_components(refresh=True))
    (selected,) = [s for s in plan.augmenters if s.name == "dlc"]
    assert selected.cls is DLCPipeline
    return selected.params


def test_imgaug_3d_is_copied_from_the_lightning_pose_config():
    assert _planned_dlc_params("imgaug_3d: true").imgaug_3d is True
    assert _planned_dlc_params("imgaug_3d: null").imgaug_3d is None
    assert _planned_dlc_params("imgaug_3d: false").imgaug_3d is False
    params = _planned_dlc_params(
        "imgaug_3d: false, augmentation_params: {dlc: {rotation_p: 0.9}}"
    )
    assert params.imgaug_3d is False and params.rotation_p == 0.9
    with pytest.raises(ConfigError, match=r"training\.augmentation_params\.dlc\.imgaug_3d"):
        _planned_dlc_params("imgaug_3d: false, augmentation_params: {dlc: {imgaug_3d: true}}")


def test_dlc_with_imgaug_3d_never_moves_keypoints():
    aug = dlc(True, rotation_p=1.0, crop_pad_p=1.0)
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
    aug = dlc(False, rotation_p=1.0, crop_pad_p=1.0, **GEOMETRY_ONLY)
    for seed in range(6):
        sample = _blob_sample(seed=seed)
        out = aug(sample, np.random.default_rng(seed))
        mats = out["transforms"].double()
        assert not torch.allclose(mats, torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
        expected = apply_homography(sample["keypoints"].double(), mats)
        torch.testing.assert_close(out["keypoints"].double(), expected, atol=1e-4, rtol=0)
        # the blob itself lands on the transformed keypoint
        err = (_centroid(out["images"]) - out["keypoints"][:, 0].double()).norm(dim=-1)
        assert float(err.max()) < 0.2, err


def test_dlc_keypoints_pushed_out_of_the_image_become_nan_with_visibility_zero():
    aug = dlc(False, rotation_p=1.0, crop_pad_p=0.0, **GEOMETRY_ONLY)
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
    shared = dlc(True, shared_across_views=True)
    independent = dlc(True, shared_across_views=False)
    differs = 0
    for seed in range(8):
        out = shared(base, np.random.default_rng(seed))
        assert torch.equal(out["images"][0], out["images"][1])
        assert torch.equal(out["images"][0], out["images"][2])
        out = independent(base, np.random.default_rng(seed))
        differs += int(not torch.equal(out["images"][0], out["images"][1]))
    assert differs >= 6


def test_dlc_reproducible_per_seed():
    aug = dlc(False, rotation_p=0.5, crop_pad_p=0.5)
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


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("cls", [DLCPipeline, NoAugmentation])
def test_params_are_required(cls):
    with pytest.raises(TypeError, match="params"):
        cls({}, CONTEXT)


def test_augmenter_contract_dlc_geometric():
    """Photometric ops off (they could hide a blob), geometric ops forced on and always drawn,
    so images and labels must move together in every view."""
    aug = check_augmenter(
        DLCPipeline, {**GEOMETRY_ONLY, "geometric": True, "rotation_p": 1.0, "crop_pad_p": 1.0}
    )
    assert aug.params.geometric is True


def test_augmenter_contract_none():
    check_augmenter(NoAugmentation)
