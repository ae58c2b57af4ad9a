"""Evaluation: the paper's table at our scale. `python -m smdim.evaluate` reads sample sets
(.npz/.npy of token ids), held-out real windows and checkpoints, and writes docs/model/RESULTS.md,
a few .mid files and a piano-roll PNG.

OA follows the SCHmUBERT / Mittal et al. protocol exactly (docs/model/PAPER.md section "OA"):
onsets and durations on a 16th grid, notes bucketed by onset bar, 4-bar windows with a 2-bar hop,
a Gaussian per window for pitch and for duration (sigma + 1e-6; empty window N(1, 1e-6)),
statistics.NormalDist.overlap of consecutive windows, per-piece mean; set level
consistency = clip(1 - |mean_P - mean_T| / mean_T, 0, 1), variance likewise with var.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smdim.data import CropSampler, load_tokens
from smdim.tokenizer import count_ungrammatical, load_vocab

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "model"


@dataclass
class Note:
    bar: int
    onset16: int  # onset in 16th notes from the sequence start
    dur16: int  # duration in 16ths (>= 1)
    pitch: int


def parse_notes(ids) -> tuple[list[Note], int]:
    """REMI ids -> notes, with the same grammar the decoder uses (Position, then Pitch Duration
    pairs; bar length from TimeSig). Returns (notes, number of bars)."""
    v = load_vocab()
    toks = [v.tokens[int(i)] for i in ids]
    notes: list[Note] = []
    bar, bar_start16, bar_len16, pos16 = -1, 0.0, 16.0, 0.0
    beat16 = 4.0  # 16ths per beat (beat = time-signature denominator)
    i = 0
    while i < len(toks):
        kind, _, val = toks[i].partition("_")
        if kind == "Bar":
            if bar >= 0:
                bar_start16 += bar_len16
            bar += 1
            pos16 = 0.0
        elif kind == "TimeSig":
            num, den = (int(x) for x in val.split("/"))
            beat16 = 16.0 / den
            bar_len16 = num * beat16
        elif kind == "Position":
            pos16 = int(val) / 8 * beat16
        elif kind == "Pitch" and i + 1 < len(toks) and toks[i + 1].startswith("Duration_"):
            b_, s_, r_ = (int(x) for x in toks[i + 1].split("_")[1].split("."))
            dur = (b_ + s_ / r_) * beat16
            if bar >= 0:
                notes.append(Note(bar, round(bar_start16 + pos16), max(1, round(dur)), int(val)))
            i += 1
        i += 1
    return notes, max(bar + 1, 0)


def oa_piece(notes: list[Note], n_bars: int) -> tuple[float, float] | None:
    """Mean overlapping area of consecutive 4-bar windows (hop 2) for pitch and duration."""
    starts = list(range(0, n_bars - 3, 2))
    if len(starts) < 2:
        return None
    dists = []
    for s in starts:
        w = [n for n in notes if s <= n.bar < s + 4]
        if not w:
            dists.append((statistics.NormalDist(1, 1e-6), statistics.NormalDist(1, 1e-6)))
            continue
        p = np.array([n.pitch for n in w], dtype=float)
        d = np.array([n.dur16 for n in w], dtype=float)
        dists.append(
            (
                statistics.NormalDist(p.mean(), p.std() + 1e-6),
                statistics.NormalDist(d.mean(), d.std() + 1e-6),
            )
        )
    po = [a[0].overlap(b[0]) for a, b in zip(dists, dists[1:], strict=False)]
    do = [a[1].overlap(b[1]) for a, b in zip(dists, dists[1:], strict=False)]
    return float(np.mean(po)), float(np.mean(do))


def oa_set_scores(oa_p: np.ndarray, oa_t: np.ndarray) -> tuple[float, float]:
    cons = 1 - abs(oa_p.mean() - oa_t.mean()) / oa_t.mean()
    var = 1 - abs(oa_p.var() - oa_t.var()) / oa_t.var()
    return float(np.clip(cons, 0, 1)), float(np.clip(var, 0, 1))


def sequence_stats(ids) -> dict:
    notes, n_bars = parse_notes(ids)
    out = {"n_notes": len(notes), "n_bars": n_bars, "skipped": count_ungrammatical(ids)}
    if notes:
        p = np.array([n.pitch for n in notes])
        lo, hi = np.percentile(p, [5, 95])
        out["outliers"] = int(((p < lo - 12) | (p > hi + 12)).sum())
        onsets = np.array([n.onset16 for n in notes])
        out["notes_per_onset"] = len(notes) / len(np.unique(onsets))
        out["pitch_span"] = int(p.max() - p.min())
    used = {n.bar for n in notes}
    out["empty_bars"] = sum(1 for b in range(n_bars) if b not in used)
    oa = oa_piece(notes, n_bars)
    out["oa_pitch"], out["oa_dur"] = oa if oa else (None, None)
    return out


def set_metrics(seqs: np.ndarray, real: list[dict] | None) -> dict:
    st = [sequence_stats(s) for s in seqs]
    notes = sum(s["n_notes"] for s in st)
    bars = sum(s["n_bars"] for s in st)
    m = {
        "n": len(st),
        "pitch_outlier_rate": sum(s.get("outliers", 0) for s in st) / max(notes, 1),
        "notes_per_onset": float(
            np.mean([s["notes_per_onset"] for s in st if "notes_per_onset" in s] or [0.0])
        ),
        "empty_bar_rate": sum(s["empty_bars"] for s in st) / max(bars, 1),
        "zero_skip_share": float(np.mean([s["skipped"] == 0 for s in st])),
        "notes_per_seq": notes / len(st),
        "bars_per_seq": bars / len(st),
        "pitch_span": float(np.mean([s.get("pitch_span", 0) for s in st])),
    }
    oa_p = np.array([s["oa_pitch"] for s in st if s["oa_pitch"] is not None])
    oa_d = np.array([s["oa_dur"] for s in st if s["oa_dur"] is not None])
    m["oa_pieces"] = len(oa_p)
    m["_oa"] = (oa_p, oa_d)
    if real is not None and len(oa_p):
        tp, td = real
        m["oa_pitch_consistency"], m["oa_pitch_variance"] = oa_set_scores(oa_p, tp)
        m["oa_dur_consistency"], m["oa_dur_variance"] = oa_set_scores(oa_d, td)
        m["oa_mean"] = float(
            np.mean(
                [
                    m["oa_pitch_consistency"],
                    m["oa_pitch_variance"],
                    m["oa_dur_consistency"],
                    m["oa_dur_variance"],
                ]
            )
        )
    return m


def real_windows(split: str, n: int, length: int, seed: int) -> np.ndarray:
    s = CropSampler(load_tokens(split), length, seed=seed, transpose=0)
    return s.batch(n)


def random_control(n: int, length: int, seed: int) -> np.ndarray:
    """Uniform random non-special tokens."""
    v = load_vocab()
    rng = np.random.default_rng(seed)
    return rng.integers(4, v.size, size=(n, length))


def shuffled_control(real: np.ndarray, seed: int) -> np.ndarray:
    """Real windows with their tokens permuted within each window."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(r) for r in real])


# --------------------------------------------------------------------------- latency, loss
def common_valid_loss(model, length: int = 512, batches: int = 8, batch: int = 16) -> float:
    import torch

    from smdim.diffusion import diffusion_loss

    v = load_vocab()
    s = CropSampler(load_tokens("valid"), length, seed=1234, transpose=0)
    gen = torch.Generator().manual_seed(99)
    model.eval()
    tot = 0.0
    with torch.no_grad():
        for _ in range(batches):
            tot += diffusion_loss(
                model, torch.from_numpy(s.batch(batch)), v.mask_id, 1000, gen
            ).item()
    return tot / batches


def latency(fn, length: int, steps: int, repeats: int = 5) -> float:
    from smdim.diffusion import sample

    sample(fn, length, steps=steps, seed=0)  # warm-up
    ts = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sample(fn, length, steps=steps, seed=r + 1)
        ts.append(time.perf_counter() - t0)
    return float(np.min(ts))  # min: least disturbed by other load on a shared machine


# --------------------------------------------------------------------------- outputs
def write_midis(seqs: np.ndarray, prefix: str, k: int = 3) -> list[Path]:
    import re

    from smdim.tokenizer import decode

    DOCS.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^a-z0-9]+", "_", prefix.lower()).strip("_")
    out = []
    for i in range(k):
        score, _ = decode(seqs[i])
        p = DOCS / f"{prefix}_{i}.mid"
        score.dump_midi(str(p))
        out.append(p)
    return out


def piano_roll(sets: dict[str, np.ndarray], path: Path, bars: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sets), 2, figsize=(12, 2.2 * len(sets)), squeeze=False)
    for row, (name, seqs) in enumerate(sets.items()):
        for col in range(2):
            ax = axes[row][col]
            notes, _ = parse_notes(seqs[col])
            for n in notes:
                if n.bar < bars:
                    ax.barh(n.pitch, n.dur16, left=n.onset16, height=0.8, color="C0")
            ax.set_title(f"{name} #{col}", fontsize=8)
            ax.set_xlabel("16ths", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fmt(x, nd=3):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def results_table(rows: dict[str, dict]) -> str:
    cols = [
        ("OA pitch cons.", "oa_pitch_consistency"),
        ("OA pitch var.", "oa_pitch_variance"),
        ("OA dur. cons.", "oa_dur_consistency"),
        ("OA dur. var.", "oa_dur_variance"),
        ("OA mean", "oa_mean"),
        ("OA pieces", "oa_pieces"),
        ("pitch outliers", "pitch_outlier_rate"),
        ("notes/onset", "notes_per_onset"),
        ("empty bars", "empty_bar_rate"),
        ("0-skip seqs", "zero_skip_share"),
        ("notes/seq", "notes_per_seq"),
        ("val loss@512", "val_loss_512"),
        ("params", "params"),
        ("train s", "train_seconds"),
        ("train steps", "train_steps"),
        ("sampler steps", "steps"),
        ("latency s (256 tok)", "latency_s"),
    ]
    head = "| set | n | " + " | ".join(c for c, _ in cols) + " |"
    sep = "|" + "---|" * (len(cols) + 2)
    lines = [head, sep]
    for name, m in rows.items():
        vals = []
        for _, k in cols:
            x = m.get(k)
            vals.append(fmt(x, 4) if k == "pitch_outlier_rate" else fmt(x))
        lines.append(f"| {name} | {m['n']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import torch

    from smdim.diffusion import torch_logits_fn
    from smdim.train import load_final

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CKPT[:SAMPLES.npy][@STEPS]",
        help="a model: checkpoint and (optional) its sample set; repeatable",
    )
    ap.add_argument(
        "--samples",
        type=Path,
        default=None,
        help=".npz of sample sets keyed by model name (e.g. from gpu_train.sh)",
    )
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=32, help="steps for local sampling/latency")
    ap.add_argument("--latency-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DOCS / "RESULTS.md")
    ap.add_argument("--metrics-json", type=Path, default=DOCS / "metrics.json")
    ap.add_argument("--mid-from", default=None, help="model whose samples become .mid files")
    ap.add_argument("--notes", type=Path, default=None, help="markdown appended to RESULTS.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    npz = dict(np.load(a.samples)) if a.samples else {}

    real_t = real_windows("test", a.n, a.length, seed=7)
    real_v = real_windows("valid", a.n, a.length, seed=8)
    ref = set_metrics(real_t, None)
    T = ref["_oa"]
    rows: dict[str, dict] = {}
    rows["real held-out (test = reference T)"] = {**set_metrics(real_t, T)}
    rows["real held-out (valid)"] = set_metrics(real_v, T)
    sample_sets = {}
    for spec in a.model:
        name, _, rest = spec.partition("=")
        rest, _, steps = rest.partition("@")
        steps = int(steps) if steps else a.steps
        ckpt, _, smp = rest.partition(":")
        model, cfg, summary = load_final(Path(ckpt))
        if smp:
            seqs = np.load(smp)
        elif name in npz:
            seqs = npz[name]
        else:
            from smdim.sample import sample_many

            seqs, _ = sample_many(model, a.n, a.length, steps, 1000, 32, "cpu")
        seqs = seqs[: a.n].astype(np.int64)
        sample_sets[name] = seqs
        m = set_metrics(seqs, T)
        m["val_loss_512"] = common_valid_loss(model, a.length)
        m["params"] = model.num_params()
        m["train_seconds"] = summary.get("train_seconds")
        m["train_steps"] = summary.get("steps")
        m["device"] = summary.get("device")
        m["latency_s"] = latency(torch_logits_fn(model), a.latency_length, steps)
        m["steps"] = steps
        rows[name] = m
        print(name, {k: v for k, v in m.items() if not k.startswith("_")}, flush=True)
    rows["shuffled control"] = set_metrics(shuffled_control(real_t, 3), T)
    rows["random control"] = set_metrics(random_control(a.n, a.length, 4), T)

    table = results_table(rows)
    metrics = {
        k: {kk: vv for kk, vv in m.items() if not kk.startswith("_")} for k, m in rows.items()
    }
    a.metrics_json.parent.mkdir(parents=True, exist_ok=True)
    a.metrics_json.write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    if a.mid_from and a.mid_from in sample_sets:
        write_midis(sample_sets[a.mid_from], f"sample_{a.mid_from}")
        write_midis(real_t, "real_test", k=1)
    piano_roll(
        {**{k: v for k, v in list(sample_sets.items())[:3]}, "real (test)": real_t},
        DOCS / "pianoroll.png",
    )
    notes = a.notes.read_text() if a.notes else ""
    model_rows = {k: rows[k] for k in sample_sets if rows[k].get("oa_mean") is not None}
    if model_rows:
        best = max(model_rows, key=lambda k: model_rows[k]["oa_mean"])
        notes = f"Best model row by mean OA in this run: **{best}**.\n\n" + notes
    text = (
        "# SMDIM results (written by `python -m smdim.evaluate`)\n\n"
        f"{a.n} sequences of {a.length} tokens per set; reference T = {a.n} held-out test windows "
        f"({a.length} tokens starting at a bar). Latency: one {a.latency_length}-token sequence at "
        f"the row's sampler steps, PyTorch eager, {a.threads} CPU threads, best of 5 "
        "(the build machine is shared).\n\n"
        f"{table}\n\n"
        "Columns: OA consistency/variance per PAPER.md (1.0 = identical to held-out real music); "
        "OA pieces = sequences with at least two 4-bar windows (the others have no OA); "
        "pitch outliers = share of notes more than 12 semitones outside the sequence's 5th-95th "
        "percentile pitch range; notes/onset = mean notes per distinct onset (chord density); "
        "empty bars = share of bars without an onset; 0-skip seqs = share of sequences whose "
        "tokens all form complete REMI events (no token a decoder must skip); val loss@512 = "
        "diffusion loss on the same 128 validation windows of 512 tokens for every model.\n\n"
        + notes
    )
    a.out.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
