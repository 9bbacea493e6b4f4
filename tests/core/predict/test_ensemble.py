"""Ensembles of models and the multi-camera Ensemble Kalman Smoother (mvcore.predict.ensemble).

The smoother (the ``ensemble-kalman-smoother`` package, jax) runs once in this module, in the
module-scoped ``smoothed`` fixture, on the example project's rig and motion with three noisy
"models"; the pipeline tests use tiny untrained model directories and a stand-in smoother."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from predict_models import KEYPOINTS, VIEWS, use_tiny_components

import mvcore.predict.ensemble as ensemble
from mvcore.cli.main import main
from mvcore.data.csv_io import read_keypoints_csv
from mvcore.errors import ConfigError, DataError
from mvcore.example import KEYPOINT_NAMES
from mvcore.example.rig import make_cameras
from mvcore.example.simulate import simulate_pose
from mvcore.geometry import project_points

FRAMES, MODELS, NOISE = 40, 3, 2.0  # NOISE: px, per model, frame, view, keypoint
NAMES = list(KEYPOINT_NAMES[:4])  # the example's first 4 keypoints: a small, quick smoother


# ------------------------------------------------------------------- exact ensemble values
def test_ensemble_stats_exact_values() -> None:
    keypoints = np.zeros((3, 1, 1, 2, 2))
    keypoints[:, 0, 0, 0] = [[1.0, 10.0], [2.0, 20.0], [6.0, 30.0]]
    keypoints[:, 0, 0, 1] = [[0.0, 0.0], [np.nan, np.nan], [4.0, 8.0]]  # model 1 misses it
    likelihood = np.array([0.9, 0.6, 0.3])[:, None, None, None] * np.ones((3, 1, 1, 2))
    likelihood[1, 0, 0, 1] = np.nan
    stats = ensemble.ensemble_stats(keypoints, likelihood)
    np.testing.assert_allclose(stats.mean[0, 0], [[3.0, 20.0], [2.0, 4.0]])
    np.testing.assert_allclose(stats.likelihood[0, 0], [0.6, 0.6])
    # population variance: ((1-3)^2 + (2-3)^2 + (6-3)^2) / 3, ((10-20)^2 + 0 + 10^2) / 3
    np.testing.assert_allclose(stats.variance[0, 0], [[14 / 3, 200 / 3], [4.0, 16.0]])


def test_ensemble_csv_has_the_exact_values(tmp_path) -> None:
    """The ensemble CSVs: DeepLabCut header, x / y / likelihood read back by mvcore's
    reader, and the variance columns."""
    rng = np.random.default_rng(0)
    keypoints = rng.normal(100, 5, (2, 4, 2, 3, 2))
    likelihood = rng.uniform(0.5, 1.0, (2, 4, 2, 3))
    files = ensemble.write_ensemble_session(tmp_path, "s", keypoints, likelihood, ["l", "r"],
                                            ["a", "b", "c"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == \
        ["ensemble/s_l.csv", "ensemble/s_r.csv"]
    index, names, coords, like = read_keypoints_csv(tmp_path / "ensemble" / "s_r.csv")
    assert names == ["a", "b", "c"] and index == ["0", "1", "2", "3"]
    np.testing.assert_allclose(coords, keypoints[:, :, 1].mean(0))
    np.testing.assert_allclose(like, likelihood[:, :, 1].mean(0))
    table = pd.read_csv(tmp_path / "ensemble" / "s_r.csv", header=[0, 1, 2], index_col=0)
    assert list(table.columns.get_level_values(2)[:5]) == \
        ["x", "y", "likelihood", "x_ens_var", "y_ens_var"]
    np.testing.assert_allclose(table[("mvcore_ensemble", "b", "y_ens_var")],
                               keypoints[:, :, 1, 1, 1].var(0))


# ------------------------------------------------------------------- the smoother, once
@pytest.fixture(scope="module")
def example_truth() -> dict:
    """The example's rig (3 cameras) and motion (``FRAMES`` frames, keypoints ``NAMES``): exact
    2D ``uv (T, V, K, 2)`` and 3D ``points (T, K, 3)``; three "models" = the truth + noise."""
    rng = np.random.default_rng(0)
    group = make_cameras(rng, 3, 256)
    points = simulate_pose(rng, FRAMES, 30)[:, :len(NAMES)]
    cams = group.to_tensors(dtype=torch.float64)
    uv = project_points(torch.as_tensor(points), cams.intrinsics, cams.extrinsics,
                        cams.distortions).numpy()
    noisy = uv[None] + rng.normal(0, NOISE, (MODELS, *uv.shape))
    likelihood = np.full(noisy.shape[:-1], 0.9)
    return {"group": group, "points": points, "uv": uv, "keypoints": noisy,
            "likelihood": likelihood}


@pytest.fixture(scope="module")
def smoothed(example_truth, tmp_path_factory) -> dict:
    """One run of the package's multi-camera smoother (calibrated path) through
    ``write_ensemble_session``: the files it wrote and the folder."""
    pytest.importorskip("eks", reason="the smoother's tests need mvcore[smooth]")
    out = tmp_path_factory.mktemp("eks")
    truth = example_truth
    files = ensemble.write_ensemble_session(
        out, "session0", truth["keypoints"], truth["likelihood"], truth["group"].names,
        NAMES, truth["group"], smooth="eks", threshold=0.0)
    return {"out": out, "files": files}


def _fields(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=[0, 1, 2], index_col=0)


def test_smoother_outputs_shapes_columns_variances(smoothed, example_truth) -> None:
    out, names = smoothed["out"], example_truth["group"].names
    assert sorted(p.relative_to(out).as_posix() for p in smoothed["files"]) == sorted(
        [f"{d}/session0_{v}.csv" for d in ("ensemble", "eks") for v in names]
        + ["ensemble/session0_3d.csv", "eks/session0_3d.csv"])
    for view in names:
        table = _fields(out / "eks" / f"session0_{view}.csv")
        assert table.shape == (FRAMES, len(NAMES) * 9)
        assert list(table.columns.get_level_values(2)[:9]) == [
            "x", "y", "likelihood", "x_ens_mean", "y_ens_mean", "x_ens_var", "y_ens_var",
            "x_posterior_var", "y_posterior_var"]
        posterior = table.xs("x_posterior_var", axis=1, level=2).to_numpy()
        assert np.isfinite(posterior).all() and (posterior > 0).all()
        # its ensemble input is ours: the mean over models
        ours = _fields(out / "ensemble" / f"session0_{view}.csv")
        np.testing.assert_allclose(table.xs("x_ens_mean", axis=1, level=2).to_numpy(),
                                   ours.xs("x", axis=1, level=2).to_numpy(), atol=1e-3)
        _, kps, coords, _ = read_keypoints_csv(out / "eks" / f"session0_{view}.csv")
        assert kps == NAMES and np.isfinite(coords).all()


def _errors_2d(folder: Path, views: list[str], uv: np.ndarray) -> float:
    coords = np.stack([read_keypoints_csv(folder / f"session0_{v}.csv")[2] for v in views], 1)
    return float(np.median(np.linalg.norm(coords - uv, axis=-1)))


def _errors_3d(path: Path, points: np.ndarray) -> float:
    table = pd.read_csv(path)
    pred = np.stack([table[[f"{k}_{a}" for a in "xyz"]].to_numpy() for k in NAMES], 1)
    return float(np.median(np.linalg.norm(pred - points, axis=-1)))


def test_smoothed_trace_is_closer_to_the_truth(smoothed, example_truth) -> None:
    """On noisy traces of the example's motion, the smoothed 2D and the 3D triangulated from
    it are nearer the exact ground truth than the raw ensemble's (measured: 2D 0.84 vs 1.40
    px, 3D 1.84 vs 2.09 mm; most of the 2D gain is the views' agreement on one 3D point)."""
    out, truth = smoothed["out"], example_truth
    views = truth["group"].names
    raw, smooth = (_errors_2d(out / d, views, truth["uv"]) for d in ("ensemble", "eks"))
    assert smooth < 0.75 * raw, (raw, smooth)
    raw3, smooth3 = (_errors_3d(out / d / "session0_3d.csv", truth["points"])
                     for d in ("ensemble", "eks"))
    assert smooth3 < 0.95 * raw3, (raw3, smooth3)
    table = pd.read_csv(out / "eks" / "session0_3d.csv")
    assert len(table) == FRAMES and (table["nose_ncams"] == 3).all()


# ------------------------------------------------------------------- errors
def test_missing_package_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "eks.multicam_smoother", None)
    with pytest.raises(ConfigError) as info:
        ensemble.load_eks()
    message = str(info.value)
    assert "\n" not in message and 'pip install "mvcore[smooth]"' in message
    with pytest.raises(ConfigError, match="ensemble-kalman-smoother"):
        ensemble.predict_ensemble(["nowhere"], "out", smooth="eks")


def _second_model(first: Path, root: Path, seed: int = 1) -> Path:
    """A copy of ``first`` with other weights (the same videos)."""
    other = root / f"model{seed}"
    shutil.copytree(first, other)
    ckpt = other / "checkpoints" / "best.ckpt"
    state = torch.load(ckpt, weights_only=False)
    generator = torch.Generator().manual_seed(seed)
    for value in state["state_dict"].values():
        if value.is_floating_point():
            value += 0.05 * torch.randn(value.shape, generator=generator)
    torch.save(state, ckpt)
    return other


def _edit_config(model: Path, key: str, value: list) -> None:
    config = yaml.safe_load((model / "config.yaml").read_text())
    config["data"][key] = value
    (model / "config.yaml").write_text(yaml.safe_dump(config))
    context = json.loads((model / "context.json").read_text())
    context[key] = value
    (model / "context.json").write_text(json.dumps(context))


@pytest.mark.parametrize(("key", "value", "noun"), [
    ("keypoint_names", ["a", "b", "z"], "keypoints"),
    ("view_names", ["c0", "c1", "c3", "c2"], "views")])
def test_models_with_other_keypoints_or_views_are_one_line(model_dir, tmp_path, key, value,
                                                           noun) -> None:
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    _edit_config(other, key, value)
    with pytest.raises(DataError) as info:
        ensemble.predict_ensemble([model_dir, other], tmp_path / "out", progress=False,
                                  log=lambda _: None)
    message = str(info.value)
    assert "\n" not in message and noun in message
    assert str(model_dir) in message and str(other) in message
    assert not (tmp_path / "out").exists()  # nothing predicted


# ------------------------------------------------------------------- the pipeline
def _fake_smoother(keypoints, likelihood, view_names, keypoint_names, cameras=None,
                   smooth_param=None):
    stats = ensemble.ensemble_stats(keypoints, likelihood)
    return ensemble.SmoothedPredictions(stats.mean, stats.likelihood, stats.mean,
                                        stats.variance, stats.variance + 1.0,
                                        np.ones(len(keypoint_names)))


def test_predict_ensemble_writes_models_ensemble_smoothed_and_skips(model_dir, tmp_path,
                                                                     monkeypatch) -> None:
    """Each model's ``mvcore predict`` outputs, the ensemble and the smoothed CSVs (a
    stand-in smoother: the real one is tested above), a manifest; a re-run skips, a changed
    model's predictions write the ensemble again."""
    use_tiny_components(monkeypatch)
    monkeypatch.setattr(ensemble, "smooth_eks", _fake_smoother)
    other = _second_model(model_dir, tmp_path)
    out = tmp_path / "out"
    lines: list[str] = []
    run = lambda: ensemble.predict_ensemble(  # noqa: E731
        [model_dir, other], out, smooth="eks", batch_size=4, confidence_threshold=0.0,
        device="cpu", progress=False, log=lines.append)
    results = run()
    assert [r.status for r in results] == ["predicted"]
    for name in ("model", "model1"):
        assert (out / "models" / name / ".mvcore" / "s1.json").is_file()
    singles = np.stack([np.stack([read_keypoints_csv(out / "models" / n / f"s1_{v}.csv")[2]
                                  for v in VIEWS], 1) for n in ("model", "model1")])
    assert not np.allclose(singles[0], singles[1])  # two different models
    mean = np.stack([read_keypoints_csv(out / "ensemble" / f"s1_{v}.csv")[2] for v in VIEWS], 1)
    np.testing.assert_allclose(mean, singles.mean(0), atol=1e-5)
    for folder in ("ensemble", "eks"):
        table = pd.read_csv(out / folder / "s1_3d.csv")
        assert len(table) == 9 and {f"{k}_x" for k in KEYPOINTS} <= set(table.columns)
    posterior = _fields(out / "eks" / "s1_c2.csv").xs("x_posterior_var", axis=1, level=2)
    assert (posterior.to_numpy() >= 1.0).all()
    manifest = json.loads((out / ".mvcore" / "s1.json").read_text())
    assert len(manifest["outputs"]) == 2 * (len(VIEWS) + 1)
    assert manifest["settings"]["smooth"]["method"] == "eks"
    before = (out / "eks" / "s1_c0.csv").stat().st_mtime_ns

    lines.clear()
    assert [r.status for r in run()] == ["skipped"]
    assert any("skipped the ensemble of session s1" in line for line in lines)
    assert (out / "eks" / "s1_c0.csv").stat().st_mtime_ns == before

    (out / "ensemble" / "s1_c1.csv").write_text("cut")  # a damaged output
    lines.clear()
    assert [r.status for r in run()] == ["predicted"]
    assert any("s1_c1.csv is 3 bytes" in line for line in lines)


def test_cli_predicts_an_ensemble_and_says_what_is_missing(model_dir, tmp_path, monkeypatch,
                                                           capsys) -> None:
    """``mvcore predict MODEL_DIR MODEL_DIR --out DIR``: the ensemble; one-line errors for a
    missing --out, --labeled-video, and --smooth eks without the package."""
    use_tiny_components(monkeypatch)
    other = _second_model(model_dir, tmp_path)
    out = tmp_path / "ens"
    cli = ["predict", str(model_dir), str(other), "--batch-size", "4", "--device", "cpu"]
    assert main([*cli, "--out", str(out)]) == 0
    assert "1 session(s) of the ensemble written" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "ensemble").glob("*.csv")) == \
        sorted([f"s1_{v}.csv" for v in VIEWS] + ["s1_3d.csv"])
    assert not (out / "eks").exists()
    for options, expected in [((), "needs --out DIR"),
                              (("--out", str(out), "--labeled-video"), "--labeled-video is not"),
                              (("--out", str(out), "--smooth", "eks"), "mvcore[smooth]")]:
        monkeypatch.setitem(sys.modules, "eks.multicam_smoother", None)
        assert main([*cli, *options]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and expected in error, error
