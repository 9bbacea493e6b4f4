"""Train end to end from a config and report wall time and pixel errors.

    python bench/bench_train.py bench/configs/mouse4cam.yaml [--set key=value ...]
    python bench/bench_train.py example            # the built-in example project

Prints the wall time, steps per second and the metrics of the run (test pixel error vs the
untrained model). Results are recorded by hand in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mvcore.config import load_config
from mvcore.workflow import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config path, or 'example' for the built-in project")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mvcore_bench_"))
    config_path = args.config
    if config_path == "example":
        from mvcore.example import make_example_project

        config_path = make_example_project(workdir / "example")
    config = load_config(config_path, args.overrides)
    start = time.perf_counter()
    model_dir = train(config, output_dir=args.output or str(workdir / "run"))
    elapsed = time.perf_counter() - start
    log = pd.read_csv(Path(model_dir) / "logs" / "metrics.csv")
    steps = int(log["step"].max()) + 1
    metrics = pd.read_csv(Path(model_dir) / "metrics.csv").set_index("metric")["value"]
    print(f"config: {config_path}")
    print(f"wall time: {elapsed:.1f} s for {steps} steps ({steps / elapsed:.2f} steps/s, "
          "including start-up, validation and the post-training predictions)")
    for name, value in metrics.items():
        print(f"{name}: {value:.3f}")
    print(f"model directory: {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
