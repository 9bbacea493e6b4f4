"""Benchmark the mv-losses losses: forward + backward wall time on CPU.

Run from the repo root: ``python bench/bench_losses.py [--runs 10]``. Problem: B=64 frames,
V=4 views, K=17 keypoints (N=68), model input 256x256 with 64x64 heatmaps, a random calibrated
4-camera rig (1280x1024 frames, radial distortion) and 2D predictions = projections of random
3D poses plus 2 px noise. Prints the median (and min) time of one forward + backward of each
loss; for the supervised 3D losses also with the triangulation that produces their inputs
from the 2D predictions (as the model does every step).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from mv_losses.consistency import MultiviewReprojectionLoss
from mv_losses.heatmap import HeatmapJSLoss, HeatmapKLLoss, HeatmapMSELoss
from mv_losses.pca import PCAMultiviewLoss, PCASingleviewLoss
from mv_losses.projection import PairwiseProjectionsLoss, ReprojectionHeatmapLoss
from mv_losses.temporal import TemporalLoss

from mvcore import Context
from mvcore.data.heatmaps import render_heatmaps
from mvcore.geometry import (
    CameraTensors,
    project_points,
    rodrigues_to_matrix,
    triangulate,
    triangulate_pairs,
)

B, V, K = 64, 4, 17
FRAME = (1024, 1280)  # (H, W) frame pixels
MODEL = (256, 256)
HEATMAP = (64, 64)


def make_rig(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """V cameras 2 m from the origin looking at it: ``(V,3,3)``, ``(V,3,4)``, ``(V,5)``."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(V, dtype=torch.float64) * (2 * torch.pi / V)
    centers = torch.stack(
        [2000 * angles.cos(), 2000 * angles.sin(), torch.full((V,), 900.0, dtype=torch.float64)],
        -1,
    )
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    rot = torch.stack([x, torch.linalg.cross(z, x), z], dim=-2)
    rot = rodrigues_to_matrix(0.05 * torch.randn(V, 3, generator=g, dtype=torch.float64)) @ rot
    ext = torch.cat([rot, -(rot @ centers.unsqueeze(-1))], dim=-1)
    k = torch.zeros(V, 3, 3, dtype=torch.float64)
    k[:, 0, 0] = k[:, 1, 1] = 1300.0
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = 639.5, 511.5, 1.0
    d = torch.zeros(V, 5, dtype=torch.float64)
    d[:, 0] = -0.08
    return k.float(), ext.float(), d.float()


def train_poses(cams: tuple[torch.Tensor, ...], n: int = 300) -> np.ndarray:
    """Stand-in training labels: projections of random 3D poses (a mean shape, 6 body modes
    and a translation), ``(n, V, K, 2)`` frame pixels."""
    g = torch.Generator().manual_seed(1)
    shape = 60 * torch.randn(K, 3, generator=g)
    modes = 15 * torch.randn(6, K, 3, generator=g)
    latent = torch.randn(n, 6, generator=g)
    shift = 40 * torch.randn(n, 1, 3, generator=g)
    pose = shape + torch.einsum("nm,mkc->nkc", latent, modes) + shift
    return project_points(pose, *cams).double().numpy()


def timed(fn: Callable[[], torch.Tensor], runs: int) -> tuple[float, float]:
    """Median and min milliseconds of ``fn().backward()`` after 3 warm-up calls."""
    for _ in range(3):
        fn().backward()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn().backward()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cams = make_rig()
    intr, extr, dist = (c.expand(B, *c.shape) for c in cams)
    g = torch.Generator().manual_seed(2)
    pose = 60 * torch.randn(B, K, 3, generator=g)
    clean = project_points(pose, *cams)  # (B, V, K, 2) frame px
    pred_2d = clean + 2.0 * torch.randn(clean.shape, generator=g)
    scale = torch.tensor([MODEL[1] / FRAME[1], MODEL[0] / FRAME[0]])
    targets = render_heatmaps(clean.reshape(B, V * K, 2) * scale, MODEL, HEATMAP)
    logits = torch.randn(B, V * K, *HEATMAP, generator=g)
    confidences = 0.5 + 0.5 * torch.rand(B, V * K, generator=g)
    train_keypoints = train_poses(cams)
    context = Context(
        view_names=tuple(f"cam{v}" for v in range(V)),
        keypoint_names=tuple(f"kp{k}" for k in range(K)),
        image_height=MODEL[0],
        image_width=MODEL[1],
        downsample_factor=2,  # heatmaps (64, 64) = (256, 256) / 2**2
        has_calibration=True,
        labels_source=lambda: train_keypoints,
    )
    assert context.heatmap_size == HEATMAP
    cameras = CameraTensors(intr, extr, dist)

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone().requires_grad_(True)

    pairwise = PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(), context)
    reproj = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), context)
    multiview = MultiviewReprojectionLoss(MultiviewReprojectionLoss.Params(epsilon=0.0), context)
    pred_3d = triangulate_pairs(pred_2d, *cams)
    reprojected = project_points(triangulate(pred_2d, *cams), *cams).reshape(B, V * K, 2) * scale

    def pairwise_only() -> torch.Tensor:
        return pairwise(keypoints_targ_3d=pose, keypoints_pred_3d=leaf(pred_3d), stage="train")[0]

    def pairwise_with_triangulation() -> torch.Tensor:
        points = leaf(pred_2d)
        points_3d = triangulate_pairs(points, intr, extr, dist)
        return pairwise(keypoints_targ_3d=pose, keypoints_pred_3d=points_3d, stage="train")[0]

    def reproj_only() -> torch.Tensor:
        return reproj(
            heatmaps_targ=targets, keypoints_pred_2d_reprojected=leaf(reprojected), stage="train"
        )[0]

    def reproj_with_triangulation() -> torch.Tensor:
        points = leaf(pred_2d)
        points_3d = triangulate(points, intr, extr, dist)
        model_px = project_points(points_3d, intr, extr, dist).reshape(B, V * K, 2) * scale
        return reproj(
            heatmaps_targ=targets, keypoints_pred_2d_reprojected=model_px, stage="train"
        )[0]

    def multiview_consistency() -> torch.Tensor:
        return multiview(
            keypoints_pred=leaf(pred_2d).reshape(B, -1),
            cameras=cameras,
            confidences=confidences,
            stage="train",
        )[0]

    # small-tensor losses first: the ~70 MB heatmap tensors slow down what runs after them
    cases: list[tuple[str, Callable[[], torch.Tensor]]] = [
        ("supervised_pairwise_projections (loss on (B,P,K,3))", pairwise_only),
        ("supervised_pairwise_projections + triangulate_pairs", pairwise_with_triangulation),
        ("multiview_reprojection (triangulate + reproject inside)", multiview_consistency),
    ]
    single = PCASingleviewLoss(PCASingleviewLoss.Params(components_to_keep=0.99), context)
    multi = PCAMultiviewLoss(PCAMultiviewLoss.Params(), context)
    temporal = TemporalLoss(TemporalLoss.Params(epsilon=5.0), context)
    flat = pred_2d.reshape(B, -1)
    cases += [
        (
            "pca_singleview (per-view PCAs)",
            lambda: single(keypoints_pred=leaf(flat), stage="train")[0],
        ),
        ("pca_multiview", lambda: multi(keypoints_pred=leaf(flat), stage="train")[0]),
        (
            "temporal",
            lambda: temporal(keypoints_pred=leaf(flat), confidences=confidences, stage="train")[0],
        ),
        ("supervised_reprojection_heatmap_mse (loss on (B,N,2))", reproj_only),
        ("supervised_reprojection_heatmap_mse + triangulate/project", reproj_with_triangulation),
    ]

    for name, cls in (
        ("heatmap_mse", HeatmapMSELoss),
        ("heatmap_kl", HeatmapKLLoss),
        ("heatmap_js", HeatmapJSLoss),
    ):
        loss = cls(cls.Params(), context)

        def heatmap_case(loss=loss) -> torch.Tensor:
            pred = leaf(logits).flatten(-2).softmax(-1).reshape_as(logits)
            return loss(heatmaps_targ=targets, heatmaps_pred=pred, stage="train")[0]

        cases.append((name, heatmap_case))

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"B={B} V={V} K={K} heatmaps {HEATMAP[0]}x{HEATMAP[1]}, float32, {args.runs} runs")
    print(f"{'loss':62s} {'median ms':>10s} {'min ms':>8s}")
    for name, fn in cases:
        median, low = timed(fn, args.runs)
        print(f"{name:62s} {median:10.2f} {low:8.2f}")


if __name__ == "__main__":
    main()
