"""Single models vs their ensemble vs the ensemble smoothed by the multi-camera Ensemble Kalman
Smoother, on the example project's video against its exact ground truth.

    mvcore example-data ex
    for s in 0 1 2; do
        mvcore train ex/config.yaml --output runs/m$s --set training.rng_seed_model_pt=$s
    done
    python bench/bench_ensemble.py ex runs/m0 runs/m1 runs/m2 [--out /tmp/ens_out]

Predicts the example's session with every model and writes the ensemble and the smoothed
predictions (``mvcore.predict.ensemble.predict_ensemble``, what ``mvcore predict MODEL_DIR
... --smooth eks`` runs; every view weighted by its confidence in the triangulation:
``--confidence-threshold 0``), and the first model alone smoothed. The 2D truth is the
ground truth 3D (``ground_truth_3d.csv``) projected through ``calibration.toml``, as the
example's labels are. Prints per row the
median and mean 2D error (px, every view, keypoint and frame), the median and mean 3D error
(the example's unit, mm), over all frames and over the held-out frames (no labelled image:
neither training nor validation saw them); record them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mvcore.data.csv_io import read_keypoints_csv
from mvcore.geometry import load_calibration, project_points
from mvcore.predict.ensemble import ENSEMBLE_DIR, MODELS_DIR, model_names, predict_ensemble


def labelled_frames(project: Path) -> np.ndarray:
    """Frame numbers of the project's labelled images (``labeled-data/*/img<NNNN>.png``)."""
    return np.unique([int(p.stem[len("img"):]) for p in project.glob("labeled-data/*/img*.png")])


def errors(folder: Path, session: str, views: list[str], keypoints: list[str],
           uv: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: 2D errors ``(T, V, K)`` px of ``<session>_<view>.csv`` against ``uv (T, V,
    K, 2)`` and 3D errors ``(T, K)`` of ``<session>_3d.csv`` against ``points (T, K, 3)``."""
    coords = np.stack([read_keypoints_csv(folder / f"{session}_{v}.csv")[2] for v in views], 1)
    table = pd.read_csv(folder / f"{session}_3d.csv")
    pred = np.stack([table[[f"{k}_{a}" for a in "xyz"]].to_numpy() for k in keypoints], 1)
    return (np.linalg.norm(coords - uv, axis=-1), np.linalg.norm(pred - points, axis=-1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="the example project (mvcore example-data)")
    parser.add_argument("models", type=Path, nargs="+", help="model directories")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mvcore_bench_ensemble"))
    parser.add_argument("--session", default="session0")
    args = parser.parse_args()

    def run(models: list[Path], out: Path) -> float:
        started = time.perf_counter()
        predict_ensemble(models, out, video_dir=args.project / "videos", session=args.session,
                         smooth="eks", confidence_threshold=0.0, device="cpu",
                         log=lambda line: print(line, file=sys.stderr))
        return time.perf_counter() - started

    seconds = run(args.models, args.out)
    run(args.models[:1], args.out / "single")  # the first model alone, smoothed

    cameras = load_calibration(args.project / "calibration.toml")
    truth = pd.read_csv(args.project / "ground_truth_3d.csv")
    keypoints = [c[: -len("_x")] for c in truth.columns if c.endswith("_x")]
    points = np.stack([truth[[f"{k}_{a}" for a in "xyz"]].to_numpy() for k in keypoints], 1)
    tensors = cameras.to_tensors(dtype=torch.float64)
    uv = project_points(torch.as_tensor(points), tensors.intrinsics, tensors.extrinsics,
                        tensors.distortions).numpy()  # (T, V, K, 2)
    held_out = ~np.isin(np.arange(len(points)), labelled_frames(args.project))

    rows = {f"model {name}": args.out / MODELS_DIR / name for name in model_names(args.models)}
    rows |= {f"ensemble of {len(args.models)} (mean)": args.out / ENSEMBLE_DIR,
             f"ensemble of {len(args.models)} + EKS": args.out / "eks",
             f"model {model_names(args.models)[0]} alone + EKS": args.out / "single" / "eks"}
    table = []
    for row, folder in rows.items():
        e2, e3 = errors(folder, args.session, cameras.names, keypoints, uv, points)
        table.append({"predictions": row,
                      "2D median px": np.nanmedian(e2), "2D mean px": np.nanmean(e2),
                      "3D median mm": np.nanmedian(e3), "3D mean mm": np.nanmean(e3),
                      "held-out 2D median px": np.nanmedian(e2[held_out]),
                      "held-out 3D median mm": np.nanmedian(e3[held_out]),
                      "3D 95th pct mm": np.nanpercentile(e3, 95)})
    frame = pd.DataFrame(table).set_index("predictions")
    singles = frame[frame.index.str.startswith("model ") & ~frame.index.str.endswith("EKS")]
    frame.loc["single model (mean of rows)"] = singles.mean()
    print(frame.round(2).to_markdown() if _has_tabulate() else frame.round(2).to_string())
    print(f"\n{len(points)} frames x {len(cameras.names)} views, {held_out.sum()} held out; "
          f"predict ({len(args.models)} models) + ensemble + EKS in {seconds:.0f} s")
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
