"""Fine-tuning to a longer context starts from the shorter model's behaviour."""

from dataclasses import replace

import torch

from smdim.config import get_config
from smdim.model import Denoiser


def test_load_extending_keeps_short_windows_and_tiles_positions():
    short_cfg = get_config("tiny").model
    long_cfg = replace(short_cfg, max_len=short_cfg.max_len * 4)
    torch.manual_seed(0)
    short = Denoiser(short_cfg).eval()
    long = Denoiser(long_cfg).eval()
    long.load_extending(short.state_dict())
    n = short_cfg.max_len // short_cfg.stride
    assert long.pos.shape[1] == 4 * n
    for k in range(4):
        assert torch.equal(long.pos[:, k * n : (k + 1) * n], short.pos)
    tokens = torch.randint(4, short_cfg.vocab_size, (2, short_cfg.max_len))
    style = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.allclose(long(tokens, style), short(tokens, style), atol=1e-6)


def test_long_config_is_the_default_model_at_2048():
    d, lg = get_config("default"), get_config("long")
    assert lg.model == replace(d.model, max_len=2048)
    assert lg.train.seq_len == 2048
    assert lg.train.batch_size * lg.train.seq_len == d.train.batch_size * d.train.seq_len
