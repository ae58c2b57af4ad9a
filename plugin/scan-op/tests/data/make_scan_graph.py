"""Writes selective_scan.onnx: one smdim::SelectiveScan node, symbolic dims b, d, n, l.

Run once with the model-export venv (the file is committed):
    ../../../../model-export/.venv/bin/python make_scan_graph.py
"""

from pathlib import Path

from onnx import TensorProto, checker, helper

NAMES = ["x", "delta", "A", "B", "C", "D"]
SHAPES = {
    "x": ["b", "d", "l"],
    "delta": ["b", "d", "l"],
    "A": ["d", "n"],
    "B": ["b", "n", "l"],
    "C": ["b", "n", "l"],
    "D": ["d"],
}


def make_model():
    node = helper.make_node("SelectiveScan", NAMES, ["y"], domain="smdim", name="scan")
    graph = helper.make_graph(
        [node],
        "selective_scan",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[n]) for n in NAMES],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "d", "l"])],
    )
    # IR 10 / opset 17: ONNX Runtime 1.31 reads IR <= 13; onnx 1.23 would default to IR 14.
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smdim", 1)],
        ir_version=10,
        producer_name="smdim make_scan_graph.py",
    )


if __name__ == "__main__":
    model = make_model()
    checker.check_model(model)
    out = Path(__file__).with_name("selective_scan.onnx")
    out.write_bytes(model.SerializeToString())
    print(out, out.stat().st_size, "bytes")
