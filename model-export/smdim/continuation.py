"""How well SMDIM continues real tunes: `python -m smdim.continuation --cli target/release/smdim`.

Held-out 8-bar excerpts (test split, 4/4) are cut after bar 4; `smdim continue --keep-bars 4
--bars 8` (the shipped model and constrained sampler, as the plugin's Continue runs them) writes
bars 5-8. Per excerpt, with A = bars 1-4 and B = bars 5-8:

- OA pitch / OA duration: overlap of Gaussians fitted to A's and B's pitches (durations in 16ths),
  as in the OA metric, but between the kept and the new half: does the continuation stay in the
  idea's register and rhythm?
- PC TV / rhythm TV: total variation distance between B's pitch-class histogram (12 bins) and the
  real continuation's, and between their onset histograms (16 sixteenth positions of a 4/4 bar):
  how close to what the composer wrote next?

Continuations run twice: as is, and with `--source-key` (the kept bars' estimated major/minor key
constraining the new notes).

Rows: SMDIM's continuations; the real tunes themselves (TV 0 by definition); the same tunes with
bars 5-8 of another tune (an unrelated real continuation: the chance level); unconditional SMDIM
phrases of 8 bars (their own halves for OA, their bars 5-8 against the real ones for TV).
Writes a Markdown table (default docs/model/CONTINUATION.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from smdim.evaluate import parse_notes, real_excerpts, write_midi

ROOT = Path(__file__).resolve().parents[2]


def halves(ids) -> tuple[list, list]:
    notes, _ = parse_notes(ids)
    return [n for n in notes if n.bar < 4], [n for n in notes if 4 <= n.bar < 8]


def overlap(a: list[float], b: list[float]) -> float | None:
    if not a or not b:
        return None
    na = statistics.NormalDist(float(np.mean(a)), float(np.std(a)) + 1e-6)
    nb = statistics.NormalDist(float(np.mean(b)), float(np.std(b)) + 1e-6)
    return na.overlap(nb)


def histogram(values: list[int], bins: int) -> np.ndarray:
    h = np.bincount(np.asarray(values, dtype=np.int64) % bins, minlength=bins).astype(float)
    return h / h.sum() if h.sum() else h


def tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a - b).sum())


def figures(a: list, b: list, real_b: list) -> dict[str, float | None]:
    return {
        "oa_pitch": overlap([n.pitch for n in a], [n.pitch for n in b]),
        "oa_dur": overlap([n.dur16 for n in a], [n.dur16 for n in b]),
        "pc_tv": tv(histogram([n.pitch for n in b], 12), histogram([n.pitch for n in real_b], 12)),
        "rhythm_tv": tv(
            histogram([n.onset16 for n in b], 16), histogram([n.onset16 for n in real_b], 16)
        ),
    }


def mean(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows if r[key] is not None]
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "-"


def pitch_range(notes: list) -> str:
    lo = max(21, min(n.pitch for n in notes) - 5)
    hi = min(108, max(n.pitch for n in notes) + 5)
    return f"{lo}-{hi}"


def run(cli: Path, n: int, style: str, seed: int, out: Path) -> None:
    excerpts = real_excerpts("test", style, n, bars=8, meter="4/4", seed=seed)
    rows: dict[str, list[dict]] = {
        "continue": [],
        "continue_key": [],
        "real": [],
        "unrelated": [],
        "uncond": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k, ids in enumerate(excerpts):
            a, real_b = halves(ids)
            if not a or not real_b:
                continue
            src = write_midi(ids, tmp / f"src{k}.mid")
            jsonl = tmp / f"cont{k}.jsonl"
            cmd = [
                str(cli), "continue", str(src), "--keep-bars", "4", "--bars", "8",
                "--seed", str(seed + k), "--style", style, "--tempo", "120",
                "--pitch-range", pitch_range(a), "--tokens-out", str(jsonl),
            ]  # fmt: skip
            for key, extra in (("continue", []), ("continue_key", ["--source-key"])):
                subprocess.run(cmd + extra, check=True, capture_output=True)
                tokens = json.loads(jsonl.read_text().splitlines()[0])["tokens"]
                ca, cb = halves(tokens)
                rows[key].append(figures(ca, cb, real_b))
            rows["real"].append(figures(a, real_b, real_b))
            other = excerpts[(k + 1) % len(excerpts)]
            _, other_b = halves(other)
            rows["unrelated"].append(figures(a, other_b, real_b))
        jsonl = tmp / "uncond.jsonl"
        cmd = [
            str(cli), "generate", "--bars", "8", "--count", str(len(rows["real"])),
            "--seed", str(seed), "--style", style, "--tokens-out", str(jsonl),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        lines = jsonl.read_text().splitlines()
        reals = [halves(e) for e in excerpts if all(halves(e))]
        for line, (_, real_b) in zip(lines, reals, strict=False):
            ua, ub = halves(json.loads(line)["tokens"])
            rows["uncond"].append(figures(ua, ub, real_b))
    labels = {
        "continue": "SMDIM continues bars 1-4 (`smdim continue --keep-bars 4 --bars 8`)",
        "continue_key": "the same with `--source-key` (new notes in the kept bars' key)",
        "real": "the real tune (its own bars 5-8)",
        "unrelated": "bars 5-8 of another test tune (chance level)",
        "uncond": "unconditional SMDIM 8-bar phrases",
    }
    lines = [
        f"| {style}, {len(rows['real'])} test excerpts (4/4) | OA pitch, bars 1-4 vs 5-8 | "
        "OA duration | pitch-class TV to the real bars 5-8 | onset TV to the real bars 5-8 |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in labels.items():
        r = rows[key]
        lines.append(
            f"| {label} | {mean(r, 'oa_pitch')} | {mean(r, 'oa_dur')} | "
            f"{mean(r, 'pc_tv')} | {mean(r, 'rhythm_tv')} |"
        )
    table = "\n".join(lines)
    print(table)
    doc = (
        "# Continuing real tunes\n\n"
        f"`python -m smdim.continuation --cli {cli.name} --n {n} --style {style} --seed {seed}` "
        f"(model `models/smdim-default.onnx`, the CLI's defaults otherwise; the new notes' pitch "
        f"range is the kept bars' range widened by 5 semitones). Higher OA: the new half keeps "
        f"the kept half's register and rhythm; lower TV: closer to what the composer wrote "
        f"(mean ± standard deviation over excerpts).\n\n{table}\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cli", type=Path, default=ROOT / "target/release/smdim")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--style", default="melody")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "docs/model/CONTINUATION.md")
    args = p.parse_args(argv)
    run(args.cli, args.n, args.style, args.seed, args.out)


if __name__ == "__main__":
    main()
