"""Annealing follows the seeds' worked example; unfreezing warms the backbone lr up."""

from types import SimpleNamespace

import pytest
import torch

from mvcore.training.callbacks import AnnealWeight, UnfreezeBackbone, anneal_value

SEED_SCHEDULE = dict(init_val=0.0, increase_factor=0.01, final_val=1.0, freeze_until_epoch=60)


@pytest.mark.parametrize("epoch, expected", [
    (0, 0.0), (59, 0.0), (60, 0.0), (61, 0.01), (110, 0.5), (159, 0.99), (160, 1.0), (300, 1.0),
])
def test_anneal_schedule_matches_the_seeds_example(epoch, expected):
    assert anneal_value(epoch, **SEED_SCHEDULE) == pytest.approx(expected)


def test_anneal_callback_writes_the_module_buffer():
    module = SimpleNamespace(anneal_weight=torch.tensor(1.0))
    callback = AnnealWeight("anneal_weight", **SEED_SCHEDULE)
    for epoch, expected in ((0, 0.0), (61, 0.01), (200, 1.0)):
        callback.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        assert float(module.anneal_weight) == pytest.approx(expected)


def _trainer(epoch: int, step: int, head_lr: float = 1e-3):
    groups = [{"name": "backbone", "lr": head_lr}, {"name": "head", "lr": head_lr}]
    return SimpleNamespace(current_epoch=epoch, global_step=step,
                           optimizers=[SimpleNamespace(param_groups=groups)])


def test_unfreeze_by_epoch_holds_then_warms_up_to_the_head_lr():
    callback = UnfreezeBackbone(unfreeze_epoch=2)
    lrs = []
    for epoch in range(0, 10):
        trainer = _trainer(epoch, 0)
        callback.on_train_batch_start(trainer, None, None, 0)
        lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
    assert lrs[:2] == [0.0, 0.0]
    assert lrs[2] == pytest.approx(1e-4) and lrs[3] == pytest.approx(1.5e-4)
    assert callback.done and lrs[-1] == pytest.approx(1e-3)


def test_unfreeze_needs_exactly_one_trigger():
    with pytest.raises(ValueError):
        UnfreezeBackbone()
    with pytest.raises(ValueError):
        UnfreezeBackbone(unfreeze_epoch=1, unfreeze_step=1)
