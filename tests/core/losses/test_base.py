"""The Loss base class: weight, epsilon, reduction, logs, declared inputs."""

import math

import pytest
import torch
from fake_plugins import BoneLengthLoss, NeedsMagicLoss

from mvcore.losses.base import Loss, required_inputs
from mvcore.testing import check_loss


@pytest.mark.parametrize("log_weight, weight", [(0.0, 0.5), (3.0, 0.0248935), (3.5, 0.0150987)])
def test_weight_is_one_over_two_exp_log_weight(log_weight, weight):
    assert float(Loss(log_weight=log_weight).weight) == pytest.approx(weight, rel=1e-5)


def test_rectify_epsilon_scalar_and_per_keypoint():
    loss = torch.tensor([[0.5, 2.0], [1.5, 0.3]])
    assert torch.equal(Loss(epsilon=1.0).rectify_epsilon(loss), torch.tensor([[0, 1.0], [0.5, 0]]))
    per_kp = Loss(epsilon=[0.1, 0.3]).rectify_epsilon(loss)
    assert torch.allclose(per_kp, torch.tensor([[0.4, 1.7], [1.4, 0.0]]))


def test_reduce_loss_and_empty_input_keeps_graph():
    base = Loss()
    values = torch.tensor([1.0, 2.0, 3.0])
    assert base.reduce_loss(values) == 2.0 and base.reduce_loss(values, "sum") == 6.0
    empty = torch.zeros(0, requires_grad=True)
    reduced = base.reduce_loss(empty)
    assert reduced.item() == 0.0 and reduced.requires_grad
    with pytest.raises(KeyError, match="median"):
        base.reduce_loss(values, "median")


def test_log_loss_names():
    loss = BoneLengthLoss(log_weight=math.log(0.5))
    logs = loss.log_loss(torch.tensor(2.0), "val")
    assert logs[0]["name"] == "val_acme_bone_length_loss" and logs[0]["value"] == 2.0
    assert logs[1]["name"] == "acme_bone_length_weight" and logs[1]["value"] == 1.0


def test_abstract_methods_raise():
    with pytest.raises(NotImplementedError):
        Loss().remove_nans()
    with pytest.raises(NotImplementedError):
        Loss().compute_loss()
    with pytest.raises(NotImplementedError):
        Loss()(stage="train")


def test_required_inputs_come_from_the_signature():
    assert required_inputs(BoneLengthLoss) == {"keypoints_pred"}
    assert required_inputs(NeedsMagicLoss) == {"magic_input"}


def test_buffers_move_and_are_saved():
    loss = BoneLengthLoss(bones=[(0, 1), (1, 2)])
    assert set(loss.state_dict()) == {"log_weight", "epsilon", "bones"}
    assert loss.to(torch.float64).log_weight.dtype == torch.float64


def test_contract_check_passes_for_a_third_party_style_loss():
    check_loss(BoneLengthLoss, params={"bones": [[0, 1], [1, 2]]})
