#!/usr/bin/env bash
# GPU check: run it whenever a GPU machine is available (target: under 8 minutes on one GPU).
#
#   bash bench/gpu_check.sh            # on a CUDA machine, from the repo root, mvcore's venv active
#   bash bench/gpu_check.sh --dry-run  # on CPU, every stage at its smallest (tests/bench keep it
#                                      # from rotting before a GPU is there)
#   options: --out DIR (default /tmp/mvcore-gpu-check), PYTHON=... to choose the interpreter
#
# Stages, each with its own time limit inside one 450 s budget (a stage gets what is left, so
# the whole check ends within 8 minutes whatever hangs), each adding rows to one table:
#   1. the CUDA tests (the tests marked skipif(not torch.cuda.is_available())); dry: collected
#   2. network training steps/s (forward + backward + Adam, synthetic batches, the model alone)
#      and peak GPU memory: the example's network and a ViT-S 4-view 256x256 MVT, in float32
#      (backbone_params.autocast: off), bf16-mixed (torch.autocast around the step, as
#      training.precision: bf16-mixed) and the defaults (autocast: auto = bf16 blocks on a
#      bf16 GPU); dry: a micro ViT at 64x64 on CPU, 2 steps
#   3. the built-in example end to end: `mvcore example-data` + `mvcore train` (its config):
#      wall time and optimiser steps/s including start-up and outputs; dry: the data is made
#      and `mvcore config check` reads it, no training
#   4. mouse4cam: a ViT-S (random init) 4-view 256x256 model trained 1 epoch (wall time), then
#      `mvcore predict` of the 4 videos (120 frame sets, batch 8), frame sets/s; dry: `mvcore
#      config check` of that training config with its overrides, and predict's flags
# Exit status: 0 when every stage ran, 1 when one failed (its row says so), 2 on bad usage or
# no GPU without --dry-run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DRY=0
OUT=/tmp/mvcore-gpu-check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python}"
MOUSE="../shared/data/mouse4cam"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
else
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device here; run with --dry-run to check the script on CPU" >&2
    exit 2
  fi
  DEVICE=cuda
fi
rm -rf "$OUT" && mkdir -p "$OUT" || exit 2
TABLE="$OUT/table.tsv"
printf 'stage\tmeasure\tvalue\tpeak GPU MiB\n' > "$TABLE"
FAILED=0
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:--}" >> "$TABLE"; }
fail() { row "$1" "FAILED (exit $2)" "see $3" "-"; FAILED=1; }
START=$(date +%s)
BUDGET=450
# limit STAGE_CAP: the stage's own cap in seconds, or what is left of the budget if less; the
# dry run checks that the script works, not how fast: 300 s a stage on a busy CPU
limit() {
  [ "$DRY" = 1 ] && { echo 300; return; }
  local left=$(( START + BUDGET - $(date +%s) ))
  [ "$left" -lt "$1" ] && echo $(( left > 1 ? left : 1 )) || echo "$1"
}

# ------------------------------------------------------------------ 1. CUDA tests
mapfile -t CUDA_TESTS < <("$PY" - <<'EOF'
"""Node ids of the tests that need CUDA: decorated skipif(not torch.cuda.is_available())."""
import ast
from pathlib import Path

for path in sorted(Path("tests").rglob("test_*.py")):
    source = path.read_text()
    if "cuda.is_available" not in source:
        continue
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            decorators = " ".join(ast.get_source_segment(source, d) or ""
                                  for d in node.decorator_list)
            if "not torch.cuda.is_available()" in decorators:
                print(f"{path}::{node.name}")
EOF
)
if [ "${#CUDA_TESTS[@]}" = 0 ]; then
  fail "cuda tests" 1 "no test is marked skipif(not torch.cuda.is_available())"
elif [ "$DRY" = 1 ]; then
  if "$PY" -m pytest --collect-only -q "${CUDA_TESTS[@]}" > "$OUT/cuda_tests.log" 2>&1; then
    row "cuda tests" "${#CUDA_TESTS[@]} test functions, collected (dry)" \
      "$(grep -cE '::' "$OUT/cuda_tests.log") tests"
  else
    fail "cuda tests" $? "$OUT/cuda_tests.log"
  fi
else
  timeout "$(limit 90)" "$PY" -m pytest -q -rs "${CUDA_TESTS[@]}" > "$OUT/cuda_tests.log" 2>&1
  rc=$?
  summary=$(tail -n 1 "$OUT/cuda_tests.log")
  if [ $rc = 0 ]; then row "cuda tests" "${#CUDA_TESTS[@]} test functions" "$summary"
  else fail "cuda tests" $rc "$OUT/cuda_tests.log"; fi
fi

# ------------------------------------------------------------------ 2. network steps
timeout "$(limit 120)" "$PY" - "$DEVICE" "$DRY" >> "$TABLE" 2> "$OUT/steps.log" <<'EOF'
"""Training steps/s and peak memory of the networks alone (synthetic batches)."""
import contextlib
import sys
import time

import torch
from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

from mvcore import Context

device, dry = torch.device(sys.argv[1]), sys.argv[2] == "1"
cases = [  # label, backbone, views, size, keypoints, batch
    ("example network (vit_micro_scratch, 3 views 128px, batch 8)",
     "vit_micro_scratch", 3, 128, 10, 8),
    ("ViT-S MVT (4 views 256px, batch 8)", "vits_dino", 4, 256, 17, 8),
]
steps, warmup = 10, 3
if dry:
    cases = [("micro ViT (dry: 2 views 64px, batch 2)", "vit_micro_scratch", 2, 64, 3, 2)]
    steps, warmup = 2, 1
for label, backbone, views, size, keypoints, batch in cases:
    variants = [("float32 (autocast: off)", "off", None),
                ("bf16-mixed (training.precision)", "off", torch.bfloat16),
                ("defaults (autocast: auto)", "auto", None)]
    for precision, model_autocast, dtype in variants:
        ctx = Context(view_names=tuple(f"v{i}" for i in range(views)),
                      keypoint_names=tuple(f"k{i}" for i in range(keypoints)),
                      image_height=size, image_width=size, downsample_factor=2, seed=0)
        params = MultiviewTransformerParams(backbone=backbone, backbone_pretrained=False,
                                            autocast=model_autocast)
        model = MultiviewTransformer(params, ctx).to(device).train()
        optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        images = torch.randn(batch, views, 3, size, size, device=device)
        target = torch.rand(batch, views, keypoints, size // 4, size // 4, device=device)
        cast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(warmup + steps):
            if i == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            with cast:
                loss = ((model(images) - target) ** 2).mean()
            loss.backward()
            optim.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"
        else:
            peak = "-"
        rate = steps / (time.perf_counter() - start)
        print(f"network steps\t{label}; {precision}\t{rate:.2f} steps/s "
              f"({rate * batch:.1f} samples/s)\t{peak}")
        del model, optim
        if device.type == "cuda":
            torch.cuda.empty_cache()
EOF
rc=$?; [ $rc = 0 ] || fail "network steps" $rc "$OUT/steps.log"

# ------------------------------------------------------------------ 3. the example end to end
t0=$(date +%s.%N)
timeout "$(limit 60)" mvcore example-data "$OUT/example" > "$OUT/example.log" 2>&1
rc=$?
if [ $rc != 0 ]; then
  fail "example train" $rc "$OUT/example.log"
elif [ "$DRY" = 1 ]; then
  if timeout "$(limit 60)" mvcore config check "$OUT/example/config.yaml" \
       >> "$OUT/example.log" 2>&1 && mvcore train --help > /dev/null; then
    row "example train" "data made, config check passed (dry: not trained, ~1 min of CPU)" "-"
  else fail "example train" $? "$OUT/example.log"; fi
else
  t1=$(date +%s.%N)
  if timeout "$(limit 150)" mvcore train "$OUT/example/config.yaml" --output "$OUT/example_run" \
       >> "$OUT/example.log" 2>&1; then
    t2=$(date +%s.%N)
    steps=$("$PY" - "$OUT/example_run" <<'EOF'
import sys
from pathlib import Path
import torch
ckpts = sorted(Path(sys.argv[1]).rglob("*.ckpt"))
print(max(int(torch.load(c, map_location="cpu", weights_only=False).get("global_step", 0))
          for c in ckpts) if ckpts else 0)
EOF
)
    wall=$("$PY" -c "print(f'{$t2 - $t1:.1f}')")
    rate=$("$PY" -c "print(f'{$steps / ($t2 - $t1):.2f}')")
    row "example train" "mvcore train, whole run (data made in $("$PY" -c "print(f'{$t1 - $t0:.0f}')") s)" \
      "$steps steps in $wall s = $rate steps/s"
  else fail "example train" $? "$OUT/example.log"; fi
fi

# ------------------------------------------------------------------ 4. mouse4cam
sets=(--set model.backbone=vits_dino --set model.backbone_pretrained=false
      --set data.image_resize_dims.height=256 --set data.image_resize_dims.width=256
      --set training.max_epochs=1 --set training.check_val_every_n_epoch=1)
predict_flags=(--videos --out --batch-size --checkpoint --device)
if [ "$DRY" = 1 ]; then
  n=$(ls "$MOUSE"/videos/*.mp4 2>/dev/null | wc -l)
  help=$(mvcore predict --help 2>&1)
  missing=$(for f in "${predict_flags[@]}"; do grep -q -- "$f" <<< "$help" || echo "$f"; done)
  if [ "$n" -ge 4 ] && [ -z "$missing" ] && timeout "$(limit 60)" mvcore config check \
       bench/configs/mouse4cam.yaml "${sets[@]}" > "$OUT/m4.log" 2>&1; then
    row "mouse4cam predict" "config check passed, $n videos, predict flags known (dry)" "-"
  else fail "mouse4cam predict" 1 "$OUT/m4.log; predict flags missing: ${missing:-none}"; fi
else
  t0=$(date +%s.%N)
  if timeout "$(limit 120)" mvcore train bench/configs/mouse4cam.yaml --output "$OUT/m4_run" \
       "${sets[@]}" > "$OUT/m4.log" 2>&1; then
    row "mouse4cam train" "ViT-S 4 views 256, 1 epoch, whole run" \
      "$("$PY" -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s"
    t0=$(date +%s.%N)
    if timeout "$(limit 90)" mvcore predict "$OUT/m4_run" --videos "$MOUSE/videos" \
         --out "$OUT/m4_preds" --batch-size 8 --checkpoint last --device cuda \
         >> "$OUT/m4.log" 2>&1; then
      t1=$(date +%s.%N)
      frames=$("$PY" -c "import av,sys; c=av.open(sys.argv[1]); s=c.streams.video[0]; print(s.frames or sum(1 for _ in c.decode(s)))" "$(ls "$MOUSE"/videos/*.mp4 | head -n 1)")
      row "mouse4cam predict" "ViT-S 4 views 1280x1024 -> 256, batch 8, incl. model load" \
        "$frames frame sets in $("$PY" -c "print(f'{$t1 - $t0:.1f}')") s = $("$PY" -c "print(f'{$frames / ($t1 - $t0):.1f}')") sets/s"
    else fail "mouse4cam predict" $? "$OUT/m4.log"; fi
  else fail "mouse4cam predict (training)" $? "$OUT/m4.log"; fi
fi

# ------------------------------------------------------------------ the table
echo
echo "mvcore GPU check ($( [ "$DRY" = 1 ] && echo "dry run on CPU" || "$PY" -c "import torch; print(torch.cuda.get_device_name(0))"), $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - START )) s)"
"$PY" - "$TABLE" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print("| " + " | ".join(rows[0]) + " |")
print("|" + "---|" * len(rows[0]))
for r in rows[1:]:
    print("| " + " | ".join(r) + " |")
EOF
exit $FAILED
