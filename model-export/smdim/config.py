"""Typed configurations. `tiny` runs the tests in seconds, `default` is the shipped size
(2-core-CPU trainable, ONNX < 25 MB, fast inference), `large` is for a GPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "smdim"  # "smdim" (Mamba -> FFN -> attention blocks) or "transformer" (baseline)
    vocab_size: int = 271
    max_len: int = 512  # tokens; must be a multiple of `stride`
    stride: int = 4  # Conv1d downsampling factor
    d_embed: int = 128  # token embedding width (full length)
    d_model: int = 256  # width after the strided convolution
    n_blocks: int = 4
    attention_blocks: tuple[int, ...] | None = None  # None: every block has attention
    n_heads: int = 4
    ffn_mult: int = 4
    d_state: int = 16  # Mamba N
    expand: int = 2  # Mamba inner width = expand * d_model
    d_conv: int = 4  # Mamba causal depthwise conv
    dropout: float = 0.1
    n_styles: int = 3  # style conditioning: 0 Any (condition dropped), 1 Melody, 2 Chorale

    def has_attention(self, i: int) -> bool:
        return self.attention_blocks is None or i in self.attention_blocks


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16
    seq_len: int = 512
    lr: float = 5e-4
    warmup: int = 200  # capped at 5 % of the run (see train.warmup_steps)
    weight_decay: float = 0.01  # matrices only: never norms, embeddings, biases, A_log, D
    max_steps: int = 20000
    time_limit_s: float = 3600.0  # the whole run's budget; the LR schedule is anchored to it
    eval_every: int = 250
    eval_batches: int = 8
    ema: float = 0.999  # warmed up as min(ema, (1 + step) / (10 + step))
    grad_clip: float = 1.0
    transpose: int = 6
    pack: bool = True  # continue windows with another piece instead of PAD (see CropSampler)
    style_dropout: float = 0.2  # share of windows trained with style 0 (Any)
    chorale_share: float = 0.25  # share of windows drawn from chorales (11 % of the tokens)
    checkpoint_s: float = 240.0  # also checkpoint every this many seconds
    # Share of steps trained on `short_len`-token windows (batch scaled to the same tokens): a
    # long-context model must still write the short phrases users ask for most.
    short_share: float = 0.0
    short_len: int = 512
    seed: int = 0


@dataclass(frozen=True)
class DiffusionConfig:
    train_T: int = 1000  # discrete time levels for the training mask rate t/T
    sample_steps: int = 32  # default number of sampler steps (shipped in the model card)


@dataclass(frozen=True)
class Config:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Config:
        m = dict(d["model"])
        if m.get("attention_blocks") is not None:
            m["attention_blocks"] = tuple(m["attention_blocks"])
        train = {"pack": False, **d["train"]}  # runs before `pack` existed padded with PAD
        m.setdefault("n_styles", 0)  # runs before style conditioning
        return Config(
            d["name"],
            ModelConfig(**m),
            TrainConfig(**train),
            DiffusionConfig(**d["diffusion"]),
        )


_TINY = Config(
    "tiny",
    ModelConfig(max_len=64, d_embed=32, d_model=48, n_blocks=2, n_heads=2, d_state=4, dropout=0.0),
    TrainConfig(batch_size=4, seq_len=64, warmup=10, max_steps=40, eval_every=20, eval_batches=2),
    DiffusionConfig(sample_steps=8),
)
_DEFAULT = Config(
    "default",
    # Sized for 2-core CPU training (4.4 M parameters, ~0.9 steps/s on one thread at 16 x 512).
    ModelConfig(
        max_len=512, d_embed=128, d_model=256, n_blocks=4, expand=1, d_state=8, dropout=0.0
    ),
    TrainConfig(batch_size=16, seq_len=512, lr=1e-3, warmup=200, eval_every=200),
)
# The default model fine-tuned to 2,048 tokens (64 dense bars): same weights and width, a
# position table four times as long (see Denoiser.load_extending), whole windows of 2,048.
_LONG = replace(
    _DEFAULT,
    name="long",
    model=replace(_DEFAULT.model, max_len=2048),
    train=replace(_DEFAULT.train, batch_size=4, seq_len=2048, lr=5e-4, warmup=100),
)
# The long model with half of its steps on 512-token windows (8-bar phrases stay as good).
_LONG_MIXED = replace(_LONG, name="long-mixed", train=replace(_LONG.train, short_share=0.5))
_LARGE = Config(
    "large",
    ModelConfig(max_len=1024, d_embed=128, d_model=256, n_blocks=5, ffn_mult=3, dropout=0.1),
    TrainConfig(batch_size=32, seq_len=1024, lr=1e-3, warmup=300, eval_every=200),
)


def _transformer(base: Config, n_blocks: int) -> Config:
    """Same width and roughly the same parameter count, attention + FFN blocks only."""
    return replace(
        base,
        name=base.name + "-transformer",
        model=replace(base.model, kind="transformer", n_blocks=n_blocks),
    )


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        _TINY,
        _DEFAULT,
        _LONG,
        _LONG_MIXED,
        _LARGE,
        _transformer(_TINY, 3),
        _transformer(_DEFAULT, 5),
        _transformer(_LARGE, 8),
    )
}


def get_config(name: str) -> Config:
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    return CONFIGS[name]
