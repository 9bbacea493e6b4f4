"""A labelled multi-view project on disk (Lightning Pose layout), loaded and checked once.

Layout (relative to ``data.data_dir``): one label CSV per view (``data.csv_file``, in the order
of ``data.view_names``) whose index holds image paths such as
``labeled-data/<session>_<view>/img0001.png``; optional bbox CSVs (``data.bbox_file``);
calibration from ``data.camera_params_file``, ``calibrations/<session>.toml``,
``data.calibration_file`` or ``calibration.toml``.

Coordinates: labels are in the pixels of the labelled image. With a bbox CSV the labelled
image is the bbox crop of the video frame (Lightning Pose), so labels are mapped to frame
pixels with ``bbox.model_to_frame(labels, bbox, image size)`` (the pixel-centre convention of
``mvcore.data.bbox``; for an un-resized crop this is ``label + [x, y]``). Without a bbox CSV
the bbox is the whole image ``[0, 0, h, w]`` and frame = image pixels. ``keypoints`` are always
frame pixels, the space the calibration lives in.

Calibration (unlike Lightning Pose bug B7): every discovery route gives the same result -
``calibrations`` plus a per-row ``calibration_index`` - and downstream code (triangulated
targets, 3D augmentation, 3D losses) keys off each row's calibration, never off *how* it was
found. Rows without a calibration file get index -1 and a warning; 3D is off for those rows
only, the other rows keep their 3D targets.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mvcore.config.schema import DataConfig, MvConfig
from mvcore.data.bbox import model_to_frame, whole_image_bbox
from mvcore.data.csv_io import LabelTable, read_label_csv
from mvcore.data.heatmaps import VIS_LABELED, VIS_OCCLUDED, VIS_UNIFORM
from mvcore.data.sessions import (
    CalibrationResolver,
    NoCalibration,
    resolve_data_dir,
    resolve_path,
    session_of_image,
)
from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, CameraTensors, load_calibration

__all__ = ["MultiviewProject", "project_from_folder", "read_bbox_csv"]

_MAX_LISTED = 5  # how many offending items an error message lists
_CSV_HEADER_LINES = 3


def _basename(image_path: str) -> str:
    return PurePosixPath(image_path.replace("\\", "/")).name


def _line(table: LabelTable, row: int) -> str:
    """``file, line L (image)`` of a label row (3 header rows, blank lines not counted)."""
    return f"{table.path}, line {row + _CSV_HEADER_LINES + 1} ({table.image_paths[row]})"


def read_bbox_csv(path: Path, expected_index: list[str]) -> np.ndarray:
    """Read a bbox CSV (header row, index = image path, then x, y, h, w) -> ``(n, 4)``.

    Rows must be the label CSV's images in the same order (``expected_index``)."""
    if not path.is_file():
        raise DataError(f"bbox file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    body = rows[1:]
    if len(body) != len(expected_index):
        raise DataError(
            f"{path}: {len(body)} bbox rows but the label CSV has {len(expected_index)} rows; "
            "give one bbox per labelled image, in the same order"
        )
    out = np.empty((len(body), 4))
    for r, row in enumerate(body):
        where = f"{path}, row {r + 1} ({row[0] if row else ''})"
        if len(row) < 5:
            raise DataError(f"{where}: expected image path, x, y, h, w; got {row}")
        if row[0].strip().replace("\\", "/") != expected_index[r].replace("\\", "/"):
            raise DataError(
                f"{where}: image {row[0]!r} but the label CSV row {r + 1} is "
                f"{expected_index[r]!r}; bbox rows must match the label rows"
            )
        try:
            out[r] = [float(c) for c in row[1:5]]
        except ValueError:
            raise DataError(f"{where}: x, y, h, w must be numbers, got {row[1:5]}") from None
        if not np.isfinite(out[r]).all() or out[r, 2] <= 0 or out[r, 3] <= 0:
            raise DataError(f"{where}: bbox must be finite with h, w > 0, got {out[r].tolist()}")
    return out


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the image header only (PIL opens lazily)."""

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return height, width


@dataclass
class MultiviewProject:
    """All labelled rows of a multi-view project, in frame pixels.

    Shapes (n rows, V views, K keypoints): ``keypoints (n, V, K, 2)`` frame pixels, NaN =
    unlabelled; ``visibility (n, V, K)`` 0/1/2; ``bboxes (n, V, 4)`` ``[x, y, h, w]``;
    ``image_sizes (n, V, 2)`` ``[height, width]`` of the labelled images;
    ``calibration_index (n,)`` into ``calibrations`` (-1 = uncalibrated row).
    ``image_paths[i][v]`` is relative to ``root`` (as written in the CSV).
    """

    root: Path
    view_names: list[str]
    keypoint_names: list[str]
    image_paths: list[list[str]]
    keypoints: np.ndarray
    visibility: np.ndarray
    bboxes: np.ndarray
    image_sizes: np.ndarray
    sessions: list[str]
    calibrations: list[CameraGroup]
    calibration_index: np.ndarray
    #: the TOML each entry of ``calibrations`` came from
    calibration_files: list[Path] = field(default_factory=list)
    #: the label CSV of each view
    csv_files: list[Path] = field(default_factory=list)
    #: whether bboxes came from bbox CSVs (else whole images)
    has_bbox_files: bool = False

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_views(self) -> int:
        return len(self.view_names)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def has_calibration(self) -> bool:
        """Every row has a calibration (so 3D is available for the whole project)."""
        return len(self) > 0 and bool((self.calibration_index >= 0).all())

    @property
    def calibrated_rows(self) -> np.ndarray:
        """``(n,)`` bool: the row has a calibration."""
        return self.calibration_index >= 0

    def image_file(self, row: int, view: int) -> Path:
        """Absolute path of one labelled image."""
        return resolve_path(self.root, self.image_paths[row][view])

    def row_cameras(
        self, indices: np.ndarray | None = None, dtype: torch.dtype = torch.float64
    ) -> CameraTensors:
        """Cameras of rows ``indices`` (all by default) as ``(m, V, ...)`` tensors; uncalibrated
        rows get identity intrinsics, extrinsics ``[I | 0]`` and zero distortions."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        v = self.num_views
        dummy = CameraTensors(
            torch.eye(3, dtype=dtype).expand(v, 3, 3),
            torch.eye(3, 4, dtype=dtype).expand(v, 3, 4),
            torch.zeros(v, 5, dtype=dtype),
        )
        cams = [c.to_tensors(dtype=dtype) for c in self.calibrations] + [dummy]  # -1 -> dummy
        sel = torch.as_tensor(self.calibration_index[idx], dtype=torch.long)
        return CameraTensors(
            torch.stack([c.intrinsics for c in cams])[sel],
            torch.stack([c.extrinsics for c in cams])[sel],
            torch.stack([c.distortions for c in cams])[sel],
        )

    @classmethod
    def from_config(cls, config: Any, need_images: bool = True) -> MultiviewProject:
        """Load and check the project described by ``config.data`` (see module docstring).

        ``need_images=False`` (triangulating labels needs only labels and calibration): the
        image files are not read; every row needs a calibration, whose camera sizes are taken
        as the frames' sizes, and bbox crops are refused (their labels need the crops)."""
        data = config.data
        root = resolve_data_dir(config)
        if not root.is_dir():
            raise DataError(f"data.data_dir {root} is not a directory")
        csv_names = list(data.csv_file or [])
        view_names = list(data.view_names or [])
        if not csv_names:
            raise DataError("data.csv_file is empty: give one label CSV per view")
        if len(view_names) != len(csv_names):
            raise DataError(
                f"data.view_names has {len(view_names)} entries but data.csv_file has "
                f"{len(csv_names)} ({csv_names}); give one view name per label CSV, in order"
            )
        tables = [read_label_csv(resolve_path(root, name)) for name in csv_names]
        keypoint_names = _check_tables(tables, data)
        n, v = len(tables[0]), len(tables)
        image_paths = [[t.image_paths[i] for t in tables] for i in range(n)]
        if need_images:
            _check_images_exist(root, tables)
        calibrations, files, index = _calibrate_rows(config, root, image_paths, view_names)
        bbox_names = list(data.bbox_file or [])
        if not need_images:
            sizes = _sizes_from_calibration(calibrations, index, image_paths, bbox_names)
            bboxes = whole_image_bbox(sizes)
        elif bbox_names:
            bboxes = np.stack(
                [
                    read_bbox_csv(resolve_path(root, name), t.image_paths)
                    for name, t in zip(bbox_names, tables)
                ],
                axis=1,
            )
            # crops may differ in size per image: read every header
            sizes = np.array(
                [[_image_size(resolve_path(root, p)) for p in row] for row in image_paths],
                dtype=np.int64,
            ).reshape(n, v, 2)
        else:
            sizes = _image_sizes_per_folder(root, image_paths).reshape(n, v, 2)
            bboxes = whole_image_bbox(sizes)

        coords = np.stack([t.coords for t in tables], axis=1)  # (n, V, K, 2) image pixels
        visibility = _visibility(
            tables, coords, config.training.uniform_heatmaps_for_nan_keypoints
        )
        coords = np.where((visibility == VIS_UNIFORM)[..., None], np.nan, coords)
        keypoints = model_to_frame(coords, bboxes, sizes)

        sessions = [session_of_image(row[0], view_names[0]) for row in image_paths]
        project = cls(
            root=root,
            view_names=view_names,
            keypoint_names=keypoint_names,
            image_paths=image_paths,
            keypoints=keypoints,
            visibility=visibility,
            bboxes=bboxes,
            image_sizes=sizes,
            sessions=sessions,
            calibrations=calibrations,
            calibration_index=index,
            calibration_files=files,
            csv_files=[t.path for t in tables],
            has_bbox_files=bool(bbox_names),
        )
        if need_images and not bbox_names:
            _check_calibration_sizes(project)
        return project


def project_from_folder(root: str | Path, csv_prefix: str = "CollectedData",
                        views: list[str] | None = None, calibration: str | Path | None = None,
                        need_images: bool = False) -> MultiviewProject:
    """The project in a folder that holds ``<csv_prefix>_<view>.csv`` label files, without a
    config file (``mvcore triangulate`` and ``mvcore calib check``).

    ``views`` picks the label CSVs, in order (default: every such file, in the order of the
    calibration's cameras, then the files without a camera, which then fail to load);
    ``calibration`` names the TOML (default: the folder's ``calibration.toml`` or
    ``calibrations/<session>.toml``, as for a config). ``need_images`` as in ``from_config``."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"project folder not found: {folder}")
    prefix = f"{csv_prefix}_"
    found = sorted(p.stem[len(prefix):] for p in folder.glob(f"{prefix}*.csv"))
    toml = Path(calibration) if calibration else folder / "calibration.toml"
    if views is None:
        views = found
        if toml.is_file():  # calibration order; a labelled view without camera fails
            names = load_calibration(toml).names
            views = [n for n in names if n in found] + [n for n in found if n not in names]
    if len(views) < 2:
        raise DataError(f"{folder}: found {len(views)} '{prefix}<view>.csv' files; need >= 2")
    config = MvConfig(data=DataConfig(
        data_dir=str(folder.resolve()), view_names=list(views),
        csv_file=[f"{prefix}{v}.csv" for v in views],
        calibration_file=str(toml.resolve()) if calibration else None,
    ))
    return MultiviewProject.from_config(config, need_images=need_images)


def _check_tables(tables: list[LabelTable], data: Any) -> list[str]:
    """Same rows, keypoints and image file names in every view; names match the config."""
    first = tables[0]
    for t in tables[1:]:
        if len(t) != len(first):
            raise DataError(
                f"label CSVs have different numbers of rows: {first.path} has {len(first)}, "
                f"{t.path} has {len(t)}; row i must be the same instant in every view"
            )
        if t.keypoint_names != first.keypoint_names:
            diff = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(first.keypoint_names, t.keypoint_names))
                    if a != b
                ),
                min(len(first.keypoint_names), len(t.keypoint_names)),
            )
            raise DataError(
                f"{t.path}: keypoint names {t.keypoint_names} differ from {first.path}: "
                f"{first.keypoint_names} (first difference at keypoint {diff}); every view needs "
                "the same keypoints in the same order"
            )
    for t in tables[1:]:
        for i, (a, b) in enumerate(zip(first.image_paths, t.image_paths)):
            if _basename(a) != _basename(b):
                raise DataError(
                    f"{_line(t, i)}: image file name {_basename(b)!r} differs from "
                    f"{_basename(a)!r} in {_line(first, i)}; row i must show the same frame "
                    "in every view"
                )
    names = first.keypoint_names
    if data.keypoint_names is not None and list(data.keypoint_names) != names:
        raise DataError(
            f"data.keypoint_names {list(data.keypoint_names)} do not match the keypoints of "
            f"{first.path}: {names}"
        )
    if data.num_keypoints is not None and data.num_keypoints != len(names):
        raise DataError(
            f"data.num_keypoints is {data.num_keypoints} but {first.path} has {len(names)} "
            f"keypoints {names}"
        )
    if len(first) == 0:
        raise DataError(f"{first.path} has no labelled rows")
    return names


def _check_images_exist(root: Path, tables: list[LabelTable]) -> None:
    missing = [
        _line(t, i)
        for t in tables
        for i, p in enumerate(t.image_paths)
        if not resolve_path(root, p).is_file()
    ]
    if missing:
        listed = "; ".join(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise DataError(f"{len(missing)} labelled image(s) not found under {root}: {listed}{more}")


def _image_sizes_per_folder(root: Path, image_paths: list[list[str]]) -> np.ndarray:
    """``(n, V, 2)`` sizes, reading one header per folder (a folder = one video, one size).

    The dataset checks each image's real size when it loads it."""
    cache: dict[Path, tuple[int, int]] = {}
    out = []
    for row in image_paths:
        for p in row:
            path = resolve_path(root, p)
            if path.parent not in cache:
                cache[path.parent] = _image_size(path)
            out.append(cache[path.parent])
    return np.array(out, dtype=np.int64).reshape(len(image_paths), -1, 2)


def _visibility(tables: list[LabelTable], coords: np.ndarray, uniform_for_nan: bool) -> np.ndarray:
    """``(n, V, K)`` codes: the CSV's ``visible`` column where given, else 2 for labelled
    points and 1 (uniform target) or 0 (no target) for NaN ones."""
    finite = np.isfinite(coords).all(-1)
    fallback = VIS_UNIFORM if uniform_for_nan else VIS_OCCLUDED
    inferred = np.where(finite, VIS_LABELED, fallback)
    n, _, k = finite.shape
    given = np.stack(
        [t.visibility if t.visibility is not None else np.full((n, k), -1) for t in tables], axis=1
    )
    vis = np.where(given >= 0, given, inferred)
    for v, t in enumerate(tables):
        if t.visibility is None:
            continue
        labelled_nan = (vis[:, v] == VIS_LABELED) & ~finite[:, v]
        if labelled_nan.any():
            r, k = np.argwhere(labelled_nan)[0]
            warnings.warn(
                f"{_line(t, r)}: {int(labelled_nan.sum())} point(s) have visible=2 but no "
                f"coordinates (first: {t.keypoint_names[k]}); treated as unlabelled",
                stacklevel=3,
            )
            vis[:, v] = np.where(labelled_nan, fallback, vis[:, v])
        uniform_xy = (vis[:, v] == VIS_UNIFORM) & finite[:, v]
        if uniform_xy.any():
            r, k = np.argwhere(uniform_xy)[0]
            warnings.warn(
                f"{_line(t, r)}: {int(uniform_xy.sum())} point(s) have visible=1 and "
                f"coordinates (first: {t.keypoint_names[k]}); the coordinates are ignored "
                "(uniform heatmap target)",
                stacklevel=3,
            )
    return vis.astype(np.int64)


def _calibrate_rows(config: Any, root: Path, image_paths: list[list[str]],
                    view_names: list[str]) -> tuple[list[CameraGroup], list[Path], np.ndarray]:
    """Each row's calibration (``sessions.CalibrationResolver``) -> the distinct
    ``CameraGroup``s (cameras in view order), their files and a per-row index (-1: none)."""
    resolver = CalibrationResolver(config, view_names, root)
    found = [resolver.for_image(row[0]) for row in image_paths]
    files: list[Path] = []
    calibrations: list[CameraGroup] = []
    index = np.full(len(image_paths), -1, dtype=np.int64)
    for i, calibration in enumerate(found):
        if isinstance(calibration, NoCalibration):
            continue
        if calibration.path not in files:
            files.append(calibration.path)
            calibrations.append(calibration.group)
        index[i] = files.index(calibration.path)
    missing = np.flatnonzero(index < 0)
    if files and len(missing):
        listed = ", ".join(image_paths[i][0] for i in missing[:_MAX_LISTED])
        warnings.warn(
            f"{len(missing)} of {len(image_paths)} rows have no calibration, e.g. {listed} "
            f"({found[missing[0]].reason}); 3D targets are off for those rows only",
            stacklevel=3,
        )
    return calibrations, files, index


def _sizes_from_calibration(calibrations: list[CameraGroup], index: np.ndarray,
                            image_paths: list[list[str]], bbox_names: list[str]) -> np.ndarray:
    """``(n, V, 2)`` [height, width] of each row's frames from its calibration (no images)."""
    if bbox_names:
        raise DataError(f"data.bbox_file {bbox_names}: labels of bbox crops need the crop "
                        "images to be mapped to frames; put the images in the project")
    missing = np.flatnonzero(index < 0)
    if len(missing):
        raise DataError(f"{len(missing)} of {len(image_paths)} rows have no calibration, "
                        f"e.g. {image_paths[missing[0]][0]}; without images every row needs "
                        "one (its camera sizes give the frame sizes)")
    sizes = np.stack([group.sizes[:, ::-1] for group in calibrations])  # [height, width]
    return sizes[index].astype(np.int64)


def _check_calibration_sizes(project: MultiviewProject) -> None:
    """Warn when whole-frame images differ in size from the calibrated cameras."""
    for c, group in enumerate(project.calibrations):
        rows = project.calibration_index == c
        sizes = project.image_sizes[rows][:, :, ::-1]  # (m, V, 2) [width, height]
        bad = (sizes != group.sizes[None]).any(-1).any(0)
        for v in np.flatnonzero(bad):
            warnings.warn(
                f"{project.calibration_files[c]}: camera {project.view_names[v]!r} has size "
                f"{group.sizes[v].astype(int).tolist()} (w, h) but its labelled images are "
                f"{np.unique(sizes[:, v], axis=0).tolist()}; the calibration must describe "
                "the labelled frames",
                stacklevel=4,
            )
