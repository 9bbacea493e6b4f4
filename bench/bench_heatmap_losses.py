"""Heatmap losses before and after the fused/separable fast paths (issue 16), on CPU.

"Before" is each loss's ``_dense_reference`` (the dense formula the losses used to run:
rendered target maps for the reprojection loss, boolean-index copies and element-wise
temporaries for heatmap_mse / kl / js); "after" is the loss itself. Both run in one process,
round-robin (every round times every case, dense and fast, at 1 and 2 torch threads), so the
machine's load hits both alike; the table gives the median and min of all rounds and the load
average before and after.

Problem (as ``bench_losses.py`` and the issue): B=64 frames, V=4 views, K=17 keypoints
(N=68 maps per frame), float32, a random calibrated 4-camera rig (1280x1024 frames, radial
distortion), 2D predictions = projections of random 3D poses + 2 px noise, model input 256x256
(the whole frame as bbox), heatmaps 64x64; target maps rendered at the clean projections.

Cases, each one forward + backward:

- ``reprojection_e2e``: the issue's "reprojected-heatmap 3D loss end to end": 2D predictions
  (leaf) -> ``triangulate`` -> ``project_points`` -> model pixels ->
  ``supervised_reprojection_heatmap_mse``.
- ``reprojection``: the loss alone on reprojected model pixels (leaf).
- ``heatmap_mse`` / ``heatmap_kl`` / ``heatmap_js``: the loss alone on predicted maps (one
  leaf holding a spatial softmax, its ``.grad`` dropped at the end of each step; the
  backbone's softmax is not the loss's).
- ``one_pass`` (not a loss): one read pass over the 70 MB of target maps
  (``vector_norm`` per map), timed in the same rounds: the memory-bound floor, and a yardstick
  that the machine's load inflates like the rest (fast times in "passes" compare across runs).

Run from the repo root::

    python bench/bench_heatmap_losses.py --rounds 10        # timings
    python bench/bench_heatmap_losses.py --memory           # peak memory, fresh process each

``--old-fused FILE`` adds a third variant, ``old``: the fast paths of another version of
``mv_losses/fused.py`` (for example ``git show HEAD~1:plugins/mv_losses/src/mv_losses/fused.py
> /tmp/fused_old.py``), patched in for its steps only, to time a change of the fast paths
against the version before it in the same process. ``--variants old fast`` leaves out the
dense references (seconds per step).

Memory: per case and variant, a fresh interpreter builds the inputs, runs one warm-up step,
then one measured step, and reports (a) the peak RSS above the RSS just before the step
(``VmHWM`` after ``/proc/self/clear_refs`` reset it; includes allocator behaviour) and (b) the
peak of live tensor bytes allocated during the step (``torch.profiler`` memory events).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import mv_losses.heatmap
import mv_losses.projection
import torch
from bench_losses import make_rig
from mv_losses.heatmap import HeatmapJSLoss, HeatmapKLLoss, HeatmapLoss, HeatmapMSELoss
from mv_losses.projection import ReprojectionHeatmapLoss

from mvcore import Context
from mvcore.data.bbox import frame_to_model
from mvcore.data.heatmaps import render_heatmaps
from mvcore.geometry import project_points, triangulate

B, V, K = 64, 4, 17
FRAME = (1024, 1280)  # (H, W) frame pixels
MODEL = (256, 256)
HEATMAP = (64, 64)
CASES = ("reprojection_e2e", "reprojection", "heatmap_mse", "heatmap_kl", "heatmap_js")
VARIANTS = ("dense", "fast")  # + "old" with --old-fused
#: the issue's Lightning Pose figures for reprojection_e2e (2-core CPU, 1 torch thread), s
LP_SECONDS = (1.47, 1.85)

Step = Callable[[], None]


def load_fused(path: Path) -> ModuleType:
    """Another version of ``mv_losses/fused.py`` as a module of its own."""
    spec = importlib.util.spec_from_file_location("fused_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_fused(module: ModuleType, step: Step) -> None:
    """Run ``step`` with ``module``'s fast paths in place of the installed ones."""
    heatmap, projection = mv_losses.heatmap, mv_losses.projection
    losses = (heatmap.HeatmapMSELoss, heatmap.HeatmapKLLoss, heatmap.HeatmapJSLoss)
    saved = (projection.reprojection_sse, heatmap.map_energy, [c.per_map for c in losses])
    projection.reprojection_sse = module.reprojection_sse
    heatmap.map_energy = module.map_energy
    for cls, name in zip(losses, ("SquaredErrorPerMap", "KLPerMap", "JSPerMap"), strict=True):
        cls.per_map = getattr(module, name)
    try:
        step()
    finally:
        projection.reprojection_sse, heatmap.map_energy = saved[0], saved[1]
        for cls, per_map in zip(losses, saved[2], strict=True):
            cls.per_map = per_map


def make_steps(old_fused: Path | None = None) -> dict[tuple[str, str], Step]:
    """``(case, variant) -> step``: one forward + backward on fixed inputs; with
    ``old_fused``, ``(case, "old")`` runs the fast steps with that file's fast paths."""
    intr, extr, dist = make_rig()
    g = torch.Generator().manual_seed(2)
    pose = 60 * torch.randn(B, K, 3, generator=g)
    clean = project_points(pose, intr, extr, dist)  # (B, V, K, 2) frame px
    pred_2d = clean + 2.0 * torch.randn(clean.shape, generator=g)
    bbox = torch.tensor([0.0, 0.0, FRAME[0], FRAME[1]]).expand(B, V, 4)
    targets = render_heatmaps(frame_to_model(clean, bbox, MODEL).reshape(B, V * K, 2),
                              MODEL, HEATMAP)
    logits = torch.randn(B, V * K, *HEATMAP, generator=g)
    pred_maps = logits.flatten(-2).softmax(-1).reshape_as(logits)
    context = Context(view_names=tuple(f"cam{v}" for v in range(V)),
                      keypoint_names=tuple(f"kp{k}" for k in range(K)),
                      image_height=MODEL[0], image_width=MODEL[1], downsample_factor=2,
                      has_calibration=True)
    assert context.heatmap_size == HEATMAP
    reproj = ReprojectionHeatmapLoss(ReprojectionHeatmapLoss.Params(), context)

    def reprojected(points_2d: torch.Tensor) -> torch.Tensor:
        points_3d = triangulate(points_2d, intr, extr, dist)
        frame = project_points(points_3d, intr, extr, dist)
        return frame_to_model(frame, bbox, MODEL).reshape(B, V * K, 2)

    model_px = reprojected(pred_2d).detach()

    def reproj_loss(points: torch.Tensor, variant: str) -> torch.Tensor:
        if variant == "fast":
            return reproj(heatmaps_targ=targets, keypoints_pred_2d_reprojected=points,
                          stage="train")[0]
        return reproj.weight * reproj._dense_reference(targets, points)

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone().requires_grad_(True)

    steps: dict[tuple[str, str], Step] = {}
    for variant in VARIANTS:
        steps["reprojection_e2e", variant] = (
            lambda v=variant: reproj_loss(reprojected(leaf(pred_2d)), v).backward())
        steps["reprojection", variant] = (
            lambda v=variant: reproj_loss(leaf(model_px), v).backward())
    # one leaf for the predicted maps (a fresh 70 MB copy per step would be timed too)
    maps = leaf(pred_maps)

    def heatmap_loss(loss: HeatmapLoss, variant: str) -> None:
        if variant == "fast":
            loss(heatmaps_targ=targets, heatmaps_pred=maps, stage="train")[0].backward()
        else:
            (loss.weight * loss._dense_reference(targets, maps)).backward()
        maps.grad = None  # freed within the step, which thus starts and ends with none

    for name, cls in (("heatmap_mse", HeatmapMSELoss), ("heatmap_kl", HeatmapKLLoss),
                      ("heatmap_js", HeatmapJSLoss)):
        loss = cls(cls.Params(), context)
        for variant in VARIANTS:
            steps[name, variant] = partial(heatmap_loss, loss, variant)

    def one_pass() -> None:
        """The memory-bound floor: one read pass over the (B, N, h, w) float32 maps (70 MB)."""
        torch.linalg.vector_norm(targets.reshape(len(targets) * V * K, -1), dim=1)

    steps["one_pass", "floor"] = one_pass
    if old_fused is not None:
        module = load_fused(old_fused)
        for case in CASES:
            steps[case, "old"] = partial(_with_fused, module, steps[case, "fast"])
    return steps


def variants_of(steps: dict[tuple[str, str], Step]) -> tuple[str, ...]:
    return tuple(v for v in ("dense", "old", "fast") if (CASES[0], v) in steps)


def time_rounds(steps: dict[tuple[str, str], Step], rounds: int, threads: tuple[int, ...]
                ) -> dict[tuple[str, str, int], list[float]]:
    """Milliseconds per ``(case, variant, threads)``, round-robin over everything (the order
    of the variants alternates between rounds)."""
    for step in steps.values():  # warm-up
        step()
    variants = variants_of(steps)
    times: dict[tuple[str, str, int], list[float]] = {}
    for r in range(rounds):
        for n in threads:
            torch.set_num_threads(n)
            for case, order in [(c, variants if r % 2 == 0 else variants[::-1]) for c in CASES
                                ] + [("one_pass", ("floor",))]:
                for variant in order:
                    start = time.perf_counter()
                    steps[case, variant]()
                    elapsed = (time.perf_counter() - start) * 1e3
                    times.setdefault((case, variant, n), []).append(elapsed)
    return times


def report_times(times: dict[tuple[str, str, int], list[float]], threads: tuple[int, ...]
                 ) -> None:
    variants = tuple(v for v in ("dense", "old", "fast") if (CASES[0], v, threads[0]) in times)
    others = variants[:-1]
    print("| case | threads | " + " | ".join(f"{v} median (min) ms" for v in variants) + " | "
          + " | ".join(f"fast vs {v}, median (min)" for v in others) + " |")
    print("|---|---|" + "---|" * (len(variants) + len(others)))
    for case in CASES:
        for n in threads:
            fast = times[case, "fast", n]
            cells = [f"{statistics.median(times[case, v, n]):.1f} "
                     f"({min(times[case, v, n]):.1f})" for v in variants]
            cells += [f"{statistics.median(times[case, v, n]) / statistics.median(fast):.1f}x "
                      f"({min(times[case, v, n]) / min(fast):.1f}x)" for v in others]
            print(f"| {case} | {n} | " + " | ".join(cells) + " |")
    for n in threads:
        floor = times["one_pass", "floor", n]
        print(f"floor, {n} thread(s): one read pass over the 70 MB of maps (vector_norm per "
              f"map) {statistics.median(floor):.1f} ({min(floor):.1f}) ms")
        fast = times["reprojection_e2e", "fast", n]
        lo, hi = LP_SECONDS
        print(f"reprojection_e2e, {n} thread(s): issue's LP {lo}-{hi} s / fast median "
              f"{statistics.median(fast):.1f} ms = {lo * 1e3 / statistics.median(fast):.0f}-"
              f"{hi * 1e3 / statistics.median(fast):.0f}x (min: "
              f"{lo * 1e3 / min(fast):.0f}-{hi * 1e3 / min(fast):.0f}x)")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure_memory(case: str, variant: str, old_fused: Path | None) -> None:
    """One step in this (fresh) process: print peak RSS delta and peak live tensor MiB."""
    torch.set_num_threads(1)
    step = make_steps(old_fused)[case, variant]
    step()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # every allocation (+) and free (-) of the step, in order (kineto's raw memory events;
    # the FunctionEvents fold most of them into their ops' totals)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    step()
    rss_delta = _status_kib("VmHWM") - before
    print(f"{case} {variant} {rss_delta / 1024:.1f} {peak / 2**20:.1f}")


def report_memory(old_fused: Path | None) -> None:
    variants = ("dense", "old", "fast") if old_fused else VARIANTS
    extra = ["--old-fused", str(old_fused)] if old_fused else []
    print("| case | " + " | ".join(f"{v}: peak RSS delta / peak live tensors (MiB)"
                                   for v in variants) + " |")
    print("|---|" + "---|" * len(variants))
    for case in CASES:
        cells = []
        for variant in variants:
            out = subprocess.run([sys.executable, __file__, "--memory-one", case, variant,
                                  *extra], check=True, capture_output=True, text=True
                                 ).stdout.split()
            cells.append(f"{float(out[-2]):.0f} / {float(out[-1]):.0f}")
        print(f"| {case} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory", action="store_true", help="peak memory instead of time")
    parser.add_argument("--old-fused", type=Path, metavar="FILE",
                        help="another version of mv_losses/fused.py, timed as variant 'old'")
    parser.add_argument("--variants", nargs="+", default=["dense", "old", "fast"],
                        choices=["dense", "old", "fast"],
                        help="time only these (the dense ones take seconds per step)")
    parser.add_argument("--memory-one", nargs=2, metavar=("CASE", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_one:
        measure_memory(*args.memory_one, args.old_fused)
        return
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average {os.getloadavg()}")
    if args.memory:
        report_memory(args.old_fused)
    else:
        threads = tuple(args.threads)
        steps = {key: step for key, step in make_steps(args.old_fused).items()
                 if key[1] in (*args.variants, "floor")}
        times = time_rounds(steps, args.rounds, threads)
        print(f"B={B} V={V} K={K}, heatmaps {HEATMAP[0]}x{HEATMAP[1]}, float32, "
              f"{args.rounds} rounds")
        report_times(times, threads)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
