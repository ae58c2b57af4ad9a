#!/usr/bin/env bash
# One prepared GPU run: train several configs concurrently on one GPU, then sample from each.
# Needs only torch + numpy + tqdm (the GPU box has no miditok). Results go to $OUT (<= 8 files):
#   ckpt_<config>.pt (fp16 EMA weights), samples.npz, logs.tar.gz
# Local dry run: CONFIGS="tiny tiny-transformer" TRAIN_SECONDS=20 DEVICE=cpu N_SAMPLES=8 ...
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"
PY="${PY:-python3}"
OUT="${OUT:-/tmp/smdim_gpu_out}"
CONFIGS="${CONFIGS:-large large-transformer default}"
EXTRA_STEPS_CONFIGS="${EXTRA_STEPS_CONFIGS:-large default}"
TRAIN_SECONDS="${TRAIN_SECONDS:-300}"
DEVICE="${DEVICE:-auto}"
N_SAMPLES="${N_SAMPLES:-256}"
LENGTH="${LENGTH:-512}"
RUN="${RUN_DIR:-/tmp/smdim_runs}"
export PYTHONPATH="$HERE" PYTHONUNBUFFERED=1 SMDIM_EXT_DIR="$RUN/ext"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT" "$RUN"
LOG="$RUN/gpu_train.log"
exec > >(tee "$LOG") 2>&1
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
"$PY" - <<'PYEOF'
import torch, time
from smdim.scan import selective_scan_ref, selective_scan_chunked
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
dev = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator().manual_seed(0)
b, d, L, n = 2, 16, 50, 8
x, B, C = torch.randn(b, d, L, generator=g), torch.randn(b, n, L, generator=g), torch.randn(b, n, L, generator=g)
dl = torch.nn.functional.softplus(torch.randn(b, d, L, generator=g)); A = -torch.rand(d, n, generator=g) * 4
D = torch.randn(d, generator=g)
ref = selective_scan_ref(x, dl, A, B, C, D)
got = selective_scan_chunked(*(t.to(dev) for t in (x, dl, A, B, C, D))).cpu()
print("chunked scan on", dev, "max abs err vs reference:", (ref - got).abs().max().item())
PYEOF

pids=()
for c in $CONFIGS; do
  extra=""
  [ "$c" = default ] && [ "$DEVICE" != cpu ] && extra="--batch-size 64"
  "$PY" -m smdim.train --config "$c" --out "$RUN/$c" --time-limit "$TRAIN_SECONDS" \
    --device "$DEVICE" --threads 4 --fp16-final --eval-every "${EVAL_EVERY:-100}" $extra \
    > "$RUN/train_$c.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "a training process failed ($p)"; done
date -u
for c in $CONFIGS; do echo "== $c"; tail -n 3 "$RUN/train_$c.log"; cat "$RUN/$c/metrics.csv" 2>/dev/null | tail -n 4; done

pids=()
for c in $CONFIGS; do
  [ -f "$RUN/$c/final_ema.pt" ] || continue
  "$PY" -m smdim.sample --ckpt "$RUN/$c/final_ema.pt" --n "$N_SAMPLES" --length "$LENGTH" \
    --batch 128 --device "$DEVICE" --seed 1000 --out "$RUN/samples_$c.npy" \
    > "$RUN/sample_$c.log" 2>&1 &
  pids+=($!)
done
for c in $EXTRA_STEPS_CONFIGS; do
  [ -f "$RUN/$c/final_ema.pt" ] || continue
  "$PY" -m smdim.sample --ckpt "$RUN/$c/final_ema.pt" --n "$((N_SAMPLES / 2))" --length "$LENGTH" \
    --batch 128 --device "$DEVICE" --seed 2000 --steps 16 --out "$RUN/samples_${c}_s16.npy" \
    > "$RUN/sample_${c}_s16.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "a sampling process failed ($p)"; done
for c in $CONFIGS; do cat "$RUN/sample_$c.log" 2>/dev/null | tail -n 2; done
date -u

for c in $CONFIGS; do
  [ -f "$RUN/$c/final_ema.pt" ] && cp "$RUN/$c/final_ema.pt" "$OUT/ckpt_$c.pt"
done
"$PY" - "$RUN" "$OUT" $CONFIGS <<'PYEOF'
import sys, numpy as np, pathlib
run, out, names = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
arrs = {f.stem[len("samples_"):]: np.load(f) for f in sorted(run.glob("samples_*.npy"))}
np.savez_compressed(out / "samples.npz", **arrs)
print("samples:", {k: v.shape for k, v in arrs.items()})
PYEOF
tar czf "$OUT/logs.tar.gz" -C "$RUN" --exclude='*.pt' --exclude=ext --exclude='*.npy' .
ls -la "$OUT"
