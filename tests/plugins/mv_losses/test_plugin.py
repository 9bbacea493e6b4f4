"""mv-losses registers every loss lazily; each is a Loss whose Params forbid unknown keys."""

from __future__ import annotations

import pytest
from mv_losses.plugin import LOSSES
from pydantic import ValidationError

from mvcore.losses.base import Loss, required_inputs
from mvcore.plugin.components import load_components

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
    "multiview_reprojection": (False, True, {"keypoints_pred", "intrinsics", "extrinsics"}),
}


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


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_params_forbid_unknown_keys_and_accept_defaults(registry, name):
    params_cls = registry.get(name).Params
    defaults = params_cls()
    assert params_cls.model_validate(defaults.model_dump()) == defaults
    with pytest.raises(ValidationError, match="extra"):
        params_cls.model_validate({"log_weight": 1.0, "log_wieght": 2.0})


def test_factory_builds_and_sums_every_loss(registry, rig, data_module):
    """All losses built by the LossFactory from a config, then run on one batch of inputs."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from mvcore.data.heatmaps import render_heatmaps
    from mvcore.geometry import project_points, triangulate_pairs
    from mvcore.losses.base import LossContext
    from mvcore.losses.factory import LossFactory

    b, v, k = 6, 2, 3
    intr, extr, dist = rig(v)
    g = torch.Generator().manual_seed(0)
    train_3d = 80 * torch.randn(40, k, 3, generator=g, dtype=torch.float64)
    train = project_points(train_3d, intr, extr, dist).numpy()  # (40, V, K, 2) frame px
    config = SimpleNamespace(
        model=SimpleNamespace(
            heatmap_loss_type="mse",
            losses_to_use=[
                "pca_singleview",
                "pca_multiview",
                "temporal",
                "multiview_reprojection",
            ],
        ),
        losses={name: {} for name in EXPECTED if name != "heatmap_mse"},
    )
    config.losses["pca_singleview"] = {"components_to_keep": 2}
    context = LossContext(
        view_names=["a", "b"],
        keypoint_names=["p", "q", "r"],
        image_height=64,
        image_width=64,
        heatmap_height=16,
        heatmap_width=16,
    )
    factory = LossFactory.from_config(
        config, registry, data_module=data_module(train), context=context
    )
    assert set(factory.names()) == set(EXPECTED)
    points_3d = 80 * torch.randn(b, k, 3, generator=g, dtype=torch.float64)
    pix = project_points(points_3d, intr, extr, dist)  # (B, V, K, 2)
    model_px = 8 + 48 * torch.rand(b, v * k, 2, generator=g, dtype=torch.float64)
    heatmaps = render_heatmaps(model_px, (64, 64), (16, 16))
    inputs = {
        "heatmaps_targ": heatmaps,
        "heatmaps_pred": heatmaps,
        "keypoints_pred": pix.reshape(b, -1),
        "confidences": torch.ones(b, v * k),
        "keypoints_targ_3d": points_3d,
        "keypoints_pred_3d": triangulate_pairs(pix, intr, extr, dist),
        "keypoints_pred_2d_reprojected": model_px,
        "intrinsics": intr,
        "extrinsics": extr,
        "distortions": dist,
    }
    total, logs = factory(stage="train", anneal_weight=0.5, **inputs)
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
