"""The built-in synthetic project: deterministic, exact labels, sub-pixel blobs, valid files."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mvcore.cli.main import main
from mvcore.config.load import load_config
from mvcore.errors import DataError
from mvcore.example import KEYPOINT_NAMES, make_example_project
from mvcore.geometry import load_calibration, project_points, triangulate

NUM_FRAMES = 120
IMAGE_SIZE = 256
VIEWS = ["cam_a", "cam_b", "cam_c"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default project (seed 0), generated once for the module."""
    config = make_example_project(tmp_path_factory.mktemp("example") / "proj", seed=0)
    assert config.name == "config.yaml" and config.is_file()
    return config.parent


def _labels(project: Path) -> dict[str, pd.DataFrame]:
    return {
        v: pd.read_csv(project / f"CollectedData_{v}.csv", header=[0, 1, 2], index_col=0)
        for v in VIEWS
    }


def _frame_index(path: str) -> int:
    return int(re.search(r"img(\d+)\.png$", path).group(1))


def _label_array(labels: dict[str, pd.DataFrame]) -> np.ndarray:
    """Labels ``(N, V, K, 2)`` in view order."""
    arrays = [labels[v].to_numpy(dtype=np.float64) for v in VIEWS]
    return np.stack(arrays, axis=1).reshape(len(arrays[0]), len(VIEWS), -1, 2)


def _ground_truth(project: Path) -> np.ndarray:
    """Ground-truth 3D keypoints ``(T, K, 3)``."""
    gt = pd.read_csv(project / "ground_truth_3d.csv")
    assert list(gt["frame"]) == list(range(len(gt)))
    return gt.drop(columns="frame").to_numpy().reshape(len(gt), len(KEYPOINT_NAMES), 3)


def _files(project: Path) -> dict[str, bytes]:
    names = [f"CollectedData_{v}.csv" for v in VIEWS]
    names += ["calibration.toml", "ground_truth_3d.csv", "occluded.csv", "config.yaml"]
    names += [f"labeled-data/session0_{v}/img0004.png" for v in VIEWS]
    names += [f"videos/session0_{v}.mp4" for v in VIEWS]
    return {n: (project / n).read_bytes() for n in names}


def test_deterministic_from_seed(tmp_path: Path) -> None:
    a = _files(make_example_project(tmp_path / "a", seed=3, num_frames=16, image_size=128).parent)
    b = _files(make_example_project(tmp_path / "b", seed=3, num_frames=16, image_size=128).parent)
    c = _files(make_example_project(tmp_path / "c", seed=4, num_frames=16, image_size=128).parent)
    assert a == b
    for name in ["CollectedData_cam_a.csv", "calibration.toml", "ground_truth_3d.csv"]:
        assert a[name] != c[name], name


def test_refuses_non_empty_dir_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="is not empty; choose a new or empty folder, or pass "
                                        "--overwrite"):
        make_example_project(tmp_path, num_frames=8, label_every=4, image_size=128)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    stale = tmp_path / "labeled-data" / "session0_cam_a" / "img9999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "mine.mp4").write_bytes(b"mine")
    config = make_example_project(
        tmp_path, num_frames=8, label_every=4, image_size=128, overwrite=True
    )
    assert config.is_file() and (tmp_path / "keep.txt").is_file()
    assert (tmp_path / "videos" / "mine.mp4").read_bytes() == b"mine"  # other files stay
    assert not stale.exists()  # a label folder is replaced whole: no image of another run
    assert sorted(p.name for p in stale.parent.iterdir()) == ["img0000.png", "img0004.png"]
    assert [p.name for p in tmp_path.parent.iterdir() if ".partial" in p.name] == []
    labels = _labels(tmp_path)
    assert [_frame_index(p) for p in labels["cam_a"].index] == [0, 4]


def test_an_interrupted_run_leaves_no_half_project(tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mvcore.example.write.write_keypoints_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_example_project(tmp_path / "proj", num_frames=8, label_every=4, image_size=128)
    assert list((tmp_path / "proj").iterdir()) == []  # videos and images were written ...
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # ... beside it, then removed


def test_cli_errors_are_one_line_naming_the_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    (tmp_path / "a_file").write_text("x")
    for folder, message in (
        ("full", "is not empty; choose a new or empty folder, or pass --overwrite"),
        ("a_file", "example-data DIR {path} is a file, not a folder; give a folder path"),
        ("a_file/sub", "example-data DIR {path}: cannot write there (Not a directory)"),
    ):
        assert main(["example-data", str(tmp_path / folder)]) == 2
        err = capsys.readouterr().err
        path = (tmp_path / folder).resolve()
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert message.format(path=path) in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]


def test_csvs_dlc_format_and_missing_labels(project: Path) -> None:
    labels = _labels(project)
    first = labels[VIEWS[0]]
    assert list(first.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(first.columns.get_level_values("bodyparts")[::2]) == list(KEYPOINT_NAMES)
    assert list(first.columns.get_level_values("coords")[:2]) == ["x", "y"]
    frames = [_frame_index(p) for p in first.index]
    assert frames == list(range(0, NUM_FRAMES, 2))
    for view, table in labels.items():
        assert table.columns.equals(first.columns)
        assert [_frame_index(p) for p in table.index] == frames
        for path in table.index:
            assert path.startswith(f"labeled-data/session0_{view}/")
            assert (project / path).is_file()

    arr = _label_array(labels)  # (N, V, K, 2)
    missing = np.isnan(arr)
    assert (missing[..., 0] == missing[..., 1]).all()  # x and y go missing together
    assert 0.04 < missing[..., 0].mean() < 0.08
    view_empty = missing[..., 0].all(-1)  # (N, V)
    assert view_empty.any(), "no frame with one view entirely unlabelled"
    n, v = np.argwhere(view_empty)[0]
    assert not missing[n, np.arange(len(VIEWS)) != v].all()
    labelled = arr[~missing]
    assert labelled.min() >= 0 and labelled.max() <= IMAGE_SIZE - 1


def test_labels_are_exact_projections_and_triangulate_exactly(project: Path) -> None:
    group = load_calibration(project / "calibration.toml")
    assert group.names == VIEWS
    assert np.all(group.distortions[:, :2] != 0) and np.all(group.distortions[:, 2:4] != 0)
    cams = group.to_tensors(dtype=torch.float64)
    labels = _labels(project)
    arr = _label_array(labels)
    frames = [_frame_index(p) for p in labels[VIEWS[0]].index]
    gt = _ground_truth(project)[frames]  # (N, K, 3)

    proj = project_points(
        torch.as_tensor(gt), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()
    ok = np.isfinite(arr)
    assert np.abs(proj[ok] - arr[ok]).max() < 1e-6

    points = triangulate(
        torch.as_tensor(arr), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()
    enough = np.isfinite(arr[..., 0]).sum(1) >= 2  # (N, K)
    assert enough.mean() > 0.9
    assert np.isfinite(points[enough]).all()
    assert np.abs(points[enough] - gt[enough]).max() < 1e-3  # mm


def test_blob_centres_match_labels(project: Path) -> None:
    """The colour-weighted centroid of each clearly visible marker is the label (< 0.5 px)."""
    group = load_calibration(project / "calibration.toml")
    cams = group.to_tensors(dtype=torch.float64)
    gt = _ground_truth(project)
    uv = project_points(
        torch.as_tensor(gt), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()  # (T, V, K, 2), also for dropped labels
    occluded = pd.read_csv(project / "occluded.csv", header=[0, 1], index_col=0)
    labels = _labels(project)
    window, clearance = 3.0, 8.0  # px: centroid radius; no other marker this close
    errors = []
    for v, view in enumerate(VIEWS):
        for path in labels[view].index[::3]:
            t = _frame_index(path)
            image = np.asarray(Image.open(project / path), dtype=np.float64) / 255.0
            ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
            row = labels[view].loc[path].to_numpy(dtype=np.float64).reshape(-1, 2)
            for k, name in enumerate(KEYPOINT_NAMES):
                others = np.delete(uv[t, v], k, axis=0)
                if (
                    not np.isfinite(row[k]).all()
                    or occluded.loc[t, (view, name)]
                    or np.hypot(*(others - row[k]).T).min() < clearance
                    or not (window + 1 < row[k]).all()
                    or not (row[k] < IMAGE_SIZE - window - 2).all()
                ):
                    continue
                x, y = row[k]
                colour = image[int(round(y)), int(round(x))]
                weight = image @ (colour / np.linalg.norm(colour))
                inside = np.hypot(xs - x, ys - y) <= window
                w = weight[inside]
                centre = np.array([(w * xs[inside]).sum(), (w * ys[inside]).sum()]) / w.sum()
                errors.append(np.hypot(*(centre - row[k])))
    errors = np.array(errors)
    assert len(errors) > 100
    assert errors.max() < 0.5 and np.median(errors) < 0.1


def test_videos(project: Path) -> None:
    labels = _labels(project)
    for view in VIEWS:
        with av.open(str(project / "videos" / f"session0_{view}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name in ("h264", "mpeg4")
            assert (stream.width, stream.height) == (IMAGE_SIZE, IMAGE_SIZE)
            assert stream.codec_context.format.name == "yuv420p"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == NUM_FRAMES
        # video frame t is the labelled image imgTTTT.png (up to compression)
        path = labels[view].index[5]
        png = np.asarray(Image.open(project / path), dtype=np.float64)
        diff = np.abs(frames[_frame_index(path)] - png).mean()
        assert diff < 4.0, diff
        assert np.abs(frames[_frame_index(path) + 3] - png).mean() > diff


def test_config_loads(project: Path) -> None:
    config = load_config(project / "config.yaml")
    data = config.data
    assert data.view_names == VIEWS
    assert data.keypoint_names == list(KEYPOINT_NAMES) and data.num_keypoints == 10
    assert data.image_resize_dims.height == data.image_resize_dims.width == 128
    root = Path(config.config_dir) / data.data_dir
    assert root.resolve() == project.resolve()
    assert [(root / f).is_file() for f in data.csv_file] == [True] * len(VIEWS)
    assert (root / data.video_dir).is_dir() and (root / data.calibration_file).is_file()
    assert config.lightning_pose["model.backbone_pretrained"] is False
    assert config.training.max_epochs < min(
        config.training.lr_scheduler_params.multisteplr.milestones
    )
