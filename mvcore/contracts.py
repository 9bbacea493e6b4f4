"""What crosses a boundary between the core and a plugin, defined once.

Four typed dicts, with shapes and units (``B`` batch, ``V`` views, ``K`` keypoints per view,
``N = V * K`` keypoints view-major, ``P = V (V - 1) / 2`` camera pairs, ``T`` clip frames,
``(H, W)`` the model input, ``(h, w)`` the heatmaps):

- ``AugmenterSample``: what an augmenter receives and returns (one instant, all views);
- ``LabeledBatch``: a collated batch of labelled frames (the training, validation and test
  step's input; a dataset item has the same keys without ``B``);
- ``ClipBatch``: one unlabelled video clip for the unsupervised losses;
- ``LossInputs``: what the losses receive, keyword by keyword.

Every ``LossInputs`` key carries an ``InputSpec``. ``LOSS_INPUTS`` is read from the type, and
everything else derives from it: what the model produces, which optional inputs it computes
(exactly those an active loss declares), the inputs ``mvcore.testing`` feeds, and the table in
``docs/plugins.md`` (a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, get_type_hints

from torch import Tensor
from typing_extensions import NotRequired

from mvcore.geometry import CameraTensors

__all__ = [
    "LOSS_INPUTS",
    "AugmenterSample",
    "ClipBatch",
    "InputSpec",
    "LabeledBatch",
    "LossInputs",
    "produced_inputs",
]


@dataclass(frozen=True)
class InputSpec:
    """What one loss input is, where it exists, and how it is made.

    ``target``: made from labels, so only labelled batches carry it (never unlabelled clips).
    ``calibrated``: exists only for calibrated projects. ``on_demand``: computed only when an
    active loss declares it (it costs a triangulation). ``differentiable``: carries the gradient
    back to the network. ``uncalibrated``: what a frame whose session has no calibration holds
    (in a calibrated project, e.g. a clip of an uncalibrated video session).
    """

    shape: str
    meaning: str
    target: bool = False
    calibrated: bool = False
    on_demand: bool = False
    differentiable: bool = False
    uncalibrated: str = ""


class LossInputs(TypedDict, total=False):
    """Keyword arguments of a loss's ``forward`` (or ``__call__``); see ``LOSS_INPUTS``."""

    heatmaps_targ: Annotated[Tensor, InputSpec(
        "(B, N, h, w)", "target heatmaps: each map sums to 1; all zero where the keypoint has "
        "no label (uniform where it is unlabelled but visible)", target=True)]
    heatmaps_pred: Annotated[Tensor, InputSpec(
        "(B, N, h, w)", "predicted heatmaps (spatial softmax: each map sums to 1)",
        differentiable=True)]
    keypoints_targ: Annotated[Tensor, InputSpec(
        "(B, 2N)", "labels in frame pixels (x0, y0, x1, y1, ...); NaN = unlabelled", target=True)]
    keypoints_pred: Annotated[Tensor, InputSpec(
        "(B, 2N)", "predictions in frame pixels, augmentation undone", differentiable=True)]
    keypoints_pred_augmented: Annotated[Tensor, InputSpec(
        "(B, 2N)", "predictions in frame pixels of the augmented images (where the 3D inputs "
        "live)", differentiable=True)]
    confidences: Annotated[Tensor, InputSpec(
        "(B, N)", "heatmap peak heights in [0, 1]")]
    keypoints_targ_3d: Annotated[Tensor, InputSpec(
        "(B, K, 3)", "labels triangulated from all labelled views, world units (those of the "
        "calibration); NaN where fewer than two views are labelled", target=True,
        calibrated=True, uncalibrated="NaN")]
    keypoints_pred_3d: Annotated[Tensor, InputSpec(
        "(B, P, K, 3)", "keypoints_pred_augmented triangulated from each camera pair, world "
        "units", calibrated=True, on_demand=True, differentiable=True, uncalibrated="NaN")]
    keypoints_pred_3d_triangulated: Annotated[Tensor, InputSpec(
        "(B, K, 3)", "keypoints_pred_augmented triangulated from all views at once (DLT), world "
        "units", calibrated=True, on_demand=True, differentiable=True, uncalibrated="NaN")]
    keypoints_pred_2d_reprojected: Annotated[Tensor, InputSpec(
        "(B, N, 2)", "keypoints_pred_3d_triangulated projected into every view, model pixels "
        "of the augmented images", calibrated=True, on_demand=True, differentiable=True,
        uncalibrated="NaN")]
    cameras: Annotated[CameraTensors, InputSpec(
        "CameraTensors (B, V, ...)", "one camera per frame and view: intrinsics (B, V, 3, 3), "
        "extrinsics (B, V, 3, 4) world to camera, distortions (B, V, 5) k1 k2 p1 p2 k3",
        calibrated=True, uncalibrated="placeholder cameras (identity): skip the frame, see "
        "has_calibration")]
    has_calibration: Annotated[Tensor, InputSpec(
        "(B,) bool", "False for frames whose session has no calibration", calibrated=True,
        uncalibrated="False")]


def _read_specs() -> dict[str, InputSpec]:
    hints = get_type_hints(LossInputs, include_extras=True)
    specs = {}
    for name, hint in hints.items():
        found = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, InputSpec)]
        if len(found) != 1:
            raise TypeError(f"LossInputs.{name} needs exactly one InputSpec")
        specs[name] = found[0]
    return specs


#: every loss input by name, in declaration order
LOSS_INPUTS: dict[str, InputSpec] = _read_specs()


def produced_inputs(calibrated: bool, labelled: bool = True) -> set[str]:
    """Names the model can produce for a project (``calibrated``: the project has cameras) on
    labelled batches (``labelled``) or on unlabelled clips."""
    return {name for name, spec in LOSS_INPUTS.items()
            if (calibrated or not spec.calibrated) and (labelled or not spec.target)}


class AugmenterSample(TypedDict):
    """One instant of all views, as an augmenter receives and must return it (no batch axis).

    - ``images (V, 3, H, W)`` float32 in [0, 1] (not yet ImageNet-normalised);
    - ``keypoints (V, K, 2)`` float32 model-input pixels; NaN = unlabelled;
    - ``visibility (V, K)`` int64: 0 occluded or lost, 1 unlabelled (uniform target), 2 labelled;
    - ``bbox (V, 4)`` float64 ``[x, y, h, w]`` of each crop in frame pixels;
    - ``cameras``: ``CameraTensors (V, ...)``, or None for a frame without calibration;
    - ``keypoints_3d (K, 3)`` float32 triangulated labels (world units), or None uncalibrated;
    - optional ``transforms (V, 3, 3)``: homographies original -> augmented model pixels; an
      augmenter that moves pixels composes its own onto them (``mine @ previous``);
    - optional ``aug_stats``: ``{counter: number}`` logged per epoch as ``train_<counter>``
      (sums; counters with ``skip`` in their name also add up to ``train_aug_skipped``).

    Images and keypoints must stay aligned: a keypoint's label is where its image content is.
    """

    images: Tensor
    keypoints: Tensor
    visibility: Tensor
    bbox: Tensor
    cameras: CameraTensors | None
    keypoints_3d: Tensor | None
    transforms: NotRequired[Tensor]
    aug_stats: NotRequired[dict[str, Any]]


class LabeledBatch(TypedDict):
    """A collated batch of labelled frames (a dataset item: the same keys without ``B``).

    - ``images (B, V, 3, H, W)`` float32, ImageNet-normalised;
    - ``keypoints (B, V, K, 2)`` float32 model pixels after augmentation;
    - ``visibility (B, V, K)`` int64; ``heatmaps (B, V, K, h, w)`` float32 targets;
    - ``keypoints_frame (B, V, K, 2)`` float64 frame-pixel labels, never augmented;
    - ``bbox (B, V, 4)`` float64 ``[x, y, h, w]``;
    - ``cameras``: ``CameraTensors (B, V, ...)`` float32 (placeholders where
      ``has_calibration`` is False); ``has_calibration (B,)`` bool;
    - ``keypoints_3d (B, K, 3)`` float32 (augmented with the images; NaN when uncalibrated);
    - ``transforms (B, V, 3, 3)`` float32 original -> augmented model pixels;
    - ``index (B,)`` int64 project rows; ``aug_stats``: ``{counter: (B,) tensor}``.
    """

    images: Tensor
    keypoints: Tensor
    visibility: Tensor
    heatmaps: Tensor
    keypoints_frame: Tensor
    bbox: Tensor
    cameras: CameraTensors
    has_calibration: Tensor
    keypoints_3d: Tensor
    transforms: Tensor
    index: Tensor
    aug_stats: dict[str, Tensor]


class ClipBatch(TypedDict):
    """One unlabelled clip of ``T`` consecutive frame sets (the loader's batch size is 1).

    - ``frames (1, T, V, 3, H, W)`` float32, ImageNet-normalised;
    - ``bbox (1, T, V, 4)`` float64;
    - ``cameras``: ``CameraTensors (1, T, V, ...)`` float32; ``has_calibration (1, T)`` bool
      (False for a session without calibration: its cameras are placeholders);
    - ``frame_index (1, T)`` int64 frame numbers in the videos; ``session``: ``[name]``.
    """

    frames: Tensor
    bbox: Tensor
    cameras: CameraTensors
    has_calibration: Tensor
    frame_index: Tensor
    session: list[str]
