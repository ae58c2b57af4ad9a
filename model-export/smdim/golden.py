"""Golden vectors: REMI token sequences and the notes miditok decodes them to.

Written to `vocab/golden/*.json` and checked by both the Rust codec tests and the Python tests,
so the two decoders cannot drift apart. Notes are in ticks at 960 per quarter note.
`python -m smdim.golden --write` regenerates them.
"""

from __future__ import annotations

import argparse
import json

from .vocab import REPO_ROOT, build_tokenizer

GOLDEN_DIR = REPO_ROOT / "vocab" / "golden"
PPQ = 960

TUNES = {
    "jig_6_8": """X:1
T:Jig
M:6/8
L:1/8
Q:3/8=100
K:D
DFA dfa|[DF]2A B3|c/d/e f g2 a|b3- b2z|
""",
    "waltz_3_4": """X:1
T:Waltz
M:3/4
L:1/4
Q:1/4=90
K:G
G B d|[GBd]2 c/B/|A3|z G/A/ B|
""",
    "reel_4_4": """X:1
T:Reel
M:4/4
L:1/16
Q:1/4=120
K:Em
E2B2 B3A G2F2 E4|[EB]8 z4 [DA]4|
""",
    "cut_time_2_2": """X:1
T:Cut time
M:2/2
L:1/4
Q:1/2=80
K:C
C E G c|[CEG]4|
""",
}


def golden_documents() -> dict[str, str]:
    from symusic import Score

    tokenizer = build_tokenizer()
    docs = {}
    for name, abc in TUNES.items():
        score = Score.from_abc(abc)
        tokens = tokenizer.encode(score)[0].tokens
        decoded = tokenizer.decode([tokenizer.encode(score)[0]])
        tpq = decoded.ticks_per_quarter
        ts = decoded.time_signatures[0]
        notes = sorted(
            (n.time * PPQ // tpq, n.duration * PPQ // tpq, n.pitch) for n in decoded.tracks[0].notes
        )
        for n in decoded.tracks[0].notes:
            assert (n.time * PPQ) % tpq == 0 and (n.duration * PPQ) % tpq == 0
        doc = {
            "name": name,
            "tokens": tokens,
            "time_signature": [ts.numerator, ts.denominator],
            "tempo": round(decoded.tempos[0].qpm, 2) if len(decoded.tempos) else None,
            "bars": tokens.count("Bar_None"),
            "notes": [{"start": s, "length": d, "pitch": p} for s, d, p in notes],
        }
        docs[name] = json.dumps(doc, indent=1) + "\n"
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    for name, text in golden_documents().items():
        if args.write:
            GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
            (GOLDEN_DIR / f"{name}.json").write_text(text)
            print(f"wrote {name}")
        else:
            print(text)


if __name__ == "__main__":
    main()
