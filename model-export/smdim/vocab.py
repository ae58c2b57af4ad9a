"""REMI v1: the one vocabulary shared by the model and the Rust plugin.

The token list is written to `vocab/remi_v1.json` at the repository root; the Rust codec reads
that file and decodes by the token *strings*, so the ids here are the only place ids are made.
`python -m smdim.vocab --write` regenerates it; a test checks the file is byte-identical to what
miditok produces from these settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VOCAB_PATH = REPO_ROOT / "vocab" / "remi_v1.json"

# Settings are plain data so they can be written next to the token list. One instrument part,
# no Program or Velocity tokens (the corpus has constant velocity; the plugin sets velocity).
SETTINGS: dict = {
    "pitch_range": [21, 108],
    "beat_res": {"0_4": 8, "4_12": 4},
    "special_tokens": ["PAD", "BOS", "EOS", "MASK"],
    "use_velocities": False,
    "use_programs": False,
    "use_time_signatures": True,
    "use_tempos": True,
    "num_tempos": 8,
    "tempo_range": [60, 180],
    "log_tempos": False,
    "time_signature_range": {"8": [3, 6, 9, 12], "4": [2, 3, 4, 5], "2": [2, 3]},
    "use_chords": False,
    "use_rests": False,
    "use_sustain_pedals": False,
    "use_pitch_bends": False,
    "use_pitchdrum_tokens": False,
}


def tokenizer_config():
    from miditok import TokenizerConfig

    s = SETTINGS
    beat_res = {tuple(int(x) for x in k.split("_")): v for k, v in s["beat_res"].items()}
    ts_range = {int(k): v for k, v in s["time_signature_range"].items()}
    return TokenizerConfig(
        pitch_range=tuple(s["pitch_range"]),
        beat_res=beat_res,
        special_tokens=list(s["special_tokens"]),
        use_velocities=s["use_velocities"],
        use_programs=s["use_programs"],
        use_time_signatures=s["use_time_signatures"],
        use_tempos=s["use_tempos"],
        num_tempos=s["num_tempos"],
        tempo_range=tuple(s["tempo_range"]),
        log_tempos=s["log_tempos"],
        time_signature_range=ts_range,
        use_chords=s["use_chords"],
        use_rests=s["use_rests"],
        use_sustain_pedals=s["use_sustain_pedals"],
        use_pitch_bends=s["use_pitch_bends"],
        use_pitchdrum_tokens=s["use_pitchdrum_tokens"],
    )


def build_tokenizer():
    from miditok import REMI

    return REMI(tokenizer_config())


def vocab_document() -> str:
    """The exact bytes of `vocab/remi_v1.json`."""
    from importlib.metadata import version

    tokenizer = build_tokenizer()
    tokens = [tok for tok, _ in sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])]
    doc = {
        "name": "REMI v1",
        "generator": f"miditok {version('miditok')} REMI",
        "ticks_per_beat_positions": 8,
        "settings": SETTINGS,
        "tokens": tokens,
    }
    return json.dumps(doc, indent=1) + "\n"


def load_tokens(path: Path = VOCAB_PATH) -> list[str]:
    return json.loads(path.read_text())["tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite vocab/remi_v1.json")
    args = parser.parse_args()
    text = vocab_document()
    if args.write:
        VOCAB_PATH.parent.mkdir(parents=True, exist_ok=True)
        VOCAB_PATH.write_text(text)
        print(f"wrote {VOCAB_PATH} ({len(json.loads(text)['tokens'])} tokens)")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
