"""Benchmark fixture and PyTorch baseline for `smdim bench`.

Builds the shipped architecture (config `default`) with room for 2,048 tokens, exports it to
ONNX (weights are untrained: latency does not depend on them), and times PyTorch eager on the
very same weights: one forward pass and one whole unconstrained sampling run per length, with the
sampler of smdim.diffusion. Writes bench.onnx, bench.card.json and torch.json to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from smdim.config import get_config
from smdim.diffusion import sample, torch_logits_fn
from smdim.export import export_onnx, write_card
from smdim.model import Denoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="default")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = get_config(args.config)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, max_len=max(args.lengths), dropout=0.0)
    )
    model = Denoiser(cfg.model).eval()
    onnx_path = export_onnx(model, args.out / "bench.onnx")
    card = write_card(
        onnx_path,
        model,
        dataclasses.replace(
            cfg, diffusion=dataclasses.replace(cfg.diffusion, sample_steps=args.steps)
        ),
        {"note": "untrained, for latency benchmarks only"},
        None,
    )

    fn = torch_logits_fn(model)
    results = {
        "config": args.config,
        "threads": args.threads,
        "steps": args.steps,
        "params": sum(p.numel() for p in model.parameters()),
        "lengths": {},
    }
    for length in args.lengths:
        tokens = torch.randint(0, cfg.model.vocab_size, (1, length))
        with torch.no_grad():
            model(tokens)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                model(tokens)
                times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sample(fn, length, steps=args.steps, seed=1)
        phrase = time.perf_counter() - t0
        results["lengths"][str(length)] = {
            "forward_ms": 1000 * sorted(times)[1],
            "phrase_ms": 1000 * phrase,
        }
        forward_ms = 1000 * sorted(times)[1]
        print(f"torch L={length}: forward {forward_ms:.1f} ms, sampling {1000 * phrase:.0f} ms")
    (args.out / "torch.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {onnx_path}, {card}, {args.out / 'torch.json'}")


if __name__ == "__main__":
    main()
