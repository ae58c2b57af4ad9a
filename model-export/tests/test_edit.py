"""The Python twin of the engine's editing skeletons (the Rust parity test compares both)."""

import numpy as np

from smdim.edit import FREE, plan_edit, split_bars
from smdim.tokenizer import load_vocab


def source() -> list[int]:
    v = load_vocab()
    t = v.id
    bar = [v.bar_id, t("TimeSig_4/4")]
    return (
        bar
        + [t("Position_0"), _any_tempo(v)]
        + [t("Pitch_60"), t("Duration_1.0.8"), t("Position_8"), t("Pitch_64"), t("Duration_1.0.8")]
        + bar
        + [t("Position_0"), t("Pitch_62"), t("Duration_2.0.8")]
        + bar
        + [t("Position_16"), t("Pitch_67"), t("Duration_1.0.8")]
    )


def _any_tempo(v) -> int:
    return next(i for i, tok in enumerate(v.tokens) if tok.startswith("Tempo_"))


def test_bars_split_after_the_head():
    head, bars = split_bars(source())
    assert len(head) == 4
    assert [len(b) for b in bars] == [5, 3, 3]


def test_continue_keeps_the_prefix_and_pads_to_the_stride():
    ids = source()
    sk = plan_edit(ids, ("continue", 2), 4, seed=0, multiple=4)
    assert len(sk) % 4 == 0
    # Head, bar 1, the bar line and bar 2 are kept exactly.
    kept = ids[: 4 + 5 + 2 + 3]
    assert sk[: len(kept)].tolist() == kept
    assert (sk[len(kept) + 2 :] == FREE).any()


def test_vary_zero_keeps_everything_and_one_frees_every_pitch():
    v = load_vocab()
    ids = source()
    same = plan_edit(ids, ("vary", 0.0, False), 3, seed=1, multiple=1)
    assert same[: len(ids)].tolist() == ids
    rhythm = plan_edit(ids, ("vary", 1.0, True), 3, seed=1, multiple=1)
    pitches = [i for i, t in enumerate(ids) if v.tokens[t].startswith("Pitch_")]
    assert (rhythm[pitches] == FREE).all()
    others = [i for i in range(len(ids)) if i not in pitches]
    assert np.array_equal(rhythm[others], np.asarray(ids)[others])
