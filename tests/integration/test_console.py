"""The README's job in small, as a user runs it (real processes, the real console): the
console holds mvcore's lines, not Lightning's advertisement tips or the libraries'
deprecation warnings, ends each command with its summary line, and ``mvcore predict`` of a
run too short to validate uses ``last.ckpt`` and says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: 2 epochs, validation every 5: the run writes last.ckpt and no best.ckpt
TRAIN = ["data.image_resize_dims.height=64", "data.image_resize_dims.width=64",
         "training.max_epochs=2", "training.min_epochs=1", "training.num_workers=0",
         "training.check_val_every_n_epoch=5", "training.train_batch_size=8",
         "eval.num_labeled_frame_plots=1"]
#: what must never reach the console: Lightning's tips, deprecation warnings, file paths of
#: installed packages (a warning's location), the progress bar's meaningless v_num
NOISE = re.compile(r"Tip|litmodels|litlogger|DeprecationWarning|FutureWarning|deprecated|"
                   r"site-packages|TPU available|HPU available|`Trainer.fit` stopped|v_num")


def _mvcore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mvcore ARGS`` in a process of its own, as from a shell (warnings as by default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "MVCORE_DEBUG")}
    env["PYTHONWARNINGS"] = "default"  # shows what a filter at the source must hide
    script = Path(sys.executable).with_name("mvcore")  # the installed command
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "mvcore.cli.main"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The console's lines, progress bars (carriage-return redraws) left out."""
    text = (result.stdout + "\n" + result.stderr).replace("\r", "\n")
    return [line for line in text.splitlines()
            if line.strip() and not re.search(r"(it|frame)/s\]\s*$|s/it\]\s*$", line)]


def _noise(lines: list[str]) -> list[str]:
    return [line for line in lines if NOISE.search(line)]


def test_train_then_predict_console_is_mvcores_and_ends_with_summaries(tmp_path):
    made = _mvcore("example-data", "ex", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    sets = [arg for item in TRAIN for arg in ("--set", item)]
    trained = _mvcore("train", "ex/config.yaml", "--output", "runs/m", *sets, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    lines = _lines(trained)
    assert _noise(lines) == [], lines
    assert [line for line in lines if line.startswith("warning:")] == []
    assert sum(line.startswith("GPU available: ") for line in lines) == 1  # the device line
    verdict = trained.stdout.strip().splitlines()[-1]
    assert verdict.startswith("trained: 2 epochs (") and "model directory: runs/m; " in verdict
    assert "no validation ran" in verdict
    assert verdict.endswith("next: mvcore predict runs/m --labeled-video (the videos: 2D and "
                            "3D CSVs), then mvcore report runs/m (an HTML page of the run)")
    assert not (tmp_path / "runs/m/checkpoints/best.ckpt").exists()

    predicted = _mvcore("predict", "runs/m", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = _lines(predicted)
    assert _noise(lines) == [], lines
    warned = [line for line in lines if line.startswith("warning:")]
    assert warned == [
        "warning: runs/m has no checkpoints/best.ckpt (validation never measured an error in "
        "its run: it runs every training.check_val_every_n_epoch epochs); using "
        "runs/m/checkpoints/last.ckpt, the last epoch's weights"]
    summary = predicted.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"1 session\(s\) predicted, 0 skipped; \d+ frames \([\d.]+ frames/s\); "
                        r"CSVs in runs/m/video_preds \(<session>_<view>\.csv, "
                        r"<session>_3d\.csv\); next: mvcore report runs/m", summary), summary
    assert len(list((tmp_path / "runs/m/video_preds").glob("*_3d.csv"))) == 1
