"""MultiviewDataModule: Lightning Pose split sizes, seeded splits, loaders, prediction order."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import random_split

from mvcore.config.schema import MvConfig
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.datamodule import MultiviewDataModule, split_sizes
from mvcore.data.project import MultiviewProject
from mvcore.errors import DataError

VIEWS = ["a", "b"]
KEYPOINTS = ["nose", "tail"]


def make_project(root: Path, n: int) -> None:
    """Uncalibrated 2-view project, 16 x 16 images, row i labelled at (i, i)."""
    for v, view in enumerate(VIEWS):
        (root / "labeled-data" / f"s_{view}").mkdir(parents=True)
        paths = [f"labeled-data/s_{view}/img{i:03d}.png" for i in range(n)]
        for p in paths:
            Image.new("RGB", (16, 16), (60 * v, 0, 0)).save(root / p)
        coords = np.tile(np.arange(n, dtype=float)[:, None, None] % 16, (1, 2, 2))
        write_keypoints_csv(root / f"CollectedData_{view}.csv", paths, KEYPOINTS, coords)


def make_config(root: Path, **training) -> MvConfig:
    data = {
        "data_dir": str(root),
        "csv_file": [f"CollectedData_{v}.csv" for v in VIEWS],
        "view_names": VIEWS,
        "image_resize_dims": {"height": 16, "width": 16},
    }
    training = {"num_workers": 0, "train_batch_size": 4, "val_batch_size": 3, **training}
    return MvConfig.model_validate({"data": data, "training": training})


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm")
    make_project(root, 23)
    return root


@pytest.mark.parametrize(
    ("n", "train_prob", "val_prob", "expected"),
    [
        (100, 0.8, None, (80, 10, 10)),  # Lightning Pose's unit tests
        (103, 0.8, 0.1, (82, 10, 11)),
        (103, 0.8, None, (82, 10, 11)),
        (60, 0.95, 0.05, (57, 3, 0)),
        (10, 0.95, 0.05, (9, 1, 0)),  # leftover < 5 -> train, then one row moved to val
        (2, 0.95, 0.05, (1, 1, 0)),
        (40, 0.5, 0.25, (20, 10, 10)),
    ],
)
def test_split_sizes(n, train_prob, val_prob, expected):
    assert split_sizes(n, train_prob, val_prob) == expected


def test_split_sizes_need_two_rows():
    with pytest.raises(DataError, match="at least 2"):
        split_sizes(1, 0.9, 0.1)


def test_splits_are_seeded_disjoint_and_match_random_split(project_dir):
    dm = MultiviewDataModule(make_config(project_dir, train_prob=0.6, val_prob=0.2))
    dm.setup()
    assert (len(dm.train_indices), len(dm.val_indices), len(dm.test_indices)) == (13, 4, 6)
    rows = np.concatenate([dm.train_indices, dm.val_indices, dm.test_indices])
    assert sorted(rows.tolist()) == list(range(23))
    reference = random_split(range(23), [13, 4, 6], generator=torch.Generator().manual_seed(0))
    assert [list(s.indices) for s in reference] == [
        dm.train_indices.tolist(),
        dm.val_indices.tolist(),
        dm.test_indices.tolist(),
    ]
    again = MultiviewDataModule(make_config(project_dir, train_prob=0.6, val_prob=0.2))
    again.setup()
    assert np.array_equal(again.train_indices, dm.train_indices)
    other = MultiviewDataModule(
        make_config(project_dir, train_prob=0.6, val_prob=0.2, rng_seed_data_pt=1)
    )
    other.setup()
    assert not np.array_equal(other.train_indices, dm.train_indices)
    names = dm.split_names()
    assert names.count("train") == 13 and names.count("validation") == 4
    assert names.count("test") == 6 and names[dm.val_indices[0]] == "validation"


def test_setup_is_idempotent_and_reuses_a_given_project(project_dir):
    config = make_config(project_dir)
    project = MultiviewProject.from_config(config)
    dm = MultiviewDataModule(config, project=project)
    dm.setup("fit")
    train, dataset = dm.train_indices, dm.train_dataset
    dm.setup("validate")
    assert dm.project is project and dm.train_indices is train and dm.train_dataset is dataset


@pytest.mark.parametrize(("train_frames", "kept"), [(1, 22), (5, 5), (0.5, 11), (100, 22)])
def test_train_frames_truncates_train(project_dir, train_frames, kept):
    config = make_config(project_dir, train_frames=train_frames)  # 0.95 / 0.05 -> 22 / 1 / 0
    dm = MultiviewDataModule(config)
    if train_frames == 100:
        with pytest.warns(UserWarning, match="exceeds"):
            dm.setup()
    else:
        dm.setup()
    assert len(dm.train_indices) == kept and len(dm.val_indices) == 1
    assert dm.split_names().count("unused") == 22 - kept
    np.testing.assert_array_equal(
        dm.train_keypoints_frame(), dm.project.keypoints[dm.train_indices]
    )


def test_loaders(project_dir):
    dm = MultiviewDataModule(make_config(project_dir, devices=2, train_prob=0.6, val_prob=0.2))
    assert (dm.train_batch_size, dm.val_batch_size, dm.test_batch_size) == (2, 2, 16)
    loader = dm.train_dataloader()
    assert not loader.persistent_workers and loader.num_workers == 0
    batch = next(iter(loader))
    assert batch["images"].shape == (2, 2, 3, 16, 16) and batch["heatmaps"].shape[:3] == (2, 2, 2)
    assert set(batch["index"].tolist()) <= set(dm.train_indices.tolist())
    seen = torch.cat([b["index"] for b in dm.val_dataloader()]).tolist()
    assert seen == dm.val_indices.tolist()
    seen = torch.cat([b["index"] for b in dm.test_dataloader()]).tolist()
    assert seen == dm.test_indices.tolist()
    epoch = [torch.cat([b["index"] for b in loader]).tolist() for _ in range(2)]
    assert sorted(epoch[0]) == sorted(dm.train_indices.tolist()) and epoch[0] != epoch[1]

    workers = MultiviewDataModule(make_config(project_dir, num_workers=2)).train_dataloader()
    assert workers.persistent_workers and workers.num_workers == 2


def test_predict_dataloader_covers_all_rows_in_order(project_dir):
    dm = MultiviewDataModule(make_config(project_dir, test_batch_size=5))
    indices = torch.cat([b["index"] for b in dm.predict_dataloader()]).tolist()
    assert indices == list(range(23))
    frames = torch.cat([b["keypoints_frame"] for b in dm.predict_dataloader([4, 2])])
    np.testing.assert_array_equal(frames.numpy(), dm.project.keypoints[[4, 2]])
