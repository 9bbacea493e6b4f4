"""Other tools' calibration files -> anipose: the real mouse4cam rig plus a camera with skew and
all five distortions, written in each foreign format (as text the way OpenCV writes it, or with
scipy.io.savemat in MATLAB's convention), converted, then projected both ways: by mvcore from
the converted TOML and, independently in numpy, in the foreign file's own convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from calibration_files import matlab_camera, opencv_text
from scipy.spatial.transform import Rotation
from shared_data import MOUSE4CAM

from mvcore.errors import DataError
from mvcore.geometry import (
    CameraGroup,
    convert_calibration,
    load_calibration,
    project_points,
    read_matlab_cameras,
    read_opencv_cameras,
    save_calibration_atomically,
)

needs_mouse4cam = pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not found")

SKEWED = CameraGroup(  # skew and k1 k2 p1 p2 k3 all non-zero, a non-square image
    names=["skewed"],
    sizes=[[640, 480]],
    intrinsics=[[[700.25, 1.75, 322.5], [0.0, 705.5, 241.25], [0.0, 0.0, 1.0]]],
    distortions=[[-0.21, 0.08, 0.0013, -0.0021, -0.015]],
    rotations=[[0.3, -2.1, 0.4]],
    translations=[[12.0, -30.0, 450.0]],
)


def _rig() -> CameraGroup:
    """The real 4-camera rig (back, mid, side, top) plus ``SKEWED``."""
    real = load_calibration(MOUSE4CAM / "calibration.toml")
    return CameraGroup(
        names=real.names + SKEWED.names,
        **{f: np.concatenate([getattr(real, f), getattr(SKEWED, f)])
           for f in ("sizes", "intrinsics", "distortions", "rotations", "translations")},
    )


def _points_in_view(group: CameraGroup, view: int, n: int = 40) -> np.ndarray:
    """``(n, 3)`` world points in front of camera ``view``, inside its image (undistorted)."""
    rng = np.random.default_rng(view)
    w, h = group.sizes[view]
    pix = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n), np.ones(n)], axis=-1)
    rays = pix @ np.linalg.inv(group.intrinsics[view]).T
    cam = rays * rng.uniform(100.0, 600.0, (n, 1))
    rot = Rotation.from_rotvec(group.rotations[view]).as_matrix()
    return (cam - group.translations[view]) @ rot  # R^T (x_cam - t), as rows


def _mvcore_pixels(toml: Path, view: int, points: np.ndarray) -> np.ndarray:
    """Pixels ``(n, 2)`` of camera ``view`` of the converted TOML, by mvcore (float64)."""
    cams = load_calibration(toml).to_tensors(dtype=torch.float64)
    pix = project_points(torch.as_tensor(points), cams.intrinsics, cams.extrinsics,
                         cams.distortions)
    return pix[view].numpy()


def _opencv_pixels(k: np.ndarray, dist: np.ndarray, rot: np.ndarray, t: np.ndarray,
                   points: np.ndarray) -> np.ndarray:
    """OpenCV's pinhole + radial-tangential model, as ``cv2.projectPoints`` documents it;
    ``rot`` a 3x3 matrix or a Rodrigues vector (turned into one by scipy)."""
    r = Rotation.from_rotvec(rot.reshape(3)).as_matrix() if rot.size == 3 else rot
    cam = points @ r.T + t.reshape(3)
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    k1, k2, p1, p2, k3 = np.pad(dist.reshape(-1), (0, 14))[:5]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2]], axis=-1)


def _matlab_pixels(cam: dict, points: np.ndarray) -> np.ndarray:
    """MATLAB's convention (Label3D / DANNCE): row vectors, ``[X 1] * [r; t] * K`` with the
    transposed K, then MATLAB's distortion of the normalised point (skew undone first, as
    DANNCE's distortPoints does); returns MATLAB's 1-based pixels."""
    k, r, t = cam["K"], cam["r"], cam["t"].reshape(1, 3)
    proj = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.vstack([r, t]) @ k
    pix = proj[:, :2] / proj[:, 2:]
    fx, fy, skew, cx, cy = k[0, 0], k[1, 1], k[1, 0], k[2, 0], k[2, 1]
    yn = (pix[:, 1] - cy) / fy
    xn = (pix[:, 0] - cx - skew * yn) / fx
    k1, k2, k3 = np.pad(cam["RDistort"].reshape(-1), (0, 1))[:3]
    p1, p2 = cam["TDistort"].reshape(-1)
    r2 = xn**2 + yn**2
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn**2)
    yd = yn * radial + p1 * (r2 + 2 * yn**2) + 2 * p2 * xn * yn
    return np.stack([xd * fx + skew * yd + cx, yd * fy + cy], axis=-1)


def _opencv_files(group: CameraGroup, tmp_path: Path, kind: str) -> tuple[list[Path], dict]:
    """One file per camera, each with a different tool's key names: OpenCV's calibration
    sample, its interactive app, short names, JARVIS (transposed K and R, no image size),
    and 8 coefficients (rational model, k4-k6 = 0). Returns the paths and their fields."""
    files, fields = [], {}
    for i, name in enumerate(group.names):
        k, d = group.intrinsics[i], group.distortions[i][None]
        r, t = group.rotation_matrices()[i], group.translations[i][:, None]
        size = tuple(int(s) for s in group.sizes[i])
        layouts = [
            {"calibration_time": "Wed Mar  6 17:35:39 2019", "image_width": size[0],
             "image_height": size[1], "camera_matrix": k, "distortion_coefficients": d,
             "rvec": group.rotations[i][:, None], "tvec": t},
            {"cameraResolution": size, "cameraMatrix": k, "dist_coeffs": d, "R": r,
             "T": t},
            {"K": k, "D": d.T, "rotation": group.rotations[i][None], "translation": t.T,
             "imageSize": size},
            {"intrinsicMatrix": k.T, "distortionCoefficients": d, "R": r.T, "T": t},
            {"image_width": size[0], "image_height": size[1], "camera_matrix": k,
             "distortion_coefficients": np.pad(d, ((0, 0), (0, 3))), "R": r, "T": t},
        ]
        fields[name] = layouts[i % len(layouts)]
        path = tmp_path / f"{name}.{kind}"
        path.write_text(opencv_text(fields[name], kind))
        files.append(path)
    return files, fields


def _assert_same_rig(converted: CameraGroup, rig: CameraGroup) -> None:
    assert converted.names == rig.names
    np.testing.assert_array_equal(converted.sizes, rig.sizes)
    np.testing.assert_allclose(converted.intrinsics, rig.intrinsics, rtol=1e-15, atol=1e-12)
    np.testing.assert_allclose(converted.distortions, rig.distortions, rtol=0, atol=0)
    np.testing.assert_allclose(converted.rotations, rig.rotations, rtol=0, atol=1e-12)
    np.testing.assert_allclose(converted.translations, rig.translations, rtol=0, atol=0)


def _round_trips(group: CameraGroup, tmp_path: Path) -> Path:
    out = save_calibration_atomically(group, tmp_path / "out" / "calibration.toml")
    back = load_calibration(out)
    assert back.names == group.names
    for f in ("sizes", "intrinsics", "distortions", "rotations", "translations"):
        np.testing.assert_array_equal(getattr(back, f), getattr(group, f))
    assert [p.name for p in out.parent.iterdir()] == ["calibration.toml"]  # no temp file left
    return out


# ------------------------------------------------------------------------------ OpenCV


@needs_mouse4cam
@pytest.mark.parametrize("kind", ["yml", "xml"])
def test_opencv_per_camera_files_project_like_opencv(tmp_path: Path, kind: str) -> None:
    rig = _rig()
    files, fields = _opencv_files(rig, tmp_path, kind)
    group = convert_calibration(files, size=(1280, 1024))  # for the JARVIS file (top): none
    _assert_same_rig(group, rig)
    out = _round_trips(group, tmp_path)
    for view, name in enumerate(rig.names):
        f = fields[name]
        points = _points_in_view(rig, view)
        if "intrinsicMatrix" in f:  # JARVIS: transposed K and R, as its readers undo
            expected = _opencv_pixels(f["intrinsicMatrix"].T, f["distortionCoefficients"],
                                      f["R"].T, f["T"], points)
        else:
            k = next(f[key] for key in ("camera_matrix", "cameraMatrix", "K") if key in f)
            d = next(f[key] for key in ("distortion_coefficients", "dist_coeffs", "D")
                     if key in f)
            r = next(f[key] for key in ("rvec", "R", "rotation") if key in f)
            t = next(f[key] for key in ("tvec", "T", "translation") if key in f)
            expected = _opencv_pixels(k, d, r, t, points)
        np.testing.assert_allclose(_mvcore_pixels(out, view, points), expected, rtol=0,
                                   atol=1e-6)


@needs_mouse4cam
@pytest.mark.parametrize("kind", ["yml", "xml"])
def test_opencv_multiview_sample_layout(tmp_path: Path, kind: str) -> None:
    """One file for all cameras, as OpenCV's samples/python/multiview_calibration.py saves
    it: (N, 3, 3) Ks are written as N x 3 three-channel matrices, (N, 3, 1) vectors as N x 3."""
    rig = _rig()
    n = rig.num_views
    fields = {
        "Ks": rig.intrinsics, "distortions": rig.distortions[:, None, :],
        "rvecs": rig.rotations, "Ts": rig.translations,
        "image_sizes": rig.sizes.astype(int), "is_fisheye": np.zeros(n, dtype=int),
        "cam_ids": ",".join(rig.names),
    }
    path = tmp_path / f"multiview.{kind}"
    path.write_text(opencv_text(fields, kind))
    cameras = read_opencv_cameras(path)
    assert [c.source for c in cameras] == [f"{path} camera {i}" for i in range(n)]
    group = convert_calibration([path])
    _assert_same_rig(group, rig)
    out = _round_trips(group, tmp_path)
    for view in range(n):
        points = _points_in_view(rig, view)
        expected = _opencv_pixels(rig.intrinsics[view], rig.distortions[view],
                                  rig.rotations[view], rig.translations[view], points)
        np.testing.assert_allclose(_mvcore_pixels(out, view, points), expected, rtol=0,
                                   atol=1e-6)


@pytest.mark.parametrize("kind", ["yml", "xml"])
def test_files_written_by_opencv_itself(tmp_path: Path, kind: str) -> None:
    """Where OpenCV is installed: its own FileStorage output (OpenCV 5 writes ``%YAML 1.2``;
    a float32 'dt: f' rotation; the multi-camera layout) reads as the text written above."""
    cv2 = pytest.importorskip("cv2")
    k, d = SKEWED.intrinsics[0], SKEWED.distortions
    path = tmp_path / f"cam.{kind}"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", k)
    fs.write("distortion_coefficients", d)
    fs.write("rvec", SKEWED.rotations[0][:, None].astype(np.float32))
    fs.write("tvec", SKEWED.translations[0][:, None])
    fs.release()
    (camera,) = read_opencv_cameras(path)
    np.testing.assert_array_equal(camera.matrix, k)
    np.testing.assert_array_equal(camera.distortions, d[0])
    np.testing.assert_allclose(camera.rotation, SKEWED.rotations[0], rtol=1e-7)
    np.testing.assert_array_equal(camera.size, [640, 480])

    fields = {"Ks": np.stack([k, k]), "distortions": np.stack([d, d]),
              "rvecs": np.stack([SKEWED.rotations[0][:, None]] * 2), "Ts": np.zeros((2, 3, 1)),
              "image_sizes": np.array([[640, 480]] * 2), "is_fisheye": np.zeros(2, dtype=int),
              "cam_ids": "a,b"}
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in fields.items():
        fs.write(key, value)
    fs.release()
    ours = tmp_path / f"ours.{kind}"
    ours.write_text(opencv_text(fields, kind))
    for a, b in zip(read_opencv_cameras(path), read_opencv_cameras(ours), strict=True):
        assert a.name == b.name and a.source.startswith(str(path))
        for field in ("matrix", "distortions", "rotation", "translation", "size"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# ------------------------------------------------------------------------------ MATLAB


@needs_mouse4cam
def test_matlab_per_camera_files_project_like_matlab(tmp_path: Path) -> None:
    """DANNCE's ``hires_camN_params.mat``: one file per camera, top-level variables."""
    rig = _rig()
    files = []
    for i in range(rig.num_views):
        files.append(tmp_path / f"hires_cam{i + 1}_params.mat")
        height_width = rig.sizes[i][::-1][None]  # MATLAB's imageSize order
        scipy.io.savemat(files[-1], {**matlab_camera(rig, i), "imageSize": height_width})
    assert convert_calibration(files).names == [f"hires_cam{i}_params" for i in range(1, 6)]
    group = convert_calibration(files, names=rig.names)
    _assert_same_rig(group, rig)
    out = _round_trips(group, tmp_path)
    for view in range(rig.num_views):
        points = _points_in_view(rig, view)
        expected = _matlab_pixels(matlab_camera(rig, view), points) - 1.0  # 1- -> 0-based
        np.testing.assert_allclose(_mvcore_pixels(out, view, points), expected, rtol=0,
                                   atol=1e-6)


@needs_mouse4cam
def test_matlab_dannce_params_cell(tmp_path: Path) -> None:
    """DANNCE's ``*_dannce.mat``: a ``params`` cell array of structs and ``camnames``."""
    rig = _rig().select(["back", "mid", "side", "top"])
    cells = np.empty((4, 1), dtype=object)
    names = np.empty((1, 4), dtype=object)
    for i in range(4):
        cells[i, 0] = matlab_camera(rig, i)
        names[0, i] = rig.names[i]
    path = tmp_path / "label3d_dannce.mat"
    scipy.io.savemat(path, {"params": cells, "camnames": names, "imageSize": [[1024, 1280]]})
    group = convert_calibration([path])
    _assert_same_rig(group, rig)
    out = _round_trips(group, tmp_path)
    for view in range(4):
        points = _points_in_view(rig, view)
        expected = _matlab_pixels(matlab_camera(rig, view), points) - 1.0
        np.testing.assert_allclose(_mvcore_pixels(out, view, points), expected, rtol=0,
                                   atol=1e-6)
    # without camnames: Label3D's default names; --names renames
    scipy.io.savemat(path, {"camParams": cells})
    assert [c.name for c in read_matlab_cameras(path)] == [f"Camera{i}" for i in range(1, 5)]
    assert convert_calibration([path], names=list("abcd"), size=(1280, 1024)).names == \
        list("abcd")


def test_matlab_nested_params_struct(tmp_path: Path) -> None:
    """One camera as a ``params`` struct; the name is the file's stem; skew kept."""
    path = tmp_path / "cam7_params.mat"
    scipy.io.savemat(path, {"params": matlab_camera(SKEWED, 0)})
    group = convert_calibration([path], size=(640, 480))
    assert group.names == ["cam7_params"]
    np.testing.assert_allclose(group.intrinsics, SKEWED.intrinsics, rtol=1e-15, atol=1e-12)
    assert group.intrinsics[0, 0, 1] == 1.75


# ------------------------------------------------------------------------------ errors


def _yaml(tmp_path: Path, name: str = "cam.yml", **fields) -> Path:
    base = {"image_width": 640, "image_height": 480, "camera_matrix": SKEWED.intrinsics[0],
            "distortion_coefficients": SKEWED.distortions, "R": np.eye(3),
            "T": np.zeros((3, 1))}
    base.update(fields)
    path = tmp_path / name
    path.write_text(opencv_text({k: v for k, v in base.items() if v is not None}, "yml"))
    return path


def _raises(paths: list[Path], *parts: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        convert_calibration(paths, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_missing_camera_matrix_lists_the_keys_found(tmp_path: Path) -> None:
    path = _yaml(tmp_path, camera_matrix=None)
    _raises([path], str(path), "no camera matrix", "camera_matrix, cameraMatrix, K, "
            "intrinsicMatrix", "keys found: image_width, image_height, distortion_coefficients")


@pytest.mark.parametrize(("fields", "parts"), [
    ({"camera_matrix": np.eye(3)[:2]}, ["key 'camera_matrix'", "3x3", "2x3"]),
    ({"camera_matrix": SKEWED.intrinsics[0].T}, ["key 'camera_matrix'", "transposed",
                                                 "rename the key to intrinsicMatrix"]),
    ({"camera_matrix": None, "intrinsicMatrix": SKEWED.intrinsics[0]},
     ["key 'intrinsicMatrix'", "upright", "rename the key to camera_matrix"]),
    ({"camera_matrix": SKEWED.intrinsics[0] * [[-1], [1], [1]]},
     ["key 'camera_matrix'", "focal lengths must be positive", "fx=-700.25"]),
    ({"T": np.zeros((2, 1))}, ["key 'T'", "3 numbers", "2x1"]),
    ({"R": np.eye(3) * 2}, ["key 'R'", "not a rotation matrix"]),
    ({"R": np.eye(2)}, ["key 'R'", "3x3 rotation matrix", "2x2"]),
    ({"distortion_coefficients": np.array([[0.1, 0.2, 0.0, 0.0, 0.0, 0.3, 0, 0]])},
     ["key 'distortion_coefficients'", "not supported by anipose"]),
    ({"distortion_coefficients": np.ones((1, 3))}, ["key 'distortion_coefficients'",
                                                    "4, 5, 8, 12 or 14"]),
    ({"T": np.array([[1.0], [np.nan], [2.0]])}, ["key 'T'", "non-finite"]),
    ({"tvec": np.zeros((3, 1))}, ["keys ['T', 'tvec'] hold the same thing"]),
])
def test_bad_values_name_file_and_key(tmp_path: Path, fields: dict, parts: list[str]) -> None:
    path = _yaml(tmp_path, **fields)
    _raises([path], str(path), *parts)


def test_nan_as_opencv_writes_it(tmp_path: Path) -> None:
    path = _yaml(tmp_path)
    path.write_text(path.read_text().replace("data: [ 0., 0., 0. ]", "data: [ 0., .Nan, 0. ]"))
    _raises([path], str(path), "key 'T'", "non-finite")


def test_missing_size_asks_for_size(tmp_path: Path) -> None:
    path = _yaml(tmp_path, image_width=None, image_height=None)
    _raises([path], str(path), "no image size", "--size W H")
    assert convert_calibration([path], size=(640, 480)).sizes.tolist() == [[640, 480]]
    own = _yaml(tmp_path, "own.yml")  # --size is for the files without a size: this keeps its
    assert convert_calibration([own, path], size=(800, 600)).sizes.tolist() == [[640, 480],
                                                                                [800, 600]]
    _raises([path], "--size: expected a positive width and height", size=(0, 480))


def test_names_and_extensions(tmp_path: Path) -> None:
    a, b = _yaml(tmp_path, "a.yml"), _yaml(tmp_path, "b.yml")
    _raises([a, b], "--names gives 1 names for 2 cameras", names=["x"])
    _raises([a, b], "camera name 'x' twice", names=["x", "x"])
    txt = tmp_path / "cam.txt"
    txt.write_text(a.read_text())
    _raises([txt], str(txt), "unknown calibration file extension '.txt'", "--format opencv")
    assert convert_calibration([txt], file_format="opencv").names == ["cam"]
    _raises([tmp_path / "nope.yml"], "calibration file not found", "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("%YAML:1.0\n---\ncamera_matrix: [1, 2\n")
    _raises([bad], str(bad), "not a valid OpenCV YAML file")
    xml = tmp_path / "bad.xml"
    xml.write_text("<root/>")
    _raises([xml], str(xml), "<opencv_storage>")


def test_matlab_errors_name_file_and_field(tmp_path: Path) -> None:
    cam = matlab_camera(SKEWED, 0)
    path = tmp_path / "cam_params.mat"
    scipy.io.savemat(path, {k: v for k, v in cam.items() if k != "K"})
    _raises([path], str(path), "no camera parameters", "variables found: RDistort")
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0] = cam
    cells[1, 0] = {k: v for k, v in cam.items() if k != "TDistort"}
    scipy.io.savemat(path, {"params": cells})
    _raises([path], str(path), "'params{2}.TDistort'", "found K, RDistort, r, t")
    scipy.io.savemat(path, {**cam, "K": cam["K"].T})  # upright K: a wrong export
    _raises([path], str(path), "key 'K'", "upright", "transpose it")
    scipy.io.savemat(path, {**cam, "r": cam["r"] * 1.01})
    _raises([path], str(path), "key 'r'", "not a rotation matrix")
    scipy.io.savemat(path, {**cam, "RDistort": np.zeros((1, 4))})
    _raises([path], str(path), "key 'RDistort'", "2 or 3 radial")
    v73 = tmp_path / "v73.mat"  # a MATLAB 7.3 header: HDF5 inside
    v73.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(64))
    _raises([v73], str(v73), "v7.3", "-v7")
    junk = tmp_path / "junk.mat"
    junk.write_text("not a mat file" * 20)
    _raises([junk], str(junk), "not a readable MATLAB .mat file")


def test_fisheye_in_the_multiview_layout_is_refused(tmp_path: Path) -> None:
    fields = {"Ks": SKEWED.intrinsics, "distortions": SKEWED.distortions[:, None, :],
              "rvecs": SKEWED.rotations, "Ts": SKEWED.translations,
              "is_fisheye": np.ones(1, dtype=int)}
    path = tmp_path / "multiview.yml"
    path.write_text(opencv_text(fields, "yml"))
    _raises([path], str(path), "key 'is_fisheye'", "fisheye")


def test_save_atomically_keeps_the_old_file_when_the_new_one_is_bad(tmp_path: Path) -> None:
    out = tmp_path / "calibration.toml"
    out.write_text("old")
    bad = CameraGroup(names=["a", "a"], sizes=[[640, 480]] * 2,
                      intrinsics=np.stack([SKEWED.intrinsics[0]] * 2),
                      distortions=np.zeros((2, 5)), rotations=np.zeros((2, 3)),
                      translations=[[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    with pytest.raises(DataError, match="not written") as info:
        save_calibration_atomically(bad, out)
    assert str(out) in str(info.value) and ".tmp" not in str(info.value)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "calibration.toml"]
