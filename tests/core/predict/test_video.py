"""Video prediction: 3D, the 3D CSV, end to end, skip (sessions:
``tests/core/data/test_sessions.py``; decoding: ``test_decoding.py``; drawing:
``test_rendering.py``; complete-or-absent outputs, locks and failures: ``test_outputs.py``).
The ``model_dir`` fixture is in ``conftest.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from predict_models import circle_rig as _rig

from mvcore.data.csv_io import read_keypoints_csv, write_3d_csv
from mvcore.data.triangulate import triangulate_predictions
from mvcore.errors import MvcoreError
from mvcore.geometry import project_points
from mvcore.predict import video as vid
from mvcore.predict.model_io import load_model


# ------------------------------------------------------------------------------------- 3D
@pytest.fixture
def rig_points():
    group = _rig()
    cams = group.to_tensors(dtype=torch.float64)
    truth = torch.as_tensor(np.random.default_rng(1).uniform(-60, 60, (5, 3, 3)))  # (T, K, 3)
    uv = project_points(truth, cams.intrinsics, cams.extrinsics, cams.distortions)  # (T,V,K,2)
    return cams, truth.numpy(), uv.numpy()


def test_triangulation_drops_views_below_the_threshold(rig_points):
    cams, truth, uv = rig_points
    conf = np.full(uv.shape[:-1], 0.9)
    uv = uv.copy()
    uv[:, 0, 0] += 40.0        # view 0 of keypoint 0 is wrong ...
    conf[:, 0, 0] = 0.2        # ... and unsure: it must be left out
    conf[:, 1:, 2] = 0.1       # keypoint 2: only one confident view -> no 3D point
    out = triangulate_predictions(uv, cams, conf, threshold=0.5)
    np.testing.assert_allclose(out.points[:, :2], truth[:, :2], atol=1e-6)
    assert np.isnan(out.points[:, 2]).all()
    assert out.ncams[:, 0].tolist() == [3] * 5 and out.ncams[:, 1].tolist() == [4] * 5
    assert (out.ncams[:, 2] == 0).all() and np.isnan(out.errors[:, 2]).all()
    assert np.nanmax(out.errors) < 1e-6
    np.testing.assert_allclose(out.scores[:, :2], 0.9)
    assert np.isnan(out.view_errors[:, 0, 0]).all()  # unused view: no error reported
    everything = triangulate_predictions(uv, cams, conf, threshold=0.0)
    assert (everything.ncams == 4).all()
    assert (everything.errors[:, 0] > 1.0).all()  # the bad view now pulls the point off
    np.testing.assert_allclose(everything.scores[:, 0], 0.2)  # anipose: lowest used conf


def test_confidence_weights_favour_sure_views(rig_points):
    cams, truth, uv = rig_points
    noisy = uv + np.random.default_rng(2).normal(0, 3.0, uv.shape) * np.array([1, 0, 0, 0])[
        None, :, None, None]  # only view 0 is noisy
    conf = np.ones(uv.shape[:-1])
    equal = triangulate_predictions(noisy, cams, conf, threshold=0.0).points
    conf[:, 0] = 0.05
    weighted = triangulate_predictions(noisy, cams, conf, threshold=0.0).points
    assert np.linalg.norm(weighted - truth, axis=-1).mean() < \
        0.5 * np.linalg.norm(equal - truth, axis=-1).mean()


def test_anipose_csv_round_trips_and_loads_in_movement(tmp_path, rig_points):
    import pandas as pd

    cams, truth, uv = rig_points
    out = triangulate_predictions(uv, cams, np.full(uv.shape[:-1], 0.8))
    names = ["nose", "ear_left", "tail_tip"]
    path = tmp_path / "s_3d.csv"
    write_3d_csv(path, out.points, out.errors, out.ncams, names, scores=out.scores)
    table = pd.read_csv(path)
    assert list(table.columns[:6]) == ["nose_x", "nose_y", "nose_z", "nose_error", "nose_ncams",
                                       "nose_score"]
    assert list(table.columns[-13:]) == [f"M_{i}{j}" for i in range(3) for j in range(3)] + \
        [f"center_{i}" for i in range(3)] + ["fnum"]
    np.testing.assert_allclose(table[["ear_left_x", "ear_left_y", "ear_left_z"]], truth[:, 1])
    load_poses = pytest.importorskip("movement.io.load_poses",
                                     reason="movement is not installed")
    ds = load_poses.from_anipose_file(path)
    position = ds.position.sel(individuals=ds.individuals[0])  # (time, space, keypoints)
    np.testing.assert_allclose(position.sel(keypoints="tail_tip").values, truth[:, 2])
    np.testing.assert_allclose(ds.confidence.sel(keypoints="nose").values[:, 0], 0.8)


# ---------------------------------------------------------------------------- end to end
def test_predict_videos_writes_2d_and_3d_and_skips_up_to_date_sessions(model_dir, tmp_path):
    messages: list[str] = []
    results = vid.predict_videos(model_dir, batch_size=4, confidence_threshold=0.0,
                                 progress=False, log=messages.append)
    assert [r.status for r in results] == ["predicted"]
    out = model_dir / "video_preds"
    index, names, coords, likelihood = read_keypoints_csv(out / "s1_c2.csv")
    assert index == [str(i) for i in range(9)] and names == ["a", "b", "c"]
    assert coords.shape == (9, 3, 2) and likelihood.shape == (9, 3)
    assert ((coords >= -0.5) & (coords <= [63.5, 47.5])).all()  # frame pixels of 64x48 frames

    # the 3D file is the confidence-weighted triangulation of the 2D files
    import pandas as pd

    two_d = np.stack([read_keypoints_csv(out / f"s1_c{v}.csv")[2] for v in range(4)], 1)
    conf = np.stack([read_keypoints_csv(out / f"s1_c{v}.csv")[3] for v in range(4)], 1)
    expected = triangulate_predictions(two_d, _rig().to_tensors(dtype=torch.float64), conf,
                                       threshold=0.0)
    table = pd.read_csv(out / "s1_3d.csv")
    np.testing.assert_allclose(table[["b_x", "b_y", "b_z"]].to_numpy(), expected.points[:, 1],
                               rtol=1e-4, atol=1e-3)
    assert (table["b_ncams"] == expected.ncams[:, 1]).all()
    assert table["fnum"].tolist() == list(range(9))

    # batching does not change the predictions
    again = vid.predict_videos(model_dir, out_dir=tmp_path / "b1", batch_size=1,
                               confidence_threshold=0.0, progress=False, log=messages.append)
    assert again[0].status == "predicted"
    np.testing.assert_allclose(read_keypoints_csv(tmp_path / "b1" / "s1_c2.csv")[2], coords,
                               atol=1e-4)

    def status(**options) -> str:
        (result,) = vid.predict_videos(model_dir, confidence_threshold=0.0, progress=False,
                                       log=messages.append, **options)
        return result.status

    assert status() == "skipped" and "skipped session s1" in messages[-1]
    assert status(batch_size=3) == "skipped"  # the batch size is not a setting
    video = model_dir.parent / "project" / "videos" / "s1_c1.mp4"
    os.utime(video, None)  # a touched video: the outputs may be stale
    assert status() == "predicted" and messages[-2] == \
        "predicting session s1 again: s1_c1.mp4 changed since its outputs were written"
    assert status() == "skipped"
    assert status(overwrite=True) == "predicted"
    assert vid.predict_videos(model_dir, progress=False, log=messages.append)[0].status == \
        "predicted"  # another confidence threshold
    assert "confidence_threshold was 0.0, now 0.5" in messages[-2]


def test_load_model_errors_name_what_is_missing(model_dir, tmp_path):
    module, config = load_model(model_dir, device="cpu")
    assert not module.training and config.model.model_type == "tiny_conv"
    with pytest.raises(MvcoreError, match="model directory not found"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(MvcoreError, match="last.ckpt not found"):
        load_model(model_dir, checkpoint="last")
    (model_dir / "context.json").unlink()
    with pytest.raises(MvcoreError, match="no context.json"):
        load_model(model_dir)
    (model_dir / "config.yaml").unlink()
    with pytest.raises(MvcoreError, match="no config.yaml"):
        load_model(model_dir)


def test_without_calibration_only_2d_is_written(model_dir, tmp_path):
    calibration = model_dir.parent / "project" / "calibration.toml"
    moved = calibration.rename(tmp_path / "rig.toml")
    messages: list[str] = []
    (result,) = vid.predict_videos(model_dir, out_dir=tmp_path / "2d", progress=False,
                                   log=messages.append)
    assert result.calibration is None and any("2D predictions only" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "2d").iterdir()) == [
        ".mvcore", ".mvcore.lock", *(f"s1_c{v}.csv" for v in range(4))]
    (result,) = vid.predict_videos(model_dir, out_dir=tmp_path / "3d", calibration=moved,
                                   progress=False, log=messages.append)
    assert result.calibration == moved and (tmp_path / "3d" / "s1_3d.csv").is_file()


def test_calibration_of_another_frame_size_is_flagged(model_dir, tmp_path):
    from mvcore.geometry import load_calibration, save_calibration

    rig = load_calibration(model_dir.parent / "project" / "calibration.toml")
    rig.sizes[2] = [640, 480]
    save_calibration(rig, tmp_path / "other.toml")
    with pytest.warns(UserWarning, match=r"camera 'c2' is \[640, 480\] \(w, h\) but the video"):
        vid.predict_videos(model_dir, out_dir=tmp_path / "out", calibration=tmp_path /
                           "other.toml", progress=False, log=lambda _: None)


def test_a_camera_turned_around_is_named_and_left_out(model_dir, tmp_path):
    from mvcore.geometry import load_calibration, matrix_to_rodrigues_np, save_calibration

    rig = load_calibration(model_dir.parent / "project" / "calibration.toml")
    flip = np.diag([-1.0, 1.0, -1.0])
    rig.rotations[2] = matrix_to_rodrigues_np(flip @ rig.rotation_matrices()[2])
    rig.translations[2] = flip @ rig.translations[2]
    save_calibration(rig, tmp_path / "turned.toml")
    with pytest.warns(UserWarning, match=r"camera 'c2' saw \d+ predicted points from behind"):
        vid.predict_videos(model_dir, out_dir=tmp_path / "out", calibration=tmp_path /
                           "turned.toml", confidence_threshold=0.0, progress=False,
                           log=lambda _: None)
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "s1_3d.csv")
    assert table[["a_ncams", "b_ncams", "c_ncams"]].to_numpy().max() <= 3  # c2 never used
