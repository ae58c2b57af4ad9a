"""Real training data: public-domain music21 corpus collections -> REMI token cache.

`python -m smdim.data --rebuild` converts the allowed collections (licences below) with exactly
the repository's vocabulary, splits by piece (hash of the piece id, so the split never depends
on order or on which other pieces exist), prints statistics and writes

* `data/tokens_v1.npz`   uint16 ids, int64 offsets, per-piece collection and split (committed)
* `data/manifest_v1.json` collections, licences, split rule, counts

Everything below `load_tokens()` uses numpy only, so training runs where miditok is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smdim.tokenizer import load_vocab

PKG_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PKG_ROOT / "data"
CACHE_DIR = PKG_ROOT / "cache"
TOKENS_PATH = DATA_DIR / "tokens_v1.npz"
MANIFEST_PATH = DATA_DIR / "manifest_v1.json"
SPLITS = ("train", "valid", "test")
log = logging.getLogger("smdim.data")

# Only collections whose licence allows shipping a model trained on them in an open-source
# product. Essen (non-commercial) and Palestrina/CCARH kern (rights reserved) are excluded.
COLLECTIONS = {
    "oneills1850": {
        "kind": "abc",
        "dir": "oneills1850",
        "licence": "public domain: O'Neill's Music of Ireland (1850 tunes), published 1903; "
        "ABC transcriptions credited in each tune header (Z:)",
    },
    "ryansMammoth": {
        "kind": "abc",
        "dir": "ryansMammoth",
        "licence": "public domain: Ryan's Mammoth Collection, published 1883",
    },
    "airdsAirs": {
        "kind": "abc",
        "dir": "airdsAirs",
        "licence": "public domain: Aird's Selection of Scotch, English, Irish and Foreign Airs, "
        "published 1782-1803",
    },
    "miscFolk": {
        "kind": "abc",
        "dir": "miscFolk",
        "licence": "public domain: historic folk tune books (American Fife, Northumbrian "
        "Minstrelsy), 19th century",
    },
    "bachChorales": {
        "kind": "musicxml",
        "dir": "bach",
        "licence": "public domain music (J. S. Bach, d. 1750); MusicXML encodings distributed "
        "with music21 with credits in the files",
    },
}


def split_of(piece_id: str) -> str:
    """Deterministic 90/5/5 split from the piece id alone."""
    h = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 90 else ("valid" if h < 95 else "test")


# --------------------------------------------------------------------------- conversion
def corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def split_abc(text: str) -> list[str]:
    """symusic reads only the first tune of an ABC file: split books on `X:` lines."""
    parts = re.split(r"(?m)^(?=X:)", text)
    return [p for p in parts if p.lstrip().startswith("X:")]


def merge_tracks(score):
    """All parts into one track (the plugin generates one part; chorales become chords)."""
    from symusic import Score, Track

    if len(score.tracks) <= 1:
        return score
    out = Score(score.ticks_per_quarter)
    out.time_signatures = score.time_signatures
    out.tempos = score.tempos
    track = Track(program=0, is_drum=False)
    for t in score.tracks:
        if not t.is_drum:
            track.notes.extend(t.notes)
    track.notes.sort(key=lambda n: (n.time, n.pitch))
    out.tracks.append(track)
    return out


def abc_pieces(name: str, directory: str):
    for f in sorted((corpus_dir() / directory).glob("*.abc")):
        text = f.read_text(encoding="latin-1")
        for tune in split_abc(text):
            m = re.match(r"X:\s*(\S+)", tune.lstrip())
            yield f"{name}/{f.stem}/{m.group(1) if m else '?'}", ("abc", tune)


def musicxml_pieces(name: str, directory: str):
    for f in sorted((corpus_dir() / directory).glob("*.mxl")) + sorted(
        (corpus_dir() / directory).glob("*.xml")
    ):
        yield f"{name}/{f.stem}", ("musicxml", f)


class _Timeout(Exception):
    pass


def _alarm(_sig, _frm):
    raise _Timeout


def musicxml_to_midi(path: Path, cache: Path, timeout_s: int = 60) -> Path:
    """music21 is slow (0.1-100 s per work): convert once, keep the MIDI in cache/."""
    out = cache / (path.stem + ".mid")
    if out.exists():
        return out
    import music21

    cache.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        music21.converter.parse(path).write("midi", fp=str(out))
    finally:
        signal.alarm(0)
    return out


def to_score(source):
    from symusic import Score

    kind, payload = source
    if kind == "abc":
        return Score.from_abc(payload)
    return Score(str(payload))


def rebuild(collections: list[str] | None = None) -> dict:
    from smdim.vocab import build_tokenizer, vocab_document

    tokenizer = build_tokenizer()
    doc_tokens = json.loads(vocab_document())["tokens"]
    file_vocab = load_vocab()
    assert tuple(doc_tokens) == file_vocab.tokens, "tokenizer vocab differs from vocab/remi_v1.json"

    names = collections or list(COLLECTIONS)
    all_ids, offsets, coll_idx, split_idx, piece_ids = [], [0], [], [], []
    stats, failures = {}, []
    bar_id = file_vocab.bar_id
    # ABC first (fast), the slow MusicXML collections last.
    for ci, name in sorted(enumerate(names), key=lambda p: COLLECTIONS[p[1]]["kind"] != "abc"):
        spec = COLLECTIONS[name]
        t0 = time.time()
        gen = (abc_pieces if spec["kind"] == "abc" else musicxml_pieces)(name, spec["dir"])
        st = {"pieces": 0, "bars": 0, "tokens": 0, "failed": 0}
        for pid, source in gen:
            try:
                if source[0] == "musicxml":
                    source = ("midi", musicxml_to_midi(source[1], CACHE_DIR / "midi" / name))
                score = merge_tracks(to_score(source))
                seqs = tokenizer(score)
                seq = seqs[0] if isinstance(seqs, list) else seqs
                ids = np.asarray(seq.ids, dtype=np.uint16)
            except Exception as e:  # noqa: BLE001 - log and skip malformed works
                failures.append({"piece": pid, "error": f"{type(e).__name__}: {e}"[:200]})
                st["failed"] += 1
                continue
            if len(ids) < 16:
                st["failed"] += 1
                failures.append({"piece": pid, "error": "fewer than 16 tokens"})
                continue
            all_ids.append(ids)
            offsets.append(offsets[-1] + len(ids))
            coll_idx.append(ci)
            split_idx.append(SPLITS.index(split_of(pid)))
            piece_ids.append(pid)
            st["pieces"] += 1
            st["tokens"] += len(ids)
            st["bars"] += int((ids == bar_id).sum())
        st["seconds"] = round(time.time() - t0, 1)
        stats[name] = st
        print(
            f"{name:14s} pieces {st['pieces']:6d}  bars {st['bars']:8d}  tokens "
            f"{st['tokens']:9d}  failed {st['failed']:4d}  ({st['seconds']} s)",
            flush=True,
        )

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        TOKENS_PATH,
        ids=np.concatenate(all_ids),
        offsets=np.asarray(offsets, dtype=np.int64),
        collection=np.asarray(coll_idx, dtype=np.uint8),
        split=np.asarray(split_idx, dtype=np.uint8),
        collections=np.asarray(names),
        piece_ids=np.asarray(piece_ids),
    )
    split_counts = {s: int(sum(1 for x in split_idx if x == k)) for k, s in enumerate(SPLITS)}
    manifest = {
        "version": 1,
        "vocab_sha256": file_vocab.sha256,
        "tokens_file": TOKENS_PATH.name,
        "split_rule": "sha1(piece_id)[:8] as int % 100: <90 train, <95 valid, else test",
        "pieces_per_split": split_counts,
        "collections": {
            n: {
                **{k: v for k, v in COLLECTIONS[n].items() if k != "dir"},
                "music21_dir": COLLECTIONS[n]["dir"],
                **stats[n],
            }
            for n in names
        },
        "excluded": {
            "essenFolksong": "non-commercial use only",
            "palestrina": "rights reserved",
            "CCARH kern encodings": "rights reserved",
        },
        "failures": failures,
    }
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(s["tokens"] for s in stats.values())
    print(f"total tokens {total}, pieces {split_counts}, wrote {TOKENS_PATH}")
    return manifest


# --------------------------------------------------------------------------- loading
@dataclass
class TokenSet:
    """Pieces of one split as a list of uint16 id arrays."""

    pieces: list[np.ndarray]
    collections: list[str]

    @property
    def n_tokens(self) -> int:
        return int(sum(len(p) for p in self.pieces))


def load_tokens(split: str, path: Path = TOKENS_PATH) -> TokenSet:
    z = np.load(path)
    ids, off, sp = z["ids"], z["offsets"], z["split"]
    names, coll = list(z["collections"]), z["collection"]
    k = SPLITS.index(split)
    sel = np.nonzero(sp == k)[0]
    return TokenSet([ids[off[i] : off[i + 1]] for i in sel], [str(names[coll[i]]) for i in sel])


STYLES = ("any", "melody", "chorale")  # style ids 0, 1, 2: the model's conditioning input


def style_of(collection: str) -> int:
    """Chorales are four voices merged into one track; every other collection is a tune line."""
    return STYLES.index("chorale" if collection == "bachChorales" else "melody")


class CropSampler:
    """Random training windows: start at a Bar token, fixed length, random transposition that
    keeps every pitch inside the vocabulary's range. After a piece ends the window is padded with
    PAD, or with `pack` continued by the start of another random piece of the same style (no PAD:
    a model trained on padded windows learns a high PAD marginal that unconditional sampling then
    scatters). `chorale_share` (None: proportional to tokens) sets how often a window is drawn
    from the chorales; within a style pieces are drawn in proportion to their length."""

    def __init__(
        self,
        tokens: TokenSet,
        length: int,
        seed: int = 0,
        transpose: int = 6,
        pack: bool = False,
        chorale_share: float | None = None,
    ):
        v = load_vocab()
        self.pieces = tokens.pieces
        self.styles = np.asarray([style_of(c) for c in tokens.collections], dtype=np.int64)
        self.length = length
        self.pad = v.pad_id
        self.rng = np.random.default_rng(seed)
        self.transpose = transpose
        self.pack = pack
        self.bars = [np.nonzero(p == v.bar_id)[0] for p in self.pieces]
        pitch = v.pitch_ids()
        self.pitch_lo, self.pitch_hi = min(pitch), max(pitch)
        self.pid_lo = pitch[self.pitch_lo]
        assert all(pitch[p] == self.pid_lo + p - self.pitch_lo for p in pitch), (
            "Pitch ids contiguous"
        )
        self.pid_hi = pitch[self.pitch_hi]
        lengths = np.asarray([len(p) for p in self.pieces], dtype=np.float64)
        self.p = lengths / lengths.sum()
        # Per style: piece indices and their length weights.
        self.by_style = {}
        for st in (1, 2):
            idx = np.nonzero(self.styles == st)[0]
            if len(idx):
                self.by_style[st] = (idx, lengths[idx] / lengths[idx].sum())
        share = {st: float(self.p[idx].sum()) for st, (idx, _) in self.by_style.items()}
        if chorale_share is not None and len(self.by_style) == 2:
            share = {1: 1.0 - chorale_share, 2: chorale_share}
        self.style_ids = np.asarray(sorted(share), dtype=np.int64)
        self.style_p = np.asarray([share[k] for k in self.style_ids])
        self.style_p /= self.style_p.sum()

    def _piece(self, rng: np.random.Generator, style: int) -> int:
        idx, w = self.by_style[style]
        return int(idx[rng.choice(len(idx), p=w)])

    def styled_window(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
        rng = rng or self.rng
        style = int(self.style_ids[rng.choice(len(self.style_ids), p=self.style_p)])
        i = self._piece(rng, style)
        piece, bars = self.pieces[i], self.bars[i]
        start = int(bars[rng.integers(len(bars))]) if len(bars) else 0
        w = piece[start : start + self.length].astype(np.int64)
        while self.pack and len(w) < self.length:
            nxt = self.pieces[self._piece(rng, style)]
            w = np.concatenate([w, nxt[: self.length - len(w)].astype(np.int64)])
        if self.transpose:
            is_pitch = (w >= self.pid_lo) & (w <= self.pid_hi)
            if is_pitch.any():
                lo = max(-self.transpose, self.pid_lo - int(w[is_pitch].min()))
                hi = min(self.transpose, self.pid_hi - int(w[is_pitch].max()))
                w[is_pitch] += int(rng.integers(lo, hi + 1))
        out = np.full(self.length, self.pad, dtype=np.int64)
        out[: len(w)] = w
        return out, style

    def window(self, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.styled_window(rng)[0]

    def styled_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows [n, length] and their style ids [n] (1 Melody, 2 Chorale)."""
        ws = [self.styled_window() for _ in range(n)]
        return np.stack([w for w, _ in ws]), np.asarray([s for _, s in ws], dtype=np.int64)

    def batch(self, n: int) -> np.ndarray:
        return self.styled_batch(n)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--rebuild", action="store_true", help="reconvert the corpus and rewrite caches"
    )
    ap.add_argument("--collections", nargs="*", default=None, choices=list(COLLECTIONS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.rebuild:
        rebuild(args.collections)
    else:
        z = np.load(TOKENS_PATH)
        for s in SPLITS:
            ts = load_tokens(s)
            print(f"{s:6s} pieces {len(ts.pieces):6d} tokens {ts.n_tokens:9d}")
        print("collections:", list(z["collections"]))


if __name__ == "__main__":
    sys.exit(main())
