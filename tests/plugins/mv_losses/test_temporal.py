"""temporal: consecutive-frame displacement, epsilon, confidence removal."""

from __future__ import annotations

import math

import pytest
import torch
from mv_losses.temporal import TemporalLoss

from mvcore.losses.base import LossContext

S2, S3 = math.sqrt(2), math.sqrt(3)


def _value(loss, *args, **kwargs) -> float:
    return float(loss(*args, stage="train", **kwargs)[1][0]["value"])


def test_constant_predictions_give_zero_and_logs():
    loss = TemporalLoss()
    weighted, logs = loss(torch.ones(12, 32), stage="train")
    assert float(weighted) == 0.0
    assert logs[0]["name"] == "train_temporal_loss" and logs[1]["name"] == "temporal_weight"
    assert TemporalLoss.supervised is False and TemporalLoss.annealed
    params = TemporalLoss.Params()
    assert (params.log_weight, params.epsilon, params.prob_threshold) == (0.0, 0.0, 0.0)


def test_known_values_mean_over_pairs_and_epsilon():
    preds = torch.tensor([[0.0, 0.0], [S2, S2], [S3 + S2, S3 + S2]])  # steps 2 and sqrt(6)
    assert _value(TemporalLoss(), preds) == pytest.approx((2 + math.sqrt(6)) / 2)
    assert _value(TemporalLoss(epsilon=2.1), preds) == pytest.approx((math.sqrt(6) - 2.1) / 2)
    loss = TemporalLoss(log_weight=2.0)
    weighted, logs = loss(preds, stage="train")
    assert torch.isclose(weighted, loss.weight * logs[0]["value"])


def test_per_keypoint_and_per_body_part_epsilon():
    # 2 views x 2 body parts; every keypoint moves by 1, 2, 3, 4 px
    step = torch.tensor([1.0, 2.0, 3.0, 4.0])
    preds = torch.stack([torch.zeros(4), step], 0).repeat_interleave(2, dim=1)
    preds[:, 1::2] = 0.0  # move along x only
    per_keypoint = TemporalLoss(epsilon=[0.5, 0.0, 3.5, 5.0])
    assert _value(per_keypoint, preds) == pytest.approx((0.5 + 2.0 + 0.0 + 0.0) / 4)
    ctx = LossContext(view_names=["a", "b"], keypoint_names=["p", "q"])
    per_part = TemporalLoss(epsilon=[1.0, 0.0], context=ctx)  # repeated for every view
    assert _value(per_part, preds) == pytest.approx((0.0 + 2.0 + 2.0 + 4.0) / 4)
    with pytest.raises(ValueError, match="epsilon has 3 values"):
        _value(TemporalLoss(epsilon=[1.0, 0.0, 2.0], context=ctx), preds)


def test_low_confidence_entries_are_removed_not_counted():
    preds = torch.zeros(3, 4)
    preds[1, 0] = 10.0  # keypoint 0 jumps 10 px (t0->t1) and back (t1->t2)
    preds[1:, 2] = 1.0  # keypoint 1 moves 1 px once
    conf = torch.tensor([[0.9, 0.9], [0.1, 0.9], [0.9, 0.9]])
    loss = TemporalLoss(prob_threshold=0.5)
    # keypoint 0 is removed in both pairs (frame 1 unconfident): mean of keypoint 1's [1, 0]
    assert _value(loss, preds, confidences=conf) == pytest.approx(0.5)
    assert _value(loss, preds) == pytest.approx((10 + 10 + 1 + 0) / 4)
    assert _value(TemporalLoss(prob_threshold=0.05), preds, confidences=conf) == pytest.approx(
        (10 + 10 + 1 + 0) / 4
    )


def test_nan_predictions_are_removed_with_finite_gradients():
    preds = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 1.0, 0.0], [3.0, 4.0, 2.0, 0.0]], dtype=torch.float64
    )
    preds[2, 0] = float("nan")
    preds.requires_grad_(True)
    weighted, logs = TemporalLoss()(preds, stage="train")
    weighted.backward()
    assert float(logs[0]["value"]) == pytest.approx((5.0 + 1.0 + 1.0) / 3)
    assert logs[0]["value"].dtype == torch.float64
    assert torch.isfinite(preds.grad).all()
    assert preds.grad[0, 0] != 0  # valid pair (t0, t1) of keypoint 0 still pulls
    # keypoint 1 is constant in y at t1 -> t2 (zero step): finite, zero gradient there
    assert preds.grad[2, 3] == 0


def test_nothing_valid_is_graph_preserving_zero():
    for preds in (torch.ones(1, 6), torch.full((3, 4), float("nan"))):
        preds.requires_grad_(True)
        weighted, logs = TemporalLoss()(preds, stage="train")
        weighted.backward()
        assert float(logs[0]["value"]) == 0.0 and torch.isfinite(preds.grad).all()
