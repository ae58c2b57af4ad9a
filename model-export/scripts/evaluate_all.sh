#!/usr/bin/env bash
# The evaluation that produced docs/model/RESULTS.md: checkpoints from the GPU runs
# (runs/gpu1, runs/gpu2 = the $OUT files of scripts/gpu_train.sh) and sample sets drawn on the
# CPU with `python -m smdim.sample` (see docs/model/TRAINING.md; PAD banned).
set -euo pipefail
cd "$(dirname "$0")/.."
L=runs/local
SL=runs/gpu2/ckpt_large.pt
SD=runs/gpu2/ckpt_default.pt
TR=runs/gpu1/ckpt_large-transformer.pt
exec .venv/bin/python -m smdim.evaluate --n 192 --length 512 --threads 2 \
  --model "SMDIM large=$SL:$L/large.npy@32" \
  --model "SMDIM default=$SD:$L/default.npy@32" \
  --model "Transformer (large size)=$TR:$L/large-transformer.npy@32" \
  --model "SMDIM large, top-p 0.9=$SL:$L/large_p09.npy@32" \
  --model "Transformer, top-p 0.9=$TR:$L/large-transformer_p09.npy@32" \
  --model "SMDIM large, 16 steps=$SL:$L/large_s16.npy@16" \
  --model "Transformer, 16 steps=$TR:$L/large-transformer_s16.npy@16" \
  --model "Transformer, 64 steps=$TR:$L/large-transformer_s64.npy@64" \
  --mid-from "${MID_FROM:-Transformer (large size)}" \
  --notes scripts/results_notes.md "$@"
