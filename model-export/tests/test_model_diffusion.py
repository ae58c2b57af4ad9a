import numpy as np
import pytest
import torch

from smdim.config import CONFIGS, get_config
from smdim.diffusion import (
    SplitMix64,
    choose,
    corrupt,
    diffusion_loss,
    pitch_classes,
    sample,
    tonal_bonus,
    tonal_focus_row,
    torch_logits_fn,
)
from smdim.model import Attention, Denoiser, Mamba
from smdim.tokenizer import load_vocab


def test_logits_shape_and_dynamic_length(tiny_model):
    for L in (4, 32, 64):
        out = tiny_model(torch.randint(0, 271, (3, L)))
        assert out.shape == (3, L, 271) and out.dtype == torch.float32


def test_architecture_is_smdim(tiny_model):
    kinds = [type(m) for blk in tiny_model.blocks for m in blk.layers]
    assert kinds.count(Mamba) == 2 and kinds.count(Attention) == 2
    base = Denoiser(get_config("tiny-transformer").model)
    assert not any(isinstance(m, Mamba) for m in base.modules())


def test_attention_placement_is_configurable():
    from dataclasses import replace

    cfg = replace(get_config("tiny").model, attention_blocks=(1,))
    m = Denoiser(cfg)
    assert [any(isinstance(x, Attention) for x in b.layers) for b in m.blocks] == [False, True]


def test_shipped_configs_fit_the_size_budget():
    for name in ("default", "large"):
        n = Denoiser(CONFIGS[name].model).num_params()
        assert n * 4 < 25e6, (name, n)


def test_bidirectional_context():
    """Changing a late token changes early logits (the attention sees the future)."""
    torch.manual_seed(0)
    m = Denoiser(get_config("tiny").model).eval()
    x = torch.randint(4, 271, (1, 64))
    y = x.clone()
    y[0, 60] = (x[0, 60] + 1) % 271
    with torch.no_grad():
        assert not torch.allclose(m(x)[0, :8], m(y)[0, :8])


def test_corrupt_masks_with_rate_t_over_T():
    x0 = torch.full((400, 256), 7)
    xt, mask, t = corrupt(x0, 3, 100, torch.Generator().manual_seed(0))
    assert ((xt == 3) == mask).all() and (xt[~mask] == 7).all()
    rate = mask.float().mean(1)
    assert torch.allclose(rate, t.float() / 100, atol=0.12)


def test_loss_only_on_masked_tokens(tiny_model):
    """Logits at unmasked positions do not affect the loss."""
    torch.manual_seed(0)
    x0 = torch.randint(4, 271, (2, 32))
    gen = torch.Generator().manual_seed(3)
    xt, mask, _ = corrupt(x0, 3, 1000, torch.Generator().manual_seed(3), stratified=True)

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.zeros(2, 32, 271, requires_grad=True)

        def forward(self, x):
            return self.logits

    spy = Spy()
    diffusion_loss(spy, x0, 3, 1000, gen).backward()
    g = spy.logits.grad.abs().sum(-1)
    assert (g[~mask] == 0).all() and (g[mask] > 0).all()


def test_splitmix_reference_values():
    r = SplitMix64(0)
    u = r.uniforms(2)
    # SplitMix64(0): first outputs 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4
    assert u[0] == (0xE220A8397B1DCDAF >> 11) / 2**53
    assert u[1] == (0x6E789E6AA1B965F4 >> 11) / 2**53
    r2 = SplitMix64(0)
    assert [r2.uniform(), r2.uniform()] == list(u)


def test_choose_top_p_and_temperature():
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    assert choose(logits, 0.0, 1.0, 1.0) == 0
    assert choose(logits, 0.6, 1.0, 1.0) == 1
    assert choose(logits, 0.95, 1.0, 1.0) == 2
    assert choose(logits, 0.95, 1.0, 0.5) == 0  # nucleus = {0}
    assert choose(logits, 0.95, 1.0, 0.75) == 1  # nucleus = {0, 1}
    assert choose(logits, 0.99, 0.0, 1.0) == 0  # greedy


def _fake_logits(v):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(v,)).astype(np.float32)
    calls = []

    def fn(x):
        calls.append(x.copy())
        return np.broadcast_to(W, (*x.shape, v)).copy()

    return fn, calls


def test_sampler_deterministic_unmasks_everything_and_bans_specials():
    v = load_vocab()
    fn, calls = _fake_logits(v.size)
    a = sample(fn, 64, batch=3, steps=8, seed=5)
    assert 1 <= len(calls) <= 8
    masked = [(x == v.mask_id).mean() for x in calls]
    assert masked[0] == 1.0 and all(m1 > m2 for m1, m2 in zip(masked, masked[1:], strict=False))
    b = sample(fn, 64, batch=3, steps=8, seed=5)
    c = sample(fn, 64, batch=3, steps=8, seed=6)
    assert (a == b).all() and not (a == c).all()
    assert not np.isin(a, [v.mask_id, v.pad_id, 1, 2]).any()


def test_infilling_keeps_fixed_tokens(tiny_model):
    v = load_vocab()
    fixed = np.full((2, 32), -1, dtype=np.int64)
    fixed[:, :8] = [
        v.bar_id,
        v.id("TimeSig_4/4"),
        v.id("Position_0"),
        v.id("Pitch_60"),
        v.id("Duration_1.0.8"),
        v.id("Position_8"),
        v.id("Pitch_62"),
        v.id("Duration_1.0.8"),
    ]
    fixed[1, 20] = v.pad_id  # even a normally banned token stays when fixed
    out = sample(torch_logits_fn(tiny_model), 32, batch=2, steps=4, seed=1, fixed=fixed)
    keep = fixed >= 0
    assert (out[keep] == fixed[keep]).all()
    assert (out != v.mask_id).all()


def test_sampler_allowed_mask():
    v = load_vocab()
    fn, _ = _fake_logits(v.size)
    allowed = np.zeros(v.size, dtype=bool)
    allowed[[v.bar_id, v.id("Pitch_60")]] = True
    out = sample(fn, 16, steps=3, seed=0, allowed=allowed)
    assert set(np.unique(out)) <= {v.bar_id, v.id("Pitch_60")}


@pytest.mark.parametrize("impl", ["native", "chunked"])
def test_training_step_reduces_loss(impl):
    from smdim.data import CropSampler, load_tokens

    torch.manual_seed(0)
    cfg = get_config("tiny").model
    m = Denoiser(cfg)
    m.set_scan_impl(impl)
    x = torch.from_numpy(CropSampler(load_tokens("valid"), 64, seed=0).batch(4))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss = diffusion_loss(m, x, 3, 1000, torch.Generator().manual_seed(0))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_elbo_of_a_uniform_model_is_log_vocab():
    """The ELBO weighting (T/t on the masked sum over L) makes an uninformed model cost ln V
    nats per token whatever the mask rates; the legacy weighting does not."""

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 271)

    x0 = torch.randint(4, 271, (256, 64))
    gen = torch.Generator().manual_seed(0)
    elbo = diffusion_loss(Uniform(), x0, 3, 1000, gen).item()
    assert abs(elbo - np.log(271)) < 0.05 * np.log(271)
    legacy = diffusion_loss(Uniform(), x0, 3, 1000, gen, weighting="legacy").item()
    assert legacy < 0.7 * np.log(271)


def test_stratified_mask_rates_cover_the_range():
    _, _, t = corrupt(torch.zeros(16, 8, dtype=torch.long), 3, 1000, None, stratified=True)
    bins = sorted(int((x - 1) * 16 // 1000) for x in t.tolist())
    assert bins == list(range(16))


def test_style_changes_the_logits_and_any_is_unconditional():
    torch.manual_seed(0)
    m = Denoiser(get_config("tiny").model).eval()
    with torch.no_grad():
        m.style.weight[1:].normal_()
    x = torch.randint(4, 271, (1, 32))
    with torch.no_grad():
        plain, any_, melody, chorale = (
            m(x),
            m(x, torch.tensor([0])),
            m(x, torch.tensor([1])),
            m(x, torch.tensor([2])),
        )
    assert torch.allclose(plain, any_)  # Any's vector is the zero init, never trained apart
    assert not torch.allclose(melody, chorale)


def test_weight_decay_only_on_matrices():
    m = Denoiser(get_config("tiny").model)
    decay, no_decay = m.param_groups(0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any("in_proj" in n for n in decayed) and any("qkv" in n for n in decayed)
    for n in decayed:
        assert not n.endswith(("A_log", ".D", "bias")), n
        assert "norm" not in n and not n.startswith(("embed", "pos", "style")), n
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_confidence_order_schedule_determinism_and_infill():
    from smdim.diffusion import committed_after

    v = load_vocab()
    fn, calls = _fake_logits(v.size)
    a = sample(fn, 64, batch=2, steps=8, seed=5, order="confidence", noise=1.0)
    known = [int((x != v.mask_id).sum(1)[0]) for x in calls]
    assert known == [0] + [committed_after(64, s, 8) for s in range(7)]
    assert (a != v.mask_id).all() and not np.isin(a, [v.pad_id, 1, 2]).any()
    b = sample(fn, 64, batch=2, steps=8, seed=5, order="confidence", noise=1.0)
    c = sample(fn, 64, batch=2, steps=8, seed=6, order="confidence", noise=1.0)
    assert (a == b).all() and not (a == c).all()
    fixed = np.full((1, 64), -1, dtype=np.int64)
    fixed[0, ::3] = v.bar_id
    out = sample(fn, 64, steps=4, seed=1, fixed=fixed, order="confidence")
    assert (out[0, ::3] == v.bar_id).all() and (out != v.mask_id).all()
    with pytest.raises(ValueError):
        sample(fn, 8, order="sideways")


def test_confidence_keeps_the_surest_positions():
    """Peaked logits at even positions, flat at odd ones: the first commitments are even."""
    v = load_vocab()
    L = 32
    logits = np.zeros((1, L, v.size), dtype=np.float32)
    logits[0, ::2, v.id("Pitch_60")] = 20.0
    seen = []

    def fn(x):
        seen.append(x.copy())
        return logits

    sample(fn, L, steps=4, seed=0, order="confidence")
    first_known = np.nonzero(seen[1][0] != v.mask_id)[0]
    assert len(first_known) > 0 and (first_known % 2 == 0).all()


def test_resume_continues_the_run(tmp_path):
    from dataclasses import replace

    from smdim.train import train

    cfg = get_config("tiny")
    cfg = replace(cfg, train=replace(cfg.train, max_steps=8, eval_every=4))
    first = train(cfg, tmp_path, torch.device("cpu"), progress_bar=False)
    assert first["steps"] == 8
    more = replace(cfg, train=replace(cfg.train, max_steps=12))
    second = train(more, tmp_path, torch.device("cpu"), resume=True, progress_bar=False)
    assert second["steps"] == 12 and second["train_seconds"] >= first["train_seconds"]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step") and rows[-1].startswith("12,")


def test_init_from_shipped_ema_weights(tmp_path):
    from dataclasses import replace

    from smdim.train import load_final, train

    cfg = get_config("tiny")
    cfg = replace(cfg, train=replace(cfg.train, max_steps=4, eval_every=100))
    train(cfg, tmp_path / "a", torch.device("cpu"), progress_bar=False, fp16_final=True)
    src, _, _ = load_final(tmp_path / "a" / "final_ema.pt")
    zero = replace(cfg, train=replace(cfg.train, max_steps=0))
    train(zero, tmp_path / "b", torch.device("cpu"), progress_bar=False,
          init=tmp_path / "a" / "final_ema.pt")  # fmt: skip
    got, _, _ = load_final(tmp_path / "b" / "final_ema.pt")
    for (k, a), b in zip(src.state_dict().items(), got.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_short_share_mixes_window_lengths_at_equal_tokens(tmp_path, monkeypatch):
    from dataclasses import replace

    import smdim.train as tr

    shapes = []
    real = tr.diffusion_loss

    def spy(model, x0, *a, **k):
        if model.training:
            shapes.append(tuple(x0.shape))
        return real(model, x0, *a, **k)

    monkeypatch.setattr(tr, "diffusion_loss", spy)
    cfg = get_config("tiny")
    t = replace(cfg.train, max_steps=24, eval_every=100, short_share=0.5, short_len=16)
    tr.train(replace(cfg, train=t), tmp_path, torch.device("cpu"), progress_bar=False)
    long_shape, short_shape = (t.batch_size, t.seq_len), (t.batch_size * t.seq_len // 16, 16)
    assert set(shapes) == {long_shape, short_shape}
    assert 4 <= shapes.count(short_shape) <= 20


def test_tonal_focus_favours_the_key_in_use_and_keeps_the_pitch_share():
    v = load_vocab()
    classes = pitch_classes()
    pid = v.pitch_ids()
    x = np.array([pid[p] for p in (60, 64, 67, 72, 76)] * 8 + [v.mask_id])
    bonus = tonal_bonus(x, classes, 2.0)
    assert min(bonus[c] for c in (0, 4, 7)) > max(bonus[c] for c in (1, 3, 6, 8, 10))
    assert tonal_bonus(np.full(8, v.mask_id), classes, 2.0) == [0.0] * 12
    row = np.random.default_rng(0).uniform(0, 4, v.size)
    row[pid[61]] = -np.inf
    out = tonal_focus_row(row, classes, bonus)
    assert out[pid[61]] == -np.inf and out[v.bar_id] == row[v.bar_id]

    def share(r):
        p = np.exp(r - r.max())
        return p[classes >= 0].sum() / p.sum()

    assert abs(share(out) - share(row)) < 1e-12
    assert out[pid[64]] - row[pid[64]] > out[pid[63]] - row[pid[63]] + 1.0
    assert abs((out[pid[48]] - row[pid[48]]) - (out[pid[60]] - row[pid[60]])) < 1e-12


def test_tonal_focus_gathers_pitch_classes():
    """A model with no idea of key (logits hashed from the tokens): with the focus its pitches
    settle in one key (seven classes); 0 is the plain sampler, draw for draw."""
    v = load_vocab()
    classes = pitch_classes()

    def fn(tokens):
        rng = np.random.default_rng(int(tokens.sum()) % 2**32)
        return rng.uniform(-4, 4, (*tokens.shape, v.size)).astype(np.float32)

    def top7(out):
        pcs = classes[out[classes[out] >= 0]]
        counts = np.sort(np.bincount(pcs, minlength=12))[::-1]
        return counts[:7].sum() / max(counts.sum(), 1)

    plain = sample(fn, 512, batch=4, steps=8, seed=1)
    assert (sample(fn, 512, batch=4, steps=8, seed=1, tonal_focus=0.0) == plain).all()
    focused = sample(fn, 512, batch=4, steps=8, seed=1, tonal_focus=3.0)
    assert np.mean([top7(r) for r in focused]) > np.mean([top7(r) for r in plain]) + 0.1
