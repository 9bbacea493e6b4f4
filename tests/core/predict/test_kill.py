"""``mvcore predict`` killed (kill -9) while it writes a 3D CSV: no output under a complete
name is partial, the folder's lock dies with the process, and the re-run predicts the session
again and writes what an uninterrupted run writes, byte for byte. (A subprocess: importing
torch and Lightning makes this the slow one of the output tests in ``test_outputs.py``.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from predict_models import csv_bytes, partial_files, predict_cli

HELPERS = Path(__file__).resolve().parents[2] / "helpers"


def test_kill_9_while_writing_is_predicted_again_and_equals_a_clean_run(model_dir, tmp_path,
                                                                          capsys):
    script = ("import sys, pandas as pd, predict_models\n"
              "predict_models.use_tiny_components()\n"
              "pd.DataFrame.to_csv = predict_models.cut_short_to_csv(kill=True)\n"
              "sys.exit(predict_models.predict_cli(sys.argv[1]))\n")
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    killed = subprocess.run([sys.executable, "-c", script, str(model_dir)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    out = model_dir / "video_preds"
    (left,) = partial_files(out)  # what kill -9 leaves: a hidden partial file, never s1_3d.csv
    assert re.fullmatch(r"\.s1_3d\.[0-9a-f]{8}\.partial\.csv", left)
    assert not (out / "s1_3d.csv").exists() and not (out / ".mvcore" / "s1.json").exists()
    assert predict_cli(model_dir) == 0  # the lock died with its process
    assert "predicting session s1 again" in capsys.readouterr().out
    assert partial_files(out) == []
    assert predict_cli(model_dir, "--out", str(tmp_path / "clean")) == 0
    assert csv_bytes(out) == csv_bytes(tmp_path / "clean")
