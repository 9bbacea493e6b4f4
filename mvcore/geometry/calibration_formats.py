"""Other tools' calibration files -> an anipose ``CameraGroup`` (``mvcore calib convert``).

Each reader returns ``ConvertedCamera`` records already in anipose's conventions: full 3x3
``K`` in 0-based pixels (OpenCV: the centre of the top-left pixel is (0, 0)), OpenCV
distortions k1 k2 p1 p2 k3, world -> camera ``x_cam = R(rotation) x_world + translation``.
Every mistake in a file is a ``DataError`` of one line naming the file, the key and what to do.

OpenCV FileStorage, YAML (``%YAML:1.0`` or ``%YAML 1.2`` header, ``!!opencv-matrix`` nodes)
and XML (``<opencv_storage>``, ``type_id="opencv-matrix"`` nodes); no OpenCV needed. Keys match
whatever their case and underscores. Supported layouts:

- one camera per file (the camera's name is the file's stem): camera matrix ``camera_matrix``
  / ``cameraMatrix`` / ``K``, or ``intrinsicMatrix`` (JARVIS and MATLAB exports: stored
  transposed, ``[fx 0 0; s fy 0; cx cy 1]``, with the rotation ``R`` transposed too, as those
  tools use row vectors; pixels stay 0-based); distortions ``distortion_coefficients`` /
  ``dist_coeffs`` / ``distCoeffs`` / ``D`` / ``distortionCoefficients`` (4, 5, 8, 12 or 14
  numbers in OpenCV's order; beyond k3 they must be 0); rotation ``rvec`` / ``rotation`` /
  ``R``, a Rodrigues 3-vector or a 3x3 matrix; translation ``T`` / ``tvec`` / ``translation``;
  image size ``image_width`` + ``image_height`` (OpenCV's calibration sample) or
  ``image_size`` / ``imageSize`` / ``cameraResolution`` (``[width, height]``, OpenCV's
  interactive calibration app). OpenCV's ``extrinsic_parameters`` (the board's pose in each
  calibration image) are not camera extrinsics and are ignored.
- several cameras in one file, as OpenCV's multi-camera calibration sample
  (``samples/python/multiview_calibration.py``) writes them: ``Ks`` (N, 3, 3),
  ``distortions``, ``rvecs`` (Rodrigues), ``Ts``, ``image_sizes`` (N x [width, height]),
  ``cam_ids`` ("a,b,c", the cameras' names; else 0..N-1) and ``is_fisheye`` (must be 0).

MATLAB ``.mat`` (v5/v7, read with scipy; v7.3 HDF5 files must be re-saved with ``-v7``), the
convention of Label3D and DANNCE: ``K`` is MATLAB's transposed ``IntrinsicMatrix``
``[fx 0 0; s fy 0; cx cy 1]`` with a 1-based principal point (1 is subtracted; skew kept),
``RDistort`` = k1 k2 [k3], ``TDistort`` = p1 p2, ``r`` the rotation for row vectors and ``t``
1x3: ``x_cam_row = X_row * r + t``, so ``R = r^T``. Supported layouts:

- one camera per file, the variables ``K``, ``RDistort``, ``TDistort``, ``r``, ``t`` (DANNCE's
  ``hires_cam1_params.mat``; the name is the file's stem); or a ``params`` struct holding them;
- several cameras: ``params`` or ``camParams`` a cell array of such structs (DANNCE's
  ``*_dannce.mat``, Label3D), named by the cell array ``camnames`` if present, else Camera1..N
  (Label3D's default). An ``imageSize`` variable ([height, width], MATLAB's order) gives the
  image size; DANNCE files have none (pass ``--size W H``).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mvcore.errors import DataError
from mvcore.geometry.anipose import load_calibration, save_calibration
from mvcore.geometry.cameras import _NUM_DISTORTIONS, CameraGroup
from mvcore.geometry.rotations import matrix_to_rodrigues_np

__all__ = [
    "CALIBRATION_FORMATS",
    "ConvertedCamera",
    "convert_calibration",
    "read_matlab_cameras",
    "read_opencv_cameras",
    "save_calibration_atomically",
]

#: file format -> the extensions guessed as that format
CALIBRATION_FORMATS = {"opencv": (".yml", ".yaml", ".xml"), "matlab": (".mat",)}

# role -> the key names that hold it (matched whatever their case and underscores)
_CAMERA_MATRIX = ("camera_matrix", "cameraMatrix", "K", "intrinsicMatrix")
_TRANSPOSED_MATRIX = "intrinsicmatrix"  # normalised; JARVIS / MATLAB exports
_DISTORTION = ("distortion_coefficients", "dist_coeffs", "distCoeffs", "D",
               "distortionCoefficients")
_ROTATION = ("rvec", "rotation", "R")
_TRANSLATION = ("T", "tvec", "translation")
_SIZE_PAIR = ("image_size", "imageSize", "cameraResolution")
_SIZE_SINGLE = ("image_width", "image_height")
_MULTIVIEW = ("Ks", "distortions", "rvecs", "Ts")  # OpenCV's multiview_calibration.py
_MATLAB_FIELDS = ("K", "RDistort", "TDistort", "r", "t")
_MATLAB_CELLS = ("params", "camParams")
_OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)
_ROTATION_TOLERANCE = 1e-5  # |R R^T - I|: float32 files ('dt: f') hold ~1e-7


@dataclass
class ConvertedCamera:
    """One camera read from another tool's file, in anipose's conventions.

    ``matrix (3, 3)`` full K in 0-based pixels, ``distortions (5,)`` k1 k2 p1 p2 k3,
    ``rotation (3,)`` Rodrigues and ``translation (3,)`` world -> camera, ``size (2,)``
    [width, height] or None where the file has none. ``source`` names the file (and the
    camera inside a multi-camera file) in messages.
    """

    name: str
    matrix: np.ndarray
    distortions: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    size: np.ndarray | None
    source: str


# ------------------------------------------------------------------------- shared checks


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _numbers(value: Any, where: str) -> np.ndarray:
    """``value`` (an OpenCV matrix node, a list, a number, a ROS ``{rows, cols, data}`` map or
    a numpy array) -> a finite float64 array; DataError naming ``where`` else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: has no value; expected numbers")
    if isinstance(value, _RawMatrix):
        arr = value.decode(where)
    elif isinstance(value, dict) and {"rows", "cols", "data"} <= set(value):
        arr = _RawMatrix(value).decode(where)
    else:
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: expected numbers, got {_short(value)}") from None
    if arr.size == 0:
        raise DataError(f"{where}: is empty; expected numbers")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: holds a non-finite value ({_short(arr.ravel().tolist())}); "
                        "re-export the calibration")
    return arr


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(arr: np.ndarray) -> str:
    return "x".join(str(s) for s in arr.shape) or "a scalar"


def _vector(value: Any, where: str, length: int) -> np.ndarray:
    """A vector of ``length`` numbers stored as (n,), (1, n) or (n, 1)."""
    arr = _numbers(value, where)
    if arr.size != length or sorted(arr.shape)[:-1] not in ([], [1]):
        raise DataError(f"{where}: expected {length} numbers, got shape {_shape(arr)}")
    return arr.reshape(length)


def _upright_matrix(arr: np.ndarray, where: str, transposed: bool, fix: str) -> np.ndarray:
    """Check a camera matrix stored upright (``transposed`` False) or transposed; return it
    upright ``[fx s cx; 0 fy cy; 0 0 1]``. A matrix stored the other way round is an error
    (``fix`` says what to do): silently accepting it would hide a wrong convention."""
    if arr.shape != (3, 3):
        raise DataError(f"{where}: expected a 3x3 camera matrix, got shape {_shape(arr)}")

    def upright(m: np.ndarray) -> bool:
        return bool(np.allclose(m[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-9) and m[1, 0] == 0.0)

    k = arr.T if transposed else arr
    if not upright(k):
        if upright(k.T):
            stored = "upright [fx s cx; 0 fy cy; 0 0 1]" if transposed else \
                "transposed [fx 0 0; s fy 0; cx cy 1]"
            raise DataError(f"{where}: holds a camera matrix in the {stored} layout, not this "
                            f"key's; {fix}")
        raise DataError(f"{where}: not a camera matrix (its last row must be [0, 0, 1]): "
                        f"{_short(arr.tolist())}")
    if k[0, 0] <= 0.0 or k[1, 1] <= 0.0:
        raise DataError(f"{where}: focal lengths must be positive, got fx={k[0, 0]:g}, "
                        f"fy={k[1, 1]:g}")
    return k.copy()


def _rotation(arr: np.ndarray, where: str, transposed: bool = False) -> np.ndarray:
    """A Rodrigues 3-vector, or a 3x3 rotation matrix (checked, transposed first if the file
    uses row vectors) -> Rodrigues ``(3,)``."""
    if arr.size == 3 and sorted(arr.shape)[:-1] in ([], [1]):
        if transposed:
            raise DataError(f"{where}: this file's layout stores the 3x3 rotation matrix R "
                            "(transposed), got a 3-vector; write R as a 3x3 matrix")
        return arr.reshape(3)
    if arr.shape != (3, 3):
        raise DataError(f"{where}: expected a Rodrigues 3-vector or a 3x3 rotation matrix, "
                        f"got shape {_shape(arr)}")
    m = arr.T if transposed else arr
    error = float(np.abs(m @ m.T - np.eye(3)).max())
    det = float(np.linalg.det(m))
    if error > _ROTATION_TOLERANCE or det < 0:
        raise DataError(f"{where}: not a rotation matrix (|R R^T - I| = {error:.2g}, "
                        f"det = {det:.6g}); fix the calibration")
    return matrix_to_rodrigues_np(m)


def _distortions(arr: np.ndarray, where: str) -> np.ndarray:
    """OpenCV's 4, 5, 8, 12 or 14 coefficients -> k1 k2 p1 p2 k3 (beyond must be 0)."""
    flat = arr.reshape(-1)
    if sorted(arr.shape)[:-1] not in ([], [1]) or flat.size not in _OPENCV_DISTORTION_LENGTHS:
        raise DataError(f"{where}: expected 4, 5, 8, 12 or 14 distortion coefficients (OpenCV "
                        f"order k1 k2 p1 p2 k3 ...), got shape {_shape(arr)}")
    if np.any(flat[_NUM_DISTORTIONS:] != 0.0):
        raise DataError(f"{where}: coefficients beyond k1 k2 p1 p2 k3 (rational, thin-prism "
                        "or tilt models) are not supported by anipose; recalibrate with 5")
    return np.pad(flat[:_NUM_DISTORTIONS], (0, max(0, _NUM_DISTORTIONS - flat.size)))


def _image_size(width: Any, height: Any, where: str) -> np.ndarray:
    size = np.array([_vector(width, where, 1)[0], _vector(height, where, 1)[0]])
    if np.any(size <= 0):
        raise DataError(f"{where}: expected a positive image size, got {size.tolist()}")
    return size


# ------------------------------------------------------------------------- OpenCV files


@dataclass
class _RawMatrix:
    """An ``opencv-matrix`` / ``opencv-nd-matrix`` node as read (``rows``, ``cols``, ``dt``,
    ``data`` or ``sizes``, ``dt``, ``data``); decoded when its key is used, so that errors can
    name the file and key."""

    fields: dict[str, Any]

    def decode(self, where: str) -> np.ndarray:
        """-> float64 array ``(rows, cols)``, ``(rows, cols, channels)`` for multi-channel
        ``dt`` such as ``"3d"`` (numpy's (N, 3, 3) arrays are written so), or ``sizes``."""
        f = self.fields
        dt = str(f.get("dt", "d")).strip().strip('"')
        match = re.fullmatch(r"(\d*)([A-Za-z])", dt)  # channels, then u c w s i f d h ...
        if match is None:
            raise DataError(f"{where}: unknown OpenCV element type dt={dt!r}")
        channels = int(match.group(1) or 1)
        try:
            if "sizes" in f:
                sizes = _tokens(f["sizes"])
                shape = tuple(int(s) for s in (sizes if isinstance(sizes, list) else [sizes]))
            else:
                shape = (int(_tokens(f["rows"])), int(_tokens(f["cols"])))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: an opencv-matrix needs rows, cols (or sizes), dt and "
                            f"data; found {sorted(f)}") from None
        if channels > 1:
            shape = shape + (channels,)
        data = _tokens(f.get("data", []))
        data = data if isinstance(data, list) else [data]
        try:
            values = np.array([_number(x) for x in data], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: data holds non-numbers: {_short(data)}") from None
        if values.size != math.prod(shape):
            raise DataError(f"{where}: {values.size} numbers in data for a "
                            f"{'x'.join(map(str, shape))} matrix; fix the file")
        return values.reshape(shape)


_SPECIAL = {".nan": math.nan, ".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}


def _number(x: Any) -> float:
    """A number as FileStorage writes it, including ``.Nan`` / ``.Inf`` / ``-.Inf``."""
    if isinstance(x, bool):
        raise TypeError(x)
    if isinstance(x, str):
        special = x.strip().lower()
        return _SPECIAL[special] if special in _SPECIAL else float(x)
    return float(x)


def _tokens(text: Any) -> Any:
    """XML text -> a number, a list of numbers or a string (YAML values pass through)."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped.startswith('"') and stripped.endswith('"') and len(stripped) >= 2:
        return stripped[1:-1]
    parts = stripped.split()
    try:
        numbers = [_number(p) for p in parts]
    except ValueError:
        return stripped
    numbers = [int(n) if re.fullmatch(r"[-+]?\d+", p) else n for n, p in zip(numbers, parts)]
    return numbers[0] if len(numbers) == 1 else numbers


class _OpenCVYamlLoader(yaml.SafeLoader):
    """pyyaml's safe loader plus OpenCV's ``!!opencv-matrix`` / ``!!opencv-nd-matrix`` tags."""


def _construct_matrix(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _RawMatrix:
    return _RawMatrix(loader.construct_mapping(node, deep=True))


for _tag in ("opencv-matrix", "opencv-nd-matrix"):
    _OpenCVYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _construct_matrix)


def _load_opencv_yaml(path: Path) -> dict[str, Any]:
    """pyyaml rejects OpenCV's ``%YAML:1.0`` directive (and OpenCV 5's ``%YAML 1.2``): it is
    commented out (line numbers in pyyaml's messages stay right)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"\A(\s*)%YAML", r"\1# %YAML", text)
    try:
        data = yaml.load(text, Loader=_OpenCVYamlLoader)  # a SafeLoader subclass: no code
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not a valid OpenCV YAML file: {' '.join(str(exc).split())}"
                        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: an OpenCV YAML file holds a mapping of keys, got "
                        f"{type(data).__name__}")
    return data


def _xml_value(element: ET.Element) -> Any:
    if element.get("type_id") in ("opencv-matrix", "opencv-nd-matrix"):
        return _RawMatrix({child.tag: child.text or "" for child in element})
    children = list(element)
    if children:
        if all(child.tag == "_" for child in children):
            return [_xml_value(child) for child in children]
        return {child.tag: _xml_value(child) for child in children}
    return _tokens(element.text or "")


def _load_opencv_xml(path: Path) -> dict[str, Any]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: not a valid XML file: {exc}") from None
    if root.tag != "opencv_storage":
        raise DataError(f"{path}: not an OpenCV FileStorage XML file (root element "
                        f"<{root.tag}>, expected <opencv_storage>)")
    value = _xml_value(root)
    return value if isinstance(value, dict) else {}


def _find(data: dict[str, Any], names: Sequence[str], path: Path) -> tuple[str, Any] | None:
    """The one key of ``data`` that matches one of ``names`` (case and underscores ignored)."""
    wanted = {_norm(n) for n in names}
    found = [key for key in data if _norm(str(key)) in wanted]
    if len(found) > 1:
        raise DataError(f"{path}: keys {found} hold the same thing; keep one of them")
    return (found[0], data[found[0]]) if found else None


_RENAME = "add it, or rename the file's key to one of these"
_NO_POSE = ("anipose needs every camera's pose: add it, or calibrate the rig's extrinsics "
            "(e.g. anipose calibrate) and convert that file")


def _require(data: dict[str, Any], names: Sequence[str], what: str, path: Path,
             hint: str = _RENAME) -> tuple[str, Any]:
    hit = _find(data, names, path)
    if hit is None:
        raise DataError(f"{path}: no {what} (looked for keys {', '.join(names)}; keys found: "
                        f"{', '.join(map(str, data)) or 'none'}); {hint}")
    return hit


def read_opencv_cameras(path: str | Path) -> list[ConvertedCamera]:
    """Read an OpenCV FileStorage ``.yml`` / ``.yaml`` / ``.xml`` file: one camera (named after
    the file's stem) or OpenCV's multi-camera sample layout (see the module docstring)."""
    path = Path(path)
    data = _load_opencv_xml(path) if path.suffix.lower() == ".xml" else _load_opencv_yaml(path)
    if _find(data, ("Ks",), path) is not None:
        return _read_opencv_multiview(data, path)

    matrix_key, matrix = _require(data, _CAMERA_MATRIX, "camera matrix", path)
    transposed = _norm(matrix_key) == _TRANSPOSED_MATRIX
    fix = ("if the file is in OpenCV's layout, rename the key to camera_matrix" if transposed
           else "if the file is in the JARVIS / MATLAB layout, rename the key to "
                "intrinsicMatrix")
    where = f"{path}: key '{matrix_key}'"
    k = _upright_matrix(_numbers(matrix, where), where, transposed, fix)
    dist_key, dist = _require(data, _DISTORTION, "distortion coefficients", path)
    distortions = _distortions(_numbers(dist, f"{path}: key '{dist_key}'"),
                               f"{path}: key '{dist_key}'")
    rot_key, rot = _require(data, _ROTATION, "rotation (extrinsics)", path, _NO_POSE)
    rotation = _rotation(_numbers(rot, f"{path}: key '{rot_key}'"), f"{path}: key '{rot_key}'",
                         transposed=transposed)
    trans_key, trans = _require(data, _TRANSLATION, "translation (extrinsics)", path, _NO_POSE)
    translation = _vector(trans, f"{path}: key '{trans_key}'", 3)

    size = None
    pair = _find(data, _SIZE_PAIR, path)
    width = _find(data, _SIZE_SINGLE[:1], path)
    height = _find(data, _SIZE_SINGLE[1:], path)
    if pair is not None:
        values = _vector(pair[1], f"{path}: key '{pair[0]}'", 2)
        size = _image_size(values[0], values[1], f"{path}: key '{pair[0]}'")
    elif width is not None and height is not None:
        size = _image_size(width[1], height[1], f"{path}: keys '{width[0]}/{height[0]}'")
    return [ConvertedCamera(path.stem, k, distortions, rotation, translation, size, str(path))]


def _read_opencv_multiview(data: dict[str, Any], path: Path) -> list[ConvertedCamera]:
    """OpenCV's ``multiview_calibration.py`` output: per-camera arrays stacked along axis 0."""
    arrays = {}
    for name in _MULTIVIEW:
        key, value = _require(data, (name,), f"'{name}' (multi-camera layout)", path,
                              "fix the file")
        arr = np.atleast_1d(_numbers(value, f"{path}: key '{key}'"))
        arrays[name] = (key, arr.reshape(arr.shape[0], -1))
    counts = {key: arr.shape[0] for key, arr in arrays.values()}
    if len(set(counts.values())) != 1:
        raise DataError(f"{path}: the per-camera arrays disagree on the number of cameras "
                        f"({counts}); fix the file")
    num = next(iter(counts.values()))
    fisheye = _find(data, ("is_fisheye",), path)
    if fisheye is not None and np.any(_numbers(fisheye[1], f"{path}: key '{fisheye[0]}'")):
        raise DataError(f"{path}: key '{fisheye[0]}': fisheye cameras are not supported by "
                        "anipose; recalibrate them with the pinhole model")
    names = [str(i) for i in range(num)]
    ids = _find(data, ("cam_ids",), path)
    if ids is not None:
        raw = ids[1]
        names = [s.strip() for s in raw.split(",")] if isinstance(raw, str) else \
            [str(s) for s in (raw if isinstance(raw, list) else [raw])]
        if len(names) != num:
            raise DataError(f"{path}: key '{ids[0]}' names {len(names)} cameras, the arrays "
                            f"hold {num}; fix the file or pass --names")
    sizes = None
    size_hit = _find(data, ("image_sizes",), path)
    if size_hit is not None:
        sizes = _numbers(size_hit[1], f"{path}: key '{size_hit[0]}'")
        if sizes.size != 2 * num:
            raise DataError(f"{path}: key '{size_hit[0]}' holds {sizes.size} numbers, expected "
                            f"{num} x [width, height]; fix the file")
        sizes = sizes.reshape(num, 2)

    cameras = []
    for i in range(num):
        def where(name: str, i: int = i) -> str:
            return f"{path}: key '{arrays[name][0]}' camera {i}"

        k_row = arrays["Ks"][1][i]
        k = _upright_matrix(k_row.reshape(3, 3) if k_row.size == 9 else k_row, where("Ks"),
                            False, "fix the file")
        cameras.append(ConvertedCamera(
            name=names[i],
            matrix=k,
            distortions=_distortions(arrays["distortions"][1][i], where("distortions")),
            rotation=_rotation(_row(arrays["rvecs"][1][i]), where("rvecs")),
            translation=_vector(arrays["Ts"][1][i], where("Ts"), 3),
            size=None if sizes is None else _image_size(
                sizes[i, 0], sizes[i, 1], f"{path}: key '{size_hit[0]}' camera {i}"),
            source=f"{path} camera {i}",
        ))
    return cameras


def _row(flat: np.ndarray) -> np.ndarray:
    """A per-camera row of ``rvecs``: 3 numbers (Rodrigues) or 9 (a matrix)."""
    return flat.reshape(3, 3) if flat.size == 9 else flat


# ------------------------------------------------------------------------- MATLAB files


def read_matlab_cameras(path: str | Path) -> list[ConvertedCamera]:
    """Read a Label3D / DANNCE ``.mat`` file (see the module docstring for the layouts)."""
    path = Path(path)
    # lazy: scipy.io takes ~0.4 s to import and only .mat files need it
    import scipy.io

    try:
        data = scipy.io.loadmat(path, simplify_cells=True)
    except NotImplementedError:
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, which cannot be read; in MATLAB "
                        f"run: s = load('{path.name}'); save('{path.name}', '-struct', 's', "
                        "'-v7')") from None
    except (ValueError, TypeError, OSError, EOFError, scipy.io.matlab.MatReadError) as exc:
        raise DataError(f"{path}: not a readable MATLAB .mat file ({' '.join(str(exc).split())})"
                        ) from None
    variables = {k: v for k, v in data.items() if not k.startswith("__")}

    size = None
    for key in ("imageSize", "ImageSize"):
        if key in variables:
            hw = _vector(variables[key], f"{path}: variable '{key}' ([height, width])", 2)
            size = _image_size(hw[1], hw[0], f"{path}: variable '{key}'")
            break

    if all(field in variables for field in _MATLAB_FIELDS):
        return [_matlab_camera(variables, path.stem, path, "", size)]
    cell_key = next((k for k in _MATLAB_CELLS if k in variables), None)
    if cell_key is None:
        found = ", ".join(variables) or "none"
        raise DataError(f"{path}: no camera parameters (expected variables "
                        f"{', '.join(_MATLAB_FIELDS)}, or a 'params' / 'camParams' cell array "
                        f"of structs with those fields; variables found: {found})")
    cell = variables[cell_key]
    if isinstance(cell, dict):  # one struct, or a 1x1 cell squeezed to its struct
        return [_matlab_camera(cell, path.stem, path, f"{cell_key}.", size)]
    structs = list(np.asarray(cell, dtype=object).ravel()) if not isinstance(cell, list) \
        else cell
    if not structs or not all(isinstance(s, dict) for s in structs):
        raise DataError(f"{path}: variable '{cell_key}' must be a struct or a cell array of "
                        "structs with fields K, RDistort, TDistort, r, t")
    names = [f"Camera{i + 1}" for i in range(len(structs))]
    if "camnames" in variables:
        raw = variables["camnames"]
        names = [raw] if isinstance(raw, str) else [str(n) for n in np.asarray(raw).ravel()]
        if len(names) != len(structs):
            raise DataError(f"{path}: variable 'camnames' names {len(names)} cameras, "
                            f"'{cell_key}' holds {len(structs)}; fix the file or pass --names")
    return [_matlab_camera(s, names[i], path, f"{cell_key}{{{i + 1}}}.", size)
            for i, s in enumerate(structs)]


def _matlab_camera(fields: dict[str, Any], name: str, path: Path, prefix: str,
                   size: np.ndarray | None) -> ConvertedCamera:
    """One camera struct (or the file's variables) in MATLAB's convention -> anipose's."""
    missing = [f for f in _MATLAB_FIELDS if f not in fields]
    if missing:
        raise DataError(f"{path}: no '{prefix}{missing[0]}' (needs {', '.join(_MATLAB_FIELDS)}; "
                        f"found {', '.join(map(str, fields)) or 'none'}); add it")

    def where(key: str) -> str:
        return f"{path}: key '{prefix}{key}'"

    k = _upright_matrix(_numbers(fields["K"], where("K")), where("K"), True,
                        "MATLAB's K is [fx 0 0; s fy 0; cx cy 1] (transpose it)")
    k[0, 2] -= 1.0  # MATLAB: the top-left pixel's centre is (1, 1); OpenCV / anipose: (0, 0)
    k[1, 2] -= 1.0
    radial = _numbers(fields["RDistort"], where("RDistort")).reshape(-1)
    if radial.size not in (2, 3):
        raise DataError(f"{where('RDistort')}: expected 2 or 3 radial coefficients (k1 k2 "
                        f"[k3]), got {radial.size}")
    tangential = _vector(fields["TDistort"], where("TDistort"), 2)
    k3 = radial[2] if radial.size == 3 else 0.0
    distortions = np.array([radial[0], radial[1], tangential[0], tangential[1], k3])
    rotation = _rotation(_numbers(fields["r"], where("r")), where("r"), transposed=True)
    translation = _vector(fields["t"], where("t"), 3)
    source = f"{path} {prefix.rstrip('.')}" if prefix else str(path)
    return ConvertedCamera(name, k, distortions, rotation, translation, size, source)


# ------------------------------------------------------------------------- conversion


def _guess_format(path: Path) -> str:
    """``opencv`` or ``matlab`` from the extension; DataError naming the file else."""
    suffix = path.suffix.lower()
    for name, suffixes in CALIBRATION_FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for suffixes in CALIBRATION_FORMATS.values() for s in suffixes)
    raise DataError(f"{path}: unknown calibration file extension '{path.suffix}' (known: "
                    f"{known}); pass --format opencv or --format matlab")


def convert_calibration(
    paths: Sequence[str | Path],
    names: Sequence[str] | None = None,
    size: Sequence[float] | None = None,
    file_format: str | None = None,
) -> CameraGroup:
    """Read every file (in order; each holds one camera or several) into one ``CameraGroup``.

    ``names`` renames the cameras (one per camera, in order); ``size`` = (width, height) is
    the image size of the cameras whose file has none (a file's own size is kept);
    ``file_format`` (``opencv`` / ``matlab``) overrides the guess from each extension.
    """
    if not paths:
        raise DataError("no calibration files given")
    if file_format is not None and file_format not in CALIBRATION_FORMATS:
        raise DataError(f"unknown calibration format {file_format!r}; use one of "
                        f"{', '.join(CALIBRATION_FORMATS)}")
    wanted_size = None
    if size is not None:
        wanted_size = np.asarray(size, dtype=np.float64).reshape(-1)
        if wanted_size.shape != (2,) or not np.all(np.isfinite(wanted_size)) \
                or np.any(wanted_size <= 0):
            raise DataError(f"--size: expected a positive width and height, got {list(size)}")

    cameras: list[ConvertedCamera] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataError(f"calibration file not found: {path}")
        fmt = file_format or _guess_format(path)
        reader = read_matlab_cameras if fmt == "matlab" else read_opencv_cameras
        cameras += reader(path)

    if names is not None:
        if len(names) != len(cameras):
            per_file = "; ".join(f"{c.source}: {c.name}" for c in cameras)
            raise DataError(f"--names gives {len(names)} names for {len(cameras)} cameras "
                            f"({per_file}); give one name per camera, in this order")
        for camera, name in zip(cameras, names):
            camera.name = str(name)
    seen: dict[str, str] = {}
    for camera in cameras:
        if not camera.name:
            raise DataError(f"{camera.source}: empty camera name; pass --names")
        if camera.name in seen:
            raise DataError(f"camera name {camera.name!r} twice ({seen[camera.name]} and "
                            f"{camera.source}); pass --names with distinct names")
        seen[camera.name] = camera.source

    sizes = []
    for camera in cameras:
        if camera.size is None:
            if wanted_size is None:
                raise DataError(f"{camera.source}: no image size in the file (looked for keys "
                                f"{', '.join(_SIZE_SINGLE + _SIZE_PAIR)}, image_sizes; MATLAB: "
                                "imageSize); pass --size W H")
            sizes.append(wanted_size)
            continue
        sizes.append(camera.size)

    return CameraGroup(
        names=[c.name for c in cameras],
        sizes=np.stack(sizes),
        intrinsics=np.stack([c.matrix for c in cameras]),
        distortions=np.stack([c.distortions for c in cameras]),
        rotations=np.stack([c.rotation for c in cameras]),
        translations=np.stack([c.translation for c in cameras]),
    )


def save_calibration_atomically(group: CameraGroup, path: str | Path) -> Path:
    """Write ``group`` as an anipose TOML at ``path`` so that ``path`` is never half written:
    a temporary file in the same folder, read back with ``load_calibration`` (so the file is
    checked as every reader will check it before it replaces anything), then renamed over
    ``path``. Returns ``path``; a DataError (naming ``path``) leaves ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name (not mkstemp, whose 0600 mode would stay on the renamed file)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        save_calibration(group, tmp)
        try:
            load_calibration(tmp)
        except DataError as exc:
            raise DataError(f"not written: {str(exc).replace(str(tmp), str(path))}") from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
