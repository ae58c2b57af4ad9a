#!/usr/bin/env bash
# Export the model chosen by the evaluation to models/smdim-default.onnx (+ card with its
# metrics from docs/model/metrics.json). Usage: scripts/ship.sh CKPT "ROW NAME" [STEPS [export flags]]
# The shipped model: scripts/ship.sh runs/default/final_ema.pt "SMDIM melody, constrained (plugin)" 32 \
#   --order random --top-p 0.95 --style-order chorale=confidence:3:16 --tonal-focus 1.5
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="$1"; ROW="$2"; STEPS="${3:-32}"; shift $(( $# < 3 ? $# : 3 ))
.venv/bin/python - "$ROW" <<'PY'
import json, sys
metrics = json.load(open("../docs/model/metrics.json"))
rows, row = metrics["rows"], sys.argv[1]
out = {"row": row, **rows[row],
       "reference_real_valid_vs_test": rows[rows[row]["ceiling_row"]],
       "target_check": metrics["target_check"].get(row),
       "protocol": {"doc": "docs/model/RESULTS.md (OA as in Mittal et al. 2021)",
                    **metrics["protocol"]}}
json.dump(out, open("runs/ship_metrics.json", "w"), indent=1, default=float)
PY
exec .venv/bin/python -m smdim.export --ckpt "$CKPT" --out ../models/smdim-default.onnx \
  --metrics runs/ship_metrics.json --steps "$STEPS" "$@"
