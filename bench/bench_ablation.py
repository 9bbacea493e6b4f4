"""Loss ablation on the built-in example project (same seed, same steps for every variant).

    python bench/bench_ablation.py [--epochs 60] [--out /tmp/ablation]

Variants: supervised heatmap loss only; + pairwise projection 3D loss; + reprojected heatmap 3D
loss; + unsupervised multi-view losses (pca_multiview and multiview_reprojection, applied to
the predictions of the labelled batches). Prints test pixel error and the multi-view
reprojection error of the predictions for each; record them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from mvcore.config import load_config
from mvcore.data.example import make_example_project
from mvcore.training.run import train


def variants(pairwise_log_weight: float, reprojection_log_weight: float,
             unsupervised_log_weight: float) -> dict[str, list[str]]:
    key = "losses.supervised_reprojection_heatmap_mse.log_weight"
    reprojection = f"{key}={reprojection_log_weight}"
    return {
        "supervised only": [],
        "+ pairwise projection": [
            f"losses.supervised_pairwise_projections.log_weight={pairwise_log_weight}"],
        "+ reprojection heatmap": [reprojection],
        "+ unsupervised (pca_multiview, multiview_reprojection)": [
            reprojection,
            "model.losses_to_use=[pca_multiview,multiview_reprojection]",
            f"losses.pca_multiview.log_weight={unsupervised_log_weight}",
            f"losses.multiview_reprojection.log_weight={unsupervised_log_weight}",
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="/tmp/mvcore_ablation")
    parser.add_argument("--freeze-until-epoch", type=int, default=5)
    parser.add_argument("--increase-factor", type=float, default=0.1)
    parser.add_argument("--pairwise-log-weight", type=float, default=0.5)
    parser.add_argument("--reprojection-log-weight", type=float, default=3.0)
    parser.add_argument("--unsupervised-log-weight", type=float, default=6.0)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra overrides applied to every variant")
    args = parser.parse_args()
    out = Path(args.out)
    config_path = make_example_project(out / "example", overwrite=True)
    rows = []
    anneal = [f"callbacks.anneal_weight.freeze_until_epoch={args.freeze_until_epoch}",
              f"callbacks.anneal_weight.increase_factor={args.increase_factor}"]
    chosen = variants(args.pairwise_log_weight, args.reprojection_log_weight,
                      args.unsupervised_log_weight)
    for index, (name, overrides) in enumerate(chosen.items()):
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
        })
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".2f") if _has_tabulate() else table)
    table.to_csv(out / "ablation.csv", index=False)
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
