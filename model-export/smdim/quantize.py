"""The CPU twin of an exported model: `python -m smdim.quantize [--src MODEL.onnx]` (default
`../models/smdim-default.onnx`) writes `<stem>-int8.onnx` + card beside it.

onnxruntime's dynamic quantisation of every MatMul/Gemm weight to int8 (activations quantised per
call; the SelectiveScan node and its ONNX function stay fp32): a third of the bytes and fewer
multiply cycles on CPUs with int8 dot products. Its quality is checked where it is least noisy:
the ELBO of the same held-out windows under the same masks through both graphs (a paired
difference; the OA columns at n = 128 vary more between seed sets than between the two). The
export fails if the int8 ELBO is more than `--max-elbo-rise` (relative) above the fp32 one, for
all windows or for the chorales alone. The plugin and the CLI run this twin on the CPU provider
and the fp32 graph on GPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from smdim.data import CropSampler, load_tokens
from smdim.diffusion import diffusion_loss
from smdim.export import ort_session
from smdim.tokenizer import load_vocab

REPO = Path(__file__).resolve().parents[2]


def card_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix("").with_suffix(".card.json")


class OrtDenoiser:
    """`model(tokens, style) -> logits` through an onnxruntime session, for `diffusion_loss`."""

    def __init__(self, sess: ort.InferenceSession):
        self.sess = sess
        self.styled = any(i.name == "style" for i in sess.get_inputs())

    def __call__(self, tokens: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        feed = {"tokens": tokens.numpy()}
        if self.styled:
            feed["style"] = (
                (style if style is not None else torch.zeros(len(tokens))).long().numpy()
            )
        return torch.from_numpy(self.sess.run(["logits"], feed)[0])


def paired_elbo(paths: list[Path], batches: int, length: int, chorale_share: float | None) -> list:
    """ELBO (nats/token) of the same test windows under the same masks, for each graph."""
    v = load_vocab()
    s = CropSampler(
        load_tokens("test"), length, seed=4321, transpose=0, pack=True, chorale_share=chorale_share
    )
    data = [s.styled_batch(8) for _ in range(batches)]
    out = []
    for path in paths:
        model = OrtDenoiser(ort_session(path, threads=1))
        gen = torch.Generator().manual_seed(99)
        losses = [
            diffusion_loss(model, torch.from_numpy(x), v.mask_id, 1000, gen, torch.from_numpy(st))
            for x, st in data
        ]
        out.append(float(np.mean([loss.item() for loss in losses])))
    return out


def max_logit_difference(a: Path, b: Path, length: int = 256) -> float:
    v = load_vocab()
    toks = np.random.default_rng(5).integers(4, v.size, (2, length))
    toks[:, ::3] = v.mask_id
    fa, fb = OrtDenoiser(ort_session(a, threads=1)), OrtDenoiser(ort_session(b, threads=1))
    style = torch.tensor([1, 2])
    t = torch.from_numpy(toks)
    return float((fa(t, style) - fb(t, style)).abs().max())


def quantize(src: Path, out: Path, batches: int = 32, max_elbo_rise: float = 0.005) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
    )
    card = json.loads(card_path(src).read_text())
    length = min(256, card["length"]["max"])
    fp32_all, int8_all = paired_elbo([src, out], batches, length, None)
    fp32_ch, int8_ch = paired_elbo([src, out], batches, length, 1.0)
    check = {
        "method": "onnxruntime quantize_dynamic, QInt8 weights, MatMul + Gemm",
        "source": src.name,
        "source_sha256": card["onnx_sha256"],
        "test_elbo_windows": f"{batches} x 8 test windows of {length} tokens, fixed masks",
        "test_elbo_fp32": fp32_all,
        "test_elbo_int8": int8_all,
        "test_elbo_chorale_fp32": fp32_ch,
        "test_elbo_chorale_int8": int8_ch,
        "max_abs_logit_diff_vs_fp32": max_logit_difference(src, out, length),
        "note": "metrics are the fp32 source's (docs/model/INT8.md compares the two)",
    }
    for fp32, int8 in ((fp32_all, int8_all), (fp32_ch, int8_ch)):
        assert int8 <= fp32 * (1 + max_elbo_rise), f"int8 ELBO {int8:.4f} vs fp32 {fp32:.4f}"
    data = out.read_bytes()
    card["name"] = out.with_suffix("").name
    card["onnx_sha256"] = hashlib.sha256(data).hexdigest()
    card["onnx_bytes"] = len(data)
    card["quantization"] = check
    for stale in ("latency_python_sampler", "parity_max_abs_logit_err"):
        card.pop(stale, None)
    card_path(out).write_text(json.dumps(card, indent=1) + "\n")
    return check


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO / "models/smdim-default.onnx")
    ap.add_argument("--out", type=Path, default=None, help="default: <src stem>-int8.onnx")
    ap.add_argument("--batches", type=int, default=32)
    ap.add_argument("--max-elbo-rise", type=float, default=0.005)
    a = ap.parse_args(argv)
    out = a.out or a.src.with_name(a.src.with_suffix("").name + "-int8.onnx")
    check = quantize(a.src, out, a.batches, a.max_elbo_rise)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) + card: {json.dumps(check)}")


if __name__ == "__main__":
    main()
