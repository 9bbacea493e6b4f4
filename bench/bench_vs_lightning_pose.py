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
  and 1e-12, so both run the same function.

Lightning Pose's environment (outside the repo; ~3 GB, torch comes from the local wheel)::

    python bench/bench_vs_lightning_pose.py --setup    # ~/.cache/mvcore-bench/lp-venv

which runs::

    python3.11 -m venv ~/.cache/mvcore-bench/lp-venv
    ~/.cache/mvcore-bench/lp-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    ~/.cache/mvcore-bench/lp-venv/bin/pip install --no-deps lightning-pose==2.4.3
    ~/.cache/mvcore-bench/lp-venv/bin/pip install <LP_RUNTIME_DEPS below>

Run (repo root, mvcore's venv)::

    python bench/bench_vs_lightning_pose.py                    # all workloads, 1 torch thread
    python bench/bench_vs_lightning_pose.py --only mvt --rounds 7
    python bench/bench_vs_lightning_pose.py --mvt-options --threads 2   # mvcore's MVT options

Re-running picks up whatever mvcore is installed (it calls the public functions).
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

#: name -> (rounds, calls per side per round, warm-up calls)
WORKLOADS: dict[str, tuple[int, int, int]] = {
    "triangulate": (10, 5, 3),
    "pairwise_loss": (10, 5, 3),
    "reprojection_loss": (6, 2, 1),
    "mvt": (5, 1, 1),
}
TITLES = {
    "triangulate": "triangulate B=64, V=4, K=17 (all views, DLT), forward",
    "pairwise_loss": "pairwise 3D loss end to end (2D -> pairwise triangulation -> loss), fwd+bwd",
    "reprojection_loss": "reprojected-heatmap 3D loss end to end, fwd+bwd (64x64 maps)",
    "mvt": "multi-view transformer ViT-S/16, 2 views of 256x256, batch 2, fwd+bwd",
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
        from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

        mctx = Context(view_names=tuple(f"cam{v}" for v in range(MVT_VIEWS)),
                       keypoint_names=tuple(f"kp{k}" for k in range(K)),
                       image_height=MODEL, image_width=MODEL, downsample_factor=2, seed=0)
        model = MultiviewTransformer(
            MultiviewTransformerParams(backbone="vits_dino", backbone_pretrained=False), mctx
        ).train()
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   work / "mvt_mvcore_state.pt")
        images, target = inp["images"], inp["mvt_target"]

        def mvt() -> dict[str, Any]:
            model.zero_grad(set_to_none=True)
            heatmaps = model(images)  # (B, V, K, h, w)
            loss = _mse(heatmaps, target)
            loss.backward()
            return {"loss": loss.detach(), "heatmaps": heatmaps.detach()[0],
                    "grad_view_embeddings": model.view_embeddings.grad,
                    "grad_head": model.head.layers[1].weight.grad}
        return mvt
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
                torch.save({k: v.detach().float() for k, v in outputs.items()}, path)
                result = {"ok": True, "path": str(path)}
            elif cmd["cmd"] == "time":
                times = []
                for _ in range(cmd["reps"]):
                    start = time.perf_counter()
                    steps[name]()
                    times.append(time.perf_counter() - start)
                result = {"ok": True, "times": times}
            else:
                result = {"ok": False, "error": f"unknown command {cmd['cmd']!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator, which stops
            import traceback

            traceback.print_exc()
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.write(json.dumps(result) + "\n")


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
    else:
        grads = max(figures["grad_view_embeddings_rel"], figures["grad_head_rel"])
        text = (f"same weights and function: heatmaps rel. diff {figures['heatmaps_rel']:.1e}, "
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
            outs = {w.side: torch.load(w.ask(cmd="check", workload=name)["path"])
                    for w in (lp, mv)}
            check, figures = compare(name, outs["lp"], outs["mvcore"])
            print(f"\n{name}: {check}", flush=True)
            times: dict[str, list[float]] = {"lp": [], "mvcore": []}
            load = [os.getloadavg()[0]]
            for r in range(rounds):
                for w in ((lp, mv) if r % 2 == 0 else (mv, lp)):
                    times[w.side] += w.ask(cmd="time", workload=name, reps=reps)["times"]
                load.append(os.getloadavg()[0])
                print(f"  round {r + 1}/{rounds}: LP {statistics.median(times['lp']):.4f} s, "
                      f"mvcore {statistics.median(times['mvcore']):.4f} s (median so far), "
                      f"load {load[-1]:.2f}", flush=True)
            res = {"workload": name, "title": TITLES[name], "check": check, "figures": figures,
                   "rounds": rounds, "reps": reps, "load_min": min(load), "load_max": max(load)}
            for side in ("lp", "mvcore"):
                res[f"{side}_median_s"] = statistics.median(times[side])
                res[f"{side}_min_s"] = min(times[side])
                res[f"{side}_times"] = times[side]
            res["ratio_median"] = res["lp_median_s"] / res["mvcore_median_s"]
            res["ratio_min"] = res["lp_min_s"] / res["mvcore_min_s"]
            results.append(res)
    finally:
        mv.close()
        lp.close()
    return results


#: the multi-view transformer's speed options measured by ``--mvt-options`` (label -> params)
MVT_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "attention: math": {"attention": "math"},
    "compile: blocks": {"compile": "blocks"},
    "channels_last: true": {"channels_last": True},
    "autocast: bf16": {"autocast": "bf16"},
}


def mvt_options(args: argparse.Namespace) -> str:
    """Time mvcore's ViT-S MVT step (the ``mvt`` workload) under each ``MVT_OPTIONS`` entry,
    alternating the variants every round in this process; outputs checked against defaults."""
    import torch
    from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

    from mvcore import Context

    torch.set_num_threads(args.threads)
    ctx = Context(view_names=tuple(f"cam{v}" for v in range(MVT_VIEWS)),
                  keypoint_names=tuple(f"kp{k}" for k in range(K)),
                  image_height=MODEL, image_width=MODEL, downsample_factor=2, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(MVT_BATCH, MVT_VIEWS, 3, MODEL, MODEL, generator=g)
    target = torch.rand(MVT_BATCH, MVT_VIEWS, K, HEATMAP, HEATMAP, generator=g)
    steps, first, reference = {}, {}, None
    for label, options in MVT_OPTIONS.items():
        model = MultiviewTransformer(MultiviewTransformerParams(
            backbone="vits_dino", backbone_pretrained=False, **options), ctx).train()

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
    load = [os.getloadavg()[0]]
    rounds = args.rounds or 5
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for label in order:
            start = time.perf_counter()
            steps[label][0]()
            times[label].append(time.perf_counter() - start)
        load.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{rounds} load {load[-1]:.2f}", flush=True)
    base = statistics.median(times["defaults"])
    lines = [
        f"Date {date.today().isoformat()}; {platform.machine()} {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} torch thread(s); load average (1 min) "
        f"{min(load):.2f}-{max(load):.2f}. Command: `python bench/bench_vs_lightning_pose.py "
        f"--mvt-options --threads {args.threads} --rounds {rounds}` (ViT-S/16 MVT, 2 views of "
        f"256x256, batch 2, K={K}, fwd+bwd, training mode; variants alternate every round).",
        "",
        "| option | median s/step | min s | vs defaults | first step s | heatmaps rel. diff |",
        "|---|---|---|---|---|---|",
    ]
    for label, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {label} | {med:.3f} | {min(ts):.3f} | {base / med:.2f}x | "
                     f"{first[label]:.1f} | {steps[label][1]:.1e} |")
    return "\n".join(lines)


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
        "| rounds x calls | check |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['title']} | {_fmt(r['lp_median_s'])} ({_fmt(r['lp_min_s'])}) | "
            f"{_fmt(r['mvcore_median_s'])} ({_fmt(r['mvcore_min_s'])}) | "
            f"{r['ratio_median']:.1f}x ({r['ratio_min']:.1f}x) | {r['rounds']} x {r['reps']} | "
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
