"""Sessions: which videos belong together, and which calibration belongs to a session.

One home for two decisions that training (unlabelled clips), the labelled project and
prediction all make, so that they make them the same way:

- ``find_sessions``: ``<session>_<view>.<ext>`` files of a folder grouped into sessions with
  every view, their frame counts, rates and sizes, and the sync policy
  (``data.video_sync``): ``strict`` (default) refuses views whose frame counts differ,
  ``truncate`` uses the first frames common to all views. A session that lacks a view is an
  error that names the missing files.
- ``CalibrationResolver``: the calibration of a labelled image or of a video session, from
  ``data.camera_params_file`` (labelled images), ``calibrations/<session>.toml``,
  ``data.calibration_file`` or ``calibration.toml`` in the data directory, in that order. It
  answers with a ``SessionCalibration`` or a typed ``NoCalibration`` that says where it looked.
  A configured ``data.calibration_file`` or ``data.camera_params_file`` that does not exist is
  an error, everywhere.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from mvcore.data.videos import VideoInfo, match_view, probe_video
from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, load_calibration

__all__ = [
    "VIDEO_SUFFIXES",
    "CalibrationResolver",
    "NoCalibration",
    "SessionCalibration",
    "VideoSession",
    "find_sessions",
    "prediction_video_dir",
    "resolve_data_dir",
    "resolve_path",
    "session_of_image",
    "video_dir",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
SyncPolicy = Literal["strict", "truncate"]
#: views whose frame rates differ by more than this fraction are not synchronised
_FPS_TOLERANCE = 0.01


def resolve_data_dir(config: Any) -> Path:
    """``data.data_dir`` as an absolute path: relative paths resolve against
    ``config.config_dir`` when set, else the current directory."""
    data_dir = Path(os.path.expanduser(config.data.data_dir))
    if not data_dir.is_absolute():
        base = Path(config.config_dir) if getattr(config, "config_dir", None) else Path.cwd()
        data_dir = base / data_dir
    return data_dir.resolve()


def resolve_path(root: Path, name: str) -> Path:
    """A path from the config (``~`` expanded), relative ones under ``root``."""
    path = Path(os.path.expanduser(name))
    return path if path.is_absolute() else root / path


def video_dir(config: Any) -> Path | None:
    """``data.video_dir`` resolved against the data directory (None when not configured)."""
    name = config.data.video_dir
    return resolve_path(resolve_data_dir(config), name) if name else None


def prediction_video_dir(config: Any) -> Path | None:
    """The videos to predict: ``eval.test_videos_directory`` (Lightning Pose's meaning),
    else ``data.video_dir``, resolved against the data directory."""
    name = config.eval.test_videos_directory or config.data.video_dir
    return resolve_path(resolve_data_dir(config), name) if name else None


def session_of_image(image_path: str, view_name: str) -> str:
    """Session of a labelled image ``.../labeled-data/<session>_<view>/img``; '' if none."""
    parts = PurePosixPath(image_path.replace("\\", "/")).parts
    if "labeled-data" not in parts[:-1]:
        return ""
    i = parts.index("labeled-data")
    if i + 1 >= len(parts) - 1:
        return ""
    folder = parts[i + 1]
    if folder.endswith("_" + view_name):
        return folder[: -len(view_name) - 1]
    return folder.rsplit("_", 1)[0] if "_" in folder else ""


# ------------------------------------------------------------------------------ video sessions
@dataclass
class VideoSession:
    """The synchronised videos of one session, in view order.

    ``num_frames``: the frames every view has (the common count); ``truncated``: the views'
    counts differed and ``data.video_sync: truncate`` cut them to ``num_frames``."""

    name: str
    view_names: list[str]
    videos: list[VideoInfo]
    num_frames: int
    truncated: bool = False

    @property
    def fps(self) -> Fraction:
        return self.videos[0].fps

    @property
    def frame_sizes(self) -> np.ndarray:
        """``(V, 2)`` ``[height, width]`` of each view."""
        return np.array([[v.height, v.width] for v in self.videos], dtype=np.int64)


def _expected(name: str, views: list[str]) -> str:
    return ", ".join(f"{name}_{v}.mp4" for v in views)


def find_sessions(root: str | Path, view_names: list[str], session: str | None = None,
                  sync: SyncPolicy = "strict") -> list[VideoSession]:
    """Group ``<session>_<view>.<ext>`` videos of ``root`` into sessions (sorted by name).

    ``session``: only that one. One DataError lists every problem: a missing folder, no
    matching file, two files for one view, a session without a video for every view, frame
    rates that differ, or (``sync="strict"``) frame counts that differ."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"video directory not found: {root}")
    files = sorted(p for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    grouped: dict[str, dict[str, Path]] = {}
    problems: list[str] = []
    for path in files:
        match = match_view(path.stem, view_names)
        if match is None:
            continue
        name, view = match
        views = grouped.setdefault(name, {})
        if view in views:
            problems.append(f"two videos for session {name!r}, view {view!r}: "
                            f"{views[view].name} and {path.name}")
            continue
        views[view] = path
    pattern = f"<session>_<view>{{{','.join(VIDEO_SUFFIXES)}}} for views {list(view_names)}"
    if session is not None:
        if session not in grouped:
            raise DataError(f"{root}: no videos of session {session!r} (expected "
                            f"{_expected(session, view_names)}); sessions found: "
                            f"{sorted(grouped) or 'none'}")
        grouped = {session: grouped[session]}
    if not grouped:
        names = [p.name for p in files[:5]]
        raise DataError(f"{root}: no videos named {pattern}; video files there: "
                        f"{names or 'none'}")
    sessions = []
    for name in sorted(grouped):
        views = grouped[name]
        missing = [v for v in view_names if v not in views]
        if missing:
            problems.append(f"session {name!r} has no video for view(s) {missing} (expected "
                            f"{_expected(name, missing)} beside "
                            f"{', '.join(p.name for p in views.values())}); add them or move "
                            "the session's videos out of the folder")
            continue
        infos = [probe_video(views[v]) for v in view_names]
        found = _check_session(name, view_names, infos, sync, problems)
        if found is not None:
            sessions.append(found)
    if problems:
        raise DataError(f"{root}: " + "; ".join(problems))
    return sessions


def _check_session(name: str, view_names: list[str], infos: list[VideoInfo], sync: SyncPolicy,
                   problems: list[str]) -> VideoSession | None:
    rates = [float(info.fps) for info in infos]
    if max(rates) > min(rates) * (1 + _FPS_TOLERANCE):
        listed = ", ".join(f"{v} {r:g}" for v, r in zip(view_names, rates))
        problems.append(f"session {name!r}: the views' frame rates differ ({listed} fps), so "
                        "they cannot be synchronised frame by frame")
        return None
    counts = [info.num_frames for info in infos]
    if min(counts) == 0:
        problems.append(f"session {name!r}: the videos have no frames")
        return None
    if len(set(counts)) > 1:
        listed = ", ".join(f"{v} {c}" for v, c in zip(view_names, counts))
        if sync == "strict":
            problems.append(
                f"session {name!r}: views out of sync, frame counts differ ({listed}); if the "
                "videos start together and only their ends differ, set data.video_sync: "
                f"truncate to use the first {min(counts)} frames of each")
            return None
        warnings.warn(f"session {name!r}: frame counts differ ({listed}); using the first "
                      f"{min(counts)} frames of each view (data.video_sync: truncate)",
                      stacklevel=4)
    return VideoSession(name, list(view_names), infos, min(counts), len(set(counts)) > 1)


# ------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class SessionCalibration:
    """A calibration found for a session or image: the cameras in view order, and its file."""

    group: CameraGroup
    path: Path


@dataclass(frozen=True)
class NoCalibration:
    """No calibration for a session or image; ``reason`` says where mvcore looked."""

    reason: str

    def __bool__(self) -> bool:
        return False


Calibration = SessionCalibration | NoCalibration


class CalibrationResolver:
    """The calibration of labelled images and video sessions (see the module docstring).

    Files are read once and their cameras ordered as ``view_names`` (extra cameras dropped);
    a file that lacks a view's camera is a DataError naming both."""

    def __init__(self, config: Any, view_names: list[str], root: Path | None = None) -> None:
        data = config.data
        self.root = root if root is not None else resolve_data_dir(config)
        self.view_names = list(view_names)
        self._loaded: dict[Path, CameraGroup] = {}
        self.fallback: Path | None = None
        if data.calibration_file:
            self.fallback = resolve_path(self.root, data.calibration_file)
            if not self.fallback.is_file():
                raise DataError(f"data.calibration_file not found: {self.fallback}")
        elif (self.root / "calibration.toml").is_file():
            self.fallback = self.root / "calibration.toml"
        self.image_files: dict[str, Path] | None = None
        self.params_file: Path | None = None
        if data.camera_params_file:
            self.params_file = resolve_path(self.root, data.camera_params_file)
            self.image_files = {key: resolve_path(self.root, value) for key, value in
                                _read_camera_params_file(self.params_file).items()}
            by_name: dict[str, list[Path]] = {}
            for key, path in self.image_files.items():
                by_name.setdefault(PurePosixPath(key).name, []).append(path)
            #: the file of an image name that appears once in the camera params file
            self._by_name = {k: v[0] for k, v in by_name.items() if len(v) == 1}

    def _load(self, path: Path) -> CameraGroup:
        if path not in self._loaded:
            if not path.is_file():
                raise DataError(f"calibration file not found: {path}")
            group = load_calibration(path)
            missing = [name for name in self.view_names if name not in group.names]
            if missing:
                raise DataError(
                    f"{path}: camera names {group.names} ({group.num_views} cameras) do not "
                    f"match data.view_names {self.view_names}; missing {missing}. Name the "
                    "[cam_N] tables after the views")
            self._loaded[path] = group.select(self.view_names)
        return self._loaded[path]

    def _found(self, path: Path) -> SessionCalibration:
        return SessionCalibration(self._load(path), path)

    def for_session(self, session: str) -> Calibration:
        """``calibrations/<session>.toml``, else ``data.calibration_file``, else
        ``calibration.toml``; with ``data.camera_params_file``, the one file its labelled
        images of ``session`` map to."""
        if self.image_files is not None:
            files = {path for image, path in self.image_files.items()
                     if session_of_image(image, self.view_names[0]) == session}
            if len(files) == 1:
                return self._found(files.pop())
            what = "no image" if not files else f"images to {len(files)} different files"
            return NoCalibration(f"data.camera_params_file {self.params_file} maps {what} of "
                                 f"session {session!r}")
        per_session = self.root / "calibrations" / f"{session}.toml"
        if session and per_session.is_file():
            return self._found(per_session)
        if self.fallback is not None:
            return self._found(self.fallback)
        return NoCalibration(f"no {per_session}, no data.calibration_file and no "
                             f"{self.root / 'calibration.toml'}")

    def for_image(self, image_path: str) -> Calibration:
        """The calibration of a labelled image (a row's first-view image path)."""
        if self.image_files is not None:
            key = image_path.replace("\\", "/")
            path = self.image_files.get(key) or self._by_name.get(PurePosixPath(key).name)
            if path is None:
                return NoCalibration(f"data.camera_params_file {self.params_file} has no row "
                                     f"for {image_path}")
            return self._found(path)
        return self.for_session(session_of_image(image_path, self.view_names[0]))


def _read_camera_params_file(path: Path) -> dict[str, str]:
    """``image path -> calibration TOML`` from a ``calibrations.csv`` (index, ``file``)."""
    if not path.is_file():
        raise DataError(f"data.camera_params_file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: empty camera params file")
    header = [c.strip() for c in rows[0]]
    if "file" not in header[1:]:
        raise DataError(f"{path}: needs a 'file' column (index = image path), header {header}")
    col = header.index("file", 1)
    mapping = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= col:
            raise DataError(f"{path}, line {line}: expected a 'file' cell, got {row}")
        mapping[row[0].strip().replace("\\", "/")] = row[col].strip()
    return mapping
