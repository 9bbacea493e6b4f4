"""Helpers for testing plugins: a contract check for losses and test-only plugin registration.

A loss plugin's test suite can run::

    from mvcore.testing import check_loss
    from my_pkg.bone import BoneLengthLoss

    def test_contract():
        check_loss(BoneLengthLoss, params={"bones": [[0, 1]]})

``check_loss`` asserts: the class subclasses ``mvcore.Loss``; its ``Params`` forbids unknown
keys; on a toy batch it returns a finite 0-d weighted loss and well-formed logs; gradients
flow to at least one prediction; it moves with ``.to(torch.float64)``; it survives pickling and
``state_dict`` round trips with the same value.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from mvcore.losses.base import Loss, LossContext, required_inputs
from mvcore.plugin.manager import PluginManager

GRAD_INPUTS = ("keypoints_pred", "heatmaps_pred", "keypoints_pred_3d",
               "keypoints_pred_2d_reprojected", "keypoints_pred_augmented")


class ToyDataModule:
    """Stands in for the data module losses may read at construction (e.g. to fit a PCA)."""

    def __init__(self, num_frames: int = 40, num_views: int = 2, num_keypoints: int = 3,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        base = rng.uniform(20, 44, size=(1, num_views, num_keypoints, 2))
        offsets = rng.normal(0, 2, size=(num_frames, 1, 1, 2))
        self._keypoints = base + offsets + rng.normal(0, 0.3, size=(num_frames, num_views,
                                                                     num_keypoints, 2))

    def train_keypoints_frame(self) -> np.ndarray:
        """``(n_train, V, K, 2)`` frame-pixel labels of the training split."""
        return self._keypoints.copy()


def toy_context(num_views: int = 2, num_keypoints: int = 3, image_size: int = 64,
                downsample_factor: int = 2) -> LossContext:
    h = image_size // 2**downsample_factor
    return LossContext(
        view_names=[f"view{v}" for v in range(num_views)],
        keypoint_names=[f"kp{k}" for k in range(num_keypoints)],
        image_height=image_size, image_width=image_size, heatmap_height=h, heatmap_width=h,
        downsample_factor=downsample_factor, has_calibration=True,
    )


def toy_loss_inputs(context: LossContext, batch_size: int = 4, seed: int = 0,
                    dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random but well-formed model outputs with every standard loss-input name."""
    from mvcore.data.heatmaps import render_heatmaps

    g = torch.Generator().manual_seed(seed)
    b, v, k = batch_size, context.num_views, context.num_keypoints
    n, pairs = v * k, v * (v - 1) // 2
    size = (context.image_height, context.image_width)
    hm_size = (context.heatmap_height, context.heatmap_width)
    targ = 16 + torch.rand(b, n, 2, generator=g, dtype=dtype) * (size[1] - 32)
    pred = targ + torch.randn(b, n, 2, generator=g, dtype=dtype)
    heat_targ = render_heatmaps(targ, size, hm_size)
    heat_pred = torch.softmax(
        torch.log(render_heatmaps(pred, size, hm_size) + 1e-6).flatten(-2), -1
    ).reshape_as(heat_targ)
    targ_3d = torch.randn(b, k, 3, generator=g, dtype=dtype)
    angles = torch.linspace(0, math.pi, v, dtype=dtype)
    rot = torch.zeros(v, 3, 3, dtype=dtype)
    rot[:, 0, 0], rot[:, 0, 2] = torch.cos(angles), torch.sin(angles)
    rot[:, 1, 1] = 1
    rot[:, 2, 0], rot[:, 2, 2] = -torch.sin(angles), torch.cos(angles)
    translation = torch.tensor([[0.0], [0.0], [10.0]], dtype=dtype).expand(v, 3, 1)
    extrinsics = torch.cat([rot, translation], -1)
    intrinsics = torch.tensor([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]], dtype=dtype)
    return {
        "keypoints_targ": targ.reshape(b, 2 * n),
        "keypoints_pred": pred.reshape(b, 2 * n),
        "keypoints_pred_augmented": pred.reshape(b, 2 * n).clone(),
        "heatmaps_targ": heat_targ,
        "heatmaps_pred": heat_pred,
        "confidences": torch.rand(b, n, generator=g, dtype=dtype),
        "keypoints_targ_3d": targ_3d,
        "keypoints_pred_3d": targ_3d[:, None] + 0.1 * torch.randn(b, pairs, k, 3, generator=g,
                                                                  dtype=dtype),
        "keypoints_pred_2d_reprojected": pred + 0.5,
        "intrinsics": intrinsics.expand(b, v, 3, 3).clone(),
        "extrinsics": extrinsics.expand(b, v, 3, 4).clone(),
        "distortions": torch.zeros(b, v, 5, dtype=dtype),
    }


def _call(loss: Loss, inputs: dict[str, Any]) -> tuple[torch.Tensor, list]:
    return loss(stage="train", **inputs)


def check_loss(loss_cls: type, params: dict[str, Any] | None = None,
               context: LossContext | None = None, data_module: Any = None) -> Loss:
    """Run the loss-plugin contract; raises AssertionError naming the broken rule."""
    assert isinstance(loss_cls, type) and issubclass(loss_cls, Loss), (
        f"{loss_cls!r} must subclass mvcore.Loss")
    assert loss_cls.loss_name, f"{loss_cls.__name__} must set the loss_name class attribute"
    try:
        loss_cls.Params.model_validate({**(params or {}), "__no_such_key__": 1})
    except ValidationError:
        pass
    else:
        raise AssertionError(f"{loss_cls.__name__}.Params must forbid unknown keys "
                             "(model_config = ConfigDict(extra='forbid'))")
    validated = loss_cls.Params.model_validate(params or {}).model_dump()
    context = context or toy_context()
    data_module = data_module or ToyDataModule(num_views=context.num_views,
                                               num_keypoints=context.num_keypoints)
    loss = loss_cls(**validated, context=context, data_module=data_module,
                    loss_name=loss_cls.loss_name)
    inputs = toy_loss_inputs(context)
    missing = required_inputs(loss_cls) - set(inputs)
    assert not missing, f"{loss_cls.__name__} requires inputs no model produces: {missing}"
    for name in GRAD_INPUTS:
        inputs[name] = inputs[name].clone().requires_grad_(True)
    value, logs = _call(loss, inputs)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, "loss must return a 0-d tensor"
    assert torch.isfinite(value), f"loss is not finite on the toy batch: {value}"
    assert isinstance(logs, list) and all(
        isinstance(item, dict) and {"name", "value"} <= set(item) for item in logs
    ), "logs must be a list of {'name', 'value'} dicts"
    value.backward()
    grads = [inputs[name].grad for name in GRAD_INPUTS if inputs[name].grad is not None]
    assert grads, "no gradient reached any prediction input"
    assert all(torch.isfinite(g).all() for g in grads), "gradients contain NaN or inf"
    detached = {k: v.detach() for k, v in inputs.items()}
    reference = _call(loss, detached)[0]
    as_double = copy.deepcopy(loss).to(torch.float64)
    for name, buffer in as_double.named_buffers():
        assert buffer.dtype in (torch.float64,) or not buffer.is_floating_point(), (
            f"buffer {name} did not move with .to(float64)")
    clone = pickle.loads(pickle.dumps(loss))
    assert torch.allclose(_call(clone, detached)[0], reference), "unpickled loss differs"
    buffer_bytes = io.BytesIO()
    torch.save(loss.state_dict(), buffer_bytes)
    buffer_bytes.seek(0)
    loss.load_state_dict(torch.load(buffer_bytes, weights_only=True))
    assert torch.allclose(_call(loss, detached)[0], reference), "state_dict round trip differs"
    return loss


@contextlib.contextmanager
def registered(manager: PluginManager, plugin: object, name: str,
               version: str | None = None) -> Iterator[PluginManager]:
    """Register a test-only plugin object for the duration of a ``with`` block."""
    manager.register(plugin, name=name, version=version)
    try:
        yield manager
    finally:
        if manager.pm.has_plugin(name):
            manager.pm.unregister(name=name)
        manager.info.pop(name, None)
