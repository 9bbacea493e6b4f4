"""3D augmentation: scale and shift the triangulated pose, re-project it, warp every view.

Lightning Pose's ``apply_3d_transforms`` (behaviour reference 4.2), made robust: NaN-aware
triangulation from all views (a view that sees a label's point from behind takes no part:
``aug_stats["imgaug_3d_labels_behind_camera"]``), a choice of image transform (similarity
as in LP, affine or homography), a fallback chain instead of crashes, pass-through counted in
``aug_stats``, and randomness from the dataset's per-sample ``rng`` (LP uses the global NumPy
RNG in workers).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from kornia.geometry.transform import warp_perspective
from pydantic import Field, model_validator
from torch import Tensor

from mv_aug3d.fit import MODELS, fit_with_fallback
from mvcore import Augmenter, AugmenterParams, ConfigError, Context
from mvcore.contracts import AugmenterSample as Sample
from mvcore.data.bbox import frame_to_model, model_to_frame
from mvcore.geometry import apply_homography, project_points, triangulate_checked

__all__ = ["Augment3D", "Augment3DParams", "warp_views"]


class Augment3DParams(AugmenterParams):
    """``training.augmentation_params.imgaug_3d``."""

    #: range of the uniform 3D scale factor about the pose centre
    scale: tuple[float, float] = (0.8, 1.2)
    #: maximal shift per axis as a fraction of the (scaled) pose extent on that axis
    shift: float = Field(0.25, ge=0.0)
    #: image transform fitted per view to the keypoint motion (see ``Augment3D``)
    fit: Literal["similarity", "affine", "homography"] = "homography"
    #: fit correspondences from the original labels (robust to calibration error) or from the
    #: projections of their triangulation (robust to label noise); see ``Augment3D``
    source: Literal["labels", "projections"] = "labels"
    #: fewest keypoints with a 3D point for the sample to be augmented
    min_keypoints: int = Field(3, ge=1)
    #: fraction of samples augmented
    p: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_scale(self) -> Augment3DParams:
        low, high = self.scale
        if not 0.0 < low <= high:
            raise ValueError(f"scale must satisfy 0 < low <= high, got {self.scale}")
        return self


def warp_views(images: Tensor, mats: Tensor) -> Tensor:
    """Warp ``images (N, C, H, W)`` by ``mats (N, 3, 3)`` (source -> destination pixels).

    One batched kornia ``warp_perspective`` (bilinear, ``align_corners=True``: pixel ``i`` is
    centred at coordinate ``i``, the mvcore convention). Uncovered pixels get each image's mean
    colour: neutral for the network (close to 0 after ImageNet normalisation) and no hard black
    frame to latch onto (Lightning Pose fills with the image minimum). The warp is linear, so
    ``warp(image - fill) + fill`` with zero padding equals kornia's ``padding_mode="fill"``
    (which blends a warped mask: a second ``grid_sample``) at half the cost.
    """
    fill = images.mean(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1)
    warped = warp_perspective(
        images - fill,
        mats.to(images.dtype),
        (int(images.shape[-2]), int(images.shape[-1])),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return warped + fill


def _in_front(points_3d: Tensor, extrinsics: Tensor) -> Tensor:
    """``(K, 3)`` world points, ``(V, 3, 4)`` -> ``(V, K)`` camera depth > 0 (False for NaN)."""
    depth = points_3d @ extrinsics[:, 2, :3].T + extrinsics[:, 2, 3]  # (K, V)
    return (depth > 0).T


def _inside(points: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``(..., 2)`` model pixels inside the image area ``[-0.5, W - 0.5) x [-0.5, H - 0.5)``."""
    height, width = image_size
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


class Augment3D(Augmenter):
    """Scale and translate the triangulated pose in 3D and warp every view to match.

    Per sample (``V`` views, ``K`` keypoints, model input ``(H, W)``):

    1. keypoints ``(V, K, 2)`` model px -> frame px (bbox) -> DLT triangulation from every
       labelled view ``X (K, 3)``. Fewer than ``min_keypoints`` finite 3D points: the sample
       passes through unchanged, ``aug_stats["imgaug_3d_skipped"] = 1``.
    2. ``X' = s (X - c) + c + shift`` with ``s ~ U(scale)``, ``c`` the per-axis nanmedian,
       ``shift = shift * extent * U(-1, 1)^3`` and ``extent`` the per-axis range of the scaled
       pose (LP). The cameras stay fixed: the animal moves in the scene.
    3. ``X'`` is projected into every view with lens distortion -> model px.
    4. Per view, the image transform original -> augmented is fitted (``mv_aug3d.fit``) to the
       correspondences of every keypoint with a finite 3D point: source = its original label,
       or, where this view has no label (or ``source="projections"``), the projection of ``X``
       (so unlabelled views are still warped consistently); target = the projection of ``X'``.
       Too few points (4 homography, 3 affine, 2 similarity, 1 translation), a degenerate fit
       or an implausible warp (``fit.plausible``) falls back to the next simpler model
       (``aug_stats["imgaug_3d_fallback"]`` counts views); if no model fits a view the sample
       passes through unaugmented (``imgaug_3d_skipped`` and ``imgaug_3d_fit_failed``).
    5. All views are warped in one batched kornia call (``warp_views``: bilinear, uncovered
       pixels filled with the view's mean colour). Per sample, in the DataLoader worker: on CPU
       batching the warp over a whole batch (B*V images) measured slower than B per-sample
       calls (bench), and per-sample work parallelises over workers.

    Returned: ``keypoints`` = the projections of ``X'`` (the exact 3D-consistent targets, not
    the warped labels) where the view had a label; a label whose keypoint has no 3D point
    (labelled in one view only) is mapped by the view's fitted transform. Keypoints unlabelled
    in a view stay NaN and keep their visibility, even when triangulated from the other views
    (LP projects them but their visibility still decides the heatmap; keeping NaN also keeps 2D
    losses and metrics from treating them as labels). Labels that leave the image (or fall
    behind a camera) become NaN with visibility 0 (``imgaug_3d_out_of_image`` counts them).
    ``keypoints_3d = X'`` exactly (float32), ``transforms (V, 3, 3)`` = fitted homography @
    any earlier transform. ``last_draw`` holds the drawn ``scale``, ``centre``, ``shift`` and the
    per-view model used (for tests and debugging; per worker process).

    Choice of ``fit`` (``bench/bench_aug3d.py``, see bench/RESULTS.md): on
    ``make_example_project`` (4 views, 256 px, a Gaussian blob exactly at every label), the
    distance between each warped blob's centroid and its augmented label, median / p95 px over
    2505 blobs: similarity 0.17 / 0.59, affine 0.12 / 0.47, **homography 0.07 / 0.27**. A 3D
    scale and shift is not a 2D similarity in an image (depth changes give perspective; a
    near-planar pose moves by a homography), hence the default; ``similarity`` reproduces
    Lightning Pose. With 1 px Gaussian label noise all three give ~0.87 / 1.9 px (the noise
    dominates; homography's tail is 4 % longer and 39 % of its fits fall back to affine). On
    mouse4cam's real labels (~1.3 model px reprojection error at 256 px) ``plausible`` rejects
    96 % of the homographies (strong perspective fitted to label noise), which then fall back
    to affine.

    ``source``: ``labels`` (default, LP) fits the warp to where the image content is labelled,
    so it also absorbs calibration error (cameras rotated by 4 mrad: homography 0.07 px from
    labels vs 0.10 px from projections); ``projections`` fits it to the projections of the
    triangulated pose, which averages label noise over views (1 px noise: 0.75 / 1.61 px vs
    0.88 / 1.94 px). Pick ``projections`` for noisy labels and a good calibration.
    """

    name: ClassVar[str] = "imgaug_3d"
    Params: ClassVar[type[AugmenterParams]] = Augment3DParams
    requires_calibration: ClassVar[bool] = True

    def __init__(self, params: Augment3DParams, context: Context) -> None:
        super().__init__(params, context)
        self.last_draw: dict[str, Any] | None = None

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        params: Augment3DParams = self.params  # type: ignore[assignment]
        cameras = sample.get("cameras")
        if cameras is None:
            raise ConfigError(
                "training.imgaug_3d: 3D augmentation needs calibrated cameras, but this sample "
                "has none (add calibration.toml or calibrations/<session>.toml to the project, "
                "or set training.imgaug_3d: false)"
            )
        self.last_draw = None
        if params.p < 1.0 and rng.random() >= params.p:
            return sample

        images: Tensor = sample["images"]
        image_size = (int(images.shape[-2]), int(images.shape[-1]))
        keypoints = sample["keypoints"].double()  # (V, K, 2)
        bbox = torch.as_tensor(sample["bbox"]).double()
        cams = cameras.to(dtype=torch.float64)
        labelled = torch.isfinite(keypoints).all(-1)  # (V, K)

        with torch.no_grad():
            frame = model_to_frame(keypoints, bbox, image_size)
            # views that see a label's point from behind take no part (counted below)
            solved = triangulate_checked(frame, cams.intrinsics, cams.extrinsics,
                                         cams.distortions)
            points = solved.points
        has_3d = torch.isfinite(points).all(-1)  # (K,)
        stats: dict[str, Any] = dict(sample.get("aug_stats") or {})
        stats["imgaug_3d_labels_behind_camera"] = int(solved.behind.sum())
        if int(has_3d.sum()) < params.min_keypoints:
            stats.update(imgaug_3d_skipped=1, imgaug_3d_too_few_points=1)
            return {**sample, "aug_stats": stats}

        # draw: uniform scale about the pose centre, then a shift per axis (LP order)
        scale = float(rng.uniform(*params.scale))
        shift_unit = rng.uniform(-1.0, 1.0, size=3)
        finite = points[has_3d].numpy()
        centre = np.median(finite, axis=0)
        scaled = (finite - centre) * scale + centre
        extent = scaled.max(axis=0) - scaled.min(axis=0)
        shift = params.shift * extent * shift_unit
        c_t, s_t = torch.from_numpy(centre), torch.from_numpy(shift)
        points_aug = (points - c_t) * scale + c_t + s_t  # NaN stays NaN

        with torch.no_grad():
            both = torch.stack([points, points_aug])  # (2, K, 3)
            proj = project_points(both, cams.intrinsics, cams.extrinsics, cams.distortions)
            proj = frame_to_model(proj, bbox, image_size)  # (2, V, K, 2)
        front = _in_front(points, cams.extrinsics)
        front_aug = _in_front(points_aug, cams.extrinsics)
        use_label = labelled if params.source == "labels" else torch.zeros_like(labelled)
        src = torch.where(use_label[..., None], keypoints, proj[0])
        dst = proj[1]
        valid = has_3d[None] & front_aug & (use_label | front)
        mats, used = fit_with_fallback(src, dst, valid, params.fit, image_size)
        if bool((used < 0).any()):
            stats.update(imgaug_3d_skipped=1, imgaug_3d_fit_failed=1)
            return {**sample, "aug_stats": stats}

        # labels -> augmented targets; labels without a 3D point follow the fitted warp
        warped = apply_homography(keypoints, mats)
        target = torch.where(has_3d[None, :, None], dst, warped)
        behind = has_3d[None] & ~front_aug
        keep = labelled & _inside(target, image_size) & ~behind
        lost = labelled & ~keep
        new_keypoints = torch.where(keep[..., None], target, torch.nan)
        visibility = torch.as_tensor(sample["visibility"])
        visibility = torch.where(lost, torch.zeros_like(visibility), visibility)

        previous = sample.get("transforms")
        transforms = mats if previous is None else mats @ torch.as_tensor(previous).double()
        fallback = int((used < MODELS.index(params.fit)).sum())
        stats.update(
            imgaug_3d_skipped=0,
            imgaug_3d_fallback=fallback,
            imgaug_3d_out_of_image=int(lost.sum()),
        )
        self.last_draw = {
            "scale": scale,
            "centre": centre,
            "shift": shift,
            "models": [MODELS[int(i)] for i in used],
        }
        out_3d_dtype = torch.float32
        if sample.get("keypoints_3d") is not None:
            out_3d_dtype = torch.as_tensor(sample["keypoints_3d"]).dtype
        return {
            **sample,
            "images": warp_views(images, mats),
            "keypoints": new_keypoints.to(sample["keypoints"].dtype),
            "visibility": visibility,
            "keypoints_3d": points_aug.to(out_3d_dtype),
            "transforms": transforms.to(torch.float32),
            "aug_stats": stats,
        }
