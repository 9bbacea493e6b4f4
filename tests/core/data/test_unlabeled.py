"""UnlabeledClipDataset: clips of consecutive synchronised frames from the example videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvcore.config.load import load_config
from mvcore.contracts import ClipBatch
from mvcore.data.datamodule import MultiviewDataModule
from mvcore.data.project import MultiviewProject
from mvcore.data.unlabeled import UnlabeledClipDataset, decode_clip
from mvcore.errors import DataError
from mvcore.example import make_example_project

T, FRAMES = 6, 40
SIZE = ["data.image_resize_dims.height=32", "data.image_resize_dims.width=48"]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return make_example_project(tmp_path_factory.mktemp("unlabeled") / "ex", seed=0,
                                num_frames=FRAMES, image_size=128)


@pytest.fixture(scope="module")
def loaded(example):
    config = load_config(example, overrides=SIZE)
    return config, MultiviewProject.from_config(config)


def test_clip_shapes_and_dtypes(loaded):
    config, project = loaded
    dataset = UnlabeledClipDataset(config, project, T, seed=0, num_clips=5)
    assert len(dataset) == 5
    item = dataset[0]
    v = project.num_views
    assert item["frames"].shape == (T, v, 3, 32, 48) and item["frames"].dtype == torch.float32
    assert item["bbox"].shape == (T, v, 4)
    whole = torch.tensor([0.0, 0.0, 128.0, 128.0], dtype=torch.float64)
    assert torch.equal(item["bbox"][0, 0], whole)
    assert set(item) == set(ClipBatch.__annotations__)
    assert item["cameras"].intrinsics.shape == (T, v, 3, 3)
    assert item["cameras"].extrinsics.shape == (T, v, 3, 4)
    assert item["cameras"].distortions.shape == (T, v, 5)
    assert item["has_calibration"].dtype == torch.bool and item["has_calibration"].all()
    # the session's calibration is the labelled rows' one
    cams = project.row_cameras([0], dtype=torch.float32)
    assert torch.allclose(item["cameras"].intrinsics[0], cams.intrinsics[0])
    index = item["frame_index"]
    assert index.dtype == torch.int64 and index.shape == (T,)
    assert torch.equal(index, index[0] + torch.arange(T))
    assert 0 <= int(index[0]) and int(index[-1]) < FRAMES
    assert torch.isfinite(item["frames"]).all()


def test_seek_matches_full_decode(loaded):
    config, project = loaded
    dataset = UnlabeledClipDataset(config, project, T, seed=0, num_clips=1)
    path = dataset.sessions[0].videos[1].path
    full = decode_clip(path, 0, FRAMES)
    for start in (0, 7, FRAMES - T):
        assert np.array_equal(decode_clip(path, start, T), full[start:start + T])


def test_deterministic_from_seed(loaded):
    config, project = loaded
    a = UnlabeledClipDataset(config, project, T, seed=3, num_clips=4)
    b = UnlabeledClipDataset(config, project, T, seed=3, num_clips=4)
    c = UnlabeledClipDataset(config, project, T, seed=4, num_clips=4)
    first = [a.clip_at(i) for i in range(4)]
    assert first == [b.clip_at(i) for i in range(4)]
    assert first != [c.clip_at(i) for i in range(4)]
    item_a, item_b = a[2], b[2]
    assert torch.equal(item_a["frame_index"], item_b["frame_index"])
    assert torch.equal(item_a["frames"], item_b["frames"])


def test_missing_video_names_the_file(example, tmp_path):
    config = load_config(example, overrides=SIZE)
    project = MultiviewProject.from_config(config)
    videos = tmp_path / "videos"
    videos.mkdir()
    for view in project.view_names[:-1]:
        (videos / f"session0_{view}.mp4").write_bytes(
            (example.parent / "videos" / f"session0_{view}.mp4").read_bytes())
    config = load_config(example, overrides=[*SIZE, f"data.video_dir={videos}"])
    with pytest.raises(DataError) as err:  # as for prediction: tests/core/data/test_sessions
        UnlabeledClipDataset(config, project, T, seed=0)
    message = str(err.value)
    assert str(videos) in message and f"session0_{project.view_names[-1]}.mp4" in message


def test_datamodule_combines_loaders(loaded):
    config, project = loaded
    module = MultiviewDataModule(config, project=project, use_unlabeled=True)
    loaders = module.train_dataloader()
    assert set(loaders) == {"labeled", "unlabeled"}
    assert len(loaders["unlabeled"]) == len(loaders["labeled"])  # clips per epoch: None
    assert loaders["unlabeled"].batch_size == 1
    plain = MultiviewDataModule(config, project=project, use_unlabeled=False)
    assert not isinstance(plain.train_dataloader(), dict)
