"""``mvcore evaluate``: pixel error, PCK, reprojection and 3D error against known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mvcore.config.load import load_config
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.project import MultiviewProject
from mvcore.errors import DataError
from mvcore.example import make_example_project
from mvcore.predict.evaluate import evaluate_model, format_report, frame_numbers, pck


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, MultiviewProject]:
    config_path = make_example_project(tmp_path_factory.mktemp("eval") / "proj", seed=0,
                                       num_frames=24, image_size=64, label_every=2)
    return config_path, MultiviewProject.from_config(load_config(config_path))


def _model_dir(tmp_path: Path, config_path: Path) -> Path:
    """A model directory as `mvcore train` writes it (only config.yaml is needed here)."""
    raw = yaml.safe_load(config_path.read_text())
    raw["data"]["data_dir"] = str(config_path.parent)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.yaml").write_text(yaml.safe_dump(raw))
    return model


def _write_predictions(model: Path, project: MultiviewProject, frame_xy: np.ndarray,
                       sets: list[str], confidence: float = 0.9) -> None:
    """``predictions_<view>.csv`` from frame-pixel predictions ``(n, V, K, 2)`` (whole-image
    bboxes: labelled-image pixels = frame pixels)."""
    for v, view in enumerate(project.view_names):
        write_keypoints_csv(model / f"predictions_{view}.csv",
                            [row[v] for row in project.image_paths], project.keypoint_names,
                            frame_xy[:, v], np.full(frame_xy.shape[:1] + frame_xy.shape[2:3],
                                                    confidence),
                            extra_columns={"set": sets})


def _filled_labels(project: MultiviewProject) -> np.ndarray:
    """Every point's exact projection of the ground-truth 3D keypoint ``(n, V, K, 2)``: equal
    to the labels where labelled, and a prediction for the unlabelled points too."""
    import torch

    from mvcore.geometry import project_points
    from mvcore.predict.evaluate import read_ground_truth_3d

    truth = read_ground_truth_3d(project.root / "ground_truth_3d.csv", project.keypoint_names)
    frames = frame_numbers([row[0] for row in project.image_paths])
    points = torch.as_tensor(np.stack([truth[f] for f in frames]))
    cams = project.row_cameras()
    uv = project_points(points, cams.intrinsics, cams.extrinsics, cams.distortions).numpy()
    labelled = np.isfinite(project.keypoints)
    np.testing.assert_allclose(uv[labelled], project.keypoints[labelled], atol=1e-6)
    return uv


def test_pck_counts_missing_predictions_as_misses():
    errors = np.array([1.0, 4.0, 6.0, np.nan, np.nan])
    labelled = np.array([True, True, True, True, False])
    assert pck(errors, labelled, 5.0) == pytest.approx(2 / 4)
    assert pck(errors, labelled, np.array([0.5, 0.5, 10, 10, 10])) == pytest.approx(1 / 4)
    assert np.isnan(pck(errors, np.zeros(5, bool), 5.0))


def test_frame_numbers_come_from_the_end_of_the_file_name():
    paths = ["labeled-data/s_cam/img0042.png", "a\\b\\frame_7.jpg", "x/notes.png"]
    assert frame_numbers(paths).tolist() == [42, 7, -1]


def test_exact_predictions_score_perfectly(example, tmp_path):
    config_path, project = example
    model = _model_dir(tmp_path, config_path)
    n = len(project)
    sets = ["train"] * (n - 4) + ["test"] * 4
    _write_predictions(model, project, _filled_labels(project), sets)
    result = evaluate_model(model)
    s = result.summary
    assert s["test_pixel_error_mean"] == pytest.approx(0.0, abs=1e-6)
    assert s["all_pck@5px"] == 1.0 and s["all_pck@0.05diag"] == 1.0
    assert s["all_prediction_reprojection_error_median"] == pytest.approx(0.0, abs=1e-4)
    assert s["all_fraction_triangulated"] == 1.0
    # 3D ground truth: frames found from img<NNNN>, predictions and labels both exact
    assert s["all_3d_error_mean"] == pytest.approx(0.0, abs=1e-3)
    assert s["all_3d_error_of_labels_mean"] == pytest.approx(0.0, abs=1e-3)
    assert result.main_split == "test"
    for name in ("pixel_error", "pck", "prediction_reprojection_error", "error_3d", "summary"):
        assert (model / "eval" / f"{name}.csv").is_file()
    reprojection = pd.read_csv(model / "eval" / "prediction_reprojection_error.csv")
    assert (reprojection["behind_camera"] == 0).all()  # a correct rig sees nothing from behind
    text = format_report(result)
    assert "test split" in text and "tail_tip" in text and "cam_b" in text


def test_known_offsets_give_known_errors(example, tmp_path):
    config_path, project = example
    model = _model_dir(tmp_path, config_path)
    pred = _filled_labels(project).copy()
    offsets = np.array([3.0, 8.0, 30.0])  # px, in x, per view
    pred[..., 0] += offsets[None, :, None]
    pred[0, 0] = np.nan  # row 0, view 0: no prediction -> misses in PCK, not in the error
    _write_predictions(model, project, pred, ["validation"] * len(project))
    result = evaluate_model(model)
    table = result.pixel_error.set_index(["split", "view", "keypoint"])
    for view, offset in zip(project.view_names, offsets):
        assert table.loc[("validation", view, "all"), "mean"] == pytest.approx(offset)
        assert table.loc[("validation", view, "nose"), "median"] == pytest.approx(offset)
    labelled = np.isfinite(project.keypoints).all(-1)
    assert table.loc[("validation", "cam_a", "all"), "n"] == labelled[1:, 0].sum()
    pck_table = result.pck.set_index(["split", "view", "threshold"])["pck"]
    # cam_a: 3 px is within 5 px and within 5% of the 64x64 diagonal (4.5 px), except row 0
    hit_a = labelled[1:, 0].sum() / labelled[:, 0].sum()
    assert pck_table[("validation", "cam_a", "5px")] == pytest.approx(hit_a)
    assert pck_table[("validation", "cam_a", "0.05diag")] == pytest.approx(hit_a)
    assert pck_table[("validation", "cam_b", "5px")] == 0.0
    assert pck_table[("validation", "cam_b", "10px")] == 1.0
    assert pck_table[("validation", "cam_c", "20px")] == 0.0
    # inconsistent views: the triangulation cannot agree with all of them
    assert result.summary["validation_prediction_reprojection_error_median"] > 1.0
    assert result.summary["validation_3d_error_mean"] > 1.0
    assert result.summary["validation_3d_error_of_labels_mean"] == pytest.approx(0.0, abs=1e-3)


def test_low_confidence_views_are_left_out_of_3d(example, tmp_path):
    config_path, project = example
    model = _model_dir(tmp_path, config_path)
    _write_predictions(model, project, _filled_labels(project), ["test"] * len(project), 0.3)
    assert evaluate_model(model).summary["all_fraction_triangulated"] == 0.0
    everything = evaluate_model(model, confidence_threshold=0.0).summary
    assert everything["all_fraction_triangulated"] == 1.0


def test_explicit_csvs_and_errors(example, tmp_path):
    config_path, project = example
    model = _model_dir(tmp_path, config_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    _write_predictions(other, project, _filled_labels(project), ["test"] * len(project))
    with pytest.raises(DataError, match="no labelled-frame predictions"):
        evaluate_model(model)
    files = [other / f"predictions_{v}.csv" for v in project.view_names]
    result = evaluate_model(model, csv_files=files, out_dir=tmp_path / "out")
    assert result.summary["test_pixel_error_mean"] == pytest.approx(0.0, abs=1e-6)
    assert pd.read_csv(tmp_path / "out" / "summary.csv").shape[1] == 2
    with pytest.raises(DataError, match="one prediction CSV per view"):
        evaluate_model(model, csv_files=files[:2])


@pytest.mark.parametrize("confidence", [0.9, 0.3])
def test_training_report_and_evaluate_report_one_reprojection_error(example, tmp_path,
                                                                    confidence):
    from mvcore.predict.labeled import summarise
    from mvcore.predict.report import _reprojection_errors

    config_path, project = example
    predictions = _filled_labels(project)
    predictions[:, 0] += np.random.default_rng(4).normal(0, 2.0, predictions[:, 0].shape)
    sets = ["test"] * len(project)
    model = _model_dir(tmp_path, config_path)
    _write_predictions(model, project, predictions, sets, confidence=confidence)
    evaluated = evaluate_model(model).summary
    errors, ncams = _reprojection_errors(project, {
        "keypoints": predictions, "index": np.arange(len(project)),
        "confidences": np.full(predictions.shape[:-1], confidence)})
    reported = summarise(errors, sets, name="prediction_reprojection_error", with_mean=False)
    assert evaluated["test_fraction_triangulated"] == float((ncams >= 2).mean())
    if confidence < 0.5:  # no view is confident enough: nothing to triangulate, no error
        assert evaluated["test_fraction_triangulated"] == 0.0
        assert np.isnan(reported["test_prediction_reprojection_error_median"])
        assert np.isnan(evaluated["test_prediction_reprojection_error_median"])
    else:
        value = reported["test_prediction_reprojection_error_median"]
        assert value == pytest.approx(evaluated["test_prediction_reprojection_error_median"])
        assert value > 0.5  # the noisy view disagrees with the others


def test_output_folder_errors_busy_folders_and_stale_tables(example, tmp_path, capsys):
    from mvcore.cli.main import main
    from mvcore.files import DirectoryLock

    config_path, project = example
    model = _model_dir(tmp_path, config_path)
    _write_predictions(model, project, _filled_labels(project), ["test"] * len(project))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["evaluate", str(model), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {a_file} is a file, not a folder; give a folder path\n"
    with DirectoryLock(model / "eval", "evaluate"):  # another mvcore evaluate writes there
        assert main(["evaluate", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {model / 'eval'} is in use by mvcore evaluate (pid ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in (model / "eval").iterdir()) == [".mvcore.lock"]
    (model / "eval" / "error_3d.csv").write_text("of an earlier evaluation")
    assert main(["evaluate", str(model), "--gt-3d", str(tmp_path / "none.csv")]) == 0
    # no ground truth this time: the earlier 3D table goes, the folder is one evaluation
    assert sorted(p.name for p in (model / "eval").iterdir()) == [
        ".mvcore.lock", "pck.csv", "pixel_error.csv", "prediction_reprojection_error.csv",
        "summary.csv"]
