"""Anipose calibration files (TOML): ``load_calibration`` reads one into a ``CameraGroup``,
``save_calibration`` writes one.

An anipose file holds one ``[cam_N]`` table per view (N = 0, 1, ...) with ``name``,
``size = [width, height]``, ``matrix`` (3x3 K in pixels), ``distortions`` (OpenCV
k1 k2 p1 p2 k3), ``rotation`` (Rodrigues vector) and ``translation``; world -> camera is
``x_cam = R(rotation) x_world + translation``. ``[metadata]`` and other tables are ignored.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mvcore.errors import DataError
from mvcore.geometry.cameras import _NUM_DISTORTIONS, CameraGroup
from mvcore.geometry.rig_checks import check_cameras

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 fallback
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["load_calibration", "save_calibration"]

_CAM_SECTION = re.compile(r"^cam_(\d+)$")


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _numeric(
    table: dict[str, Any],
    key: str,
    shape: tuple[int, ...],
    where: str,
    allow_shorter: bool = False,
) -> np.ndarray:
    """Read ``table[key]`` as a finite float array of ``shape``; DataError naming the key else."""
    expected = "x".join(str(s) for s in shape)
    what = f"{where} key '{key}'"
    if key not in table:
        raise DataError(f"{what} is missing (expected {expected} numbers)")
    value = table[key]
    try:
        arr = np.array(value, dtype=object)
    except ValueError:  # ragged nested lists
        arr = None
    ok = arr is not None and arr.size > 0 and all(_is_number(x) for x in arr.ravel())
    if ok and allow_shorter:
        ok = arr.ndim == 1 and 1 <= arr.shape[0] <= shape[0]
    elif ok:
        ok = arr.shape == shape
    if not ok:
        limit = f"1 to {shape[0]}" if allow_shorter else expected
        raise DataError(f"{what}: expected {limit} finite numbers, got {_shown(value)}")
    return arr.astype(np.float64)


def load_calibration(path: str | Path) -> CameraGroup:
    """Read an anipose calibration TOML; raise DataError naming file, section and key if bad
    (malformed values, and cameras that cannot be right: ``mvcore.geometry.rig_checks``).

    Distortion lists shorter than 5 are padded with zeros (OpenCV order k1 k2 p1 p2 k3);
    longer ones and fisheye cameras are rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"calibration file not found: {path}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a valid TOML file: {_one_line(exc)}") from None
    except RecursionError:
        raise DataError(f"{path}: not a valid TOML file: arrays or tables nested too deeply "
                        "for an anipose calibration") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None

    sections = sorted((int(m.group(1)), key) for key in data if (m := _CAM_SECTION.match(key)))
    if not sections:
        raise DataError(f"{path}: no [cam_N] tables found (sections: {_shown(list(data))})")
    indices = [i for i, _ in sections]
    if indices != list(range(len(indices))):
        raise DataError(
            f"{path}: camera tables must be [cam_0]..[cam_{len(indices) - 1}], "
            f"found {[k for _, k in sections]}"
        )

    names: list[str] = []
    sizes, mats, dists, rots, trans = [], [], [], [], []
    for _, key in sections:
        where = f"{path}: [{key}]"
        table = data[key]
        if not isinstance(table, dict):
            raise DataError(f"{where} must be a table")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{where} key 'name': expected a non-empty string, got {_shown(name)}")
        if name in names:
            raise DataError(f"{where} key 'name': duplicate camera name {name!r}")
        if table.get("fisheye", False):
            raise DataError(f"{where} key 'fisheye': fisheye cameras are not supported")
        size = _numeric(table, "size", (2,), where)
        if np.any(size <= 0):
            raise DataError(f"{where} key 'size': expected positive [width, height], got {size}")
        matrix = _numeric(table, "matrix", (3, 3), where)
        dist = _numeric(table, "distortions", (_NUM_DISTORTIONS,), where, allow_shorter=True)
        names.append(name)
        sizes.append(size)
        mats.append(matrix)
        dists.append(np.pad(dist, (0, _NUM_DISTORTIONS - dist.shape[0])))
        rots.append(_numeric(table, "rotation", (3,), where))
        trans.append(_numeric(table, "translation", (3,), where))

    group = CameraGroup(
        names=names,
        sizes=np.stack(sizes),
        intrinsics=np.stack(mats),
        distortions=np.stack(dists),
        rotations=np.stack(rots),
        translations=np.stack(trans),
    )
    check_cameras(group, str(path))
    return group


def _toml_value(x: Any) -> str:
    """TOML literal for a str or a (nested) float array; floats use repr so they round-trip."""
    if isinstance(x, str):
        return json.dumps(x)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return "[ " + ", ".join(_toml_value(v) for v in x) + ",]"
    return repr(float(x))


def save_calibration(group: CameraGroup, path: str | Path) -> None:
    """Write ``group`` as an anipose TOML (readable by aniposelib and ``load_calibration``)."""
    lines: list[str] = []
    for i, name in enumerate(group.names):
        lines += [
            f"[cam_{i}]",
            f"name = {_toml_value(name)}",
            f"size = [ {', '.join(_int_or_float(s) for s in group.sizes[i])},]",
            f"matrix = {_toml_value(group.intrinsics[i])}",
            f"distortions = {_toml_value(group.distortions[i])}",
            f"rotation = {_toml_value(group.rotations[i])}",
            f"translation = {_toml_value(group.translations[i])}",
            "",
        ]
    lines += ["[metadata]", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _int_or_float(x: float) -> str:
    """Image sizes are integers in anipose files; keep them so, else write the float."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))
