#!/usr/bin/env bash
# Windows x64 and macOS from this Linux machine: the Windows CLI, plugin bundles and CLAP host
# harness built with mingw-w64 and run under Wine; the macOS crates checked with clippy (no
# Apple SDK here, so nothing is linked). Needs the Debian packages gcc-mingw-w64-x86-64 and
# wine64 (tests/run_all.sh installs them) and the Linux CLI (target/release/smdim).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
W=x86_64-pc-windows-gnu
OUT="target/$W/release"
LINUX_SMDIM="$ROOT/target/release/smdim"

step "Rust targets (rustup)"
rustup target add "$W" aarch64-apple-darwin x86_64-apple-darwin

step "Windows ONNX Runtime (cargo xtask fetch-ort --platform windows)"
cargo xtask fetch-ort --platform windows

step "Windows build: smdim.exe, the bundles, the host harness"
cargo build --release --target "$W" -p smdim-cli
cargo xtask bundle smdim --release --target windows
cargo test --release --target "$W" -p smdim --lib --no-run
cargo test --release --target "$W" -p smdim-host-tests --test clap_host --test preview --no-run
# Test-only stand-in for bcryptprimitives.dll, which Wine 8.0 lacks; it also asks Linux for the
# AMX state ONNX Runtime's int8 kernels use (see process_prng.c).
x86_64-w64-mingw32-gcc -O2 -shared -o "$OUT/bcryptprimitives.dll" tests/cross/process_prng.c -ladvapi32
cp "$OUT/bcryptprimitives.dll" "$OUT/deps/"

# No Mono or Gecko: a new prefix must not ask to download them.
export WINEPREFIX="$ROOT/target/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
wine wineboot --init >/dev/null 2>&1 || true

step "Windows CLI under Wine: the same tokens and bytes as the Linux build"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
compared=0
while read -r name args; do
    # shellcheck disable=SC2086
    "$LINUX_SMDIM" generate $args --out "$tmp/$name-linux.mid" --tokens-out "$tmp/$name-linux.jsonl" >/dev/null
    # shellcheck disable=SC2086
    wine "$OUT/smdim.exe" generate $args --out "$tmp/$name-windows.mid" --tokens-out "$tmp/$name-windows.jsonl" >"$tmp/$name.log" 2>&1 \
        || { cat "$tmp/$name.log"; exit 1; }
    cmp "$tmp/$name-linux.jsonl" "$tmp/$name-windows.jsonl"
    for mid in "$tmp/$name-linux"*.mid; do
        cmp "$mid" "${mid/-linux/-windows}"
    done
    lines=$(wc -l <"$tmp/$name-windows.jsonl")
    echo "$name: $lines phrase(s) identical ($args)"
    compared=$((compared + lines))
done <<'EOF'
melody --bars 8 --seed 7 --count 3
chorale --style chorale --bars 4 --seed 11 --steps 16 --count 2
waltz --bars 4 --meter 3/4 --key D-minor --seed 5
dense --bars 2 --density 3 --order confidence --seed 9 --pitch-range 40-90
EOF
[ "$compared" -eq 7 ] || { echo "compared $compared phrases, expected 7"; exit 1; }

step "Windows CLI under Wine: onnxruntime.dll is looked for beside the executable first"
mkdir -p "$tmp/app/onnxruntime"
cp "$OUT/smdim.exe" "$OUT/bcryptprimitives.dll" "$tmp/app/"
echo "not a library" >"$tmp/app/onnxruntime/onnxruntime.dll"
if wine "$tmp/app/smdim.exe" generate --bars 1 --out "$tmp/app/x.mid" >"$tmp/app.log" 2>&1; then
    echo "a broken onnxruntime.dll beside the exe was not tried first"; exit 1
fi
grep -q "app\\\\onnxruntime\\\\onnxruntime.dll could not be loaded" "$tmp/app.log" \
    || { cat "$tmp/app.log"; echo "the error does not name the library beside the exe"; exit 1; }
cp target/onnxruntime/windows/onnxruntime.dll "$tmp/app/onnxruntime/"
wine "$tmp/app/smdim.exe" generate --bars 1 --out "$tmp/app/x.mid" >"$tmp/app.log" 2>&1 \
    || { cat "$tmp/app.log"; exit 1; }
echo "the library beside smdim.exe: a broken one is reported by path, the real one generates"

step "Windows plugin unit tests under Wine (audio path, preview voice, state, drag folder)"
cargo test --release --target "$W" -p smdim --lib

step "Windows SMDIM.clap in the CLAP host harness under Wine"
SMDIM_CLAP="$ROOT/target/bundled/windows/SMDIM.clap" \
    cargo test --release --target "$W" -p smdim-host-tests --test clap_host --test preview

step "macOS: clippy of the engine, inference, CLI and plugin crates (checked, not linked)"
for t in aarch64-apple-darwin x86_64-apple-darwin; do
    cargo clippy --release --target "$t" -p smdim-engine -p smdim-inference -p smdim-cli -p smdim -- -D warnings
done

step "cross-platform checks passed"
