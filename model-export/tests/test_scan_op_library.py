"""The Rust `smdim::SelectiveScan` kernel as an onnxruntime custom-op library vs PyTorch.

The library is built by `cargo xtask build-ops` (run here once per session; a build failure
fails these tests, nothing is skipped) and registered with
`SessionOptions.register_custom_ops_library`. ONNX Runtime's profiler proves that the
registered kernel ran, not the model-local `Scan` fallback function.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from smdim.scan import selective_scan_ref

REPO = Path(__file__).resolve().parents[2]
LIB_NAME = {"win32": "smdim_scan_op.dll", "darwin": "libsmdim_scan_op.dylib"}.get(
    sys.platform, "libsmdim_scan_op.so"
)
NAMES = ["x", "delta", "A", "B", "C", "D"]


@pytest.fixture(scope="session")
def scan_op_library() -> str:
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    assert cargo, "cargo not found: the custom-op library is built with `cargo xtask build-ops`"
    proc = subprocess.run(
        [cargo, "xtask", "build-ops"], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, f"cargo xtask build-ops failed:\n{proc.stderr[-4000:]}"
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.name == LIB_NAME and path.is_file(), f"build-ops printed {path}"
    return str(path)


def _session(
    model_bytes_or_path, library: str | None, threads: int, profile_dir: Path | None = None
):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if library:
        so.register_custom_ops_library(library)
    if profile_dir is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_dir / "ort_profile")
    return ort.InferenceSession(model_bytes_or_path, so, providers=["CPUExecutionProvider"])


def _executed_op_types(session) -> set[str]:
    events = json.loads(Path(session.end_profiling()).read_text())
    return {
        e["args"]["op_name"]
        for e in events
        if e.get("cat") == "Node" and "op_name" in e.get("args", {})
    }


def _one_node_model() -> bytes:
    shapes = {
        "x": ["b", "d", "l"],
        "delta": ["b", "d", "l"],
        "A": ["d", "n"],
        "B": ["b", "n", "l"],
        "C": ["b", "n", "l"],
        "D": ["d"],
    }
    node = helper.make_node("SelectiveScan", NAMES, ["y"], domain="smdim", name="scan")
    graph = helper.make_graph(
        [node],
        "selective_scan",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in NAMES],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "d", "l"])],
    )
    model = helper.make_model(
        graph,
        ir_version=10,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smdim", 1)],
    )
    return model.SerializeToString()


def _random_inputs(
    rng: np.random.Generator, b: int, d: int, n: int, length: int
) -> list[np.ndarray]:
    x = rng.standard_normal((b, d, length))
    delta = np.log1p(np.exp(rng.uniform(-4.0, 1.0, (b, d, length))))  # softplus: > 0
    A = -np.exp(rng.uniform(-1.0, 2.8, (d, n)))  # < 0, as -exp(A_log)
    B = rng.uniform(-1.0, 1.0, (b, n, length))
    C = rng.uniform(-1.0, 1.0, (b, n, length))
    D = rng.uniform(-1.0, 1.0, (d,))
    return [v.astype(np.float32) for v in (x, delta, A, B, C, D)]


@pytest.mark.parametrize(
    "shape", [(1, 8, 16, 1), (2, 64, 16, 300), (3, 20, 5, 77), (1, 16, 64, 1024)]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_one_node_graph_matches_reference(scan_op_library, tmp_path, shape, threads):
    b, d, n, length = shape
    sess = _session(_one_node_model(), scan_op_library, threads, tmp_path)
    inputs = _random_inputs(np.random.default_rng(sum(shape) + threads), b, d, n, length)
    (y,) = sess.run(None, dict(zip(NAMES, inputs, strict=True)))
    ref = selective_scan_ref(*(torch.from_numpy(v) for v in inputs)).numpy()
    assert y.shape == (b, d, length)
    err = float(np.abs(y - ref).max())
    assert err < 1e-4, f"max abs err {err}"
    assert "SelectiveScan" in _executed_op_types(sess)


def test_shape_mismatch_is_an_error(scan_op_library):
    sess = _session(_one_node_model(), scan_op_library, 2)
    inputs = _random_inputs(np.random.default_rng(0), 2, 4, 8, 10)
    inputs[3] = inputs[3][:, :7]  # B with N = 7, A says 8
    with pytest.raises(Exception, match=r"input `B` has shape \[2, 7, 10\]"):
        sess.run(None, dict(zip(NAMES, inputs, strict=True)))


def test_exported_tiny_model_with_library_matches_pytorch(scan_op_library, tmp_path):
    from smdim.config import get_config
    from smdim.export import count_scan_nodes, export_onnx
    from smdim.model import Denoiser

    torch.manual_seed(0)
    model = Denoiser(get_config("tiny").model).eval()
    path = export_onnx(model, tmp_path / "tiny.onnx")
    assert count_scan_nodes(path) == sum(1 for m in model.modules() if type(m).__name__ == "Mamba")
    assert count_scan_nodes(path) > 0

    with_lib = _session(str(path), scan_op_library, 2, tmp_path)
    fallback_dir = tmp_path / "fallback"
    fallback_dir.mkdir()
    fallback = _session(str(path), None, 2, fallback_dir)
    g = torch.Generator().manual_seed(1)
    for length in (64, 256):
        length = min(length, model.cfg.max_len)
        tokens = torch.randint(0, model.cfg.vocab_size, (2, length), generator=g)
        style = torch.tensor([1, 2])
        with torch.no_grad():
            ref = model(tokens, style).numpy()
        feed = {"tokens": tokens.numpy(), "style": style.numpy()}
        (got,) = with_lib.run(["logits"], feed)
        err = float(np.abs(got - ref).max())
        assert err < 1e-4, f"L={length}: kernel vs PyTorch max abs err {err}"
        (fb,) = fallback.run(["logits"], feed)
        assert float(np.abs(got - fb).max()) < 1e-4
    # The registered kernel ran (the fallback function would show up as Scan nodes instead).
    ops = _executed_op_types(with_lib)
    assert "SelectiveScan" in ops and "Scan" not in ops, sorted(ops)
    fallback_ops = _executed_op_types(fallback)
    assert "Scan" in fallback_ops and "SelectiveScan" not in fallback_ops, sorted(fallback_ops)
