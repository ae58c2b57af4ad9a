"""Token-id facts read from `vocab/remi_v1.json` alone.

Training, sampling and export run on machines without miditok (the GPU box), so everything they
need about ids (PAD, MASK, Bar, the Pitch range) comes from the committed vocabulary file. Decoding
to notes uses miditok and is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from smdim.vocab import VOCAB_PATH


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]
    sha256: str

    @property
    def size(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.tokens.index(token)

    @property
    def pad_id(self) -> int:
        return self.id("PAD_None")

    @property
    def mask_id(self) -> int:
        return self.id("MASK_None")

    @property
    def bar_id(self) -> int:
        return self.id("Bar_None")

    def pitch_ids(self) -> dict[int, int]:
        """MIDI pitch -> token id for every Pitch_* token."""
        return {
            int(t.split("_")[1]): i for i, t in enumerate(self.tokens) if t.startswith("Pitch_")
        }


@lru_cache(maxsize=4)
def load_vocab(path: Path = VOCAB_PATH) -> Vocab:
    raw = Path(path).read_bytes()
    return Vocab(tuple(json.loads(raw)["tokens"]), hashlib.sha256(raw).hexdigest())


def decode(ids, tokenizer=None):
    """Token ids -> (symusic Score, number of tokens miditok skipped as ungrammatical).

    "Skipped" counts tokens that did not end up as part of a complete note (Position+Pitch+
    Duration) or a Bar/TimeSig/Tempo event, i.e. what miditok's decoder silently drops.
    """
    from miditok import TokSequence

    from smdim.vocab import build_tokenizer

    tok = tokenizer or build_tokenizer()
    v = load_vocab()
    ids = [int(i) for i in ids if int(i) != v.pad_id]
    score = tok.decode([TokSequence(ids=ids)])
    return score, count_ungrammatical(ids)


def count_ungrammatical(ids) -> int:
    """Tokens a REMI decoder has to skip: the reference grammar is
    Bar TimeSig (Position [Tempo] (Pitch Duration)+ )* per bar. Counted on strings only."""
    v = load_vocab()
    toks = [v.tokens[int(i)] for i in ids if int(i) != v.pad_id]
    bad = 0
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        kind = t.split("_")[0]
        if kind == "Pitch":
            if i + 1 < n and toks[i + 1].startswith("Duration_"):
                i += 2
                continue
            bad += i + 1 < n  # a note cut off by the end of the window is not a grammar error
        elif kind == "Duration":
            bad += 1
        elif kind in ("MASK", "BOS", "EOS"):
            bad += 1
        elif kind == "TimeSig" and not (i > 0 and toks[i - 1] == "Bar_None"):
            bad += 1
        i += 1
    return bad
