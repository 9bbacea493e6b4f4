"""Benchmark batched DLT triangulation against a naive per-point loop; mouse4cam figures.

Run from the repo root: ``python bench/bench_triangulation.py [--runs 30]``. First (issue 16)
the closed-form solve against the ``eigh`` solver it replaced (``mvcore.geometry._reference``),
alternating, 1 torch thread, on ``bench_vs_lightning_pose.py``'s inputs: ``triangulate``
forward and the pairwise 3D loss end to end (2D -> ``triangulate_pairs`` ->
``supervised_pairwise_projections``, forward + backward), with the load average. Then the
median wall time of one batched ``triangulate`` call (forward, and forward + backward), of
``triangulate_pairs``, and of naive Python loops that solve one small SVD per (frame, keypoint)
(and per pair), with the speed-up ratios. Then, if ``../shared/data/mouse4cam`` exists, the
per-view median reprojection errors of DLT (and of ``refine_points``) on that real data.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvcore.geometry import _reference as reference
from mvcore.geometry import (
    load_calibration,
    project_points,
    refine_points,
    reprojection_error,
    rodrigues_to_matrix,
    triangulate,
    triangulate_pairs,
    undistort_points,
)

ROOT = Path(__file__).resolve().parents[1]
MOUSE4CAM = ROOT / ".." / "shared" / "data" / "mouse4cam"


def make_problem(b: int, v: int, k: int, dtype: torch.dtype, seed: int = 0) -> tuple:
    """Random rig ~6 units from the origin, noisy projected points, ~10% missing views."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(v, 3, generator=g, dtype=torch.float64)
    centers[:, 2] = centers[:, 2].abs() + 0.3
    centers = 6.0 * centers / centers.norm(dim=-1, keepdim=True)
    z = -centers / centers.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z), z)
    x = x / x.norm(dim=-1, keepdim=True)
    rot = torch.stack([x, torch.linalg.cross(z, x), z], dim=-2)
    rot = rodrigues_to_matrix(0.05 * torch.randn(v, 3, generator=g, dtype=torch.float64)) @ rot
    ext = torch.cat([rot, -(rot @ centers.unsqueeze(-1))], dim=-1)
    intr = torch.tensor(
        [[800.0, 0.0, 640.0], [0.0, 800.0, 512.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    ).repeat(v, 1, 1)
    dist = torch.zeros(v, 5, dtype=torch.float64)
    dist[:, 0] = -0.25
    dist[:, 1] = 0.05
    pts3d = torch.rand(b, k, 3, generator=g, dtype=torch.float64) * 2 - 1
    pix = project_points(pts3d, intr, ext, dist)
    pix = pix + torch.randn(pix.shape, generator=g, dtype=torch.float64)
    missing = torch.rand(b, v, k, generator=g) < 0.1
    pix[missing] = float("nan")
    return tuple(t.to(dtype) for t in (pix, intr, ext, dist))


def time_calls(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2) -> dict:
    """Wall times (s) of each function, called round-robin so load bursts hit all alike.

    Returns ``{name: (median, min)}`` over ``runs`` rounds after ``warmup`` rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def lp_problem(b: int = 64, v: int = 4, k: int = 17) -> tuple:
    """``bench_vs_lightning_pose.py``'s inputs: 4 cameras on a 2 m ring, 1300 px, k1 = -0.08,
    poses of 60 mm spread, 1 px noise; float32 ``(points (B, V, K, 2), intrinsics, extrinsics,
    distortions, pose (B, K, 3))``."""
    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    angles = torch.arange(v, dtype=f64) * (2 * torch.pi / v)
    centers = torch.stack([2000 * angles.cos(), 2000 * angles.sin(),
                           torch.full((v,), 900.0, dtype=f64)], -1)
    z = -centers / centers.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=f64).expand_as(z), z)
    x = x / x.norm(dim=-1, keepdim=True)
    rot = torch.stack([x, torch.linalg.cross(z, x), z], dim=-2)
    rot = rodrigues_to_matrix(0.05 * torch.randn(v, 3, generator=g, dtype=f64)) @ rot
    ext = torch.cat([rot, -(rot @ centers.unsqueeze(-1))], dim=-1)
    intr = torch.zeros(v, 3, 3, dtype=f64)
    intr[:, 0, 0] = intr[:, 1, 1] = 1300.0
    intr[:, 0, 2], intr[:, 1, 2], intr[:, 2, 2] = 639.5, 511.5, 1.0
    dist = torch.zeros(v, 5, dtype=f64)
    dist[:, 0] = -0.08
    pose = 60 * torch.randn(b, k, 3, generator=g, dtype=f64)
    pix = project_points(pose, intr, ext, dist)
    pix = pix + torch.randn(pix.shape, generator=g, dtype=f64)
    return tuple(t.float() for t in (pix, intr, ext, dist, pose))


def pairwise_loss(num_views: int, num_keypoints: int) -> Any:
    """mv-losses' pairwise 3D loss (default parameters) for ``lp_problem``'s rig: a calibrated
    256x256 model input of ``num_views`` views and ``num_keypoints`` keypoints."""
    from mv_losses.projection import PairwiseProjectionsLoss

    from mvcore import Context

    ctx = Context(view_names=tuple(f"cam{i}" for i in range(num_views)),
                  keypoint_names=tuple(f"kp{i}" for i in range(num_keypoints)),
                  image_height=256, image_width=256, downsample_factor=2, has_calibration=True)
    return PairwiseProjectionsLoss(PairwiseProjectionsLoss.Params(), ctx)


def bench_vs_reference(runs: int) -> None:
    """The closed-form solve against the eigh solver it replaced, alternating, same inputs."""
    pix, intr, ext, dist, pose = lp_problem()
    b, v, k, _ = pix.shape
    loss_fn = pairwise_loss(v, k)

    def pairwise(solve: Callable[..., torch.Tensor]) -> Callable[[], tuple]:
        def step() -> tuple:
            leaf = pix.clone().requires_grad_()
            pred = solve(leaf, intr, ext, dist)
            loss = loss_fn(keypoints_targ_3d=pose, keypoints_pred_3d=pred, stage="train")[0]
            loss.backward()
            return loss.detach(), leaf.grad
        return step

    fns = {
        "triangulate, forward: eigh (before)":
            lambda: reference.triangulate(pix, intr, ext, dist),
        "triangulate, forward: closed form": lambda: triangulate(pix, intr, ext, dist),
        "pairwise 3D loss end to end, fwd+bwd: eigh (before)": pairwise(
            reference.triangulate_pairs),
        "pairwise 3D loss end to end, fwd+bwd: closed form": pairwise(triangulate_pairs),
    }
    names = list(fns)
    tri = (fns[names[1]]() - fns[names[0]]()).abs().nan_to_num(0.0).max().item()
    (loss_a, grad_a), (loss_b, grad_b) = fns[names[2]](), fns[names[3]]()
    for fn in fns.values():
        for _ in range(3):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    load = os.getloadavg()
    for i in range(runs):  # the order reversed every other round
        for name in names if i % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.thread_time()
            fns[name]()
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()
    print(f"\n## closed form vs eigh (mvcore.geometry._reference), B={b} V={v} K={k} float32 "
          f"in, {torch.get_num_threads()} thread(s), {runs} alternating rounds; load average "
          f"{load[0]:.2f} before, {load_after[0]:.2f} after")
    print("| what | wall median (ms) | wall min (ms) | thread CPU median (ms) |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {1e3 * statistics.median(wall[name]):.3f} | "
              f"{1e3 * min(wall[name]):.3f} | {1e3 * statistics.median(cpu[name]):.3f} |")
    print(f"max |closed form - eigh|: points {tri:.1e} mm, pairwise loss "
          f"{abs(float(loss_a - loss_b)):.1e} mm, its 2D gradient "
          f"{(grad_a - grad_b).abs().max().item():.1e}")


def _undistort_np(pix: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """One pixel -> undistorted normalised coords, fixed-point iteration (OpenCV style)."""
    xd = np.linalg.solve(k, np.array([pix[0], pix[1], 1.0]))
    xd = xd[:2] / xd[2]
    k1, k2, p1, p2, k3 = d
    x = xd.copy()
    for _ in range(20):
        r2 = x @ x
        rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        dx = np.array(
            [
                2 * p1 * x[0] * x[1] + p2 * (r2 + 2 * x[0] ** 2),
                p1 * (r2 + 2 * x[1] ** 2) + 2 * p2 * x[0] * x[1],
            ]
        )
        x = (xd - dx) / rad
    return x


def naive_numpy(
    pix: np.ndarray,
    intr: np.ndarray,
    ext: np.ndarray,
    dist: np.ndarray,
    pairs: bool = False,
    conditioned: bool = True,
) -> np.ndarray:
    """Per (frame, keypoint[, pair]) Python loop: undistort each view, one numpy SVD each.

    ``conditioned``: the rows are written in the frame of the cameras taking part (centroid of
    their centres, RMS spread), as ``mvcore.geometry.triangulate`` documents; else the textbook
    rows ``x P3 - P1`` in world units (aniposelib, Lightning Pose).
    """
    b, v, k, _ = pix.shape
    centers = np.stack([-ext[c, :, :3].T @ ext[c, :, 3] for c in range(v)])
    subsets = list(itertools.combinations(range(v), 2)) if pairs else [tuple(range(v))]
    out = np.full((b, len(subsets), k, 3), np.nan)
    for i in range(b):
        for j in range(k):
            norm = [
                None
                if np.isnan(pix[i, c, j]).any()
                else _undistort_np(pix[i, c, j], intr[c], dist[c])
                for c in range(v)
            ]
            for s, views in enumerate(subsets):
                seen = [c for c in views if norm[c] is not None]
                if len(seen) < 2:
                    continue
                origin, spread = np.zeros(3), 1.0
                if conditioned:
                    origin = centers[seen].mean(0)
                    spread = np.sqrt(((centers[seen] - origin) ** 2).sum(1).mean()) or 1.0
                frame = np.eye(4)
                frame[:3, :3] *= spread
                frame[:3, 3] = origin
                rows = []
                for c in seen:
                    p = ext[c] @ frame
                    rows += [norm[c][0] * p[2] - p[0], norm[c][1] * p[2] - p[1]]
                h = np.linalg.svd(np.asarray(rows))[2][-1]
                out[i, s, j] = origin + spread * h[:3] / h[3]
    return out if pairs else out[:, 0]


def naive_torch(
    pix: torch.Tensor, intr: torch.Tensor, ext: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    """Batched undistortion, then one ``torch.linalg.svd`` per (frame, keypoint): LP's style."""
    xy, ok = undistort_points(pix, intr, dist)
    b, v, k, _ = pix.shape
    outs = []
    for i in range(b):
        for j in range(k):
            views = ok[i, :, j].nonzero().flatten()
            if views.numel() < 2:
                outs.append(torch.full((3,), float("nan"), dtype=pix.dtype))
                continue
            p = ext[views]
            a = (xy[i, views, j].unsqueeze(-1) * p[:, 2:3] - p[:, :2]).reshape(-1, 4)
            h = torch.linalg.svd(a)[2][-1]
            outs.append(h[:3] / h[3])
    return torch.stack(outs).reshape(b, k, 3)


def bench(b: int, v: int, k: int, runs: int, dtype: torch.dtype) -> None:
    pix, intr, ext, dist = make_problem(b, v, k, dtype)
    name = str(dtype).replace("torch.", "")

    def fwd() -> torch.Tensor:
        return triangulate(pix, intr, ext, dist)

    leaf = pix.clone().requires_grad_()

    def fwd_bwd() -> None:
        leaf.grad = None
        triangulate(leaf, intr, ext, dist).nan_to_num(0.0).sum().backward()

    def pairs_fwd() -> torch.Tensor:
        return triangulate_pairs(pix, intr, ext, dist)

    def pairs_fwd_bwd() -> None:
        leaf.grad = None
        triangulate_pairs(leaf, intr, ext, dist).nan_to_num(0.0).sum().backward()

    np_args = [t.double().numpy() for t in (pix, intr, ext, dist)]
    naive_runs = max(3, runs // 10)
    fast = time_calls(
        {
            "triangulate, forward": fwd,
            "triangulate, forward + backward": fwd_bwd,
            "triangulate_pairs (P=6), forward": pairs_fwd,
            "triangulate_pairs, forward + backward": pairs_fwd_bwd,
        },
        runs,
    )
    slow = time_calls(
        {
            f"naive numpy loop, all views ({b * k} SVDs)": lambda: naive_numpy(*np_args),
            f"naive torch loop, all views ({b * k} SVDs)": lambda: naive_torch(
                pix, intr, ext, dist
            ),
            f"naive numpy loop, pairs ({b * k * v * (v - 1) // 2} SVDs)": lambda: naive_numpy(
                *np_args, pairs=True
            ),
        },
        naive_runs,
        warmup=1,
    )

    ref = torch.from_numpy(naive_numpy(*np_args))
    dev = (fwd().double() - ref).abs().nan_to_num(0.0).max().item()
    ref_p = torch.from_numpy(naive_numpy(*np_args, pairs=True))
    dev_p = (pairs_fwd().double() - ref_p).abs().nan_to_num(0.0).max().item()
    same_nan = torch.equal(fwd().isnan(), ref.isnan()) and torch.equal(
        pairs_fwd().isnan(), ref_p.isnan()
    )

    print(f"\n## B={b} V={v} K={k} {name}: {runs} rounds (naive loops: {naive_runs})")
    print("| what | median (ms) | min (ms) |")
    print("|---|---|---|")
    for label, (med, best) in {**fast, **slow}.items():
        print(f"| {label} | {1e3 * med:.2f} | {1e3 * best:.2f} |")
    (tri_m, tri_b), (pair_m, pair_b) = (
        fast["triangulate, forward"],
        fast["triangulate_pairs (P=6), forward"],
    )
    (np_m, np_b), (tl_m, tl_b), (npp_m, npp_b) = slow.values()
    print(
        f"speed-up (median / min): triangulate vs numpy loop {np_m / tri_m:.0f}x / "
        f"{np_b / tri_b:.0f}x, vs torch loop {tl_m / tri_m:.0f}x / {tl_b / tri_b:.0f}x; "
        f"triangulate_pairs vs numpy pair loop {npp_m / pair_m:.0f}x / {npp_b / pair_b:.0f}x"
    )
    print(
        f"max |batched - naive numpy| = {dev:.2e} (all views), {dev_p:.2e} (pairs); "
        f"same NaN pattern: {same_nan}"
    )


def mouse4cam_figures() -> None:
    import pandas as pd

    group = load_calibration(MOUSE4CAM / "calibration.toml")
    pts = np.stack(
        [
            pd.read_csv(MOUSE4CAM / f"CollectedData_{v}.csv", header=[0, 1, 2], index_col=0)
            .to_numpy(dtype=np.float64)
            .reshape(60, -1, 2)
            for v in group.names
        ],
        axis=1,
    )
    print("\n## mouse4cam reprojection error, px: median / mean (n)")
    print("| method | dtype | " + " | ".join(group.names) + " | all |")
    print("|---|---|" + "---|" * (len(group.names) + 1))
    for dtype in (torch.float64, torch.float32):
        cams = group.to_tensors(dtype=dtype)
        p = torch.from_numpy(pts).to(dtype)
        args = (cams.intrinsics, cams.extrinsics, cams.distortions)
        dlt = triangulate(p, *args)
        for method, x3d in (("DLT", dlt), ("DLT + refine_points", refine_points(dlt, p, *args))):
            err = reprojection_error(x3d, p, *args).double().numpy()
            cols = [err[:, i] for i in range(len(group.names))] + [err]
            cells = [
                f"{np.nanmedian(e):.2f} / {np.nanmean(e):.2f} ({np.sum(~np.isnan(e))})"
                for e in cols
            ]
            print(f"| {method} | {str(dtype).replace('torch.', '')} | " + " | ".join(cells) + " |")


def textbook(points: torch.Tensor, intr: torch.Tensor, ext: torch.Tensor, dist: torch.Tensor,
             dtype: torch.dtype, svd: bool) -> torch.Tensor:
    """Batched textbook DLT (rows ``x P3 - P1`` in world units, every valid view) with the
    solve in ``dtype``: eigenvector of ``A^T A`` (``svd=False``) or SVD of ``A``. Undistortion
    in float64, so only the solve's rounding differs. ``(F, V, K, 2)`` -> ``(F, K, 3)``."""
    xy, ok = undistort_points(points, intr, dist)
    xy = torch.where(ok[..., None], xy, torch.zeros_like(xy))
    proj = ext.unsqueeze(-3)  # (V, 1, 3, 4)
    rows = (xy.unsqueeze(-1) * proj[..., 2:3, :] - proj[..., :2, :]) * ok[..., None, None]
    rows = rows.movedim(-4, -3).reshape(*xy.shape[:-3], xy.shape[-2], -1, 4).to(dtype)
    if svd:
        h = torch.linalg.svd(rows).Vh[..., -1, :]
    else:
        h = torch.linalg.eigh(rows.transpose(-1, -2) @ rows).eigenvectors[..., 0]
    h = h.double()
    return h[..., :3] / h[..., 3:]


def mouse4cam_precision() -> None:
    """float32 rounding on the real millimetre rig: mvcore's conditioned solve against the
    textbook rows, each compared with its own float64 result."""
    import pandas as pd

    group = load_calibration(MOUSE4CAM / "calibration.toml")
    pts = np.stack(
        [
            pd.read_csv(MOUSE4CAM / f"CollectedData_{v}.csv", header=[0, 1, 2], index_col=0)
            .to_numpy(dtype=np.float64)
            .reshape(60, -1, 2)
            for v in group.names
        ],
        axis=1,
    )
    cams = group.to_tensors(dtype=torch.float64)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    p = torch.from_numpy(pts)
    ref = triangulate(p, *args)
    f32 = triangulate(p, *args, solve_dtype=torch.float32)
    text64 = textbook(p, *args, torch.float64, svd=False)
    print("\n## mouse4cam: float32 solve vs float64 (mm), median / max over 900 points")
    print("| solve | median | max |")
    print("|---|---|---|")
    for label, a, b in (
        ("mvcore: conditioned rows, eigh(A^T A)", f32, ref),
        ("textbook rows, eigh(A^T A) (mvcore before)",
         textbook(p, *args, torch.float32, svd=False), text64),
        ("textbook rows, SVD of A", textbook(p, *args, torch.float32, svd=True), text64),
    ):
        e = (a.double() - b).norm(dim=-1).numpy()
        print(f"| {label} | {np.nanmedian(e):.2e} | {np.nanmax(e):.2e} |")
    text64 = text64.numpy()
    e = np.linalg.norm(text64 - ref.numpy(), axis=-1)
    print(f"float64 textbook vs conditioned (the estimators differ with noisy labels): median "
          f"{np.nanmedian(e):.2e} mm, max {np.nanmax(e):.2e} mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("-B", type=int, default=64)
    parser.add_argument("-V", type=int, default=4)
    parser.add_argument("-K", type=int, default=17)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (issue 16: 1)")
    parser.add_argument("--only-reference", action="store_true",
                        help="only the closed-form vs eigh comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    bench_vs_reference(10 * args.runs)
    if args.only_reference:
        return
    for dtype in (torch.float32, torch.float64):
        bench(args.B, args.V, args.K, args.runs, dtype)
    if MOUSE4CAM.is_dir():
        mouse4cam_figures()
        mouse4cam_precision()


if __name__ == "__main__":
    main()
