"""Absorbing-state (mask) discrete diffusion, as in D3PM-absorbing / SCHmUBERT.

Training: t ~ U{1..T}, stratified over the batch (one draw per 1/B of the range, so every batch
covers light and full masking); every token is replaced by MASK with probability t/T. The loss is
the absorbing-diffusion ELBO (MDLM, LLaDA): the cross-entropy summed over masked positions,
weighted by T/t and divided by the length, so it is a bound on the negative log-likelihood per
token, comparable across models and runs. The fully-masked level, where unconditional sampling
decides structure, keeps full weight (SCHmUBERT's `1 - (t-1)/T` gave it 0.001: "legacy").

Sampling (`sample`): the exact algorithm, including the order of random draws, is specified in
docs/model/SAMPLER.md so the Rust engine can reproduce it bit for bit. It takes any callable
`logits_fn(tokens int64 [B, L]) -> float32 [B, L, V]`, so the same code drives PyTorch and
onnxruntime.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from smdim.tokenizer import load_vocab

MASK64 = (1 << 64) - 1


def corrupt(
    x0: torch.Tensor,
    mask_id: int,
    T: int,
    gen: torch.Generator | None = None,
    stratified: bool = False,
):
    """Forward process q(x_t | x_0). Returns (x_t, mask, t)."""
    b = x0.shape[0]
    if stratified:
        u = (torch.arange(b) + torch.rand(b, generator=gen)) / b
        u = u[torch.randperm(b, generator=gen)]
        t = (u * T).long().clamp(0, T - 1) + 1
    else:
        t = torch.randint(1, T + 1, (b,), generator=gen, device="cpu")
    t = t.to(x0.device)
    rate = (t.float() / T)[:, None]
    u = torch.rand(x0.shape, generator=gen, device="cpu").to(x0.device)
    mask = u < rate
    return torch.where(mask, torch.full_like(x0, mask_id), x0), mask, t


def diffusion_loss(
    model,
    x0: torch.Tensor,
    mask_id: int,
    T: int,
    gen=None,
    style: torch.Tensor | None = None,
    weighting: str = "elbo",
) -> torch.Tensor:
    """`weighting`: "elbo" (T/t, summed over masked tokens / length: nats per token) or
    "legacy" (SCHmUBERT's 1 - (t-1)/T on the per-sequence masked mean)."""
    xt, mask, t = corrupt(x0, mask_id, T, gen, stratified=weighting == "elbo")
    logits = model(xt) if style is None else model(xt, style)
    ce = F.cross_entropy(logits.float().transpose(1, 2), x0, reduction="none")  # [B, L]
    if weighting == "elbo":
        per_seq = (ce * mask).sum(1) / x0.shape[1]
        return (per_seq * (T / t.float())).mean()
    if weighting != "legacy":
        raise ValueError(f"unknown weighting {weighting!r}")
    per_seq = (ce * mask).sum(1) / mask.sum(1).clamp(min=1)
    w = 1.0 - (t.float() - 1.0) / T
    return (w * per_seq).mean()


# --------------------------------------------------------------------------- sampler
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class SplitMix64:
    """The sampler's RNG (trivial to reproduce in Rust). Draw k: state += GOLDEN (wrapping);
    out = mix(state); uniform = (out >> 11) * 2^-53. Counter based, so n draws vectorise."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def uniforms(self, n: int) -> np.ndarray:
        k = np.arange(1, n + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            z = _mix(np.uint64(self.state) + k * np.uint64(GOLDEN))
        self.state = (self.state + n * GOLDEN) & MASK64
        return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def uniform(self) -> float:
        return float(self.uniforms(1)[0])


def banned_ids(allow_pad: bool = False) -> list[int]:
    """Tokens the sampler never emits: MASK, BOS, EOS and, unless allowed, PAD. Training windows
    end in PAD after short pieces, so an unconstrained model scatters PAD; a caller that wants a
    shorter phrase constrains the grammar instead (the Rust engine does)."""
    v = load_vocab()
    ids = [v.id("MASK_None"), v.id("BOS_None"), v.id("EOS_None")]
    return ids + ([] if allow_pad else [v.pad_id])


def choose(logits_row: np.ndarray, u: float, temperature: float, top_p: float) -> int:
    """One categorical draw, float64 throughout. `logits_row` already has banned ids at -inf."""
    z = logits_row.astype(np.float64)
    if temperature <= 0:
        return int(np.argmax(z))  # first maximum
    z = z / temperature
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    order = np.lexsort((np.arange(len(p)), -p))  # probability descending, then id ascending
    ps = p[order]
    cum = np.cumsum(ps)
    k = int(np.searchsorted(cum, top_p, side="left")) + 1  # smallest prefix with mass >= top_p
    k = min(max(k, 1), len(ps))
    ps = ps[:k]
    cdf = np.cumsum(ps / ps.sum())
    j = int(np.searchsorted(cdf, u, side="right"))
    return int(order[min(j, k - 1)])


def softmax_prob(logits_row: np.ndarray, idx: int, temperature: float) -> float:
    """Probability of `idx` under softmax(logits / temperature) (temperature <= 0 counts as 1),
    computed exactly as `choose` computes its probabilities, so Rust reproduces it bit for bit."""
    z = logits_row.astype(np.float64) / (temperature if temperature > 0 else 1.0)
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    return float(p[idx])


def confidence_score(p: float, u_noise: float, noise: float, t: int, steps: int) -> float:
    """log p plus Gumbel noise annealed to 0 over the run (MaskGIT's choice temperature).
    Scalar libm math (`math.log`), the same functions Rust's f64::ln calls."""
    u = u_noise if u_noise > 0.0 else 2.0**-53
    gumbel = -math.log(-math.log(u))
    return math.log(p) + noise * (t / steps) * gumbel


def pitch_classes() -> np.ndarray:
    """Pitch class of every vocabulary id, -1 for tokens that are not pitches."""
    v = load_vocab()
    classes = np.full(v.size, -1, dtype=np.int64)
    for pitch, i in v.pitch_ids().items():
        classes[i] = pitch % 12
    return classes


# Krumhansl-Kessler major and minor key profiles, by scale degree (semitones above the tonic).
KEY_PROFILES = (
    (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
)


def tonal_bonus(x_row: np.ndarray, classes: np.ndarray, weight: float) -> list[float]:
    """Per pitch class: weight * ln(12 P[c]), P the pitch-class distribution predicted by the
    posterior over the 24 keys (Krumhansl-Kessler profiles as categorical distributions, flat
    prior) of the pitches decided in `x_row`; 0 everywhere before any pitch is decided. Scalar
    libm math in the Rust sampler's order."""
    ids = x_row[(x_row >= 0) & (x_row < len(classes))]
    counts = [int(n) for n in np.bincount(classes[ids][classes[ids] >= 0], minlength=12)]
    if not any(counts):
        return [0.0] * 12

    def share(profile, degree):
        total = 0.0
        for v in profile:
            total += v
        return profile[degree] / total

    scores = []
    for k in range(24):
        tonic, profile = k // 2, KEY_PROFILES[k % 2]
        score = 0.0
        for c, n in enumerate(counts):
            score += float(n) * math.log(share(profile, (c + 12 - tonic) % 12))
        scores.append(score)
    top = max(scores)
    total, predictive = 0.0, [0.0] * 12
    for k, score in enumerate(scores):
        tonic, profile = k // 2, KEY_PROFILES[k % 2]
        w = math.exp(score - top)
        total += w
        for c in range(12):
            predictive[c] += w * share(profile, (c + 12 - tonic) % 12)
    return [weight * math.log(12.0 * (p / total)) for p in predictive]


def tonal_focus_row(row: np.ndarray, classes: np.ndarray, bonus: list[float]) -> np.ndarray:
    """`row` (float64 logits, banned at -inf) with every allowed pitch raised by its class's
    bonus, then all of them shifted so their total probability is unchanged. Scalar libm math
    in id order, term for term as the Rust sampler, so both draw the same tokens."""
    idx = [i for i in np.nonzero(classes >= 0)[0] if row[i] > -math.inf]
    if not idx:
        return row
    m = max(float(row[i]) for i in idx)
    if not math.isfinite(m):
        return row
    before = after = 0.0
    for i in idx:
        z, b = float(row[i]), bonus[classes[i]]
        before += math.exp(z - m)
        after += math.exp(z + b - m)
    shift = math.log(after) - math.log(before)
    out = row.copy()
    for i in idx:
        out[i] = float(row[i]) + bonus[classes[i]] - shift
    return out


def committed_after(n0: int, step_index: int, steps: int) -> int:
    """Positions unmasked after step `step_index` (0-based) of `steps` by the confidence order:
    ceil(n0 * (s+1)^2 / S^2), integer arithmetic. Few commitments early (the structural ones,
    made with the most context-free uncertainty), most late."""
    sq = steps * steps
    return (n0 * (step_index + 1) ** 2 + sq - 1) // sq


def sample(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    length: int,
    *,
    batch: int = 1,
    steps: int = 32,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    fixed: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    allow_pad: bool = False,
    mask_id: int | None = None,
    order: str = "random",
    noise: float = 0.0,
    tonal_focus: float = 0.0,
) -> np.ndarray:
    """Reverse process. `fixed`: int64 [batch, length] with -1 where free (infilling); fixed
    tokens never change. `allowed`: optional bool [V] of tokens that may be emitted. `order`:
    "random" (each masked position unmasks with probability 1/t at step t) or "confidence"
    (every masked position draws a candidate; the most confident ones are kept, as many as
    `committed_after` says; `noise` scales the annealed Gumbel noise on the confidence).
    `tonal_focus` (λ >= 0) pulls pitch choices toward the key of the pitches decided before
    the step (`tonal_bonus`, `tonal_focus_row`). Returns int64 [batch, length]. Deterministic
    per seed; see docs/model/SAMPLER.md."""
    if order not in ("random", "confidence"):
        raise ValueError(f"unknown order {order!r}: random or confidence")
    v = load_vocab()
    mask_id = v.mask_id if mask_id is None else mask_id
    x = np.full((batch, length), mask_id, dtype=np.int64)
    if fixed is not None:
        x = np.where(fixed >= 0, fixed, x).astype(np.int64)
    ban = np.zeros(v.size, dtype=bool)
    ban[banned_ids(allow_pad)] = True
    if allowed is not None:
        ban |= ~allowed
    rngs = [SplitMix64(seed + r) for r in range(batch)]
    classes = pitch_classes()
    weight = max(float(tonal_focus), 0.0)

    def focus(r: int):
        """Row r's tonal-focus transform for this step (identity at weight 0)."""
        if weight == 0.0:
            return lambda row: row
        bonus = tonal_bonus(x[r], classes, weight)
        return lambda row: tonal_focus_row(row, classes, bonus)

    if order == "confidence":
        return _unmask_by_confidence(
            logits_fn, x, ban, rngs, mask_id, steps, temperature, top_p, noise, focus
        )
    for t in range(steps, 0, -1):
        newly = np.zeros_like(x, dtype=bool)
        for r in range(batch):
            masked = np.nonzero(x[r] == mask_id)[0]  # ascending positions
            u = rngs[r].uniforms(len(masked))
            newly[r, masked[u < 1.0 / t]] = True
        if not newly.any():
            continue
        logits = np.asarray(logits_fn(x), dtype=np.float32)
        for r in range(batch):
            pull = focus(r)
            for i in np.nonzero(newly[r])[0]:
                row = pull(np.where(ban, -np.inf, logits[r, i].astype(np.float64)))
                x[r, i] = choose(row, rngs[r].uniform(), temperature, top_p)
    return x


def _unmask_by_confidence(
    logits_fn, x, ban, rngs, mask_id, steps, temperature, top_p, noise, focus
) -> np.ndarray:
    """The confidence order of `sample`, on its prepared tokens, bans and row streams."""
    batch = x.shape[0]
    n0 = (x == mask_id).sum(1)
    for s in range(steps):
        t = steps - s
        masked = [np.nonzero(x[r] == mask_id)[0] for r in range(batch)]
        ks = [
            min(committed_after(int(n0[r]), s, steps) - (int(n0[r]) - len(masked[r])), len(m))
            for r, m in enumerate(masked)
        ]
        if not any(k > 0 for k in ks):
            continue
        logits = np.asarray(logits_fn(x), dtype=np.float32)
        for r in range(batch):
            if ks[r] <= 0:
                continue
            cands = []
            pull = focus(r)
            for i in masked[r]:
                row = pull(np.where(ban, -np.inf, logits[r, i].astype(np.float64)))
                u_token, u_noise = rngs[r].uniform(), rngs[r].uniform()
                c = choose(row, u_token, temperature, top_p)
                score = confidence_score(
                    softmax_prob(row, c, temperature), u_noise, noise, t, steps
                )
                cands.append((-score, int(i), c))
            cands.sort()  # score descending, then position ascending
            for _, i, c in cands[: ks[r]]:
                x[r, i] = c
    return x


def torch_logits_fn(model: torch.nn.Module, device: str | torch.device = "cpu", style: int = 0):
    """Wrap a denoiser as the sampler's logits callable (eval mode, no grad); `style` goes to
    style-conditioned models (0 Any, 1 Melody, 2 Chorale)."""
    model.eval()
    styled = bool(getattr(model.cfg, "n_styles", 0))

    @torch.no_grad()
    def fn(tokens: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tokens).to(device)
        st = torch.full((x.shape[0],), style, dtype=torch.long, device=device) if styled else None
        out = model(x, st)
        return out.float().cpu().numpy()

    return fn
