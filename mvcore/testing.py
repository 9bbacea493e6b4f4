"""Contract checks for plugin authors: what training will really feed your component.

A plugin's test suite runs, for example::

    from mvcore.testing import check_loss
    from my_pkg.bone import BoneLengthLoss

    def test_contract():
        check_loss(BoneLengthLoss, params={"bones": [[0, 1]]})

``check_loss`` builds the loss as training does (``Loss(params, context)``) and feeds it every
input of ``mvcore.contracts.LossInputs`` that a model produces, on a small calibrated rig with
consistent geometry. It asserts, naming the broken rule: the class and its ``Params`` are
well-formed (unknown keys rejected); the declared inputs exist (and an unsupervised loss
requires no target); the loss reads every ``Params`` field (a field it ignores is a silent
no-op for users); it returns a finite 0-d weighted value and well-formed logs; gradients reach
a prediction and are finite; the same holds with NaN labels and with frames that have no
calibration, and the cameras of such frames (placeholders) do not change the value; a loss
that requires 3D inputs is refused on an uncalibrated project with a message that says so; it
follows ``.to(float64)``; it survives pickling and a ``state_dict`` round trip.

``check_augmenter`` and ``check_backbone`` do the same for the other two kinds of component.
``toy_context`` and ``toy_loss_inputs`` are the building blocks, for your own tests.
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

from mvcore.augment.base import Augmenter
from mvcore.build import loss_input_errors
from mvcore.context import Context
from mvcore.contracts import LOSS_INPUTS, produced_inputs
from mvcore.data.heatmaps import render_heatmaps
from mvcore.errors import ParamError
from mvcore.geometry import CameraTensors, project_points, triangulate, triangulate_pairs
from mvcore.losses.base import Loss, LossParams, loss_signature
from mvcore.models.base import Backbone
from mvcore.plugin.manager import PluginManager

__all__ = [
    "check_augmenter",
    "check_backbone",
    "check_loss",
    "registered",
    "toy_cameras",
    "toy_context",
    "toy_loss_inputs",
    "toy_sample",
]

_DISTANCE = 10.0  # camera distance from the origin, world units
_FOCAL = 100.0


def toy_cameras(num_views: int = 2, image_size: int = 64,
                dtype: torch.dtype = torch.float32) -> CameraTensors:
    """``(V, ...)`` cameras on a half circle around the origin, looking at it, with mild
    radial distortion; a point within 1 unit of the origin lands inside the image."""
    angles = torch.linspace(0.0, math.pi / 2, num_views, dtype=torch.float64)
    rot = torch.zeros(num_views, 3, 3, dtype=torch.float64)
    rot[:, 0, 0], rot[:, 0, 2] = torch.cos(angles), -torch.sin(angles)
    rot[:, 1, 1] = 1.0
    rot[:, 2, 0], rot[:, 2, 2] = torch.sin(angles), torch.cos(angles)
    translation = torch.tensor([0.0, 0.0, _DISTANCE], dtype=torch.float64).expand(num_views, 3)
    extrinsics = torch.cat([rot, translation[..., None]], -1)
    centre = (image_size - 1) / 2.0
    intrinsics = torch.tensor([[_FOCAL, 0.0, centre], [0.0, _FOCAL, centre], [0.0, 0.0, 1.0]],
                              dtype=torch.float64).expand(num_views, 3, 3).clone()
    distortions = torch.zeros(num_views, 5, dtype=torch.float64)
    distortions[:, 0] = -0.02
    return CameraTensors(intrinsics, extrinsics, distortions).to(dtype=dtype)


def _placeholder_cameras(num_views: int, dtype: torch.dtype) -> CameraTensors:
    """What a frame without calibration carries (see ``mvcore.contracts``)."""
    return CameraTensors(torch.eye(3, dtype=dtype).expand(num_views, 3, 3).clone(),
                         torch.eye(3, 4, dtype=dtype).expand(num_views, 3, 4).clone(),
                         torch.zeros(num_views, 5, dtype=dtype))


def _toy_poses(num_frames: int, num_keypoints: int, seed: int) -> torch.Tensor:
    """``(n, K, 3)`` float64: one body (random offsets) moving and turning near the origin."""
    g = torch.Generator().manual_seed(seed)
    body = 0.4 * torch.randn(num_keypoints, 3, generator=g, dtype=torch.float64)
    angle = 0.3 * torch.randn(num_frames, generator=g, dtype=torch.float64)
    rot = torch.zeros(num_frames, 3, 3, dtype=torch.float64)
    rot[:, 0, 0], rot[:, 0, 1] = angle.cos(), -angle.sin()
    rot[:, 1, 0], rot[:, 1, 1] = angle.sin(), angle.cos()
    rot[:, 2, 2] = 1.0
    shift = 0.2 * torch.randn(num_frames, 1, 3, generator=g, dtype=torch.float64)
    return body @ rot.transpose(-1, -2) + shift


def toy_context(num_views: int = 2, num_keypoints: int = 3, image_size: int = 64,
                downsample_factor: int = 2, calibrated: bool = True, num_train: int = 40,
                seed: int = 0) -> Context:
    """A ``Context`` of a small square-image project whose training labels are ``num_train``
    exact projections of a moving body through ``toy_cameras`` (frame = model pixels)."""
    poses = _toy_poses(num_train, num_keypoints, seed)
    cams = toy_cameras(num_views, image_size, torch.float64)
    labels = project_points(poses, cams.intrinsics, cams.extrinsics, cams.distortions).numpy()
    return Context(
        view_names=tuple(f"view{v}" for v in range(num_views)),
        keypoint_names=tuple(f"kp{k}" for k in range(num_keypoints)),
        image_height=image_size, image_width=image_size, downsample_factor=downsample_factor,
        has_calibration=calibrated, seed=seed, labels_source=lambda: labels.copy(),
    )


def toy_loss_inputs(context: Context, batch_size: int = 4, seed: int = 0,
                    dtype: torch.dtype = torch.float32, nan_labels: bool = False,
                    uncalibrated_frames: tuple[int, ...] = ()) -> dict[str, Any]:
    """Every loss input a model produces for ``context`` (``mvcore.contracts``), consistent:
    2D labels are projections of 3D poses, predictions are labels plus noise, 3D inputs are
    triangulations of the predictions. Differentiable inputs are leaf tensors that require
    grad. ``nan_labels``: some labels are missing (NaN, zero heatmaps, NaN 3D targets where
    fewer than two views are labelled). ``uncalibrated_frames``: these frames carry
    placeholder cameras, ``has_calibration`` False and NaN 3D inputs, as in training."""
    g = torch.Generator().manual_seed(seed)
    b, v, k = batch_size, context.num_views, context.num_keypoints
    if context.num_views < 2:
        raise ValueError("toy inputs need at least 2 views")
    cams = toy_cameras(v, context.image_width, torch.float64)
    poses = _toy_poses(b, k, seed + 1)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    targ = project_points(poses, *args)  # (B, V, K, 2) frame = model pixels
    pred = targ + 0.7 * torch.randn(targ.shape, generator=g, dtype=torch.float64)
    labelled = torch.ones(b, v, k, dtype=torch.bool)
    if nan_labels:
        labelled[0, 0, 0] = False
        labelled[-1, :, -1] = False
        labelled[min(1, b - 1), 1:, 0] = False
    targ = torch.where(labelled[..., None], targ, torch.nan)
    size, hm_size = context.image_size, context.heatmap_size
    heat_targ = render_heatmaps(targ.reshape(b, v * k, 2), size, hm_size)
    heat_targ = torch.nan_to_num(heat_targ, nan=0.0)
    logits = torch.log(render_heatmaps(pred.reshape(b, v * k, 2), size, hm_size) + 1e-4)
    heat_pred = torch.softmax(logits.flatten(-2), -1).reshape_as(heat_targ)
    targ_3d = torch.where((labelled.sum(1) >= 2)[..., None], poses, torch.nan)
    reprojected = project_points(triangulate(pred, *args), *args)
    inputs: dict[str, Any] = {
        "heatmaps_targ": heat_targ,
        "heatmaps_pred": heat_pred,
        "keypoints_targ": targ.reshape(b, -1),
        "keypoints_pred": pred.reshape(b, -1),
        "keypoints_pred_augmented": pred.reshape(b, -1).clone(),
        "confidences": 0.5 + 0.5 * torch.rand(b, v * k, generator=g, dtype=torch.float64),
        "keypoints_targ_3d": targ_3d,
        "keypoints_pred_3d": triangulate_pairs(pred, *args),
        "keypoints_pred_3d_triangulated": triangulate(pred, *args),
        "keypoints_pred_2d_reprojected": reprojected.reshape(b, v * k, 2),
        "cameras": CameraTensors(*(t.expand(b, *t.shape).clone() for t in args)),
        "has_calibration": torch.ones(b, dtype=torch.bool),
    }
    if uncalibrated_frames:
        frames = torch.zeros(b, dtype=torch.bool)
        frames[list(uncalibrated_frames)] = True
        inputs["has_calibration"] = ~frames
        placeholder = _placeholder_cameras(v, torch.float64)
        inputs["cameras"] = CameraTensors(*(
            torch.where(frames.reshape(b, *[1] * (t.ndim - 1)), p.expand_as(t), t)
            for t, p in zip((inputs["cameras"].intrinsics, inputs["cameras"].extrinsics,
                             inputs["cameras"].distortions),
                            (placeholder.intrinsics, placeholder.extrinsics,
                             placeholder.distortions))))
        for name, spec in LOSS_INPUTS.items():
            if spec.calibrated and spec.uncalibrated == "NaN":
                value = inputs[name]
                inputs[name] = torch.where(frames.reshape(b, *[1] * (value.ndim - 1)),
                                           torch.nan, value)
    produced = produced_inputs(context.has_calibration)
    out: dict[str, Any] = {}
    for name in produced:
        value = inputs[name]
        if isinstance(value, CameraTensors):
            out[name] = value.to(dtype=dtype)
        elif value.dtype == torch.bool:
            out[name] = value
        else:
            value = value.to(dtype)
            out[name] = value.requires_grad_(True) if LOSS_INPUTS[name].differentiable else value
    return out


def _validated(cls: type, raw: dict[str, Any], context: Context) -> Any:
    """``cls.Params`` from ``raw``, checked against ``context``; asserts that the model
    forbids unknown keys (a typo in a config must be an error)."""
    name = cls.__name__
    try:
        cls.Params.model_validate({**raw, "__no_such_key__": 1})
    except ValidationError:
        pass
    else:
        raise AssertionError(f"{name}.Params must forbid unknown keys (subclass the kind's "
                             "Params, or set model_config = ConfigDict(extra='forbid'))")
    validated = cls.Params.model_validate(raw)
    try:
        cls.validate_context(validated, context)
    except ParamError as exc:
        raise AssertionError(f"{name}.validate_context rejects the params: {exc}") from None
    return validated


def _feed(loss: Loss, inputs: dict[str, Any]) -> tuple[torch.Tensor, list]:
    """Call a loss as ``LossFactory`` does: only the inputs it declares (or all)."""
    signature = loss_signature(type(loss))
    given = inputs if signature.takes_all else {
        k: v for k, v in inputs.items() if k in signature.declared}
    return loss(stage="train", **given)


def _detached(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _tracked(params_cls: type, raw: dict[str, Any], reads: set[str]) -> Any:
    """``params_cls`` validated from ``raw`` as an instance that records which fields are read."""
    fields = set(params_cls.model_fields)

    class Tracked(params_cls):  # type: ignore[misc, valid-type]
        def __getattribute__(self, name: str) -> Any:
            if name in fields:
                reads.add(name)
            return super().__getattribute__(name)

    Tracked.__name__ = Tracked.__qualname__ = params_cls.__name__
    return Tracked.model_validate(raw)


def _run_checked(loss: Loss, inputs: dict[str, Any], what: str) -> torch.Tensor:
    """Value, logs and gradients of one call; asserts they are well-formed and finite."""
    name = type(loss).__name__
    value, logs = _feed(loss, inputs)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, (
        f"{name} must return a 0-d tensor as its weighted loss ({what})")
    assert torch.isfinite(value), f"{name} is not finite {what}: {value}"
    assert isinstance(logs, list) and all(
        isinstance(item, dict) and {"name", "value"} <= set(item) for item in logs
    ), f"{name}: logs must be a list of {{'name', 'value'}} dicts"
    grads = []
    if value.requires_grad:
        leaves = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.requires_grad]
        grads = [g for g in torch.autograd.grad(value, leaves, allow_unused=True)
                 if g is not None]
    assert all(torch.isfinite(g).all() for g in grads), (
        f"{name}: gradients contain NaN or inf {what}")
    return value.detach()


def check_loss(loss_cls: type, params: dict[str, Any] | None = None,
               context: Context | None = None) -> Loss:
    """Run the loss-plugin contract (see the module docstring); returns the built loss.

    ``context`` defaults to ``toy_context()`` (2 views, 3 keypoints, calibrated)."""
    assert isinstance(loss_cls, type) and issubclass(loss_cls, Loss), (
        f"{loss_cls!r} must subclass mvcore.Loss")
    name = loss_cls.__name__
    assert loss_cls.loss_name, f"{name} must set the loss_name class attribute"
    assert issubclass(loss_cls.Params, LossParams), f"{name}.Params must subclass LossParams"
    errors = loss_input_errors(loss_cls, loss_cls.loss_name)
    assert not errors, str(errors[0])
    raw = dict(params or {})
    context = context or toy_context()
    validated = _validated(loss_cls, raw, context)

    # every Params field is read while building and running the loss
    reads: set[str] = set()
    tracked = loss_cls(_tracked(loss_cls.Params, raw, reads), context)
    batch = toy_loss_inputs(context)
    _feed(tracked, _detached(batch))
    tracked.keypoint_errors(batch["keypoints_pred"].detach())
    unread = sorted(set(loss_cls.Params.model_fields) - reads)
    assert not unread, (
        f"{name} never reads Params field(s) {unread}: users can set them to no effect. Read "
        "them as self.params.<field> (or remove them from Params)")

    loss = loss_cls(validated, context)
    reference = _run_checked(loss, toy_loss_inputs(context), "on a toy batch")
    value, _ = _feed(loss, batch)
    if value.requires_grad:
        value.backward()
    grads = [v.grad for k, v in batch.items() if LOSS_INPUTS[k].differentiable]
    assert any(g is not None for g in grads), (
        f"{name}: no gradient reaches any prediction input "
        f"({', '.join(k for k, s in LOSS_INPUTS.items() if s.differentiable)})")
    _run_checked(loss, toy_loss_inputs(context, nan_labels=True), "with NaN labels")

    signature = loss_signature(loss_cls)
    if context.has_calibration:
        frames = (1, 3)
        inputs = toy_loss_inputs(context, uncalibrated_frames=frames)
        first = _run_checked(loss, inputs, "with frames without calibration")
        if "cameras" in signature.declared or signature.takes_all:
            moved = dict(_detached(inputs))
            cams = toy_cameras(context.num_views, context.image_width, torch.float32)
            swapped = [t.clone() for t in (moved["cameras"].intrinsics,
                                           moved["cameras"].extrinsics,
                                           moved["cameras"].distortions)]
            for t, other in zip(swapped, (cams.intrinsics, cams.extrinsics,
                                          cams.distortions)):
                t[list(frames)] = other.flip(0).to(t.dtype)
            moved["cameras"] = CameraTensors(*swapped)
            second = _feed(loss, moved)[0].detach()
            assert torch.allclose(first, second, rtol=1e-5, atol=1e-7), (
                f"{name} uses the cameras of frames without calibration (has_calibration "
                "False): those are placeholders; leave such frames out")
    needs_cameras = sorted(n for n in signature.required if LOSS_INPUTS[n].calibrated)
    if needs_cameras:
        refused = loss_input_errors(loss_cls, loss_cls.loss_name, calibrated=False)
        assert refused and "calibration" in str(refused[-1]), (
            f"{name} requires {needs_cameras} but is not refused on an uncalibrated project")
        assert not loss_input_errors(loss_cls, loss_cls.loss_name, calibrated=True)

    as_double = copy.deepcopy(loss).to(torch.float64)
    for buffer_name, buffer in as_double.named_buffers():
        assert buffer.dtype == torch.float64 or not buffer.is_floating_point(), (
            f"{name}: buffer {buffer_name} did not move with .to(float64)")
    _run_checked(as_double, toy_loss_inputs(context, dtype=torch.float64), "in float64")
    detached = _detached(toy_loss_inputs(context))
    clone = pickle.loads(pickle.dumps(loss))
    assert torch.allclose(_feed(clone, detached)[0], reference), f"{name}: unpickled loss differs"
    buffer_bytes = io.BytesIO()
    torch.save(loss.state_dict(), buffer_bytes)
    buffer_bytes.seek(0)
    loss.load_state_dict(torch.load(buffer_bytes, weights_only=True))
    assert torch.allclose(_feed(loss, detached)[0], reference), (
        f"{name}: state_dict round trip changes the value")
    return loss


# ------------------------------------------------------------------------------ augmenters
def toy_sample(context: Context, seed: int = 0, calibrated: bool = True,
               only_keypoint: int | None = None) -> dict[str, Any]:
    """An ``AugmenterSample`` of ``context``: exact projections of a toy pose through
    ``toy_cameras`` (bbox = the whole frame = the model input), on images that are dark except
    for one bright Gaussian blob per labelled keypoint (only ``only_keypoint``'s if given)."""
    v, k = context.num_views, context.num_keypoints
    height, width = context.image_size
    cams = toy_cameras(v, width, torch.float64)
    pose = _toy_poses(1, k, seed + 7)[0]
    points = project_points(pose[None], cams.intrinsics, cams.extrinsics, cams.distortions)[0]
    ys = torch.arange(height, dtype=torch.float64)[:, None]
    xs = torch.arange(width, dtype=torch.float64)[None, :]
    show = range(k) if only_keypoint is None else [only_keypoint]
    blobs = torch.zeros(v, height, width, dtype=torch.float64)
    for j in show:
        dx = xs - points[:, j, 0, None, None]
        dy = ys - points[:, j, 1, None, None]
        blobs = blobs + torch.exp(-(dx**2 + dy**2) / (2 * 1.5**2))
    images = (0.1 + 0.8 * blobs.clamp(max=1.0))[:, None].expand(v, 3, height, width)
    bbox = torch.tensor([0.0, 0.0, height, width], dtype=torch.float64).expand(v, 4).clone()
    return {
        "images": images.to(torch.float32).contiguous(),
        "keypoints": points.to(torch.float32),
        "visibility": torch.full((v, k), 2, dtype=torch.int64),
        "bbox": bbox,
        "cameras": cams.to(dtype=torch.float32) if calibrated else None,
        "keypoints_3d": pose.to(torch.float32) if calibrated else None,
    }


def _check_sample(out: Any, sample: dict[str, Any], name: str) -> None:
    assert isinstance(out, dict), f"{name} must return the sample dict"
    for key in ("images", "keypoints", "visibility", "bbox", "cameras", "keypoints_3d"):
        assert key in out, f"{name} dropped the sample key {key!r}"
    v, k = sample["keypoints"].shape[:2]
    shape = tuple(sample["images"].shape)
    assert tuple(out["images"].shape) == shape and out["images"].is_floating_point(), (
        f"{name}: images must stay {shape} floating point, got {tuple(out['images'].shape)}")
    assert tuple(out["keypoints"].shape) == (v, k, 2), f"{name}: keypoints must stay (V, K, 2)"
    assert tuple(out["visibility"].shape) == (v, k), f"{name}: visibility must stay (V, K)"
    assert torch.equal(torch.as_tensor(out["bbox"]), torch.as_tensor(sample["bbox"])), (
        f"{name} must not change bbox (the crop in frame pixels)")
    if out["keypoints_3d"] is not None:
        assert tuple(out["keypoints_3d"].shape) == (k, 3), f"{name}: keypoints_3d must be (K, 3)"
    if "transforms" in out:
        assert tuple(out["transforms"].shape) == (v, 3, 3), f"{name}: transforms must be (V, 3, 3)"
    for stat, value in (out.get("aug_stats") or {}).items():
        assert isinstance(value, (int, float, np.integer, np.floating)) or (
            isinstance(value, torch.Tensor) and value.numel() == 1), (
            f"{name}: aug_stats[{stat!r}] must be a number")
    lost = ~torch.isfinite(out["keypoints"]).all(-1)
    assert not (lost & (out["visibility"] == 2)).any(), (
        f"{name}: a keypoint that became NaN must lose its label (visibility 0)")


def _blob_peak(image: torch.Tensor, near: torch.Tensor, radius: int = 4) -> torch.Tensor | None:
    """Sub-pixel centre of the brightest blob within ``radius`` px of ``near`` ((x, y))."""
    grey = image.double().mean(0)
    height, width = grey.shape
    x0, y0 = int(round(float(near[0]))), int(round(float(near[1])))
    xs = slice(max(0, x0 - radius), min(width, x0 + radius + 1))
    ys = slice(max(0, y0 - radius), min(height, y0 + radius + 1))
    patch = grey[ys, xs] - grey.median()
    if patch.numel() == 0 or patch.max() <= 0.2:
        return None
    weights = patch.clamp(min=0) ** 4
    gy, gx = torch.meshgrid(torch.arange(ys.start, ys.stop, dtype=torch.float64),
                            torch.arange(xs.start, xs.stop, dtype=torch.float64), indexing="ij")
    total = weights.sum()
    return torch.stack([(weights * gx).sum() / total, (weights * gy).sum() / total])


def check_augmenter(aug_cls: type, params: dict[str, Any] | None = None,
                    context: Context | None = None, tolerance: float = 1.5) -> Augmenter:
    """Run the augmenter contract; returns the built augmenter.

    Asserts: a well-formed class and ``Params``; the returned sample keeps the contract
    (``mvcore.contracts.AugmenterSample``: keys, shapes, dtypes, bbox unchanged, lost labels
    marked); the same ``rng`` seed gives the same sample whatever the global RNGs hold; it is
    picklable; and images and labels stay aligned: on images with one blob per keypoint, every
    returned label lies within ``tolerance`` pixels of its blob (use params that switch off
    photometric noise that could hide a blob). Samples without calibration are fed too unless
    the class ``requires_calibration``."""
    assert isinstance(aug_cls, type) and issubclass(aug_cls, Augmenter), (
        f"{aug_cls!r} must subclass mvcore.Augmenter")
    name = aug_cls.__name__
    assert aug_cls.name, f"{name} must set the name class attribute"
    context = context or toy_context(num_views=3, num_keypoints=4, image_size=64)
    validated = _validated(aug_cls, dict(params or {}), context)
    augmenter = aug_cls(validated, context)
    augmenter = pickle.loads(pickle.dumps(augmenter))
    for calibrated in (True, False) if not aug_cls.requires_calibration else (True,):
        sample = toy_sample(context, calibrated=calibrated)
        out = augmenter(copy.deepcopy(sample), np.random.default_rng(5))
        _check_sample(out, sample, name)
        torch.manual_seed(123)
        np.random.seed(123)
        again = augmenter(copy.deepcopy(sample), np.random.default_rng(5))
        assert torch.equal(out["images"], again["images"]) and torch.allclose(
            out["keypoints"], again["keypoints"], equal_nan=True), (
            f"{name}: the same rng gives different samples; draw all randomness from rng")
        for j in range(context.num_keypoints):
            single = augmenter(toy_sample(context, calibrated=calibrated, only_keypoint=j),
                               np.random.default_rng(5))
            for view in range(context.num_views):
                label = out["keypoints"][view, j]
                if not torch.isfinite(label).all():
                    continue
                peak = _blob_peak(single["images"][view], label)
                assert peak is not None and (peak - label.double()).norm() <= tolerance, (
                    f"{name}: label of keypoint {j} in view {view} is at "
                    f"{label.tolist()} but its image content is at "
                    f"{None if peak is None else peak.tolist()} (calibrated={calibrated}): "
                    "images and labels must move together")
    return augmenter


# ------------------------------------------------------------------------------ backbones
def check_backbone(backbone_cls: type, params: dict[str, Any] | None = None,
                   context: Context | None = None, batch_size: int = 2) -> Backbone:
    """Run the backbone contract; returns the built backbone.

    Asserts: a well-formed class and ``Params``; ``forward`` maps ``(B, V, 3, H, W)`` to
    ``(B, V, K, h, w)`` heatmaps (``context.heatmap_size``) that are finite and sum to 1; every
    trainable parameter gets a finite gradient (distributed training needs that) and sits in
    exactly one ``param_groups`` group; ``architecture_only`` builds the same parameters;
    ``set_progress`` returns numbers."""
    assert isinstance(backbone_cls, type) and issubclass(backbone_cls, Backbone), (
        f"{backbone_cls!r} must subclass mvcore.Backbone")
    name = backbone_cls.__name__
    context = context or toy_context(num_views=2, num_keypoints=3, image_size=64)
    validated = _validated(backbone_cls, dict(params or {}), context)
    backbone = backbone_cls(validated, context)
    progress = backbone.set_progress(0, 0, 1)
    assert isinstance(progress, dict) and all(
        isinstance(v, (int, float)) for v in progress.values()), (
        f"{name}.set_progress must return a dict of numbers")
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, context.num_views, 3, *context.image_size, generator=g)
    backbone.train()
    heatmaps = backbone(images)
    expected = (batch_size, context.num_views, context.num_keypoints, *context.heatmap_size)
    assert tuple(heatmaps.shape) == expected, (
        f"{name}: heatmaps must be {expected} (B, V, K, h, w), got {tuple(heatmaps.shape)}")
    assert torch.isfinite(heatmaps).all(), f"{name}: heatmaps are not finite"
    sums = heatmaps.detach().flatten(-2).sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4), (
        f"{name}: every heatmap must sum to 1 (a spatial softmax)")
    target = torch.rand(heatmaps.shape, generator=g)
    ((heatmaps - target) ** 2).sum().backward()
    trainable = {n: p for n, p in backbone.named_parameters() if p.requires_grad}
    missing = [n for n, p in trainable.items() if p.grad is None]
    assert not missing, f"{name}: no gradient reaches parameters {missing[:5]}"
    bad = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"
    grouped = [id(p) for group in backbone.param_groups().values() for p in group]
    assert len(grouped) == len(set(grouped)), f"{name}: a parameter is in two param_groups"
    assert set(grouped) == {id(p) for p in trainable.values()}, (
        f"{name}: param_groups must hold every trainable parameter exactly once")
    light = backbone_cls(backbone_cls.architecture_only(validated), context)
    shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in light.state_dict().items()} == shapes, (
        f"{name}.architecture_only builds another network")
    return backbone


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
