"""Benchmark: multi-view transformer forward+backward time and peak memory on this machine.

ViT-S architecture (``vits_dino``, random weights: no download), 2 views x 256x256, K keypoints,
``downsample_factor`` 2, training mode with patch masking at ratio 0.5, MSE loss on the
heatmaps. Each configuration runs in a fresh subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, whole process: Python + torch + model +
activations) is its own; the RSS just before the first step is printed as the baseline.

Usage::

    python bench/bench_mvt.py                    # batch sizes 1 and 2
    python bench/bench_mvt.py --batch-sizes 1 2 4 --steps 7 --grad-checkpointing
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(args: argparse.Namespace) -> dict[str, float]:
    """Time ``args.steps`` forward+backward steps of one configuration (in this process)."""
    import torch
    from mv_vit.masking import PatchMaskParams
    from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

    from mvcore import Context

    torch.manual_seed(0)
    context = Context(
        view_names=tuple(f"cam{i}" for i in range(args.views)),
        keypoint_names=tuple(f"kp{k}" for k in range(args.keypoints)),
        image_height=args.size,
        image_width=args.size,
        downsample_factor=2,
        seed=0,  # training.rng_seed_model_pt
    )
    params = MultiviewTransformerParams(
        backbone=args.backbone,
        backbone_pretrained=False,
        grad_checkpointing=args.grad_checkpointing,
        patch_mask=PatchMaskParams(init_step=0, final_step=0, final_ratio=0.5),
    )
    model = MultiviewTransformer(params, context).train()
    model.set_progress(0, 0, 1)
    images = torch.randn(args.batch_size, args.views, 3, args.size, args.size)
    side = args.size // 4
    target = torch.rand(args.batch_size, args.views, args.keypoints, side, side)
    baseline = _rss_mib()
    times = []
    for step in range(args.warmup + args.steps):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(images), target)
        loss.backward()
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            times.append(elapsed)
    return {
        "batch_size": args.batch_size,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "baseline_rss_mib": baseline,
        "peak_rss_mib": _rss_mib(),
        "threads": torch.get_num_threads(),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "tokens": args.views * (args.size // 16) ** 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vits_dino")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--keypoints", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=7, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.batch_size is not None:
        print(json.dumps(run_one(args)))
        return
    print(
        f"{args.backbone} (random init), {args.views} views x {args.size}x{args.size}, "
        f"K={args.keypoints}, ds=2, patch mask 0.5, grad_checkpointing="
        f"{args.grad_checkpointing}; forward+backward per step, median of {args.steps} "
        f"after {args.warmup} warm-up; memory = peak RSS (getrusage ru_maxrss) of a fresh process"
    )
    print("batch | median s/step | min-max s | s/sample | baseline RSS MiB | peak RSS MiB")
    for batch_size in args.batch_sizes:
        child = [a for a in sys.argv[1:]] + ["--batch-size", str(batch_size)]
        out = subprocess.run(
            [sys.executable, __file__, *child], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{batch_size:5d} | {r['median_s']:13.3f} | {r['min_s']:.3f}-{r['max_s']:.3f} | "
            f"{r['median_s'] / batch_size:8.3f} | {r['baseline_rss_mib']:16.0f} | "
            f"{r['peak_rss_mib']:12.0f}   ({r['params_m']:.1f} M params, {r['tokens']} tokens, "
            f"{r['threads']} threads)"
        )


if __name__ == "__main__":
    main()
