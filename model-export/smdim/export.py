"""Export a trained denoiser to ONNX + model card:
`python -m smdim.export --ckpt runs/default/final_ema.pt --out ../models/smdim-default.onnx`.

Graph: tokens int64 [batch, length] (+ style int64 [batch] for a style-conditioned model: 0 Any,
1 Melody, 2 Chorale; the card lists them) -> logits float32 [batch, length, vocab]; batch and
length dynamic (length a multiple of 4, <= max_len). Every selective scan is one
`smdim::SelectiveScan` node (semantics: SCAN_OP.md). The file also carries a model-local ONNX
function of that name whose body is a standard `Scan`, so stock onnxruntime runs it; a
registered kernel of the same name/domain takes precedence.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from smdim.data import STYLES
from smdim.model import Denoiser
from smdim.tokenizer import load_vocab

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
DOMAIN = "smdim"
OPSET = 18


def scan_function() -> onnx.FunctionProto:
    """`smdim::SelectiveScan(x, delta, A, B, C, D) -> y` as a standard-ONNX function."""
    mk = helper.make_node
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    body = helper.make_graph(
        [
            mk(
                "Constant",
                [],
                ["ax_last"],
                value=helper.make_tensor("a", TensorProto.INT64, [1], [-1]),
            ),
            mk("Constant", [], ["ax1"], value=helper.make_tensor("b", TensorProto.INT64, [1], [1])),
            mk("Unsqueeze", ["dt_t", "ax_last"], ["dt3"]),  # [B, D, 1]
            mk("Mul", ["dt3", "A_in"], ["dtA"]),  # [B, D, N]
            mk("Exp", ["dtA"], ["dA"]),
            mk("Mul", ["dt_t", "x_t"], ["dtx"]),  # [B, D]
            mk("Unsqueeze", ["dtx", "ax_last"], ["dtx3"]),  # [B, D, 1]
            mk("Unsqueeze", ["B_t", "ax1"], ["B3"]),  # [B, 1, N]
            mk("Mul", ["dtx3", "B3"], ["dBx"]),
            mk("Mul", ["dA", "h_in"], ["hdec"]),
            mk("Add", ["hdec", "dBx"], ["h_out"]),
            mk("Unsqueeze", ["C_t", "ax1"], ["C3"]),
            mk("Mul", ["h_out", "C3"], ["hC"]),
            mk("ReduceSum", ["hC", "ax_last"], ["y_t"], keepdims=0),  # [B, D]
            mk("Identity", ["A_in"], ["A_out"]),
        ],
        "selective_scan_step",
        [
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("A_in", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("x_t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("dt_t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("B_t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("C_t", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("A_out", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("y_t", TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        mk("Constant", [], ["one"], value=one),
        mk("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [1], [0])),
        mk("Constant", [], ["two"], value=helper.make_tensor("t", TensorProto.INT64, [1], [2])),
        mk("Shape", ["x"], ["xs"]),
        mk("Slice", ["xs", "zero", "two"], ["bd"]),  # [B, D]
        mk("Shape", ["A"], ["As"]),
        mk("Slice", ["As", "one", "two"], ["n"]),  # [N]
        mk("Concat", ["bd", "n"], ["hshape"], axis=0),
        mk(
            "ConstantOfShape",
            ["hshape"],
            ["h0"],
            value=helper.make_tensor("f", TensorProto.FLOAT, [1], [0.0]),
        ),
        mk(
            "Scan",
            ["h0", "A", "x", "delta", "B", "C"],
            ["hT", "AT", "yscan"],
            body=body,
            num_scan_inputs=4,
            scan_input_axes=[2, 2, 2, 2],
            scan_output_axes=[2],
        ),
        mk("Unsqueeze", ["D", "one"], ["D2"]),  # [D, 1]
        mk("Mul", ["D2", "x"], ["Dx"]),
        mk("Add", ["yscan", "Dx"], ["y"]),
    ]
    return helper.make_function(
        DOMAIN,
        "SelectiveScan",
        ["x", "delta", "A", "B", "C", "D"],
        ["y"],
        nodes,
        [helper.make_opsetid("", OPSET)],
    )


def export_onnx(model: Denoiser, path: Path, example_len: int | None = None) -> Path:
    model = model.cpu().eval()
    L = example_len or min(model.cfg.max_len, 64)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, L))
    batch = torch.export.Dim("batch", min=1, max=1024)
    quarter = torch.export.Dim("quarter", min=1, max=model.cfg.max_len // model.cfg.stride)
    args, names = (tokens,), ["tokens"]
    shapes = {"tokens": {0: batch, 1: model.cfg.stride * quarter}}
    if model.cfg.n_styles:
        args, names = (tokens, torch.tensor([1, 2])), ["tokens", "style"]
        shapes["style"] = {0: batch}
    prog = torch.onnx.export(
        model,
        args,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes=shapes,
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    proto = prog.model_proto
    proto.functions.append(scan_function())
    if not any(o.domain == DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    return path


def ort_session(path: Path, threads: int = 2, custom_ops_lib: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if custom_ops_lib:
        so.register_custom_ops_library(custom_ops_lib)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_logits_fn(session, style: int = 0):
    """The sampler's logits callable; `style` is fed to models that take one."""
    styled = any(i.name == "style" for i in session.get_inputs())

    def fn(tokens: np.ndarray) -> np.ndarray:
        feed = {"tokens": tokens.astype(np.int64)}
        if styled:
            feed["style"] = np.full(tokens.shape[0], style, dtype=np.int64)
        return session.run(["logits"], feed)[0]

    return fn


def _feed(model: Denoiser, toks: torch.Tensor, style: torch.Tensor | None = None) -> dict:
    feed = {"tokens": toks.numpy()}
    if model.cfg.n_styles:
        feed["style"] = (
            style if style is not None else torch.zeros(len(toks), dtype=torch.long)
        ).numpy()
    return feed


def count_scan_nodes(path: Path) -> int:
    m = onnx.load(str(path))
    return sum(1 for n in m.graph.node if n.domain == DOMAIN and n.op_type == "SelectiveScan")


def write_card(
    onnx_path: Path,
    model: Denoiser,
    cfg,
    summary: dict,
    metrics: dict | None,
    extra: dict | None = None,
    sampler: dict | None = None,
) -> Path:
    """`sampler`: the defaults chosen from the evaluation (order, noise, temperature, top_p)."""
    v = load_vocab()
    manifest = json.loads(
        (Path(__file__).resolve().parents[1] / "data" / "manifest_v1.json").read_text()
    )
    card = {
        "name": onnx_path.stem,
        "format": "onnx",
        "opset": OPSET,
        "custom_ops": {
            "domain": DOMAIN,
            "ops": ["SelectiveScan"],
            "version": 1,
            "spec": "model-export/SCAN_OP.md",
            "fallback": "model-local ONNX function built on Scan",
        },
        "inputs": {
            "tokens": {"dtype": "int64", "shape": ["batch", "length"]},
            **({"style": {"dtype": "int64", "shape": ["batch"]}} if model.cfg.n_styles else {}),
        },
        "styles": list(STYLES[: model.cfg.n_styles]),
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", "length", v.size]}},
        "vocab": {
            "file": "vocab/remi_v1.json",
            "sha256": v.sha256,
            "size": v.size,
            "mask_id": v.mask_id,
            "pad_id": v.pad_id,
            "bar_id": v.bar_id,
            "never_sample": ["MASK_None", "BOS_None", "EOS_None", "PAD_None"],
        },
        "length": {
            "multiple_of": model.cfg.stride,
            "min": model.cfg.stride,
            "max": model.cfg.max_len,
            "trained": cfg.train.seq_len,
        },
        "sampler": {
            "algorithm": "docs/model/SAMPLER.md",
            "default_steps": cfg.diffusion.sample_steps,
            "default_temperature": 1.0,
            "default_top_p": 1.0,
            "default_order": "random",
            "default_noise": 0.0,
            **(sampler or {}),
        },
        "architecture": {k: v_ for k, v_ in cfg.model.__dict__.items()},
        "params": model.num_params(),
        "training": {
            **summary,
            "data": "model-export/data/manifest_v1.json",
            "collections": {k: c["licence"] for k, c in manifest["collections"].items()},
            "split": manifest["split_rule"],
        },
        "metrics": metrics or {},
        "export_date": dt.date.today().isoformat(),
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "onnx_bytes": onnx_path.stat().st_size,
    }
    if extra:
        card.update(extra)
    card_path = onnx_path.with_suffix("").with_suffix(".card.json")
    card_path.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return card_path


def parity(
    model: Denoiser, onnx_path: Path, lengths=(64, 256), batch: int = 2, seed: int = 0
) -> float:
    """Max abs logit difference torch vs onnxruntime (Scan fallback) over random tokens."""
    sess = ort_session(onnx_path)
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    model = model.cpu().eval()
    for L in lengths:
        L = min(L, model.cfg.max_len)
        toks = torch.randint(0, model.cfg.vocab_size, (batch, L), generator=g)
        style = torch.arange(batch) % max(model.cfg.n_styles, 1)
        with torch.no_grad():
            ref = model(toks, style if model.cfg.n_styles else None).numpy()
        got = sess.run(["logits"], _feed(model, toks, style))[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def parity_with_lib(model: Denoiser, onnx_path: Path, lib: str, L: int = 256) -> float:
    sess = ort_session(onnx_path, custom_ops_lib=lib)
    toks = torch.randint(
        0, model.cfg.vocab_size, (2, L), generator=torch.Generator().manual_seed(3)
    )
    # The same style on both sides (a styled model's `style=None` is not style 0).
    style = torch.arange(2) % max(model.cfg.n_styles, 1)
    with torch.no_grad():
        ref = model.cpu().eval()(toks, style if model.cfg.n_styles else None).numpy()
    got = sess.run(["logits"], _feed(model, toks, style))[0]
    return float(np.abs(ref - got).max())


def sampling_parity(
    model: Denoiser, onnx_path: Path, length: int, steps: int, seeds=(0, 1)
) -> dict:
    """Same seed through PyTorch and onnxruntime (Scan fallback): identical tokens?"""
    from smdim.diffusion import sample, torch_logits_fn

    ort_fn = ort_logits_fn(ort_session(onnx_path))
    same = [
        bool(
            (
                sample(torch_logits_fn(model), length, steps=steps, seed=s)
                == sample(ort_fn, length, steps=steps, seed=s)
            ).all()
        )
        for s in seeds
    ]
    return {"tokens": length, "steps": steps, "seeds": list(seeds), "identical": same}


def sampler_latency(
    onnx_path: Path,
    length: int,
    steps: int,
    threads: int = 2,
    custom_ops_lib: str | None = None,
    repeats: int = 3,
) -> float:
    """Median seconds for one whole sampled sequence through onnxruntime."""
    import time

    from smdim.diffusion import sample

    fn = ort_logits_fn(ort_session(onnx_path, threads, custom_ops_lib))
    sample(fn, length, steps=steps, seed=0)
    ts = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sample(fn, length, steps=steps, seed=r + 1)
        ts.append(time.perf_counter() - t0)
    return float(np.min(ts))  # min: least disturbed by other load on a shared machine


def main(argv=None) -> None:
    from smdim.train import load_final

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=MODELS / "smdim-default.onnx")
    ap.add_argument("--metrics", type=Path, default=None, help="JSON of evaluation metrics")
    ap.add_argument("--steps", type=int, default=None, help="default sampler steps for the card")
    ap.add_argument("--order", choices=["random", "confidence"], default="random")
    ap.add_argument("--noise", type=float, default=0.0, help="default confidence noise")
    ap.add_argument(
        "--tonal-focus",
        type=float,
        default=0.0,
        help="default pull toward the key of the pitches chosen (docs/model/SAMPLER.md)",
    )
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument(
        "--style-order",
        action="append",
        default=[],
        metavar="STYLE=ORDER[:NOISE[:STEPS]]",
        help="per-style default order (noise, steps), e.g. chorale=confidence:3:16",
    )
    ap.add_argument(
        "--style-tonal-focus",
        action="append",
        default=[],
        metavar="STYLE=VALUE",
        help="per-style tonal focus, e.g. chorale=0 (needs that style's --style-order)",
    )
    ap.add_argument(
        "--ops-lib",
        type=Path,
        default=REPO / "target/ops/libsmdim_scan_op.so",
        help="Rust custom-op library for the latency/parity check, if built",
    )
    a = ap.parse_args(argv)
    from dataclasses import replace

    model, cfg, summary = load_final(a.ckpt)
    if a.steps:
        cfg = replace(cfg, diffusion=replace(cfg.diffusion, sample_steps=a.steps))
    export_onnx(model, a.out)
    err = parity(model, a.out)
    metrics = json.loads(a.metrics.read_text()) if a.metrics else None
    steps = cfg.diffusion.sample_steps
    n_tok = min(256, model.cfg.max_len)
    # the machine may be shared: record its load so the latency can be read correctly
    lat = {"tokens": n_tok, "steps": steps, "threads": 2, "load_avg_1min": os.getloadavg()[0]}
    lat["ort_scan_fallback_s"] = sampler_latency(a.out, n_tok, steps)
    extra = {"parity_max_abs_logit_err": err}
    if a.ops_lib.exists():
        lib = str(a.ops_lib)
        lat["ort_rust_scan_op_s"] = sampler_latency(a.out, n_tok, steps, custom_ops_lib=lib)
        extra["parity_rust_op_max_abs_logit_err"] = parity_with_lib(model, a.out, lib, n_tok)
    extra["latency_python_sampler"] = lat
    extra["sampling_parity_torch_vs_ort"] = sampling_parity(model, a.out, n_tok, steps)
    sampler = {
        "default_order": a.order,
        "default_noise": a.noise,
        "tonal_focus": a.tonal_focus,
        "default_temperature": a.temperature,
        "default_top_p": a.top_p,
        "styles": {},
    }
    for spec in a.style_order:
        style, _, rest = spec.partition("=")
        order, _, rest = rest.partition(":")
        noise, _, steps = rest.partition(":")
        assert style in STYLES and order in ("random", "confidence"), spec
        sampler["styles"][style] = {"order": order, "noise": float(noise or 0.0)}
        if steps:
            sampler["styles"][style]["steps"] = int(steps)
    for spec in a.style_tonal_focus:
        style, _, value = spec.partition("=")
        assert style in sampler["styles"], f"{spec}: give {style}'s --style-order first"
        sampler["styles"][style]["tonal_focus"] = float(value)
    card = write_card(a.out, model, cfg, summary, metrics, extra, sampler)
    print(
        f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB, "
        f"{count_scan_nodes(a.out)} SelectiveScan nodes), {card}; parity max abs err {err:.2e}; "
        f"latency {lat}"
    )
    assert err < 1e-4, f"parity failed: {err}"
    assert all(extra["sampling_parity_torch_vs_ort"]["identical"]), "sampling parity failed"


if __name__ == "__main__":
    main()
