#!/usr/bin/env bash
# Create/refresh model-export/.venv. Idempotent: re-running only installs what is missing.
# torch goes in with --no-deps plus exactly the NVIDIA runtime wheels it links (4 GB instead of
# 5.3 GB; PyPI has no CPU-only Linux torch), then everything else pinned, then this package
# editable with --no-deps (so pip never pulls torch's full CUDA dependency tree back in).
# pip warns that torch's cuda-toolkit/triton/cuda-bindings requirements are unmet: intended.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
VENV="$HERE/.venv"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || {
    echo "setup_venv.sh: '$PY -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

"${PIP[@]}" --no-deps --no-compile \
  "torch==2.15.0" \
  "nvidia-cuda-runtime==13.2.86" "nvidia-cublas==13.4.1.3" "nvidia-cusparse==12.7.10.12" \
  "nvidia-nvjitlink==13.2.86" "nvidia-cufft==12.2.0.57" "nvidia-cufile==1.17.1.22" \
  "nvidia-cusparselt-cu13==0.8.1" "nvidia-nccl-cu13==2.30.7" "nvidia-cudnn-cu13==9.26.0.51" \
  "nvidia-cuda-nvrtc==13.2.86" "nvidia-nvshmem-cu13==3.7.2" "nvidia-cuda-cupti==13.2.86"

# torch's pure-Python needs, then the rest (none of these depend on torch).
"${PIP[@]}" \
  "setuptools==80.9.0" "sympy==1.14.0" "networkx==3.6.1" "Jinja2==3.1.6" \
  "filelock==4.3.1" "typing_extensions==4.16.0" "fsspec==2026.9.0" \
  "miditok==3.1.0" "symusic==0.6.0" "music21==10.5.1" "numpy==2.4.6" \
  "onnx==1.23.2" "onnxscript==0.7.2" "onnx-ir==1.1.0" "onnxruntime==1.31.1" \
  "matplotlib==3.11.2" "tqdm==4.70.1" "ninja==1.13.2" "pytest==9.2.0" "ruff==0.17.6"

"${PIP[@]}" --no-deps --no-build-isolation -e "$HERE"
"$VENV/bin/python" -c "import torch, miditok, onnxruntime, smdim; print('smdim venv ok: torch', torch.__version__)"
