#!/usr/bin/env bash
# The plugin's tests: unit and integration tests of the smdim crate, then the bundles and every
# host test (CLAP host, editor under Xvfb, install, VST3 in Ardour, measurements).
#
# Debian packages (besides a Rust toolchain):
#   xvfb xdotool x11-apps imagemagick libegl1 libegl-mesa0 libgl1-mesa-dri
#   libxkbcommon-x11-0 libx11-xcb1            (editor smoke test)
#   ardour                                    (VST3 in Ardour 7, headless; its GUI takes the drag)
# The ONNX Runtime library comes from `cargo xtask fetch-ort` (run by the bundle step if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -p smdim
cargo xtask bundle smdim --release
cargo test --release -p smdim-host-tests -- --nocapture
