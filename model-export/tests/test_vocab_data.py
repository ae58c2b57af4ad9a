import json

import numpy as np

from smdim import data
from smdim.tokenizer import count_ungrammatical, load_vocab
from smdim.vocab import VOCAB_PATH, vocab_document

GOLDEN = VOCAB_PATH.parent / "golden"


def test_vocab_file_regenerates_byte_for_byte():
    assert VOCAB_PATH.read_text() == vocab_document()


def test_vocab_ids():
    v = load_vocab()
    assert v.size == 271
    assert v.tokens[v.mask_id] == "MASK_None" and v.tokens[v.pad_id] == "PAD_None"
    pitches = v.pitch_ids()
    assert min(pitches) == 21 and max(pitches) == 108


def test_split_is_deterministic_and_by_piece():
    ids = [f"col/p{i}" for i in range(2000)]
    a = [data.split_of(i) for i in ids]
    assert a == [data.split_of(i) for i in ids]
    share = {s: a.count(s) / len(a) for s in data.SPLITS}
    assert 0.86 < share["train"] < 0.94 and 0.02 < share["test"] < 0.08


def test_abc_pipeline_on_two_tunes():
    from smdim.vocab import build_tokenizer

    text = (
        "X: 1\nT: A\nM: 4/4\nL: 1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A4|\n\n"
        "X: 2\nT: B\nM: 3/4\nL: 1/8\nK:D\n[DFA]2 [DFA]2 d2|f4 e2|\n"
    )
    tunes = data.split_abc(text)
    assert len(tunes) == 2
    tok = build_tokenizer()
    seqs = []
    for t in tunes:
        s = tok(data.merge_tracks(data.to_score(("abc", t))))
        seqs.append(s[0] if isinstance(s, list) else s)
    v = load_vocab()
    toks = seqs[0].tokens
    assert toks[:2] == ["Bar_None", "TimeSig_4/4"]
    assert sum(t.startswith("Pitch_") for t in toks) == 8 + 8 + 6 + 3
    assert "Pitch_67" in toks  # G4
    # a three-note chord becomes three Pitch/Duration pairs after one Position
    assert seqs[1].tokens[:10] == [
        "Bar_None",
        "TimeSig_3/4",
        "Position_0",
        "Tempo_128.57",
        "Pitch_62",
        "Duration_1.0.8",
        "Pitch_66",
        "Duration_1.0.8",
        "Pitch_69",
        "Duration_1.0.8",
    ]
    assert all(v.tokens[i] == t for i, t in zip(seqs[0].ids, toks, strict=True))
    assert count_ungrammatical(seqs[0].ids) == 0


def test_token_cache_and_manifest():
    z = np.load(data.TOKENS_PATH)
    assert z["ids"].dtype == np.uint16 and z["ids"].max() < load_vocab().size
    assert z["offsets"][-1] == len(z["ids"])
    man = json.loads(data.MANIFEST_PATH.read_text())
    assert man["vocab_sha256"] == load_vocab().sha256
    for name, c in man["collections"].items():
        assert c["licence"] and c["pieces"] > 0, name
    assert "essenFolksong" not in man["collections"]
    # the split stored in the cache is the split rule applied to the piece id
    for k in range(0, len(z["piece_ids"]), 97):
        assert data.SPLITS[z["split"][k]] == data.split_of(str(z["piece_ids"][k]))


def test_crop_sampler_transposes_within_range():
    v = load_vocab()
    ts = data.load_tokens("valid")
    s = data.CropSampler(ts, 128, seed=0, transpose=6)
    b = s.batch(32)
    assert b.shape == (32, 128)
    assert (b[:, 0] == v.bar_id).all()  # windows start at a bar
    assert b.max() < v.size
    s0 = data.CropSampler(ts, 128, seed=0, transpose=0)
    s6 = data.CropSampler(ts, 128, seed=0, transpose=6)
    a, c = s0.window(np.random.default_rng(5)), s6.window(np.random.default_rng(5))
    p = (a >= s0.pid_lo) & (a <= s0.pid_hi)
    # same window, pitches shifted by one common interval, everything else identical
    assert (a[~p] == c[~p]).all()
    assert len(set((c[p] - a[p]).tolist())) == 1


GOLDEN_TPQ = 960  # vocab/golden/*.json give note start/length in ticks of 960 per quarter


def test_golden_vectors_decode_to_expected_notes():
    """The lead's golden token sequences decode with miditok to exactly the expected notes."""
    from smdim.tokenizer import decode

    v = load_vocab()
    files = sorted(GOLDEN.glob("*.json"))
    assert len(files) >= 4, f"golden vectors missing in {GOLDEN}"
    for f in files:
        g = json.loads(f.read_text())
        score, skipped = decode([v.id(t) for t in g["tokens"]])
        assert skipped == 0, f.name
        tpq = score.ticks_per_quarter
        got = sorted(
            (n.time * GOLDEN_TPQ // tpq, n.duration * GOLDEN_TPQ // tpq, n.pitch)
            for t in score.tracks
            for n in t.notes
        )
        exp = sorted((e["start"], e["length"], e["pitch"]) for e in g["notes"])
        assert got == exp, f.name
        assert sum(t == "Bar_None" for t in g["tokens"]) == g["bars"], f.name


def test_crop_sampler_packs_instead_of_padding():
    v = load_vocab()
    ts = data.load_tokens("valid")
    long = 4 * max(len(p) for p in ts.pieces[:50])
    padded = data.CropSampler(ts, long, seed=1, transpose=0).batch(4)
    packed = data.CropSampler(ts, long, seed=1, transpose=0, pack=True).batch(4)
    assert (padded == v.pad_id).any()
    assert not (packed == v.pad_id).any()
    assert ((packed == v.bar_id).sum(1) > (padded == v.bar_id).sum(1)).all()
