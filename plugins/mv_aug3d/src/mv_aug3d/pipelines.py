"""2D per-view augmentation pipelines on kornia: ``dlc`` and the identities ``none``/``default``.

Lightning Pose builds these with imgaug (behaviour reference 4.1); here every op is a kornia
or torch function whose parameters are drawn from the dataset's per-sample ``rng`` (kornia's
``augmentation`` modules draw from torch's global RNG, which the sample contract forbids), and
each op runs once on all the views it applies to (no Python loop over views).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import equalize, equalize_clahe
from kornia.filters import motion_blur
from pydantic import Field
from torch import Tensor

from mv_aug3d.aug3d import warp_views
from mvcore import Augmenter, AugmenterParams
from mvcore.contracts import AugmenterSample as Sample
from mvcore.geometry import apply_homography

__all__ = ["DLCParams", "DLCPipeline", "NoAugmentation"]


class DLCParams(AugmenterParams):
    """``training.augmentation_params.dlc``; probabilities are per view (per sample if shared)."""

    lightning_pose_keys: ClassVar[dict[str, str]] = {"training.imgaug_3d": "imgaug_3d"}

    #: whether the 3D augmenter runs after this pipeline (Lightning Pose's ``training.imgaug_3d``,
    #: copied from there; null counts as true there)
    imgaug_3d: bool | None = False
    #: photometric ops draw one set of parameters for all views of a sample
    shared_across_views: bool = False
    #: per-view geometric ops; None = automatic: on only when ``imgaug_3d`` is false or
    #: the sample has no cameras (independent per-view warps break multi-view consistency)
    geometric: bool | None = None
    rotation_p: float = Field(0.4, ge=0.0, le=1.0)
    #: rotation about the image centre, U(-rotation, rotation) degrees
    rotation: float = Field(25.0, ge=0.0, le=180.0)
    crop_pad_p: float = Field(0.4, ge=0.0, le=1.0)
    #: each side is cropped (< 0) or padded (> 0) by U(-crop_pad, crop_pad) of the image
    #: size, then the result is resized back (imgaug CropAndPad, keep_size=False + Resize)
    crop_pad: float = Field(0.15, ge=0.0, lt=0.5)
    brightness_contrast_p: float = Field(0.5, ge=0.0, le=1.0)
    #: brightness and contrast factors, each U(range)
    brightness_contrast: tuple[float, float] = (0.75, 1.25)
    motion_blur_p: float = Field(0.5, ge=0.0, le=1.0)
    #: kernel 5 px, angle U(-90, 90) degrees, direction U(-1, 1) (imgaug MotionBlur k=5)
    motion_blur_kernel: int = Field(5, ge=3)
    dropout_p: float = Field(0.5, ge=0.0, le=1.0)
    #: CoarseDropout(p=0.02, size_percent=0.3, per_channel=0.5)
    dropout_fraction: float = Field(0.02, ge=0.0, le=1.0)
    salt_p: float = Field(0.5, ge=0.0, le=1.0)
    pepper_p: float = Field(0.5, ge=0.0, le=1.0)
    #: CoarseSalt / CoarsePepper(p=0.01, size_percent=(0.05, 0.1))
    salt_pepper_fraction: float = Field(0.01, ge=0.0, le=1.0)
    equalize_p: float = Field(0.1, ge=0.0, le=1.0)
    clahe_p: float = Field(0.1, ge=0.0, le=1.0)
    emboss_p: float = Field(0.1, ge=0.0, le=1.0)


class NoAugmentation(Augmenter):
    """Identity (``none`` and ``default``: Lightning Pose's "resize only"; the dataset resizes)."""

    name: ClassVar[str] = "none"

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample


def _coarse_mask(
    rng: np.random.Generator,
    views: int,
    channels: int,
    size: tuple[int, int],
    cells: np.ndarray,
    fraction: float,
) -> Tensor:
    """Blocky Bernoulli(``fraction``) masks ``(views, channels, H, W)`` bool.

    The mask is drawn on a coarse grid of ``cells (views,)`` fraction of the image resolution
    (imgaug's ``size_percent``) and upsampled by nearest neighbour: pixel ``x`` belongs to cell
    ``floor(x * cells)``. All views are drawn at the largest grid and indexed per view.
    """
    height, width = size
    grid_h = int(math.ceil(height * float(cells.max()))) + 1
    grid_w = int(math.ceil(width * float(cells.max()))) + 1
    draws = torch.from_numpy(rng.random((views, channels, grid_h, grid_w)) < fraction)
    cells_t = torch.from_numpy(np.asarray(cells, dtype=np.float64))[:, None]
    iy = (torch.arange(height, dtype=torch.float64) * cells_t).long()  # (V, H)
    ix = (torch.arange(width, dtype=torch.float64) * cells_t).long()  # (V, W)
    rows = draws.gather(2, iy[:, None, :, None].expand(views, channels, height, grid_w))
    return rows.gather(3, ix[:, None, None, :].expand(views, channels, height, width))


def _emboss(images: Tensor, alpha: Tensor, strength: Tensor) -> Tensor:
    """imgaug ``Emboss``: per-image 3x3 kernels ``(1 - a) I + a E(s)``, one grouped conv.

    ``images (N, C, H, W)``, ``alpha, strength (N,)``.
    """
    n, c, h, w = images.shape
    s = strength.to(images.dtype)[:, None, None]
    base = torch.tensor([[-1.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=images.dtype)
    emboss = base * s + torch.tensor([[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=images.dtype)
    ident = torch.zeros(3, 3, dtype=images.dtype)
    ident[1, 1] = 1.0
    a = alpha.to(images.dtype)[:, None, None]
    kernel = (1 - a) * ident + a * emboss  # (N, 3, 3)
    weight = kernel.repeat_interleave(c, dim=0)[:, None]  # (N * C, 1, 3, 3)
    padded = F.pad(images.reshape(1, n * c, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w).clamp(0.0, 1.0)


class DLCPipeline(Augmenter):
    """Lightning Pose's ``dlc`` pipeline, per view, on kornia.

    Geometric ops (only when ``training.imgaug_3d`` is false or the sample is uncalibrated,
    unless ``geometric`` forces them; otherwise this is LP's ``dlc-mv``, photometric only,
    because independent per-view warps make the views disagree with the cameras and the 3D
    targets - the 3D augmenter moves the animal consistently instead):

    - rotation U(-25, 25) degrees about the image centre (p 0.4);
    - crop-and-pad each side by U(-15 %, 15 %), resized back (p 0.4).

    Both compose into one 3x3 matrix per view, applied to the image (one batched warp, uncovered
    pixels = the view's mean colour, as in the 3D augmenter) and to the keypoints; the matrix is
    composed into ``transforms``. Keypoints leaving the image become NaN with visibility 0
    (``aug_stats["dlc_out_of_image"]``). LP's ElasticTransformation is not implemented (no
    3x3 matrix describes it).

    Photometric ops (never move keypoints), with LP's probabilities: brightness and contrast
    U(0.75, 1.25) (p 0.5; LP applies these only to unlabelled video), motion blur k=5 (p 0.5),
    coarse dropout (p 0.5), coarse salt and pepper (p 0.5 each), per-channel histogram
    equalisation (p 0.1), CLAHE (p 0.1), emboss (p 0.1). ``shared_across_views`` draws one set
    of photometric parameters per sample instead of one per view.
    """

    name: ClassVar[str] = "dlc"
    Params: ClassVar[type[AugmenterParams]] = DLCParams

    def geometric_enabled(self, sample: Sample) -> bool:
        """Whether the per-view geometric ops run on this sample."""
        params: DLCParams = self.params  # type: ignore[assignment]
        if params.geometric is not None:
            return params.geometric
        return params.imgaug_3d is False or sample.get("cameras") is None

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        images: Tensor = sample["images"]
        views = int(images.shape[0])
        out = dict(sample)
        stats: dict[str, Any] = dict(sample.get("aug_stats") or {})
        if self.geometric_enabled(sample):
            out = self._geometric(out, rng, stats)
        out["images"] = self._photometric(out["images"], rng, views)
        out["aug_stats"] = stats
        return out

    # ------------------------------------------------------------------ geometric

    def _geometric(self, sample: Sample, rng: np.random.Generator, stats: dict) -> Sample:
        params: DLCParams = self.params  # type: ignore[assignment]
        images: Tensor = sample["images"]
        views, height, width = int(images.shape[0]), int(images.shape[-2]), int(images.shape[-1])
        rotate = rng.random(views) < params.rotation_p
        angle = np.where(rotate, rng.uniform(-params.rotation, params.rotation, views), 0.0)
        crop = rng.random(views) < params.crop_pad_p
        sides = rng.uniform(-params.crop_pad, params.crop_pad, (views, 4))
        sides = np.where(crop[:, None], sides, 0.0)
        moved = rotate | crop
        stats["dlc_out_of_image"] = 0
        if not moved.any():
            return sample

        # rotation about the centre (pixel i centred at i), then crop/pad + resize
        theta = torch.from_numpy(np.deg2rad(angle))
        cos, sin = theta.cos(), theta.sin()
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        zeros = torch.zeros(views, dtype=torch.float64)
        ones = torch.ones(views, dtype=torch.float64)
        rot = torch.stack(
            [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy],
            dim=-1,
        ).reshape(views, 2, 3)
        rot = torch.cat([rot, torch.stack([zeros, zeros, ones], -1)[:, None]], dim=1)
        top, right, bottom, left = torch.from_numpy(sides).unbind(-1)
        sx = width / (width * (1.0 + left + right))
        sy = height / (height * (1.0 + top + bottom))
        # x' + 0.5 = (x + 0.5 + left * W) * sx  (pixel edges onto pixel edges)
        tx = (0.5 + left * width) * sx - 0.5
        ty = (0.5 + top * height) * sy - 0.5
        crop_mat = torch.stack([sx, zeros, tx, zeros, sy, ty, zeros, zeros, ones], -1)
        mats = crop_mat.reshape(views, 3, 3) @ rot  # (V, 3, 3) float64

        idx = torch.from_numpy(np.flatnonzero(moved))
        new_images = images.clone()
        new_images[idx] = warp_views(images[idx], mats[idx])
        keypoints = sample["keypoints"]
        moved_kp = apply_homography(keypoints.double(), mats)
        inside = (
            (moved_kp[..., 0] >= -0.5)
            & (moved_kp[..., 0] < width - 0.5)
            & (moved_kp[..., 1] >= -0.5)
            & (moved_kp[..., 1] < height - 0.5)
        )
        labelled = torch.isfinite(keypoints).all(-1)
        lost = labelled & ~inside
        new_kp = torch.where((labelled & inside)[..., None], moved_kp, torch.nan)
        visibility = torch.as_tensor(sample["visibility"])
        visibility = torch.where(lost, torch.zeros_like(visibility), visibility)
        previous = sample.get("transforms")
        transforms = mats if previous is None else mats @ torch.as_tensor(previous).double()
        stats["dlc_out_of_image"] = int(lost.sum())
        return {
            **sample,
            "images": new_images,
            "keypoints": new_kp.to(keypoints.dtype),
            "visibility": visibility,
            "transforms": transforms.to(torch.float32),
        }

    # ---------------------------------------------------------------- photometric

    def _photometric(self, images: Tensor, rng: np.random.Generator, views: int) -> Tensor:
        params: DLCParams = self.params  # type: ignore[assignment]
        n = 1 if params.shared_across_views else views

        def draw_mask(p: float) -> np.ndarray:
            return np.broadcast_to(rng.random(n) < p, (views,)).copy()

        def draw(low: float, high: float, size: tuple[int, ...] = ()) -> np.ndarray:
            return np.broadcast_to(rng.uniform(low, high, (n, *size)), (views, *size)).copy()

        size = (int(images.shape[-2]), int(images.shape[-1]))
        out = images

        # brightness and contrast: (x - mean) * contrast + mean * brightness
        on = draw_mask(params.brightness_contrast_p)
        low, high = params.brightness_contrast
        bright = torch.from_numpy(np.where(on, draw(low, high), 1.0)).to(out.dtype)
        contrast = torch.from_numpy(np.where(on, draw(low, high), 1.0)).to(out.dtype)
        if on.any():
            mean = out.mean(dim=(-3, -2, -1), keepdim=True)
            c, b = contrast[:, None, None, None], bright[:, None, None, None]
            out = ((out - mean) * c + mean * b).clamp(0.0, 1.0)

        on = draw_mask(params.motion_blur_p)
        angle, direction = draw(-90.0, 90.0), draw(-1.0, 1.0)
        if on.any():
            idx = torch.from_numpy(np.flatnonzero(on))
            out = out.clone()
            out[idx] = motion_blur(
                out[idx],
                params.motion_blur_kernel,
                torch.from_numpy(angle[on]).to(out.dtype),
                torch.from_numpy(direction[on]).to(out.dtype),
                border_type="replicate",
            )

        # coarse dropout: blocks at 30 % resolution, per channel for half of the views
        on = draw_mask(params.dropout_p)
        per_channel = draw_mask(0.5)
        if on.any():
            drop = _coarse_mask(rng, n, 3, size, np.full(n, 0.3), params.dropout_fraction)
            drop = drop.expand(views, -1, -1, -1)
            channels = torch.from_numpy(per_channel)[:, None, None, None]
            drop = torch.where(channels, drop, drop[:, :1])
            out = out.masked_fill(drop & torch.from_numpy(on)[:, None, None, None], 0.0)

        # coarse salt (white) and pepper (black) blocks at 5-10 % resolution
        for p, value in ((params.salt_p, 1.0), (params.pepper_p, 0.0)):
            on = draw_mask(p)
            cells = draw(0.05, 0.1)
            if on.any():
                mask = _coarse_mask(rng, n, 1, size, cells[:n], params.salt_pepper_fraction)
                mask = mask.expand(views, -1, -1, -1) & torch.from_numpy(on)[:, None, None, None]
                out = out.masked_fill(mask, value)

        on = draw_mask(params.equalize_p)
        if on.any():
            idx = torch.from_numpy(np.flatnonzero(on))
            out = out.clone()
            out[idx] = equalize(out[idx].contiguous())

        on = draw_mask(params.clahe_p)
        clip = float(rng.uniform(1.0, 4.0))
        if on.any():
            idx = torch.from_numpy(np.flatnonzero(on))
            out = out.clone()
            out[idx] = equalize_clahe(out[idx].contiguous(), clip_limit=clip, grid_size=(8, 8))

        on = draw_mask(params.emboss_p)
        alpha, strength = draw(0.0, 0.5), draw(0.5, 1.5)
        if on.any():
            idx = torch.from_numpy(np.flatnonzero(on))
            out = out.clone()
            out[idx] = _emboss(
                out[idx], torch.from_numpy(alpha[on]), torch.from_numpy(strength[on])
            )
        return out.clamp(0.0, 1.0)
