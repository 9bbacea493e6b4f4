"""`mvcore predict` the example's videos with the shared trained model, and `mvcore evaluate`.

The outputs must open in the ecosystem's tools (movement's DeepLabCut and anipose loaders),
and the labelled videos must show the predicted points in their keypoint colours.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml
from shared_model import FRAMES

from mvcore.cli import main as cli
from mvcore.cli.commands import evaluate_cmd, predict_cmd
from mvcore.data.csv_io import read_keypoints_csv

pytestmark = pytest.mark.slow

VIEWS = ["cam_a", "cam_b", "cam_c"]


@pytest.fixture(scope="module")
def model_dir(trained_example) -> Path:
    """A copy of the shared trained model (this module rewrites its config.yaml)."""
    copy = trained_example.parent / "model_for_prediction"
    shutil.copytree(trained_example, copy)
    # training-time weights sources must not matter for prediction (the checkpoint has all)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    saved["model"].update(backbone_pretrained=True, backbone_checkpoint="moved_away.pth")
    (copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return copy


def _cli(monkeypatch, argv: list[str]) -> int:
    """Run `mvcore ...` in-process with the predict/evaluate commands registered."""
    commands = tuple(cli.CORE_COMMANDS)
    for module in (predict_cmd, evaluate_cmd):
        if module not in commands:
            commands += (module,)
    monkeypatch.setattr(cli, "CORE_COMMANDS", commands)
    return cli.main(argv)


@pytest.fixture(scope="module")
def predicted(model_dir, tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as monkeypatch:
        code = _cli(monkeypatch, ["predict", str(model_dir), "--labeled-video",
                                  "--batch-size", "8", "--confidence-threshold", "0",
                                  "--video-threshold", "0"])
    assert code == 0
    return model_dir / "video_preds"


def test_outputs_load_in_movement(predicted):
    load_poses = pytest.importorskip("movement.io.load_poses",
                                     reason="movement is not installed")
    for view in VIEWS:
        path = predicted / f"session0_{view}.csv"
        _, names, coords, likelihood = read_keypoints_csv(path)
        ds = load_poses.from_dlc_file(path, fps=30)
        assert ds.position.shape == (FRAMES, 2, len(names), 1)
        assert list(ds.keypoints.values) == names
        np.testing.assert_allclose(ds.time.values, np.arange(FRAMES) / 30)
        np.testing.assert_allclose(ds.position.values[..., 0].transpose(0, 2, 1), coords,
                                   rtol=1e-6)
        np.testing.assert_allclose(ds.confidence.values[..., 0], likelihood, rtol=1e-6)
    ds3 = load_poses.from_anipose_file(predicted / "session0_3d.csv")
    assert ds3.position.shape == (FRAMES, 3, len(names), 1)
    assert np.isfinite(ds3.position.values).all()  # threshold 0: every view is used
    table = pd.read_csv(predicted / "session0_3d.csv")
    assert (table[[f"{kp}_ncams" for kp in names]] == 3).all().all()
    assert table["fnum"].tolist() == list(range(FRAMES))


def test_labelled_video_shows_markers_in_keypoint_colours(predicted, model_dir):
    from mvcore.predict.rendering import draw_markers, keypoint_colors, marker_radius

    view, t = "cam_b", 17
    _, names, coords, _ = read_keypoints_csv(predicted / f"session0_{view}.csv")
    colors = keypoint_colors("cool", len(names)).astype(float)
    labelled = _frame(predicted / "labeled_videos" / f"session0_{view}_labeled.mp4", t)
    original = _frame(model_dir.parent / "proj" / "videos" / f"session0_{view}.mp4", t)
    assert _frame_count(predicted / "labeled_videos" / f"session0_{view}_labeled.mp4") == FRAMES
    radius = marker_radius(*labelled.shape[:2])
    centres = np.rint(coords[t]).astype(int)  # (K, 2) x, y
    checked = 0
    for k in range(len(names)):
        later = centres[k + 1:]
        if len(later) and (np.abs(later - centres[k]).max(1) <= 2 * radius + 1).any():
            continue  # covered by a later keypoint's marker
        x, y = centres[k]
        if not (radius <= x < labelled.shape[1] - radius and radius <= y < labelled.shape[0]
                - radius):
            continue
        patch = labelled[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0)
        assert np.abs(patch - colors[k]).max() < 40, (names[k], patch, colors[k])
        disc = np.s_[y - radius:y + radius + 1, x - radius:x + radius + 1]
        assert np.abs(labelled[disc].astype(float) - original[disc]).mean() > 10
        checked += 1
    assert checked >= 1  # the last keypoint is always on top
    # all markers: the labelled frame is the original frame with these markers drawn
    expected = draw_markers(original.copy()[None], coords[t][None], np.ones((1, len(names)),
                            bool), colors.astype(np.uint8), radius)[0]
    marked = (expected != original).any(-1)
    assert marked.sum() > len(names) * radius**2
    error = np.abs(labelled.astype(float) - expected)[marked].mean()
    change = np.abs(expected.astype(float) - original)[marked].mean()
    assert error < 0.4 * change, (error, change)  # yuv420p halves the chroma resolution
    # and everywhere else it is this view's own frame (not another view's)
    others = [_frame(model_dir.parent / "proj" / "videos" / f"session0_{v}.mp4", t)
              for v in VIEWS if v != view]
    rest = ~marked
    own = np.abs(labelled.astype(float) - original)[rest].mean()
    assert all(own < 0.2 * np.abs(labelled.astype(float) - o)[rest].mean() for o in others)


def _frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} has fewer than {index + 1} frames")


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_second_run_skips_and_evaluate_agrees_with_training(predicted, model_dir,
                                                           monkeypatch, capsys):
    # same settings, no labelled videos asked for: the manifest (written with them) matches
    assert _cli(monkeypatch, ["predict", str(model_dir), "--confidence-threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert "skipped session session0" in out
    assert out.strip().splitlines()[-1] == (  # the summary: where, and what next
        f"0 session(s) predicted, 1 skipped; CSVs in {predicted} (<session>_<view>.csv, "
        f"<session>_3d.csv); next: mvcore report {model_dir}")
    assert (predicted / ".mvcore" / "session0.json").is_file()
    assert _cli(monkeypatch, ["evaluate", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert "mean pixel error" in text and "tail_tip" in text
    last = text.strip().splitlines()[-1]
    assert re.match(r"evaluated \((test|validation|train|all) split\): pixel error mean "
                    r"[\d.]+ px, median [\d.]+ px", last) and last.endswith(
        f"; tables in {model_dir / 'eval'} (summary.csv); next: mvcore report {model_dir}")
    summary = pd.read_csv(model_dir / "eval" / "summary.csv").set_index("metric")["value"]
    trained = pd.read_csv(model_dir / "metrics.csv").set_index("metric")["value"]
    for split in ("train", "validation"):
        assert summary[f"{split}_pixel_error_mean"] == pytest.approx(
            trained[f"{split}_pixel_error_mean"], rel=1e-5)
