"""Which checkpoint prediction loads: ``best.ckpt``, else ``last.ckpt`` with a warning that
says so and why; an explicit ``last`` or file is taken as given."""

from __future__ import annotations

import warnings

import pytest

from mvcore.errors import MvcoreError
from mvcore.predict.model_io import resolve_checkpoint


def _model(tmp_path, *names: str):
    (tmp_path / "checkpoints").mkdir()
    for name in names:
        (tmp_path / "checkpoints" / name).write_bytes(b"x")
    return tmp_path


def test_best_is_used_when_there_is_one(tmp_path):
    model = _model(tmp_path, "best.ckpt", "last.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_checkpoint(model) == model / "checkpoints" / "best.ckpt"


def test_without_best_the_last_checkpoint_is_used_and_said_so(tmp_path):
    model = _model(tmp_path, "last.ckpt")
    with pytest.warns(UserWarning) as caught:
        assert resolve_checkpoint(model, "best") == model / "checkpoints" / "last.ckpt"
    assert [str(w.message) for w in caught] == [
        f"{model} has no checkpoints/best.ckpt (validation never measured an error in its run: "
        "it runs every training.check_val_every_n_epoch epochs); using "
        f"{model / 'checkpoints' / 'last.ckpt'}, the last epoch's weights"]


def test_an_explicit_checkpoint_wins(tmp_path):
    model = _model(tmp_path, "best.ckpt", "last.ckpt", "epoch0001.ckpt")
    other = model / "checkpoints" / "epoch0001.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_checkpoint(model, "last") == model / "checkpoints" / "last.ckpt"
        assert resolve_checkpoint(model, str(other)) == other


def test_no_checkpoint_at_all_is_an_error(tmp_path):
    model = _model(tmp_path)
    with pytest.raises(MvcoreError, match="best.ckpt not found"):
        resolve_checkpoint(model)
