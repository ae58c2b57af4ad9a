"""PyTorch baseline for the GPU table: whole-phrase generation on the GPU at the default number
of sampling steps, latency and peak GPU memory, for the config the plugin ships or a larger one.

Runs on the device machine (torch + numpy only, no network); untrained weights (latency does not
depend on them). Prints one JSON line per length.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from smdim.config import get_config
from smdim.diffusion import sample, torch_logits_fn
from smdim.model import Denoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="default")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = get_config(args.config)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, max_len=max(args.lengths), dropout=0.0)
    )
    model = Denoiser(cfg.model).eval().to(device)
    fn = torch_logits_fn(model, device)
    steps = cfg.diffusion.sample_steps
    for length in args.lengths:
        sample(fn, length, steps=2, seed=0)  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for seed in range(args.repeats):
            t0 = time.perf_counter()
            sample(fn, length, steps=steps, seed=seed)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        print(
            json.dumps(
                {
                    "what": "pytorch_generate",
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "config": args.config,
                    "tokens": length,
                    "steps": steps,
                    "median_s": sorted(times)[len(times) // 2],
                    "peak_gpu_mib": peak,
                }
            )
        )


if __name__ == "__main__":
    main()
