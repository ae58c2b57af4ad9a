"""The smdim::SelectiveScan op alone: our Rust kernel (the custom-op library) vs ONNX Runtime
running the model-local `Scan` function, same one-node graph, same inputs, 2 threads.
Usage: scan_op.py LIBRARY (from model-export/, with its venv)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from smdim.export import scan_function

GRAPH = Path(__file__).resolve().parents[2] / "plugin/scan-op/tests/data/selective_scan.onnx"


def main() -> None:
    library = sys.argv[1]
    model = onnx.load(str(GRAPH))
    model.functions.append(scan_function())
    path = Path("/tmp") / "smdim_scan_with_function.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    print("| L (D 512, N 16) | native kernel | ONNX Scan function | gain | max abs diff |")
    print("|---:|---:|---:|---:|---:|")
    for length in (512, 2048):
        b, d, n = 1, 512, 16
        feeds = {
            "x": rng.standard_normal((b, d, length), dtype=np.float32),
            "delta": np.abs(rng.standard_normal((b, d, length), dtype=np.float32)) * 0.1,
            "A": -np.abs(rng.standard_normal((d, n), dtype=np.float32)),
            "B": rng.standard_normal((b, n, length), dtype=np.float32),
            "C": rng.standard_normal((b, n, length), dtype=np.float32),
            "D": rng.standard_normal((d,), dtype=np.float32),
        }
        timings = {}
        for native in (True, False):
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            if native:
                options.register_custom_ops_library(library)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            session.run(None, feeds)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                out = session.run(None, feeds)[0]
                times.append(time.perf_counter() - start)
            timings[native] = (sorted(times)[2], out)
        diff = np.abs(timings[True][1] - timings[False][1]).max()
        fast, slow = timings[True][0], timings[False][0]
        cells = [f"{fast * 1e3:.1f} ms", f"{slow * 1e3:.1f} ms"]
        cells += [f"{slow / fast:.1f}x", f"{diff:.1e}"]
        print(f"| {length} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
