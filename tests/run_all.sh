#!/usr/bin/env bash
# Every test of the project, from a fresh Debian machine: installs what it needs, then runs the
# Python model tests (tiny config) and the Rust workspace tests, lints included.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "Debian packages"
need=()
for pkg in g++ python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})) && command -v apt-get >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

step "Python venv (model-export/setup_venv.sh)"
model-export/setup_venv.sh
PY=model-export/.venv/bin/python

step "ONNX Runtime library from PyPI (cargo xtask fetch-ort)"
cargo xtask fetch-ort

step "Python lint"
(cd model-export && .venv/bin/ruff check . && .venv/bin/ruff format --check .)

step "Python tests"
(cd model-export && .venv/bin/python -m pytest -q -x)

step "Rust format and lint"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings

step "Rust tests"
cargo test --workspace --release

step "all tests passed"
