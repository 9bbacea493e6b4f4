"""mv-losses registers every loss lazily; each is a Loss whose Params forbid unknown keys,
that passes the loss-plugin contract (``mvcore.testing.check_loss``) and that training builds
from a config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mv_losses.plugin import LOSSES
from pydantic import ValidationError

from mvcore import CameraTensors, Context
from mvcore.build import build_losses, plan_run
from mvcore.config.load import parse_config
from mvcore.data.heatmaps import render_heatmaps
from mvcore.geometry import project_points, triangulate_pairs
from mvcore.losses.base import Loss, loss_signature, required_inputs
from mvcore.plugin.components import load_components
from mvcore.testing import check_loss

EXPECTED = {
    # name: (supervised, annealed, required inputs)
    "heatmap_mse": (True, False, {"heatmaps_targ", "heatmaps_pred"}),
    "heatmap_kl": (True, False, {"heatmaps_targ", "heatmaps_pred"}),
    "heatmap_js": (True, False, {"heatmaps_targ", "heatmaps_pred"}),
    "pca_singleview": (False, True, {"keypoints_pred"}),
    "pca_multiview": (False, True, {"keypoints_pred"}),
    "temporal": (False, True, {"keypoints_pred"}),
    "supervised_pairwise_projections": (True, True, {"keypoints_targ_3d", "keypoints_pred_3d"}),
    "supervised_reprojection_heatmap_mse": (
        True,
        True,
        {"heatmaps_targ", "keypoints_pred_2d_reprojected"},
    ),
    "multiview_reprojection": (False, True, {"keypoints_pred", "cameras"}),
}
#: params ``check_loss`` builds a loss with (its toy project: 2 views, 3 keypoints, 40 labels)
CONTRACT_PARAMS = {"pca_singleview": {"components_to_keep": 2}}


@pytest.fixture(scope="module")
def registry():
    return load_components(refresh=True).losses


def test_every_name_is_registered_lazily(registry):
    assert set(LOSSES) == set(EXPECTED)
    for name, target in LOSSES.items():
        assert isinstance(target, str) and ":" in target
        entry = registry.entry(name)
        assert entry.provider == "mv-losses"
        assert entry.target == target


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_resolves_to_a_loss_with_its_flags(registry, name):
    cls = registry.get(name)
    supervised, annealed, inputs = EXPECTED[name]
    assert issubclass(cls, Loss)
    assert cls.loss_name == name
    assert (cls.supervised, cls.annealed) == (supervised, annealed)
    assert required_inputs(cls) == inputs
    signature = loss_signature(cls)
    assert signature.required == inputs and not signature.unknown
    assert not signature.takes_all  # each loss receives exactly the inputs it names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_params_forbid_unknown_keys_and_accept_defaults(registry, name):
    params_cls = registry.get(name).Params
    defaults = params_cls()
    assert params_cls.model_validate(defaults.model_dump()) == defaults
    with pytest.raises(ValidationError, match="extra"):
        params_cls.model_validate({"log_weight": 1.0, "log_wieght": 2.0})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_loss_passes_the_plugin_contract(registry, name):
    """What training really feeds every loss (values, gradients, NaN labels, frames without
    calibration, float64, pickling, state_dict), as ``mvcore.testing`` checks it."""
    cls = registry.get(name)
    loss = check_loss(cls, params=CONTRACT_PARAMS.get(name))
    assert isinstance(loss, cls)


def test_losses_built_from_a_config_and_summed(rig, context):
    """All losses selected by a config and built as training does (``plan_run`` then
    ``build_losses``), then run on one batch of consistent inputs."""
    b, v, k = 6, 2, 3
    cams = rig(v)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    g = torch.Generator().manual_seed(0)
    train_3d = 80 * torch.randn(40, k, 3, generator=g, dtype=torch.float64)
    train = project_points(train_3d, *args).numpy()  # (40, V, K, 2) frame px
    config = parse_config({
        "model": {
            "heatmap_loss_type": "mse",
            "losses_to_use": [
                "pca_singleview",
                "pca_multiview",
                "temporal",
                "multiview_reprojection",
            ],
        },
        "losses": {
            **{name: {} for name in EXPECTED if name != "heatmap_mse"},
            "pca_singleview": {"components_to_keep": 2},
        },
    })
    ctx = context(train, view_names=["a", "b"], keypoint_names=["p", "q", "r"], image_size=64)
    assert isinstance(ctx, Context) and ctx.heatmap_size == (16, 16)
    plan = plan_run(config, load_components(refresh=True), ctx)
    assert set(plan.loss_names) == set(EXPECTED)
    supervised, unsupervised = build_losses(plan, ctx)
    assert set(supervised.names()) == {n for n, flags in EXPECTED.items() if flags[0]}
    assert set(unsupervised.names()) == {n for n, flags in EXPECTED.items() if not flags[0]}
    points_3d = 80 * torch.randn(b, k, 3, generator=g, dtype=torch.float64)
    pix = project_points(points_3d, *args)  # (B, V, K, 2)
    model_px = 8 + 48 * torch.rand(b, v * k, 2, generator=g, dtype=torch.float64)
    heatmaps = render_heatmaps(model_px, (64, 64), (16, 16))
    inputs = {
        "heatmaps_targ": heatmaps,
        "heatmaps_pred": heatmaps,
        "keypoints_pred": pix.reshape(b, -1),
        "confidences": torch.ones(b, v * k),
        "keypoints_targ_3d": points_3d,
        "keypoints_pred_3d": triangulate_pairs(pix, *args),
        "keypoints_pred_2d_reprojected": model_px,
        "cameras": CameraTensors(*(t.expand(b, *t.shape) for t in args)),
        "has_calibration": torch.ones(b, dtype=torch.bool),
    }
    total = torch.zeros((), dtype=torch.float64)
    logs = []
    for factory in (supervised, unsupervised):
        part, part_logs = factory(stage="train", anneal_weight=0.5, **inputs)
        total = total + part
        logs.extend(part_logs)
    assert torch.isfinite(total)
    values = {log["name"]: float(log["value"]) for log in logs}
    for name in EXPECTED:
        assert f"train_{name}_loss" in values and f"{name}_weight" in values
    assert np.isfinite(list(values.values())).all()
    # consistent inputs: the supervised losses are ~0, multiview_reprojection below its epsilon
    for name in EXPECTED:
        if EXPECTED[name][0]:
            assert values[f"train_{name}_loss"] < 1e-6
    assert values["train_multiview_reprojection_loss"] == 0.0
    assert values["train_temporal_loss"] > 1.0  # random poses in consecutive rows
    expected_total = sum(
        values[f"train_{name}_loss_weighted"] * (0.5 if EXPECTED[name][1] else 1.0)
        for name in EXPECTED
    )
    assert float(total) == pytest.approx(expected_total, rel=1e-5)


@pytest.mark.parametrize("name", ["supervised_pairwise_projections", "multiview_reprojection",
                                  "temporal"])
def test_an_epsilon_list_of_the_wrong_length_is_refused_before_training(registry, name):
    from mvcore import ParamError
    from mvcore.testing import toy_context

    cls = registry.get(name)
    context = toy_context(num_views=2, num_keypoints=3)
    cls.validate_context(cls.Params(epsilon=[1.0, 2.0, 3.0]), context)  # one per body part
    cls.validate_context(cls.Params(epsilon=[1.0]), context)
    with pytest.raises(ParamError) as info:
        cls.validate_context(cls.Params(epsilon=[1.0, 2.0]), context)
    assert info.value.field == "epsilon"
    assert "has 2 values; give 1 or one per body part (3)" in info.value.message


@pytest.mark.parametrize("name, foreign", [("pca_singleview", "mirrored_column_matches"),
                                           ("pca_multiview", "columns_for_singleview_pca"),
                                           ("pca_multiview", "centering_method")])
def test_a_pca_option_of_the_other_pca_loss_is_an_unknown_key(registry, name, foreign):
    with pytest.raises(ValidationError, match="extra"):
        registry.get(name).Params.model_validate({foreign: None})
