#!/usr/bin/env bash
# One prepared run for the GPU machine (`run` tool; no network; it has PyTorch cu130, the CUDA 13
# runtime wheels and CPU onnxruntime). Carry the prebuilt binaries from this machine:
#   cargo xtask build-ops && cargo build --release -p smdim-scan-op --example cuda_scan_check
#   carry: target/release/examples/cuda_scan_check
# Writes to $OUT: gpu.txt, scan.md (CUDA kernel vs the CPU reference: max error, kernel time vs
# our CPU kernel), torch.jsonl (PyTorch generation latency and peak GPU memory).
# End-to-end generation through ONNX Runtime's CUDA provider additionally needs the GPU build of
# ONNX Runtime (docs/gpu.md): too large for one transfer, see the issue 6 note for the plan.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/smdim_gpu_check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
status=0
if [ -x target/release/examples/cuda_scan_check ]; then
    timeout 120 target/release/examples/cuda_scan_check | tee "$OUT/scan.md" || status=1
else
    echo "target/release/examples/cuda_scan_check was not carried" | tee "$OUT/scan.md"
    status=1
fi
(cd model-export && PYTHONPATH=. timeout 300 python3 ../tests/gpu/torch_generate.py \
    --config "${CONFIG:-default}" --lengths 512 2048) | tee "$OUT/torch.jsonl" || status=1
exit $status
