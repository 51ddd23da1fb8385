"""The prepared matrices of albert.runtime against the plain torch they replace: oneDNN-packed fp32 with each fused
activation and the fused residual add equal torch's within fp32 rounding; the int8 matrix with its activation fused
gives what the int8 matrix followed by the activation gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from albert.model import activation_fn
from albert.runtime import (
    ONEDNN_ACTIVATIONS,
    Int8ActivatedLinear,
    _onednn,
    _pack,
    keep_freed_memory,
    onednn_available,
)

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def weights(rows: int, cols: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) / cols ** 0.5, torch.randn(rows, generator=g) * 0.1


@pytest.mark.parametrize("name", sorted(ONEDNN_ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1, 64), (3, 17, 64), (40, 64)])
def test_packed_fp32_equals_torch(name: str, shape: tuple[int, ...]) -> None:
    w, b = weights(96, 64)
    x = torch.randn(*shape) * 2
    with torch.inference_mode():
        want = activation_fn(name)(F.linear(x, w, b))
        got = _onednn(w, b, ONEDNN_ACTIVATIONS[name])(x)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        plain = _onednn(w, b)
        torch.testing.assert_close(plain(x), F.linear(x, w, b), atol=1e-5, rtol=1e-5)
        residual = torch.randn(*shape[:-1], 96)
        torch.testing.assert_close(plain(x, residual), residual + F.linear(x, w, b), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif("onednn" not in torch.backends.quantized.supported_engines, reason="no oneDNN quantized engine")
@pytest.mark.parametrize("name", ["gelu_new", "gelu", "relu"])
def test_int8_with_fused_activation_equals_int8_then_activation(name: str) -> None:
    torch.backends.quantized.engine = "onednn"
    w, b = weights(96, 64, seed=1)
    x = torch.randn(2, 9, 64) * 3 + 0.5  # not centred: the zero point is not the middle
    with torch.inference_mode():
        fused = _pack(w, b, ONEDNN_ACTIVATIONS[name])
        assert isinstance(fused, Int8ActivatedLinear)
        got = fused(x)
        want = activation_fn(name)(_pack(w, b)(x))
        exact = activation_fn(name)(F.linear(x, w, b))
        # the same quantization as torch's dynamic int8 path: equal up to the kernels' own rounding
        torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-3)
        assert (got - exact).abs().max() < 0.05 * exact.abs().max()
        residual = torch.randn(2, 9, 96)
        torch.testing.assert_close(_pack(w, b)(x, residual), residual + _pack(w, b)(x), atol=1e-6, rtol=1e-6)


def test_keep_freed_memory_is_harmless() -> None:
    keep_freed_memory()
    keep_freed_memory()  # once per process (cached); allocation still works
    assert torch.ones(1 << 22).sum().item() == 1 << 22
