"""Sample token sequences from a trained checkpoint:
`python -m smdim.sample --ckpt runs/default/final_ema.pt --n 256 --length 512 --out s.npy`.
Torch + numpy only (runs on the GPU box); decoding to MIDI lives in evaluate.py."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from smdim.diffusion import sample, torch_logits_fn
from smdim.train import load_final, pick_device


def sample_many(
    model,
    n: int,
    length: int,
    steps: int,
    seed: int,
    batch: int,
    device,
    temperature: float = 1.0,
    top_p: float = 1.0,
    allow_pad: bool = False,
) -> tuple[np.ndarray, float]:
    fn = torch_logits_fn(model, device)
    outs, t0 = [], time.time()
    for i in range(0, n, batch):
        b = min(batch, n - i)
        outs.append(
            sample(
                fn,
                length,
                batch=b,
                steps=steps,
                seed=seed + i,
                temperature=temperature,
                top_p=top_p,
                allow_pad=allow_pad,
            )
        )
    return np.concatenate(outs).astype(np.uint16), time.time() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--allow-pad", action="store_true", help="let the sampler emit PAD")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    model, cfg, _ = load_final(a.ckpt, device)
    steps = a.steps or cfg.diffusion.sample_steps
    toks, secs = sample_many(
        model, a.n, a.length, steps, a.seed, a.batch, device, a.temperature, a.top_p, a.allow_pad
    )
    np.save(a.out, toks)
    info = {
        "ckpt": str(a.ckpt),
        "n": a.n,
        "length": a.length,
        "steps": steps,
        "seed": a.seed,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "allow_pad": a.allow_pad,
        "seconds": round(secs, 1),
    }
    print(json.dumps(info))


if __name__ == "__main__":
    main()
