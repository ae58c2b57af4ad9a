#!/usr/bin/env bash
# Export the model chosen by the evaluation to models/smdim-default.onnx (+ card with its
# metrics from docs/model/metrics.json). Usage: scripts/ship.sh CKPT "ROW NAME" [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="$1"; ROW="$2"; STEPS="${3:-32}"
.venv/bin/python - "$ROW" <<'PY'
import json, sys
rows = json.load(open("../docs/model/metrics.json"))
row = sys.argv[1]
out = {"row": row, **rows[row],
       "reference_real_valid_vs_test": rows["real held-out (valid)"],
       "protocol": "docs/model/RESULTS.md (OA per docs PAPER.md), 512-token sequences"}
json.dump(out, open("runs/ship_metrics.json", "w"), indent=1, default=float)
PY
exec .venv/bin/python -m smdim.export --ckpt "$CKPT" --out ../models/smdim-default.onnx \
  --metrics runs/ship_metrics.json --steps "$STEPS"
