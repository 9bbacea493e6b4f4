"""The labelled multi-view dataset: one item = all views of one instant.

Per item: load each view's image (PIL, RGB), resize it to the model input ``(H, W)`` (the
image on disk covers its bbox, see ``mvcore.data.project``), map the frame labels to model
pixels (``mvcore.data.bbox``), run the augmenters (training only; the sample contract of
``mvcore.augment.base``), ImageNet-normalise, render the heatmap targets.

Randomness: augmenter ``k`` gets ``np.random.default_rng([seed, torch.initial_seed() % 2**32,
row, draw, k])`` where ``draw`` counts this dataset object's augmented items. Inside a
DataLoader worker ``torch.initial_seed()`` is the worker's seed (base seed + worker id, a new
base seed per epoch unless workers persist, in which case ``draw`` keeps advancing), so
augmentations differ between workers and epochs and are reproducible given the seeds.

Errors: an item that cannot be made (an image that fails to decode, a size that changed since
the project was loaded) raises ``ItemError``, a ``DataError`` naming the file. Raised in a
DataLoader worker, it reaches the main process as the same class, which torch rebuilds from
the worker's whole formatted traceback; ``ItemError`` keeps only its own one-line message, so
the user sees ``error: cannot decode image ...``, not a worker traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate

from mvcore.data.bbox import frame_to_model
from mvcore.data.heatmaps import render_heatmaps
from mvcore.data.project import MultiviewProject
from mvcore.data.triangulate import triangulate_keypoints
from mvcore.errors import DataError, MvcoreError
from mvcore.geometry import CameraTensors

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ItemError", "MultiviewDataset", "collate_items",
           "load_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: how torch's ``ExceptionWrapper`` starts the message of an error re-raised from a worker
_WORKER_PREFIX = "Caught "


class ItemError(DataError):
    """A dataset item that cannot be made; the message names the file. Built from a
    DataLoader worker's re-raise (``Caught ItemError in DataLoader worker process N.`` and the
    worker's traceback), it keeps only the original message's last line."""

    def __init__(self, message: str = "") -> None:
        text = str(message)
        marker = f"{type(self).__name__}: "
        if text.startswith(_WORKER_PREFIX) and marker in text:
            last = [line for line in text.splitlines() if marker in line][-1]
            text = last.split(marker, 1)[1].strip()
        super().__init__(text)


def load_image(
    path: Any,
    size: tuple[int, int],
    expected_size: tuple[int, int] | None = None,
    fast_jpeg: bool = True,
) -> torch.Tensor:
    """Load an image as RGB and resize it to ``size = (H, W)`` -> ``(3, H, W)`` float32 in [0, 1].

    Bilinear with antialiasing, pixel edges onto pixel edges (``align_corners=False``).
    ``expected_size`` ``(height, width)``: DataError if the file differs. ``fast_jpeg`` lets
    libjpeg decode at 1/2, 1/4 or 1/8 scale when that still exceeds ``size`` and divides the
    image exactly (DCT-domain averaging: same pixel geometry, about 2x faster, differences of
    about half a grey level on average).
    """

    height, width = size
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise ItemError(f"image not found: {path}") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise ItemError(f"cannot read image {path}: {_reason(exc)}; replace it with a good "
                        "copy") from None
    with image:
        w0, h0 = image.size
        if expected_size is not None and (h0, w0) != tuple(int(s) for s in expected_size):
            raise ItemError(
                f"image {path} is {h0}x{w0} (h x w) but {expected_size[0]}x{expected_size[1]} "
                "was expected (its size when the project was loaded; did the file change "
                "during the run?)"
            )
        if fast_jpeg and image.format == "JPEG":
            scale = _jpeg_scale(w0, h0, width, height)
            if scale > 1:
                image.draft("RGB", (w0 // scale, h0 // scale))
        try:
            array = np.array(image.convert("RGB"))
        except Exception as exc:  # as above: a truncated or corrupt file
            raise ItemError(f"cannot decode image {path}: {_reason(exc)}; replace it with a "
                            "good copy") from None
    tensor = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32).div_(255.0)
    if tensor.shape[-2:] != (height, width):
        tensor = F.interpolate(
            tensor[None],
            size=(height, width),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0].clamp_(0.0, 1.0)
    return tensor


def _reason(exc: BaseException) -> str:
    """An exception's message on one line (its type when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _jpeg_scale(w0: int, h0: int, width: int, height: int) -> int:
    """Largest libjpeg scale 1/s (s in 8, 4, 2) that divides the image and keeps it >= target."""
    for s in (8, 4, 2):
        if w0 % s == 0 and h0 % s == 0 and w0 // s >= width and h0 // s >= height:
            return s
    return 1


class MultiviewDataset(Dataset):
    """Labelled rows ``indices`` of a ``MultiviewProject`` as training / evaluation items.

    An item is an ``mvcore.contracts.LabeledBatch`` without the batch axis (shapes, dtypes and
    units are documented there); ``collate_items`` makes the batch. Uncalibrated rows carry
    placeholder cameras (identity) and ``has_calibration`` False.
    """

    #: decode large JPEGs at reduced scale (see ``load_image``)
    fast_jpeg: bool = True

    def __init__(
        self,
        project: MultiviewProject,
        config: Any,
        indices: Sequence[int],
        augmenters: Sequence = (),
        train: bool = False,
        seed: int = 0,
    ) -> None:
        self.project = project
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(project)):
            raise IndexError(f"indices must be in [0, {len(project)}), got {self.indices}")
        self.augmenters = list(augmenters)
        self.train = train
        self.seed = int(seed)
        dims = config.data.image_resize_dims
        self.image_size = (int(dims.height), int(dims.width))
        scale = 2 ** int(config.data.downsample_factor)
        self.heatmap_size = (self.image_size[0] // scale, self.image_size[1] // scale)
        self.sigma = float(config.training.heatmap_sigma)
        self.heatmap_grid = str(config.model.heatmap_grid)
        idx = self.indices
        self._keypoints_frame = project.keypoints[idx]
        self._bboxes = project.bboxes[idx]
        self._visibility = project.visibility[idx].astype(np.int64)
        self._sizes = project.image_sizes[idx]
        self._calibrated = project.calibration_index[idx] >= 0
        self._cameras = project.row_cameras(idx, dtype=torch.float32)
        points_3d = triangulate_keypoints(project, idx).points  # one batched call
        self._points_3d = torch.as_tensor(points_3d, dtype=torch.float32)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self._draws = 0

    def __len__(self) -> int:
        return int(self.indices.size)

    def load_images(self, i: int) -> torch.Tensor:
        """``(V, 3, H, W)`` float32 in [0, 1] of item ``i`` (no augmentation)."""
        row = int(self.indices[i])
        return torch.stack(
            [
                load_image(
                    self.project.image_file(row, v),
                    self.image_size,
                    expected_size=tuple(self._sizes[i, v]),
                    fast_jpeg=self.fast_jpeg,
                )
                for v in range(self.project.num_views)
            ]
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        try:
            return self._item(i % len(self))
        except ItemError:
            raise
        except MvcoreError as exc:  # one line from a worker too (see ItemError)
            raise ItemError(str(exc)) from None

    def _item(self, i: int) -> dict[str, Any]:
        """Item ``i`` (``0 <= i < len(self)``); see ``__getitem__``."""
        row = int(self.indices[i])
        views = self.project.num_views
        keypoints_frame = torch.from_numpy(self._keypoints_frame[i])
        bbox = torch.from_numpy(self._bboxes[i])
        calibrated = bool(self._calibrated[i])
        cameras = CameraTensors(
            self._cameras.intrinsics[i], self._cameras.extrinsics[i], self._cameras.distortions[i]
        )
        sample: dict[str, Any] = {
            "images": self.load_images(i),
            "keypoints": frame_to_model(keypoints_frame, bbox, self.image_size).float(),
            "visibility": torch.from_numpy(self._visibility[i]),
            "bbox": bbox.clone(),
            "cameras": cameras if calibrated else None,
            "keypoints_3d": self._points_3d[i].clone() if calibrated else None,
        }
        aug_stats: dict[str, float] = {}
        if self.train and self.augmenters:
            draw = self._draws
            self._draws += 1
            base = torch.initial_seed() % 2**32
            for k, augmenter in enumerate(self.augmenters):
                rng = np.random.default_rng([self.seed, base, row, draw, k])
                sample = augmenter(sample, rng)
                for key, value in (sample.pop("aug_stats", None) or {}).items():
                    aug_stats[key] = aug_stats.get(key, 0.0) + float(value)

        images = (sample["images"].to(torch.float32) - self._mean) / self._std
        keypoints = sample["keypoints"].to(torch.float32)
        visibility = sample["visibility"].to(torch.int64)
        heatmaps = render_heatmaps(
            keypoints, self.image_size, self.heatmap_size, sigma=self.sigma, visibility=visibility,
            grid=self.heatmap_grid,
        )
        out_cameras = sample.get("cameras") or cameras
        aug_stats["aug_skipped"] = sum(v for key, v in aug_stats.items() if "skip" in key)
        keypoints_3d = sample.get("keypoints_3d")
        if keypoints_3d is None:
            keypoints_3d = torch.full((self.project.num_keypoints, 3), float("nan"))
        transforms = sample.get("transforms")
        if transforms is None:
            transforms = torch.eye(3).expand(views, 3, 3).clone()
        return {
            "images": images,
            "keypoints": keypoints,
            "visibility": visibility,
            "heatmaps": heatmaps,
            "keypoints_frame": keypoints_frame.clone(),
            "bbox": bbox,
            "cameras": out_cameras.to(dtype=torch.float32),
            "has_calibration": torch.tensor(calibrated),
            "keypoints_3d": torch.as_tensor(keypoints_3d, dtype=torch.float32),
            "transforms": torch.as_tensor(transforms, dtype=torch.float32),
            "index": row,
            "aug_stats": aug_stats,
        }


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset or clip items: tensors are stacked as by ``default_collate``, cameras
    become one ``CameraTensors`` with a leading batch axis, and ``aug_stats`` counters become
    ``(B,)`` float tensors (0 where an item lacks a counter)."""
    first = items[0]
    batch: dict[str, Any] = {}
    for key in first:
        values = [item[key] for item in items]
        if isinstance(first[key], CameraTensors):
            batch[key] = CameraTensors(*(torch.stack([getattr(c, part) for c in values])
                                         for part in ("intrinsics", "extrinsics",
                                                      "distortions")))
        elif key == "aug_stats":
            names = sorted({name for stats in values for name in stats})
            batch[key] = {name: torch.tensor([float(s.get(name, 0.0)) for s in values])
                          for name in names}
        else:
            batch[key] = default_collate(values)
    return batch
