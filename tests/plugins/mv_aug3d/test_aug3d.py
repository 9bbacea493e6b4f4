"""3D augmentation (mv_aug3d.aug3d.Augment3D): the augmenter contract, 3D consistency on real
data, image/label agreement on the synthetic example project, bad input, randomness."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mv_aug3d.aug3d import Augment3D, Augment3DParams
from PIL import Image
from pydantic import ValidationError
from shared_data import MOUSE4CAM

from mvcore.context import Context
from mvcore.data.bbox import frame_to_model, model_to_frame
from mvcore.errors import ConfigError
from mvcore.example import make_example_project
from mvcore.geometry import (
    CameraTensors,
    apply_homography,
    load_calibration,
    project_points,
    triangulate,
)
from mvcore.testing import check_augmenter

F64 = torch.float64
SIZE = 128  # rig image size (model = frame)


# ----------------------------------------------------------------------------- helpers


def _context(sample: dict) -> Context:
    """The context of the project ``sample`` comes from (views, keypoints, model input size)."""
    views, keypoints = sample["keypoints"].shape[:2]
    height, width = sample["images"].shape[-2:]
    return Context(
        view_names=tuple(f"view{v}" for v in range(views)),
        keypoint_names=tuple(f"kp{k}" for k in range(keypoints)),
        image_height=int(height),
        image_width=int(width),
        has_calibration=sample["cameras"] is not None,
    )


def augment3d(sample: dict, params: Augment3DParams | None = None) -> Augment3D:
    """``Augment3D`` for the project of ``sample``, built as the core builds it."""
    params = Augment3DParams() if params is None else params
    context = _context(sample)
    Augment3D.validate_context(params, context)
    return Augment3D(params, context)


def _rig(num_views: int = 3) -> CameraTensors:
    """Cameras 10 units from the origin looking at it, f = 150 px, 128x128 px, mild k1."""
    intr, extr = [], []
    for v in range(num_views):
        az = 2 * np.pi * v / num_views
        centre = 10.0 * np.array([np.cos(az) * 0.8, np.sin(az) * 0.8, 0.6])
        z = -centre / np.linalg.norm(centre)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        rot = np.stack([x, y, z])
        extr.append(np.concatenate([rot, (-rot @ centre)[:, None]], 1))
        intr.append([[150.0, 0.0, 63.5], [0.0, 150.0, 63.5], [0.0, 0.0, 1.0]])
    dist = np.zeros((num_views, 5))
    dist[:, 0] = -0.05
    arrays = (intr, extr, dist)
    return CameraTensors(*(torch.tensor(np.asarray(a), dtype=torch.float32) for a in arrays))


def _rig_sample(num_kp: int = 8, spread: float = 1.0, seed: int = 0) -> dict:
    cams = _rig()
    g = torch.Generator().manual_seed(seed)
    points = spread * (2 * torch.rand(num_kp, 3, generator=g, dtype=F64) - 1)
    c64 = cams.to(dtype=F64)
    kp = project_points(points, c64.intrinsics, c64.extrinsics, c64.distortions)
    g2 = torch.Generator().manual_seed(seed + 1)
    views = cams.num_views
    return {
        "images": torch.rand(views, 3, SIZE, SIZE, generator=g2),
        "keypoints": kp.float(),
        "visibility": torch.full((views, num_kp), 2, dtype=torch.int64),
        "bbox": torch.tensor([[0.0, 0.0, SIZE, SIZE]] * views, dtype=F64),
        "cameras": cams,
        "keypoints_3d": points.float(),
    }


def _triangulate_model(kp: torch.Tensor, sample: dict) -> torch.Tensor:
    """Model-pixel keypoints ``(V, K, 2)`` -> 3D ``(K, 3)`` float64 (the augmenter's route)."""
    size = tuple(sample["images"].shape[-2:])
    cams = sample["cameras"].to(dtype=F64)
    frame = model_to_frame(kp.double(), torch.as_tensor(sample["bbox"]).double(), size)
    return triangulate(frame, cams.intrinsics, cams.extrinsics, cams.distortions)


def _reprojection_model(points: torch.Tensor, kp: torch.Tensor, sample: dict) -> torch.Tensor:
    """Model-pixel distances ``(V, K)`` between the projections of ``points`` and ``kp``."""
    size = tuple(sample["images"].shape[-2:])
    cams = sample["cameras"].to(dtype=F64)
    proj = project_points(points, cams.intrinsics, cams.extrinsics, cams.distortions)
    proj = frame_to_model(proj, torch.as_tensor(sample["bbox"]).double(), size)
    return (proj - kp.double()).norm(dim=-1)


def _expected_pose(points: torch.Tensor, draw: dict) -> torch.Tensor:
    c = torch.from_numpy(draw["centre"])
    return draw["scale"] * (points - c) + c + torch.from_numpy(draw["shift"])


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def mouse4cam_samples() -> list[dict]:
    root = MOUSE4CAM
    if not (root / "calibration.toml").is_file():
        pytest.skip(f"mouse4cam not found at {root}")
    names = ["back", "mid", "side", "top"]
    cams = load_calibration(root / "calibration.toml").select(names).to_tensors()
    tabs = [
        pd.read_csv(root / f"CollectedData_{n}.csv", header=[0, 1, 2], index_col=0) for n in names
    ]
    num_kp = tabs[0].shape[1] // 2
    bbox = torch.tensor([[0.0, 0.0, 1024.0, 1280.0]] * 4, dtype=F64)  # [x, y, h, w]
    samples = []
    for i in range(0, len(tabs[0]), 6):
        frame = np.stack([t.iloc[i].to_numpy(dtype=float).reshape(num_kp, 2) for t in tabs])
        kp = frame_to_model(torch.from_numpy(frame), bbox, (256, 256)).float()
        samples.append(
            {
                "images": torch.zeros(4, 3, 256, 256),  # geometry only
                "keypoints": kp,
                "visibility": torch.where(torch.isfinite(kp).all(-1), 2, 0),
                "bbox": bbox,
                "cameras": cams,
                "keypoints_3d": None,
            }
        )
    return samples


@pytest.mark.parametrize("fit", ["similarity", "homography"])
def test_mouse4cam_augmented_pose_is_exact_and_labels_stay_consistent(mouse4cam_samples, fit):
    aug = augment3d(mouse4cam_samples[0], Augment3DParams(fit=fit))
    before, after = [], []
    for i, sample in enumerate(mouse4cam_samples):
        out = aug(sample, np.random.default_rng(i))
        draw = aug.last_draw
        assert draw is not None and out["aug_stats"]["imgaug_3d_skipped"] == 0
        assert 0.8 <= draw["scale"] <= 1.2
        points = _triangulate_model(sample["keypoints"], sample)
        np.testing.assert_allclose(draw["centre"], np.nanmedian(points.numpy(), axis=0))
        expected = _expected_pose(points, draw)
        torch.testing.assert_close(out["keypoints_3d"].double(), expected, atol=2e-3, rtol=1e-6)
        # 2D labels only where there were labels (visibility semantics kept)
        labelled = torch.isfinite(sample["keypoints"]).all(-1)
        assert not (torch.isfinite(out["keypoints"]).all(-1) & ~labelled).any()
        # the augmented labels triangulate back to the augmented pose ...
        points_aug = _triangulate_model(out["keypoints"], out)
        ok = torch.isfinite(points_aug).all(-1)
        torch.testing.assert_close(points_aug[ok], expected[ok], atol=2e-2, rtol=1e-5)
        # ... and reproject at least as well as the original labels
        err0 = _reprojection_model(points, sample["keypoints"], sample)
        err1 = _reprojection_model(points_aug, out["keypoints"], out)
        before.append(err0[torch.isfinite(err0)])
        after.append(err1[torch.isfinite(err1)])
    med0, med1 = torch.cat(before).median(), torch.cat(after).median()
    assert med0 > 0.5  # real labels: ~1.3 model px
    assert med1 <= med0 + 0.5
    assert med1 < 1e-2  # the augmented labels are exact projections of the augmented pose


# ------------------------------------------------------------------- image / label agreement


@pytest.fixture(scope="module")
def example_samples(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("example")
    make_example_project(root, seed=0, num_views=4, num_frames=24, image_size=256)
    group = load_calibration(root / "calibration.toml")
    cams = group.to_tensors()
    tabs = [
        pd.read_csv(root / f"CollectedData_{n}.csv", header=[0, 1, 2], index_col=0)
        for n in group.names
    ]
    occluded = pd.read_csv(root / "occluded.csv", header=[0, 1], index_col=0)
    num_kp = tabs[0].shape[1] // 2
    samples = []
    for i in range(len(tabs[0])):
        kp = np.stack([t.iloc[i].to_numpy(dtype=float).reshape(num_kp, 2) for t in tabs])
        images = torch.stack(
            [
                torch.from_numpy(np.array(Image.open(root / t.index[i]).convert("RGB")))
                .permute(2, 0, 1)
                .float()
                / 255.0
                for t in tabs
            ]
        )
        frame = int(Path(tabs[0].index[i]).stem[3:])
        occ = occluded.loc[frame].to_numpy().reshape(len(tabs), num_kp).astype(bool)
        samples.append(
            {
                "images": images,
                "keypoints": torch.tensor(kp, dtype=torch.float32),
                "visibility": torch.tensor(np.where(np.isfinite(kp).all(-1), 2, 0)),
                "bbox": torch.tensor([[0.0, 0.0, 256.0, 256.0]] * len(tabs), dtype=F64),
                "cameras": cams,
                "keypoints_3d": None,
                "usable": torch.from_numpy(_isolated(kp, occ)),
            }
        )
    return samples


def _isolated(kp: np.ndarray, occluded: np.ndarray, gap: float = 9.0) -> np.ndarray:
    """``(V, K)`` blobs that are labelled, visible, >= 5 px inside and away from other blobs."""
    dist = np.linalg.norm(kp[:, :, None] - kp[:, None], axis=-1)
    dist[:, np.arange(kp.shape[1]), np.arange(kp.shape[1])] = np.inf
    crowded = (np.nan_to_num(dist, nan=np.inf) < gap).any(-1)
    inside = ((kp > 4) & (kp < 256 - 5)).all(-1)
    return np.isfinite(kp).all(-1) & ~occluded & inside & ~crowded


def _blob_colours(images: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """Colour direction ``(V, K, 3)`` of each blob: the pixel at its (exact) label."""
    v, c, h, w = images.shape
    xy = torch.nan_to_num(kp).round().long()
    idx = (xy[..., 1].clamp(0, h - 1) * w + xy[..., 0].clamp(0, w - 1)).reshape(v, 1, -1)
    pix = images.reshape(v, c, h * w).gather(2, idx.expand(v, c, -1))
    return pix.permute(0, 2, 1).reshape(v, -1, c).double()


def _locate(images: torch.Tensor, centres: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Mean-shift centroid ``(V, K, 2)`` of the pixels of each blob's colour within 3 px."""
    v, c, h, w = images.shape
    cdir = colours / colours.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    flat = images.double().reshape(v, c, h * w)
    off = torch.arange(-4, 5, dtype=F64)
    oy, ox = (g.reshape(-1) for g in torch.meshgrid(off, off, indexing="ij"))
    cen = centres.double().clone()
    for _ in range(4):
        base = torch.nan_to_num(cen).round()
        xs, ys = base[..., :1] + ox, base[..., 1:] + oy  # (V, K, P)
        idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().reshape(v, 1, -1)
        pix = flat.gather(2, idx.expand(v, c, -1)).reshape(v, c, *xs.shape[1:]).permute(0, 2, 3, 1)
        along = (pix * cdir[:, :, None]).sum(-1)
        off_hue = (pix - along[..., None] * cdir[:, :, None]).norm(dim=-1)
        weight = torch.where(off_hue < 0.25 * along + 0.02, along, 0.0).clamp(min=0)
        weight = weight * ((xs - cen[..., :1]) ** 2 + (ys - cen[..., 1:]) ** 2 <= 9.0)
        total = weight.sum(-1)
        cen = torch.stack([(weight * xs).sum(-1), (weight * ys).sum(-1)], -1) / total[..., None]
    return cen


def _agreement(samples: list[dict], fit: str) -> torch.Tensor:
    aug = augment3d(samples[0], Augment3DParams(fit=fit))
    dists = []
    for i, sample in enumerate(samples):
        out = aug(sample, np.random.default_rng(i))
        assert aug.last_draw is not None
        kp = out["keypoints"].double()
        ok = sample["usable"] & ((kp > 4) & (kp < 256 - 5)).all(-1)
        colours = _blob_colours(sample["images"], sample["keypoints"])
        dists.append((_locate(out["images"], kp, colours) - kp).norm(dim=-1)[ok])
    return torch.cat(dists)


def test_locator_finds_unwarped_blobs_to_a_hundredth_of_a_pixel(example_samples):
    sample = example_samples[0]
    colours = _blob_colours(sample["images"], sample["keypoints"])
    found = _locate(sample["images"], sample["keypoints"], colours)
    err = (found - sample["keypoints"].double()).norm(dim=-1)[sample["usable"]]
    assert err.numel() > 20 and float(err.median()) < 0.03


def test_warped_blobs_land_on_augmented_labels(example_samples):
    """Default fit (homography): measured median 0.07 px, p95 0.27 px (bench, 360 views);
    similarity (Lightning Pose) 0.17 / 0.59 px."""
    assert Augment3DParams().fit == "homography"
    homography = _agreement(example_samples, "homography")
    similarity = _agreement(example_samples, "similarity")
    assert homography.numel() > 200 and not homography.isnan().any()
    assert float(homography.median()) < 0.15
    assert float(homography.quantile(0.95)) < 0.6
    assert float(homography.median()) <= float(similarity.median())
    assert float(homography.quantile(0.95)) <= float(similarity.quantile(0.95))


def test_transforms_map_original_labels_onto_augmented_labels(example_samples):
    sample = example_samples[1]
    aug = augment3d(sample)
    out = aug(sample, np.random.default_rng(5))
    assert out["transforms"].shape == (4, 3, 3) and out["transforms"].dtype == torch.float32
    mapped = apply_homography(sample["keypoints"].double(), out["transforms"].double())
    err = (mapped - out["keypoints"].double()).norm(dim=-1)
    motion = (sample["keypoints"].double() - out["keypoints"].double()).norm(dim=-1)
    ok = torch.isfinite(err)
    assert ok.sum() > 20 and float(err[ok].median()) < 0.3
    assert float(err[ok].median()) < 0.1 * float(motion[ok].median())  # explains the motion


# ----------------------------------------------------------------------------- bad input


def test_all_nan_frame_passes_through_counted():
    sample = _rig_sample()
    sample["keypoints"] = torch.full_like(sample["keypoints"], float("nan"))
    out = augment3d(sample)(sample, np.random.default_rng(0))
    assert out["aug_stats"]["imgaug_3d_skipped"] == 1
    assert out["images"] is sample["images"] and out["keypoints"] is sample["keypoints"]
    assert "transforms" not in out


@pytest.mark.parametrize("labelled", [1, 2])
def test_too_few_triangulated_keypoints_pass_through(labelled):
    sample = _rig_sample()
    sample["keypoints"][:, labelled:] = float("nan")
    aug = augment3d(sample)
    out = aug(sample, np.random.default_rng(0))
    assert out["aug_stats"] == {"imgaug_3d_skipped": 1, "imgaug_3d_too_few_points": 1,
                                "imgaug_3d_labels_behind_camera": 0}
    assert torch.equal(out["images"], sample["images"]) and aug.last_draw is None


def test_uncalibrated_sample_is_a_config_error():
    sample = _rig_sample()
    aug = augment3d(sample)
    sample["cameras"] = None
    with pytest.raises(ConfigError, match=r"training\.imgaug_3d"):
        aug(sample, np.random.default_rng(0))


def test_keypoints_leaving_the_image_become_nan_with_visibility_zero():
    sample = _rig_sample(num_kp=10, spread=3.0, seed=3)
    aug = augment3d(sample, Augment3DParams(scale=(1.6, 1.6), shift=0.0))
    out = aug(sample, np.random.default_rng(0))
    points = _triangulate_model(sample["keypoints"], sample)
    expected_3d = _expected_pose(points, aug.last_draw)
    cams = sample["cameras"].to(dtype=F64)
    target = project_points(expected_3d, cams.intrinsics, cams.extrinsics, cams.distortions)
    outside = ((target < -0.5) | (target >= SIZE - 0.5)).any(-1)
    assert outside.any() and (~outside).any()
    assert torch.isnan(out["keypoints"][outside]).all()
    assert (out["visibility"][outside] == 0).all() and (out["visibility"][~outside] == 2).all()
    assert out["aug_stats"]["imgaug_3d_out_of_image"] == int(outside.sum())
    kept = out["keypoints"][~outside].double()
    torch.testing.assert_close(kept, target[~outside], atol=1e-3, rtol=0)


def test_unlabelled_views_keep_nan_and_single_view_labels_follow_the_warp():
    sample = _rig_sample()
    sample["keypoints"][1, 0] = float("nan")  # kp 0: missing in view 1, triangulated from 0, 2
    sample["visibility"][1, 0] = 1
    sample["keypoints"][1:, 5] = float("nan")  # kp 5: labelled in view 0 only, no 3D point
    sample["keypoints"][0, 5] = torch.tensor([60.0, 70.0])
    aug = augment3d(sample, Augment3DParams(scale=(1.0, 1.0)))
    out = aug(sample, np.random.default_rng(1))
    assert torch.isnan(out["keypoints"][1, 0]).all() and out["visibility"][1, 0] == 1
    assert torch.isfinite(out["keypoints"][[0, 2], 0]).all()
    assert torch.isnan(out["keypoints_3d"][5]).all()
    warped = apply_homography(sample["keypoints"][0, 5:6].double(), out["transforms"][0].double())
    torch.testing.assert_close(out["keypoints"][0, 5:6].double(), warped, atol=1e-4, rtol=0)


def test_transforms_compose_with_an_earlier_augmenter():
    sample = _rig_sample()
    shift = torch.eye(3).repeat(3, 1, 1)
    shift[:, 0, 2] = 2.0
    out_plain = augment3d(sample)(sample, np.random.default_rng(2))
    out = augment3d(sample)({**sample, "transforms": shift}, np.random.default_rng(2))
    torch.testing.assert_close(out["transforms"], out_plain["transforms"] @ shift)


def test_failed_fit_passes_the_sample_through_counted(monkeypatch):
    import mv_aug3d.aug3d as module

    original = module.fit_with_fallback

    def failing(*args, **kwargs):
        mats, used = original(*args, **kwargs)
        used[1] = -1  # as if no correspondence in view 1 survived
        return mats, used

    monkeypatch.setattr(module, "fit_with_fallback", failing)
    sample = _rig_sample()
    aug = module.Augment3D(Augment3DParams(), _context(sample))
    out = aug(sample, np.random.default_rng(0))
    assert out["aug_stats"] == {"imgaug_3d_skipped": 1, "imgaug_3d_fit_failed": 1,
                                "imgaug_3d_labels_behind_camera": 0}
    assert out["images"] is sample["images"] and out["keypoints"] is sample["keypoints"]
    assert aug.last_draw is None


def test_three_keypoints_fall_back_from_homography_to_affine_counted():
    sample = _rig_sample(num_kp=3)
    aug = augment3d(sample)
    out = aug(sample, np.random.default_rng(0))
    assert aug.last_draw["models"] == ["affine"] * 3
    assert out["aug_stats"]["imgaug_3d_fallback"] == 3
    # an affine through 3 points is exact: the warp maps the labels onto their targets
    mapped = apply_homography(sample["keypoints"].double(), out["transforms"].double())
    torch.testing.assert_close(mapped, out["keypoints"].double(), atol=1e-3, rtol=0)


def test_projection_source_equals_label_source_for_exact_labels():
    sample = _rig_sample()
    by_labels = augment3d(sample, Augment3DParams(source="labels"))
    by_proj = augment3d(sample, Augment3DParams(source="projections"))
    by_labels = by_labels(sample, np.random.default_rng(4))
    by_proj = by_proj(sample, np.random.default_rng(4))
    torch.testing.assert_close(by_proj["keypoints"], by_labels["keypoints"])
    torch.testing.assert_close(
        by_proj["transforms"], by_labels["transforms"], atol=1e-4, rtol=1e-4
    )


# ----------------------------------------------------------------------------- randomness


def test_same_seed_same_output_different_seed_different_output():
    sample = _rig_sample()
    aug = augment3d(sample)
    a = aug(sample, np.random.default_rng(7))
    b = pickle.loads(pickle.dumps(aug))(sample, np.random.default_rng(7))  # picklable too
    c = aug(sample, np.random.default_rng(8))
    for key in ("images", "keypoints", "keypoints_3d", "transforms"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.allclose(a["keypoints"], c["keypoints"])
    assert not torch.allclose(a["images"], c["images"])


def test_probability_applies_to_that_fraction_of_samples():
    sample = _rig_sample()
    never = augment3d(sample, Augment3DParams(p=0.0))
    assert never(sample, np.random.default_rng(0)) is sample
    half = augment3d(sample, Augment3DParams(p=0.5))
    applied = 0
    for seed in range(200):
        out = half(sample, np.random.default_rng(seed))
        applied += int(out is not sample)
    assert 70 <= applied <= 130


def test_params_validate():
    with pytest.raises(ValidationError, match="0 < low <= high"):
        Augment3DParams(scale=(1.2, 0.8))
    with pytest.raises(ValidationError, match="fit"):
        Augment3DParams(fit="perspective")
    with pytest.raises(ValidationError, match="unknown"):
        Augment3DParams(unknown=1)


def test_params_are_required():
    """Built as ``Augment3D(params, context)``: a plain dict is not validated params."""
    sample = _rig_sample()
    with pytest.raises(TypeError, match="Augment3DParams"):
        Augment3D({"p": 0.5}, _context(sample))


# ----------------------------------------------------------------------------- contract


def test_augmenter_contract_imgaug_3d():
    """Keys, shapes, determinism per rng, pickling, and images aligned with labels."""
    aug = check_augmenter(Augment3D)
    assert isinstance(aug, Augment3D) and aug.params == Augment3DParams()


def test_a_view_that_sees_the_labels_from_behind_takes_no_part():
    sample = _rig_sample()
    cams = sample["cameras"]
    flip = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    extrinsics = cams.extrinsics.clone()
    extrinsics[2] = flip @ extrinsics[2]  # view 2 turned around, its 2D consistent through it
    turned = CameraTensors(cams.intrinsics, extrinsics, cams.distortions)
    c64 = turned.to(dtype=F64)
    sample["keypoints"] = project_points(sample["keypoints_3d"].double(), c64.intrinsics,
                                         c64.extrinsics, c64.distortions).float()
    sample["cameras"] = turned
    aug = augment3d(sample, Augment3DParams(scale=(1.0, 1.0), shift=0.0))
    out = aug(sample, np.random.default_rng(0))
    assert out["aug_stats"]["imgaug_3d_labels_behind_camera"] == 8  # every label of view 2
    # nothing of the scene is in front of view 2, so no warp fits it: the sample passes as is
    assert out["aug_stats"]["imgaug_3d_fit_failed"] == 1
    assert torch.equal(out["images"], sample["images"])
