import pytest
import torch

from smdim.scan import (
    selective_scan,
    selective_scan_chunked,
    selective_scan_native,
    selective_scan_ref,
)


def make(b, d, length, n, dtype=torch.float64, seed=0, a_scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, length, generator=g, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(b, d, length, generator=g, dtype=dtype))
    A = -torch.rand(d, n, generator=g, dtype=dtype) * a_scale
    B = torch.randn(b, n, length, generator=g, dtype=dtype)
    C = torch.randn(b, n, length, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, delta, A, B, C, D)]


def test_reference_matches_definition_by_hand():
    # one channel, one state: h = e^{dA} h + d B x ; y = C h + D x
    x = torch.tensor([[[1.0, 2.0]]])
    delta = torch.tensor([[[0.5, 1.0]]])
    A = torch.tensor([[-2.0]])
    B = torch.tensor([[[3.0, 1.0]]])
    C = torch.tensor([[[2.0, -1.0]]])
    D = torch.tensor([0.5])
    h0 = 0.5 * 3.0 * 1.0
    h1 = torch.exp(torch.tensor(-2.0)) * h0 + 1.0 * 1.0 * 2.0
    y = selective_scan_ref(x, delta, A, B, C, D)
    assert torch.allclose(y, torch.tensor([[[2 * h0 + 0.5, -h1 + 1.0]]]))


@pytest.mark.parametrize("length", [1, 7, 64, 131])
def test_chunked_equals_reference(length):
    args = make(2, 5, length, 4, seed=length)
    yr = selective_scan_ref(*args)
    yc = selective_scan_chunked(*args)
    assert torch.allclose(yr, yc, atol=1e-10)
    g = torch.randn_like(yr)
    for a, b in zip(
        torch.autograd.grad(yr, args, g), torch.autograd.grad(yc, args, g), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("shape", [(2, 8, 37, 4), (1, 3, 1, 16), (3, 16, 200, 8)])
def test_native_equals_reference_values_and_grads(shape):
    args = make(*shape, seed=sum(shape))
    a32 = [t.detach().float().requires_grad_() for t in args]
    yr = selective_scan_ref(*args)
    yn = selective_scan_native(*a32)
    assert yn.dtype == torch.float32
    assert torch.allclose(yr.float(), yn, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(yr)
    gr = torch.autograd.grad(yr, args, g)
    gn = torch.autograd.grad(yn, a32, g.float())
    for name, a, b in zip("x delta A B C D".split(), gr, gn, strict=True):
        assert torch.allclose(a.float(), b, atol=2e-3, rtol=1e-3), name


def test_native_edge_cases():
    args = [t.detach().float() for t in make(2, 4, 20, 4, a_scale=1e4)]  # huge negative A
    args[1][:, :, 5] = 0.0  # zero delta: state kept, no input
    yr = selective_scan_ref(*args)
    yn = selective_scan_native(*args)
    assert torch.isfinite(yn).all()
    assert torch.allclose(yr, yn, atol=1e-5)


def test_dispatch_uses_native_on_cpu_and_matches():
    args = [t.detach().float() for t in make(2, 4, 16, 4)]
    assert torch.allclose(selective_scan(*args), selective_scan_ref(*args), atol=1e-5)
