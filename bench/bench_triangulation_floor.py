"""How fast can the all-view DLT triangulation of ``bench_vs_lightning_pose.py`` be at all?

Builds ``bench/floor/triangulate_floor.c`` (the same arithmetic as ``mvcore.geometry.
triangulate``, one point at a time in plain C, no torch: see its header for what it leaves
out) with the system C compiler, checks that it gives mvcore's points, and times it against
``mvcore.geometry.triangulate`` on the side-by-side benchmark's inputs (B=64 frames, V=4,
K=17, k1 = -0.08, 1 px noise), alternating, 1 torch thread. The C time is a floor for any
implementation of this estimator on this CPU (a fused kernel, a compiled graph), so
``Lightning Pose's time / C time`` is the largest speed-up any of them could show.

Usage (repo root): ``python bench/bench_triangulation_floor.py [--rounds 20] [--cc gcc]``.
Not a test; not part of mvcore.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_lightning_pose as side_by_side  # noqa: E402

from mvcore.geometry import camera_centers, triangulate  # noqa: E402
from mvcore.geometry.triangulation import (  # noqa: E402
    DEFAULT_MIN_RAY_ANGLE,
    _camera_frame,  # the conditioning frame triangulate uses, so the C code uses the same
)

SOURCE = Path(__file__).resolve().parent / "floor" / "triangulate_floor.c"
MAXV = 16


class Camera(ctypes.Structure):
    """``camera_t`` of the C file."""

    _fields_ = [("kinv", ctypes.c_double * 9), ("k1", ctypes.c_double),
                ("k2", ctypes.c_double), ("p1", ctypes.c_double), ("p2", ctypes.c_double),
                ("k3", ctypes.c_double), ("proj", ctypes.c_double * 12),
                ("rot_z", ctypes.c_double * 4), ("center", ctypes.c_double * 3)]


def build(cc: str, flags: list[str], out_dir: Path) -> ctypes.CDLL:
    """Compile the C file into a shared library with ``flags`` and load it."""
    lib = out_dir / f"floor{'_'.join(f.strip('-=') for f in flags)}.so"
    subprocess.run([cc, *flags, "-shared", "-fPIC", str(SOURCE), "-o", str(lib), "-lm"],
                   check=True)
    dll = ctypes.CDLL(str(lib))
    dll.triangulate_floor.restype = ctypes.c_int
    dll.triangulate_floor.argtypes = [
        ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.POINTER(Camera),
        ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_void_p]
    return dll


def cameras(intr: torch.Tensor, extr: torch.Tensor, dist: torch.Tensor
            ) -> tuple[ctypes.Array, np.ndarray, float]:
    """The C camera array in mvcore's conditioning frame (centroid, RMS spread of the
    camera centres), and that frame."""
    centers = camera_centers(extr).double()
    origin, spread_t = _camera_frame(centers)
    spread = float(spread_t)
    arr = (Camera * intr.shape[0])()
    for v in range(intr.shape[0]):
        rot, t = extr[v, :, :3].double(), extr[v, :, 3].double()
        proj = torch.cat([rot * spread, (rot @ origin + t)[:, None]], 1)
        c = arr[v]
        c.kinv[:] = torch.linalg.inv(intr[v].double()).flatten().tolist()
        c.k1, c.k2, c.p1, c.p2, c.k3 = dist[v].double().tolist()
        c.proj[:] = proj.flatten().tolist()
        c.rot_z[:] = extr[v, 2].double().tolist()
        c.center[:] = centers[v].tolist()
    return arr, origin.numpy(), spread


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=20, help="calls per side per round")
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = parser.parse_args()
    if shutil.which(args.cc) is None:
        sys.exit(f"no C compiler '{args.cc}' on PATH: install gcc or pass --cc")
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="mvcore-floor-"))
    side_by_side.make_inputs(work / "inputs.pt")
    inp = torch.load(work / "inputs.pt", weights_only=False)
    intr, extr, dist = (inp[k] for k in ("intrinsics", "extrinsics", "distortions"))
    points = inp["points_2d"]  # (B, V, K, 2) float32, as the side-by-side times it
    b, v, k, _ = points.shape
    cams, origin, spread = cameras(intr, extr, dist)
    max_cos2 = 1.0 - math.sin(math.radians(DEFAULT_MIN_RAY_ANGLE)) ** 2
    flag_sets = {"-O2": ["-O2"], "-O3 -march=native": ["-O3", "-march=native"]}
    libs = {name: build(args.cc, flags, work) for name, flags in flag_sets.items()}

    def c_call(lib: ctypes.CDLL, pts: np.ndarray, out: np.ndarray) -> int:
        return lib.triangulate_floor(pts.ctypes.data, pts.shape[0], v, cams,
                                     origin.ctypes.data, spread, max_cos2, out.ctypes.data)

    # point-major float64 (N, V, 2), as the C loop reads it
    pts64 = np.ascontiguousarray(points.permute(0, 2, 1, 3).double().numpy()).reshape(-1, v, 2)
    out = np.empty((b * k, 3))
    reference = triangulate(points.double(), intr, extr, dist).reshape(-1, 3).numpy()
    for name, lib in libs.items():
        skipped = c_call(lib, pts64, out)
        diff = np.nanmax(np.abs(out - reference))
        same_nan = bool((np.isnan(out) == np.isnan(reference)).all())
        print(f"check {name}: max |C - mvcore| = {diff:.1e} (world units, scene ~200), "
              f"NaN pattern equal: {same_nan}, points needing an omitted path: {skipped}")
        if not same_nan or diff > 1e-6:
            sys.exit("the C floor does not compute mvcore's points; not timing it")

    def from_torch(lib: ctypes.CDLL) -> None:
        """The C kernel with the conversion a torch caller would pay (float32 (B, V, K, 2)
        tensor in, float32 (B, K, 3) tensor out)."""
        p = np.ascontiguousarray(points.permute(0, 2, 1, 3).numpy(), dtype=np.float64)
        o = np.empty((b * k, 3))
        c_call(lib, p.reshape(-1, v, 2), o)
        torch.from_numpy(o).reshape(b, k, 3).float()

    sides = {"mvcore triangulate (eager torch)": lambda: triangulate(points, intr, extr, dist)}
    for name, lib in libs.items():
        sides[f"C {name}, float64 arrays"] = (lambda lib=lib: c_call(lib, pts64, out))
        sides[f"C {name}, from/to torch float32"] = (lambda lib=lib: from_torch(lib))
    for fn in sides.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, fn in sides.items():
            times[name] += timed(fn, args.calls)
        load.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{args.rounds}, load {load[-1]:.2f}", file=sys.stderr)
    compiler = subprocess.run([args.cc, "--version"], capture_output=True, text=True)
    print(f"\nDate {date.today()}; machine {platform.machine()} {os.cpu_count()} cores, "
          f"{platform.python_version()}, torch {torch.__version__}, 1 torch thread, "
          f"{compiler.stdout.splitlines()[0]}; "
          f"load average (1 min) {min(load):.2f}-{max(load):.2f}. B={b}, V={v}, K={k} "
          f"({b * k} points). Command (repo root): `python bench/bench_triangulation_floor.py "
          f"--rounds {args.rounds} --calls {args.calls}`.\n")
    print("| implementation | median ms | min ms | us per point (median) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.3f} | {min(ts) * 1e3:.3f} | {med / (b * k) * 1e6:.3f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
