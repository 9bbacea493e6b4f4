"""Lightning Pose's half of the import round trip; runs in Lightning Pose's own environment.

``python lightning_pose_side.py WORK [BACKBONE]`` (WORK holds ``project/`` written by the
test, with ``config.yaml`` naming its views and keypoints, ``clips/clip_<view>.mp4`` and
``input.pt``; BACKBONE: Lightning Pose's ``model.backbone``, one of ``HUB`` (a multi-view
transformer) or ``CNN`` (the per-view CNN, ``model_type: heatmap``, built from random
torchvision weights: ``model.backbone_pretrained: false``, nothing downloaded); default
``vits_dino``):

1. for a transformer, stores a random model with the config of the hub model Lightning Pose
   loads for BACKBONE (``HUB``: ``facebook/dino-vits16``, a ``ViTModel`` at 224 px with 197
   positions and LayerNorm eps 1e-12; ``facebook/dinov2-small`` / ``-base``, a
   ``Dinov2Model`` at 518 px with 14-pixel patches, 1 + 37 * 37 positions, eps 1e-6 and layer
   scales) under that repo id in a private Hugging Face cache, so that Lightning Pose's own
   ``from_pretrained`` loads it offline;
2. trains the Lightning Pose model for one epoch with ``lightning_pose.train``
   (its model directory: ``WORK/lp_model``), then scales its head's last layer so that the
   random network's heatmaps have peaks (the checkpoint stays Lightning Pose's own file);
3. writes the network's heatmaps on ``input.pt`` (``WORK/lp_heatmaps.pt``) and predicts the
   videos with ``Model.predict_on_video_file_multiview`` (``WORK/lp_preds``);
4. writes the network's heatmaps on the clips' frames as that prediction feeds them (OpenCV
   decoding, Lightning Pose's ``normalize_frames``): ``WORK/lp_clip_heatmaps.pt``
   ``(T, V*K, h, w)``, so a test can tell the network from the keypoint read-out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: the hub repo Lightning Pose 2.4.3 loads for each backbone (models/backbones/factory.py)
HUB = {"vits_dino": "facebook/dino-vits16", "vits_dinov2": "facebook/dinov2-small",
       "vitb_dinov2": "facebook/dinov2-base"}
#: Lightning Pose's per-view CNNs the round trip runs (``model_type: heatmap``)
CNN = ("resnet18", "resnet34", "resnet50")
#: width and heads of the DINOv2 hub models (both have 12 layers)
DINOV2_SIZES = {"vits_dinov2": (384, 6), "vitb_dinov2": (768, 12)}
REVISION = "0" * 40
HEAD_GAIN = 3000.0
#: the CNN's head has two transposed convolutions, both initialised small (Xavier gain 0.01), so
#: its last one needs 20x more for peaked heatmaps (median peak about 0.3 on ``input.pt``)
CNN_HEAD_GAIN = 60000.0
#: DINOv2's random position embeddings are scaled to unit size (HF initialises them with std
#: 0.02) and its layer scales drawn from U(0.5, 1.5) (HF starts them all at layerscale_value
#: 1.0; the hub's are trained), so that wrongly resized positions or lost layer scales show
DINOV2_POSITION_GAIN = 50.0
DINOV2_LAYER_SCALES = (0.5, 1.5)


def hub_model(backbone: str) -> object:
    """A random model with the configuration of the hub's ``HUB[backbone]`` (its config.json)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    torch.manual_seed(0)
    if backbone == "vits_dino":
        config = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                           intermediate_size=1536, image_size=224, patch_size=16,
                           qkv_bias=True, layer_norm_eps=1e-12, hidden_act="gelu")
        return ViTModel(config, add_pooling_layer=False)
    width, heads = DINOV2_SIZES[backbone]
    config = Dinov2Config(hidden_size=width, num_hidden_layers=12, num_attention_heads=heads,
                          mlp_ratio=4, image_size=518, patch_size=14, qkv_bias=True,
                          layer_norm_eps=1e-6, layerscale_value=1.0, hidden_act="gelu",
                          use_swiglu_ffn=False, drop_path_rate=0.0)
    model = Dinov2Model(config)
    with torch.no_grad():
        model.embeddings.position_embeddings.mul_(DINOV2_POSITION_GAIN)
        for name, value in model.named_parameters():
            if name.endswith("lambda1"):
                value.uniform_(*DINOV2_LAYER_SCALES)
    return model


def store_hub_model(cache: Path, backbone: str) -> None:
    """``hub_model(backbone)`` saved as ``HUB[backbone]`` in the Hugging Face cache ``cache``."""
    repo = cache / f"models--{HUB[backbone].replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    hub_model(backbone).save_pretrained(repo / "snapshots" / REVISION)


def lp_config(project: Path, backbone: str) -> object:
    import yaml
    from omegaconf import OmegaConf

    ours = yaml.safe_load((project / "config.yaml").read_text())["data"]
    views, keypoints = ours["view_names"], ours["keypoint_names"]
    size = 256
    cfg = OmegaConf.create({
        "data": {"image_resize_dims": {"height": size, "width": size},
                 "data_dir": str(project), "video_dir": str(project / "videos"),
                 "csv_file": [f"CollectedData_{v}.csv" for v in views], "bbox_file": None,
                 "view_names": views, "num_keypoints": len(keypoints),
                 "keypoint_names": keypoints, "mirrored_column_matches": None,
                 "columns_for_singleview_pca": None, "downsample_factor": 2},
        "training": {"imgaug": "none", "imgaug_3d": False, "imgaug_hflip": False,
                     "train_batch_size": 4, "val_batch_size": 4, "test_batch_size": 4,
                     "train_prob": 0.8, "val_prob": 0.1, "train_frames": 4, "num_gpus": 1,
                     "num_workers": 0, "unfreezing_epoch": 0, "min_epochs": 1,
                     "max_epochs": 1, "log_every_n_steps": 1, "check_val_every_n_epoch": 1,
                     "ckpt_every_n_epochs": None, "early_stopping": False,
                     "early_stop_patience": 3, "rng_seed_data_pt": 0, "rng_seed_model_pt": 0,
                     "optimizer": "Adam", "optimizer_params": {"learning_rate": 5e-5},
                     "lr_scheduler": "multisteplr",
                     "lr_scheduler_params": {"multisteplr": {"milestones": [1], "gamma": 0.5}},
                     "uniform_heatmaps_for_nan_keypoints": True,
                     "patch_mask": {"init_epoch": 40, "final_epoch": 300, "init_ratio": 0.0,
                                    "final_ratio": 0.0}},
        "model": {"losses_to_use": [], "backbone": backbone,
                  "model_type": "heatmap" if backbone in CNN else "heatmap_multiview_transformer",
                  "backbone_pretrained": backbone not in CNN, "heatmap_loss_type": "mse",
                  "model_name": "roundtrip", "checkpoint": None},
        "dali": {"base": {"train": {"sequence_length": 8}, "predict": {"sequence_length": 8}},
                 "context": {"train": {"batch_size": 4}, "predict": {"sequence_length": 8}}},
        "losses": {},
        "eval": {"predict_vids_after_training": False, "save_vids_after_training": False,
                 "test_videos_directory": str(project / "videos"), "colormap": "cool",
                 "confidence_thresh_for_vid": 0.9},
        "callbacks": {"anneal_weight": {"attr_name": "total_unsupervised_importance",
                                        "init_val": 0.0, "increase_factor": 0.01,
                                        "final_val": 1.0, "freeze_until_epoch": 0}},
    })
    return cfg


def sharpen(model_dir: Path, gain: float = HEAD_GAIN) -> Path:
    import torch

    (ckpt,) = sorted(model_dir.glob("tb_logs/*/version_*/checkpoints/*.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    # the last transposed convolution: 1 for the transformer's head, 2 for the CNN's (4 - 2)
    last = max(int(k.split(".")[2]) for k in saved["state_dict"]
               if k.startswith("head.upsampling_layers."))
    for part in ("weight", "bias"):
        saved["state_dict"][f"head.upsampling_layers.{last}.{part}"] *= gain
    torch.save(saved, ckpt)
    return ckpt


def main(work: Path, backbone: str = "vits_dino") -> None:
    if backbone not in HUB and backbone not in CNN:
        raise SystemExit(f"backbone {backbone!r}: this script knows {', '.join((*HUB, *CNN))}")
    cache = work / "hf-cache"
    # an empty torch hub folder: torchvision finds no weights there and the CNN asks for none
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TORCH_HOME=str(work / "torch-home"))
    if backbone in HUB:
        store_hub_model(cache, backbone)
    import torch
    from lightning_pose.api.model import Model
    from lightning_pose.train import train

    project, model_dir = work / "project", work / "lp_model"
    train(lp_config(project, backbone), model_dir=model_dir, skip_evaluation=True)
    sharpen(model_dir, CNN_HEAD_GAIN if backbone in CNN else HEAD_GAIN)
    model = Model.from_dir(model_dir)
    model._load()  # Lightning Pose loads the checkpoint lazily, on the first prediction
    network = model.model.eval()
    with torch.no_grad():
        heatmaps = network(torch.load(work / "input.pt"))  # (B, V*K, h, w)
    torch.save(heatmaps, work / "lp_heatmaps.pt")
    views = list(model.cfg.data.view_names)
    videos = [str(work / "clips" / f"clip_{v}.mp4") for v in views]
    model.predict_on_video_file_multiview(videos, output_dir=work / "lp_preds",
                                          compute_metrics=False, reader="opencv")
    size = [model.cfg.data.image_resize_dims.height, model.cfg.data.image_resize_dims.width]
    torch.save(clip_heatmaps(network.eval(), videos, size), work / "lp_clip_heatmaps.pt")


def clip_heatmaps(network: object, clips: list[str], size: list[int]) -> object:
    """``(T, V*K, h, w)`` heatmaps of ``network`` on every frame of the view ``clips``, decoded
    and normalised as ``predict_on_video_file_multiview(reader="opencv")`` does."""
    import cv2
    import numpy as np
    import torch
    from lightning_pose.data.video.utils import normalize_frames

    views = []
    for clip in clips:
        capture, frames = cv2.VideoCapture(clip), []
        while (read := capture.read())[0]:
            frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
        capture.release()
        uint8 = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
        views.append(normalize_frames(uint8, size))
    with torch.no_grad():
        return network(torch.stack(views, dim=1))  # (T, V, 3, h, w) -> (T, V*K, h, w)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
