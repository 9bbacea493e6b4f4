"""`model.checkpoint`: a run starts from the weights of an earlier model (Lightning Pose's key),
and `eval.predict_vids_after_training` / `save_vids_after_training` predict the videos."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from shared_model import overrides

from mvcore.cli.main import main

pytestmark = pytest.mark.slow


def test_a_fine_tuned_run_starts_where_the_earlier_model_ended(trained_example, tmp_path):
    config = trained_example.parent / "proj" / "config.yaml"
    tuned = tmp_path / "tuned"
    code = main(["train", str(config), "--output", str(tuned), *overrides(
        f"model.checkpoint={trained_example}", "training.max_epochs=1",
        "eval.predict_vids_after_training=true", "eval.save_vids_after_training=true")])
    assert code == 0
    earlier = pd.read_csv(trained_example / "metrics.csv").set_index("metric")["value"]
    start = json.loads((tuned / "untrained_metrics.json").read_text())
    # the baseline is measured on the validation split (this example has no test split) with
    # the weights of the earlier model's best checkpoint: its final error, not an untrained one
    assert "test_pixel_error_mean" not in earlier
    assert start["untrained_pixel_error_mean"] == pytest.approx(
        earlier["validation_pixel_error_mean"], rel=1e-5)
    assert start["untrained_pixel_error_mean"] < 0.9 * earlier["untrained_pixel_error_mean"]
    videos = tuned / "video_preds"  # eval.predict_vids_after_training
    assert (videos / "session0_3d.csv").is_file()
    assert (videos / "labeled_videos" / "session0_cam_a_labeled.mp4").is_file()


def test_a_checkpoint_of_other_keypoints_is_refused_before_training(trained_example, tmp_path,
                                                                    capsys):
    other = tmp_path / "other_model"
    shutil.copytree(trained_example / "checkpoints", other / "checkpoints")
    context = json.loads((trained_example / "context.json").read_text())
    context["keypoint_names"] = context["keypoint_names"][:-1]
    (other / "context.json").write_text(json.dumps(context))
    config = trained_example.parent / "proj" / "config.yaml"
    code = main(["train", str(config), "--output", str(tmp_path / "never"),
                 *overrides(f"model.checkpoint={other}")])
    assert code == 2 and not (tmp_path / "never").exists()
    err = capsys.readouterr().err
    assert f"error: model.checkpoint: {other} was trained on keypoints" in err
    assert "start from a model of the same views and keypoints" in err
    missing = main(["train", str(config), *overrides(f"model.checkpoint={tmp_path / 'nope'}")])
    assert missing == 2 and "model.checkpoint: " in capsys.readouterr().err
