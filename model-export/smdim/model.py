"""The SMDIM denoiser (and the transformer-only baseline), nanoGPT style.

tokens [B, L] -> embedding [B, L, E] -> Conv1d(E->d, kernel=stride=4) [B, L/4, d]
  -> + learned position -> N blocks -> LayerNorm -> ConvTranspose1d(d->E) [B, L, E] -> logits.
SMDIM block (MFA): x += Mamba(LN x); x += FFN(LN x); x += Attention(LN x) (attention optional
per block). Baseline block: x += Attention(LN x); x += FFN(LN x). No timestep input: the mask
pattern tells the denoiser how much is known (as in SCHmUBERT). A style id [B] (0 Any, 1 Melody,
2 Chorale) adds a learned vector to every position after the downsampling convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from smdim.config import ModelConfig
from smdim.scan import selective_scan


def softplus(x: torch.Tensor) -> torch.Tensor:
    """`F.softplus`; in an ONNX export spelled max(x, 0) + log(1 + exp(-|x|)), which ONNX
    Runtime runs with vectorised kernels (its Softplus, behind the Where that F.softplus's
    threshold exports to, is scalar: 4 of a 28 ms forward at 2,048 tokens on two cores)."""
    if torch.onnx.is_in_onnx_export():
        return torch.clamp(x, min=0) + torch.log(1 + torch.exp(-torch.abs(x)))
    return F.softplus(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """`F.gelu` (exact, erf); in an ONNX export spelled x·(1 + erf(x/√2))·0.5, the order ONNX
    Runtime fuses into one Gelu kernel (F.gelu's export multiplies by 0.5 first, which it does
    not fuse, leaving four elementwise passes per feed-forward)."""
    if torch.onnx.is_in_onnx_export():
        return x * (1 + torch.erf(x / math.sqrt(2.0))) * 0.5
    return F.gelu(x)


class Mamba(nn.Module):
    """Mamba (S6) mixer. The scan is causal along time; the attention in the same block gives
    bidirectional context."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, di, n = cfg.d_model, cfg.expand * cfg.d_model, cfg.d_state
        self.dt_rank = math.ceil(d / 16)
        self.d_state = n
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv = nn.Conv1d(di, di, cfg.d_conv, groups=di, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1).float()).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)
        self.scan_impl = "auto"
        # dt initialised in [1e-3, 1e-1] as in Mamba
        dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x):  # [B, T, d]
        T = x.shape[1]
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)
        xs = F.silu(self.conv(xs.transpose(1, 2))[..., :T])  # [B, di, T]
        dbc = self.x_proj(xs.transpose(1, 2))  # [B, T, r + 2n]
        dt, Bm, Cm = torch.split(dbc, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = softplus(self.dt_proj(dt)).transpose(1, 2)  # [B, di, T]
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            xs, delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2), self.D, impl=self.scan_impl
        )
        return self.out_proj(y.transpose(1, 2) * F.silu(z))


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x):
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, T, d))


class FFN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.ffn_mult * cfg.d_model)
        self.out = nn.Linear(cfg.ffn_mult * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.out(gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        if cfg.kind == "smdim":
            kinds = [Mamba, FFN] + ([Attention] if cfg.has_attention(index) else [])
        else:
            kinds = [Attention, FFN]
        for k in kinds:
            self.norms.append(nn.LayerNorm(cfg.d_model))
            self.layers.append(k(cfg))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        for norm, layer in zip(self.norms, self.layers, strict=True):
            x = x + self.drop(layer(norm(x)))
        return x


class Denoiser(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.max_len % cfg.stride == 0
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.down = nn.Conv1d(cfg.d_embed, cfg.d_model, cfg.stride, stride=cfg.stride)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_len // cfg.stride, cfg.d_model))
        # Zero-initialised: style starts as a no-op; Any (0) is the unconditional model.
        self.style = nn.Embedding(cfg.n_styles, cfg.d_model) if cfg.n_styles else None
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.up = nn.ConvTranspose1d(cfg.d_model, cfg.d_embed, cfg.stride, stride=cfg.stride)
        self.head_norm = nn.LayerNorm(cfg.d_embed)
        self.head = nn.Linear(cfg.d_embed, cfg.vocab_size)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, tokens, style=None):  # [B, L] int64 (L a multiple of stride), [B] int64
        L = tokens.shape[1]
        x = self.embed(tokens).transpose(1, 2)  # [B, E, L]
        x = self.down(x).transpose(1, 2)  # [B, L/s, d]
        x = x + self.pos[:, : L // self.cfg.stride]
        if self.style is not None and style is not None:
            x = x + self.style(style)[:, None, :]
        for blk in self.blocks:
            x = blk(x)
        x = self.up(self.norm(x).transpose(1, 2)).transpose(1, 2)  # [B, L, E]
        return self.head(self.head_norm(x))

    def load_extending(self, weights: dict[str, torch.Tensor]) -> None:
        """Load weights trained at a shorter `max_len`: the position table is tiled, so every
        window of the old length starts with exactly the old positions (short phrases keep the
        trained model's behaviour) and fine-tuning learns what lies beyond."""
        pos = weights.get("pos")
        if pos is not None and pos.shape[1] < self.pos.shape[1]:
            reps = -(-self.pos.shape[1] // pos.shape[1])
            weights = {**weights, "pos": pos.repeat(1, reps, 1)[:, : self.pos.shape[1]]}
        self.load_state_dict(weights)

    def set_scan_impl(self, impl: str) -> None:
        for m in self.modules():
            if isinstance(m, Mamba):
                m.scan_impl = impl

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay only on weight matrices (Linear/Conv kernels), never on norms,
        embeddings, positions, biases, `A_log` or `D`."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            is_matrix = p.dim() >= 2 and not name.startswith(("embed", "pos", "style"))
            is_matrix &= not name.endswith("A_log")
            (decay if is_matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
