"""Benchmark of mv-aug3d's 3D augmentation: image/label agreement per fit model, throughput.

1. Agreement: ``mvcore.example.make_example_project`` renders a Gaussian blob of a
   distinct colour exactly at every label. Each labelled frame is augmented (several draws)
   with each fit model; each blob is located in the warped image (colour-matched, mean-shift
   weighted centroid) and compared with the augmented label (the exact 3D-consistent target).
   Optionally the labels are perturbed by Gaussian noise first (real labels are noisy; the blobs
   stay where they are), to see how each model copes with label noise.
2. mouse4cam (real data, if present): fit residual at the labels and models actually used.
3. Throughput on CPU: 4 views at 256x256, per sample as the dataset calls it, and the image
   warp per sample vs batched over a whole batch (B*V images in one call).

Usage (repo root): ``/work/venv/bin/python bench/bench_aug3d.py [--frames 60] [--draws 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mv_aug3d.aug3d import Augment3D, Augment3DParams, warp_views
from mv_aug3d.pipelines import DLCParams, DLCPipeline
from PIL import Image

from mvcore import Context
from mvcore.data.bbox import frame_to_model
from mvcore.example import make_example_project, marker_colors
from mvcore.geometry import CameraTensors, apply_homography, load_calibration, rodrigues_to_matrix

FITS = ("similarity", "affine", "homography")
MOUSE4CAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "mouse4cam"


def make_context(view_names: list[str], keypoint_names: list[str], size: int) -> Context:
    """The ``Context`` the augmenters are built with: calibrated, ``size`` square model input."""
    return Context(
        view_names=tuple(view_names),
        keypoint_names=tuple(keypoint_names),
        image_height=size,
        image_width=size,
        has_calibration=True,
    )


def load_example(
    root: Path,
) -> tuple[list[dict[str, Any]], np.ndarray, torch.Tensor, Context]:
    """Samples (model = image resolution), ``usable (N, V, K)`` blobs, colours ``(K, 3)`` and
    the project's ``Context``."""
    group = load_calibration(root / "calibration.toml")
    names = group.names
    cams = group.to_tensors()
    tabs = [
        pd.read_csv(root / f"CollectedData_{n}.csv", header=[0, 1, 2], index_col=0) for n in names
    ]
    occluded = pd.read_csv(root / "occluded.csv", header=[0, 1], index_col=0)
    num_kp = tabs[0].shape[1] // 2
    samples, usable = [], []
    for i in range(len(tabs[0])):
        kp = np.stack([t.iloc[i].to_numpy(dtype=float).reshape(num_kp, 2) for t in tabs])
        images = torch.stack(
            [
                torch.from_numpy(np.array(Image.open(root / t.index[i]).convert("RGB")))
                .permute(2, 0, 1)
                .float()
                / 255.0
                for t in tabs
            ]
        )
        size = images.shape[-1]
        frame = int(tabs[0].index[i].split("img")[1][:4])
        occ = occluded.loc[frame].to_numpy().reshape(len(names), num_kp).astype(bool)
        samples.append(
            {
                "images": images,
                "keypoints": torch.tensor(kp, dtype=torch.float32),
                "visibility": torch.tensor(np.where(np.isfinite(kp).all(-1), 2, 0)),
                "bbox": torch.tensor([[0.0, 0.0, size, size]] * len(names), dtype=torch.float64),
                "cameras": cams,
                "keypoints_3d": None,
            }
        )
        usable.append(isolated_blobs(kp, occ, size))
    keypoints = list(tabs[0].columns.get_level_values(1)[::2])
    context = make_context(names, keypoints, samples[0]["images"].shape[-1])
    return samples, np.stack(usable), torch.from_numpy(marker_colors(num_kp)), context


def isolated_blobs(
    kp: np.ndarray, occluded: np.ndarray, size: int, gap: float = 9.0
) -> np.ndarray:
    """``(V, K)``: labelled, not occluded, >= 5 px inside, no other marker within ``gap`` px."""
    dist = np.linalg.norm(kp[:, :, None] - kp[:, None], axis=-1)
    dist[:, np.arange(kp.shape[1]), np.arange(kp.shape[1])] = np.inf
    crowded = (np.nan_to_num(dist, nan=np.inf) < gap).any(-1)
    inside = ((kp > 4) & (kp < size - 5)).all(-1)
    return np.isfinite(kp).all(-1) & ~occluded & inside & ~crowded


def locate_blobs(
    images: torch.Tensor, centres: torch.Tensor, colors: torch.Tensor, radius: float = 3.0
) -> torch.Tensor:
    """Colour-matched weighted centroids ``(V, K, 2)`` of blobs near ``centres (V, K, 2)``.

    Weight = a pixel's component along the blob colour ``colors (K, 3)``, kept only where the
    pixel has that hue (rejects the grey background); 4 mean-shift steps in a disc of
    ``radius`` px. Exact blobs on their black halo give ~0.01 px.
    """
    v, c, h, w = images.shape
    k = centres.shape[1]
    cdir = (colors / colors.norm(dim=-1, keepdim=True)).double()
    flat = images.double().reshape(v, c, h * w)
    r = int(radius) + 1
    off = torch.arange(-r, r + 1, dtype=torch.float64)
    oy, ox = (g.reshape(-1) for g in torch.meshgrid(off, off, indexing="ij"))
    cen = centres.double().clone()
    for _ in range(4):
        base = torch.nan_to_num(cen).round()
        xs, ys = base[..., :1] + ox, base[..., 1:] + oy  # (V, K, P)
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().reshape(v, 1, -1)
        pix = flat.gather(2, idx.expand(v, c, -1)).reshape(v, c, k, -1).permute(0, 2, 3, 1)
        along = (pix * cdir[None, :, None]).sum(-1)
        resid = (pix - along[..., None] * cdir[None, :, None]).norm(dim=-1)
        weight = torch.where(resid < 0.25 * along + 0.02, along, 0.0).clamp(min=0)
        disc = (xs - cen[..., :1]) ** 2 + (ys - cen[..., 1:]) ** 2 <= radius**2
        weight = weight * inside * disc
        total = weight.sum(-1)
        cen = torch.stack([(weight * xs).sum(-1), (weight * ys).sum(-1)], -1) / total[..., None]
        cen = torch.where((total > 0)[..., None], cen, torch.nan)
    return cen


def agreement(
    samples: list[dict[str, Any]],
    usable: np.ndarray,
    colors: torch.Tensor,
    fit: str,
    draws: int,
    context: Context,
    noise: float = 0.0,
    source: str = "labels",
    cameras: CameraTensors | None = None,
) -> dict[str, Any]:
    """Distances (px) between warped blobs and augmented labels, plus models used.

    ``noise``: Gaussian label noise (px) added before augmenting; ``cameras``: replaces the
    true cameras (a perturbed calibration).
    """
    aug = Augment3D(Augment3DParams(fit=fit, source=source), context)
    dists, models, fit_res = [], [], []
    for i, sample in enumerate(samples):
        for d in range(draws):
            rng = np.random.default_rng([i, d])
            s = dict(sample)
            if cameras is not None:
                s["cameras"] = cameras
            if noise > 0:
                jitter = torch.from_numpy(rng.normal(0.0, noise, s["keypoints"].shape))
                s["keypoints"] = s["keypoints"] + jitter.float()
            out = aug(s, rng)
            if aug.last_draw is None:
                continue
            models += aug.last_draw["models"]
            kp = out["keypoints"].double()
            ok = torch.from_numpy(usable[i]) & torch.isfinite(kp).all(-1)
            ok &= ((kp > 4) & (kp < kp.new_tensor(out["images"].shape[-1]) - 5)).all(-1)
            found = locate_blobs(out["images"], kp, colors)
            dists.append((found - kp).norm(dim=-1)[ok])
            warped = apply_homography(s["keypoints"].double(), out["transforms"].double())
            res = (warped - kp).norm(dim=-1)
            fit_res.append(res[torch.isfinite(res)])
    dist = torch.cat(dists)
    res = torch.cat(fit_res)
    return {
        "n": int(dist.numel()),
        "median": float(dist.nanmedian()),
        "p95": float(np.nanpercentile(dist.numpy(), 95)),
        "max": float(dist.nan_to_num(0.0).max()),
        "lost": int(dist.isnan().sum()),
        "fit_median": float(res.median()),
        "models": pd.Series(models).value_counts().to_dict(),
    }


def mouse4cam(size: tuple[int, int] = (256, 256)) -> dict[str, dict[str, Any]]:
    """Fit residual at the labels (model px) and models used on the real 4-camera labels."""
    names = ["back", "mid", "side", "top"]
    cams = load_calibration(MOUSE4CAM / "calibration.toml").select(names).to_tensors()
    tabs = [
        pd.read_csv(MOUSE4CAM / f"CollectedData_{n}.csv", header=[0, 1, 2], index_col=0)
        for n in names
    ]
    num_kp = tabs[0].shape[1] // 2
    frames = np.stack([t.to_numpy(dtype=float).reshape(-1, num_kp, 2) for t in tabs], 1)
    context = make_context(names, list(tabs[0].columns.get_level_values(1)[::2]), size[0])
    bbox = torch.tensor([[0.0, 0.0, 1024.0, 1280.0]] * 4, dtype=torch.float64)
    out: dict[str, dict[str, Any]] = {}
    for fit in FITS:
        aug = Augment3D(Augment3DParams(fit=fit), context)
        res, models = [], []
        for i, frame in enumerate(frames):
            kp = frame_to_model(torch.from_numpy(frame), bbox, size).float()
            sample = {
                "images": torch.zeros(4, 3, *size),
                "keypoints": kp,
                "visibility": torch.where(torch.isfinite(kp).all(-1), 2, 0),
                "bbox": bbox,
                "cameras": cams,
                "keypoints_3d": None,
            }
            result = aug(sample, np.random.default_rng(i))
            models += aug.last_draw["models"]
            warped = apply_homography(kp.double(), result["transforms"].double())
            dist = (warped - result["keypoints"].double()).norm(dim=-1)
            res.append(dist[torch.isfinite(dist)])
        r = torch.cat(res)
        out[fit] = {
            "median": float(r.median()),
            "p95": float(r.quantile(0.95)),
            "models": pd.Series(models).value_counts().to_dict(),
        }
    return out


def _time(fn: Any, repeats: int, rounds: int = 5) -> tuple[float, float]:
    """Median and min over ``rounds`` of the mean time per call (ms) of ``repeats`` calls."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return float(np.median(times)), float(np.min(times))


def throughput(
    samples: list[dict[str, Any]], context: Context, batch: int = 8
) -> list[tuple[str, float, float]]:
    """ms per call at 1 and 2 torch threads (DataLoader workers run with 1)."""
    rows = []
    sample = samples[0]
    images = torch.stack([s["images"] for s in samples[:batch]])  # (B, V, 3, H, W)
    mats = torch.eye(3).repeat(batch, images.shape[1], 1, 1)
    mats[..., 0, 2], mats[..., 1, 1] = 3.5, 1.1
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for fit in FITS:
            aug = Augment3D(Augment3DParams(fit=fit), context)
            seeds = iter(range(10**9))
            med, low = _time(
                lambda a=aug, it=seeds: a(sample, np.random.default_rng(next(it))), 20
            )
            rows.append((f"{threads} thr: `Augment3D` {fit}, one sample (V=4)", med, low))
        for label, geometric in (("photometric only (dlc-mv)", False), ("with geometric", True)):
            dlc = DLCPipeline(DLCParams(geometric=geometric, imgaug_3d=False), context)
            seeds = iter(range(10**9))
            med, low = _time(
                lambda a=dlc, it=seeds: a(sample, np.random.default_rng(next(it))), 20
            )
            rows.append((f"{threads} thr: `dlc` {label}, one sample (V=4)", med, low))
        flat_images, flat_mats = images.flatten(0, 1), mats.flatten(0, 1)
        med, low = _time(lambda: warp_views(images[0], mats[0]), 20)
        rows.append((f"{threads} thr: warp only, one sample (V=4)", med, low))
        med, low = _time(lambda: [warp_views(images[b], mats[b]) for b in range(batch)], 5)
        rows.append((f"{threads} thr: warp, B={batch} samples one by one", med, low))
        med, low = _time(lambda x=flat_images, m=flat_mats: warp_views(x, m), 5)
        rows.append((f"{threads} thr: warp, B*V={batch * 4} images batched", med, low))
    return rows


def _report_agreement(
    samples: list[dict[str, Any]],
    usable: np.ndarray,
    colors: torch.Tensor,
    context: Context,
    args: Any,
) -> None:
    """Print the agreement tables (markdown)."""
    print(f"example: {len(samples)} labelled frames x 4 views, {args.draws} draws each")
    ident = torch.cat(
        [
            (locate_blobs(s["images"], s["keypoints"], colors) - s["keypoints"]).norm(dim=-1)[
                torch.from_numpy(u)
            ]
            for s, u in zip(samples, usable)
        ]
    )
    print(f"locator on unwarped images: median {ident.median():.3f} px, max {ident.max():.3f}")
    cams = samples[0]["cameras"]
    rot = rodrigues_to_matrix(
        torch.randn(cams.num_views, 3, generator=torch.Generator().manual_seed(1)) * args.calib
    )
    extrinsics = cams.extrinsics.clone()
    extrinsics[:, :, :3] = rot @ extrinsics[:, :, :3]
    perturbed = CameraTensors(cams.intrinsics, extrinsics, cams.distortions)
    cases = [(f"label noise {n:g} px", n, None) for n in args.noise]
    cases.append((f"cameras rotated {args.calib:g} rad", 0.0, perturbed))
    print("| case | source | fit | n | median | p95 | max | fit residual median | models |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, noise, cameras in cases:
        for source in ("labels", "projections"):
            if source == "projections" and noise == 0 and cameras is None:
                continue  # exact labels are their own projections
            for fit in FITS:
                r = agreement(
                    samples, usable, colors, fit, args.draws, context, noise, source, cameras
                )
                print(
                    f"| {case} | {source} | {fit} | {r['n']} | {r['median']:.3f} | "
                    f"{r['p95']:.3f} | {r['max']:.3f} | {r['fit_median']:.3f} | {r['models']} |"
                )
    if MOUSE4CAM.is_dir():
        print("\nmouse4cam, model 256x256, fit residual at labels (model px):")
        for fit, r in mouse4cam().items():
            print(f"| {fit} | {r['median']:.3f} | {r['p95']:.3f} | {r['models']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="example frames")
    parser.add_argument("--draws", type=int, default=3, help="augmentations per labelled frame")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 1.0], help="label px")
    parser.add_argument("--calib", type=float, default=0.004, help="camera rotation error, rad")
    parser.add_argument("--throughput-only", action="store_true", help="skip the agreement part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make_example_project(tmp, seed=0, num_views=4, num_frames=args.frames, image_size=256)
        samples, usable, colors, context = load_example(Path(tmp))
    if not args.throughput_only:
        _report_agreement(samples, usable, colors, context, args)
    print("\n| what | median ms | min ms |\n|---|---|---|")
    for name, med, low in throughput(samples, context):
        print(f"| {name} | {med:.2f} | {low:.2f} |")


if __name__ == "__main__":
    main()
