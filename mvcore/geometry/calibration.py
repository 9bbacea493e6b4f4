"""Anipose calibration files (TOML) on the numpy side, and their torch counterpart.

An anipose file holds one ``[cam_N]`` table per view (N = 0, 1, ...) with ``name``,
``size = [width, height]``, ``matrix`` (3x3 K in pixels), ``distortions`` (OpenCV
k1 k2 p1 p2 k3), ``rotation`` (Rodrigues vector) and ``translation``; world -> camera is
``x_cam = R(rotation) x_world + translation``. ``[metadata]`` and other tables are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvcore.errors import DataError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 fallback
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "CameraGroup",
    "CameraTensors",
    "load_calibration",
    "rodrigues_to_matrix_np",
    "save_calibration",
]

_CAM_SECTION = re.compile(r"^cam_(\d+)$")
_NUM_DISTORTIONS = 5


def rodrigues_to_matrix_np(rvec: np.ndarray) -> np.ndarray:
    """Rodrigues vectors ``(..., 3)`` -> rotation matrices ``(..., 3, 3)`` (float64, numpy)."""
    r = np.asarray(rvec, dtype=np.float64)
    theta2 = np.sum(r * r, axis=-1)[..., None, None]
    small = theta2 < 1e-3  # Taylor to theta^6 below: truncation < 1e-17
    theta = np.sqrt(np.where(small, 1.0, theta2))
    t2, t4 = theta2, theta2 * theta2
    a = np.where(small, 1.0 - t2 / 6.0 + t4 / 120.0 - t4 * t2 / 5040.0, np.sin(theta) / theta)
    half = np.sin(0.5 * theta) / theta
    b = np.where(small, 0.5 - t2 / 24.0 + t4 / 720.0 - t4 * t2 / 40320.0, 2.0 * half * half)
    zero = np.zeros(r.shape[:-1])
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(
        r.shape[:-1] + (3, 3)
    )
    eye = np.broadcast_to(np.eye(3), skew.shape)
    return eye + a * skew + b * (skew @ skew)


@dataclass
class CameraTensors:
    """Cameras as torch tensors, the form datasets and models pass around.

    Shapes: ``intrinsics (..., V, 3, 3)``, ``extrinsics (..., V, 3, 4)`` (``[R|t]``,
    world -> camera), ``distortions (..., V, 5)`` (k1 k2 p1 p2 k3). Leading dims are batch dims
    after collation.
    """

    intrinsics: Tensor
    extrinsics: Tensor
    distortions: Tensor

    def __post_init__(self) -> None:
        i, e, d = self.intrinsics, self.extrinsics, self.distortions
        if i.shape[-2:] != (3, 3) or e.shape[-2:] != (3, 4) or d.shape[-1] != _NUM_DISTORTIONS:
            raise ValueError(
                "CameraTensors expects intrinsics (..., V, 3, 3), extrinsics (..., V, 3, 4), "
                f"distortions (..., V, 5); got {tuple(i.shape)}, {tuple(e.shape)}, "
                f"{tuple(d.shape)}"
            )

    @property
    def num_views(self) -> int:
        """Number of views V."""
        return int(self.intrinsics.shape[-3])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CameraTensors:
        """Return a copy on ``device`` and/or with floating ``dtype``."""
        return CameraTensors(
            self.intrinsics.to(device=device, dtype=dtype),
            self.extrinsics.to(device=device, dtype=dtype),
            self.distortions.to(device=device, dtype=dtype),
        )

    def pin_memory(self) -> CameraTensors:
        """A copy in pinned memory (the DataLoader calls this with ``pin_memory=True``)."""
        return CameraTensors(self.intrinsics.pin_memory(), self.extrinsics.pin_memory(),
                             self.distortions.pin_memory())

    def __getitem__(self, index: Any) -> CameraTensors:
        """Index the leading (batch) axes of all three tensors: ``cameras[0]``."""
        return CameraTensors(self.intrinsics[index], self.extrinsics[index],
                             self.distortions[index])


@dataclass
class CameraGroup:
    """A calibrated camera rig (numpy, float64), in file order ``[cam_0], [cam_1], ...``.

    Shapes: ``sizes (V, 2)`` [width, height], ``intrinsics (V, 3, 3)`` (full K, skew kept),
    ``distortions (V, 5)``, ``rotations (V, 3)`` Rodrigues world -> camera,
    ``translations (V, 3)``.
    """

    names: list[str]
    sizes: np.ndarray
    intrinsics: np.ndarray
    distortions: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        v = len(self.names)
        self.sizes = np.asarray(self.sizes, dtype=np.float64).reshape(v, 2)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64).reshape(v, 3, 3)
        dist = np.asarray(self.distortions, dtype=np.float64).reshape(v, -1)
        if dist.shape[1] > _NUM_DISTORTIONS:
            raise ValueError(f"CameraGroup: at most 5 distortion coefficients, got {dist.shape}")
        self.distortions = np.pad(dist, ((0, 0), (0, _NUM_DISTORTIONS - dist.shape[1])))
        self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(v, 3)
        self.translations = np.asarray(self.translations, dtype=np.float64).reshape(v, 3)

    @property
    def num_views(self) -> int:
        """Number of views V."""
        return len(self.names)

    def rotation_matrices(self) -> np.ndarray:
        """World -> camera rotation matrices ``(V, 3, 3)``."""
        return rodrigues_to_matrix_np(self.rotations)

    def extrinsics(self) -> np.ndarray:
        """``[R|t]`` world -> camera, ``(V, 3, 4)``."""
        return np.concatenate([self.rotation_matrices(), self.translations[:, :, None]], axis=2)

    def select(self, view_names: list[str]) -> CameraGroup:
        """Subset / reorder the cameras by name (e.g. to match a config's view order)."""
        missing = [n for n in view_names if n not in self.names]
        if missing:
            raise DataError(f"calibration has no camera named {missing}; available: {self.names}")
        if len(set(view_names)) != len(view_names):
            raise DataError(f"duplicate view names in selection {list(view_names)}")
        idx = [self.names.index(n) for n in view_names]
        return CameraGroup(
            names=list(view_names),
            sizes=self.sizes[idx].copy(),
            intrinsics=self.intrinsics[idx].copy(),
            distortions=self.distortions[idx].copy(),
            rotations=self.rotations[idx].copy(),
            translations=self.translations[idx].copy(),
        )

    def to_tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> CameraTensors:
        """Torch cameras ``(V, 3, 3)``, ``(V, 3, 4)``, ``(V, 5)``, built in float64, then cast."""
        return CameraTensors(
            torch.as_tensor(self.intrinsics).to(device=device, dtype=dtype),
            torch.as_tensor(self.extrinsics()).to(device=device, dtype=dtype),
            torch.as_tensor(self.distortions).to(device=device, dtype=dtype),
        )


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
        raise DataError(f"{what}: expected {limit} finite numbers, got {value!r}")
    return arr.astype(np.float64)


def load_calibration(path: str | Path) -> CameraGroup:
    """Read an anipose calibration TOML; raise DataError naming file, section and key if bad.

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
        raise DataError(f"{path}: not a valid TOML file: {exc}") from exc

    sections = sorted((int(m.group(1)), key) for key in data if (m := _CAM_SECTION.match(key)))
    if not sections:
        raise DataError(f"{path}: no [cam_N] tables found (sections: {list(data)})")
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
            raise DataError(f"{where} key 'name': expected a non-empty string, got {name!r}")
        if name in names:
            raise DataError(f"{where} key 'name': duplicate camera name {name!r}")
        if table.get("fisheye", False):
            raise DataError(f"{where} key 'fisheye': fisheye cameras are not supported")
        size = _numeric(table, "size", (2,), where)
        if np.any(size <= 0):
            raise DataError(f"{where} key 'size': expected positive [width, height], got {size}")
        matrix = _numeric(table, "matrix", (3, 3), where)
        if matrix[0, 0] == 0 or matrix[1, 1] == 0 or abs(np.linalg.det(matrix)) < 1e-12:
            raise DataError(f"{where} key 'matrix': singular camera matrix {matrix.tolist()}")
        dist = _numeric(table, "distortions", (_NUM_DISTORTIONS,), where, allow_shorter=True)
        names.append(name)
        sizes.append(size)
        mats.append(matrix)
        dists.append(np.pad(dist, (0, _NUM_DISTORTIONS - dist.shape[0])))
        rots.append(_numeric(table, "rotation", (3,), where))
        trans.append(_numeric(table, "translation", (3,), where))

    return CameraGroup(
        names=names,
        sizes=np.stack(sizes),
        intrinsics=np.stack(mats),
        distortions=np.stack(dists),
        rotations=np.stack(rots),
        translations=np.stack(trans),
    )


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
