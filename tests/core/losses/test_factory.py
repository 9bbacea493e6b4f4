"""LossFactory: each loss gets the inputs it declares; weighting, annealing and logs."""

import pytest
import torch
from fake_plugins import SquaredErrorLoss

from mvcore.losses.base import Loss, LossParams
from mvcore.losses.factory import LossFactory
from mvcore.testing import toy_context

CONTEXT = toy_context()


class Toy3DLoss(Loss):
    """Takes everything (``**kwargs``), as a Lightning Pose guide loss does."""

    loss_name = "supervised_toy_3d"

    def __call__(self, keypoints_targ_3d, stage=None, **kwargs):
        self.seen = set(kwargs)
        scalar = keypoints_targ_3d.abs().mean()
        return self.weight * scalar, self.log_loss(scalar, stage)


INPUTS = {
    "heatmaps_targ": torch.ones(2, 3, 4, 4),
    "heatmaps_pred": torch.zeros(2, 3, 4, 4),
    "keypoints_targ_3d": torch.full((2, 3, 3), 2.0),
    "keypoints_pred": torch.arange(24.0).reshape(2, 12),
}


def factory() -> LossFactory:
    return LossFactory({"heatmap_mse": SquaredErrorLoss(LossParams(), CONTEXT),
                        "supervised_toy_3d": Toy3DLoss(LossParams(), CONTEXT)})


def test_weighted_sum_annealing_and_logs():
    losses = factory()
    heat = 0.5 * 1.0  # weight 0.5 x mean squared error 1
    toy = 0.5 * 2.0
    total, logs = losses(stage="train", anneal_weight=0.25, **INPUTS)
    assert total.item() == pytest.approx(heat + 0.25 * toy)
    full, _ = losses(stage="val", anneal_weight=None, **INPUTS)
    assert full.item() == pytest.approx(heat + toy)
    names = {item["name"]: float(item["value"]) for item in logs}
    assert names["train_heatmap_mse_loss"] == 1.0
    assert names["train_heatmap_mse_loss_weighted"] == 0.5
    assert names["train_supervised_toy_3d_loss_weighted"] == pytest.approx(toy)
    assert names["train_supervised_toy_3d_loss_annealed"] == pytest.approx(0.25 * toy)
    assert "train_heatmap_mse_loss_annealed" not in names


def test_each_loss_receives_only_what_it_declares_unless_it_takes_kwargs():
    losses = factory()
    # SquaredErrorLoss has no **kwargs: extra inputs would be a TypeError if passed
    losses(stage="train", **INPUTS)
    assert losses.losses["supervised_toy_3d"].seen == {
        "heatmaps_targ", "heatmaps_pred", "keypoints_pred"}
    assert losses.declared_inputs() == {"heatmaps_targ", "heatmaps_pred", "keypoints_targ_3d"}


def test_losses_are_submodules_that_follow_the_module():
    losses = factory()
    assert set(losses.state_dict()) == {
        f"losses.{name}.{buffer}" for name in ("heatmap_mse", "supervised_toy_3d")
        for buffer in ("log_weight", "epsilon")}
    assert losses.to(torch.float64).losses["heatmap_mse"].log_weight.dtype == torch.float64
    empty_total, empty_logs = LossFactory()(stage="train")
    assert empty_total.item() == 0.0 and empty_logs == []
