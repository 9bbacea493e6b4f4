"""``mvcore report``: the self-contained HTML page, built from a hand-made model directory (no
training, no browser: ``tests/integration/test_report_browser.py`` opens a real one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from plotly.offline import get_plotlyjs

from mvcore.cli.main import main
from mvcore.data.csv_io import read_keypoints_csv, write_3d_csv, write_keypoints_csv
from mvcore.errors import DataError
from mvcore.predict import html_report
from mvcore.predict.html_report import write_html_report

VIEWS = ["top", "side"]
KEYPOINTS = ["nose", "neck", "tail"]
_FIGURE = re.compile(r'Plotly\.newPlot\("(figure-\d+)", (.*?)\);</script>')


def _model_dir(root: Path, skeleton: list[list[str]] | None = None) -> Path:
    """config.yaml and context.json only: the least a model directory has."""
    model = root / "model"
    model.mkdir(parents=True)
    data = {"data_dir": str(root / "moved_away"), "view_names": VIEWS,
            "keypoint_names": KEYPOINTS}
    if skeleton is not None:
        data["skeleton"] = skeleton
    (model / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    (model / "context.json").write_text(json.dumps(
        {"view_names": VIEWS, "keypoint_names": KEYPOINTS, "image_height": 64,
         "image_width": 64}))
    return model


def _session(folder: Path, name: str, frames: int, with_3d: bool = True) -> np.ndarray:
    """Per-view CSVs (and a 3D CSV) of a session whose frame 7 has the largest
    reprojection error; returns the 3D points ``(T, K, 3)``."""
    rng = np.random.default_rng(0)
    points = np.cumsum(rng.normal(size=(frames, len(KEYPOINTS), 3)), axis=0)
    for view in VIEWS:
        write_keypoints_csv(folder / f"{name}_{view}.csv", list(range(frames)), KEYPOINTS,
                            rng.uniform(0, 64, (frames, len(KEYPOINTS), 2)),
                            rng.uniform(0, 1, (frames, len(KEYPOINTS))))
    if with_3d:
        errors = rng.uniform(0, 2, (frames, len(KEYPOINTS)))
        errors[7] = [30.0, 50.0, 40.0]
        write_3d_csv(folder / f"{name}_3d.csv", points, errors,
                     np.full((frames, len(KEYPOINTS)), 2), KEYPOINTS)
    return points


def _figures(page: str) -> dict[str, dict]:
    """Every figure of the page: its div id -> plotly's JSON (data, layout, frames)."""
    return {div: json.loads(text) for div, text in _FIGURE.findall(page)}


def _full_model_dir(tmp_path: Path) -> Path:
    """Every part of a model directory, but its project's labels moved away."""
    model = _model_dir(tmp_path)
    pd.DataFrame({"metric": ["test_pixel_error_mean"], "value": [3.25]}).to_csv(
        model / "metrics.csv", index=False)
    (model / "logs").mkdir()
    pd.DataFrame({"step": [0, 1, 2, 2], "epoch": [0, 0, 0, 0],
                  "train_loss": [1.0, 0.5, 0.25, np.nan],
                  "val_pixel_error": [np.nan, np.nan, np.nan, 9.0]}).to_csv(
        model / "logs" / "metrics.csv", index=False)
    (model / "labeled_frames").mkdir()
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (8, 8), "red").save(model / "labeled_frames" / "labeled_frame_00001.png")
    preds = model / "video_preds"
    preds.mkdir()
    _session(preds, "long", 1000)
    _session(preds, "flat", 12, with_3d=False)
    (preds / "broken_top.incomplete.csv").write_text("cut short")
    return model


def test_page_shows_every_part_and_is_self_contained(tmp_path):
    model = _full_model_dir(tmp_path)
    path = write_html_report(model, progress=False)
    assert path == model / "report.html"
    page = path.read_text()
    # offline: plotly.js once, no external script, stylesheet or image
    assert page.count(get_plotlyjs()[:200]) == 1
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page)
    assert 'src="data:image/png;base64,' in page
    assert "3.2500" in page  # metrics.csv
    # the project's labels are gone: said, not an error
    assert re.search(r"Not available: [^<]*moved_away", page)
    figures = _figures(page)
    # loss curves, then per session: 3D pose, disagreement, traces (the 2D-only one: traces)
    assert len(figures) == 1 + 3 + 1
    loss = next(iter(figures.values()))
    assert [t["name"] for t in loss["data"]] == ["train_loss", "val_pixel_error"]
    assert loss["data"][0]["y"] == [1.0, 0.5, 0.25]
    pose = next(f for f in figures.values() if "frames" in f)
    frame_names = [int(f["name"]) for f in pose["frames"]]
    # subsampled to MAX_ANIMATION_FRAMES, the worst frames kept, and the page says so
    assert len(frame_names) <= html_report.MAX_ANIMATION_FRAMES + html_report.WORST_FRAMES
    assert 7 in frame_names and frame_names == sorted(frame_names)
    assert f"{len(frame_names)} of 1000 frames" in page
    assert [s["label"] for s in pose["layout"]["sliders"][0]["steps"]] == \
        [str(t) for t in frame_names]
    (points,) = pose["frames"][1]["data"]  # no skeleton in the config: points only
    assert points["text"] == KEYPOINTS and points["mode"] == "markers"
    assert points["z"] == pytest.approx(
        pd.read_csv(model / "video_preds" / "long_3d.csv").loc[frame_names[1], [
            f"{k}_z" for k in KEYPOINTS]].to_numpy(float), abs=0.005)
    assert "points only (the config has no <code>data.skeleton</code>)" in page
    # the frame where the views disagree most heads its table
    assert re.search(r"<tr><td>7</td><td>40.00</td><td>neck</td><td>50.00</td>", page)
    assert "session flat" in page and "No 3D CSV for this session" in page
    assert "session broken: its prediction stopped part-way" in page


def test_skeleton_edges_from_the_config(tmp_path):
    model = _model_dir(tmp_path, skeleton=[["nose", "neck"], ["neck", "tail"], ["neck", "ear"]])
    (model / "video_preds").mkdir()
    points = _session(model / "video_preds", "s1", 9)
    page = write_html_report(model, progress=False).read_text()
    pose = next(f for f in _figures(page).values() if "frames" in f)
    assert len(pose["frames"]) == 9 and "All 9 frames." in page
    _, lines = pose["frames"][3]["data"]
    # nose-neck, neck-tail, each ended by a gap; the edge to an unknown keypoint is left out
    assert lines["mode"] == "lines" and len(lines["x"]) == 2 * 3
    assert lines["x"][:3] == pytest.approx([points[3, 0, 0], points[3, 1, 0], None], abs=0.005)
    assert "skeleton edges from <code>data.skeleton</code>" in page


def test_traces_follow_the_csvs(tmp_path):
    model = _model_dir(tmp_path)
    (model / "video_preds").mkdir()
    _session(model / "video_preds", "s1", 12, with_3d=False)
    page = write_html_report(model, progress=False).read_text()
    (traces,) = _figures(page).values()
    _, _, coords, _ = read_keypoints_csv(model / "video_preds" / "s1_side.csv")
    _, _, _, likelihood = read_keypoints_csv(model / "video_preds" / "s1_top.csv")
    # order: keypoint, view, then x / y / likelihood rows; keypoint 0 visible at first
    x_side_neck = traces["data"][(1 * len(VIEWS) + 1) * 3]
    assert x_side_neck["name"] == "side" and x_side_neck["visible"] is False
    assert x_side_neck["y"] == pytest.approx(coords[:, 1, 0], abs=0.05)
    likelihood_top_nose = traces["data"][2]
    assert likelihood_top_nose["visible"] is True
    assert likelihood_top_nose["y"] == pytest.approx(likelihood[:, 0], abs=5e-4)
    menu = traces["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in menu] == KEYPOINTS
    assert sum(menu[2]["args"][0]["visible"]) == len(VIEWS) * 3
    assert "Every frame." in page


def test_missing_parts_are_stated(tmp_path):
    model = _model_dir(tmp_path)
    page = write_html_report(model, progress=False).read_text()
    assert "No videos predicted: run <code>mvcore predict" in page
    assert "No <code>metrics.csv</code>" in page
    assert "No training log" in page
    assert "No labelled-frame figures" in page
    assert not _figures(page)


def test_out_file_and_atomic_write(tmp_path):
    model = _model_dir(tmp_path)
    out = tmp_path / "pages" / "m.html"
    assert write_html_report(model, out=out, progress=False) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.html"]  # no partial file
    assert not (model / "report.html").exists()
    with pytest.raises(DataError, match="is a folder"):
        write_html_report(model, out=tmp_path, progress=False)


def test_cli_writes_the_page_and_refuses_other_folders(tmp_path, capsys):
    model = _model_dir(tmp_path)
    assert main(["report", str(model)]) == 0
    assert f"wrote {model / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not a model directory (no config.yaml or context.json)" in err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
