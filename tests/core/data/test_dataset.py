"""MultiviewDataset items: shapes, pixel alignment of images/labels/heatmaps, 3D targets,
degenerate rows, augmenter contract and per-worker reproducible randomness."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from shared_data import MOUSE4CAM
from torch.utils.data import DataLoader

from mvcore.config.schema import MvConfig
from mvcore.contracts import LabeledBatch
from mvcore.data.bbox import frame_to_model
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ItemError,
    MultiviewDataset,
    collate_items,
)
from mvcore.data.heatmaps import heatmap_to_keypoints
from mvcore.data.project import MultiviewProject
from mvcore.data.triangulate import triangulate_project
from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, CameraTensors, project_points, save_calibration

M4C_VIEWS = ["back", "mid", "side", "top"]

VIEWS = ["a", "b", "c"]
KEYPOINTS = ["nose", "ear", "tail", "paw"]
IMAGE_HW = (96, 128)
MODEL_HW = (32, 48)
BLOB_SIGMA = 2.0
ITEM_KEYS = {
    "images", "keypoints", "visibility", "heatmaps", "keypoints_frame", "bbox", "cameras",
    "has_calibration", "keypoints_3d", "transforms", "index", "aug_stats",
}  # fmt: skip


def _cameras() -> CameraGroup:
    v = len(VIEWS)
    h, w = IMAGE_HW
    k = np.array([[120.0, 0, (w - 1) / 2], [0, 120.0, (h - 1) / 2], [0, 0, 1]])
    return CameraGroup(
        names=VIEWS,
        sizes=np.tile([w, h], (v, 1)),
        intrinsics=np.tile(k, (v, 1, 1)),
        distortions=np.tile([-0.05, 0.01, 0.0, 0.0, 0.0], (v, 1)),
        rotations=np.stack([[0.0, a, 0.0] for a in np.linspace(-0.5, 0.5, v)]),
        translations=np.tile([0.0, 0.0, 10.0], (v, 1)),
    )


def _blobs(kp: np.ndarray) -> np.ndarray:
    """RGB uint8 image with a Gaussian blob at each finite keypoint ``(K, 2)``."""
    ys, xs = np.mgrid[0 : IMAGE_HW[0], 0 : IMAGE_HW[1]]
    img = np.zeros(IMAGE_HW)
    for x, y in kp[np.isfinite(kp).all(-1)]:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * BLOB_SIGMA**2))
    return np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, -1)


def make_project(root: Path, n: int = 4, nan_rows=(), calibrate: bool = True, bbox=None):
    """Keypoints at the corners of a 2.4 x 1.6 square (+ jitter) seen by 3 cameras; images
    show a blob at each label. ``nan_rows``: (row, view or None) to blank."""
    rng = np.random.default_rng(0)
    square = np.array([[-1.2, -0.8, 0.0], [1.2, -0.8, 0.0], [-1.2, 0.8, 0.0], [1.2, 0.8, 0.0]])
    points = square + rng.uniform(-0.1, 0.1, size=(n, 4, 3))
    cams = _cameras().to_tensors(dtype=torch.float64)
    kp = project_points(
        torch.as_tensor(points), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()
    for row, view in nan_rows:
        kp[row, slice(None) if view is None else view] = np.nan
    for v, name in enumerate(VIEWS):
        (root / "labeled-data" / f"s1_{name}").mkdir(parents=True)
        paths = [f"labeled-data/s1_{name}/img{i:03d}.png" for i in range(n)]
        for i, p in enumerate(paths):
            Image.fromarray(_blobs(kp[i, v])).save(root / p)
        write_keypoints_csv(root / f"CollectedData_{name}.csv", paths, KEYPOINTS, kp[:, v])
        if bbox is not None:
            rows = [f"{p},{','.join(str(b) for b in bbox)}" for p in paths]
            (root / f"bboxes_{name}.csv").write_text("\n".join([",x,y,h,w", *rows]) + "\n")
    if calibrate:
        save_calibration(_cameras(), root / "calibration.toml")
    return points, kp


def make_config(root: Path, uniform: bool = True, **data) -> MvConfig:
    values = {
        "data_dir": str(root),
        "csv_file": [f"CollectedData_{v}.csv" for v in VIEWS],
        "view_names": VIEWS,
        "image_resize_dims": {"height": MODEL_HW[0], "width": MODEL_HW[1]},
        "downsample_factor": 1,
        **data,
    }
    training = {"uniform_heatmaps_for_nan_keypoints": uniform, "heatmap_sigma": 1.0}
    return MvConfig.model_validate({"data": values, "training": training})


def load(root: Path, **kwargs) -> tuple[MultiviewProject, MvConfig]:
    config = make_config(root, **kwargs)
    return MultiviewProject.from_config(config), config


def unnormalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return images * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + mean


def test_item_keys_shapes_and_dtypes(tmp_path):
    make_project(tmp_path)
    project, config = load(tmp_path)
    dataset = MultiviewDataset(project, config, [2, 0])
    assert len(dataset) == 2
    item = dataset[0]
    assert set(item) == ITEM_KEYS == set(LabeledBatch.__annotations__)
    v, k, (h, w) = 3, 4, MODEL_HW
    expected = {
        "images": ((v, 3, h, w), torch.float32),
        "keypoints": ((v, k, 2), torch.float32),
        "visibility": ((v, k), torch.int64),
        "heatmaps": ((v, k, h // 2, w // 2), torch.float32),
        "keypoints_frame": ((v, k, 2), torch.float64),
        "bbox": ((v, 4), torch.float64),
        "has_calibration": ((), torch.bool),
        "keypoints_3d": ((k, 3), torch.float32),
        "transforms": ((v, 3, 3), torch.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(item[key].shape) == shape and item[key].dtype == dtype, key
    cams = item["cameras"]
    assert isinstance(cams, CameraTensors) and cams.intrinsics.dtype == torch.float32
    assert (cams.intrinsics.shape, cams.extrinsics.shape, cams.distortions.shape) == (
        (v, 3, 3), (v, 3, 4), (v, 5))
    assert item["index"] == 2 and item["aug_stats"] == {"aug_skipped": 0}
    assert torch.equal(item["transforms"], torch.eye(3).expand(3, 3, 3))
    np.testing.assert_array_equal(item["keypoints_frame"].numpy(), project.keypoints[2])
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_items)))
    assert batch["images"].shape == (2, v, 3, h, w) and batch["index"].tolist() == [2, 0]
    assert batch["cameras"].intrinsics.shape == (2, v, 3, 3)
    assert batch["cameras"][1].extrinsics.shape == (v, 3, 4)
    assert batch["aug_stats"]["aug_skipped"].tolist() == [0.0, 0.0]


def test_collate_fills_counters_an_item_lacks():
    items = [{"x": torch.zeros(2), "aug_stats": {"a_skipped": 1}},
             {"x": torch.ones(2), "aug_stats": {"b": 2.5}}]
    batch = collate_items(items)
    assert batch["x"].shape == (2, 2)
    assert {k: v.tolist() for k, v in batch["aug_stats"].items()} == {
        "a_skipped": [1.0, 0.0], "b": [0.0, 2.5]}


@pytest.mark.parametrize("bbox", [None, (200.0, 100.0, 192.0, 256.0)])
def test_labels_heatmaps_and_pixels_agree(tmp_path, bbox):
    """Blob centroids in the model images sit at the item keypoints, which are the frame
    labels mapped through the bbox, and the heatmaps peak there too."""
    make_project(tmp_path, calibrate=bbox is None, bbox=bbox)
    kwargs = {"bbox_file": [f"bboxes_{v}.csv" for v in VIEWS]} if bbox else {}
    project, config = load(tmp_path, **kwargs)
    item = MultiviewDataset(project, config, [1])[0]
    expected = frame_to_model(item["keypoints_frame"], item["bbox"], MODEL_HW)
    torch.testing.assert_close(item["keypoints"], expected.float())
    if bbox is not None:  # labels were in the 2x downscaled crop, offset by (200, 100)
        labels = project.keypoints[1] - [200, 100]
        np.testing.assert_allclose((labels + 0.5) / 2 - 0.5, _csv_labels(tmp_path, 1), atol=1e-9)
    gray = unnormalise(item["images"]).mean(1)  # (V, H, W)
    ys, xs = torch.meshgrid(torch.arange(MODEL_HW[0]), torch.arange(MODEL_HW[1]), indexing="ij")
    for v in range(3):
        for j, (x, y) in enumerate(item["keypoints"][v].tolist()):
            window = ((xs - x).abs() <= 4) & ((ys - y).abs() <= 4)
            mass = gray[v] * window
            centroid = torch.stack([(mass * xs).sum(), (mass * ys).sum()]) / mass.sum()
            assert torch.allclose(centroid, item["keypoints"][v, j], atol=0.12), (v, j)
    read, _ = heatmap_to_keypoints(item["heatmaps"], MODEL_HW)
    torch.testing.assert_close(read, item["keypoints"], atol=1e-3, rtol=0)
    assert torch.allclose(item["heatmaps"].sum((-2, -1)), torch.ones(3, 4))


def _csv_labels(root: Path, row: int) -> np.ndarray:
    from mvcore.data.csv_io import read_label_csv

    return np.stack([read_label_csv(root / f"CollectedData_{v}.csv").coords[row] for v in VIEWS])


def test_3d_targets_and_cameras(tmp_path):
    truth, _ = make_project(tmp_path)
    project, config = load(tmp_path)
    item = MultiviewDataset(project, config, [3])[0]
    assert bool(item["has_calibration"])
    torch.testing.assert_close(item["keypoints_3d"], torch.as_tensor(truth[3]).float())
    cams = project.calibrations[0].to_tensors()
    torch.testing.assert_close(item["cameras"].intrinsics, cams.intrinsics)
    torch.testing.assert_close(item["cameras"].extrinsics, cams.extrinsics)
    torch.testing.assert_close(item["cameras"].distortions, cams.distortions)


def test_all_nan_frame_and_view_without_labels(tmp_path):
    truth, _ = make_project(tmp_path, nan_rows=[(1, None), (2, 0)])
    project, config = load(tmp_path, uniform=False)
    dataset = MultiviewDataset(project, config, range(4))
    empty = dataset[1]
    assert (empty["heatmaps"] == 0).all() and (empty["visibility"] == 0).all()
    assert torch.isnan(empty["keypoints_3d"]).all() and torch.isnan(empty["keypoints"]).all()
    one_missing = dataset[2]  # view "a" unlabelled: 3D from views b and c
    torch.testing.assert_close(one_missing["keypoints_3d"], torch.as_tensor(truth[2]).float())
    assert (one_missing["heatmaps"][0] == 0).all()
    assert torch.allclose(one_missing["heatmaps"][1:].sum((-2, -1)), torch.ones(2, 4))

    project, config = load(tmp_path, uniform=True)
    uniform = MultiviewDataset(project, config, [1])[0]["heatmaps"]
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / uniform[0, 0].numel()))


def test_uncalibrated_rows_get_placeholder_cameras(tmp_path):
    make_project(tmp_path, calibrate=False)
    project, config = load(tmp_path)
    item = MultiviewDataset(project, config, [0])[0]
    assert not bool(item["has_calibration"]) and torch.isnan(item["keypoints_3d"]).all()
    assert torch.equal(item["cameras"].intrinsics, torch.eye(3).expand(3, 3, 3))
    assert torch.equal(item["cameras"].extrinsics, torch.eye(3, 4).expand(3, 3, 4))
    assert (item["cameras"].distortions == 0).all()


def test_missing_or_resized_image_at_load_time(tmp_path):
    make_project(tmp_path)
    project, config = load(tmp_path)
    dataset = MultiviewDataset(project, config, range(4))
    gone = tmp_path / "labeled-data/s1_b/img002.png"
    gone.unlink()
    with pytest.raises(DataError, match="image not found") as info:
        dataset[2]
    assert str(gone) in str(info.value)
    Image.new("RGB", (50, 40)).save(tmp_path / "labeled-data/s1_c/img003.png")
    with pytest.raises(DataError, match=r"img003\.png is 40x50 .* 96x128 was expected \(its "
                                        "size when the project was loaded"):
        dataset[3]


def _corrupt_pixels(path: Path) -> None:
    """Damage a PNG's compressed pixels, keep its header and its end: the load-time header
    check passes, decoding fails (what a bad disk or an interrupted copy leaves)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start:start + 60] = bytes(b ^ 0x5A for b in data[start:start + 60])
    path.write_bytes(bytes(data))


def test_an_image_that_fails_in_a_dataloader_worker_is_one_line_naming_the_file(tmp_path):
    make_project(tmp_path)
    project, config = load(tmp_path)
    bad = tmp_path / "labeled-data/s1_a/img001.png"
    _corrupt_pixels(bad)
    dataset = MultiviewDataset(project, config, range(4))
    with pytest.raises(ItemError) as info:
        dataset[1]
    in_process = str(info.value)
    assert in_process.startswith(f"cannot decode image {bad}: ")
    assert in_process.endswith("; replace it with a good copy")
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_items)
    with pytest.raises(DataError) as info:  # torch re-raises it in this process
        list(loader)
    assert type(info.value) is ItemError
    assert str(info.value) == in_process  # not "Caught ItemError in DataLoader worker..."
    assert "Traceback" not in str(info.value)


def test_item_error_keeps_only_the_message_of_a_worker_re_raise():
    wrapped = ("Caught ItemError in DataLoader worker process 0.\nOriginal Traceback (most "
               "recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
               "mvcore.data.dataset.ItemError: cannot decode image a.png: broken\n")
    assert str(ItemError(wrapped)) == "cannot decode image a.png: broken"
    assert str(ItemError("Caught you: not a worker message")) == "Caught you: not a worker message"


class RecordingAugmenter:
    """Shifts keypoints by a random offset, records what it saw, reports a skip counter."""

    name = "recording"

    def __init__(self):
        self.calls = []

    def __call__(self, sample, rng):
        assert 0.0 <= float(sample["images"].min()) and float(sample["images"].max()) <= 1.0
        assert sample["cameras"] is not None and sample["keypoints_3d"].shape == (4, 3)
        shift = float(rng.uniform(-2, 2))
        self.calls.append(shift)
        sample["keypoints"] = sample["keypoints"] + shift
        sample["keypoints_3d"] = torch.full((4, 3), shift)
        sample["transforms"] = torch.eye(3).repeat(3, 1, 1)
        sample["transforms"][:, :2, 2] = shift
        sample["aug_stats"] = {"recording_skipped": 1, "recording_applied": 5}
        return sample


def test_augmenters_run_only_in_training_with_reproducible_rngs(tmp_path):
    make_project(tmp_path)
    project, config = load(tmp_path)
    aug = RecordingAugmenter()
    plain = MultiviewDataset(project, config, [0, 1], augmenters=[aug], train=False)[0]
    assert aug.calls == [] and plain["aug_stats"] == {"aug_skipped": 0}

    dataset = MultiviewDataset(project, config, [0, 1], augmenters=[aug], train=True, seed=5)
    item = dataset[0]
    shift = aug.calls[-1]
    torch.testing.assert_close(item["keypoints"], plain["keypoints"] + shift)
    assert torch.equal(item["keypoints_3d"], torch.full((4, 3), shift))
    assert float(item["transforms"][1, 0, 2]) == pytest.approx(shift)
    assert item["aug_stats"] == {"recording_skipped": 1, "recording_applied": 5,
                                 "aug_skipped": 1}
    read, _ = heatmap_to_keypoints(item["heatmaps"], MODEL_HW)
    torch.testing.assert_close(read, item["keypoints"], atol=1e-3, rtol=0)
    torch.testing.assert_close(item["keypoints_frame"], plain["keypoints_frame"])

    dataset[0]
    assert aug.calls[-1] != shift  # next draw of the same row differs (epochs)
    again = MultiviewDataset(project, config, [0, 1], augmenters=[aug], train=True, seed=5)
    again[0]
    assert aug.calls[-1] == shift  # same seeds -> same augmentation
    other = MultiviewDataset(project, config, [0, 1], augmenters=[aug], train=True, seed=6)
    other[0]
    assert aug.calls[-1] != shift


def test_workers_draw_different_augmentations_reproducibly(tmp_path):
    make_project(tmp_path, n=1)
    project, config = load(tmp_path)

    def shifts(seed):
        dataset = MultiviewDataset(
            project, config, [0, 0], augmenters=[RecordingAugmenter()], train=True
        )
        loader = DataLoader(
            dataset,
            batch_size=1,
            num_workers=2,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=collate_items,
        )
        return [float(b["keypoints_3d"][0, 0, 0]) for epoch in range(2) for b in loader]

    first = shifts(0)
    assert len(set(first)) == 4  # same row, same draw counter in each worker -> still differ
    assert shifts(0) == first
    assert shifts(1) != first


@pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not available")
def test_mouse4cam_item():
    config = MvConfig.model_validate(
        {
            "data": {
                "data_dir": str(MOUSE4CAM),
                "csv_file": [f"CollectedData_{v}.csv" for v in M4C_VIEWS],
                "view_names": M4C_VIEWS,
                "image_resize_dims": {"height": 128, "width": 128},
            }
        }
    )
    project = MultiviewProject.from_config(config)
    dataset = MultiviewDataset(project, config, [0, 59])
    item = dataset[1]
    assert item["images"].shape == (4, 3, 128, 128) and item["heatmaps"].shape == (4, 15, 32, 32)
    assert item["index"] == 59 and bool(item["has_calibration"])
    expected = triangulate_project(project)["triangulation"].points[59]
    torch.testing.assert_close(item["keypoints_3d"], torch.as_tensor(expected).float())
    scale = np.array([128 / 1280, 128 / 1024])  # pixel edges onto pixel edges
    expected_2d = (project.keypoints[59] + 0.5) * scale - 0.5
    np.testing.assert_allclose(item["keypoints"].numpy(), expected_2d, rtol=1e-6, atol=1e-4)
    labelled = item["visibility"] == 2
    read, _ = heatmap_to_keypoints(item["heatmaps"], (128, 128))
    torch.testing.assert_close(read[labelled], item["keypoints"][labelled], atol=1e-3, rtol=0)
    pixels = unnormalise(item["images"])
    assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0 + 1e-6
    dataset.fast_jpeg = False  # full decode: same picture to within a grey level on average
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = unnormalise(dataset[1]["images"])
    assert float((full - pixels).abs().mean()) < 2 / 255
