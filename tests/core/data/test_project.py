"""MultiviewProject: loading, checks (each a DataError naming file and row), calibration."""

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mouse4cam_rigs import copy_project
from PIL import Image
from shared_data import MOUSE4CAM

from mvcore.config.schema import MvConfig
from mvcore.data.bbox import read_bbox_csv
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.project import MultiviewProject, project_from_folder
from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, project_points, save_calibration

M4C_VIEWS = ["back", "mid", "side", "top"]

VIEWS = ["a", "b", "c"]
KEYPOINTS = ["nose", "ear", "tail", "paw"]
IMAGE_HW = (48, 64)


def cameras(names=VIEWS) -> CameraGroup:
    """Cameras on a circle around the origin, 10 units away, mild radial distortion."""
    v = len(names)
    h, w = IMAGE_HW
    k = np.array([[60.0, 0, (w - 1) / 2], [0, 60.0, (h - 1) / 2], [0, 0, 1]])
    return CameraGroup(
        names=list(names),
        sizes=np.tile([w, h], (v, 1)),
        intrinsics=np.tile(k, (v, 1, 1)),
        distortions=np.tile([-0.05, 0.01, 0.0, 0.0, 0.0], (v, 1)),
        rotations=np.stack([[0.0, a, 0.0] for a in np.linspace(-0.6, 0.6, v)]),
        translations=np.tile([0.0, 0.0, 10.0], (v, 1)),
    )


def make_project(root: Path, n: int = 6, session: str = "s1", calibrate: bool = True):
    """Synthetic project: exact projections of random 3D points; returns (points, kp)."""
    seed = int.from_bytes(session.encode(), "little") % 2**32  # sessions get their own poses
    points = np.random.default_rng(seed).uniform(-1.5, 1.5, size=(n, len(KEYPOINTS), 3))
    cams = cameras().to_tensors(dtype=torch.float64)
    kp = project_points(
        torch.as_tensor(points), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()  # (n, V, K, 2)
    for v, view in enumerate(VIEWS):
        (root / "labeled-data" / f"{session}_{view}").mkdir(parents=True, exist_ok=True)
        paths = [f"labeled-data/{session}_{view}/img{i:04d}.png" for i in range(n)]
        for p in paths:
            Image.fromarray(np.full((*IMAGE_HW, 3), 40 * v, np.uint8)).save(root / p)
        write_keypoints_csv(root / f"CollectedData_{view}.csv", paths, KEYPOINTS, kp[:, v])
    if calibrate:
        save_calibration(cameras(), root / "calibration.toml")
    return points, kp


def make_config(root: Path, training=None, **data) -> MvConfig:
    values = {
        "data_dir": str(root),
        "csv_file": [f"CollectedData_{v}.csv" for v in VIEWS],
        "view_names": VIEWS,
        "image_resize_dims": {"height": 32, "width": 32},
        **data,
    }
    return MvConfig.model_validate({"data": values, "training": training or {}})


def edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


# ----------------------------------------------------------------------------- mouse4cam


@pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not available")
def test_loads_mouse4cam():
    config = MvConfig.model_validate(
        {
            "data": {
                "data_dir": os.path.relpath(MOUSE4CAM, Path(__file__).resolve().parents[3]),
                "csv_file": [f"CollectedData_{v}.csv" for v in M4C_VIEWS],
                "view_names": M4C_VIEWS,
            },
            "config_dir": str(Path(__file__).resolve().parents[3]),  # repo root
        }
    )
    project = MultiviewProject.from_config(config)
    assert len(project) == 60 and project.view_names == M4C_VIEWS
    assert project.keypoints.shape == (60, 4, 15, 2) and project.num_keypoints == 15
    assert project.sessions == ["minimal"] * 60
    assert project.has_calibration and len(project.calibrations) == 1
    assert project.calibration_files[0].name == "calibration.toml"
    assert project.calibrations[0].names == M4C_VIEWS
    np.testing.assert_array_equal(project.image_sizes, np.broadcast_to([1024, 1280], (60, 4, 2)))
    np.testing.assert_array_equal(project.bboxes[5, 2], [0, 0, 1024, 1280])
    missing = np.isnan(project.keypoints[..., 0]).sum(axis=(0, 2))
    assert missing.tolist() == [194, 0, 116, 0]
    # uniform_heatmaps_for_nan_keypoints defaults to true -> code 1 for missing labels
    assert (project.visibility == 1).sum() == 310 and (project.visibility == 2).sum() == 3290
    assert project.image_paths[3][1] == "labeled-data/minimal_mid/img0006.jpg"


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_project_loads_with_frame_coordinates(tmp_path):
    _, kp = make_project(tmp_path)
    project = MultiviewProject.from_config(make_config(tmp_path))
    assert len(project) == 6 and project.keypoint_names == KEYPOINTS
    np.testing.assert_array_equal(project.keypoints, kp)
    assert (project.visibility == 2).all() and project.visibility.dtype == np.int64
    assert project.sessions == ["s1"] * 6 and project.has_calibration
    assert project.calibration_index.tolist() == [0] * 6
    assert project.image_file(2, 1) == tmp_path / "labeled-data/s1_b/img0002.png"


def test_relative_data_dir_resolves_against_config_dir(tmp_path):
    make_project(tmp_path / "proj")
    config = make_config(tmp_path / "proj", data_dir="proj")
    config.config_dir = str(tmp_path)
    assert MultiviewProject.from_config(config).root == (tmp_path / "proj").resolve()


def test_different_row_counts(tmp_path):
    make_project(tmp_path)
    edit_lines(tmp_path / "CollectedData_b.csv", lambda lines: lines[:-1])
    with pytest.raises(DataError, match="different numbers of rows") as info:
        MultiviewProject.from_config(make_config(tmp_path))
    assert "CollectedData_a.csv has 6" in str(info.value)
    assert "CollectedData_b.csv has 5" in str(info.value)


def test_different_keypoint_names(tmp_path):
    make_project(tmp_path)
    edit_lines(
        tmp_path / "CollectedData_c.csv", lambda ls: [ls[0], ls[1].replace("ear", "EAR")] + ls[2:]
    )
    with pytest.raises(DataError, match=r"CollectedData_c\.csv: keypoint names"):
        MultiviewProject.from_config(make_config(tmp_path))


def test_keypoint_order_must_match(tmp_path):
    make_project(tmp_path)

    def swap(lines):
        lines[1] = lines[1].replace("nose", "TMP").replace("ear", "nose").replace("TMP", "ear")
        return lines

    edit_lines(tmp_path / "CollectedData_b.csv", swap)
    with pytest.raises(DataError, match="same keypoints in the same order"):
        MultiviewProject.from_config(make_config(tmp_path))


def test_row_must_be_the_same_image_in_every_view(tmp_path):
    make_project(tmp_path)
    src = tmp_path / "labeled-data/s1_b/img0003.png"
    shutil.copy(src, src.with_name("img9999.png"))
    edit_lines(
        tmp_path / "CollectedData_b.csv", lambda ls: [x.replace("img0003", "img9999") for x in ls]
    )
    with pytest.raises(DataError) as info:
        MultiviewProject.from_config(make_config(tmp_path))
    message = str(info.value)
    assert "CollectedData_b.csv, line 7" in message and "img9999.png" in message


def test_missing_image_is_named_with_its_csv_row(tmp_path):
    make_project(tmp_path)
    (tmp_path / "labeled-data/s1_c/img0004.png").unlink()
    with pytest.raises(DataError, match="not found") as info:
        MultiviewProject.from_config(make_config(tmp_path))
    assert "CollectedData_c.csv, line 8 (labeled-data/s1_c/img0004.png)" in str(info.value)


def test_config_keypoints_and_views_must_match(tmp_path):
    make_project(tmp_path)
    with pytest.raises(DataError, match=r"data.keypoint_names .*CollectedData_a\.csv"):
        MultiviewProject.from_config(make_config(tmp_path, keypoint_names=["x", "y", "z", "w"]))
    with pytest.raises(DataError, match="data.num_keypoints is 3"):
        MultiviewProject.from_config(make_config(tmp_path, num_keypoints=3))
    with pytest.raises(DataError, match="data.view_names has 0 entries"):
        MultiviewProject.from_config(make_config(tmp_path, view_names=[]))


def test_visible_column_and_nan_policy(tmp_path):
    make_project(tmp_path)
    path = tmp_path / "CollectedData_a.csv"

    def add_visible(lines):
        out = []
        for i, line in enumerate(lines):
            cells = line.split(",")
            head, pairs = cells[0], [cells[1 + 2 * k : 3 + 2 * k] for k in range(4)]
            extra = ["me" if i == 0 else (kp[0] if i == 1 else "visible") for kp in pairs]
            if i >= 3:
                extra = ["2", "0", "1", ""]  # nose 2, ear 0 (occluded), tail 1 with xy, paw ?
            out.append(",".join([head] + [c for p, e in zip(pairs, extra) for c in (*p, e)]))
        return out

    edit_lines(path, add_visible)
    with pytest.warns(UserWarning, match="visible=1 and coordinates"):
        project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.visibility[:, 0].tolist() == [[2, 0, 1, 2]] * 6
    assert np.isfinite(project.keypoints[:, 0, 1]).all()  # occluded but located: kept
    assert np.isnan(project.keypoints[:, 0, 2]).all()  # visible=1: coordinates ignored


def test_nan_labels_give_code_1_or_0(tmp_path):
    _, kp = make_project(tmp_path)
    kp[2, 1, 3] = np.nan
    paths = [f"labeled-data/s1_b/img{i:04d}.png" for i in range(6)]
    write_keypoints_csv(tmp_path / "CollectedData_b.csv", paths, KEYPOINTS, kp[:, 1])
    assert MultiviewProject.from_config(make_config(tmp_path)).visibility[2, 1, 3] == 1
    config = make_config(tmp_path, training={"uniform_heatmaps_for_nan_keypoints": False})
    assert MultiviewProject.from_config(config).visibility[2, 1, 3] == 0


def test_bbox_files_map_crop_labels_to_frame(tmp_path):
    _, kp = make_project(tmp_path)  # images are 48 x 64; say each is a 2x downscaled crop
    bbox = np.array([100.0, 50.0, 96.0, 128.0])  # x, y, h, w in the frame
    for view in VIEWS:
        rows = [f"labeled-data/s1_{view}/img{i:04d}.png,100,50,96,128" for i in range(6)]
        (tmp_path / f"bboxes_{view}.csv").write_text("\n".join([",x,y,h,w", *rows]) + "\n")
    config = make_config(tmp_path, bbox_file=[f"bboxes_{v}.csv" for v in VIEWS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calibration is of the crops here; not the point
        project = MultiviewProject.from_config(config)
    np.testing.assert_array_equal(project.bboxes, np.broadcast_to(bbox, (6, 3, 4)))
    np.testing.assert_allclose(project.keypoints, (kp + 0.5) * 2 - 0.5 + [100, 50])

    edit_lines(tmp_path / "bboxes_b.csv", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]])
    with pytest.raises(DataError, match=r"bboxes_b\.csv, row 1 .* must match the label rows"):
        MultiviewProject.from_config(config)


def test_calibration_is_reordered_by_camera_name(tmp_path):
    make_project(tmp_path)
    group = cameras()
    save_calibration(group.select(["c", "a", "b"]), tmp_path / "calibration.toml")
    project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.calibrations[0].names == VIEWS
    np.testing.assert_array_equal(project.calibrations[0].rotations, group.rotations)


def test_calibration_with_wrong_names_or_too_few_cameras(tmp_path):
    make_project(tmp_path)
    renamed = cameras(["a", "b", "x"])
    save_calibration(renamed, tmp_path / "calibration.toml")
    with pytest.raises(DataError, match=r"calibration\.toml: camera names \['a', 'b', 'x'\]"):
        MultiviewProject.from_config(make_config(tmp_path))
    save_calibration(cameras().select(["a", "b"]), tmp_path / "calibration.toml")
    with pytest.raises(DataError, match=r"calibration\.toml: .*\(2 cameras\).*missing \['c'\]"):
        MultiviewProject.from_config(make_config(tmp_path))


def test_extra_cameras_are_dropped(tmp_path):
    """Documented fallback: a rig file with more cameras than views is subset by name."""
    make_project(tmp_path)
    save_calibration(cameras(["a", "b", "c", "d"]), tmp_path / "calibration.toml")
    project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.calibrations[0].names == VIEWS


def test_session_calibrations_and_partial_calibration(tmp_path):
    make_project(tmp_path, n=4, session="s1", calibrate=False)
    make_project(tmp_path / "other", n=4, session="s2", calibrate=False)
    for view in VIEWS:  # merge the two sessions into one project
        lines = (tmp_path / "other" / f"CollectedData_{view}.csv").read_text().splitlines()
        with open(tmp_path / f"CollectedData_{view}.csv", "a") as handle:
            handle.write("\n".join(lines[3:]) + "\n")
        shutil.copytree(
            tmp_path / f"other/labeled-data/s2_{view}", tmp_path / f"labeled-data/s2_{view}"
        )
    (tmp_path / "calibrations").mkdir()
    save_calibration(cameras(), tmp_path / "calibrations" / "s2.toml")
    with pytest.warns(UserWarning, match="4 of 8 rows have no calibration"):
        project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.sessions == ["s1"] * 4 + ["s2"] * 4
    assert project.calibration_index.tolist() == [-1] * 4 + [0] * 4
    assert not project.has_calibration
    cams = project.row_cameras()
    assert torch.equal(cams.intrinsics[0], torch.eye(3, dtype=torch.float64).expand(3, 3, 3))

    save_calibration(cameras(), tmp_path / "calibration.toml")  # root fallback for s1
    project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.has_calibration and project.calibration_index.tolist() == [0] * 4 + [1] * 4
    assert [p.name for p in project.calibration_files] == ["calibration.toml", "s2.toml"]


def test_calibration_file_option_and_camera_params_file(tmp_path):
    make_project(tmp_path, calibrate=False)
    project = MultiviewProject.from_config(make_config(tmp_path))
    assert project.calibrations == [] and (project.calibration_index == -1).all()
    save_calibration(cameras(), tmp_path / "rig.toml")
    project = MultiviewProject.from_config(make_config(tmp_path, calibration_file="rig.toml"))
    assert project.has_calibration and project.calibration_files == [tmp_path / "rig.toml"]
    with pytest.raises(DataError, match="data.calibration_file not found"):
        MultiviewProject.from_config(make_config(tmp_path, calibration_file="nope.toml"))

    rows = [f"labeled-data/s1_a/img{i:04d}.png,rig.toml" for i in range(5)]  # row 5 missing
    (tmp_path / "calibrations.csv").write_text("\n".join([",file", *rows]) + "\n")
    with pytest.warns(UserWarning, match="1 of 6 rows have no calibration"):
        project = MultiviewProject.from_config(
            make_config(tmp_path, camera_params_file="calibrations.csv")
        )
    assert project.calibration_index.tolist() == [0] * 5 + [-1]


def test_labels_and_calibration_load_without_images(tmp_path):
    # projects exported from 3D labelling tools often have no frames
    _, kp = make_project(tmp_path)
    shutil.rmtree(tmp_path / "labeled-data")
    with pytest.raises(DataError, match="not found"):
        MultiviewProject.from_config(make_config(tmp_path))
    project = MultiviewProject.from_config(make_config(tmp_path), need_images=False)
    np.testing.assert_allclose(project.keypoints, kp)
    assert (project.image_sizes == IMAGE_HW).all() and project.has_calibration


def test_without_images_every_row_needs_a_calibration_and_no_bbox(tmp_path):
    make_project(tmp_path, calibrate=False)
    with pytest.raises(DataError, match="6 of 6 rows have no calibration"):
        MultiviewProject.from_config(make_config(tmp_path), need_images=False)
    save_calibration(cameras(), tmp_path / "calibration.toml")
    config = make_config(tmp_path, bbox_file=[f"bbox_{v}.csv" for v in VIEWS])
    with pytest.raises(DataError, match="bbox crops need the crop images"):
        MultiviewProject.from_config(config, need_images=False)


def test_project_from_folder_orders_views_as_the_calibration(shared_data, tmp_path):
    root = copy_project(shared_data, tmp_path / "m4")
    project = project_from_folder(root)  # file names sort back, mid, side, top: same order
    assert project.view_names == ["back", "mid", "side", "top"]
    assert project.calibration_files == [(root / "calibration.toml").resolve()]
    group = project.calibrations[0]
    save_calibration(group.select(["top", "side", "mid", "back"]), root / "other.toml")
    other = project_from_folder(root, calibration=root / "other.toml")
    assert other.view_names == ["top", "side", "mid", "back"]  # the calibration's order
    np.testing.assert_array_equal(other.keypoints[:, 0], project.keypoints[:, 3])
    assert project_from_folder(root, views=["mid", "top"]).view_names == ["mid", "top"]
    with pytest.raises(DataError, match="need >= 2"):
        project_from_folder(root, views=["mid"])
    with pytest.raises(DataError, match="project folder not found"):
        project_from_folder(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- load checks


def _set_cell(path: Path, line: int, column: int, text: str) -> None:
    """Put ``text`` in 1-based ``line``, 1-based ``column`` of a CSV."""
    def edit(lines):
        cells = lines[line - 1].split(",")
        cells[column - 1] = text
        lines[line - 1] = ",".join(cells)
        return lines
    edit_lines(path, edit)


def _load(root: Path, **data) -> MultiviewProject:
    return MultiviewProject.from_config(make_config(root, **data))


def test_a_truncated_image_is_found_at_load_naming_its_csv_line(tmp_path):
    make_project(tmp_path)
    image = tmp_path / "labeled-data/s1_b/img0004.png"
    image.write_bytes(image.read_bytes()[:-40])
    with pytest.raises(DataError) as info:
        _load(tmp_path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{tmp_path / 'CollectedData_b.csv'}, line 8 "
                              "(labeled-data/s1_b/img0004.png): cannot read image")
    assert "replace it with a good copy" in message


def test_a_truncated_jpeg_and_a_file_that_is_not_an_image(tmp_path):
    make_project(tmp_path)
    names = {}
    for view in VIEWS:  # the views as JPEGs
        folder = tmp_path / "labeled-data" / f"s1_{view}"
        for png in sorted(folder.glob("*.png")):
            Image.open(png).save(png.with_suffix(".jpg"), quality=90)
            png.unlink()
        edit_lines(tmp_path / f"CollectedData_{view}.csv",
                   lambda ls: [x.replace(".png", ".jpg") for x in ls])
        names[view] = folder
    assert len(_load(tmp_path)) == 6
    jpeg = names["a"] / "img0002.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"CollectedData_a\.csv, line 6 .*cannot read image"):
        _load(tmp_path)
    jpeg.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"line 6 .*cannot read image .*img0002\.jpg"):
        _load(tmp_path)


def test_bytes_after_the_end_of_an_image_are_harmless(tmp_path):
    make_project(tmp_path)
    image = tmp_path / "labeled-data/s1_c/img0001.png"
    image.write_bytes(image.read_bytes() + b"\x00" * 100)  # decodes fine: not an error
    assert len(_load(tmp_path)) == 6


def test_an_odd_sized_image_in_a_folder_is_found_at_load(tmp_path):
    make_project(tmp_path)
    odd = tmp_path / "labeled-data/s1_a/img0003.png"
    Image.open(odd).resize((70, 50)).save(odd)
    with pytest.raises(DataError) as info:
        _load(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'CollectedData_a.csv'}, line 7 (labeled-data/s1_a/img0003.png): " \
        "image is 70x50 (w x h) but the first image of its folder" in message
    assert "line 4 (labeled-data/s1_a/img0000.png), is 64x48" in message


def test_labels_far_outside_their_image_are_errors_naming_line_column_keypoint(tmp_path):
    make_project(tmp_path)
    csv = tmp_path / "CollectedData_b.csv"
    for text in ("1e9", "1e20", "-9999", "1e300"):
        _set_cell(csv, 6, 5, text)  # line 6 = row 2; column 5 = ear y (index, nose x y, ear x)
        with pytest.raises(DataError) as info:
            _load(tmp_path)
        message = str(info.value)
        assert len(message.splitlines()) == 1
        assert message.startswith(f"{csv}, line 6, column 5 (ear, labeled-data/s1_b/"
                                  "img0002.png): label (")
        assert "lies far outside the 64x48 (w x h) image" in message
        assert "leave its x, y cells empty" in message


def test_labels_just_outside_their_image_are_a_warning(tmp_path):
    make_project(tmp_path)
    _set_cell(tmp_path / "CollectedData_c.csv", 4, 2, "-3.5")  # 3 px left of the edge
    with pytest.warns(UserWarning, match=r"CollectedData_c\.csv, line 4, column 2 \(nose, .*"
                                         r"label \(-3\.5, .*lies outside the 64x48"):
        project = _load(tmp_path)
    assert project.keypoints[0, 2, 0, 0] == -3.5  # kept


def test_crop_labels_are_checked_against_the_crop(tmp_path):
    make_project(tmp_path)
    for view in VIEWS:
        rows = [f"labeled-data/s1_{view}/img{i:04d}.png,100,50,96,128" for i in range(6)]
        (tmp_path / f"bboxes_{view}.csv").write_text("\n".join([",x,y,h,w", *rows]) + "\n")
    _set_cell(tmp_path / "CollectedData_a.csv", 4, 2, "150")  # inside the frame, not the crop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calibration is of the crops here; not the point
        with pytest.raises(DataError, match="far outside the 64x48"):
            _load(tmp_path, bbox_file=[f"bboxes_{v}.csv" for v in VIEWS])


def test_labels_are_checked_without_images_against_the_calibration(tmp_path):
    make_project(tmp_path)
    shutil.rmtree(tmp_path / "labeled-data")
    _set_cell(tmp_path / "CollectedData_a.csv", 5, 3, "1e9")
    with pytest.raises(DataError, match=r"line 5, column 3 \(nose, .*far outside the 64x48"):
        MultiviewProject.from_config(make_config(tmp_path), need_images=False)


def test_a_project_without_labelled_points_is_an_error_a_view_without_a_warning(tmp_path):
    make_project(tmp_path)

    def blank(lines):
        return lines[:3] + [x.split(",")[0] + "," * (len(x.split(",")) - 1) for x in lines[3:]]

    edit_lines(tmp_path / "CollectedData_b.csv", blank)
    with pytest.warns(UserWarning, match=r"CollectedData_b\.csv: no labelled points in this "
                                         "view"):
        _load(tmp_path)
    for view in VIEWS:
        edit_lines(tmp_path / f"CollectedData_{view}.csv", blank)
    with pytest.raises(DataError) as info:
        _load(tmp_path)
    assert str(info.value) == (
        "no labelled points in CollectedData_a.csv, CollectedData_b.csv, CollectedData_c.csv: "
        "every x, y cell is empty (or visible=1); label some frames, or check that "
        "data.csv_file names the label files")


def test_the_same_image_twice_is_an_error(tmp_path):
    make_project(tmp_path)
    for view in VIEWS:  # row 3 (line 7) becomes a second copy of row 1 (line 5)
        edit_lines(tmp_path / f"CollectedData_{view}.csv",
                   lambda ls: ls[:6] + [ls[4]] + ls[7:])
    with pytest.raises(DataError) as info:
        _load(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'CollectedData_a.csv'}, line 7 (labeled-data/s1_a/img0001.png): image "
        "listed twice in CollectedData_a.csv (also line 5); a frame must be labelled once: "
        "remove one of the rows (from every view's CSV)")


def test_identical_labels_for_different_images_are_a_warning(tmp_path):
    make_project(tmp_path)

    def copy_labels(lines):  # image of line 8, labels of line 4
        lines[7] = lines[7].split(",")[0] + "," + lines[3].split(",", 1)[1]
        return lines

    edit_lines(tmp_path / "CollectedData_a.csv", copy_labels)
    with pytest.warns(UserWarning) as record:
        _load(tmp_path)
    messages = [str(w.message) for w in record]
    assert any(m.startswith(f"{tmp_path / 'CollectedData_a.csv'}: lines 4 and 8 "
                            "(labeled-data/s1_a/img0000.png, labeled-data/s1_a/img0004.png) "
                            "have identical labels") for m in messages), messages


def test_clean_projects_load_without_warnings(tmp_path):
    make_project(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _load(tmp_path)


@pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not available")
def test_mouse4cam_loads_without_warnings_and_its_image_check_is_cheap():
    """Every one of the 240 JPEG headers (and its last bytes) is read at load: tens of ms."""
    config = MvConfig.model_validate({"data": {
        "data_dir": str(MOUSE4CAM), "view_names": M4C_VIEWS,
        "csv_file": [f"CollectedData_{v}.csv" for v in M4C_VIEWS]}})
    MultiviewProject.from_config(config)  # warm the file cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start = time.perf_counter()
        MultiviewProject.from_config(config)
        elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed  # about 0.05 s here; a full decode takes about 2 s


def test_bbox_reader_finds_columns_by_name_and_names_file_and_row(tmp_path):
    index = ["labeled-data/s/img0.png", "labeled-data/s/img1.png"]
    path = tmp_path / "bboxes.csv"
    path.write_text(",w,h,x,y\n" + "".join(f"{p},128,96,{i},50\n" for i, p in
                                           enumerate(index)))
    np.testing.assert_array_equal(read_bbox_csv(path, index), [[0, 50, 96, 128],
                                                                [1, 50, 96, 128]])
    cases = [
        (",x,y,h\nlabeled-data/s/img0.png,1,2,3\n", "row 0 (header): needs one column each "
         "named x, y, h, w after the image path column (header ',x,y,h,w'); w missing"),
        (";x;y;h;w\n", "the file is semicolon-separated"),
        (",x,y,h,w\n" + "".join(f"{p},1,2,3,4\n" for p in index[:1]),
         "1 bbox rows but the label CSV has 2 rows"),
        (",x,y,h,w\n" + "".join(f"{p},1,2,3,4\n" for p in index[::-1]),
         "row 1 (labeled-data/s/img1.png): image 'labeled-data/s/img1.png' but the label CSV "
         "row 1 is 'labeled-data/s/img0.png'"),
        (",x,y,h,w\n" + "".join(f"{p},1,2,0,4\n" for p in index),
         "row 1 (labeled-data/s/img0.png): bbox must be finite with h, w > 0"),
        (",x,y,h,w\n" + "".join(f"{p},1,two,3,4\n" for p in index),
         "row 1 (labeled-data/s/img0.png): x, y, h, w must be numbers"),
        (",x,y,h,w\n" + "".join(f"{p},1,2,3\n" for p in index), "row 1 (labeled-data/s/"
         "img0.png): 4 cells but the header has 5"),
        ("", "empty file"),
    ]
    for text, expected in cases:
        path.write_text(text)
        with pytest.raises(DataError) as info:
            read_bbox_csv(path, index)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and message.startswith(str(path)), message
        assert expected in message, message
    with pytest.raises(DataError, match="bbox file not found"):
        read_bbox_csv(tmp_path / "nope.csv", index)


def test_images_must_have_their_calibrated_cameras_size(tmp_path):
    make_project(tmp_path)
    group = cameras()
    group.sizes[1] = [128, 96]  # camera b calibrated on frames twice the labelled images' size
    save_calibration(group, tmp_path / "calibration.toml")
    with pytest.raises(DataError) as info:
        _load(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'calibration.toml'}: camera 'b' is 128x96 (w x h) but its labelled image "
        "labeled-data/s1_b/img0000.png is 64x48; labels are in image pixels, so the calibration "
        "must describe the labelled frames: calibrate at the image size, scale the "
        "calibration's matrix and size to it, or remove the calibration to train in 2D only")
