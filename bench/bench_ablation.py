"""Loss ablation on the built-in example project (same seed, same steps for every variant).

    python bench/bench_ablation.py [--out /tmp/mvcore_ablation] [--only 0 3] [--set KEY=VALUE]
                                   [--drop-labels 0.4]

The defaults are the settings recorded in bench/RESULTS.md: 150 epochs, the 3D and
unsupervised losses off (annealing weight 0) until epoch 60 and at full weight from epoch 110,
no 2D/3D augmentation (the example's config).

Variants: supervised heatmap loss only; + pairwise projection 3D loss; + reprojected heatmap 3D
loss; + the unsupervised multiview_reprojection loss on unlabelled clips of the project's videos;
+ reprojected heatmap, pca_multiview and multiview_reprojection together. Prints test pixel
error and the multi-view reprojection error of the predictions for each (one row per finished
variant, also written to OUT/ablation.csv); record them in bench/RESULTS.md.

The labelled test split of the example is small (6 frame sets), so each model also predicts the
project's whole video (120 frame sets, as `mvcore predict` does) and the table adds the median
reprojection error of the confidence-weighted triangulation (all views) of those predictions
and their median 3D distance to the example's exact ground truth (ground_truth_3d.csv, mm),
over all frames and over the held-out frames only (the 60 frames that have no labelled image,
so neither training nor validation saw them). The video columns are given for the best
checkpoint (lowest validation pixel error, like the test columns) and for the last one (the
same number of steps for every variant: with a 6-frame validation split the "best" epoch is
noisy, and a variant whose best epoch precedes the annealing equals the baseline).

``--drop-labels F`` removes a random fraction F of the (frame set, view, keypoint) labels
(a fixed RNG, the same for every variant) before training: the partial labelling of real
projects, where a labeller skips a keypoint in the views where it is hard to see. The
supervised heatmap loss has no target there; the 3D losses still constrain those views
whenever two other views are labelled.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mvcore.config import load_config
from mvcore.example import make_example_project
from mvcore.predict.video import predict_videos
from mvcore.workflow import train


def labelled_frames(project_dir: Path) -> set[int]:
    """Frame numbers of the project's labelled images (``.../img<NNNN>.png``)."""
    frames: set[int] = set()
    for csv in sorted(project_dir.glob("CollectedData_*.csv")):
        index = pd.read_csv(csv, header=[0, 1, 2], index_col=0).index
        frames |= {int(Path(name).stem[len("img"):]) for name in index}
    return frames


def drop_labels(project_dir: Path, fraction: float, seed: int = 0) -> float:
    """Blank a random ``fraction`` of the labels of every ``CollectedData_*.csv`` (per frame
    set, view and keypoint; deterministic from ``seed``). Returns the fraction now missing."""
    rng = np.random.default_rng(seed)
    missing, total = 0, 0
    for csv in sorted(project_dir.glob("CollectedData_*.csv")):
        table = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
        values = table.to_numpy().reshape(len(table), -1, 2)  # (rows, K, 2)
        values[rng.random(values.shape[:2]) < fraction] = np.nan
        table.iloc[:, :] = values.reshape(len(table), -1)
        table.to_csv(csv)
        missing += int(np.isnan(values[..., 0]).sum())
        total += values.shape[0] * values.shape[1]
    return missing / total


def video_metrics(model_dir: Path, project_dir: Path, checkpoint: str = "best"
                  ) -> dict[str, float]:
    """Predict the example video with the ``best`` or ``last`` checkpoint; median reprojection
    error [px] of the triangulated predictions and median 3D error [mm] against the exact
    ground truth, over all frames and over the frames without a labelled image."""
    out_dir = model_dir / ("video_preds" if checkpoint == "best" else f"video_preds_{checkpoint}")
    predict_videos(model_dir, out_dir=out_dir, checkpoint=checkpoint, progress=False,
                   log=lambda message: None, overwrite=True,
                   confidence_threshold=0.0)  # every view, weighted by its confidence
    points = pd.read_csv(out_dir / "session0_3d.csv")
    truth = pd.read_csv(project_dir / "ground_truth_3d.csv").set_index("frame")
    names = [c[: -len("_error")] for c in points.columns if c.endswith("_error")]
    columns = [[f"{name}_{axis}" for axis in "xyz"] for name in names]
    pred = np.stack([points[c].to_numpy() for c in columns], axis=1)  # (T, K, 3)
    true = np.stack([truth.loc[points["fnum"], c].to_numpy() for c in columns], axis=1)
    errors = points[[f"{name}_error" for name in names]].to_numpy()
    distance = np.linalg.norm(pred - true, axis=-1)
    held_out = ~points["fnum"].isin(labelled_frames(project_dir)).to_numpy()
    tag = "" if checkpoint == "best" else f", {checkpoint}"
    return {f"video reprojection error (median px{tag})": float(np.nanmedian(errors)),
            f"video 3D error (median mm{tag})": float(np.nanmedian(distance)),
            f"held-out reprojection error (median px{tag})": float(
                np.nanmedian(errors[held_out])),
            f"held-out 3D error (median mm{tag})": float(np.nanmedian(distance[held_out]))}


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    """Variant name -> overrides on top of the shared ones."""
    key = "losses.supervised_reprojection_heatmap_mse.log_weight"
    reprojection = f"{key}={args.reprojection_log_weight}"
    pairwise = [
        f"losses.supervised_pairwise_projections.log_weight={args.pairwise_log_weight}",
        f"losses.supervised_pairwise_projections.max_distance={args.pairwise_max_distance}",
    ]
    return {
        "supervised only": [],
        "+ pairwise projection": pairwise,
        "+ reprojection heatmap": [reprojection],
        "+ unsupervised multiview_reprojection": [
            "model.losses_to_use=[multiview_reprojection]",
            f"losses.multiview_reprojection.log_weight={args.unsupervised_log_weight}",
            f"losses.multiview_reprojection.epsilon={args.unsupervised_epsilon}",
        ],
        "+ reprojection heatmap + unsupervised (pca_multiview, multiview_reprojection)": [
            reprojection,
            "model.losses_to_use=[pca_multiview,multiview_reprojection]",
            f"losses.pca_multiview.log_weight={args.unsupervised_log_weight}",
            f"losses.multiview_reprojection.log_weight={args.unsupervised_log_weight}",
            f"losses.multiview_reprojection.epsilon={args.unsupervised_epsilon}",
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--out", default="/tmp/mvcore_ablation")
    parser.add_argument("--freeze-until-epoch", type=int, default=60)
    parser.add_argument("--increase-factor", type=float, default=0.02)
    parser.add_argument("--pairwise-log-weight", type=float, default=7.0)
    parser.add_argument("--reprojection-log-weight", type=float, default=1.0)
    parser.add_argument("--pairwise-max-distance", type=float, default=30.0,
                        help="world units; pairs farther from the target are left out")
    parser.add_argument("--unsupervised-log-weight", type=float, default=6.0)
    parser.add_argument("--unsupervised-epsilon", type=float, default=1.0,
                        help="multiview_reprojection epsilon in frame pixels")
    parser.add_argument("--only", type=int, nargs="+", default=None,
                        help="run only these variant numbers (0 = supervised only)")
    parser.add_argument("--drop-labels", type=float, default=0.0,
                        help="blank this random fraction of the labels before training")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra overrides applied to every variant")
    args = parser.parse_args()
    out = Path(args.out)
    config_path = make_example_project(out / "example", overwrite=True)
    if args.drop_labels > 0:
        missing = drop_labels(config_path.parent, args.drop_labels)
        print(f"labels missing after --drop-labels {args.drop_labels}: {missing:.1%}")
    rows = []
    anneal = [f"callbacks.anneal_weight.freeze_until_epoch={args.freeze_until_epoch}",
              f"callbacks.anneal_weight.increase_factor={args.increase_factor}"]
    chosen = variants(args)
    for index, (name, overrides) in enumerate(chosen.items()):
        if args.only is not None and index not in args.only:
            continue
        common = [f"training.max_epochs={args.epochs}", *anneal, *args.overrides]
        config = load_config(config_path, [*common, *overrides])
        start = time.perf_counter()
        model_dir = train(config, output_dir=str(out / f"variant{index}"))
        seconds = time.perf_counter() - start
        metrics = pd.read_csv(model_dir / "metrics.csv").set_index("metric")["value"]
        rows.append({
            "variant": name,
            "test px error (mean)": metrics.get("test_pixel_error_mean"),
            "test px error (median)": metrics.get("test_pixel_error_median"),
            "test reprojection error (median)": metrics.get("test_reprojection_error_median"),
            "train reprojection error (median)": metrics.get("train_reprojection_error_median"),
            "seconds": seconds,
            **video_metrics(model_dir, config_path.parent),
            **video_metrics(model_dir, config_path.parent, checkpoint="last"),
        })
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(out / "ablation.csv", index=False)
    table = pd.DataFrame(rows)  # already in OUT/ablation.csv, written after each variant
    print(table.to_markdown(index=False, floatfmt=".2f") if _has_tabulate() else table)
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
