"""The Lightning module builds the loss inputs of a batch, computing on-demand inputs exactly
when a loss declares them, with and without calibration."""

import ast
import math
from pathlib import Path

import pytest
import torch
from fake_plugins import SquaredErrorLoss, TinyBackbonePlugin

from mvcore import hookimpl
from mvcore.build import build_backbone, build_losses, plan_run
from mvcore.config.load import parse_config
from mvcore.contracts import LOSS_INPUTS
from mvcore.errors import MissingLossInputError
from mvcore.geometry import CameraTensors, apply_homography, project_points, triangulate
from mvcore.losses.base import Loss
from mvcore.plugin.components import build_components
from mvcore.plugin.manager import get_plugin_manager
from mvcore.testing import toy_context
from mvcore.training.module import MultiviewPoseModule, _mean, _pixel_error_sum

CONTEXT = toy_context(num_views=2, num_keypoints=3, image_size=32)


class Pairwise3D(Loss):
    loss_name = "supervised_toy_pairs"

    def forward(self, *, keypoints_targ_3d, keypoints_pred_3d, stage=None):
        diff = (keypoints_pred_3d - keypoints_targ_3d[:, None]).norm(dim=-1)
        scalar = self.reduce_loss(diff[torch.isfinite(diff)])
        return self.weight * scalar, self.log_loss(scalar, stage)


class Reprojected(Loss):
    """A third-party supervised loss on the reprojected keypoints (under any name)."""

    loss_name = "acme_reprojected"

    def forward(self, *, keypoints_targ, keypoints_pred_2d_reprojected, stage=None):
        targ = keypoints_targ.reshape(keypoints_pred_2d_reprojected.shape)
        diff = (keypoints_pred_2d_reprojected - targ).norm(dim=-1)
        scalar = self.reduce_loss(diff[torch.isfinite(diff)])
        return self.weight * scalar, self.log_loss(scalar, stage)


class Losses:
    @hookimpl
    def mvcore_register_losses(self, registry):
        for cls in (SquaredErrorLoss, Pairwise3D, Reprojected):
            registry.add(cls)


@pytest.fixture
def components():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(TinyBackbonePlugin(), name="tiny")
    manager.register(Losses(), name="toy-losses")
    return build_components(manager)


def _config(**losses):
    return parse_config({
        "data": {"image_resize_dims": {"height": 32, "width": 32}},
        "model": {"model_type": "tiny_conv"},
        "training": {"imgaug": "none", "imgaug_3d": False},
        "losses": losses,
    })


def _module(components, context=CONTEXT, **losses):
    config = _config(**losses)
    plan = plan_run(config, components, context)
    return MultiviewPoseModule(config, build_backbone(plan, context), context,
                               *build_losses(plan, context))


def _batch(b=2, v=2, k=3, size=32):
    g = torch.Generator().manual_seed(0)
    angles = torch.tensor([0.0, math.pi / 2])
    rot = torch.zeros(v, 3, 3)
    rot[:, 0, 0], rot[:, 0, 2] = torch.cos(angles), torch.sin(angles)
    rot[:, 1, 1] = 1
    rot[:, 2, 0], rot[:, 2, 2] = -torch.sin(angles), torch.cos(angles)
    extrinsics = torch.cat([rot, torch.tensor([[0.0], [0.0], [10.0]]).expand(v, 3, 1)], -1)
    intrinsics = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(v, 3, 3)
    return {
        "images": torch.randn(b, v, 3, size, size, generator=g),
        "keypoints": 8 + 16 * torch.rand(b, v, k, 2, generator=g),
        "heatmaps": torch.softmax(torch.randn(b, v, k, 64, generator=g), -1).reshape(
            b, v, k, 8, 8),
        "bbox": torch.tensor([0.0, 0.0, size, size]).expand(b, v, 4).clone(),
        "transforms": torch.eye(3).expand(b, v, 3, 3).clone(),
        "cameras": CameraTensors(intrinsics.expand(b, v, 3, 3).clone(),
                                 extrinsics.expand(b, v, 3, 4).clone(), torch.zeros(b, v, 5)),
        "has_calibration": torch.tensor([True, False]),
        "keypoints_3d": torch.randn(b, k, 3, generator=g),
        "aug_stats": {"aug_skipped": torch.zeros(b)},
    }


def test_every_on_demand_input_has_one_producer():
    on_demand = {name for name, spec in LOSS_INPUTS.items() if spec.on_demand}
    module = MultiviewPoseModule(_config(), None, CONTEXT)
    assert set(module.producers) == on_demand


def test_loss_inputs_shapes_and_3d_only_for_calibrated_samples(components):
    module = _module(components, supervised_toy_pairs={"log_weight": 0.0})
    wanted = module.loss_supervised.declared_inputs()
    inputs = module.loss_inputs(_batch(), wanted)
    assert inputs["heatmaps_pred"].shape == (2, 6, 8, 8)
    assert inputs["keypoints_pred"].shape == (2, 12)
    assert inputs["confidences"].shape == (2, 6)
    pairs = inputs["keypoints_pred_3d"]
    assert pairs.shape == (2, 1, 3, 3)
    assert torch.isfinite(pairs[0]).all() and torch.isnan(pairs[1]).all()
    assert inputs["has_calibration"].tolist() == [True, False]
    assert inputs["cameras"].intrinsics.shape == (2, 2, 3, 3)
    # only what a loss declares is computed
    assert "keypoints_pred_3d_triangulated" not in inputs
    assert "keypoints_pred_2d_reprojected" not in inputs
    total, _ = module.loss_supervised(stage="train", **inputs)
    total.backward()
    grads = [p.grad for p in module.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_third_party_loss_on_reprojected_keypoints_trains(components):
    module = _module(components, acme_reprojected={"log_weight": 0.0})
    batch = _batch()
    total = module.training_step(batch, 0)
    assert torch.isfinite(total)
    inputs = module.loss_inputs(batch, module.loss_supervised.declared_inputs())
    reprojected = inputs["keypoints_pred_2d_reprojected"]
    assert reprojected.shape == (2, 6, 2)
    assert torch.isfinite(reprojected[0]).all() and torch.isnan(reprojected[1]).all()
    # only declared inputs are handed over (the triangulation was computed on the way)
    assert "keypoints_pred_3d" not in inputs and "keypoints_pred_3d_triangulated" not in inputs
    # the reprojection of the all-view triangulation, in model pixels of this batch
    cams = batch["cameras"]
    points = inputs["keypoints_pred_augmented"].detach().reshape(2, 2, 3, 2)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    expected = project_points(triangulate(points, *args), *args)  # frame = model pixels here
    torch.testing.assert_close(reprojected[0].detach(), expected[0].reshape(6, 2),
                               atol=1e-3, rtol=0)


def test_augmentation_is_undone_for_keypoints_pred(components):
    module = _module(components)
    batch = _batch()
    shift = torch.eye(3).expand(2, 2, 3, 3).clone()
    shift[..., 0, 2] = 3.0  # augmentation moved everything 3 px to the right
    batch["transforms"] = shift
    inputs = module.loss_inputs(batch)
    augmented = inputs["keypoints_pred_augmented"].reshape(2, 2, 3, 2)
    original = inputs["keypoints_pred"].reshape(2, 2, 3, 2)
    assert torch.allclose(augmented[..., 0] - original[..., 0], torch.full((2, 2, 3), 3.0))
    assert torch.allclose(apply_homography(original, shift), augmented, atol=1e-5)


def test_uncalibrated_project_with_3d_loss_fails_before_training(components):
    context = toy_context(num_views=2, num_keypoints=3, image_size=32, calibrated=False)
    with pytest.raises(MissingLossInputError, match="requires keypoints_pred_3d, "
                                                    "keypoints_targ_3d, which exist only"):
        _module(components, context, supervised_toy_pairs={"log_weight": 0.0})


def _code_strings(path: Path) -> set[str]:
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings}


def test_the_core_names_no_loss_and_tests_no_input_substring():
    root = Path(__file__).resolve().parents[3]
    plugin = ast.parse((root / "plugins/mv_losses/src/mv_losses/plugin.py").read_text())
    names = {key.value for node in ast.walk(plugin) if isinstance(node, ast.Dict)
             for key in node.keys if isinstance(key, ast.Constant)}
    assert "supervised_reprojection_heatmap_mse" in names
    offenders = []
    for path in sorted((root / "mvcore").rglob("*.py")):
        for text in _code_strings(path):
            if any(name in text for name in names) or text in {"3d", "reprojected", "_3d"}:
                offenders.append(f"{path.relative_to(root)}: {text!r}")
    assert not offenders, offenders


def test_pixel_error_over_no_measured_keypoint_is_nan_never_zero():
    targ = torch.tensor([[0.0, 0.0, 3.0, 4.0], [float("nan")] * 4])
    pred = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    total, count = _pixel_error_sum({"keypoints_targ": targ, "keypoints_pred_augmented": pred})
    assert (float(total), float(count)) == (6.0, 2.0)  # distances 1 and 5; the NaN row skipped
    assert float(_mean(total, count)) == 3.0
    nothing = {"keypoints_targ": targ,
               "keypoints_pred_augmented": torch.full_like(pred, torch.nan)}
    total, count = _pixel_error_sum(nothing)
    assert float(count) == 0.0 and math.isnan(float(_mean(total, count)))
