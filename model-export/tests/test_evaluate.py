import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smdim import evaluate as E
from smdim.data import STYLES, style_of
from smdim.diffusion import sample
from smdim.tokenizer import load_vocab

PKG = Path(__file__).resolve().parents[1]


def ids(text: str) -> np.ndarray:
    v = load_vocab()
    return np.asarray([v.id(t) for t in text.split()], dtype=np.int64)


# Bar 0: onsets at 0 (two notes) and 8; bar 1 empty; bar 2: onsets at 0 and 16.
HAND = ids(
    "Bar_None TimeSig_4/4 Position_0 Tempo_128.57 Pitch_60 Duration_1.0.8 Pitch_64 Duration_1.0.8"
    " Position_8 Pitch_67 Duration_1.0.8"
    " Bar_None TimeSig_4/4"
    " Bar_None TimeSig_4/4 Position_0 Pitch_72 Duration_2.0.8 Position_16 Pitch_91 Duration_1.0.8"
)


def test_sequence_metrics_on_handcrafted_tokens():
    s = E.sequence_stats(HAND, complete_last=True, pitch_range=(48, 84))
    assert s["n_notes"] == 5 and s["n_bars"] == 3 and s["n_onsets"] == 4
    assert s["onsets_per_bar"] == [2, 0, 2]
    assert s["pitch_span"] == 91 - 60
    assert s["outliers"] == 1  # 91 is 24 semitones from the median 67; 60 is 7 below
    assert s["out_of_range"] == 1 and s["skipped"] == 0
    m = E.set_metrics([HAND], None, complete_last=True, pitch_range=(48, 84))
    assert m["notes_per_onset"] == pytest.approx(5 / 4)
    assert m["onsets_per_bar_mean"] == pytest.approx(4 / 3)
    assert m["onsets_per_bar_std"] == pytest.approx(np.std([2, 0, 2]))
    assert m["empty_bar_share"] == pytest.approx(1 / 3)
    assert m["pitch_outlier_share"] == pytest.approx(1 / 5)
    assert m["zero_skip_share"] == 1.0 and m["out_of_range"] == 1
    # a window cut at a token count: its last bar is left out of the per-bar statistics
    w = E.set_metrics([HAND], None, complete_last=False)
    assert w["onsets_per_bar_mean"] == pytest.approx(1.0) and w["empty_bar_share"] == 0.5
    assert w["out_of_range"] == 0  # the vocabulary's range
    # a stray Duration is a skipped token
    bad = np.concatenate([HAND, ids("Duration_1.0.8")])
    assert E.set_metrics([HAND, bad])["zero_skip_share"] == 0.5


def test_notes_per_onset_pools_over_the_set():
    one = ids("Bar_None TimeSig_3/4 Position_0 Pitch_60 Duration_1.0.8")
    chord = ids(
        "Bar_None TimeSig_3/4 Position_0 Pitch_60 Duration_1.0.8 Pitch_64 Duration_1.0.8"
        " Pitch_67 Duration_1.0.8"
    )
    m = E.set_metrics([one, chord])
    assert m["notes_per_onset"] == pytest.approx(4 / 2)
    assert m["pitch_span"] == pytest.approx((0 + 7) / 2)


def test_oa_scores_identical_and_flat_sets():
    seqs = [E.real_excerpts("test", "melody", 1, 8, None, seed=int(s))[0] for s in range(12)]
    ref = E.set_metrics(seqs)["_oa"]
    same = E.set_metrics(seqs, ref)
    assert same["oa_pitch_consistency"] == pytest.approx(1.0)
    assert same["oa_dur_variance"] == pytest.approx(1.0)
    assert len(ref[0]) == 12  # 8 bars: windows at bars 0, 2, 4
    one_bar = [ids("Bar_None TimeSig_4/4 Position_0 Pitch_60 Duration_2.0.8")]
    assert E.set_metrics(one_bar, ref)["oa_pieces"] == 0  # fewer than two 4-bar windows: no OA
    # the same pitch and duration in every bar: OA 1 for every piece, no spread at all
    flat = [np.tile(one_bar[0], 8) for _ in range(4)]
    m = E.set_metrics(flat, ref)
    assert m["oa_pieces"] == 4 and m["oa_pitch_variance"] == 0.0
    assert m["oa_pitch_consistency"] < 0.95


def test_target_check():
    real = {
        "onsets_per_bar_mean": 6.0,
        "onsets_per_bar_std": 2.0,
        "notes_per_onset": 1.0,
        "empty_bar_share": 0.02,
        "pitch_span": 16.0,
    }
    good = {
        **real,
        "onsets_per_bar_mean": 7.1,
        "empty_bar_share": 0.03,
        "out_of_range": 0,
        "zero_skip_share": 1.0,
        "oa_pitch_consistency": 0.97,
        "oa_pitch_variance": 0.7,
        "oa_dur_consistency": 0.96,
        "oa_dur_variance": 0.61,
    }
    assert all(E.target_check(good, real).values())
    worse = {**good, "onsets_per_bar_mean": 7.3, "out_of_range": 2, "empty_bar_share": 0.031}
    failed = {k for k, ok in E.target_check(worse, real).items() if not ok}
    assert failed == {"onsets/bar mean ±20 %", "0 out of range", "empty bars ≤ 1.5× real"}
    assert not E.target_check({**good, "oa_dur_variance": None}, real)["OA dur. var. ≥ 0.6"]


def _index(pieces) -> str:
    return "|" + "".join("," + ",".join(map(str, p.tolist())) + ",|" for p in pieces)


def _packed_from(w, index: str) -> bool:
    """Is `w` a piece's tail (from anywhere) followed by piece prefixes (packing), all of them
    pieces of `index`? Reachability over positions: a segment starting at i can have any length
    up to the longest match (the separators stop a match at a piece's end)."""
    reach = np.zeros(len(w) + 1, dtype=bool)
    reach[0] = True
    for i in range(len(w)):
        if not reach[i]:
            continue
        lead = "," if i == 0 else "|,"

        def found(m, i=i, lead=lead):
            return (lead + ",".join(map(str, w[i : i + m].tolist())) + ",") in index

        if not found(1):
            continue
        lo, hi = 1, len(w) - i
        while lo < hi:  # the longest m that is found (found is monotone in m)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if found(mid) else (lo, mid - 1)
        reach[i + 1 : i + lo + 1] = True
    return bool(reach[len(w)])


@pytest.mark.parametrize("style", ["melody", "chorale"])
def test_real_windows_of_one_style_have_no_pad_and_only_that_style(style):
    v = load_vocab()
    ts = E.style_tokens("test", style)
    assert ts.pieces and {style_of(c) for c in ts.collections} == {STYLES.index(style)}
    other = E.style_tokens("test", "chorale" if style == "melody" else "melody")
    mine, theirs = _index(ts.pieces), _index(other.pieces)
    # long windows: most run past their first piece and are packed with another one
    ws = E.real_windows("test", style, 8, 768, seed=3)
    assert len(ws) == 8
    for w in ws:
        assert len(w) == 768 and not (w == v.pad_id).any()
        assert w[0] == v.bar_id
        assert _packed_from(w, mine) and not _packed_from(w, theirs)


def test_real_excerpts_are_whole_bars_of_one_style_and_meter():
    v = load_vocab()
    mine = _index(E.style_tokens("test", "melody").pieces)
    four = v.id("TimeSig_4/4")
    for x in E.real_excerpts("test", "melody", 20, 8, "4/4", seed=5):
        bars = np.nonzero(x == v.bar_id)[0]
        assert x[0] == v.bar_id and len(bars) == 8
        assert (x[bars + 1] == four).all()
        assert "," + ",".join(map(str, x.tolist())) + "," in mine
    starts = E.real_excerpts("test", "chorale", 5, 8, None, seed=1, from_start=True)
    firsts = {tuple(p[:20].tolist()) for p in E.style_tokens("test", "chorale").pieces}
    assert all(tuple(x[:20].tolist()) in firsts for x in starts)


def test_first_bars():
    x = np.concatenate([HAND, HAND])
    assert (E.first_bars(x, 3) == HAND).all()
    assert (E.first_bars(HAND, 8) == HAND).all()


def test_strip_end_marker():
    marker = ids("Bar_None TimeSig_4/4")
    assert (E.strip_end_marker(np.concatenate([HAND, marker]), 3) == HAND).all()
    assert (E.strip_end_marker(HAND, 3) == HAND).all()  # no marker
    # an empty last bar of the phrase itself stays: it is one of the requested bars
    assert len(E.strip_end_marker(np.concatenate([HAND, marker]), 4)) == len(HAND) + 2


def test_row_spec_parser():
    r = E.parse_row(
        " SMDIM melody, t 0.9 = ckpt:runs/default/final_ema.pt, style=melody, steps=16,"
        " temperature=0.9, top-p=0.95, range=48-84"
    )
    assert r.name == "SMDIM melody, t 0.9" and r.kind == "ckpt"
    assert r.source == Path("runs/default/final_ema.pt") and r.style == "melody"
    assert r.params == {"steps": 16, "temperature": 0.9, "top_p": 0.95, "pitch_range": "48-84"}
    assert r.pitch_range == (48, 84)
    c = E.parse_row("plugin=cli:models/smdim-default.onnx,style=chorale,density=2,bars=4")
    assert c.kind == "cli" and c.style == "chorale"
    assert c.params == {"bars": 4, "meter": "4/4", "pitch_range": "48-84", "density": 2}
    assert E.parse_row("a=onnx:m.onnx").style == "any"
    for bad in (
        "no kind",
        "x=torch:m.pt",
        "x=ckpt:",
        "x=ckpt:m.pt,style=jazz",
        "x=ckpt:m.pt,bogus=1",
        "x=ckpt:m.pt,seed=3",
        "x=ckpt:m.pt,steps",
        "x=ckpt:m.pt,steps=3,steps=4",
        "x=cli:m.onnx,count=3",
        "x=cli:m.onnx,range=84-48",
    ):
        with pytest.raises(ValueError):
            E.parse_row(bad)
    # keys of smdim.diffusion.sample pass through, checked on its signature
    has_order = "order" in inspect.signature(sample).parameters
    if has_order:
        assert E.parse_row("x=ckpt:m.pt,order=confidence").params == {"order": "confidence"}
    else:
        with pytest.raises(ValueError):
            E.parse_row("x=ckpt:m.pt,order=confidence")


def test_read_rows_skips_comments(tmp_path):
    f = tmp_path / "rows.txt"
    f.write_text("# comment\n\na=ckpt:m.pt,style=melody\n  b=cli:m.onnx\n")
    assert [E.parse_row(t).name for t in E.read_rows(f)] == ["a", "b"]


FAKE_CLI = """#!{python}
import json, sys
args = sys.argv[1:]
open({log!r}, "w").write(json.dumps(args))
get = lambda f: args[args.index(f) + 1]
seed, count = int(get("--seed")), int(get("--count"))
with open(get("--tokens-out"), "w") as f:
    for s in reversed(range(seed, seed + count)):
        f.write(json.dumps({{"seed": s, "tokens": [4, 11, s]}}) + "\\n")
"""


def test_cli_generate_runs_the_binary_and_parses_jsonl(tmp_path):
    """The Python side of the constrained rows against a stand-in binary with the agreed
    interface (the real one is exercised by the end-to-end test when it is built)."""
    log = tmp_path / "argv.json"
    fake = tmp_path / "smdim"
    fake.write_text(FAKE_CLI.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    spec = E.parse_row("c=cli:m.onnx,style=melody,top_p=0.9,max_notes_per_onset=2")
    out = E.cli_generate(fake, Path("m.onnx"), spec.style, 3, 10, spec.params, tmp_path)
    assert [x.tolist() for x in out] == [[4, 11, 10], [4, 11, 11], [4, 11, 12]]
    argv = json.loads(log.read_text())
    assert argv[:5] == ["generate", "--model", "m.onnx", "--style", "melody"]
    for flag, val in (
        ("--count", "3"),
        ("--seed", "10"),
        ("--bars", "8"),
        ("--meter", "4/4"),
        ("--pitch-range", "48-84"),
        ("--top-p", "0.9"),
        ("--max-notes-per-onset", "2"),
    ):
        assert argv[argv.index(flag) + 1] == val
    assert argv[argv.index("--tokens-out") + 1].endswith(".jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seed": 0, "tokens": [1]}\n{"seed": 2, "tokens": [1]}\n')
    with pytest.raises(ValueError):
        E.parse_tokens_jsonl(bad, 2, 0)
    fake.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    with pytest.raises(RuntimeError, match="nope"):
        E.cli_generate(fake, Path("m.onnx"), "any", 1, 0, {}, tmp_path)


@pytest.mark.skipif(
    not (E.SOUNDFONT.exists() and E.shutil.which("fluidsynth") and E.shutil.which("ffmpeg")),
    reason="fluidsynth, ffmpeg or FluidR3_GM missing",
)
def test_render_audio(tmp_path):
    x = E.real_excerpts("test", "melody", 1, 8, None, seed=0, from_start=True)[0]
    mid = E.write_midi(x, tmp_path / "a.mid")
    ogg = E.render_audio(mid, tmp_path / "a.ogg", seconds=3)
    assert ogg.exists() and 2_000 < ogg.stat().st_size < 100_000
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", ogg],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:
        assert float(probe.stdout) <= 3.1


def test_end_to_end_on_a_tiny_model(tmp_path):
    run = tmp_path / "tiny"
    subprocess.run(
        [sys.executable, "-m", "smdim.train", "--config", "tiny", "--max-steps", "20"]
        + ["--out", str(run), "--no-progress", "--threads", "1"],
        check=True,
        cwd=PKG,
        capture_output=True,
    )
    ck = run / "final_ema.pt"
    rows = [
        f"tiny melody=ckpt:{ck},style=melody,length=64,steps=4",
        f"tiny chorale, t0.9=ckpt:{ck},style=chorale,length=64,steps=4,temperature=0.9",
    ]
    # the ONNX export the cli rows use (+ card beside it), sampled through onnxruntime
    onnx = E.onnx_for_cli(ck, tmp_path / "cache")
    assert onnx.with_suffix(".card.json").exists() and E.onnx_for_cli(onnx, tmp_path) == onnx
    rows.append(f"tiny melody onnx=onnx:{onnx},style=melody,length=64,steps=4")
    if E.cli_supports_tokens_out(E.CLI_BINARY):
        # the tiny model takes 64 tokens: 2 sparse bars fit
        rows.append(f"tiny melody constrained=cli:{ck},style=melody,steps=4,bars=2,density=0.5")
    out = tmp_path / "out"
    argv = ["--n", "4", "--out-dir", str(out), "--val-batches", "1", "--no-audio"]
    argv += ["--cache", str(tmp_path / "cache")]
    for r in rows:
        argv += ["--row", r]
    E.main(argv)
    text = (out / "RESULTS.md").read_text()
    assert "## Melody" in text and "## Chorale" in text and "## Any" not in text
    assert "tiny chorale, t0.9" in text and "pitch outliers" in text
    m = json.loads((out / "metrics.json").read_text())
    r = m["rows"]
    assert r["tiny melody"]["n"] == 4 and math.isfinite(r["tiny melody"]["val_loss"])
    assert r["tiny melody"]["reference_row"] in r and r["tiny melody"]["ceiling_row"] in r
    ref = r[r["tiny chorale, t0.9"]["reference_row"]]
    assert ref["real"] and ref["style"] == "chorale" and ref["n"] == 4
    assert ref["notes_per_onset"] > 1.5  # chorales: four voices on one track
    assert m["protocol"]["n"] == 4
    assert (out / "pianoroll.png").stat().st_size > 1000
    assert (out / "midi" / "melody_real_0.mid").exists()
    assert (out / "midi" / "chorale_tiny_chorale_t0_9_0.mid").exists()
    # the same weights, seeds and settings through PyTorch and onnxruntime: the same tokens
    for k in ("notes_per_seq", "notes_per_onset", "pitch_span", "zero_skip_share"):
        assert r["tiny melody onnx"][k] == pytest.approx(r["tiny melody"][k]), k
    assert "val_loss" not in r["tiny melody onnx"]
    if len(rows) == 4:
        assert "Target check" in text and "tiny melody constrained" in m["target_check"]


REAL_CLI = """#!{python}
import json, sys
sys.path.insert(0, {pkg!r})
args = sys.argv[1:]
if "--help" in args:
    print("--count --style --tokens-out")
    sys.exit(0)
from smdim.evaluate import real_excerpts
get = lambda f: args[args.index(f) + 1]
seed, count = int(get("--seed")), int(get("--count"))
xs = real_excerpts("valid", get("--style"), count, int(get("--bars")), get("--meter"), seed=seed)
with open(get("--tokens-out"), "w") as f:
    for s, x in zip(range(seed, seed + count), xs):
        f.write(json.dumps({{"seed": s, "tokens": x.tolist()}}) + "\\n")
"""


def test_constrained_rows_through_main_with_a_stand_in_cli(tmp_path):
    """main() with a cli row, the binary replaced by one that answers with real valid
    excerpts: references, target check, renders. (Not the engine: see the end-to-end test.)"""
    fake = tmp_path / "smdim"
    fake.write_text(REAL_CLI.format(python=sys.executable, pkg=str(PKG)))
    fake.chmod(0o755)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    out = tmp_path / "out"
    argv = ["--n", "6", "--out-dir", str(out), "--cli", str(fake), "--cache", str(tmp_path)]
    argv += ["--row", f"stand-in=cli:{model},style=melody"]
    audio = E.SOUNDFONT.exists() and bool(E.shutil.which("fluidsynth") and E.shutil.which("ffmpeg"))
    if not audio:
        argv.append("--no-audio")
    E.main(argv + ["--audio-seconds", "2"])
    m = json.loads((out / "metrics.json").read_text())
    row = m["rows"]["stand-in"]
    assert row["reference_row"] == "real test excerpts (melody, 8 bars 4/4) = reference"
    assert row["ceiling_row"] in m["target_check"] and "stand-in" in m["target_check"]
    assert row["zero_skip_share"] == 1.0 and row["pitch_range"] == [48, 84]
    assert row["cli_args"] == {"bars": 8, "meter": "4/4", "pitch_range": "48-84"}
    assert row["bars_per_seq"] == 8 and row["oa_pieces"] == 6
    text = (out / "RESULTS.md").read_text()
    assert "## Target check" in text and "| stand-in |" in text
    if audio:
        for stem in ("melody_real", "melody_sample_0", "melody_sample_1"):
            assert (out / "audio" / f"{stem}.ogg").stat().st_size > 1000
