"""A NaN or infinite loss stops the step that made it, naming the loss, the step and the
epoch; NaN weights are caught before a checkpoint could save them."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mvcore.training.guard import Diverged, FiniteGuard, check_finite_loss, first_non_finite


def _module(step: int = 7, epoch: int = 2) -> SimpleNamespace:
    return SimpleNamespace(trainer=None, global_step=step, current_epoch=epoch)


def _logs(**values: float) -> list[dict]:
    return [{"name": name, "value": torch.tensor(value)} for name, value in values.items()]


def test_a_finite_loss_passes():
    check_finite_loss(_module(), torch.tensor(0.5), _logs(train_a_loss=0.5))


def test_a_nan_loss_names_the_loss_term_the_step_and_the_epoch():
    logs = _logs(train_a_loss=0.1, a_weight=1.0, train_b_loss=float("nan"),
                 train_b_loss_weighted=float("nan"), train_c_loss=float("inf"))
    with pytest.raises(Diverged) as info:
        check_finite_loss(_module(step=37, epoch=2), torch.tensor(float("nan")), logs)
    assert str(info.value) == "train_b_loss is nan at step 37 (epoch 2)"


def test_an_infinite_sum_of_finite_terms_names_the_sum():
    with pytest.raises(Diverged, match=r"^train_loss \(the weighted sum of the losses\) is inf "):
        check_finite_loss(_module(), torch.tensor(float("inf")), _logs(train_a_loss=3e38))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.loss_supervised = nn.Module()
        self.loss_supervised.register_buffer("basis", torch.full((2,), float("nan")))
        self.register_buffer("steps", torch.zeros(1, dtype=torch.long))


def test_first_non_finite_names_the_weight_and_ignores_loss_buffers():
    net = _Net()
    assert first_non_finite(net) is None  # the NaN loss buffer is not a weight
    with torch.no_grad():
        net.layer.bias[1] = float("inf")
    assert first_non_finite(net) == "layer.bias"


def test_the_guard_stops_before_checkpoints_save_nan_weights():
    net = _Net()
    net.global_step, net.current_epoch = 12, 3
    with torch.no_grad():
        net.layer.weight[0, 0] = float("nan")
    guard, trainer = FiniteGuard(), SimpleNamespace(sanity_checking=False, world_size=1)
    net.trainer = trainer
    with pytest.raises(Diverged, match=r"network weight layer.weight is not finite after "
                                       r"step 12 \(epoch 3\)"):
        guard.on_train_epoch_end(trainer, net)
    with pytest.raises(Diverged):
        guard.on_validation_end(trainer, net)
    guard.on_validation_end(SimpleNamespace(sanity_checking=True), net)  # not trained yet
