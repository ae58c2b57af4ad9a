"""Mamba's selective scan, three interchangeable implementations of one function.

Semantics (the single source of truth is SCAN_OP.md; shapes: x, delta [B, D, L]; A [D, N];
B, C [B, N, L]; D [D]; all float32):

    h[-1] = 0
    h[t]  = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * x[t]      (h: [B, D, N])
    y[t]  = sum_n C[t, n] * h[t, n] + D * x[t]

* `selective_scan_ref`: a Python loop over time, the readable reference.
* `selective_scan_chunked`: pure PyTorch two-level (chunked) scan, K + L/K sequential steps;
  fast on GPU, no compilation.
* `selective_scan_native`: a C++ kernel (torch.utils.cpp_extension, built on first use) with
  a hand-written backward; 3-170x faster than pure-PyTorch scans on a 2-core CPU.

`selective_scan` picks native on CPU, chunked on CUDA, and during ONNX export emits one
`smdim::SelectiveScan` node.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc") / "selective_scan.cpp"


def selective_scan_ref(x, delta, A, B, C, D):
    b, d, length = x.shape
    h = x.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * x[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + D[:, None] * x


def selective_scan_chunked(x, delta, A, B, C, D, chunk: int = 16):
    """Two-level scan: split time into chunks; step through the K positions of every chunk at
    once (chunks in parallel, from a zero state), carry the true state across the chunks in a
    second short loop, then add each chunk's carried-in state times its cumulative decay. Only
    K + L/K sequential steps of [B, D, n_chunks, N] element-wise ops; exact and stable (every
    factor is exp of a non-positive number). The fast path on GPU, no compilation."""
    b, d, length = x.shape
    n = A.shape[1]
    pad = (-length) % chunk
    if pad:
        x, delta = (torch.nn.functional.pad(v, (0, pad)) for v in (x, delta))
        B, C = (torch.nn.functional.pad(v, (0, pad)) for v in (B, C))
    nc = x.shape[-1] // chunk
    xc = x.view(b, d, nc, chunk)
    dc = delta.view(b, d, nc, chunk)
    Bc = B.view(b, n, nc, chunk)
    Cc = C.view(b, n, nc, chunk)
    h = x.new_zeros(b, d, nc, n)
    decay = x.new_ones(b, d, nc, n)
    hs, decays = [], []
    for k in range(chunk):
        dA = torch.exp(dc[..., k, None] * A[:, None, :])  # [b, d, nc, n]
        h = dA * h + (dc[..., k] * xc[..., k])[..., None] * Bc[..., k].permute(0, 2, 1)[:, None]
        decay = decay * dA
        hs.append(h)
        decays.append(decay)
    h_local = torch.stack(hs, dim=3)  # [b, d, nc, K, n]
    cum = torch.stack(decays, dim=3)
    carry = x.new_zeros(b, d, n)
    carries = []
    for c in range(nc):
        carries.append(carry)
        carry = cum[:, :, c, -1] * carry + h_local[:, :, c, -1]
    h_all = h_local + cum * torch.stack(carries, dim=2)[:, :, :, None, :]
    y = (h_all * Cc.permute(0, 2, 3, 1)[:, None]).sum(-1).reshape(b, d, nc * chunk)
    return y[..., :length] + D[:, None] * x[..., :length]


@lru_cache(maxsize=1)
def _native():
    from torch.utils.cpp_extension import load

    bindir = str(Path(sys.executable).parent)  # ninja lives in the venv
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        raise RuntimeError("ninja not found: install it into the venv (setup_venv.sh does)")
    build = Path(
        os.environ.get("SMDIM_EXT_DIR", Path(__file__).resolve().parents[1] / "cache" / "ext")
    )
    build.mkdir(parents=True, exist_ok=True)
    return load(
        name="smdim_scan",
        sources=[str(CSRC)],
        extra_cflags=["-O3", "-march=x86-64-v2", "-ffast-math", "-fno-finite-math-only"],
        build_directory=str(build),
        verbose=False,
    )


class _NativeScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D):
        args = (
            x.contiguous().float(),
            delta.contiguous().float(),
            A.contiguous().float(),
            B.transpose(1, 2).contiguous().float(),
            C.transpose(1, 2).contiguous().float(),
            D.contiguous().float(),
        )
        ctx.save_for_backward(*args)
        return _native().fwd(*args)

    @staticmethod
    def backward(ctx, gy):
        dx, ddelta, dA, dBt, dCt, dD = _native().bwd(*ctx.saved_tensors, gy.contiguous().float())
        return dx, ddelta, dA, dBt.transpose(1, 2), dCt.transpose(1, 2), dD


def selective_scan_native(x, delta, A, B, C, D):
    return _NativeScan.apply(x, delta, A, B, C, D)


def selective_scan(x, delta, A, B, C, D, impl: str = "auto"):
    if torch.onnx.is_in_onnx_export():
        return torch.onnx.ops.symbolic(
            "smdim::SelectiveScan",
            (x, delta, A, B, C, D),
            {},
            dtype=x.dtype,
            shape=x.shape,
            version=1,
        )
    if impl == "auto":
        impl = "chunked" if x.is_cuda else "native"
    if x.is_cuda:
        # The scan runs in float32 even under bf16 autocast (as Mamba's own kernels do).
        with torch.autocast("cuda", enabled=False):
            return _scan_fp32(x, delta, A, B, C, D, impl)
    return _scan_fp32(x, delta, A, B, C, D, impl)


def _scan_fp32(x, delta, A, B, C, D, impl):
    args = tuple(t.float() for t in (x, delta, A, B, C, D))
    fn = {
        "ref": selective_scan_ref,
        "chunked": selective_scan_chunked,
        "native": selective_scan_native,
    }[impl]
    return fn(*args).to(x.dtype)
