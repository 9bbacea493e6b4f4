"""Unlabelled multi-view video clips for the unsupervised losses (temporal, PCA, multi-view).

Videos live in ``data.video_dir`` as ``<session>_<view>.mp4`` for every view of
``data.view_names``; which files form a session, and which calibration a session has, is
decided by ``mvcore.data.sessions`` (as for prediction). One item = ``clip_length``
consecutive synchronised frames of one session in all views, decoded with PyAV by seeking
to the keyframe before the clip and decoding forward (never the whole video), resized and
ImageNet-normalised as in ``mvcore.data.dataset`` (float bilinear resize with antialiasing,
``align_corners=False``).

Randomness: item ``i`` draws its session and start frame from
``np.random.default_rng([seed, i, draw])`` where ``draw`` counts this dataset object's items
(as in ``mvcore.data.dataset``), so clips are reproducible from the seed and differ between
epochs when the dataset object (or a persistent worker) lives on.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mvcore.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import (
    CalibrationResolver,
    NoCalibration,
    VideoSession,
    find_sessions,
    video_dir,
)
from mvcore.errors import DataError
from mvcore.geometry import CameraTensors

__all__ = ["UnlabeledClipDataset", "decode_clip"]

def _session_cameras(config: Any, project: MultiviewProject, sessions: list[VideoSession]
                     ) -> tuple[CameraTensors, np.ndarray]:
    """``(S, V, ...)`` float32 cameras per session and ``(S,)`` bool calibrated, from the
    project's calibration resolver (``mvcore.data.sessions``). A session without calibration
    gets placeholder cameras (identity), which the batch marks with ``has_calibration``
    False (``mvcore.contracts``)."""
    v = project.num_views
    placeholder = CameraTensors(
        torch.eye(3).expand(v, 3, 3), torch.eye(3, 4).expand(v, 3, 4), torch.zeros(v, 5)
    )
    resolver = CalibrationResolver(config, project.view_names, project.root)
    cams, calibrated = [], []
    for session in sessions:
        found = resolver.for_session(session.name)
        calibrated.append(not isinstance(found, NoCalibration))
        cams.append(placeholder if isinstance(found, NoCalibration)
                    else found.group.to_tensors(dtype=torch.float32))
    cameras = CameraTensors(*(torch.stack([getattr(c, part) for c in cams])
                              for part in ("intrinsics", "extrinsics", "distortions")))
    return cameras, np.asarray(calibrated, dtype=bool)


def decode_clip(path: Path, start: int, length: int) -> np.ndarray:
    """Frames ``start .. start + length - 1`` of a video as ``(T, h, w, 3)`` uint8 RGB.

    Seeks to the keyframe at or before ``start`` and decodes forward; frame numbers come from
    the presentation timestamps. DataError when the video ends early."""

    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 30)
        base = Fraction(stream.time_base)
        first = int(stream.start_time or 0)
        if start > 0:
            container.seek(first + int(start / rate / base), stream=stream, backward=True,
                           any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            index = round((frame.pts - first) * base * rate)
            if index < start:
                continue
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == length:
                break
    if len(out) < length:
        raise DataError(
            f"{path}: could decode only {len(out)} of frames {start}..{start + length - 1}"
        )
    return np.stack(out)


class UnlabeledClipDataset(Dataset):
    """Random clips of ``clip_length`` consecutive frames, all views, from the project videos.

    An item is an ``mvcore.contracts.ClipBatch`` without the batch axis (T = ``clip_length``):
    ``frames (T, V, 3, H, W)``, ``bbox (T, V, 4)`` whole frames ``[0, 0, h, w]``, ``cameras``
    ``CameraTensors (T, V, ...)``, ``has_calibration (T,)``, ``frame_index (T,)``,
    ``session`` str.
    ``len()`` is the clips per epoch: ``num_clips``, else ``training.unlabeled_clips_per_epoch``,
    else the number of non-overlapping clips in the videos.
    """

    def __init__(
        self,
        config: Any,
        project: MultiviewProject,
        clip_length: int,
        seed: int = 0,
        num_clips: int | None = None,
    ) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        root = video_dir(config)
        if root is None:
            raise DataError("data.video_dir is not set; unlabelled clips need a video directory")
        self.root = root
        self.clip_length = int(clip_length)
        self.seed = int(seed)
        dims = config.data.image_resize_dims
        self.image_size = (int(dims.height), int(dims.width))
        self.view_names = list(project.view_names)
        self.sessions = find_sessions(root, self.view_names, sync=config.data.video_sync)
        self._starts = np.array(
            [max(0, s.num_frames - self.clip_length + 1) for s in self.sessions], dtype=np.int64
        )
        if self._starts.sum() == 0:
            counts = {s.name: s.num_frames for s in self.sessions}
            raise DataError(
                f"{root}: every video session is shorter than a clip of {self.clip_length} "
                f"frames (training.unlabeled_clip_length); frame counts {counts}"
            )
        self._cameras, self._calibrated = _session_cameras(config, project, self.sessions)
        if num_clips is None:
            num_clips = getattr(config.training, "unlabeled_clips_per_epoch", None)
        if num_clips is None:
            num_clips = max(1, int(sum(s.num_frames for s in self.sessions)) // self.clip_length)
        self.num_clips = int(num_clips)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self._draws = 0

    def __len__(self) -> int:
        return self.num_clips

    def clip_at(self, i: int, draw: int = 0) -> tuple[int, int]:
        """``(session index, start frame)`` of item ``i`` at draw ``draw`` (deterministic)."""
        rng = np.random.default_rng([self.seed, int(i), int(draw)])
        session = int(rng.choice(len(self._starts), p=self._starts / self._starts.sum()))
        start = int(rng.integers(0, self._starts[session]))
        return session, start

    def _to_model_input(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, h, w, 3)`` uint8 -> ``(T, 3, H, W)`` float32 normalised (``load_image``'s
        resize, then ``MultiviewDataset``'s normalisation)."""
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(
                images, size=self.image_size, mode="bilinear", align_corners=False,
                antialias=True,
            ).clamp_(0.0, 1.0)
        return (images - self._mean) / self._std

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} clips")
        i = i % len(self)
        s, start = self.clip_at(i, self._draws)
        self._draws += 1
        session = self.sessions[s]
        t, v = self.clip_length, len(self.view_names)
        frames = torch.stack(
            [self._to_model_input(decode_clip(video.path, start, t)) for video in session.videos],
            dim=1,
        )  # (T, V, 3, H, W)
        sizes = torch.tensor([[video.height, video.width] for video in session.videos],
                             dtype=torch.float64)
        bbox = torch.cat([torch.zeros(v, 2, dtype=torch.float64), sizes], -1)
        cams = self._cameras
        return {
            "frames": frames,
            "bbox": bbox.expand(t, v, 4).clone(),
            "cameras": CameraTensors(cams.intrinsics[s].expand(t, v, 3, 3).clone(),
                                     cams.extrinsics[s].expand(t, v, 3, 4).clone(),
                                     cams.distortions[s].expand(t, v, 5).clone()),
            "has_calibration": torch.full((t,), bool(self._calibrated[s])),
            "frame_index": torch.arange(start, start + t, dtype=torch.int64),
            "session": session.name,
        }
