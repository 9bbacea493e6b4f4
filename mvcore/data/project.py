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

Checks at load, each a one-line ``DataError`` (or warning) naming the file, line and keypoint
or image: every labelled image's header is read (its size; a PNG or JPEG that does not end as
it must is decoded to tell a truncated file from trailing bytes), so a broken image stops the
run before training rather than in a DataLoader worker; images of one folder (one video) must
have one size, and whole-frame images their calibrated camera's size. A project without any
labelled point is an error, a view without one a warning. A label more than ``FAR_OUTSIDE`` of
its image's width / height beyond the image's edge is an error (a wrong unit or column, a
sentinel such as -9999 or 1e9), one just outside a warning. The same image listed twice in a
label CSV is an error (which label is right? and the copies could land in both the training
and the validation split); two images with identical labels (two or more points) in a view
are a warning (a copied row, or one frame under two names).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from mvcore.config.schema import DataConfig, MvConfig
from mvcore.data.bbox import model_to_frame, read_bbox_csv, whole_image_bbox
from mvcore.data.csv_io import LabelTable, read_label_csv, show
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
#: a label farther than this fraction of its image's width (x) or height (y) beyond the
#: image's edge is an error; nearer, outside the image, a warning
FAR_OUTSIDE = 0.25
#: how a PNG and a JPEG file end (the IEND chunk with its CRC; the EOI marker)
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


def _basename(image_path: str) -> str:
    return PurePosixPath(image_path.replace("\\", "/")).name


def _line_number(table: LabelTable, row: int) -> int:
    """The 1-based file line of a label row."""
    return table.lines[row] if table.lines else row + _CSV_HEADER_LINES + 1


def _line(table: LabelTable, row: int) -> str:
    """``file, line L (image)`` of a label row."""
    return f"{table.path}, line {_line_number(table, row)} ({show(table.image_paths[row])})"


def _ends_as_it_must(path: Path, image_format: str | None) -> bool:
    """Whether a PNG / JPEG file ends with its closing chunk / marker (other formats: True).
    A file that does not was cut short, or has bytes after its end (``_image_header``)."""
    end = {"PNG": _PNG_END, "JPEG": _JPEG_END}.get(image_format or "")
    if end is None:
        return True
    with path.open("rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - len(end)))
        return handle.read() == end


def _image_header(path: Path, where: str) -> tuple[int, int]:
    """``(height, width)`` of one labelled image from its header; a file PIL cannot identify,
    or a PNG / JPEG that does not end as it must and fails to decode (truncated), is a
    DataError naming ``where`` (the CSV line). Cheap: the header and the last bytes, a full
    decode only for a file whose end is wrong."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if not _ends_as_it_must(path, image.format):
                image.load()  # raises for a truncated file; trailing bytes are harmless
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{where}: cannot read image {path} ({reason}): replace it with a "
                        "good copy (extract the frame again)") from None
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
            hint = ""
            if "${" in str(data.data_dir):  # e.g. ${LP_ROOT_PATH:}, Lightning Pose's own resolver
                hint = (f" ({data.data_dir!r} holds a reference mvcore cannot resolve: write "
                        "the project folder's path, or --set data.data_dir=PATH)")
            raise DataError(f"data.data_dir {root} is not a directory{hint}")
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
        _check_duplicate_frames(tables)
        n = len(tables[0])
        image_paths = [[t.image_paths[i] for t in tables] for i in range(n)]
        if need_images:
            _check_images_exist(root, tables)
        calibrations, files, index = _calibrate_rows(config, root, image_paths, view_names)
        bbox_names = list(data.bbox_file or [])
        if not need_images:
            sizes = _sizes_from_calibration(calibrations, index, image_paths, bbox_names)
            bboxes = whole_image_bbox(sizes)
        else:
            # every header: a broken image is found now, not in a DataLoader worker
            sizes = _image_sizes(root, tables, same_per_folder=not bbox_names)
            if bbox_names:
                bboxes = np.stack(
                    [
                        read_bbox_csv(resolve_path(root, name), t.image_paths)
                        for name, t in zip(bbox_names, tables)
                    ],
                    axis=1,
                )
            else:
                bboxes = whole_image_bbox(sizes)

        coords = np.stack([t.coords for t in tables], axis=1)  # (n, V, K, 2) image pixels
        visibility = _visibility(
            tables, coords, config.training.uniform_heatmaps_for_nan_keypoints
        )
        coords = np.where((visibility == VIS_UNIFORM)[..., None], np.nan, coords)
        _check_labelled_points(tables, coords)
        _check_label_ranges(tables, coords, sizes)
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


def _image_sizes(root: Path, tables: list[LabelTable], same_per_folder: bool) -> np.ndarray:
    """``(n, V, 2)`` ``[height, width]`` of every labelled image, from its header
    (``_image_header``: truncated files are found here). ``same_per_folder``: the images of
    a folder are frames of one video and must have one size (not so for bbox crops)."""
    n, v = len(tables[0]), len(tables)
    sizes = np.empty((n, v, 2), dtype=np.int64)
    first: dict[Path, tuple[tuple[int, int], str]] = {}
    for c, table in enumerate(tables):
        for r, name in enumerate(table.image_paths):
            path = resolve_path(root, name)
            size = _image_header(path, _line(table, r))
            sizes[r, c] = size
            if not same_per_folder:
                continue
            seen, where = first.setdefault(path.parent, (size, _line(table, r)))
            if size != seen:
                raise DataError(
                    f"{_line(table, r)}: image is {size[1]}x{size[0]} (w x h) but the first "
                    f"image of its folder, {where}, is {seen[1]}x{seen[0]}; the frames of one "
                    "folder (one video) must have one size: replace the odd image (extract "
                    "the frame again)")
    return sizes


def _check_duplicate_frames(tables: list[LabelTable]) -> None:
    """The same image twice in a label CSV is an error; different images with identical
    labels (two or more points) a warning (see the module docstring)."""
    for table in tables:
        seen: dict[str, int] = {}
        for r, name in enumerate(table.image_paths):
            key = name.strip().replace("\\", "/")
            if key in seen:
                raise DataError(
                    f"{_line(table, r)}: image listed twice in {table.path.name} (also line "
                    f"{_line_number(table, seen[key])}); a frame must be labelled once: "
                    "remove one of the rows (from every view's CSV)")
            seen[key] = r
    for table in tables:
        flat = table.coords.reshape(len(table), -1)
        labelled = np.isfinite(table.coords).all(-1).sum(-1) >= 2
        groups: dict[bytes, int] = {}
        pairs: list[tuple[int, int]] = []
        for r in np.flatnonzero(labelled):
            key = np.where(np.isnan(flat[r]), np.inf, flat[r]).tobytes()
            if key in groups:
                pairs.append((groups[key], int(r)))
            else:
                groups[key] = int(r)
        if pairs:
            a, b = pairs[0]
            warnings.warn(
                f"{table.path}: lines {_line_number(table, a)} and {_line_number(table, b)} "
                f"({show(table.image_paths[a])}, {show(table.image_paths[b])}) have identical "
                f"labels ({len(pairs)} such row(s) in this file); a copied row, or one frame "
                "under two names? check these images' labels",
                stacklevel=4,
            )


def _check_labelled_points(tables: list[LabelTable], coords: np.ndarray) -> None:
    """A project without a labelled point is an error; a view without one a warning."""
    labelled = np.isfinite(coords).all(-1).sum(axis=(0, 2))  # (V,)
    if not labelled.any():
        names = ", ".join(t.path.name for t in tables)
        raise DataError(
            f"no labelled points in {names}: every x, y cell is empty (or visible=1); label "
            "some frames, or check that data.csv_file names the label files")
    for v in np.flatnonzero(labelled == 0):
        warnings.warn(
            f"{tables[v].path}: no labelled points in this view (every x, y cell is empty); "
            "it gets no supervised target",
            stacklevel=4,
        )


def _check_label_ranges(tables: list[LabelTable], coords: np.ndarray, sizes: np.ndarray
                        ) -> None:
    """Labels (``coords (n, V, K, 2)`` labelled-image pixels; ``sizes (n, V, 2)`` [h, w]) far
    outside their image are an error, labels just outside a warning (module docstring)."""
    extent = sizes[:, :, None, ::-1].astype(np.float64)  # (n, V, 1, 2) [w, h]
    low, high = -0.5, extent - 0.5  # pixel edges: pixel i spans [i - 0.5, i + 0.5]
    with np.errstate(invalid="ignore"):
        beyond = np.maximum(low - coords, coords - high)  # > 0: outside on that axis
        outside = (beyond > 0).any(-1)
        far = (beyond > FAR_OUTSIDE * extent).any(-1)
    for v, table in enumerate(tables):
        bad = far[:, v] if far[:, v].any() else outside[:, v]
        if not bad.any():
            continue
        r, k = (int(i) for i in np.argwhere(bad)[0])
        name = table.keypoint_names[k]
        axis = "xy"[int(np.nanargmax(beyond[r, v, k] / extent[r, v, 0]))]
        column = table.columns.get((name, axis))
        where = (f"{table.path}, line {_line_number(table, r)}"
                 + (f", column {column + 1}" if column is not None else "")
                 + f" ({show(name)}, {show(table.image_paths[r])})")
        w, h = (int(s) for s in sizes[r, v, ::-1])
        point = f"({coords[r, v, k, 0]:.6g}, {coords[r, v, k, 1]:.6g})"
        count = int(bad.sum())
        if far[:, v].any():
            raise DataError(
                f"{where}: label {point} lies far outside the {w}x{h} (w x h) image (more than "
                f"{FAR_OUTSIDE:.0%} of its size beyond the edge; {count} such label(s) in this "
                "file): fix it, or leave its x, y cells empty if the point is not visible")
        warnings.warn(
            f"{where}: label {point} lies outside the {w}x{h} (w x h) image ({count} label(s) "
            "in this file just outside); it is kept: check it",
            stacklevel=4,
        )


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
    """Whole-frame images must have their calibrated camera's size: labels are in image
    pixels, the calibration in its own, so a difference makes every 3D target wrong."""
    for c, group in enumerate(project.calibrations):
        rows = np.flatnonzero(project.calibration_index == c)
        sizes = project.image_sizes[rows][:, :, ::-1]  # (m, V, 2) [width, height]
        bad = (sizes != group.sizes[None]).any(-1)  # (m, V)
        if not bad.any():
            continue
        r, v = (int(i) for i in np.argwhere(bad)[0])
        w, h = (int(x) for x in sizes[r, v])
        cam_w, cam_h = (f"{x:g}" for x in group.sizes[v])
        raise DataError(
            f"{project.calibration_files[c]}: camera {show(project.view_names[v])!r} is "
            f"{cam_w}x{cam_h} (w x h) but its labelled image "
            f"{show(project.image_paths[rows[r]][v])} is {w}x{h}; labels are in image pixels, "
            "so the calibration must describe the labelled frames: calibrate at the image "
            "size, scale the calibration's matrix and size to it, or remove the calibration "
            "to train in 2D only")
