"""Checkpoints are complete or absent, a NaN validation epoch is never best, and the random
states travel in the checkpoint so a resumed run draws what the uninterrupted one drew."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import mvcore.training.checkpoints as checkpoints
from mvcore.errors import DataError, MvcoreError
from mvcore.training.checkpoints import (
    AtomicCheckpointIO,
    BestCheckpoint,
    RandomState,
    remove_partial_checkpoints,
)
from mvcore.training.resume import read_checkpoint
from mvcore.training.weights import read_network_weights


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_and_no_partial_file(
        tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def half_then_fail(obj, target):
        Path(target).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_leftovers_of_a_killed_save_are_removed_and_nothing_else(tmp_path):
    for name in (".last.0a1b2c3d.partial.ckpt", ".best.ffff0000.partial.ckpt", "last.ckpt",
                 "best.ckpt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_partial_checkpoints(tmp_path)
    assert [p.name for p in removed] == [".best.ffff0000.partial.ckpt",
                                         ".last.0a1b2c3d.partial.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt", "notes.txt"]
    assert remove_partial_checkpoints(tmp_path / "missing") == []


def test_a_nan_validation_error_is_never_best_not_even_first(tmp_path):
    best = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val_pixel_error")
    # Lightning accepts the first score whatever it is (fewer than k saved)
    assert not best.check_monitor_top_k(None, torch.tensor(float("nan")))
    assert not best.check_monitor_top_k(None, torch.tensor(float("inf")))
    assert best.check_monitor_top_k(None, torch.tensor(3.5))
    assert (best.measured_epochs, best.unmeasured_epochs) == (1, 2)
    restored = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val_pixel_error")
    restored.load_state_dict(best.state_dict())
    assert (restored.measured_epochs, restored.unmeasured_epochs) == (1, 2)


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draw()
    saved = RandomState().state_dict()
    expected = [_draw() for _ in range(3)]
    torch.save({"callbacks": {"RandomState": saved}}, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RandomState"]
    random.seed(2), np.random.seed(2), torch.manual_seed(2)  # a new process
    callback = RandomState()
    callback.load_state_dict(loaded)
    callback.on_train_start(None, None)
    assert [_draw() for _ in range(3)] == expected
    state = torch.get_rng_state()
    callback.on_train_start(None, None)  # restores once, not at every later start
    assert torch.equal(torch.get_rng_state(), state)


def test_a_truncated_checkpoint_is_one_line_naming_it_for_every_reader(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError) as resumed:
        read_checkpoint(path)  # --resume
    with pytest.raises(MvcoreError) as loaded:
        read_network_weights(path)  # prediction, model.checkpoint
    for info, advice in ((resumed, "the file is truncated or damaged - restore it from a "
                                   "copy, or train a new model with --output"),
                         (loaded, "the file is truncated, damaged or not a checkpoint")):
        message = str(info.value)
        assert message == (f"{path}: cannot be read as a checkpoint (PytorchStreamReader "
                           "failed reading zip archive: failed finding central directory); "
                           f"{advice}")
    torch.save({"epoch": 1}, path)
    with pytest.raises(DataError, match=r"not a Lightning checkpoint of mvcore \(no "
                                        r"state_dict\); --resume needs the model directory"):
        read_checkpoint(path)
