"""temporal: consecutive-frame displacement, epsilon, confidence removal."""

from __future__ import annotations

import math

import pytest
import torch
from mv_losses.temporal import TemporalLoss

from mvcore import Context, ParamError

S2, S3 = math.sqrt(2), math.sqrt(3)
#: 2 views x 2 body parts (what a per-body-part epsilon is repeated over)
CONTEXT = Context(view_names=("a", "b"), keypoint_names=("p", "q"), image_height=64,
                  image_width=64)


def _temporal(context: Context = CONTEXT, **params) -> TemporalLoss:
    return TemporalLoss(TemporalLoss.Params(**params), context)


def _value(loss, preds, **inputs) -> float:
    return float(loss(keypoints_pred=preds, stage="train", **inputs)[1][0]["value"])


def test_constant_predictions_give_zero_and_logs():
    loss = _temporal()
    weighted, logs = loss(keypoints_pred=torch.ones(12, 32), stage="train")
    assert float(weighted) == 0.0
    assert logs[0]["name"] == "train_temporal_loss" and logs[1]["name"] == "temporal_weight"
    assert TemporalLoss.supervised is False and TemporalLoss.annealed
    params = TemporalLoss.Params()
    assert (params.log_weight, params.epsilon, params.prob_threshold) == (0.0, 0.0, 0.0)


def test_known_values_mean_over_pairs_and_epsilon():
    preds = torch.tensor([[0.0, 0.0], [S2, S2], [S3 + S2, S3 + S2]])  # steps 2 and sqrt(6)
    assert _value(_temporal(), preds) == pytest.approx((2 + math.sqrt(6)) / 2)
    assert _value(_temporal(epsilon=2.1), preds) == pytest.approx((math.sqrt(6) - 2.1) / 2)
    loss = _temporal(log_weight=2.0)
    weighted, logs = loss(keypoints_pred=preds, stage="train")
    assert torch.isclose(weighted, loss.weight * logs[0]["value"])


def test_per_keypoint_and_per_body_part_epsilon():
    # 2 views x 2 body parts; every keypoint moves by 1, 2, 3, 4 px
    step = torch.tensor([1.0, 2.0, 3.0, 4.0])
    preds = torch.stack([torch.zeros(4), step], 0).repeat_interleave(2, dim=1)
    preds[:, 1::2] = 0.0  # move along x only
    per_keypoint = _temporal(epsilon=[0.5, 0.0, 3.5, 5.0])
    assert _value(per_keypoint, preds) == pytest.approx((0.5 + 2.0 + 0.0 + 0.0) / 4)
    per_part = _temporal(epsilon=[1.0, 0.0])  # repeated for every view of the context
    assert _value(per_part, preds) == pytest.approx((0.0 + 2.0 + 2.0 + 4.0) / 4)
    # a list that fits neither K nor V * K: refused against the project before building ...
    three = TemporalLoss.Params(epsilon=[1.0, 0.0, 2.0])
    with pytest.raises(ParamError, match="has 3 values") as info:
        TemporalLoss.validate_context(three, CONTEXT)
    assert info.value.field == "epsilon"
    assert "one per body part (2)" in info.value.message
    assert "one per keypoint of every view (4)" in info.value.message
    for fits in ([1.0], [1.0, 0.0], [0.5, 0.0, 3.5, 5.0]):
        TemporalLoss.validate_context(TemporalLoss.Params(epsilon=fits), CONTEXT)
    # ... and by the loss itself if it was built anyway
    with pytest.raises(ValueError, match="epsilon has 3 values"):
        _value(TemporalLoss(three, CONTEXT), preds)


def test_low_confidence_entries_are_removed_not_counted():
    preds = torch.zeros(3, 4)
    preds[1, 0] = 10.0  # keypoint 0 jumps 10 px (t0->t1) and back (t1->t2)
    preds[1:, 2] = 1.0  # keypoint 1 moves 1 px once
    conf = torch.tensor([[0.9, 0.9], [0.1, 0.9], [0.9, 0.9]])
    loss = _temporal(prob_threshold=0.5)
    # keypoint 0 is removed in both pairs (frame 1 unconfident): mean of keypoint 1's [1, 0]
    assert _value(loss, preds, confidences=conf) == pytest.approx(0.5)
    assert _value(loss, preds) == pytest.approx((10 + 10 + 1 + 0) / 4)
    assert _value(_temporal(prob_threshold=0.05), preds, confidences=conf) == pytest.approx(
        (10 + 10 + 1 + 0) / 4
    )


def test_nan_predictions_are_removed_with_finite_gradients():
    preds = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 1.0, 0.0], [3.0, 4.0, 2.0, 0.0]], dtype=torch.float64
    )
    preds[2, 0] = float("nan")
    preds.requires_grad_(True)
    weighted, logs = _temporal()(keypoints_pred=preds, stage="train")
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
        weighted, logs = _temporal()(keypoints_pred=preds, stage="train")
        weighted.backward()
        assert float(logs[0]["value"]) == 0.0 and torch.isfinite(preds.grad).all()


def test_an_epsilon_list_accepted_by_validate_context_is_accepted_by_the_loss():
    preds = torch.zeros(2, 8)
    preds[1, 0] = 3.0  # keypoint 0 moves 3 px
    for epsilon in ([1.0], [1.0, 0.0], [1.0, 0.0, 0.0, 0.0]):
        params = TemporalLoss.Params(epsilon=epsilon)
        TemporalLoss.validate_context(params, CONTEXT)
        assert _value(TemporalLoss(params, CONTEXT), preds) == pytest.approx(2.0 / 4)
