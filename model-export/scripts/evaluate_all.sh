#!/usr/bin/env bash
# Reproduces docs/model/RESULTS.md, metrics.json, pianoroll.png, midi/ and audio/ from the
# trained checkpoints runs/default/final_ema.pt (SMDIM) and runs/default-transformer/final_ema.pt
# (attention-only baseline); rows in scripts/eval_rows.txt. Needs the release CLI
# (`cargo build --release -p smdim-cli` in the repository root: target/release/smdim with
# `generate --count --style --tokens-out`) for the constrained rows, and fluidsynth, ffmpeg and
# fluid-soundfont-gm for the renders. Extra arguments go to the evaluator (e.g. --n 64 for a
# quick look, --skip-cli, --threads 2 on an idle machine).
set -euo pipefail
cd "$(dirname "$0")/.."
# Three tables, run side by side (one core each): what users hear (docs/model/RESULTS.md), raw
# unconstrained sampling (docs/model/raw/RESULTS.md) and the sampler choice at n = 128
# (docs/model/sampler/RESULTS.md, no audio), then Chorale in confidence order at n = 512
# (docs/model/chorale_confidence/RESULTS.md).
EVAL=(nice -n 15 .venv/bin/python -m smdim.evaluate)
"${EVAL[@]}" --n 512 --rows-file scripts/eval_rows.txt "$@" &
main=$!
"${EVAL[@]}" --n 512 --rows-file scripts/eval_rows_raw.txt --out-dir ../docs/model/raw --no-audio "$@" &
raw=$!
wait "$raw"
"${EVAL[@]}" --n 128 --rows-file scripts/eval_rows_sampler.txt --out-dir ../docs/model/sampler \
    --no-audio "$@"
"${EVAL[@]}" --n 512 --rows-file scripts/eval_rows_chorale_confidence.txt \
    --out-dir ../docs/model/chorale_confidence --no-audio "$@"
wait "$main"
