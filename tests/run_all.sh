#!/usr/bin/env bash
# Every test of the project, from a fresh Debian machine: installs what it needs, then runs the
# Python model tests (tiny config) and the Rust workspace tests, lints included.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "Debian packages"
# g++: the PyTorch scan extension and nvcc's host compiler; xvfb..libx11-xcb1: the editor test under Xvfb; ardour: the
# VST3 test in a real host; fluidsynth + fluid-soundfont-gm (ffmpeg comes with imagemagick): the evaluation's audio renders;
# gcc-mingw-w64-x86-64 + wine64: the Windows build and its tests under Wine (tests/cross/run.sh).
need=()
for pkg in g++ python3-venv xvfb xdotool x11-apps imagemagick libegl1 libegl-mesa0 libgl1-mesa-dri \
    libxkbcommon-x11-0 libx11-xcb1 ardour fluidsynth fluid-soundfont-gm ffmpeg gcc-mingw-w64-x86-64 wine64; do
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

step "CUDA kernel (nvcc from PyPI) and the custom-op library (cargo xtask build-ops)"
# Before every Rust build: smdim-scan-op embeds the kernel's fatbin, and its tests check it.
cargo xtask build-ops

step "Python lint"
(cd model-export && .venv/bin/ruff check . && .venv/bin/ruff format --check .)

step "Python tests"
(cd model-export && .venv/bin/python -m pytest -q -x)

step "Rust format and lint"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings

step "Plugin bundles (cargo xtask bundle)"
cargo xtask bundle smdim --release

step "Rust tests (engine, inference, CLI, plugin, CLAP host, editor, Ardour)"
cargo test --workspace --release

step "Windows under Wine, macOS compile checks (tests/cross/run.sh)"
tests/cross/run.sh

step "all tests passed"
