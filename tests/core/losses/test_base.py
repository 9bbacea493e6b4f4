"""The Loss base class: weight, epsilon, reduction, logs, declared inputs, construction."""

import math

import pytest
import torch
from fake_plugins import BoneLengthLoss, BoneParams, NeedsMagicLoss

from mvcore.losses.base import Loss, LossParams, loss_signature, required_inputs
from mvcore.testing import check_loss, toy_context

CONTEXT = toy_context()


def make(**params) -> Loss:
    return Loss(LossParams(**params), CONTEXT)


@pytest.mark.parametrize("log_weight, weight", [(0.0, 0.5), (3.0, 0.0248935), (3.5, 0.0150987)])
def test_weight_is_one_over_two_exp_log_weight(log_weight, weight):
    assert float(make(log_weight=log_weight).weight) == pytest.approx(weight, rel=1e-5)


def test_rectify_epsilon_scalar_and_per_keypoint():
    loss = torch.tensor([[0.5, 2.0], [1.5, 0.3]])
    assert torch.equal(make(epsilon=1.0).rectify_epsilon(loss), torch.tensor([[0, 1.0], [0.5, 0]]))
    per_kp = make(epsilon=[0.1, 0.3]).rectify_epsilon(loss)
    assert torch.allclose(per_kp, torch.tensor([[0.4, 1.7], [1.4, 0.0]]))


def test_reduce_loss_and_empty_input_keeps_graph():
    base = make()
    values = torch.tensor([1.0, 2.0, 3.0])
    assert base.reduce_loss(values) == 2.0 and base.reduce_loss(values, "sum") == 6.0
    empty = torch.zeros(0, requires_grad=True)
    reduced = base.reduce_loss(empty)
    assert reduced.item() == 0.0 and reduced.requires_grad
    with pytest.raises(KeyError, match="median"):
        base.reduce_loss(values, "median")


def test_log_loss_names():
    loss = BoneLengthLoss(BoneParams(log_weight=math.log(0.5)), CONTEXT)
    logs = loss.log_loss(torch.tensor(2.0), "val")
    assert logs[0]["name"] == "val_acme_bone_length_loss" and logs[0]["value"] == 2.0
    assert logs[1]["name"] == "acme_bone_length_weight" and logs[1]["value"] == 1.0


def test_abstract_methods_raise():
    with pytest.raises(NotImplementedError):
        make().remove_nans()
    with pytest.raises(NotImplementedError):
        make().compute_loss()
    with pytest.raises(NotImplementedError):
        make()(stage="train")


def test_construction_takes_the_validated_params_object():
    with pytest.raises(TypeError, match=r"BoneLengthLoss\(BoneParams\(...\), context\)"):
        BoneLengthLoss(LossParams(), CONTEXT)  # the base Params, not the loss's own
    with pytest.raises(TypeError):
        BoneLengthLoss(bones=[(0, 1)])  # the old keyword constructor is gone
    with pytest.raises(ValueError, match="log_weight null"):
        BoneLengthLoss(BoneParams(log_weight=None), CONTEXT)


def test_required_inputs_come_from_the_signature():
    assert required_inputs(BoneLengthLoss) == {"keypoints_pred"}
    assert required_inputs(NeedsMagicLoss) == {"magic_input"}
    signature = loss_signature(NeedsMagicLoss)
    assert signature.unknown == {"magic_input"} and not signature.takes_all


def test_signature_separates_required_optional_and_kwargs():
    class Mixed(Loss):
        loss_name = "mixed"

        def __call__(self, keypoints_pred, confidences=None, stage=None, **kwargs):
            raise AssertionError

    signature = loss_signature(Mixed)
    assert signature.required == {"keypoints_pred"}
    assert signature.optional == {"confidences"}
    assert signature.takes_all and not signature.unknown


def test_buffers_move_and_are_saved():
    loss = BoneLengthLoss(BoneParams(bones=[(0, 1), (1, 2)]), CONTEXT)
    assert set(loss.state_dict()) == {"log_weight", "epsilon", "bones"}
    assert loss.to(torch.float64).log_weight.dtype == torch.float64


def test_contract_check_passes_for_a_third_party_style_loss():
    loss = check_loss(BoneLengthLoss, params={"bones": [[0, 1], [1, 2]]})
    assert loss.bones.tolist() == [[0, 1], [1, 2]]
