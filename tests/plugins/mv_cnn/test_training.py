"""The per-view CNN (``model_type: heatmap``) trains on the built-in example with the 3D losses,
a PCA loss and 3D augmentation, and ``mvcore predict`` reads the model back."""

from __future__ import annotations

import csv
import math

import pytest
import yaml

from mvcore.cli.main import main
from mvcore.example import make_example_project

#: a small ResNet without pretrained weights, 64x64 input, two epochs, both 3D losses, the
#: multi-view PCA loss and 3D augmentation
SETTINGS = [
    "model.model_type=heatmap", "model.backbone=resnet18", "model.backbone_pretrained=false",
    "data.image_resize_dims.height=64", "data.image_resize_dims.width=64",
    "training.max_epochs=2", "training.min_epochs=1", "training.num_workers=0",
    "training.check_val_every_n_epoch=1", "training.train_batch_size=8",
    "training.imgaug_3d=true", "model.losses_to_use=[pca_multiview]",
    "losses.supervised_pairwise_projections.log_weight=0.5",
    "losses.supervised_reprojection_heatmap_mse.log_weight=1.0",
    "eval.num_labeled_frame_plots=0",
]
FRAMES = 20


@pytest.mark.slow
def test_two_epochs_with_the_3d_losses_then_predict(tmp_path):
    config = make_example_project(tmp_path / "proj", seed=0, num_frames=FRAMES,
                                  image_size=128)
    model_dir = tmp_path / "model"
    sets = [arg for item in SETTINGS for arg in ("--set", item)]
    assert main(["train", str(config), "--output", str(model_dir), *sets]) == 0
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert (saved["model"]["model_type"], saved["model"]["backbone"]) == ("heatmap", "resnet18")
    with open(model_dir / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0])
    for loss in ("heatmap_mse", "supervised_pairwise_projections",
                 "supervised_reprojection_heatmap_mse", "pca_multiview"):
        values = [float(r[f"train_{loss}_loss_epoch"]) for r in rows
                  if r.get(f"train_{loss}_loss_epoch")]
        assert len(values) == 2 and all(math.isfinite(v) for v in values), loss
    # 3D augmentation ran: it moved the training samples (8 labelled frames) instead of
    # skipping them all
    skipped = [float(r["train_imgaug_3d_skipped"]) for r in rows
               if r.get("train_imgaug_3d_skipped")]
    assert len(skipped) == 2 and all(n < 8 for n in skipped), skipped
    assert {"lr-Adam/backbone", "lr-Adam/head"} <= columns  # the CNN and the head

    assert main(["predict", str(model_dir)]) == 0
    preds = model_dir / "video_preds"
    for view in ("cam_a", "cam_b", "cam_c"):
        with open(preds / f"session0_{view}.csv", newline="") as handle:
            lines = list(csv.reader(handle))
        body = lines[3:]  # DeepLabCut's three header rows
        assert len(body) == FRAMES
        assert all(math.isfinite(float(x)) for row in body for x in row[1:])
    assert (preds / "session0_3d.csv").is_file()
