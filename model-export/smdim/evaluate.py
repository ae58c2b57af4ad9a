"""One evaluation command: trained checkpoints in, `docs/model/RESULTS.md` (a table per style),
`docs/model/metrics.json`, `docs/model/pianoroll.png`, a few .mid files and .ogg renders out.

    python -m smdim.evaluate --n 512 --rows-file scripts/eval_rows.txt [--out-dir DIR]

A row is `NAME=KIND:PATH[,key=value ...]` (see `parse_row`); every row draws the same seeds
(sequence i has seed `--seed` + i). KIND is `ckpt` (raw sampling with the PyTorch model), `onnx`
(raw sampling through onnxruntime) or `cli` (constrained sampling as the plugin does it: the Rust
binary `smdim generate`, which applies grammar, range and density constraints). Raw rows are
compared with packed (PAD-free) real windows of the same style and length from the held-out
test split, constrained rows with real 8-bar excerpts (same style and meter) of test pieces;
valid-split sets of the same n against the same references give the real-vs-real ceiling.

OA follows the Mittal et al. (2021) protocol exactly, as SCHmUBERT and the SMDIM paper
(arXiv 2603.00576) use it: onsets and durations on a 16th grid, notes bucketed by onset bar,
4-bar windows with a 2-bar hop, a Gaussian per window for pitch and for duration (sigma + 1e-6;
empty window N(1, 1e-6)), statistics.NormalDist.overlap of consecutive windows, per-piece mean;
set level consistency = clip(1 - |mean_P - mean_T| / mean_T, 0, 1), variance likewise with var.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from smdim.data import STYLES, CropSampler, TokenSet, load_tokens, style_of
from smdim.diffusion import KEY_PROFILES
from smdim.tokenizer import count_ungrammatical, load_vocab

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "model"
CLI_BINARY = REPO / "target" / "release" / "smdim"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
OUTLIER_SEMITONES = 19  # pitch outlier: further than this from the sequence's median pitch


# --------------------------------------------------------------------------- notes and OA
@dataclass
class Note:
    bar: int
    onset16: int  # onset in 16th notes from the sequence start
    dur16: int  # duration in 16ths (>= 1)
    pitch: int
    pos: int = 0  # the Position value inside the bar (8 per beat): the exact onset


def parse_notes(ids) -> tuple[list[Note], int]:
    """REMI ids -> notes, with the same grammar the decoder uses (Position, then Pitch Duration
    pairs; bar length from TimeSig). Returns (notes, number of bars)."""
    v = load_vocab()
    toks = [v.tokens[int(i)] for i in ids]
    notes: list[Note] = []
    bar, bar_start16, bar_len16, pos16, pos = -1, 0.0, 16.0, 0.0, 0
    beat16 = 4.0  # 16ths per beat (beat = time-signature denominator)
    i = 0
    while i < len(toks):
        kind, _, val = toks[i].partition("_")
        if kind == "Bar":
            if bar >= 0:
                bar_start16 += bar_len16
            bar += 1
            pos16, pos = 0.0, 0
        elif kind == "TimeSig":
            num, den = (int(x) for x in val.split("/"))
            beat16 = 16.0 / den
            bar_len16 = num * beat16
        elif kind == "Position":
            pos = int(val)
            pos16 = pos / 8 * beat16
        elif kind == "Pitch" and i + 1 < len(toks) and toks[i + 1].startswith("Duration_"):
            b_, s_, r_ = (int(x) for x in toks[i + 1].split("_")[1].split("."))
            dur = (b_ + s_ / r_) * beat16
            if bar >= 0:
                notes.append(
                    Note(bar, round(bar_start16 + pos16), max(1, round(dur)), int(val), pos)
                )
            i += 1
        i += 1
    return notes, max(bar + 1, 0)


def key_estimate(notes) -> tuple[float, tuple[int, str]] | None:
    """Krumhansl-Schmuckler: (correlation, (tonic, mode)) of the best major/minor key for the
    duration-weighted pitch classes (the engine's Key::estimate); None without a profile. The
    correlation is the key fit: near 1 for plainly tonal music, lower for a flat profile."""
    w = np.zeros(12)
    for n in notes:
        w[n.pitch % 12] += max(n.dur16, 1)
    if not w.any() or np.allclose(w, w.mean()):
        return None
    best = None
    for tonic in range(12):
        for profile, mode in zip(KEY_PROFILES, ("major", "minor"), strict=True):
            r = float(np.corrcoef(np.roll(w, -tonic), profile)[0, 1])
            if best is None or r > best[0]:
                best = (r, (tonic, mode))
    return best


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


# --------------------------------------------------------------------------- metrics
def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    lo, _, hi = str(text).partition("-")
    return int(lo), int(hi)


def vocab_range() -> tuple[int, int]:
    p = load_vocab().pitch_ids()
    return min(p), max(p)


def sequence_stats(ids, complete_last: bool = True, pitch_range=None) -> dict:
    """Per-sequence statistics. `complete_last=False` (windows cut at a token count) leaves the
    last, truncated bar out of the per-bar statistics (onsets per bar, empty bars)."""
    notes, n_bars = parse_notes(ids)
    lo, hi = pitch_range or vocab_range()
    counted = n_bars if complete_last else max(n_bars - 1, 0)
    per_bar = [set() for _ in range(counted)]
    for n in notes:
        if n.bar < counted:
            per_bar[n.bar].add(n.pos)
    out = {
        "n_notes": len(notes),
        "n_bars": n_bars,
        "n_onsets": len({(n.bar, n.pos) for n in notes}),
        "onsets_per_bar": [len(s) for s in per_bar],
        "skipped": count_ungrammatical(ids),
        "outliers": 0,
        "out_of_range": 0,
        "pitch_span": None,
        "key_fit": None,
    }
    if notes:
        p = np.array([n.pitch for n in notes])
        out["outliers"] = int((np.abs(p - np.median(p)) > OUTLIER_SEMITONES).sum())
        out["out_of_range"] = int(((p < lo) | (p > hi)).sum())
        out["pitch_span"] = int(p.max() - p.min())
        key = key_estimate(notes)
        out["key_fit"] = key[0] if key else None
    oa = oa_piece(notes, n_bars)
    out["oa_pitch"], out["oa_dur"] = oa if oa else (None, None)
    return out


def set_metrics(seqs, ref_oa=None, complete_last: bool = True, pitch_range=None) -> dict:
    """Set-level metrics of a list of id sequences; `ref_oa` = the reference's (OA pitch, OA
    duration) arrays for the consistency/variance scores. Keys starting with `_` are arrays."""
    st = [sequence_stats(s, complete_last, pitch_range) for s in seqs]
    notes = sum(s["n_notes"] for s in st)
    bars = np.array([c for s in st for c in s["onsets_per_bar"]], dtype=float)
    spans = [s["pitch_span"] for s in st if s["pitch_span"] is not None]
    fits = [s["key_fit"] for s in st if s["key_fit"] is not None]
    m = {
        "n": len(st),
        "notes_per_seq": notes / max(len(st), 1),
        "bars_per_seq": float(np.mean([s["n_bars"] for s in st])) if st else 0.0,
        "notes_per_onset": notes / max(sum(s["n_onsets"] for s in st), 1),
        "onsets_per_bar_mean": float(bars.mean()) if len(bars) else 0.0,
        "onsets_per_bar_std": float(bars.std()) if len(bars) else 0.0,
        "bars_counted": len(bars),
        "empty_bar_share": float((bars == 0).mean()) if len(bars) else 0.0,
        "pitch_span": float(np.mean(spans)) if spans else 0.0,
        "key_fit": float(np.mean(fits)) if fits else 0.0,
        "seqs_without_notes": sum(s["n_notes"] == 0 for s in st),
        "pitch_outlier_share": sum(s["outliers"] for s in st) / max(notes, 1),
        "out_of_range": sum(s["out_of_range"] for s in st),
        "out_of_range_share": sum(s["out_of_range"] for s in st) / max(notes, 1),
        "pitch_range": list(pitch_range or vocab_range()),
        "zero_skip_share": float(np.mean([s["skipped"] == 0 for s in st])) if st else 0.0,
    }
    oa_p = np.array([s["oa_pitch"] for s in st if s["oa_pitch"] is not None])
    oa_d = np.array([s["oa_dur"] for s in st if s["oa_dur"] is not None])
    m["oa_pieces"] = len(oa_p)
    m["_oa"] = (oa_p, oa_d)
    if ref_oa is not None and len(oa_p) and len(ref_oa[0]):
        tp, td = ref_oa
        m["oa_pitch_consistency"], m["oa_pitch_variance"] = oa_set_scores(oa_p, tp)
        m["oa_dur_consistency"], m["oa_dur_variance"] = oa_set_scores(oa_d, td)
    return m


# --------------------------------------------------------------------------- real data
@lru_cache(maxsize=4)
def _split(split: str) -> TokenSet:
    return load_tokens(split)


def style_tokens(split: str, style: str) -> TokenSet:
    """The split's pieces of one style ("any": all of them)."""
    ts = _split(split)
    if style == "any":
        return ts
    k = STYLES.index(style)
    keep = [i for i, c in enumerate(ts.collections) if style_of(c) == k]
    return TokenSet([ts.pieces[i] for i in keep], [ts.collections[i] for i in keep])


def real_windows(split: str, style: str, n: int, length: int, seed: int) -> list[np.ndarray]:
    """n packed windows (no PAD: a window that runs past its piece continues with another piece
    of the same style) starting at a bar, untransposed."""
    s = CropSampler(style_tokens(split, style), length, seed=seed, transpose=0, pack=True)
    w = s.batch(n)
    assert not (w == load_vocab().pad_id).any(), "packed windows hold no PAD"
    return list(w)


def real_excerpts(
    split: str,
    style: str,
    n: int,
    bars: int = 8,
    meter: str | None = None,
    seed: int = 0,
    from_start: bool = False,
) -> list[np.ndarray]:
    """n real `bars`-bar excerpts starting at a bar of the split's pieces of `style`: drawn
    uniformly from every (piece, start bar) whose bars all have time signature `meter` (None:
    any), without replacement while there are enough. `from_start`: the pieces' first bars."""
    v = load_vocab()
    ts = style_tokens(split, style)
    want = v.id(f"TimeSig_{meter}") if meter else None
    cands = []
    for pi, piece in enumerate(ts.pieces):
        starts = np.nonzero(piece == v.bar_id)[0]
        ends = np.append(starts[1:], len(piece))
        sig = piece[np.minimum(starts + 1, len(piece) - 1)]
        for b in range(len(starts) - bars + 1):
            if from_start and b:
                break
            if want is not None and not (sig[b : b + bars] == want).all():
                continue
            cands.append((pi, int(starts[b]), int(ends[b + bars - 1])))
    if not cands:
        raise ValueError(f"no {bars}-bar {meter or ''} excerpts of style {style} in {split}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cands), size=n, replace=n > len(cands))
    return [ts.pieces[cands[k][0]][cands[k][1] : cands[k][2]].astype(np.int64) for k in pick]


def first_bars(ids, bars: int = 8) -> np.ndarray:
    """The tokens up to the (bars+1)-th Bar token."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.nonzero(ids == load_vocab().bar_id)[0]
    return ids[: pos[bars]] if len(pos) > bars else ids


# --------------------------------------------------------------------------- rows
KINDS = ("ckpt", "onnx", "cli")
# Evaluator-owned: the same for every row, or set from the row's style and source.
SAMPLE_RESERVED = {"batch", "seed", "fixed", "allowed", "allow_pad", "mask_id", "length"}
CLI_RESERVED = {"model", "style", "count", "seed", "tokens_out", "out"}
CLI_DEFAULTS = {"bars": 8, "meter": "4/4", "pitch_range": "48-84"}  # passed explicitly


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass
class RowSpec:
    """`NAME=KIND:PATH[,key=value ...]`. NAME may hold commas and spaces but no `=`; keys:
    `style` (any | melody | chorale; default any), and for raw rows `length`, `steps`,
    `temperature`, `top_p`, `range` (a pitch range to measure against, e.g. 48-84) and any
    other keyword `smdim.diffusion.sample` accepts (e.g. `order`, `noise`); for cli rows every
    key becomes a flag of `smdim generate` (`top_p` -> `--top-p`; `range` = `pitch_range`)."""

    name: str
    kind: str
    source: Path
    style: str = "any"
    params: dict = field(default_factory=dict)
    text: str = ""

    @property
    def pitch_range(self) -> tuple[int, int] | None:
        return parse_range(self.params.get("pitch_range"))


def parse_row(text: str) -> RowSpec:
    name, eq, rest = text.strip().partition("=")
    if not eq or not name.strip():
        raise ValueError(f"row {text!r}: expected NAME=KIND:PATH[,key=value ...]")
    items = [x.strip() for x in rest.split(",")]
    kind, colon, src = items[0].partition(":")
    if not colon or kind not in KINDS or not src:
        raise ValueError(f"row {name!r}: source {items[0]!r} is not one of {KINDS} + ':PATH'")
    params: dict = {}
    for it in items[1:]:
        k, eq, val = it.partition("=")
        k = k.strip().replace("-", "_")
        if not eq or not k or not val.strip():
            raise ValueError(f"row {name!r}: {it!r} is not key=value")
        k = "pitch_range" if k == "range" else k
        if k in params:
            raise ValueError(f"row {name!r}: {k} given twice")
        params[k] = _value(val.strip())
    style = str(params.pop("style", "any"))
    if style not in STYLES:
        raise ValueError(f"row {name!r}: style {style!r} is not one of {STYLES}")
    if params.get("pitch_range") is not None:
        try:
            lo, hi = parse_range(params["pitch_range"])
        except ValueError:
            raise ValueError(f"row {name!r}: range looks like 48-84") from None
        if not 0 <= lo <= hi <= 127:
            raise ValueError(f"row {name!r}: range looks like 48-84")
    spec = RowSpec(name.strip(), kind, Path(src), style, params, text.strip())
    if kind == "cli":
        bad = CLI_RESERVED & set(params)
        if bad:
            raise ValueError(f"row {name!r}: {sorted(bad)} are set by the evaluator")
        spec.params = {**CLI_DEFAULTS, **params}
    else:
        bad = set(params) - raw_keys()
        if bad:
            raise ValueError(
                f"row {name!r}: {sorted(bad)} not understood; raw rows take "
                f"{sorted(raw_keys())} (from the signature of smdim.diffusion.sample)"
            )
    return spec


def raw_keys() -> set[str]:
    """Row keys of raw rows: `length`, `pitch_range` and what `sample` takes (checked on the
    signature, so arguments added there, such as `order` or `noise`, pass straight through)."""
    from smdim.diffusion import sample

    params = inspect.signature(sample).parameters
    kw = {
        k
        for k, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k not in SAMPLE_RESERVED
    }
    return (kw - {"logits_fn"}) | {"length", "pitch_range"}


def read_rows(path: Path) -> list[str]:
    """One row per line; blank lines and lines starting with # are skipped."""
    lines = [x.strip() for x in Path(path).read_text().splitlines()]
    return [x for x in lines if x and not x.startswith("#")]


# --------------------------------------------------------------------------- generation
def raw_samples(fn, n: int, length: int, seed: int, batch: int, kwargs: dict) -> list:
    """n sequences; sequence i is drawn with seed `seed + i` whatever the batch size (the
    sampler gives batch row r the stream seed + r)."""
    from smdim.diffusion import sample

    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        out.extend(sample(fn, length, batch=b, seed=seed + i, **kwargs))
    return out


def cli_supports_tokens_out(binary: Path) -> bool:
    if not Path(binary).exists():
        return False
    try:
        r = subprocess.run(
            [str(binary), "generate", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return all(f in r.stdout for f in ("--tokens-out", "--count", "--style"))


def cli_command(binary, model, style, count, seed, params, tokens_out, mid_out) -> list[str]:
    cmd = [str(binary), "generate", "--model", str(model), "--style", style]
    cmd += ["--count", str(count), "--seed", str(seed)]
    cmd += ["--tokens-out", str(tokens_out), "--out", str(mid_out)]
    for k, val in params.items():
        cmd += [f"--{k.replace('_', '-')}", str(val)]
    return cmd


def parse_tokens_jsonl(path: Path, count: int, seed: int) -> list[np.ndarray]:
    """`{"seed": s, "tokens": [ids...]}` per line -> the token arrays in seed order; the
    seeds must be exactly seed .. seed + count - 1."""
    by_seed = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            by_seed[int(obj["seed"])] = np.asarray(obj["tokens"], dtype=np.int64)
    want = list(range(seed, seed + count))
    if sorted(by_seed) != want:
        raise ValueError(
            f"{path}: expected seeds {seed}..{seed + count - 1}, got {len(by_seed)} "
            f"(first {sorted(by_seed)[:3]})"
        )
    return [by_seed[s] for s in want]


def strip_end_marker(ids, bars: int) -> np.ndarray:
    """Drop a trailing `Bar TimeSig` end marker (the start of the bar after the phrase, which
    the engine's plan carries) when the tokens hold more than `bars` bars."""
    v = load_vocab()
    ids = np.asarray(ids, dtype=np.int64)
    if (
        len(ids) >= 2
        and int((ids == v.bar_id).sum()) > bars
        and ids[-2] == v.bar_id
        and v.tokens[int(ids[-1])].startswith("TimeSig_")
    ):
        return ids[:-2]
    return ids


def cli_generate(
    binary: Path,
    model: Path,
    style: str,
    count: int,
    seed: int,
    params: dict,
    workdir: Path | None = None,
    timeout: float = 6 * 3600,
) -> list[np.ndarray]:
    """Constrained phrases from `smdim generate --count N --tokens-out F.jsonl` (seeds seed ..
    seed + N - 1). `--out` points into the work folder (the MIDI the CLI writes is not used)."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        jl, mid = Path(tmp) / "tokens.jsonl", Path(tmp) / "phrase.mid"
        cmd = cli_command(binary, model, style, count, seed, params, jl, mid)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}{r.stdout[-500:]}"
            )
        return parse_tokens_jsonl(jl, count, seed)


def onnx_for_cli(ckpt: Path, cache: Path) -> Path:
    """The ONNX file (+ card) the CLI loads: an .onnx path as is, a checkpoint exported once
    into `cache` (keyed by the checkpoint's bytes)."""
    ckpt = Path(ckpt)
    if ckpt.suffix == ".onnx":
        return ckpt
    from smdim.export import export_onnx, write_card
    from smdim.train import load_final

    h = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    out = Path(cache) / f"{ckpt.parent.name}-{ckpt.stem}-{h}.onnx"
    if not out.exists() or not out.with_suffix(".card.json").exists():
        model, cfg, summary = load_final(ckpt)
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, out)
        write_card(out, model, cfg, summary, None)
    return out


@lru_cache(maxsize=8)
def load_model(path: str):
    from smdim.train import load_final

    return load_final(Path(path))


@lru_cache(maxsize=8)
def model_val_loss(path: str, batches: int) -> float:
    """ELBO (nats per token) on `batches` fixed packed test batches of the model's training
    window length (smdim.train.fixed_valid_batches(split="test") + valid_loss)."""
    from smdim.train import fixed_valid_batches, valid_loss

    model, cfg, _ = load_model(path)
    vb = fixed_valid_batches(cfg, batches, split="test")
    return valid_loss(model, vb, load_vocab().mask_id, cfg.diffusion.train_T, "cpu", False)


# --------------------------------------------------------------------------- outputs
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def write_midi(ids, path: Path) -> Path:
    from smdim.tokenizer import decode

    score, _ = decode(np.asarray(ids, dtype=np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def render_audio(
    mid: Path,
    out: Path,
    seconds: float = 20.0,
    soundfont: Path = SOUNDFONT,
    quality: int = 2,
) -> Path:
    """A .mid to a short mono .ogg (Vorbis) or .wav: fluidsynth renders with the soundfont
    (Debian fluid-soundfont-gm: FluidR3_GM, MIT licence), ffmpeg cuts to `seconds` with a
    one-second fade and encodes."""
    for tool in ("fluidsynth", "ffmpeg"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} not installed")
    if not Path(soundfont).exists():
        raise RuntimeError(f"soundfont {soundfont} missing (apt install fluid-soundfont-gm)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "render.wav"
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", "1.0", "-r", "44100", "-F", str(wav), "-T", "wav"]
            + [str(soundfont), str(mid)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        codec = ["-c:a", "libvorbis", "-q:a", str(quality)] if out.suffix == ".ogg" else []
        fade = f"afade=t=out:st={max(seconds - 1, 0)}:d=1"
        subprocess.run(
            ["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-t", str(seconds)]
            + ["-af", fade, "-ac", "1", "-ar", "32000", *codec, str(out)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out


def piano_roll(panels: dict[str, list[tuple[str, list]]], path: Path, bars: int = 8) -> None:
    """`panels`: style -> [(set name, sequences)]; the first two sequences of every set, first
    `bars` bars, one block of two columns per style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = list(panels)
    n_rows = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(
        n_rows, 2 * len(styles), figsize=(3.6 * 2 * len(styles), 1.7 * n_rows), squeeze=False
    )
    for ax in axes.flat:
        ax.set_visible(False)
    for si, style in enumerate(styles):
        for ri, (name, seqs) in enumerate(panels[style]):
            for c in range(2):
                if c >= len(seqs):
                    continue
                ax = axes[ri][2 * si + c]
                ax.set_visible(True)
                notes, _ = parse_notes(first_bars(seqs[c], bars))
                for n in notes:
                    ax.barh(n.pitch, n.dur16, left=n.onset16, height=0.8, color=f"C{ri % 10}")
                ax.set_title(f"{style}: {name} #{c}", fontsize=8)
                ax.tick_params(labelsize=6)
                if ri == len(panels[style]) - 1:
                    ax.set_xlabel("16ths", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)


# --------------------------------------------------------------------------- report
TARGETS = (  # (label, metric, kind, bound): checked for constrained rows vs their real excerpts
    ("onsets/bar mean ±20 %", "onsets_per_bar_mean", "rel", 0.20),
    ("onsets/bar std ±20 %", "onsets_per_bar_std", "rel", 0.20),
    ("notes/onset ±15 %", "notes_per_onset", "rel", 0.15),
    ("empty bars ≤ 1.5× real", "empty_bar_share", "times", 1.5),
    ("pitch span ±25 %", "pitch_span", "rel", 0.25),
    ("0 out of range", "out_of_range", "eq", 0),
    ("100 % 0-skip", "zero_skip_share", "eq", 1.0),
    ("OA pitch cons. ≥ 0.95", "oa_pitch_consistency", "min", 0.95),
    ("OA pitch var. ≥ 0.6", "oa_pitch_variance", "min", 0.6),
    ("OA dur. cons. ≥ 0.95", "oa_dur_consistency", "min", 0.95),
    ("OA dur. var. ≥ 0.6", "oa_dur_variance", "min", 0.6),
)


def target_check(m: dict, real: dict) -> dict[str, bool]:
    out = {}
    for label, key, kind, bound in TARGETS:
        x, r = m.get(key), real.get(key)
        if x is None:
            out[label] = False
        elif kind == "rel":
            out[label] = r is not None and r > 0 and abs(x / r - 1) <= bound
        elif kind == "times":
            out[label] = x <= bound * r + 1e-12
        elif kind == "eq":
            out[label] = x == bound
        else:
            out[label] = x >= bound
    return out


COLUMNS = [
    ("OA pitch cons.", "oa_pitch_consistency", 3),
    ("OA pitch var.", "oa_pitch_variance", 3),
    ("OA dur. cons.", "oa_dur_consistency", 3),
    ("OA dur. var.", "oa_dur_variance", 3),
    ("OA pieces", "oa_pieces", 0),
    ("notes/onset", "notes_per_onset", 3),
    ("onsets/bar", "onsets_per_bar_mean", 2),
    ("onsets/bar sd", "onsets_per_bar_std", 2),
    ("empty bars", "empty_bar_share", 3),
    ("pitch span", "pitch_span", 1),
    ("key fit", "key_fit", 3),
    ("pitch outliers", "pitch_outlier_share", 4),
    ("out of range", "out_of_range", 0),
    ("0-skip seqs", "zero_skip_share", 3),
    ("test ELBO", "val_loss", 3),
    ("s/seq", "seconds_per_seq", 2),
]


def fmt(x, nd=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and nd:
        return f"{x:.{nd}f}"
    return str(int(x)) if isinstance(x, float) else str(x)


def table(rows: dict[str, dict]) -> str:
    head = "| row | set | n | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for name, m in rows.items():
        vals = [fmt(m.get(k), nd) for _, k, nd in COLUMNS]
        lines.append(f"| {name} | {m['set']} | {m['n']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def target_table(checks: dict[str, dict]) -> str:
    labels = [t[0] for t in TARGETS]
    lines = ["| row | " + " | ".join(labels) + " | all |", "|" + "---|" * (len(labels) + 2)]
    for name, c in checks.items():
        marks = ["✓" if c[k] else "✗" for k in labels]
        lines.append(f"| {name} | " + " | ".join(marks) + f" | {'✓' if all(c.values()) else '✗'} |")
    return "\n".join(lines)


NOTES = """\
## Protocol
* Every row has n = {n} sequences; generated sequence i uses seed {seed} + i in every row (raw
  rows: the sampler's per-row SplitMix64 stream; cli rows: `smdim generate --seed {seed}
  --count {n}`). Real sets are drawn with fixed seeds (test windows 7, valid windows 8, test
  excerpts 17, valid excerpts 18) and are the same for every row of a group.
* **Raw rows** (`ckpt:` PyTorch, `onnx:` onnxruntime) are `smdim.diffusion.sample` with the
  row's settings, no grammar or range constraints (MASK/BOS/EOS/PAD banned), `length` tokens
  per sequence. Their reference ("real test windows") is n windows of the same length from the
  held-out **test** split, of the row's style (Melody = folk-tune collections, Chorale = Bach
  chorales, Any = both, style picked in proportion to tokens), starting at a bar, untransposed,
  **packed** (a window running past its piece continues with another piece of the same style:
  no PAD anywhere). "real valid windows" are drawn the same way from the **valid** split and
  scored against the test windows: the real-vs-real ceiling at the same n. The test split
  holds {test_pieces}, so at n = {n} the windows overlap (the chorale ones heavily).
* **Constrained rows** (`cli:`) run the plugin's engine: the Rust CLI `smdim generate` (grammar,
  pitch range, density and meter constraints as logit masks), `--bars 8 --meter 4/4
  --pitch-range 48-84` unless the row says otherwise, the CLI's defaults (`smdim generate
  --help`; steps from the model card) for everything the row does not set. Their reference
  ("real test excerpts") is n real excerpts of the same number of bars, starting at a bar of a
  test piece of the row's style, every bar in the row's meter, drawn uniformly over (piece,
  start bar) pairs (with replacement when there are fewer pairs than n); "real valid
  excerpts" likewise from the valid split. Checkpoints given to cli rows are exported to ONNX
  (+ card) once, into the cache folder.
* Model rows of a style are scored against the real test set of that style (and group).

## Columns
* **OA pitch/dur. cons./var.**: overlapping-area consistency and variance against the row's
  real test set, exactly as in the paper's protocol (4-bar windows, hop 2, Gaussians per window,
  NormalDist.overlap of consecutive windows; per-sequence mean; 1.0 = identical to the
  reference). **OA pieces**: sequences with at least two 4-bar windows (only these have an OA).
* **notes/onset**: all notes of the set / all distinct onsets (bar, Position) of the set
  (chord density; 1.0 = a single line).
* **onsets/bar**, **onsets/bar sd**: mean and standard deviation over all bars of the set of the
  number of distinct onsets in a bar. **empty bars**: share of those bars without an onset.
  Bars counted: every bar of a phrase; for raw and real windows (cut at a token count) every
  bar but the last, truncated one.
* **pitch span**: per sequence highest minus lowest MIDI pitch, mean over sequences with notes.
* **pitch outliers**: share of notes more than {outlier} semitones (an octave and a fifth) from
  the median pitch of their own sequence (real chorales have some: the bass lies far below the
  median of four merged voices; compare with the real rows).
* **out of range**: number of notes outside the requested pitch range (cli rows: the range
  given to the CLI; raw rows: the row's `range` if given, else the vocabulary's range, 21-108,
  which a decoded token cannot leave). Real rows are measured against the range of their
  group's rows when they all request the same one.
* **0-skip seqs**: share of sequences whose tokens all form complete REMI events
  (`smdim.tokenizer.count_ungrammatical` == 0: no token a decoder must skip).
* **test ELBO**: the model's absorbing-diffusion ELBO (nats per token, lower is better) on
  {val_batches} fixed batches of packed test windows of its training length with their styles
  (`smdim.train.fixed_valid_batches(cfg, {val_batches}, split="test")` + `valid_loss`; the
  same windows and masks for every model with the same window length and batch size).
* **s/seq**: wall-clock seconds per generated sequence on this machine ({threads} torch
  thread(s) for raw rows, at `nice`; the machine may be shared, so read it as a rough figure).

## Target check (constrained rows)
Against the real test excerpts of the same style and meter: onsets per bar mean and sd within
±20 % of real, notes per onset within ±15 %, empty bars at most 1.5× real, pitch span within
±25 %, no out-of-range pitch, every phrase decoding without a skipped token, OA pitch and
duration consistency ≥ 0.95 and variance ≥ 0.6. The "real valid excerpts" line of each group is
real music scored the same way: a target that it misses is a limit of the metric at this n
(or of the requested range: real chorale basses go below 48), not of the model.
"""


def style_table_order(rows: dict[str, dict], style: str) -> dict[str, dict]:
    return {k: m for k, m in rows.items() if m["style"] == style}


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--row", action="append", default=[], help="a row spec (see parse_row)")
    ap.add_argument("--rows-file", type=Path, action="append", default=[])
    ap.add_argument("--n", type=int, default=512, help="sequences per row (default 512)")
    ap.add_argument("--length", type=int, default=512, help="raw rows' length (row: length=)")
    ap.add_argument("--seed", type=int, default=0, help="sequence i of every row: seed + i")
    ap.add_argument("--batch", type=int, default=16, help="raw sampling batch")
    ap.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    ap.add_argument("--val-batches", type=int, default=8, help="test ELBO batches per model")
    ap.add_argument("--out-dir", type=Path, default=DOCS)
    ap.add_argument("--cli", type=Path, default=CLI_BINARY, help="the smdim binary")
    ap.add_argument("--skip-cli", action="store_true", help="leave out cli rows (reported)")
    ap.add_argument("--cache", type=Path, default=REPO / "model-export" / "runs" / "eval-cache")
    ap.add_argument("--no-audio", action="store_true", help="no .ogg renders")
    ap.add_argument("--audio-seconds", type=float, default=20.0)
    ap.add_argument("--notes", type=Path, default=None, help="markdown appended to RESULTS.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    texts = list(a.row)
    for f in a.rows_file:
        texts += read_rows(f)
    specs = [parse_row(t) for t in texts]
    if not specs:
        ap.error("no rows: give --row or --rows-file")
    if len({s.name for s in specs}) != len(specs):
        ap.error("row names must be unique")
    missing = sorted({str(s.source) for s in specs if not s.source.exists()})
    if missing:
        ap.error("missing model files: " + ", ".join(missing))
    skipped: list[str] = []
    if any(s.kind == "cli" for s in specs):
        if a.skip_cli:
            skipped = [s.name for s in specs if s.kind == "cli"]
            specs = [s for s in specs if s.kind != "cli"]
        elif not cli_supports_tokens_out(a.cli):
            sys.exit(
                f"{a.cli}: missing, or its `generate` lacks --tokens-out/--count/--style; "
                "build it (cargo build --release -p smdim-cli) or pass --skip-cli"
            )
    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)

    # ---- references: one pair (test, valid) per group
    def group_of(s: RowSpec) -> tuple:
        if s.kind == "cli":
            return ("excerpt", s.style, int(s.params["bars"]), str(s.params["meter"]))
        return ("window", s.style, int(s.params.get("length", a.length)))

    refs: dict[tuple, dict] = {}
    rows: dict[str, dict] = {}
    for g in dict.fromkeys(group_of(s) for s in specs):
        kind, style = g[0], g[1]
        ranges = {s.pitch_range for s in specs if group_of(s) == g}
        rng_ = next(iter(ranges)) if len(ranges) == 1 else None
        if kind == "window":
            t = real_windows("test", style, a.n, g[2], seed=7)
            v = real_windows("valid", style, a.n, g[2], seed=8)
            label, complete = f"{g[2]} tokens", False
        else:
            t = real_excerpts("test", style, a.n, g[2], g[3], seed=17)
            v = real_excerpts("valid", style, a.n, g[2], g[3], seed=18)
            label, complete = f"{g[2]} bars {g[3]}", True
        tm = set_metrics(t, None, complete, rng_)
        T = tm["_oa"]
        tm = set_metrics(t, T, complete, rng_)
        vm = set_metrics(v, T, complete, rng_)
        kindname = "windows" if kind == "window" else "excerpts"
        tname = f"real test {kindname} ({style}, {label}) = reference"
        vname = f"real valid {kindname} ({style}, {label})"
        for nm, m, split in ((tname, tm, "test"), (vname, vm, "valid")):
            rows[nm] = {**m, "style": style, "set": f"real {split}, {label}", "real": True}
        refs[g] = {"oa": T, "complete": complete, "test": t, "test_row": tname, "valid_row": vname}
        print(f"reference {g}: {len(t)} test, {len(v)} valid", flush=True)

    # ---- model rows
    samples: dict[str, list] = {}
    for s in specs:
        g = group_of(s)
        ref = refs[g]
        t0 = time.time()
        info: dict = {"spec": s.text, "kind": s.kind, "source": str(s.source)}
        sid = STYLES.index(s.style)
        if s.kind == "cli":
            model = onnx_for_cli(s.source, a.cache)
            raw = cli_generate(a.cli, model, s.style, a.n, a.seed, s.params, a.cache)
            seqs = [strip_end_marker(x, int(s.params["bars"])) for x in raw]
            info["end_markers_stripped"] = sum(
                len(x) != len(y) for x, y in zip(raw, seqs, strict=True)
            )
            info["cli_args"] = {k: v for k, v in s.params.items()}
            label = f"cli, {g[2]} bars {g[3]}"
        else:
            length = int(s.params.get("length", a.length))
            kwargs = {k: v for k, v in s.params.items() if k not in ("length", "pitch_range")}
            if s.kind == "ckpt":
                from smdim.diffusion import torch_logits_fn

                model, cfg, _ = load_model(str(s.source))
                if length > cfg.model.max_len:
                    raise ValueError(f"row {s.name!r}: length {length} > {cfg.model.max_len}")
                fn = torch_logits_fn(model, style=sid)
            else:
                from smdim.export import ort_logits_fn, ort_session

                fn = ort_logits_fn(ort_session(s.source, a.threads), style=sid)
            seqs = raw_samples(fn, a.n, length, a.seed, a.batch, kwargs)
            info["sample_kwargs"] = kwargs
            label = f"raw, {length} tokens"
        secs = time.time() - t0
        m = set_metrics(seqs, ref["oa"], ref["complete"], s.pitch_range)
        m.update(info)
        m["seconds_per_seq"] = secs / max(len(seqs), 1)
        ckpt = s.source if s.source.suffix == ".pt" else None
        if ckpt is not None:
            model, cfg, summary = load_model(str(ckpt))
            m["val_loss"] = model_val_loss(str(ckpt), a.val_batches)
            m["params"] = model.num_params()
            m["train_steps"] = summary.get("steps")
            m["train_seconds"] = summary.get("train_seconds")
            m["styled_model"] = bool(getattr(cfg.model, "n_styles", 0))
        m.update(style=s.style, set=label, real=False)
        m["reference_row"], m["ceiling_row"] = ref["test_row"], ref["valid_row"]
        rows[s.name] = m
        samples[s.name] = seqs
        shown = {k: m.get(k) for _, k, _ in COLUMNS}
        print(s.name, json.dumps(shown, default=float), flush=True)

    # ---- target check
    checks = {}
    for s in specs:
        if s.kind == "cli":
            ref_row = rows[rows[s.name]["reference_row"]]
            vrow = rows[s.name]["ceiling_row"]
            checks.setdefault(vrow, target_check(rows[vrow], ref_row))  # what real music meets
            checks[s.name] = target_check(rows[s.name], ref_row)
    for name, c in checks.items():
        bad = [k for k, ok in c.items() if not ok]
        print(f"target check {name}: {'all met' if not bad else 'missed: ' + ', '.join(bad)}")

    # ---- piano rolls, MIDI, audio
    styles = [st for st in ("melody", "chorale", "any") if any(s.style == st for s in specs)]
    panels, files = {}, {}
    for st in styles:
        st_specs = [s for s in specs if s.style == st]
        cli_first = sorted(st_specs, key=lambda s: s.kind != "cli")
        listen = cli_first[0]
        ref = refs[group_of(listen)]
        real8 = [first_bars(x) for x in ref["test"][:2]]
        panels[st] = [("real test", real8)] + [(s.name, samples[s.name][:2]) for s in st_specs]
        fl = files.setdefault(st, [])
        for i, x in enumerate(real8):
            fl.append(write_midi(x, out / "midi" / f"{st}_real_{i}.mid"))
        for s in st_specs:
            k = 2 if s is listen else 1
            for i in range(min(k, len(samples[s.name]))):
                p = out / "midi" / f"{st}_{slug(s.name)}_{i}.mid"
                fl.append(write_midi(first_bars(samples[s.name][i]), p))
        if not a.no_audio:
            tune = real_excerpts("test", st, 1, 8, None, seed=27, from_start=True)[0]
            jobs = [(tune, f"{st}_real")] + [
                (first_bars(samples[listen.name][i]), f"{st}_sample_{i}") for i in range(2)
            ]
            for ids, stem in jobs:
                mid = write_midi(ids, out / "midi" / f"{stem}.mid")
                fl.append(render_audio(mid, out / "audio" / f"{stem}.ogg", a.audio_seconds))
        files[st] = [str(p.relative_to(out)) for p in fl]
        files[st + "_listen_row"] = listen.name
    piano_roll(panels, out / "pianoroll.png")

    # ---- write
    cfg_note = {
        "n": a.n,
        "seed": a.seed,
        "length": a.length,
        "val_batches": a.val_batches,
        "threads": a.threads,
        "outlier_semitones": OUTLIER_SEMITONES,
        "skipped_cli_rows": skipped,
        "load_avg_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    metrics = {
        "protocol": cfg_note,
        "rows": {
            k: {kk: vv for kk, vv in m.items() if not kk.startswith("_")} for k, m in rows.items()
        },
        "target_check": checks,
        "files": files,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    test_pieces = ", ".join(
        f"{len(style_tokens('test', st).pieces)} {st} pieces" for st in ("melody", "chorale")
    )
    cmdline = list(argv if argv is not None else sys.argv[1:])
    parts = [
        "# SMDIM results (written by `python -m smdim.evaluate`)\n",
        f"n = {a.n} per row, seeds {a.seed}..{a.seed + a.n - 1}, {a.threads} thread(s); "
        f"command: `python -m smdim.evaluate {shlex.join(cmdline)}`."
        " Protocol and columns: see the notes below.\n",
    ]
    for st in styles:
        parts.append(f"## {st.capitalize()}\n\n{table(style_table_order(rows, st))}\n")
    if checks:
        parts.append(
            "## Target check: constrained rows vs real excerpts\n\n" + target_table(checks) + "\n"
        )
    if skipped:
        parts.append("Rows not run (`--skip-cli`): " + "; ".join(skipped) + ".\n")
    parts.append("## Rows\n\n" + "\n".join(f"* `{s.text}`" for s in specs) + "\n")
    media = ["## Files\n", "* `pianoroll.png`: the first 8 bars of two sequences per set."]
    for st in styles:
        media.append(
            f"* {st}: " + ", ".join(f"`{p}`" for p in files[st]) + f" (renders and "
            f'`{st}_sample_*` from row "{files[st + "_listen_row"]}")'
        )
    parts.append("\n".join(media) + "\n")
    parts.append(
        NOTES.format(
            n=a.n,
            seed=a.seed,
            test_pieces=test_pieces,
            outlier=OUTLIER_SEMITONES,
            val_batches=a.val_batches,
            threads=a.threads,
        )
    )
    if a.notes:
        parts.append(a.notes.read_text())
    (out / "RESULTS.md").write_text("\n".join(parts))
    print(f"wrote {out / 'RESULTS.md'}, {out / 'metrics.json'}, {out / 'pianoroll.png'}")


if __name__ == "__main__":
    main()
