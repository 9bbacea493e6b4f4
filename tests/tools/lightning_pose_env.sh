#!/usr/bin/env bash
# Lightning Pose's own environment for tests/integration/test_import_lightning_pose.py, which
# trains and saves a model with Lightning Pose's classes and compares it with its import.
#
#   bash tests/tools/lightning_pose_env.sh [VENV [TORCH_SITE_PACKAGES]]
#
# VENV: default ~/.cache/mvcore-tests/lightning-pose-2.4.3 (where the test looks; or set
# MVCORE_LP_PYTHON to its bin/python). torch and torchvision (2.14.1, several GB with their
# CUDA libraries) are not installed twice: a .pth file appends mvcore's site-packages
# (TORCH_SITE_PACKAGES, default: those of the active python's torch) to the new environment's
# path, after its own packages, so Lightning Pose's pinned dependencies
# (tests/tools/lightning_pose_requirements.txt) come first and torch comes from mvcore's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$HOME/.cache/mvcore-tests/lightning-pose-2.4.3}"
torch_site="${2:-$(python -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')}"
rm -rf "$venv"
python3 -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$torch_site" > "$site/zz_mvcore_torch.pth"
"$venv/bin/pip" install -q --no-deps lightning-pose==2.4.3
"$venv/bin/pip" install -q --no-deps -r "$here/lightning_pose_requirements.txt"
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/python" -c "import transformers, lightning_pose.train, lightning_pose.api.model"
    echo "Lightning Pose environment ready: $venv (torch from $torch_site)"
else
    echo "Lightning Pose environment built: $venv; it finds torch once $torch_site has it"
fi
