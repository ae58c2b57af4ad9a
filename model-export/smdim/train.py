"""Train a denoiser: `python -m smdim.train --config default [--time-limit S] [--resume]
[--sitting S]`.

`--time-limit` is the whole run's training budget: the LR schedule (warm-up, cosine to 10 %) is
anchored to it, so a run spread over several sittings (`--sitting` seconds each, then
`--resume`) follows the same schedule as one long run. Writes to runs/<name>/: ckpt.pt (model,
EMA, optimiser, step, elapsed; written every `checkpoint_s` and at every evaluation),
metrics.csv (step, elapsed, lr, train loss, EMA validation ELBO on packed windows),
final_ema.pt (EMA weights, fp16 with --fp16-final), config.json. Needs only torch + numpy.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from smdim.config import Config, get_config
from smdim.data import CropSampler, load_tokens
from smdim.diffusion import diffusion_loss
from smdim.model import Denoiser
from smdim.tokenizer import load_vocab

RUNS = Path(__file__).resolve().parents[1] / "runs"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)


def fixed_valid_batches(cfg: Config, n: int, split: str = "valid"):
    """The same packed validation windows (with their styles) every evaluation, so the curve is
    comparable. Packed like training: no PAD in the reference."""
    s = CropSampler(load_tokens(split), cfg.train.seq_len, seed=1234, transpose=0, pack=True)
    out = []
    for _ in range(n):
        x, st = s.styled_batch(cfg.train.batch_size)
        out.append((torch.from_numpy(x), torch.from_numpy(st)))
    return out


@torch.no_grad()
def valid_loss(model, batches, mask_id, T, device, amp) -> float:
    """ELBO (nats per token) of the styled windows; the same fixed masks for every model."""
    model.eval()
    gen = torch.Generator().manual_seed(99)
    tot = 0.0
    for x, st in batches:
        style = st.to(device) if model.cfg.n_styles else None
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            tot += diffusion_loss(model, x.to(device), mask_id, T, gen, style).item()
    return tot / len(batches)


def warmup_steps(cfg: Config) -> int:
    """A warm-up longer than 5 % of a short run wastes it."""
    return max(1, min(cfg.train.warmup, cfg.train.max_steps // 20))


def lr_at(cfg: Config, step: int, progress: float) -> float:
    w = warmup_steps(cfg)
    if step < w:
        return cfg.train.lr * (step + 1) / w
    return cfg.train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def ema_decay(cfg: Config, step: int) -> float:
    """EMA from the first step, warmed up so early averages are not dominated by the init."""
    return min(cfg.train.ema, (1 + step) / (10 + step))


def drop_style(style: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Condition dropout: a share p of the windows is trained as Any (0)."""
    keep = torch.rand(style.shape, generator=gen) >= p
    return torch.where(keep, style, torch.zeros_like(style))


def train(
    cfg: Config,
    out: Path,
    device: torch.device,
    resume: bool = False,
    fp16_final: bool = False,
    progress_bar: bool = True,
    sitting_s: float | None = None,
    init: Path | None = None,
) -> dict:
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    v = load_vocab()
    assert v.size == cfg.model.vocab_size
    model = Denoiser(cfg.model).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(
        model.param_groups(cfg.train.weight_decay), lr=cfg.train.lr, betas=(0.9, 0.99)
    )
    amp = device.type == "cuda"
    step, elapsed0 = 0, 0.0
    ckpt_path = out / "ckpt.pt"
    if init is not None and not (resume and ckpt_path.exists()):
        # Start from shipped EMA weights (e.g. checkpoints/*-ema-fp16.pt) with a new schedule.
        weights = torch.load(init, map_location=device)["ema"]
        weights = {k: t.float() if t.is_floating_point() else t for k, t in weights.items()}
        model.load_extending(weights)
        ema.load_extending(weights)
        print(f"initialised from {init}")
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed0 = ck["step"], ck["elapsed"]
        print(f"resumed {ckpt_path} at step {step}, {elapsed0:.0f} s")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    train_tokens = load_tokens("train")
    sampler = CropSampler(
        train_tokens,
        cfg.train.seq_len,
        seed=cfg.train.seed + step,
        transpose=cfg.train.transpose,
        pack=cfg.train.pack,
        chorale_share=cfg.train.chorale_share,
    )
    short = None
    if cfg.train.short_share > 0:
        assert cfg.train.short_len < cfg.train.seq_len, "short windows must be shorter"
        short = CropSampler(
            train_tokens,
            cfg.train.short_len,
            seed=cfg.train.seed + step + 7_777,
            transpose=cfg.train.transpose,
            pack=cfg.train.pack,
            chorale_share=cfg.train.chorale_share,
        )
    short_batch = max(1, cfg.train.batch_size * cfg.train.seq_len // cfg.train.short_len)
    length_rng = np.random.default_rng(cfg.train.seed + step + 31)
    style_gen = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)
    valid = fixed_valid_batches(cfg, cfg.train.eval_batches)
    T = cfg.diffusion.train_T
    metrics_path = out / "metrics.csv"
    new_file = not (resume and metrics_path.exists())
    mf = open(metrics_path, "w" if new_file else "a", newline="")
    writer = csv.writer(mf)
    if new_file:
        writer.writerow(["step", "elapsed_s", "lr", "train_loss", "valid_loss_ema"])
    t0 = time.time()
    limit = cfg.train.time_limit_s
    bar = tqdm(
        total=cfg.train.max_steps,
        initial=step,
        disable=not progress_bar,
        desc=cfg.name,
        mininterval=2.0,
    )
    running, n_run, last_val = 0.0, 0, float("nan")
    last_save = time.time()

    def save():
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed": elapsed0 + time.time() - t0,
                "config": cfg.to_dict(),
            },
            ckpt_path,
        )

    while step < cfg.train.max_steps:
        elapsed = elapsed0 + time.time() - t0
        if elapsed > limit or (sitting_s is not None and time.time() - t0 > sitting_s):
            break
        progress = max(step / cfg.train.max_steps, elapsed / limit)
        lr = lr_at(cfg, step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        if short is not None and length_rng.random() < cfg.train.short_share:
            xb, sb = short.styled_batch(short_batch)
        else:
            xb, sb = sampler.styled_batch(cfg.train.batch_size)
        x0 = torch.from_numpy(xb).to(device, non_blocking=True)
        style = None
        if cfg.model.n_styles:
            style = drop_style(torch.from_numpy(sb), cfg.train.style_dropout, style_gen).to(device)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            loss = diffusion_loss(model, x0, v.mask_id, T, style=style)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        ema_update(ema, model, ema_decay(cfg, step))
        step += 1
        running += loss.item()
        n_run += 1
        bar.update(1)
        if step % cfg.train.eval_every == 0:
            last_val = valid_loss(ema, valid, v.mask_id, T, device, amp)
            writer.writerow(
                [
                    step,
                    round(elapsed0 + time.time() - t0, 1),
                    f"{lr:.3g}",
                    f"{running / n_run:.4f}",
                    f"{last_val:.4f}",
                ]
            )
            mf.flush()
            bar.set_postfix(loss=f"{running / n_run:.3f}", val=f"{last_val:.3f}")
            running, n_run = 0.0, 0
            save()
            last_save = time.time()
        elif time.time() - last_save > cfg.train.checkpoint_s:
            save()
            last_save = time.time()
    bar.close()
    last_val = valid_loss(ema, valid, v.mask_id, T, device, amp)
    writer.writerow(
        [
            step,
            round(elapsed0 + time.time() - t0, 1),
            f"{lr_at(cfg, step, 1):.3g}",
            f"{(running / n_run) if n_run else float('nan'):.4f}",
            f"{last_val:.4f}",
        ]
    )
    mf.close()
    save()
    sd = {
        k: (t.half() if fp16_final and t.is_floating_point() else t)
        for k, t in ema.state_dict().items()
    }
    total = elapsed0 + time.time() - t0
    summary = {
        "config": cfg.name,
        "steps": step,
        "train_seconds": round(total, 1),
        "valid_loss_ema": last_val,
        "params": model.num_params(),
        "device": torch.cuda.get_device_name() if amp else "cpu",
        "tokens_seen": step * cfg.train.batch_size * cfg.train.seq_len,
    }
    torch.save({"ema": sd, "config": cfg.to_dict(), "summary": summary}, out / "final_ema.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return summary


def load_final(path: Path, device="cpu") -> tuple[Denoiser, Config, dict]:
    ck = torch.load(path, map_location=device)
    cfg = Config.from_dict(ck["config"])
    model = Denoiser(cfg.model)
    model.load_state_dict(
        {k: t.float() if t.is_floating_point() else t for k, t in ck["ema"].items()}
    )
    return model.to(device).eval(), cfg, ck.get("summary", {})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config>)")
    ap.add_argument(
        "--time-limit", type=float, default=None, help="seconds of training, the whole run"
    )
    ap.add_argument(
        "--sitting", type=float, default=None, help="stop this sitting after S s (then --resume)"
    )
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument(
        "--short-share", type=float, default=None, help="share of steps on short windows"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, default=None, help="start from these EMA weights")
    ap.add_argument("--fp16-final", action="store_true", help="store final EMA weights as fp16")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    cfg = get_config(a.config)
    tr = cfg.train
    if a.time_limit is not None:
        tr = replace(tr, time_limit_s=a.time_limit)
    if a.max_steps is not None:
        tr = replace(tr, max_steps=a.max_steps)
    if a.batch_size is not None:
        tr = replace(tr, batch_size=a.batch_size)
    if a.eval_every is not None:
        tr = replace(tr, eval_every=a.eval_every)
    if a.short_share is not None:
        tr = replace(tr, short_share=a.short_share)
    cfg = replace(cfg, train=tr)
    if a.threads:
        torch.set_num_threads(a.threads)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    train(
        cfg,
        a.out or RUNS / cfg.name,
        pick_device(a.device),
        a.resume,
        a.fp16_final,
        not a.no_progress,
        a.sitting,
        a.init,
    )


if __name__ == "__main__":
    np.seterr(over="ignore")
    main()
