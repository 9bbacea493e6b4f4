"""The training data of epoch e - its order and its random draws - depends on (seed, e) only,
so a run resumed at epoch e sees what the uninterrupted run saw, with DataLoader workers too.
(Integration: tests/integration/test_resume.py.)"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mvcore.config.schema import MvConfig
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.datamodule import EpochSeededSampler, MultiviewDataModule

VIEWS = ["a", "b"]
ROWS = 12


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("order")
    for v, view in enumerate(VIEWS):
        (root / "labeled-data" / f"s_{view}").mkdir(parents=True)
        paths = [f"labeled-data/s_{view}/img{i:03d}.png" for i in range(ROWS)]
        for p in paths:
            Image.new("RGB", (16, 16), (60 * v, 0, 0)).save(root / p)
        coords = np.tile(np.arange(ROWS, dtype=float)[:, None, None] % 16, (1, 2, 2))
        write_keypoints_csv(root / f"CollectedData_{view}.csv", paths, ["nose", "tail"], coords)
    return root


def _config(root: Path, workers: int) -> MvConfig:
    data = {"data_dir": str(root), "csv_file": [f"CollectedData_{v}.csv" for v in VIEWS],
            "view_names": VIEWS, "image_resize_dims": {"height": 16, "width": 16}}
    training = {"num_workers": workers, "train_batch_size": 4, "train_prob": 0.8,
                "val_prob": 0.2, "rng_seed_data_pt": 7}
    return MvConfig.model_validate({"data": data, "training": training})


class Jitter:
    """An augmenter that moves the labels by a draw from the rng it is given."""

    def __call__(self, sample, rng):
        sample["keypoints"] = sample["keypoints"] + float(rng.uniform(-1.0, 1.0))
        return sample


def _module(root: Path, workers: int, trainer=None) -> MultiviewDataModule:
    data_module = MultiviewDataModule(_config(root, workers), augmenters=[Jitter()])
    data_module.trainer = trainer
    return data_module


def _epoch(loader, epoch: int | None = None) -> tuple[list[int], torch.Tensor]:
    """Rows and augmented labels of one pass; ``epoch``: set it first, as Lightning does."""
    if epoch is not None:
        loader.sampler.set_epoch(epoch)
    batches = list(loader)
    return (torch.cat([b["index"] for b in batches]).tolist(),
            torch.cat([b["keypoints"] for b in batches]))


def test_sampler_yields_epoch_position_and_index_from_seed_and_epoch():
    sampler = EpochSeededSampler(10, seed=3)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert [k[:2] for k in keys] == [(4, p) for p in range(10)]
    assert [k[2] for k in keys] == sampler.order(4) == EpochSeededSampler(10, 3).order(4)
    assert sorted(sampler.order(4)) == list(range(10)) and sampler.order(4) != sampler.order(5)
    assert [k[0] for k in sampler] == [5] * 10  # without set_epoch: on to the next epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_seen_first_is_the_epoch_seen_after_the_earlier_ones(project_dir, workers):
    loader = _module(project_dir, workers).train_dataloader()
    uninterrupted = [_epoch(loader, epoch) for epoch in range(3)]
    assert uninterrupted[1][0] != uninterrupted[2][0]  # each epoch has its order
    assert not torch.equal(uninterrupted[1][1], uninterrupted[2][1])  # and its draws
    # a resumed run: a new data module whose first epoch is 2
    rows, labels = _epoch(_module(project_dir, workers).train_dataloader(), 2)
    assert rows == uninterrupted[2][0]
    assert torch.equal(labels, uninterrupted[2][1])


def test_a_resumed_trainer_gets_its_epoch_before_lightning_sets_it(project_dir):
    """Lightning creates the train iterator of a resumed run (with workers: draws its first
    indices) before it calls set_epoch; the loader must already be at the resumed epoch."""
    loader = _module(project_dir, 2).train_dataloader()
    expected = [_epoch(loader, epoch) for epoch in range(3)][2]
    progress = SimpleNamespace(current=SimpleNamespace(processed=2))
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_progress=progress))
    resumed = _module(project_dir, 2, trainer).train_dataloader()
    iterator = iter(resumed)  # what Lightning's FitLoop.setup_data does
    resumed.sampler.set_epoch(2)  # what it does afterwards
    batches = list(iterator)
    assert torch.cat([b["index"] for b in batches]).tolist() == expected[0]
    assert torch.equal(torch.cat([b["keypoints"] for b in batches]), expected[1])
