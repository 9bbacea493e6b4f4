"""mvcore.data.sessions: one way to group videos into sessions and to find a session's
calibration, the same for the labelled project, the unlabelled clips and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from videos import grey_frames, write_video

from mvcore.config.load import load_config
from mvcore.data.datamodule import MultiviewDataModule
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import (
    CalibrationResolver,
    NoCalibration,
    find_sessions,
    prediction_video_dir,
    video_dir,
)
from mvcore.data.unlabeled import UnlabeledClipDataset
from mvcore.data.videos import match_view
from mvcore.errors import DataError
from mvcore.example import make_example_project


@pytest.mark.parametrize(("stem", "expected"), [
    ("s1_top", ("s1", "top")),
    ("s1_mousetop", None),            # LP bug B12: a view name inside a word is no match
    ("top", None),                    # no session part
    ("day_2_cam_a", ("day_2", "cam_a")),
    ("s1_side_top", ("s1_side", "top")),
])
def test_match_view_needs_a_whole_underscore_suffix(stem, expected):
    assert match_view(stem, ["top", "side", "cam_a"]) == expected


def test_match_view_prefers_the_longest_view_name():
    assert match_view("s1_mouse_top", ["top", "mouse_top"]) == ("s1", "mouse_top")


def test_find_sessions_groups_views_in_model_order(tmp_path):
    for name in ("b_top", "b_side", "a_side", "a_top", "a_mousetop", "notes_top.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            write_video(tmp_path / f"{name}.mp4", grey_frames(5))
    sessions = find_sessions(tmp_path, ["top", "side"])
    assert [s.name for s in sessions] == ["a", "b"]
    assert [v.path.name for v in sessions[0].videos] == ["a_top.mp4", "a_side.mp4"]
    assert sessions[0].num_frames == 5 and not sessions[0].truncated
    assert sessions[0].frame_sizes.tolist() == [[32, 32], [32, 32]]
    assert float(sessions[0].fps) == 10.0
    only = find_sessions(tmp_path, ["top", "side"], session="b")
    assert [s.name for s in only] == ["b"]


def test_find_sessions_names_missing_views_and_unsynchronised_counts(tmp_path):
    write_video(tmp_path / "s1_top.mp4", grey_frames(5))
    write_video(tmp_path / "s1_mousetop.mp4", grey_frames(5))  # must not stand in for 'top'
    write_video(tmp_path / "s2_top.mp4", grey_frames(5))
    write_video(tmp_path / "s2_side.mp4", grey_frames(4))
    with pytest.raises(DataError) as info:
        find_sessions(tmp_path, ["top", "side"])
    message = str(info.value)
    assert "session 's1' has no video for view(s) ['side'] (expected s1_side.mp4" in message
    assert "session 's2': views out of sync, frame counts differ (top 5, side 4)" in message
    assert "set data.video_sync: truncate to use the first 4 frames of each" in message
    with pytest.raises(DataError, match="sessions found"):
        find_sessions(tmp_path, ["top", "side"], session="s3")
    with pytest.raises(DataError, match="no videos named"):
        find_sessions(tmp_path, ["front", "back"])


def test_truncate_uses_the_frames_every_view_has(tmp_path):
    write_video(tmp_path / "s2_top.mp4", grey_frames(5))
    write_video(tmp_path / "s2_side.mp4", grey_frames(4))
    with pytest.warns(UserWarning, match="using the first 4 frames of each view"):
        (session,) = find_sessions(tmp_path, ["top", "side"], sync="truncate")
    assert session.num_frames == 4 and session.truncated


def test_views_at_different_frame_rates_are_refused(tmp_path):
    write_video(tmp_path / "s_top.mp4", grey_frames(5), fps=10)
    write_video(tmp_path / "s_side.mp4", grey_frames(5), fps=25)
    with pytest.raises(DataError, match=r"frame rates differ \(top 10, side 25 fps\)"):
        find_sessions(tmp_path, ["top", "side"], sync="truncate")


# ------------------------------------------------------------------------------ calibration
@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("example")
    make_example_project(root, num_frames=24, image_size=64)
    return root


def _config(example: Path, tmp_path: Path, **data):
    raw = yaml.safe_load((example / "config.yaml").read_text())
    raw["data"].update({"data_dir": str(example), **data})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_resolver_order_and_typed_absence(example, tmp_path):
    config = _config(example, tmp_path, calibration_file=None)
    views = list(config.data.view_names)
    found = CalibrationResolver(config, views).for_session("session0")
    assert found and found.path == example / "calibration.toml"
    assert found.group.names == views
    per_session = tmp_path / "root"
    (per_session / "calibrations").mkdir(parents=True)
    (per_session / "calibrations" / "s7.toml").write_bytes(found.path.read_bytes())
    config.data.data_dir = str(per_session)
    resolver = CalibrationResolver(config, views)
    assert resolver.for_session("s7").path == per_session / "calibrations" / "s7.toml"
    missing = resolver.for_session("s8")
    assert isinstance(missing, NoCalibration) and not missing
    assert f"no {per_session / 'calibrations' / 's8.toml'}" in missing.reason


def test_a_missing_calibration_file_is_the_same_error_in_training_and_prediction(
        example, tmp_path):
    config = _config(example, tmp_path, calibration_file="nope.toml")
    expected = f"data.calibration_file not found: {example / 'nope.toml'}"
    with pytest.raises(DataError, match=expected):  # the labelled project (training)
        MultiviewProject.from_config(config)
    with pytest.raises(DataError, match=expected):  # prediction's per-session lookup
        CalibrationResolver(config, list(config.data.view_names))


def _videos(example: Path, tmp_path: Path, counts: dict[str, int]) -> Path:
    folder = tmp_path / "videos"
    for view, count in counts.items():
        write_video(folder / f"session0_{view}.mp4", grey_frames(count, size=64))
    return folder


def _clips(config, project):
    return UnlabeledClipDataset(config, project, 2, num_clips=1)


def test_out_of_sync_videos_are_the_same_error_for_clips_and_prediction(example, tmp_path):
    folder = _videos(example, tmp_path, {"cam_a": 6, "cam_b": 6, "cam_c": 5})
    config = _config(example, tmp_path, video_dir=str(folder))
    project = MultiviewProject.from_config(config)
    views = list(config.data.view_names)
    with pytest.raises(DataError) as from_training:
        _clips(config, project)
    with pytest.raises(DataError) as from_prediction:
        find_sessions(prediction_video_dir(config), views, sync=config.data.video_sync)
    assert str(from_training.value) == str(from_prediction.value)
    assert "frame counts differ (cam_a 6, cam_b 6, cam_c 5)" in str(from_training.value)
    config.data.video_sync = "truncate"
    with pytest.warns(UserWarning, match="first 5 frames"):
        clips = _clips(config, project)
    assert clips.sessions[0].num_frames == 5
    assert clips[0]["frames"].shape[:2] == (2, 3)


def test_a_missing_view_is_the_same_error_for_clips_and_prediction(example, tmp_path):
    folder = _videos(example, tmp_path, {"cam_a": 4, "cam_b": 4})
    config = _config(example, tmp_path, video_dir=str(folder))
    project = MultiviewProject.from_config(config)
    with pytest.raises(DataError) as from_training:
        MultiviewDataModule(config, project=project, use_unlabeled=True).unlabeled_dataset()
    with pytest.raises(DataError) as from_prediction:
        find_sessions(video_dir(config), list(config.data.view_names))
    assert str(from_training.value) == str(from_prediction.value)
    assert "session 'session0' has no video for view(s) ['cam_c']" in str(from_training.value)


def test_clips_of_a_session_without_calibration_are_marked(example, tmp_path):
    folder = _videos(example, tmp_path, {"cam_a": 4, "cam_b": 4, "cam_c": 4})
    for view in ("cam_a", "cam_b", "cam_c"):  # a second session, no calibration for it
        write_video(folder / f"other_{view}.mp4", grey_frames(4, size=64))
    root = tmp_path / "project"
    root.mkdir()
    for item in example.iterdir():
        if item.name != "calibration.toml":
            (root / item.name).symlink_to(item)
    (root / "calibrations").mkdir()
    (root / "calibrations" / "session0.toml").write_bytes(
        (example / "calibration.toml").read_bytes())
    config = _config(example, tmp_path, data_dir=str(root), video_dir=str(folder),
                     calibration_file=None)
    project = MultiviewProject.from_config(config)
    clips = _clips(config, project)
    assert [s.name for s in clips.sessions] == ["other", "session0"]
    assert clips._calibrated.tolist() == [False, True]
    assert np.isfinite(clips._cameras.intrinsics.numpy()).all()  # placeholders stay finite
