"""Late drift in long phrases, as the SMDIM paper describes it: statistics of bars 49-64 against
bars 1-16 of the same 64-bar phrase, for generated phrases and for real pieces of 64 bars or more.

`python -m smdim.drift --model runs/long_export/smdim-long.onnx` generates `--n` 64-bar melodies
with the CLI (`smdim generate --bars 64`, the constrained sampler the plugin runs) and compares,
per phrase, A = bars 1-16 with B = bars 49-64:

- OA pitch / OA duration: overlap of Gaussians fitted to A's and B's pitches and durations;
- same key: A's and B's estimated major/minor keys (Krumhansl-Schmuckler) agree;
- pitch-class TV: total variation between A's and B's pitch-class histograms;
- density ratio: B's notes per bar over A's.

Real reference: the first 64 bars of every melody piece of 64 bars or more (all splits: there are
few). Writes docs/model/DRIFT.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from smdim.continuation import histogram, overlap, tv
from smdim.evaluate import first_bars, key_estimate, parse_notes, style_tokens

ROOT = Path(__file__).resolve().parents[2]


def key_of(notes) -> tuple[int, str] | None:
    """The estimated major/minor key (Krumhansl-Schmuckler, `evaluate.key_estimate`)."""
    key = key_estimate(notes)
    return key[1] if key else None


def stats(ids) -> dict | None:
    notes, bars = parse_notes(ids)
    if bars < 64:
        return None
    a = [n for n in notes if n.bar < 16]
    b = [n for n in notes if 48 <= n.bar < 64]
    if not a or not b:
        return None
    return {
        "oa_pitch": overlap([n.pitch for n in a], [n.pitch for n in b]),
        "oa_dur": overlap([n.dur16 for n in a], [n.dur16 for n in b]),
        "same_key": float(key_of(a) == key_of(b)),
        "pc_tv": tv(histogram([n.pitch for n in a], 12), histogram([n.pitch for n in b], 12)),
        "density_ratio": len(b) / len(a),
    }


def summary(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows if r[key] is not None], dtype=float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "-"


def generate(args, tonal_focus: float | None) -> tuple[list[dict], list[float]]:
    """Drift statistics and generation times (ms) of `--n` CLI melodies of 64 bars."""
    generated = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "long.jsonl"
        cmd = [
            str(args.cli), "generate", "--model", str(args.model), "--bars", "64",
            "--count", str(args.n), "--seed", str(args.seed), "--style", "melody",
            "--threads", "2", "--tokens-out", str(out),
        ]  # fmt: skip
        if tonal_focus is not None:
            cmd += ["--tonal-focus", str(tonal_focus)]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        times = [
            float(line.split("generated in ")[1].split(" ms")[0])
            for line in run.stdout.splitlines()
            if "generated in " in line
        ]
        for line in out.read_text().splitlines():
            s = stats(json.loads(line)["tokens"])
            if s:
                generated.append(s)
    return generated, times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--cli", type=Path, default=ROOT / "target/release/smdim")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tonal-focus",
        type=float,
        nargs="*",
        default=None,
        help="one row per value (default: one row at the card's tonal focus)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)

    real = []
    for split in ("train", "valid", "test"):
        for piece in style_tokens(split, "melody").pieces:
            s = stats(first_bars(piece, 64))
            if s:
                real.append(s)
    keys = ("oa_pitch", "oa_dur", "same_key", "pc_tv", "density_ratio")
    head = (
        "| bars 49-64 vs bars 1-16 | OA pitch | OA duration | same key | pitch-class TV | "
        "density ratio | ms per phrase |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for focus in args.tonal_focus or [None]:
        rows, times = generate(args, focus)
        label = f"SMDIM, {len(rows)} generated 64-bar melodies"
        label += ", card's tonal focus" if focus is None else f", tonal focus {focus:g}"
        cells = [summary(rows, k) for k in keys] + [f"{np.median(times):.0f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        f"| real melodies of 64+ bars ({len(real)}, first 64 bars) | "
        + " | ".join(summary(real, k) for k in keys)
        + " | – |"
    )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
