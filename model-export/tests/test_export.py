import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from smdim.diffusion import sample, torch_logits_fn
from smdim.export import (
    MODELS,
    count_scan_nodes,
    export_onnx,
    ort_logits_fn,
    ort_session,
    parity,
    write_card,
)
from smdim.tokenizer import load_vocab

REPO = Path(__file__).resolve().parents[2]
SHIPPED = MODELS / "smdim-default.onnx"


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny_model, path)
    return path


def test_graph_interface_and_custom_nodes(exported, tiny_model):
    m = onnx.load(str(exported))
    assert [i.name for i in m.graph.input] == ["tokens", "style"]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert min(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert count_scan_nodes(exported) == tiny_model.cfg.n_blocks
    fn = [f for f in m.functions if (f.domain, f.name) == ("smdim", "SelectiveScan")]
    assert len(fn) == 1 and any(n.op_type == "Scan" for n in fn[0].node)
    assert list(fn[0].input) == ["x", "delta", "A", "B", "C", "D"]


def test_parity_torch_vs_onnxruntime_function_fallback(exported, tiny_model):
    assert parity(tiny_model, exported, lengths=(4, 36, 64), batch=3) < 1e-4


def test_sampling_through_onnxruntime_matches_torch(exported, tiny_model):
    sess = ort_session(exported)
    for order in ("random", "confidence"):
        kw = {"batch": 2, "steps": 6, "seed": 11, "temperature": 0.9, "top_p": 0.95}
        kw |= {"order": order, "noise": 1.0}
        a = sample(torch_logits_fn(tiny_model, style=2), 48, **kw)
        b = sample(ort_logits_fn(sess, style=2), 48, **kw)
        assert (a == b).all()


def test_model_card(exported, tiny_model, tmp_path):
    from smdim.config import get_config

    card_path = write_card(exported, tiny_model, get_config("tiny"), {"steps": 1}, {"x": 1.0})
    card = json.loads(card_path.read_text())
    v = load_vocab()
    assert card["vocab"]["sha256"] == v.sha256 and card["vocab"]["mask_id"] == v.mask_id
    assert card["length"]["multiple_of"] == 4 and card["params"] == tiny_model.num_params()
    assert card["sampler"]["default_steps"] == get_config("tiny").diffusion.sample_steps
    assert card["styles"] == ["any", "melody", "chorale"]
    assert set(card["inputs"]) == {"tokens", "style"}


# The exported model with our Rust kernel registered: test_scan_op_library.py, which builds the
# library itself (cargo xtask build-ops) instead of depending on test order.


def test_shipped_model_and_card():
    import hashlib

    assert SHIPPED.exists(), "the shipped model models/smdim-default.onnx is missing"
    card = json.loads(SHIPPED.with_suffix("").with_suffix(".card.json").read_text())
    assert SHIPPED.stat().st_size < 25e6
    assert card["onnx_sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert card["vocab"]["sha256"] == load_vocab().sha256
    assert card["metrics"], "the shipped card must carry its evaluation metrics"
    assert card["architecture"]["kind"] == "smdim", "the shipped model is SMDIM"
    assert card["styles"] == ["any", "melody", "chorale"]
    sess = ort_session(SHIPPED)
    for style in range(3):
        fn = ort_logits_fn(sess, style)
        for b, L in ((1, 8), (2, 256)):
            out = fn(np.full((b, L), load_vocab().mask_id))
            assert out.shape == (b, L, 271) and np.isfinite(out).all()


def test_shipped_cpu_twin_matches_its_source():
    """models/smdim-default-int8.onnx (python -m smdim.quantize): its card names the fp32 source
    it was made from, and the paired ELBO (same windows, same masks) stays within 1 %."""
    import hashlib

    from smdim.quantize import card_path, paired_elbo

    twin = MODELS / "smdim-default-int8.onnx"
    assert twin.exists(), "run python -m smdim.quantize"
    card = json.loads(card_path(twin).read_text())
    source = json.loads(card_path(SHIPPED).read_text())
    assert card["onnx_sha256"] == hashlib.sha256(twin.read_bytes()).hexdigest()
    assert card["quantization"]["source_sha256"] == source["onnx_sha256"], "made from this model"
    assert card["length"] == source["length"] and card["styles"] == source["styles"]
    assert twin.stat().st_size < SHIPPED.stat().st_size / 2
    fp32, int8 = paired_elbo([SHIPPED, twin], batches=4, length=128, chorale_share=0.5)
    assert int8 <= fp32 * 1.01, (fp32, int8)
