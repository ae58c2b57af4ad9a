#!/usr/bin/env bash
# What a musician waits for: one 8-bar phrase at the default settings, from a cold start (model
# load included), per style, with the native scan kernel and with the model's ONNX Scan
# fallback as the baseline, in one run on this machine. Prints a markdown table.
# Usage: tests/bench_phrase.sh [threads] [repeats]   (after tests/run_all.sh or `cargo build --release -p smdim-cli`)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="${1:-2}"
REPEATS="${2:-5}"
BIN="$ROOT/target/release/smdim"
[ -x "$BIN" ] || cargo build --release -p smdim-cli
MODEL="$ROOT/models/smdim-default.onnx"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# One cold process per phrase: "generated in X ms (load Y ms)" from the CLI's summary line.
run() { # style steps scan-flag -> "load_ms gen_ms" per repeat
    local style=$1 steps=$2 flag=$3
    for r in $(seq 1 "$REPEATS"); do
        "$BIN" generate --model "$MODEL" --style "$style" --steps "$steps" --seed "$r" \
            --threads "$THREADS" --out "$TMP/p.mid" $flag |
            sed -n 's/.*generated in \([0-9]*\) ms (load \([0-9]*\) ms).*/\2 \1/p'
    done
}

echo "| style | steps | scan | load ms | generate ms | total ms (median of $REPEATS) |"
echo "|---|---:|---|---:|---:|---:|"
for style in melody chorale; do
    for steps in 32 16; do
        for scan in native fallback; do
            flag=""
            [ "$scan" = fallback ] && flag="--no-native-scan"
            run "$style" "$steps" "$flag" > "$TMP/times"
            m=$(( ($(wc -l < "$TMP/times") + 1) / 2 ))
            median() { sort -n | sed -n "${m}p"; }
            load=$(cut -d' ' -f1 "$TMP/times" | median)
            gen=$(cut -d' ' -f2 "$TMP/times" | median)
            total=$(awk '{ print $1 + $2 }' "$TMP/times" | median)
            echo "| $style | $steps | $scan | $load | $gen | $total |"
        done
    done
done
echo
echo "threads $THREADS, load average $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores"
