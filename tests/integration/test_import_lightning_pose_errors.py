"""``mvcore import-lightning-pose`` (plugins loaded): every input mistake is one line naming
the file or folder and what to do, and nothing is written (the round trip:
tests/integration/test_import_lightning_pose.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mvcore.cli.main import main
from mvcore.example import make_example_project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_example_project(tmp_path_factory.mktemp("import") / "proj", seed=0,
                                num_frames=8).parent


def lp_model_dir(root: Path, project: Path, model_type: str = "heatmap_multiview_transformer",
                 checkpoint: bool = True) -> Path:
    """A Lightning Pose-shaped model directory: its config and (optionally) a checkpoint."""
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["data"]["data_dir"] = str(project)
    config["model"]["model_type"] = model_type
    config["creation_datetime"] = "2026-12-01T23:03:09.733245"
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    if checkpoint:
        ckpt = root / "tb_logs" / "m" / "version_0" / "checkpoints" / "epoch=0-step=1-best.ckpt"
        ckpt.parent.mkdir(parents=True)
        torch.save({"state_dict": {"view_embeddings": torch.zeros(3, 8)}, "epoch": 0}, ckpt)
    return root


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["import-lightning-pose", *args])
    return code, capsys.readouterr().err.strip()


def test_a_folder_without_config_is_named(tmp_path, capsys):
    code, err = run(capsys, str(tmp_path), str(tmp_path / "out"))
    assert code == 2 and "no config.yaml; give the model directory Lightning Pose" in err
    assert not (tmp_path / "out").exists()


def test_a_model_directory_without_checkpoints_is_named(tmp_path, project, capsys):
    lp = lp_model_dir(tmp_path / "lp", project, checkpoint=False)
    code, err = run(capsys, str(lp), str(tmp_path / "out"))
    assert code == 2
    assert "no checkpoint under tb_logs/*/version_*/checkpoints/*.ckpt" in err
    assert "--checkpoint" in err and len(err.splitlines()) == 1


def test_an_output_folder_with_files_is_refused(tmp_path, project, capsys):
    lp = lp_model_dir(tmp_path / "lp", project)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, err = run(capsys, str(lp), str(tmp_path / "out"))
    assert code == 2 and "is not empty; give a new folder" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_a_moved_project_asks_for_data_dir(tmp_path, project, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(project, moved)
    lp = lp_model_dir(tmp_path / "lp", moved)
    shutil.rmtree(moved)
    code, err = run(capsys, str(lp), str(tmp_path / "out"))
    assert code == 2 and "data.data_dir" in err and "pass --data-dir DIR" in err
    code, err = run(capsys, str(lp), str(tmp_path / "out"), "--data-dir", str(project))
    assert code == 2 and "Lightning Pose checkpoints of this backbone is not supported" in err
    code, err = run(capsys, str(lp), str(tmp_path / "out"), "--data-dir", str(project),
                    "--set", "model.backbone=vits_dino")
    assert code == 2 and "not a Lightning Pose multi-view transformer checkpoint: no " in err
    assert not (tmp_path / "out").exists()


def test_a_per_view_cnn_with_another_models_checkpoint_is_named(tmp_path, project, capsys):
    lp = lp_model_dir(tmp_path / "lp", project, model_type="heatmap")
    code, err = run(capsys, str(lp), str(tmp_path / "out"), "--set",
                    "model.backbone=resnet18", "--set", "model.backbone_pretrained=false")
    assert code == 2 and len(err.splitlines()) == 1
    assert ("not a Lightning Pose per-view ResNet checkpoint: unexpected tensors "
            "['view_embeddings']") in err
    assert not (tmp_path / "out").exists()


def test_a_backbone_without_the_hook_is_named_with_its_plugin(tmp_path, project, capsys,
                                                              monkeypatch):
    # a third-party backbone that does not implement from_lightning_pose gets the base class's
    from mv_cnn.model import PerViewCNN

    from mvcore import Backbone

    monkeypatch.setattr(PerViewCNN, "from_lightning_pose",
                        classmethod(Backbone.from_lightning_pose.__func__))
    lp = lp_model_dir(tmp_path / "lp", project, model_type="heatmap")
    code, err = run(capsys, str(lp), str(tmp_path / "out"), "--set",
                    "model.backbone=resnet18", "--set", "model.backbone_pretrained=false")
    assert code == 2 and len(err.splitlines()) == 1
    assert ("model.model_type 'heatmap': the 'heatmap' backbone cannot import Lightning Pose "
            "checkpoints (installed from") in err
    assert not (tmp_path / "out").exists()


def test_without_optimiser_state_the_import_predicts_and_resume_says_fine_tune(
        tmp_path, project, capsys):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                                    intermediate_size=256, image_size=224, patch_size=16)
    vit = transformers.ViTModel(config, add_pooling_layer=False)
    state = {f"backbone.vision_encoder.{k}": v for k, v in vit.state_dict().items()}
    state["view_embeddings"] = torch.zeros(3, 64)
    state["head.upsampling_layers.1.weight"] = torch.zeros(16, 10, 3, 3)
    state["head.upsampling_layers.1.bias"] = torch.zeros(10)
    lp = lp_model_dir(tmp_path / "lp", project)
    (ckpt,) = lp.glob("tb_logs/*/version_*/checkpoints/*.ckpt")
    torch.save({"state_dict": state, "epoch": 3, "global_step": 12}, ckpt)
    out = tmp_path / "out"
    code = main(["import-lightning-pose", str(lp), str(out), "--set", "model.backbone=vits_dino"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "(epoch 3, step 12, vits_dino, 3 views, 10 keypoints)" in printed
    assert "fine-tune it: mvcore train" in printed
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert not (out / "checkpoints" / "last.ckpt").exists()
    code = main(["train", str(out / "config.yaml"), "--resume", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint without optimiser state" in err
    assert f"fine-tune it instead: mvcore train {out / 'config.yaml'}" in err
