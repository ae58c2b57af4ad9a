"""The editing skeletons of the Rust engine (`plugin/engine/src/sampler/edit.rs`): the source's
REMI ids kept, the bars or notes to change masked, for `smdim.diffusion.sample(fixed=...)`.

`source` is the source as the engine's encoder writes it, head `Bar TimeSig Position_0 Tempo`
included. Edits: ("continue", keep_bars), ("infill", from, to) with 1-based inclusive bars,
("vary", strength, keep_rhythm). The layout is the engine's: kept bars with their own bar lines,
a regenerated stretch of m bars as round(mean kept bar x m) masked slots plus the m - 1 bar lines
the model places, the end marker `Bar TimeSig`, then masked look-ahead slots up to a multiple of
the model's stride. Vary chooses its notes with the engine's seeded SplitMix64 shuffle. (The
engine also checks the skeleton against its grammar automaton and, should it not fit, tries
other stretch lengths; this twin has no automaton and takes the first length.)
"""

from __future__ import annotations

import math

import numpy as np

from smdim.diffusion import MASK64, SplitMix64
from smdim.tokenizer import load_vocab

FREE = -1  # `fixed`'s marker for a masked slot
VARY_SALT = 0x5641_5259_0000_0000


def _round(x: float) -> int:
    """Rust's f64::round for the non-negative values used here (half away from zero)."""
    return int(math.floor(x + 0.5))


def _next_u64(rng: SplitMix64) -> int:
    """One draw of the engine's SplitMix64::next_u64 (the same stream as `uniform`)."""
    rng.state = (rng.state + 0x9E37_79B9_7F4A_7C15) & MASK64
    z = rng.state
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return z ^ (z >> 31)


def split_bars(source) -> tuple[list[int], list[list[int]]]:
    """(head, per-bar contents without their `Bar TimeSig`; bar one without the head)."""
    v = load_vocab()
    ids = [int(t) for t in source]
    tempo_head = len(ids) > 3 and v.tokens[ids[2]] == "Position_0"
    head = 4 if tempo_head and v.tokens[ids[3]].startswith("Tempo_") else 2
    bars: list[list[int]] = [[]]
    i = head
    while i < len(ids):
        if ids[i] == v.bar_id:
            bars.append([])
            i += 2
            continue
        bars[-1].append(ids[i])
        i += 1
    return ids[:head], bars


def _remask(bars, kept, strength: float, keep_rhythm: bool, seed: int) -> None:
    v = load_vocab()
    notes = []  # (bar, pitch index, position index)
    for b, content in enumerate(bars):
        if not kept[b]:
            continue
        position = None
        for i, t in enumerate(content):
            kind = v.tokens[t].split("_")[0]
            if kind == "Position":
                position = i
            elif kind == "Pitch":
                notes.append((b, i, position))
    count = min(_round(strength * len(notes)), len(notes))
    rng = SplitMix64(seed ^ VARY_SALT)
    for i in range(count):
        j = i + _next_u64(rng) % (len(notes) - i)
        notes[i], notes[j] = notes[j], notes[i]
    chosen = notes[:count]
    mask = v.mask_id
    for b, pitch, _ in chosen:
        bars[b][pitch] = mask
        if not keep_rhythm:
            bars[b][pitch + 1] = mask
    if keep_rhythm:
        return
    for b, pitch, position in notes:
        if position is None:
            continue
        same = [n for n in notes if n[0] == b and n[2] == position]
        if all(n in chosen for n in same) and any(c[0] == b and c[1] == pitch for c in chosen):
            bars[b][position] = mask


def plan_edit(
    source,
    edit: tuple,
    bars: int,
    seed: int,
    multiple: int,
    density: float = 1.85,
    tokens_per_note: float = 3.0,
    bar_quarters: float = 4.0,
) -> np.ndarray:
    """The skeleton as int64 ids with FREE (-1) where masked (for `sample(fixed=...)`); the
    phrase is everything before the end marker. `bars`: the output's bars for Continue."""
    v = load_vocab()
    head, contents = split_bars(source)
    ts_id = head[1]
    kind = edit[0]
    n_out = bars if kind == "continue" else len(contents)
    if kind == "continue":
        kept = [b < edit[1] for b in range(n_out)]
    elif kind == "infill":
        kept = [not (edit[1] - 1 <= b < edit[2]) for b in range(n_out)]
    else:
        kept = [True] * n_out
    slots = [list(contents[b]) if kept[b] and b < len(contents) else [] for b in range(n_out)]
    if kind == "vary":
        _remask(slots, kept, edit[1], edit[2], seed)
    kept_lengths = [len(slots[b]) for b in range(n_out) if kept[b]]
    if sum(kept_lengths) > 0:
        mean_bar = sum(kept_lengths) / len(kept_lengths)
    else:
        per_note = min(max(tokens_per_note, 2.0), 4.0)
        mean_bar = max(per_note * density * bar_quarters, 1.0)
    mask = v.mask_id
    tokens = list(head)
    b = 0
    while b < n_out:
        if b > 0:
            tokens += [v.bar_id, ts_id]
        if kept[b]:
            tokens += slots[b]
            b += 1
            continue
        m = 1
        while b + m < n_out and not kept[b + m]:
            m += 1
        content = max(_round(mean_bar * m), 1)
        tokens += [mask] * (content + 2 * (m - 1))
        b += m
    tokens += [v.bar_id, ts_id]
    total = -(-len(tokens) // multiple) * multiple
    tokens += [mask] * (total - len(tokens))
    out = np.asarray(tokens, dtype=np.int64)
    out[out == mask] = FREE
    return out
