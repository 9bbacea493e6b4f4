"""Side-by-side benchmark: Lightning Pose 2.4.3 against mvcore, identical inputs, alternating.

This is a benchmark, not a test. Each program runs in its own interpreter (Lightning Pose in
its own virtual environment, mvcore in this one) as a long-lived worker; the two exchange
nothing but files: the inputs (one ``inputs.pt`` written here), each side's outputs of one
checked call, and a weights file. For every workload the harness

1. builds the same problem on both sides and runs it once, saving the outputs;
2. compares them (max differences printed; where the two programs do different work, the
   table's "check" column names how);
3. times it in alternating rounds (Lightning Pose first in even rounds, mvcore first in odd
   ones), ``reps`` calls per side per round, and reports the median and min of all calls.

Workloads (B=64 frames, V=4 views, K=17 keypoints, 1280x1024 frames, a random calibrated rig
with radial distortion, 2D = projections of random 3D poses + 1 px noise; model input 256x256,
heatmaps 64x64):

- ``triangulate``: all-view DLT of (B, V, K, 2). Lightning Pose has no batched all-view
  triangulation in torch; the all-view DLT it depends on is aniposelib's
  ``CameraGroup.triangulate(undistort=True)`` (numpy, per point). mvcore: ``triangulate``.
- ``pairwise_loss``: 2D (leaf) -> pairwise triangulation -> ``supervised_pairwise_projections``,
  forward + backward. LP: ``project_camera_pairs_to_3d`` + ``PairwiseProjectionsLoss``.
- ``reprojection_loss``: 2D (leaf) -> 3D -> reprojection -> model pixels ->
  ``supervised_reprojection_heatmap_mse``, forward + backward. LP's model takes the mean of
  the pairwise triangulations; mvcore's takes the all-view DLT (named in the check column).
- ``mvt``: multi-view transformer, ViT-S/16 (12 blocks, D=384), 2 views of 256x256, batch 2,
  K=17, ds=2, forward + backward of an MSE on the heatmaps, training mode, no patch masking.
  Both get the same random weights: mvcore's timm ViT is converted to the Hugging Face layout
  and stored as a local ``facebook/dino-vits16`` in a private HF cache (``HF_HUB_OFFLINE=1``),
  so Lightning Pose's own ``from_pretrained`` loads it; head and view embeddings are copied.
  The stored config says 256 px and LayerNorm eps 1e-6 (timm's) instead of the hub's 224 px
  and 1e-12, so both run the same function. mvcore runs its defaults (on CPU float32).
- ``predict``: video prediction from a model directory with each program's own entry point
  (``mvcore predict``; LP's ``Model.predict_on_video_file_multiview``), ViT-S 4 views 256x256,
  batch 8, on the first 24 frame sets of the mouse4cam videos (re-encoded once to
  ``WORK/videos``). One mvcore model is trained for 1 epoch; its weights are copied into a
  1-epoch LP model's checkpoint, so both predict with the same network (2D differences named);
  its head is scaled by ``HEAD_GAIN`` for both, so that the barely trained heatmaps have peaks.
- ``aug3d``: 60 training items of mouse4cam at 256x256 (decode 4 views of 1280x1024, 3D
  augmentation, resize, heatmaps): mvcore's ``MultiviewDataset`` with ``imgaug_3d``, LP's
  ``MultiviewHeatmapDataset`` on its 3D-augmentation path. Random draws differ: shapes and
  label statistics are compared.
- ``train``: seconds per training step (data loading included; validation and each epoch's
  first step not) of 2-epoch runs of a ViT-S 4-view 128x128 model, batch 8, no augmentation,
  through ``mvcore train`` and LP's ``lightning_pose.train.train``; not value-checked.

Everything runs offline: LP's ViT-S "hub" weights are mvcore's random ones in a local HF cache.
Lightning Pose's environment (outside the repo; ~3 GB, torch comes from the local wheel)::

    python bench/bench_vs_lightning_pose.py --setup    # ~/.cache/mvcore-bench/lp-venv

which runs::

    python3.11 -m venv ~/.cache/mvcore-bench/lp-venv
    ~/.cache/mvcore-bench/lp-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    ~/.cache/mvcore-bench/lp-venv/bin/pip install --no-deps lightning-pose==2.4.3
    ~/.cache/mvcore-bench/lp-venv/bin/pip install <LP_RUNTIME_DEPS below>

Run (repo root, mvcore's venv)::

    python bench/bench_vs_lightning_pose.py                    # all workloads, 1 torch thread
    python bench/bench_vs_lightning_pose.py --only aug3d train predict --rounds 1   # smoke
    python bench/bench_vs_lightning_pose.py --only mvt --rounds 7
    python bench/bench_vs_lightning_pose.py --mvt-options [--mvt-case example]   # MVT options

Re-running picks up whatever mvcore is installed (it calls the public functions). The first
run of ``predict`` trains its two 1-epoch models into ``--work`` (kept for later runs). Besides
wall times, every call's CPU seconds (process and finished data-loader workers) are recorded:
the work done, which other jobs on a shared machine inflate far less than the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

DEFAULT_LP_VENV = Path(os.environ.get("MVCORE_LP_VENV",
                                      Path.home() / ".cache" / "mvcore-bench" / "lp-venv"))
DEFAULT_WORK = Path(os.environ.get("MVCORE_BENCH_WORK", "/tmp/mvcore-vs-lp"))
LP_VERSION = "2.4.3"
#: Lightning Pose 2.4.3's runtime requirements, less nvidia-dali-cuda110 (GPU video reading;
#: its opencv reader is used on CPU), with torch pinned to the local wheel
LP_RUNTIME_DEPS = [
    "torch==2.14.1", "torchvision==0.29.1", "aniposelib", "h5py", "hydra-core", "imaug",
    "jaxtyping", "kornia", "lightning>=2.5.0,<2.6.0", "matplotlib", "moviepy>=2.0.0",
    "numpy>=2.0.0", "opencv-python-headless", "pandas>=2.2.2", "pillow",
    "pytorch-lightning>=2.5.0,<2.6.0", "safetensors", "scikit-learn>=1.5.0", "tensorboard<3.0.0",
    "transformers>=4.57.5",
]

B, V, K = 64, 4, 17
FRAME = (1024, 1280)  # (H, W) frame pixels
MODEL = 256
HEATMAP = 64
MVT_BATCH, MVT_VIEWS = 2, 2
#: mvcore's heatmap pixel x sits at model pixel 4x + 1.5 (pixel centres), Lightning Pose's at 4x
LP_HEATMAP_SHIFT = (MODEL / HEATMAP - 1) / 2
#: the common reprojected points of the reprojection-loss check: labels + 0.7 model px
COMMON_OFFSET = 0.7
#: the HF hub name Lightning Pose's vits_dino loads, and the fake revision of our local copy
LP_VITS_REPO = "facebook/dino-vits16"
LOCAL_REVISION = "0" * 40

REPO = Path(__file__).resolve().parents[1]
MOUSE = REPO.parent / "shared" / "data" / "mouse4cam"
LP_MULTIVIEW_CONFIG = REPO.parent / "shared" / "data" / "lightning-pose-configs" / \
    "config_default_multiview.yaml"
MOUSE_VIEWS = ["back", "mid", "side", "top"]
MOUSE_KEYPOINTS = ["Nose", "Ear_R", "Ear_L", "TTI", "TailTip", "Head", "Trunk", "Tail_0",
                   "Tail_1", "Tail_2", "Shoulder_left", "Shoulder_right", "Haunch_left",
                   "Haunch_right", "Neck"]
#: the training runs of ``train`` (timed) and of ``predict`` (the model it predicts with)
TRAIN_RUNS: dict[str, dict[str, Any]] = {
    "train": {"size": 128, "train_prob": 0.8, "epochs": 2},
    "predict": {"size": 256, "train_prob": 0.15, "epochs": 1},
}
PREDICT_FRAMES, PREDICT_BATCH = 24, 8
#: the ``aug3d`` workload: the first 60 labelled frame sets of mouse4cam at 256x256
AUG_SAMPLES, AUG_SIZE = 60, 256

#: name -> (rounds, calls per side per round, warm-up calls)
WORKLOADS: dict[str, tuple[int, int, int]] = {
    "triangulate": (10, 5, 3),
    "pairwise_loss": (10, 5, 3),
    "reprojection_loss": (6, 2, 1),
    "mvt": (5, 1, 1),
    "train": (2, 1, 0),
    "predict": (3, 1, 0),
    "aug3d": (5, 1, 1),
}
#: workloads whose calls report their own step times (training: one time per optimiser step)
SELF_TIMED = {"train"}
TITLES = {
    "triangulate": "triangulate B=64, V=4, K=17 (all views, DLT), forward",
    "pairwise_loss": "pairwise 3D loss end to end (2D -> pairwise triangulation -> loss), fwd+bwd",
    "reprojection_loss": "reprojected-heatmap 3D loss end to end, fwd+bwd (64x64 maps)",
    "mvt": "multi-view transformer ViT-S/16, 2 views of 256x256, batch 2, fwd+bwd",
    "train": "training step (data loading included), ViT-S 4-view mouse4cam 128x128, batch 8",
    "predict": "video prediction from a model dir, ViT-S mouse4cam 4 views 1280x1024 -> 256, "
               "24 frame sets, batch 8",
    "aug3d": "3D augmentation (dataset items: decode, augment, resize, heatmaps), mouse4cam "
             "4 views 1280x1024 -> 256, 60 samples",
}


# ---------------------------------------------------------------------------------- setup
def setup_lp_venv(venv: Path) -> None:
    """Create Lightning Pose's venv at ``venv`` (idempotent: pip skips what is there)."""
    if not (venv / "bin" / "python").exists():
        python = shutil.which("python3.11") or sys.executable
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install"]
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1"], check=True)
    subprocess.run([*pip, "--no-deps", f"lightning-pose=={LP_VERSION}"], check=True)
    subprocess.run([*pip, *LP_RUNTIME_DEPS], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-c",
                    "import lightning_pose, aniposelib, transformers; print('ok')"], check=True)


# ---------------------------------------------------------------------------------- inputs
def make_inputs(path: Path) -> None:
    """Write every workload's inputs to ``path`` (runs in mvcore's environment)."""
    import torch

    from mvcore.data.heatmaps import render_heatmaps
    from mvcore.geometry import project_points, rodrigues_to_matrix

    g = torch.Generator().manual_seed(0)
    angles = torch.arange(V, dtype=torch.float64) * (2 * torch.pi / V)
    centers = torch.stack([2000 * angles.cos(), 2000 * angles.sin(),
                           torch.full((V,), 900.0, dtype=torch.float64)], -1)
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    rot = torch.stack([x, torch.linalg.cross(z, x), z], dim=-2)
    rot = rodrigues_to_matrix(0.05 * torch.randn(V, 3, generator=g, dtype=torch.float64)) @ rot
    extr = torch.cat([rot, -(rot @ centers.unsqueeze(-1))], dim=-1)
    intr = torch.zeros(V, 3, 3, dtype=torch.float64)
    intr[:, 0, 0] = intr[:, 1, 1] = 1300.0
    intr[:, 0, 2], intr[:, 1, 2], intr[:, 2, 2] = 639.5, 511.5, 1.0
    dist = torch.zeros(V, 5, dtype=torch.float64)
    dist[:, 0] = -0.08
    pose = 60 * torch.randn(B, K, 3, generator=g, dtype=torch.float64)
    clean = project_points(pose, intr, extr, dist)  # (B, V, K, 2)
    noisy = clean + torch.randn(clean.shape, generator=g, dtype=torch.float64)
    scale = torch.tensor([MODEL / FRAME[1], MODEL / FRAME[0]], dtype=torch.float64)
    clean_model = (clean * scale).float().reshape(B, V * K, 2)
    targets = render_heatmaps(clean_model, (MODEL, MODEL), (HEATMAP, HEATMAP))
    # Lightning Pose puts model pixel x at heatmap pixel x / 4, mvcore (pixel centres) at
    # (x - 1.5) / 4: the same maps in LP's convention are rendered 1.5 model px further on
    targets_lp = render_heatmaps(clean_model + LP_HEATMAP_SHIFT, (MODEL, MODEL),
                                 (HEATMAP, HEATMAP))
    inputs = {
        "intrinsics": intr.float(), "extrinsics": extr.float(), "distortions": dist.float(),
        "intrinsics64": intr, "extrinsics64": extr, "distortions64": dist,
        "pose_3d": pose.float(), "points_2d": noisy.float(), "points_2d_clean": clean.float(),
        "clean_model_px": clean_model, "heatmaps_targ": targets, "heatmaps_targ_lp": targets_lp,
        "images": torch.randn(MVT_BATCH, MVT_VIEWS, 3, MODEL, MODEL, generator=g),
        "mvt_target": torch.rand(MVT_BATCH, MVT_VIEWS, K, HEATMAP, HEATMAP, generator=g),
    }
    torch.save(inputs, path)
    make_clips(path.parent / "videos", PREDICT_FRAMES)


def make_clips(folder: Path, frames: int) -> None:
    """The first ``frames`` frames of each mouse4cam view, re-encoded (libx264 crf 18, PyAV)
    as ``folder/clip_<view>.mp4``; kept when present."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    for view in MOUSE_VIEWS:
        dst = folder / f"clip_{view}.mp4"
        if dst.exists():
            continue
        part = dst.with_suffix(".part.mp4")
        with av.open(str(MOUSE / "videos" / f"minimal_{view}.mp4")) as src, \
                av.open(str(part), "w") as out:
            stream_in = src.streams.video[0]
            stream = out.add_stream("libx264", rate=30, options={"crf": "18"})
            stream.width, stream.height = stream_in.width, stream_in.height
            stream.pix_fmt = "yuv420p"
            for i, frame in enumerate(src.decode(stream_in)):
                if i == frames:
                    break
                out.mux(stream.encode(frame.reformat(format="yuv420p")))
            out.mux(stream.encode())
        part.rename(dst)


def _dlc_likelihood(df: Any) -> Any:
    """``(T, K)`` float32 tensor of the likelihood columns of a DeepLabCut-format frame."""
    import numpy as np
    import torch

    cols = df.columns
    parts, coords = cols.get_level_values(-2), cols.get_level_values(-1)
    return torch.from_numpy(np.stack(
        [df.loc[:, (parts == kp) & (coords == "likelihood")].to_numpy(dtype=np.float64)[:, 0]
         for kp in MOUSE_KEYPOINTS], -1)).float()


def _dlc_xy(df: Any) -> Any:
    """``(T, K, 2)`` float32 tensor of a DeepLabCut-format prediction frame, mouse4cam order."""
    import numpy as np
    import torch

    cols = df.columns
    parts = cols.get_level_values(-2)
    coords = cols.get_level_values(-1)
    xy = [df.loc[:, (parts == kp) & (coords == c)].to_numpy(dtype=np.float64)[:, 0]
          for kp in MOUSE_KEYPOINTS for c in ("x", "y")]
    return torch.from_numpy(np.stack(xy, -1).reshape(len(df), len(MOUSE_KEYPOINTS), 2)).float()


def _aug_summary(images: list[Any], keypoints: list[Any], heatmaps: list[Any]
                 ) -> dict[str, Any]:
    """What the ``aug3d`` check compares: shapes, and how far the augmented labels moved
    (random draws differ between the programs, so values cannot be compared)."""
    import torch

    points = torch.stack(keypoints)  # (N, V, K, 2) model pixels
    finite = points.isfinite().all(-1)
    inside = finite & (points >= 0).all(-1) & (points < AUG_SIZE).all(-1)
    return {"images_shape": torch.tensor(torch.stack(images).shape, dtype=torch.float32),
            "heatmaps_shape": torch.tensor(torch.stack(heatmaps).shape, dtype=torch.float32),
            "keypoints_finite": finite.float().mean(),
            "finite_inside": inside.float().sum() / finite.float().sum().clamp_min(1)}


def _step_timer(pl: Any) -> Any:
    """A Lightning callback (of the package ``pl``) timing each training step: the time from
    one step's end to the next one's within an epoch (data loading included, validation and
    each epoch's first step not)."""

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.last: float | None = None

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.last = None

        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            now = time.perf_counter()
            if self.last is not None:
                self.times.append(now - self.last)
            self.last = now

    return StepTimer()


def _timed_fit(pl: Any) -> list[Any]:
    """Patch ``pl.Trainer.fit`` to attach a fresh ``StepTimer``; returns the list of timers."""
    timers: list[Any] = []
    fit = pl.Trainer.fit

    def timed_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        timers.append(_step_timer(pl))
        self.callbacks.append(timers[-1])
        return fit(self, *args, **kwargs)
    pl.Trainer.fit = timed_fit
    return timers


#: ``predict``: the 1-epoch model's head is scaled by this gain (both programs get the scaled
#: weights), so that its nearly uniform heatmaps get clear peaks and the 2D positions can be
#: compared (at gain 50 the peak's 5x5 mass was still 0.011, uniform being 0.006)
HEAD_GAIN = 2000.0


def sharpen_heatmaps(model_dir: Path) -> None:
    """Scale the heatmap head's last layer in ``model_dir``'s checkpoints to ``HEAD_GAIN`` times
    the trained one (the gain applied so far is kept in ``checkpoints/head_gain``). The cost of
    prediction does not change."""
    import torch

    record = model_dir / "checkpoints" / "head_gain"
    applied = float(record.read_text()) if record.exists() else 1.0
    if applied == HEAD_GAIN:
        return
    for ckpt in sorted((model_dir / "checkpoints").glob("*.ckpt")):
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        for part in ("weight", "bias"):
            saved["state_dict"][f"backbone.head.layers.1.{part}"] *= HEAD_GAIN / applied
        torch.save(saved, ckpt)
    record.write_text(f"{HEAD_GAIN}\n")


def mvcore_config(run: dict[str, Any], path: Path) -> Path:
    """mvcore's config for one of ``TRAIN_RUNS`` (the same settings as ``lp_config``)."""
    import yaml

    config = {
        "data": {"image_resize_dims": {"height": run["size"], "width": run["size"]},
                 "data_dir": str(MOUSE), "video_dir": "videos",
                 "csv_file": [f"CollectedData_{v}.csv" for v in MOUSE_VIEWS],
                 "view_names": MOUSE_VIEWS, "keypoint_names": MOUSE_KEYPOINTS,
                 "num_keypoints": len(MOUSE_KEYPOINTS), "downsample_factor": 2},
        "model": {"model_type": "heatmap_multiview_transformer", "backbone": "vits_dino",
                  "backbone_pretrained": False},
        "training": {"imgaug": "none", "imgaug_3d": bool(run.get("imgaug_3d")),
                     "train_batch_size": 8,
                     "val_batch_size": 8, "test_batch_size": 8,
                     "train_prob": run["train_prob"], "val_prob": 0.1, "num_workers": 2,
                     "unfreezing_epoch": 0, "min_epochs": run["epochs"],
                     "max_epochs": run["epochs"], "check_val_every_n_epoch": 1,
                     "optimizer_params": {"learning_rate": 5.0e-5}},
        "losses": {},
        "eval": {"predict_vids_after_training": False},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def lp_config(run: dict[str, Any]) -> Any:
    """Lightning Pose's multi-view default config set to one of ``TRAIN_RUNS``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(LP_MULTIVIEW_CONFIG)
    cfg.data.data_dir, cfg.data.video_dir = str(MOUSE), str(MOUSE / "videos")
    cfg.data.csv_file = [f"CollectedData_{v}.csv" for v in MOUSE_VIEWS]
    cfg.data.bbox_file = None
    cfg.data.view_names, cfg.data.keypoint_names = MOUSE_VIEWS, MOUSE_KEYPOINTS
    cfg.data.num_keypoints = len(MOUSE_KEYPOINTS)
    cfg.data.image_resize_dims.height = cfg.data.image_resize_dims.width = run["size"]
    t = cfg.training
    t.imgaug, t.imgaug_3d = "none", False
    t.train_batch_size = t.val_batch_size = t.test_batch_size = 8
    t.train_prob, t.val_prob, t.num_workers, t.unfreezing_epoch = run["train_prob"], 0.1, 2, 0
    t.min_epochs = t.max_epochs = run["epochs"]
    t.check_val_every_n_epoch = 1
    t.lr_scheduler_params.multisteplr.milestones = [run["epochs"]]
    t.patch_mask.final_ratio = 0.0
    # LP requires imgaug 'dlc' for this loss; mvcore's run has no 3D loss either
    cfg.losses.supervised_reprojection_heatmap_mse.log_weight = None
    cfg.eval.predict_vids_after_training = False
    cfg.dali.base.predict.sequence_length = PREDICT_BATCH
    return cfg


# ---------------------------------------------------------------------------------- workers
Step = Callable[[], dict[str, Any]]


def _leaf(t: Any) -> Any:
    return t.detach().clone().requires_grad_(True)


def _mse(pred: Any, target: Any) -> Any:
    return ((pred - target) ** 2).mean()


def mvcore_step(name: str, inp: dict[str, Any], work: Path) -> Step:
    """mvcore's implementation of workload ``name``: a callable returning its outputs."""
    import torch
    from mv_losses.projection import PairwiseProjectionsLoss, ReprojectionHeatmapLoss

    from mvcore import Context
    from mvcore.geometry import project_points, triangulate, triangulate_pairs

    intr, extr, dist = (inp[k] for k in ("intrinsics", "extrinsics", "distortions"))
    ctx = Context(view_names=tuple(f"cam{v}" for v in range(V)),
                  keypoint_names=tuple(f"kp{k}" for k in range(K)),
                  image_height=MODEL, image_width=MODEL, downsample_factor=2,
                  has_calibration=True)
    scale = torch.tensor([MODEL / FRAME[1], MODEL / FRAME[0]])
    if name == "triangulate":
        points = inp["points_2d"]

        def tri() -> dict[str, Any]:
            return {"points_3d": triangulate(points, intr, extr, dist)}
        tri.extra = lambda: {  # type: ignore[attr-defined]
            "points_3d_clean": triangulate(inp["points_2d_clean"], intr, extr, dist)}
        return tri
    if name == "pairwise_loss":
        loss_fn = PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(), ctx)

        def pairwise() -> dict[str, Any]:
            points = _leaf(inp["points_2d"])
            pred_3d = triangulate_pairs(points, intr, extr, dist)
            loss = loss_fn(keypoints_targ_3d=inp["pose_3d"], keypoints_pred_3d=pred_3d,
                           stage="train")[0] / loss_fn.weight
            loss.backward()
            return {"loss": loss.detach(), "grad_2d": points.grad}
        return pairwise
    if name == "reprojection_loss":
        loss_fn = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), ctx)

        def reprojection() -> dict[str, Any]:
            points = _leaf(inp["points_2d"])
            points_3d = triangulate(points, intr, extr, dist)
            model_px = (project_points(points_3d, intr, extr, dist) * scale).reshape(B, -1, 2)
            loss = loss_fn(heatmaps_targ=inp["heatmaps_targ"],
                           keypoints_pred_2d_reprojected=model_px, stage="train")[0]
            loss = loss / loss_fn.weight
            loss.backward()
            return {"loss": loss.detach(), "grad_2d": points.grad,
                    "reprojected_model_px": model_px.detach()}

        def on_common() -> Any:
            return loss_fn(heatmaps_targ=inp["heatmaps_targ"],
                           keypoints_pred_2d_reprojected=inp["clean_model_px"] + COMMON_OFFSET,
                           stage="train")[0] / loss_fn.weight
        reprojection.extra = lambda: {"loss_on_common_points": on_common()}  # type: ignore
        return reprojection
    if name == "mvt":
        from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams, autocast_dtype

        mctx = Context(view_names=tuple(f"cam{v}" for v in range(MVT_VIEWS)),
                       keypoint_names=tuple(f"kp{k}" for k in range(K)),
                       image_height=MODEL, image_width=MODEL, downsample_factor=2, seed=0)
        params = MultiviewTransformerParams(backbone="vits_dino", backbone_pretrained=False)
        model = MultiviewTransformer(params, mctx).train()
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   work / "mvt_mvcore_state.pt")
        images, target = inp["images"], inp["mvt_target"]
        bf16 = autocast_dtype(params.autocast, images.device.type) == torch.bfloat16

        def mvt() -> dict[str, Any]:
            model.zero_grad(set_to_none=True)
            heatmaps = model(images)  # (B, V, K, h, w)
            loss = _mse(heatmaps, target)
            loss.backward()
            return {"loss": loss.detach(), "heatmaps": heatmaps.detach()[0],
                    "grad_view_embeddings": model.view_embeddings.grad,
                    "grad_head": model.head.layers[1].weight.grad,
                    "blocks_in_bf16": torch.tensor(float(bf16))}
        return mvt
    if name == "aug3d":
        from mvcore.build import build_augmenters, make_context, plan_run
        from mvcore.config.load import load_config
        from mvcore.data.dataset import MultiviewDataset
        from mvcore.data.project import MultiviewProject
        from mvcore.plugin.components import load_components

        run = {"size": AUG_SIZE, "train_prob": 0.8, "epochs": 1, "imgaug_3d": True}
        config = load_config(mvcore_config(run, work / "mvcore_aug3d.yaml"))
        project = MultiviewProject.from_config(config)
        context = make_context(config, project)
        augmenters = build_augmenters(plan_run(config, load_components(), context), context)
        dataset = MultiviewDataset(project, config, range(AUG_SAMPLES), augmenters, True, 0)

        def aug3d() -> dict[str, Any]:
            items = [dataset[i] for i in range(AUG_SAMPLES)]
            return _aug_summary([it["images"] for it in items],
                                [it["keypoints"] for it in items],
                                [it["heatmaps"] for it in items])
        return aug3d
    if name in ("train", "predict"):
        import pytorch_lightning as pl

        from mvcore.cli.main import main as mvcore_cli

        if not (work / "mvt_mvcore_state.pt").exists():
            mvcore_step("mvt", inp, work)  # writes the ViT-S weights LP loads as its "hub" copy
        timers = _timed_fit(pl)
        runs = iter(range(10**6))

        def train_once(run: dict[str, Any], out: Path) -> None:
            shutil.rmtree(out, ignore_errors=True)
            code = mvcore_cli(["train", str(mvcore_config(run, work / "mvcore_config.yaml")),
                               "--output", str(out)])
            if code:
                raise RuntimeError(f"mvcore train exited {code}")
    if name == "train":
        def train() -> dict[str, Any]:
            train_once(TRAIN_RUNS["train"], work / f"mvcore_train_{next(runs)}")
            return {"_times": timers[-1].times}
        return train
    if name == "predict":
        import pandas as pd

        model_dir = work / "mvcore_predict_model"
        if not (model_dir / "checkpoints" / "best.ckpt").exists():
            train_once(TRAIN_RUNS["predict"], model_dir)
        sharpen_heatmaps(model_dir)

        def predict() -> dict[str, Any]:
            out = work / "mvcore_preds"
            code = mvcore_cli(["predict", str(model_dir), "--videos", str(work / "videos"),
                               "--out", str(out), "--overwrite",
                               "--batch-size", str(PREDICT_BATCH)])
            if code:
                raise RuntimeError(f"mvcore predict exited {code}")
            frames = [pd.read_csv(out / f"clip_{v}.csv", header=[0, 1, 2], index_col=0)
                      for v in MOUSE_VIEWS]
            return {"keypoints_2d": torch.stack([_dlc_xy(df) for df in frames]),
                    "likelihood": torch.stack([_dlc_likelihood(df) for df in frames])}
        return predict
    raise KeyError(name)


def _timm_to_hf(state: dict[str, Any], depth: int) -> dict[str, Any]:
    """mvcore's timm ViT tensors (``vit.*``) in the transformers 5 ``ViTModel`` layout."""
    out = {
        "embeddings.cls_token": state["vit.cls_token"],
        "embeddings.position_embeddings": state["vit.pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["vit.patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["vit.patch_embed.proj.bias"],
        "layernorm.weight": state["vit.norm.weight"],
        "layernorm.bias": state["vit.norm.bias"],
    }
    for i in range(depth):
        src, dst = f"vit.blocks.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            q, k, v = state[f"{src}attn.qkv.{part}"].chunk(3, dim=0)
            out[f"{dst}attention.q_proj.{part}"] = q
            out[f"{dst}attention.k_proj.{part}"] = k
            out[f"{dst}attention.v_proj.{part}"] = v
            out[f"{dst}attention.o_proj.{part}"] = state[f"{src}attn.proj.{part}"]
            out[f"{dst}layernorm_before.{part}"] = state[f"{src}norm1.{part}"]
            out[f"{dst}layernorm_after.{part}"] = state[f"{src}norm2.{part}"]
            out[f"{dst}mlp.fc1.{part}"] = state[f"{src}mlp.fc1.{part}"]
            out[f"{dst}mlp.fc2.{part}"] = state[f"{src}mlp.fc2.{part}"]
    return {k: v.contiguous() for k, v in out.items()}


def store_local_vits(state: dict[str, Any], cache: Path) -> None:
    """Save mvcore's ViT-S weights as ``facebook/dino-vits16`` in the HF hub cache ``cache``."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                       intermediate_size=1536, image_size=MODEL, patch_size=16, qkv_bias=True,
                       layer_norm_eps=1e-6, hidden_act="gelu")
    vit = ViTModel(config, add_pooling_layer=False)
    vit.load_state_dict(_timm_to_hf(state, 12), strict=True)
    repo = cache / f"models--{LP_VITS_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(LOCAL_REVISION)
    vit.save_pretrained(repo / "snapshots" / LOCAL_REVISION)


def lp_step(name: str, inp: dict[str, Any], work: Path) -> Step:
    """Lightning Pose's implementation of workload ``name`` (runs in LP's environment)."""
    import numpy as np
    import torch
    from lightning_pose.data.bboxes import frame_to_model_batch
    from lightning_pose.data.cameras import project_3d_to_2d, project_camera_pairs_to_3d
    from lightning_pose.losses.losses import PairwiseProjectionsLoss, ReprojectionHeatmapLoss

    def per_frame(t: Any) -> Any:
        return t.expand(B, *t.shape)

    intr, extr, dist = (per_frame(inp[k]) for k in ("intrinsics", "extrinsics", "distortions"))
    if name == "triangulate":
        import cv2
        from aniposelib.cameras import Camera, CameraGroup

        cams = []
        for v in range(V):
            e = inp["extrinsics64"][v].numpy()
            cams.append(Camera(matrix=inp["intrinsics64"][v].numpy(),
                               dist=inp["distortions64"][v].numpy(), size=(FRAME[1], FRAME[0]),
                               rvec=cv2.Rodrigues(e[:, :3])[0].ravel(), tvec=e[:, 3],
                               name=f"cam{v}"))
        group = CameraGroup(cams)
        def views_first(t: Any) -> Any:
            return np.ascontiguousarray(t.permute(1, 0, 2, 3).reshape(V, B * K, 2).double())

        points = views_first(inp["points_2d"])

        def triangulate(pts: Any = points) -> dict[str, Any]:
            out = group.triangulate(pts, undistort=True, progress=False)
            return {"points_3d": torch.from_numpy(out).reshape(B, K, 3).float()}
        triangulate.extra = lambda: {  # type: ignore[attr-defined]
            "points_3d_clean": triangulate(views_first(inp["points_2d_clean"]))["points_3d"]}
        return triangulate
    if name == "pairwise_loss":
        loss_fn = PairwiseProjectionsLoss(log_weight=0.0)

        def pairwise() -> dict[str, Any]:
            points = _leaf(inp["points_2d"])
            pred_3d = project_camera_pairs_to_3d(points, intr, extr, dist)
            loss = loss_fn(keypoints_targ_3d=inp["pose_3d"], keypoints_pred_3d=pred_3d,
                           stage="train")[0]
            loss.backward()
            return {"loss": loss.detach(), "grad_2d": points.grad}
        return pairwise
    if name == "reprojection_loss":
        loss_fn = ReprojectionHeatmapLoss(original_image_height=MODEL, original_image_width=MODEL,
                                          downsampled_image_height=HEATMAP,
                                          downsampled_image_width=HEATMAP)
        bbox = torch.tensor([0.0, 0.0, FRAME[0], FRAME[1]]).repeat(V).expand(B, 4 * V)
        batch = {"images": torch.zeros(()).expand(B, V, 3, MODEL, MODEL), "bbox": bbox}

        def reprojection() -> dict[str, Any]:
            points = _leaf(inp["points_2d"])
            pred_3d = project_camera_pairs_to_3d(points, intr, extr, dist)
            frame = project_3d_to_2d(pred_3d.mean(dim=1), intr, extr, dist)
            model_px = frame_to_model_batch(batch, frame).reshape(B, V * K, 2)
            loss = loss_fn(heatmaps_targ=inp["heatmaps_targ_lp"],
                           keypoints_pred_2d_reprojected=model_px, stage="train")[0]
            loss.backward()
            return {"loss": loss.detach(), "grad_2d": points.grad,
                    "reprojected_model_px": model_px.detach()}

        def on_common() -> Any:
            return loss_fn(heatmaps_targ=inp["heatmaps_targ_lp"],
                           keypoints_pred_2d_reprojected=inp["clean_model_px"] + COMMON_OFFSET,
                           stage="train")[0]
        reprojection.extra = lambda: {"loss_on_common_points": on_common()}  # type: ignore
        return reprojection
    if name == "mvt":
        from lightning_pose.models.heatmap_tracker_multiview import (
            HeatmapTrackerMultiviewTransformer,
        )

        state = torch.load(work / "mvt_mvcore_state.pt", weights_only=True)
        store_local_vits(state, Path(os.environ["HF_HUB_CACHE"]))
        model = HeatmapTrackerMultiviewTransformer(
            num_keypoints=K, num_views=MVT_VIEWS, backbone="vits_dino", pretrained=True,
            downsample_factor=2, image_size=MODEL)
        with torch.no_grad():
            model.view_embeddings.copy_(state["view_embeddings"])
            model.head.upsampling_layers[1].weight.copy_(state["head.layers.1.weight"])
            model.head.upsampling_layers[1].bias.copy_(state["head.layers.1.bias"])
        model.train()
        images = inp["images"]
        target = inp["mvt_target"].reshape(MVT_BATCH, MVT_VIEWS * K, HEATMAP, HEATMAP)

        def mvt() -> dict[str, Any]:
            model.zero_grad(set_to_none=True)
            heatmaps = model(images)  # (B, V*K, h, w)
            loss = _mse(heatmaps, target)
            loss.backward()
            return {"loss": loss.detach(),
                    "heatmaps": heatmaps.detach()[0].reshape(MVT_VIEWS, K, HEATMAP, HEATMAP),
                    "grad_view_embeddings": model.view_embeddings.grad,
                    "grad_head": model.head.upsampling_layers[1].weight.grad}
        return mvt
    if name == "aug3d":
        import imgaug.augmenters as iaa
        from lightning_pose.data.datasets import MultiviewHeatmapDataset

        # no 2D transforms and no Resize in the pipeline: LP's training path, 3D augmentation
        dataset = MultiviewHeatmapDataset(
            root_directory=str(MOUSE), csv_paths=[f"CollectedData_{v}.csv" for v in MOUSE_VIEWS],
            view_names=MOUSE_VIEWS, image_resize_height=AUG_SIZE, image_resize_width=AUG_SIZE,
            imgaug_transform=iaa.Sequential([]), downsample_factor=2, resize=False)

        def aug3d() -> dict[str, Any]:
            items = [dataset[i] for i in range(AUG_SAMPLES)]
            return _aug_summary([it["images"] for it in items],
                                [it["keypoints"].reshape(len(MOUSE_VIEWS), -1, 2)
                                 for it in items],
                                [it["heatmaps"].reshape(len(MOUSE_VIEWS), -1,
                                                        *it["heatmaps"].shape[-2:])
                                 for it in items])
        return aug3d
    if name in ("train", "predict"):
        import lightning.pytorch as pl
        from lightning_pose.train import train as lp_train

        cache = Path(os.environ["HF_HUB_CACHE"])
        repo = cache / f"models--{LP_VITS_REPO.replace('/', '--')}"
        if not (repo / "snapshots" / LOCAL_REVISION).exists():  # random ViT-S, no download
            store_local_vits(torch.load(work / "mvt_mvcore_state.pt", weights_only=True), cache)
        timers = _timed_fit(pl)
        runs = iter(range(10**6))

        def train_once(run: dict[str, Any], out: Path) -> None:
            shutil.rmtree(out, ignore_errors=True)
            lp_train(lp_config(run), model_dir=out, skip_evaluation=True)
    if name == "train":
        def train() -> dict[str, Any]:
            train_once(TRAIN_RUNS["train"], work / f"lp_train_{next(runs)}")
            return {"_times": timers[-1].times}
        return train
    if name == "predict":
        from lightning_pose.api.model import Model

        model_dir = work / "lp_predict_model"
        ckpts = sorted(model_dir.rglob("*.ckpt"))
        if not ckpts:
            train_once(TRAIN_RUNS["predict"], model_dir)
            ckpts = sorted(model_dir.rglob("*.ckpt"))
        # mvcore's trained weights, so that both predict with the same network
        mv_state = torch.load(work / "mvcore_predict_model" / "checkpoints" / "best.ckpt",
                              map_location="cpu", weights_only=False)["state_dict"]
        vit = {k.removeprefix("backbone."): v for k, v in mv_state.items()
               if k.startswith("backbone.vit.")}
        weights = {f"backbone.vision_encoder.{k}": v for k, v in _timm_to_hf(vit, 12).items()}
        weights["view_embeddings"] = mv_state["backbone.view_embeddings"]
        for part in ("weight", "bias"):
            head = mv_state[f"backbone.head.layers.1.{part}"]
            weights[f"head.upsampling_layers.1.{part}"] = head
        for ckpt in ckpts:
            saved = torch.load(ckpt, map_location="cpu", weights_only=False)
            missing = set(weights) - set(saved["state_dict"])
            if missing:
                raise KeyError(f"not in Lightning Pose's checkpoint: {sorted(missing)[:3]}")
            saved["state_dict"].update(weights)
            torch.save(saved, ckpt)
        videos = [str(work / "videos" / f"clip_{v}.mp4") for v in MOUSE_VIEWS]

        def predict() -> dict[str, Any]:
            result = Model.from_dir(model_dir).predict_on_video_file_multiview(
                videos, output_dir=work / "lp_preds", compute_metrics=False, reader="opencv")
            frames = [result.predictions[v] for v in MOUSE_VIEWS]
            return {"keypoints_2d": torch.stack([_dlc_xy(df) for df in frames]),
                    "likelihood": torch.stack([_dlc_likelihood(df) for df in frames])}
        return predict
    raise KeyError(name)


def worker(side: str, work: Path, threads: int) -> None:
    """Serve JSON commands on stdin: ``prepare``, ``check``, ``time``, ``quit``."""
    import torch

    reply_fd = os.dup(1)
    os.dup2(2, 1)  # library prints go to stderr; replies to the saved stdout
    reply = os.fdopen(reply_fd, "w", buffering=1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    inputs = torch.load(work / "inputs.pt", weights_only=True)
    make = lp_step if side == "lp" else mvcore_step
    steps: dict[str, Step] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        name = cmd.get("workload", "")
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "prepare":
                steps[name] = make(name, inputs, work)
                for _ in range(cmd["warmup"]):
                    steps[name]()
                result: dict[str, Any] = {"ok": True}
            elif cmd["cmd"] == "check":
                outputs = steps[name]()
                extra = getattr(steps[name], "extra", None)
                if extra is not None:
                    outputs.update(extra())
                path = work / f"out_{side}_{name}.pt"
                torch.save({k: v.detach().float() for k, v in outputs.items()
                            if not k.startswith("_")}, path)
                result = {"ok": True, "path": str(path)}
            elif cmd["cmd"] == "time":
                times, cpu = [], []
                for _ in range(cmd["reps"]):
                    start, start_cpu = time.perf_counter(), _cpu_seconds()
                    out = steps[name]()
                    times += out.get("_times", [time.perf_counter() - start])
                    cpu.append(_cpu_seconds() - start_cpu)
                result = {"ok": True, "times": times, "cpu": cpu}
            else:
                result = {"ok": False, "error": f"unknown command {cmd['cmd']!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator, which stops
            import traceback

            traceback.print_exc()
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.write(json.dumps(result) + "\n")


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (data-loader workers):
    the work done, which other jobs on a shared machine inflate far less than wall time."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# ---------------------------------------------------------------------------------- checks
def _maxdiff(a: Any, b: Any) -> tuple[float, float]:
    """Max |a - b| over finite entries and the relative L2 difference ``|a - b| / |b|``
    (infinite when the NaN patterns differ)."""
    import torch

    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return float("inf"), float("inf")
    fin = torch.isfinite(b)
    if not fin.any():
        return 0.0, 0.0
    d = a[fin].double() - b[fin].double()
    return float(d.abs().max()), float(d.norm() / b[fin].double().norm().clamp_min(1e-300))


def compare(name: str, lp: dict[str, Any], mv: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """One line saying how far the two outputs agree, and how their work differs."""
    import torch

    figures: dict[str, float] = {}
    for key in lp:
        if key in mv:
            figures[f"{key}_abs"], figures[f"{key}_rel"] = _maxdiff(mv[key], lp[key])
    if name == "triangulate":
        text = (f"exact 2D: max diff {figures['points_3d_clean_abs']:.1e} mm; 1 px noise: "
                f"{figures['points_3d_abs']:.2f} mm (both DLT on undistorted points; aniposelib "
                f"solves raw rows by SVD, mvcore conditioned rows by eigh, which weighs noisy "
                f"rows differently) on a {float(lp['points_3d'].abs().max()):.0f} mm scene")
    elif name == "pairwise_loss":
        text = (f"loss rel. diff {figures['loss_rel']:.1e}, gradient rel. L2 diff "
                f"{figures['grad_2d_rel']:.1e} (both 2-view DLT on undistorted points; LP: raw "
                f"rows, float32 SVD; mvcore: conditioned rows, float64 eigh)")
    elif name == "reprojection_loss":
        factor = HEATMAP / (V * K)  # LP's bug B1 scales by V*K*h instead of h*w
        lp_common = float(lp["loss_on_common_points"]) * factor
        mv_common = float(mv["loss_on_common_points"])
        figures["common_rel"] = abs(lp_common - mv_common) / abs(mv_common)
        mv_loss = float(mv["loss"])
        figures["e2e_rel"] = abs(float(lp["loss"]) * factor - mv_loss) / mv_loss
        text = (f"loss on the same reprojected points: rel. diff {figures['common_rel']:.1e} "
                f"after LP's bug-B1 factor {V * K}/{HEATMAP}; end to end the 3D point differs by "
                f"design (LP: mean of the 6 pair triangulations, mvcore: all-view DLT), "
                f"reprojections by up to {figures['reprojected_model_px_abs']:.2f} model px, "
                f"loss by {figures['e2e_rel']:.1%}")
    elif name == "train":
        text = ("not value-checked (separate random initialisations): same data split sizes, "
                "architecture, batch, optimiser, no augmentation, heatmap loss only; LP also "
                "triangulates every camera pair every step (calibrated project), mvcore only "
                "when a 3D loss asks")
    elif name == "aug3d":
        same = torch.equal(lp["images_shape"], mv["images_shape"]) and torch.equal(
            lp["heatmaps_shape"], mv["heatmaps_shape"])
        shape = "x".join(str(int(n)) for n in mv["images_shape"])
        text = (f"{'same' if same else 'DIFFERENT'} shapes (images {shape}); random draws differ, "
                f"so values are not compared; labelled keypoints LP "
                f"{float(lp['keypoints_finite']):.0%}, mvcore {float(mv['keypoints_finite']):.0%},"
                f" of which inside the 256x256 image after augmentation LP "
                f"{float(lp['finite_inside']):.0%}, mvcore {float(mv['finite_inside']):.0%}. "
                f"Both triangulate, scale (0.8-1.2) and "
                f"shift (0.25) in 3D, reproject and warp each view; LP warps the full 1280x1024 "
                f"frame (kornia) then resizes to 256, mvcore decodes the JPEGs at reduced scale, "
                f"resizes to 256 and warps there")
    elif name == "predict":
        diff = (lp["keypoints_2d"] - mv["keypoints_2d"]).norm(dim=-1)
        figures["median_px"], figures["p95_px"] = (float(diff.nanmedian()),
                                                   float(diff.nanquantile(0.95)))
        figures["lp_confidence_max"] = float(lp["likelihood"].nan_to_num(0).max())
        figures["mvcore_confidence_max"] = float(mv["likelihood"].nan_to_num(0).max())
        flat = max(figures["lp_confidence_max"], figures["mvcore_confidence_max"]) < 0.05
        text = (f"same weights (mvcore's copied into LP's checkpoint): 2D predictions differ by "
                f"{figures['median_px']:.2f} px median, {figures['p95_px']:.1f} px p95 (frame "
                f"px; decoding (LP OpenCV, mvcore PyAV) and resizing (LP bilinear, mvcore "
                f"antialiased) differ")
        if flat:
            text += (f"; the 1-epoch model's heatmaps are nearly flat (max confidence LP "
                     f"{figures['lp_confidence_max']:.3f}, mvcore "
                     f"{figures['mvcore_confidence_max']:.3f}), so its 2D positions are argmaxes "
                     f"of noise and not comparable: the `mvt` row checks the network itself")
        text += ("); both include loading the model; mvcore also triangulates and writes a 3D "
                 "CSV")
    else:
        grads = max(figures["grad_view_embeddings_rel"], figures["grad_head_rel"])
        how = ("same weights; mvcore's default `autocast: auto` ran the blocks in bf16 on this "
               "CPU" if float(mv.get("blocks_in_bf16", 0)) else "same weights and function")
        text = (f"{how}: heatmaps rel. diff {figures['heatmaps_rel']:.1e}, "
                f"loss {figures['loss_rel']:.1e}, gradients {grads:.1e}")
    return text, figures


# ---------------------------------------------------------------------------------- orchestrate
class Worker:
    """A worker subprocess speaking JSON lines."""

    def __init__(self, side: str, python: str, work: Path, threads: int,
                 env: dict[str, str]) -> None:
        self.side = side
        self.log = open(work / f"{side}.log", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", side, "--work", str(work),
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
            cwd=str(work))

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker died; see {self.log.name}")
        result = json.loads(line)
        if not result.get("ok"):
            raise RuntimeError(f"{self.side} worker: {result.get('error')} (see {self.log.name})")
        return result

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=60)
        self.log.close()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Check and time the selected workloads; returns one result dict per workload."""
    import torch

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    make_inputs(work / "inputs.pt")
    lp_python = str(args.lp_venv / "bin" / "python")
    if not Path(lp_python).exists():
        sys.exit(f"no Lightning Pose venv at {args.lp_venv}: run with --setup first")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    threads = str(args.threads)
    base_env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                    NUMBA_NUM_THREADS=threads, OPENCV_NUM_THREADS=threads)
    lp_env = dict(base_env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  HF_HUB_CACHE=str(work / "hf-cache"), HF_HOME=str(work / "hf-home"))
    mv = Worker("mvcore", args.mvcore_python, work, args.threads, base_env)
    lp = Worker("lp", lp_python, work, args.threads, lp_env)
    results = []
    try:
        for name in args.only:
            rounds, reps, warmup = WORKLOADS[name]
            rounds = args.rounds or rounds
            mv.ask(cmd="prepare", workload=name, warmup=warmup)  # first: LP's mvt reads its state
            lp.ask(cmd="prepare", workload=name, warmup=warmup)
            if name in SELF_TIMED:  # a check call would be a whole training run
                check, figures = compare(name, {}, {})
            else:
                outs = {w.side: torch.load(w.ask(cmd="check", workload=name)["path"])
                        for w in (lp, mv)}
                check, figures = compare(name, outs["lp"], outs["mvcore"])
            print(f"\n{name}: {check}", flush=True)
            times: dict[str, list[float]] = {"lp": [], "mvcore": []}
            cpu: dict[str, list[float]] = {"lp": [], "mvcore": []}
            load = [os.getloadavg()[0]]
            for r in range(rounds):
                for w in ((lp, mv) if r % 2 == 0 else (mv, lp)):
                    answer = w.ask(cmd="time", workload=name, reps=reps)
                    times[w.side] += answer["times"]
                    cpu[w.side] += answer["cpu"]
                load.append(os.getloadavg()[0])
                print(f"  round {r + 1}/{rounds}: LP {statistics.median(times['lp']):.4f} s, "
                      f"mvcore {statistics.median(times['mvcore']):.4f} s (median so far; CPU "
                      f"{statistics.median(cpu['lp']):.4f} / "
                      f"{statistics.median(cpu['mvcore']):.4f} s per call), "
                      f"load {load[-1]:.2f}", flush=True)
            res = {"workload": name, "title": TITLES[name], "check": check, "figures": figures,
                   "rounds": rounds, "reps": reps, "load_min": min(load), "load_max": max(load)}
            for side in ("lp", "mvcore"):
                res[f"{side}_median_s"] = statistics.median(times[side])
                res[f"{side}_min_s"] = min(times[side])
                res[f"{side}_times"] = times[side]
                res[f"{side}_cpu_median_s"] = statistics.median(cpu[side])  # per call
            res["ratio_median"] = res["lp_median_s"] / res["mvcore_median_s"]
            res["ratio_min"] = res["lp_min_s"] / res["mvcore_min_s"]
            results.append(res)
    finally:
        mv.close()
        lp.close()
    return results


#: ``--mvt-options`` networks: backbone, views, image side, keypoints, batch
MVT_CASES: dict[str, tuple[str, int, int, int, int]] = {
    "vits": ("vits_dino", MVT_VIEWS, MODEL, K, MVT_BATCH),  # the ``mvt`` workload
    "example": ("vit_micro_scratch", 3, 128, 10, 8),  # the built-in example's network
}
#: the multi-view transformer's speed options measured by ``--mvt-options`` (label -> params)
MVT_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "attention: math": {"attention": "math"},
    "compile: blocks": {"compile": "blocks"},
    "channels_last: true": {"channels_last": True},
    "autocast: bf16": {"autocast": "bf16"},
    "autocast: off": {"autocast": "off"},
}


def mvt_options(args: argparse.Namespace) -> str:
    """Time mvcore's ViT-S MVT step (the ``mvt`` workload) under each ``MVT_OPTIONS`` entry,
    alternating the variants every round in this process; outputs checked against defaults."""
    import torch
    from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

    from mvcore import Context

    torch.set_num_threads(args.threads)
    backbone, views, side, keypoints, batch = MVT_CASES[args.mvt_case]
    ctx = Context(view_names=tuple(f"cam{v}" for v in range(views)),
                  keypoint_names=tuple(f"kp{k}" for k in range(keypoints)),
                  image_height=side, image_width=side, downsample_factor=2, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, views, 3, side, side, generator=g)
    target = torch.rand(batch, views, keypoints, side // 4, side // 4, generator=g)
    steps, first, reference = {}, {}, None
    for label, options in MVT_OPTIONS.items():
        if label not in args.mvt_only:
            continue
        model = MultiviewTransformer(MultiviewTransformerParams(
            backbone=backbone, backbone_pretrained=False, **options), ctx).train()

        def step(model: Any = model) -> Any:
            model.zero_grad(set_to_none=True)
            heatmaps = model(images)
            _mse(heatmaps, target).backward()
            return heatmaps.detach()

        start = time.perf_counter()
        out = step()  # the first step (compilation happens here)
        first[label] = time.perf_counter() - start
        step()
        reference = out if reference is None else reference
        diff = float((out - reference).norm() / reference.norm())
        steps[label] = (step, diff)
        print(f"{label}: first step {first[label]:.1f} s, heatmaps rel. diff {diff:.1e}",
              flush=True)
    times: dict[str, list[float]] = {label: [] for label in steps}
    cpu: dict[str, list[float]] = {label: [] for label in steps}
    load = [os.getloadavg()[0]]
    rounds = args.rounds or 9
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for label in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[label][0]()
            times[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
        load.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{rounds} load {load[-1]:.2f}", flush=True)
    base = statistics.median(times["defaults"])
    base_cpu = statistics.median(cpu["defaults"])
    lines = [
        f"Date {date.today().isoformat()}; {platform.machine()} {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} torch thread(s); load average (1 min) "
        f"{min(load):.2f}-{max(load):.2f}. Command: `python bench/bench_vs_lightning_pose.py "
        f"--mvt-options --mvt-case {args.mvt_case} --threads {args.threads} --rounds {rounds}` "
        f"({backbone}, {views} views of {side}x{side}, batch {batch}, K={keypoints}, fwd+bwd, "
        f"training mode; the variants alternate every round). CPU s = the process's CPU time "
        f"per step: with {args.threads} thread(s) it is the work done, which other jobs on the "
        f"machine inflate far less than the wall time.",
        "",
        "| option | median s/step | min s | vs defaults | median CPU s/step | vs defaults (CPU) "
        "| first step s | heatmaps rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, ts in times.items():
        med, med_cpu = statistics.median(ts), statistics.median(cpu[label])
        lines.append(f"| {label} | {med:.3f} | {min(ts):.3f} | {base / med:.2f}x | "
                     f"{med_cpu:.3f} | {base_cpu / med_cpu:.2f}x | "
                     f"{first[label]:.1f} | {steps[label][1]:.1e} |")
    return "\n".join(lines)


#: workloads also shown as a rate: (units per call, unit)
RATES = {"train": (1, "steps/s"), "predict": (PREDICT_FRAMES, "frame sets/s"),
         "aug3d": (AUG_SAMPLES, "samples/s")}


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results as the markdown block kept in ``bench/RESULTS.md``."""
    import torch

    loads = [r["load_min"] for r in results] + [r["load_max"] for r in results]
    lines = [
        f"Date {date.today().isoformat()}; machine {platform.machine()} "
        f"{os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}, "
        f"{args.threads} torch thread(s); load average (1 min) {min(loads):.2f}-{max(loads):.2f}"
        f" during the runs. Command (repo root): `python bench/bench_vs_lightning_pose.py "
        f"--threads {args.threads}{' --rounds ' + str(args.rounds) if args.rounds else ''} "
        f"--only {' '.join(args.only)}`.",
        "",
        "| workload | Lightning Pose median (min) | mvcore median (min) | ratio median (min) "
        "| CPU s per call LP / mvcore | rounds x calls | check |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rate = RATES.get(r["workload"])
        for side in ("lp", "mvcore") if rate else ():
            r[f"{side}_rate"] = f" = {rate[0] / r[f'{side}_median_s']:.2f} {rate[1]}"
        lines.append(
            f"| {r['title']} | {_fmt(r['lp_median_s'])}{r.get('lp_rate', '')} "
            f"({_fmt(r['lp_min_s'])}) | "
            f"{_fmt(r['mvcore_median_s'])}{r.get('mvcore_rate', '')} "
            f"({_fmt(r['mvcore_min_s'])}) | "
            f"{r['ratio_median']:.1f}x ({r['ratio_min']:.1f}x) | "
            f"{_fmt(r['lp_cpu_median_s'])} / {_fmt(r['mvcore_cpu_median_s'])}"
            f"{' (whole runs)' if r['workload'] in SELF_TIMED else ''} | "
            f"{r['rounds']} x {r['reps']} | "
            f"{r['check']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true",
                        help="create Lightning Pose's venv at --lp-venv and exit")
    parser.add_argument("--lp-venv", type=Path, default=DEFAULT_LP_VENV)
    parser.add_argument("--mvcore-python", default=sys.executable)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="folder for inputs, outputs, logs and the local HF cache")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per program")
    parser.add_argument("--rounds", type=int, default=0, help="override every workload's rounds")
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--mvt-options", action="store_true",
                        help="time mvcore's multi-view transformer speed options instead")
    parser.add_argument("--mvt-case", choices=list(MVT_CASES), default="vits")
    parser.add_argument("--mvt-only", nargs="+", choices=list(MVT_OPTIONS),
                        default=list(MVT_OPTIONS), help="option variants to time")
    parser.add_argument("--worker", choices=["lp", "mvcore"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.work, args.threads)
        return
    if args.setup:
        setup_lp_venv(args.lp_venv)
        return
    if args.mvt_options:
        print(mvt_options(args))
        return
    results = run(args)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print()
    print(markdown(results, args))


if __name__ == "__main__":
    main()
