"""Benchmark ``torch.compile`` (CPU inductor) of the triangulation and the pairwise 3D loss.

This is a benchmark, not a test. Issue 16 asks for 100x Lightning Pose on the all-view
triangulation; eager mvcore is a few hundred tiny kernels per call, so the question is whether
inductor's fused kernels remove that floor. On ``bench_vs_lightning_pose.py``'s inputs (B=64,
V=4, K=17, radial distortion, 1 px noise; ``bench_triangulation.lp_problem``), and on the same
with 10 % of the 2D points missing (NaN), 1 torch thread, it measures

- eager against ``torch.compile`` of ``triangulate`` (forward) and of the pairwise 3D loss
  (``triangulate_pairs`` -> ``supervised_pairwise_projections``, forward compiled, backward
  through the compiled graphs), per compile setting (``dynamic=False``, ``dynamic=None``,
  ``mode="max-autotune-no-cudagraphs"``): the first call's time (compilation), the time of the
  first call with missing points and of calls at other batch sizes (recompiles), the number of
  graphs and graph breaks (``torch._dynamo.explain``), medians and minima over alternating
  rounds after warm-up, and the largest difference of values (and gradients) from eager;
- the bound: ``branch_free_triangulate`` (the same arithmetic without the data-dependent
  branches that break the graph) compiled with ``fullgraph=True``, against eager.

Inductor caches compiled graphs on disk (in /tmp by default), so a graph compiled once before
(an earlier run or setting) loads in seconds; ``--cold`` turns its caches off
(``torch._inductor.config.force_disable_caches``) so that every first call compiles from
scratch, as on a user's first run.

Run from the repo root: ``python bench/bench_compile.py [--rounds 20 --calls 10]
[--settings static dynamic autotune]``. Needs a C++ compiler (inductor's CPU backend).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_triangulation import lp_problem, pairwise_loss  # noqa: E402

from mvcore.geometry import camera_pairs, triangulate, triangulate_pairs  # noqa: E402
from mvcore.geometry.projection import _normalized_components  # noqa: E402
from mvcore.geometry.triangulation import (  # noqa: E402
    _camera_frame,
    _depths,
    _shared_coefficients,
    _too_narrow,
    _view_terms,
    camera_centers,
)

#: compile settings: name -> torch.compile keyword arguments
SETTINGS: dict[str, dict[str, Any]] = {
    "static": {"dynamic": False},
    "dynamic": {"dynamic": None},
    "autotune": {"dynamic": False, "mode": "max-autotune-no-cudagraphs"},
}
#: fraction of the 2D points made missing in the "with NaN" inputs
MISSING = 0.1


def with_missing(points: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``points (B, V, K, 2)`` with a seeded ``MISSING`` fraction of (b, v, k) set to NaN."""
    g = torch.Generator().manual_seed(seed)
    gone = torch.rand(points.shape[:-1], generator=g) < MISSING
    return points.masked_fill(gone.unsqueeze(-1), float("nan"))


def branch_free_triangulate(points: torch.Tensor, intrinsics: torch.Tensor,
                            extrinsics: torch.Tensor, distortions: torch.Tensor,
                            steps: int = 4, updates: int = 2) -> torch.Tensor:
    """What a graph without breaks could cost: ``triangulate``'s arithmetic with its
    data-dependent branches removed, ``points (B, V, K, 2)``, cameras shared, radial-only
    distortion -> ``(B, K, 3)``.

    Not mvcore's semantics (an experiment for the compile bound): ``steps`` Newton steps of the
    undistortion with no convergence test, ``updates`` eigenvalue updates with no test and no
    ``eigh`` fallback, every point conditioned in the cameras' common frame (``triangulate``
    re-centres points with missing views on their own cameras), views behind the camera and
    narrow rays made NaN without solving again; no custom backward."""
    dt = torch.float64
    u, v, finite = _normalized_components(points, intrinsics, dt)  # (B, V, K)
    k1, k2, k3 = (distortions.to(dt)[:, i, None] for i in (0, 1, 4))  # (V, 1)
    rho = u * u + v * v
    s = 1.0 + rho * (-k1 + rho * (3.0 * k1 * k1 - k2))
    for _ in range(steps):
        q = rho * s * s
        radial = 1.0 + q * (k1 + q * (k2 + q * k3))
        slope = radial + 2.0 * q * (k1 + q * (2.0 * k2 + 3.0 * k3 * q))
        s = s - (s * radial - 1.0) / slope
    w2 = finite.to(dt)
    ext = extrinsics.to(dt)
    centers = camera_centers(ext)
    origin, spread = _camera_frame(centers)
    terms = _view_terms(ext, origin, spread)  # (10, 4V)
    coef = _shared_coefficients(u * s, v * s, w2)  # (V, 4, B, K)
    normal = (terms @ coef.flatten(0, 1).flatten(1)).view(10, *coef.shape[2:])
    a, b, c, d, e, f, g0, g1, g2, cst = normal.unbind(0)

    def solve(lam: torch.Tensor | float) -> list[torch.Tensor]:
        """``x(l) = -(H - l I)^-1 g`` through the adjugate."""
        a_, d_, f_ = a - lam, d - lam, f - lam
        c0, c1, c2 = d_ * f_ - e * e, c * e - b * f_, b * e - c * d_
        c3, c4, c5 = a_ * f_ - c * c, b * c - a_ * e, a_ * d_ - b * b
        neg_inv = -1.0 / (a_ * c0 + b * c1 + c * c2)
        return [(c0 * g0 + c1 * g1 + c2 * g2) * neg_inv, (c1 * g0 + c3 * g1 + c4 * g2) * neg_inv,
                (c2 * g0 + c4 * g1 + c5 * g2) * neg_inv]

    lam: torch.Tensor | float = 0.0
    x = solve(lam)
    for _ in range(updates):
        xx = 1.0 + x[0] * x[0] + x[1] * x[1] + x[2] * x[2]
        lam = lam + (cst - lam + g0 * x[0] + g1 * x[1] + g2 * x[2]) / xx
        x = solve(lam)
    base = torch.stack(x, -2)  # (B, 3, K)
    world = origin[:, None] + spread * base
    ok = w2.sum(-2) >= 2
    behind = (finite & (_depths(world, ext) <= 0)).any(-2)
    local = (centers - origin) / spread
    pairs = camera_pairs(points.shape[-3])
    narrow = _too_narrow(base, local, pairs[:, 0], pairs[:, 1], finite, 1.0)
    good = ok & ~behind & ~narrow
    world = torch.where(good.unsqueeze(-2), world, torch.full_like(world, float("nan")))
    return world.transpose(-1, -2).to(points.dtype)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two tensors, inf when their NaN patterns differ."""
    if not torch.equal(a.isnan(), b.isnan()):
        return float("inf")
    return float((a - b).nan_to_num().abs().max())


class Workload:
    """One benchmarked computation: ``run(fn, points)`` -> outputs to compare; ``fn`` is the
    function to compile (eager or compiled)."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor],
                 run: Callable[[Callable[..., torch.Tensor], torch.Tensor],
                               dict[str, torch.Tensor]]) -> None:
        self.name, self.fn, self.run = name, fn, run


def workloads() -> tuple[list[Workload], dict[str, torch.Tensor]]:
    """The two workloads and their inputs (``points`` (B, V, K, 2) float32 and cameras)."""
    pix, intr, ext, dist, pose = lp_problem()
    b, v, k, _ = pix.shape
    loss_fn = pairwise_loss(v, k)

    def tri(points: torch.Tensor) -> torch.Tensor:
        return triangulate(points, intr, ext, dist)

    def run_tri(fn: Callable[..., torch.Tensor], points: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"points_3d": fn(points)}

    def pairwise(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pred = triangulate_pairs(points, intr, ext, dist)
        return loss_fn(keypoints_targ_3d=targets, keypoints_pred_3d=pred, stage="train")[0]

    def run_pair(fn: Callable[..., torch.Tensor], points: torch.Tensor
                 ) -> dict[str, torch.Tensor]:
        leaf = points.detach().clone().requires_grad_()
        loss = fn(leaf, pose[: points.shape[0]])
        loss.backward()
        return {"loss": loss.detach(), "grad_2d": leaf.grad}

    inputs = {"no NaN": pix, "10% NaN": with_missing(pix)}
    return [Workload("triangulate fwd", tri, run_tri),
            Workload("pairwise loss fwd+bwd", pairwise, run_pair)], inputs


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def graph_counts(work: Workload, points: torch.Tensor) -> tuple[int, int]:
    """(graphs, graph breaks) dynamo makes of one call of ``work`` on ``points``."""
    torch._dynamo.reset()
    extra = () if work.name.startswith("triangulate") else (lp_problem()[4],)
    explained = torch._dynamo.explain(work.fn)(points, *extra)
    torch._dynamo.reset()
    return explained.graph_count, explained.graph_break_count


def bench(work: Workload, inputs: dict[str, torch.Tensor], setting: str, rounds: int,
          calls: int) -> None:
    """Compile ``work.fn`` with ``setting``, print compile/recompile times, value differences
    and eager vs compiled medians per input."""
    torch._dynamo.reset()
    compiled = torch.compile(work.fn, **SETTINGS[setting])
    counters = torch._dynamo.utils.counters
    first = {}
    for name, points in inputs.items():
        before = counters["stats"]["unique_graphs"]
        first[name] = timed(lambda p=points: work.run(compiled, p))
        print(f"  [{setting}] first call, {name}: {first[name]:.1f} s, "
              f"{counters['stats']['unique_graphs'] - before} new graphs", flush=True)
    for b in (32, 48, 64):
        points = inputs["no NaN"][:b]
        before = counters["stats"]["unique_graphs"]
        t = timed(lambda p=points: work.run(compiled, p))
        print(f"  [{setting}] B={b}: {t:.2f} s, "
              f"{counters['stats']['unique_graphs'] - before} new graphs", flush=True)
    for name, points in inputs.items():
        eager, comp = work.run(work.fn, points), work.run(compiled, points)
        diffs = ", ".join(f"{k} {max_diff(eager[k], comp[k]):.1e} (max |eager| "
                          f"{float(eager[k].nan_to_num().abs().max()):.1e})" for k in eager)
        print(f"  [{setting}] {name}: compiled - eager max abs diff: {diffs}")
        fns = {"eager": lambda p=points: work.run(work.fn, p),
               "compiled": lambda p=points: work.run(compiled, p)}
        times = alternate(fns, rounds, calls)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        low = {k: min(v) * 1e3 for k, v in times.items()}
        print(f"  [{setting}] {name}: eager {med['eager']:.3f} ms ({low['eager']:.3f}), "
              f"compiled {med['compiled']:.3f} ms ({low['compiled']:.3f}); speed-up "
              f"{med['eager'] / med['compiled']:.2f}x ({low['eager'] / low['compiled']:.2f}x); "
              f"{rounds} x {calls} calls each, alternating", flush=True)


def alternate(fns: dict[str, Any], rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds of ``calls`` calls of each function per round, after 3 warm-up calls each; the
    order alternates between rounds so that drifting load favours none."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for key in order:
            times[key].extend(timed(fns[key]) for _ in range(calls))
    return times


def bench_bound(inputs: dict[str, torch.Tensor], rounds: int, calls: int) -> None:
    """``triangulate`` eager against ``branch_free_triangulate`` eager and compiled with
    ``fullgraph=True, dynamic=False``: compile time, differences, medians (and at B=1, the
    compiled graph's fixed cost per call)."""
    _, intr, ext, dist, _ = lp_problem()
    torch._dynamo.reset()
    compiled = torch.compile(branch_free_triangulate, fullgraph=True, dynamic=False)
    first = timed(lambda: compiled(inputs["no NaN"], intr, ext, dist))
    print(f"  [branch-free, fullgraph] first call (compile): {first:.1f} s", flush=True)
    one = inputs["no NaN"][:1]
    compiled(one, intr, ext, dist)
    at_one = statistics.median(timed(lambda: compiled(one, intr, ext, dist))
                               for _ in range(200)) * 1e3
    print(f"  [branch-free, fullgraph] B=1: {at_one:.3f} ms a call (median of 200)")
    for name, points in inputs.items():
        ref = triangulate(points, intr, ext, dist)
        print(f"  [branch-free, fullgraph] {name}: max abs diff from triangulate: eager "
              f"{max_diff(ref, branch_free_triangulate(points, intr, ext, dist)):.1e}, "
              f"compiled {max_diff(ref, compiled(points, intr, ext, dist)):.1e}")
        fns = {"triangulate": lambda p=points: triangulate(p, intr, ext, dist),
               "branch-free eager": lambda p=points: branch_free_triangulate(p, intr, ext, dist),
               "branch-free compiled": lambda p=points: compiled(p, intr, ext, dist)}
        times = alternate(fns, rounds, calls)
        print(f"  [branch-free, fullgraph] {name}: " + ", ".join(
            f"{k} {statistics.median(v) * 1e3:.3f} ms ({min(v) * 1e3:.3f})"
            for k, v in times.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--only", nargs="+", choices=["triangulate", "pairwise"],
                        default=["triangulate", "pairwise"])
    parser.add_argument("--cold", action="store_true",
                        help="no inductor caches: every first call is a cold compile")
    parser.add_argument("--no-bound", dest="bound", action="store_false",
                        help="skip the branch-free bound (branch_free_triangulate)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cold:
        torch._inductor.config.force_disable_caches = True
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 torch thread, inductor caches {'off' if args.cold else 'on'}, "
          f"load average {os.getloadavg()}", flush=True)
    works, inputs = workloads()
    for work in works:
        if work.name.split()[0].startswith(tuple(args.only)):
            print(work.name)
            for name, points in inputs.items():
                graphs, breaks = graph_counts(work, points)
                print(f"  dynamo, {name}: {graphs} graphs, {breaks} graph breaks", flush=True)
            for setting in args.settings:
                bench(work, inputs, setting, args.rounds, args.calls)
            if work.name.startswith("triangulate") and args.bound:
                bench_bound(inputs, args.rounds, args.calls)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
