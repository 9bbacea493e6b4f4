"""bench/gpu_check.sh: its dry mode runs every stage on CPU, so the script cannot rot unseen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """``bash bench/gpu_check.sh ARGS`` with this interpreter and its scripts (``mvcore``)."""
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_dry_run_runs_every_stage_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check"
    result = run_script("--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mvcore GPU check (dry run on CPU" in result.stdout
    assert "FAILED" not in result.stdout
    rows = [line.split("\t") for line in (out / "table.tsv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == {"cuda tests", "network steps", "example train",
                                    "mouse4cam predict"}
    assert all(len(r) == 4 for r in rows)
    # the CUDA tests were collected (they exist and import), and the network stage timed
    # float32, bf16-mixed and the defaults
    collected = next(r for r in rows if r[0] == "cuda tests")[2]
    assert int(collected.split()[0]) > 0
    steps = [r for r in rows if r[0] == "network steps"]
    assert [r[1].split("; ", 1)[1] for r in steps] == [
        "float32 (autocast: off)", "bf16-mixed (training.precision)",
        "defaults (autocast: auto)"]
    assert all(float(r[2].split()[0]) > 0 for r in steps)
    # the printed table is the TSV as markdown, one line per row
    assert result.stdout.count("\n| ") == len(rows) + 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_gpu_it_refuses_and_points_to_dry_run(tmp_path: Path) -> None:
    result = run_script("--out", str(tmp_path / "check"))
    assert result.returncode == 2
    assert "no CUDA device here; run with --dry-run" in result.stderr
    assert not (tmp_path / "check").exists()


def test_unknown_argument_is_a_usage_error() -> None:
    result = run_script("--fast")
    assert result.returncode == 2
    assert "unknown argument --fast" in result.stderr
