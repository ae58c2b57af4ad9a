#!/usr/bin/env bash
# Inference benchmark tables: the scan op alone (ours vs ONNX Scan), then denoiser forward and whole-sampling latency at 256-2048 tokens,
# native scan kernel vs ONNX Scan fallback vs the int8 twin vs PyTorch eager, same weights, same machine, one run.
# Usage: tests/bench_inference.sh [threads]   (after tests/run_all.sh or setup_venv + fetch-ort)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="${1:-2}"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
cargo build --release -p smdim-cli
cargo xtask build-ops
(cd model-export && .venv/bin/python ../tests/bench/scan_op.py "$ROOT/target/ops/libsmdim_scan_op.so")
(cd model-export && .venv/bin/python ../tests/bench/torch_reference.py --out "$OUT" --threads "$THREADS")
# The int8 twin of the same weights, as the shipped model has one (few batches: untrained weights).
(cd model-export && .venv/bin/python -m smdim.quantize --src "$OUT/bench.onnx" --batches 4 --max-elbo-rise 0.02 >/dev/null)
target/release/smdim bench --model "$OUT/bench.onnx" --int8 "$OUT/bench-int8.onnx" --torch "$OUT/torch.json" --threads "$THREADS"
